"""Soak test (opt-in, not part of the test suite): the real stack under steady load for minutes.

Starts its own database (``--db``, recreated), a private Redis, gunicorn, a Celery worker and
beat (the sweeper), all on 127.0.0.1, then posts pre-built agent batches from many hosts at a
steady rate — a fraction of the stack's capacity, measured in the same run by a short flat-out
calibration unless ``--rate`` is given — for ``--minutes``. Every ``--sample-s`` it prints:

  * resident memory (MB) of the web processes (gunicorn master + workers) and of the Celery
    worker processes, and of Redis;
  * the broker queue depth (messages waiting in Redis) and the batches pending or claimed;
  * what has been accepted so far.

At the end it waits for the queue to drain and checks, exactly: every batch answered 202 is
stored once and attributed (loss 0, duplicates 0), and the ledger's GPU energy equals the GPU
energy posted. Memory growth is the slope of a least-squares line through the samples after the
warm-up, in MB per minute and as a share of the warm level; so is the broker queue's. The exit
code is non-zero on any loss, any error answer, memory growth beyond ``--max-growth-pct`` or a
queue that keeps growing (``--max-queue-growth-per-min``).

    .venv/bin/python benchmarks/soak.py                         # 10 min at 30 % of capacity
    .venv/bin/python benchmarks/soak.py --minutes 2 --rate 1500 # a short smoke run

Results: the sample table on stdout and ``var/bench/soak.json``. docs/reliability.md has figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # the ingest benchmark's process, seeding and load helpers

VAR = base.VAR


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 1e6


def _queue_depth(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        return int(client.llen("celery"))
    finally:
        client.close()


def _batch_states() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM telemetry_telemetrybatch GROUP BY status")
        return dict(cursor.fetchall())


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return 0.0
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t


def _posted_gpu_energy_j(bodies: list[bytes]) -> float:
    return math.fsum(
        gpu["energy_j"]
        for body in bodies
        for window in json.loads(gzip.decompress(body))["windows"]
        for gpu in window["gpus"]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="carbonledger_soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--windows-per-batch", type=int, default=30, help="10 s windows per POST (agent max: 30)")
    parser.add_argument("--rate", type=float, default=None, help="GPU windows/s (default: --fraction of capacity)")
    parser.add_argument("--fraction", type=float, default=0.3, help="share of the calibrated capacity")
    parser.add_argument("--calibrate-s", type=float, default=20.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--warmup-min", type=float, default=2.0, help="samples before this are not in the slope")
    parser.add_argument(
        "--max-growth-pct",
        type=float,
        default=10.0,
        help="fail when web or worker memory grows by more than this per 10 minutes",
    )
    parser.add_argument(
        "--max-queue-growth-per-min",
        type=float,
        default=5.0,
        help="fail when the broker queue grows faster than this (messages per minute)",
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--celery-workers", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--out", default=str(VAR / "soak.json"))
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    procs = base.Procs()

    def _on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        return _run(args, procs)
    except KeyboardInterrupt:
        print("interrupted: stopping processes", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()


def _run(args, procs: base.Procs) -> int:
    base._DB_NAME = args.db
    web_port, redis_port = base._free_port(), base._free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = base.stack_env(db=args.db, redis_url=redis_url, CARBONLEDGER_SWEEPER_INTERVAL_S="15")
    base.database_prepare(db=args.db, env=env)

    import django

    django.setup()
    from django.db import connection
    from django.db.models import Sum

    # Size the pre-built pool for the calibration at up to 40k windows/s plus the soak at its rate.
    soak_rate_max = args.rate or 0.5 * 40_000
    windows_per_host = (40_000 * args.calibrate_s + soak_rate_max * args.minutes * 60) / base.GPUS_PER_HOST / args.hosts
    n_batches = max(4, math.ceil(windows_per_host / args.windows_per_batch) + 2)
    span_s = n_batches * args.windows_per_batch * base.WINDOW_S
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(seconds=span_s + 600)
    seeds = base._seed(args.hosts, start).hosts
    connection.close()
    work = [(s, start.timestamp(), 1, n_batches, args.windows_per_batch, i, 0) for i, s in enumerate(seeds)]
    print(f"building {n_batches} batches/host x {args.hosts} hosts", flush=True)
    # The builders keep the default SIGTERM (this process's handler would print a traceback per
    # builder when the pool ends them).
    with multiprocessing.get_context("fork").Pool(
        os.cpu_count() or 2, initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL)
    ) as pool:
        built = pool.map(base._build_host_batches, work, chunksize=4)
    queues = [base.HostQueue(seed, batches) for seed, batches in zip(seeds, built, strict=True)]

    redis_proc = procs.start(
        "soak-redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        env,
    )
    base._wait(lambda: base._port_open(redis_port), timeout_s=10, what="redis")
    web = procs.start(
        "soak-web",
        [
            base.PY,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-b",
            f"127.0.0.1:{web_port}",
            "-w",
            str(args.web_workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        env,
    )
    worker = procs.start(
        "soak-worker",
        [
            base.PY,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-n",
            "soak@%h",
            "-c",
            str(args.celery_workers),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        env,
    )
    procs.start(
        "soak-beat",
        [base.PY, "-m", "celery", "-A", "config", "beat", "-s", str(VAR / "soak-beat-schedule"), "-l", "WARNING"],
        env,
    )
    base._wait(lambda: base._port_open(web_port), timeout_s=60, what="gunicorn")
    for queue in queues:  # warm-up: one batch per host
        status, payload = base._post(web_port, queue, queue.batches[0][2])
        if status not in (200, 202):
            raise RuntimeError(f"warm-up POST failed: {status} {payload[:300]!r}")
        queue.next = 1
    if base._wait_drained(180) is None:
        raise RuntimeError("warm-up batches were not attributed within 180 s")
    warm_acks = len(queues)

    rate = args.rate
    calibration = None
    if rate is None:
        print(f"calibration: flat out for {args.calibrate_s:g} s", flush=True)
        t0 = time.time()
        sent = base._drive(web_port, queues, args.clients, args.calibrate_s, None)
        done = base._wait_drained(args.drain_timeout)
        windows = sum(a[1] for a in sent.acks)
        capacity = windows / ((done or time.time()) - t0)
        rate = args.fraction * capacity
        calibration = {
            "gpu_windows": windows,
            "capacity_gpu_windows_per_s": round(capacity),
            "errors": len(sent.errors),
        }
        warm_acks += len(sent.acks)
        print(
            f"capacity (end to end) {capacity:,.0f} GPU windows/s; soak at {args.fraction:.0%}: {rate:,.0f}/s",
            flush=True,
        )

    samples: list[dict] = []
    stop = threading.Event()
    t_start = time.monotonic()

    def sample() -> None:
        while True:
            states = _batch_states()
            row = {
                "t_s": round(time.monotonic() - t_start, 1),
                "web_mb": round(_rss_mb(web.pid), 1),
                "worker_mb": round(_rss_mb(worker.pid), 1),
                "redis_mb": round(_rss_mb(redis_proc.pid), 1),
                "queue_depth": _queue_depth(redis_url),
                "pending": states.get("pending", 0),
                "claimed": states.get("claimed", 0),
                "done": states.get("done", 0),
                "failed": states.get("failed", 0),
            }
            samples.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            if stop.wait(args.sample_s):
                return

    print(
        f"soak: {args.minutes:g} min at {rate:,.0f} GPU windows/s "
        f"({rate / (args.windows_per_batch * base.GPUS_PER_HOST):.1f} POST/s)",
        flush=True,
    )
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sent = base._drive(web_port, queues, args.clients, args.minutes * 60, rate)
    drained = base._wait_drained(args.drain_timeout)
    stop.set()
    sampler.join(timeout=30)

    from accounting.models import LedgerEntry
    from telemetry.models import TelemetryBatch

    acked_ids = {a[0] for a in sent.acks}
    stored = TelemetryBatch.objects.count()
    stored_done = TelemetryBatch.objects.filter(status="done").count()
    expected = warm_acks + len(sent.acks)
    posted_bodies = [b[2] for q in queues for b in q.batches[: q.next]]
    posted_j = _posted_gpu_energy_j(posted_bodies)
    ledger_j = (
        LedgerEntry.objects.filter(component__in=["gpu_active", "gpu_idle"]).aggregate(total=Sum("energy_j"))["total"]
        or 0.0
    )
    steady = [s for s in samples if s["t_s"] >= args.warmup_min * 60] or samples
    growth = {}
    for key in ("web_mb", "worker_mb"):
        slope = _slope_per_min([(s["t_s"], s[key]) for s in steady])
        level = steady[0][key] if steady else 0.0
        growth[key] = {
            "slope_mb_per_min": round(slope, 2),
            "pct_per_10_min": round(100 * 10 * slope / level, 2) if level else None,
        }
    queue_slope = _slope_per_min([(s["t_s"], s["queue_depth"]) for s in steady])
    result = {
        "minutes": args.minutes,
        "rate_gpu_windows_per_s": round(rate),
        "calibration": calibration,
        "batches_acked": len(acked_ids),
        "errors": len(sent.errors),
        "error_sample": sent.errors[:3],
        "batches_stored": stored,
        "batches_expected": expected,
        "batches_done": stored_done,
        "loss_batches": expected - stored_done,
        "duplicates": stored - expected,
        "drained": drained is not None,
        "posted_gpu_energy_j": posted_j,
        "ledger_gpu_energy_j": ledger_j,
        "energy_rel_diff": abs(ledger_j - posted_j) / posted_j if posted_j else 0.0,
        "memory_growth": growth,
        "max_queue_depth": max((s["queue_depth"] for s in samples), default=0),
        "queue_depth_slope_per_min": round(queue_slope, 2),
        "max_pending": max((s["pending"] + s["claimed"] for s in samples), default=0),
        "samples": samples,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    ok = (
        result["loss_batches"] == 0
        and result["duplicates"] == 0
        and not sent.errors
        and drained is not None
        and result["energy_rel_diff"] < 1e-9
        and all((g["pct_per_10_min"] or 0) <= args.max_growth_pct for g in growth.values())
        and queue_slope <= args.max_queue_growth_per_min
    )
    print("SOAK PASSED" if ok else "SOAK FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
