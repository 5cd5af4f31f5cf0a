"""Ingest + attribution throughput and freshness (a benchmark, not a test).

Drives the real HTTP ingest (gunicorn, config.wsgi) with pre-built gzip batches from many
hosts while real Celery workers attribute them, all on 127.0.0.1, and reports in one run:

  * phase 1 (max load, ``--seconds``): GPU-windows/s accepted over HTTP, and GPU-windows/s
    attributed end to end (from the first POST until every batch is ``done``);
  * raw COPY: the same GPU windows (read back from phase 1) written as one row each with
    psycopg binary COPY (the ingest's own ``copy_rows``) on one connection into a per-window
    partitioned table in a scratch schema (the layout before the columnar store: same columns,
    key, index and daily partitions), and the ratio ingest / raw COPY;
  * phase 2 (paced at half the measured end-to-end rate, ``--fresh-seconds``): freshness =
    time from the client receiving 202 to the batch being marked done by the rollup that
    rewrote the job's live footprint (``TelemetryBatch.attributed_at``), p50 / p99 / max.

Options for issue 18 (``benchmarks/ingest_shapes.py`` runs them in pairs, side by side):
``--history-days/--history-gpus`` seed a fleet's history first (``benchmarks.history``);
``--shape realistic`` adds job churn through the jobs API, a shared and a MIG GPU, an hour of
prefill and the agent's default 1-window POSTs; every run prints WAL bytes per GPU window
(``pg_current_wal_lsn`` around phase 1 and around the raw COPY; server-wide, so also net of
the idle background rate measured for 5 s before) and CPU per GPU window per process.

It creates its own database (``--db``, dropped and recreated each run) and its own private
redis-server on a free port, and kills every process it started on exit (also on Ctrl-C).
Results: a table on stdout and ``var/bench/ingest.json``.

    .venv/bin/python benchmarks/ingest.py                      # ~30 s load + ~20 s paced
    .venv/bin/python benchmarks/ingest.py --seconds 20 --hosts 128 --windows-per-batch 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.client
import json
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
PY = sys.executable
GPUS_PER_HOST = 8
_DB_NAME = "carbonledger_bench"  # set from --db
WIRE = "v2"  # set from --wire
WINDOW_S = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, *, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise RuntimeError(f"timed out after {timeout_s}s waiting for {what}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


# --- processes ---------------------------------------------------------------------------


class Procs:
    """Subprocesses in their own sessions: killed by process group on exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        VAR.mkdir(parents=True, exist_ok=True)
        log = open(VAR / f"{name}.log", "w")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        self.procs.clear()


class CpuMeter:
    """CPU seconds (user+sys) per role — web, worker, redis, postgres (the backends of this
    database + the WAL writer), bench (this process: the client threads) — since the meter
    started, counting processes that start or exit in between.

    A thread samples every process every ``interval_s``: a process seen first after the start
    counts from zero, and one that exits keeps its last sample. (Plain before/after snapshots
    lose the CPU of PostgreSQL backends that exit mid-run — Django closes a connection after
    CONN_MAX_AGE — and once reported a negative PostgreSQL figure.)"""

    def __init__(self, procs: Procs, interval_s: float = 0.25) -> None:
        import psutil

        self._psutil = psutil
        self._procs = procs
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._base: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._started = time.time()
        self._stop = threading.Event()
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()

    def _members(self):
        psutil = self._psutil
        seen: set[int] = set()
        for name, proc in self._procs.procs:
            role = name.split("-")[0]
            try:
                parent = psutil.Process(proc.pid)
                members = [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for member in members:
                seen.add(member.pid)
                yield role, member
        # Other databases on the same server (e.g. other people's test runs) are not counted.
        for member in psutil.process_iter(["username", "cmdline"]):
            if member.pid in seen:
                continue
            title = " ".join(member.info["cmdline"] or [])
            if member.info["username"] == "postgres" and (f" {_DB_NAME} " in title or "walwriter" in title):
                yield "postgres", member

    def _sample(self, *, initial: bool = False) -> None:
        psutil = self._psutil
        readings = []
        for role, member in self._members():
            try:
                times = member.cpu_times()
                created = member.create_time()
            except psutil.NoSuchProcess:
                continue
            readings.append((member.pid, role, times.user + times.system, created))
        with self._lock:
            for pid, role, cpu_s, created in readings:
                if pid not in self._base:
                    self._base[pid] = cpu_s if (initial or created < self._started) else 0.0
                self._last[pid] = (role, cpu_s)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def read(self) -> dict[str, float]:
        """CPU seconds per role since the meter started."""
        self._sample()
        with self._lock:
            out: dict[str, float] = {}
            for pid, (role, cpu_s) in self._last.items():
                out[role] = out.get(role, 0.0) + cpu_s - self._base[pid]
        me = self._psutil.Process().cpu_times()
        out["bench"] = me.user + me.system
        return out

    def read_by_process(self) -> dict[str, float]:
        """CPU seconds per process ("role:pid") since the meter started."""
        self._sample()
        with self._lock:
            return {f"{role}:{pid}": cpu_s - self._base[pid] for pid, (role, cpu_s) in self._last.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_delta(a: dict[str, float], b: dict[str, float], span_s: float) -> dict[str, float]:
    """Cores used per role between two snapshots (1.0 = one full core)."""
    return {k: round((b.get(k, 0.0) - a.get(k, 0.0)) / span_s, 2) for k in sorted(set(a) | set(b))}


# --- database and seed -------------------------------------------------------------------


def _recreate_db(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class HostSeed:
    hostname: str
    secret: str
    uuids: list[str]
    job_keys: list[list[str]]  # per GPU index: the jobs running on it (two on a shared GPU)
    mig_gpu: int | None = None  # the GPU in MIG mode (its two jobs on a 3g and a 4g instance)
    churn: tuple[int, str, str] | None = None  # (window seq, ending job key, next job key) on GPUs 0-3


@dataclass
class Seeded:
    hosts: list[HostSeed]
    job_ids: list[int]
    scheduler_secret: str
    team_slugs: list[str]


CHURN_GPUS = (0, 1, 2, 3)
CHURN_EVERY_N_HOSTS = 4  # realistic shape: one host in four ends a job and starts another mid-run
SHARED_GPU = 7  # realistic shape: two jobs on one GPU (half each)
MIG_GPU = 6  # realistic shape: a 3g and a 4g MIG instance, one job each


def _seed(n_hosts: int, start: dt.datetime, *, shape: str = "ideal", churn_seqs: list[int] | None = None) -> Seeded:
    """The bench fleet. Ideal shape: two jobs per host (GPUs 0-3 and 4-6), GPU 7 idle. Realistic
    shape: a job on GPUs 0-3, one on GPUs 4-5, two on MIG instances of GPU 6 (3/7 and 4/7), two
    sharing GPU 7 (1/2 each); one host in ``CHURN_EVERY_N_HOSTS`` ends its GPUs 0-3 job at
    ``churn_seqs[i]`` and the next job starts there (through the jobs API, during phase 1)."""
    from accounting.models import ApiToken as Tok
    from accounting.models import (
        Cluster,
        Device,
        GridZone,
        HardwareModel,
        Host,
        Job,
        JobAllocation,
        Organization,
        Site,
        Team,
    )
    from accounting.tokens import token_create, token_digest

    org = Organization.objects.create(name="Bench", slug="bench")
    teams = [Team.objects.create(org=org, name=f"Team {i}", slug=f"team-{i}") for i in range(4)]
    zone = GridZone.objects.create(
        code="BENCH", name="Bench zone", annual_intensity_g_per_kwh=400.0, source="operator", vintage="2024"
    )
    hw = HardwareModel.objects.create(
        key="h100-sxm5-80gb",
        name="NVIDIA H100 SXM5 80GB",
        vendor="NVIDIA",
        kind="gpu",
        match_names=["H100 80GB HBM3"],
        idle_power_w=70.0,
        max_power_w=700.0,
        memory_gb=80.0,
        embodied_kg=150.0,
        embodied_low_kg=100.0,
        embodied_high_kg=200.0,
        embodied_kind="estimate",
        embodied_source="benchmark fixture",
    )
    site = Site.objects.create(org=org, name="Bench site", slug="bench", zone=zone, pue=1.3)
    cluster = Cluster.objects.create(site=site, name="Bench cluster", slug="bench")
    hosts = Host.objects.bulk_create(
        [
            Host(cluster=cluster, hostname=f"bench-gpu-{i:04d}", gpu_slots=GPUS_PER_HOST, dram_gb=1024, ssd_gb=8000)
            for i in range(n_hosts)
        ]
    )
    devices = Device.objects.bulk_create(
        [
            Device(
                host=h,
                uuid=f"GPU-{uuid.UUID(int=(hi << 8) | g)}",
                index=g,
                reported_name="NVIDIA H100 80GB HBM3",
                hardware_model=hw,
            )
            for hi, h in enumerate(hosts)
            for g in range(GPUS_PER_HOST)
        ]
    )
    # Per host: (name, kind, GPUs, fraction of each GPU, MIG instance); scheduler ids 100000 + 8 x host + k.
    if shape == "ideal":
        layout = [("train", "training", (0, 1, 2, 3), 1.0, ""), ("serve", "inference", (4, 5, 6), 1.0, "")]
    else:
        layout = [
            ("train", "training", CHURN_GPUS, 1.0, ""),
            ("serve", "inference", (4, 5), 1.0, ""),
            ("mig3g", "inference", (MIG_GPU,), 3 / 7, "3g.40gb"),
            ("mig4g", "inference", (MIG_GPU,), 4 / 7, "4g.40gb"),
            ("shareA", "inference", (SHARED_GPU,), 0.5, ""),
            ("shareB", "inference", (SHARED_GPU,), 0.5, ""),
        ]
    jobs, allocs, seeds, tokens = [], [], [], []
    job_started = start - dt.timedelta(hours=1)
    for hi in range(len(hosts)):
        for k, (name, kind, _, _, _) in enumerate(layout):
            jobs.append(
                Job(
                    org=org,
                    cluster=cluster,
                    scheduler_job_id=str(100000 + 8 * hi + k),
                    name=f"{name}-{hi}",
                    team=teams[(hi + k) % 4],
                    kind=kind,
                    family="llm",
                    status="running",
                    started_at=job_started,
                )
            )
    Job.objects.bulk_create(jobs)
    churning = 0
    for hi, host in enumerate(hosts):
        devs = devices[hi * GPUS_PER_HOST : (hi + 1) * GPUS_PER_HOST]
        keys: list[list[str]] = [[] for _ in range(GPUS_PER_HOST)]
        for k, (_, _, gpus, fraction, mig) in enumerate(layout):
            job = jobs[hi * len(layout) + k]
            for g in gpus:
                allocs.append(
                    JobAllocation(
                        job=job,
                        device=devs[g],
                        start=job_started,
                        fraction=fraction,
                        mig_instance=f"MIG-{hi}-{mig}" if mig else "",
                    )
                )
                keys[g].append(f"slurm:{job.scheduler_job_id}")
        secret = "clk_" + secrets.token_urlsafe(32)
        tokens.append(
            Tok(
                org=org,
                name=f"agent {host.hostname}",
                scope="host",
                prefix=secret[:12],
                digest=token_digest(secret),
                host=host,
            )
        )
        seed = HostSeed(host.hostname, secret, [d.uuid for d in devs], keys)
        if shape != "ideal":
            seed.mig_gpu = MIG_GPU
            if churn_seqs and hi % CHURN_EVERY_N_HOSTS == 0 and churning < len(churn_seqs):
                seed.churn = (churn_seqs[churning], keys[0][0], f"slurm:{900000 + hi}")
                churning += 1
        seeds.append(seed)
    JobAllocation.objects.bulk_create(allocs)
    Tok.objects.bulk_create(tokens)
    scheduler = token_create(org=org, name="bench scheduler", scope="scheduler", cluster=cluster)
    return Seeded(seeds, [j.pk for j in jobs], scheduler.secret, [t.slug for t in teams])


# --- payloads ----------------------------------------------------------------------------


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _gpu_keys(seed: HostSeed, g: int, seq: int) -> list[str]:
    keys = seed.job_keys[g]
    if seed.churn and g in CHURN_GPUS and seq >= seed.churn[0]:
        return [seed.churn[2] if k == seed.churn[1] else k for k in keys]
    return keys


def _build_host_batches(args) -> list[tuple[str, int, bytes]]:
    """Batches of one host, in seq order from ``first_seq``: (batch_id, gpu windows, gzip body)."""
    seed, start_ts, first_seq, n_batches, wpb, host_index, batch_no = args
    hostname, uuids = seed.hostname, seed.uuids
    out = []
    seq = first_seq
    counters = [10_000_000_000 + 1_000_000 * g + (first_seq - 1) * 6_000_000 for g in range(len(uuids))]
    static = [
        {
            "uuid": u,
            "index": g,
            "name": "NVIDIA H100 80GB HBM3",
            "mem_util_pct": 55.0,
            "mem_used_mib": 70000.0,
            "power_limit_w": 700.0,
            "quality": "measured",
        }
        for g, u in enumerate(uuids)
    ]
    for _ in range(n_batches):
        windows = []
        for _ in range(wpb):
            w_start = dt.datetime.fromtimestamp(start_ts + (seq - 1) * WINDOW_S, dt.UTC)
            gpus = []
            for g, base in enumerate(static):
                keys = _gpu_keys(seed, g, seq)
                busy = bool(keys)
                power = (520.0 + 7 * g + (seq % 13)) if busy else 72.0
                energy = power * WINDOW_S
                counters[g] += int(energy * 1000)
                entry = dict(base)
                entry.update(
                    processes=[
                        {"pid": 4000 + g + 100 * i, "sm_util_pct": 90.0 / len(keys), "job_key": k}
                        for i, k in enumerate(keys)
                    ],
                    energy_j=energy,
                    counter_mj=counters[g],
                    avg_power_w=power,
                    max_power_w=power + 30.0,
                    util_pct=93.0 if busy else 0.0,
                )
                if g == seed.mig_gpu:
                    entry["mig_instances"] = [
                        {
                            "uuid": f"MIG-{host_index}-{i}",
                            "gpu_instance_id": i + 1,
                            "compute_instance_id": 0,
                            "profile": profile,
                            "mem_used_mib": 20000.0,
                            "pids": [4000 + g + 100 * i],
                        }
                        for i, profile in enumerate(("3g.40gb", "4g.40gb")[: len(keys)])
                    ]
                gpus.append(entry)
            windows.append(
                {
                    "seq": seq,
                    "start": _iso(w_start),
                    "end": _iso(w_start + dt.timedelta(seconds=WINDOW_S)),
                    "host": {
                        "cpu_energy_j": 2400.0,
                        "dram_energy_j": 400.0,
                        "wall_energy_j": None,
                        "cpu_util_pct": 35.0,
                        "quality": "measured",
                    },
                    "gpus": gpus,
                }
            )
            seq += 1
        batch_no += 1
        batch_id = str(uuid.UUID(int=(host_index << 64) | batch_no, version=4))
        body = {
            "batch_id": batch_id,
            "hostname": hostname,
            "agent_version": "bench",
            # No sent_at: the bodies are built (and gzipped) before the run, so any send time
            # written now would be minutes off when posted, and every POST would log a clock-skew
            # warning that a host with a synced clock never causes. Without it the offset is NULL.
            "windows": windows,
        }
        if WIRE == "v2":  # as the agent sends it (telemetry.agent.wire)
            from telemetry.agent.wire import FORMAT, columns_v2

            columns = columns_v2(body.pop("windows"))
            assert columns is not None
            body.update(format=FORMAT, **columns)
        raw = json.dumps(body, separators=(",", ":")).encode()
        out.append((batch_id, wpb * len(uuids), gzip.compress(raw, compresslevel=5)))
    return out


# --- load --------------------------------------------------------------------------------


@dataclass
class HostQueue:
    seed: HostSeed
    batches: list[tuple[str, int, bytes]]
    next: int = 0


@dataclass
class Sent:
    acks: list[tuple[str, int, float, float]] = field(default_factory=list)  # batch_id, windows, t_send, t_ack
    errors: list[str] = field(default_factory=list)


def _post(port: int, queue: HostQueue, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            "/api/v1/ingest/batches",
            body=body,
            headers={
                "Authorization": f"Bearer {queue.seed.secret}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Host": "127.0.0.1",
            },
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _drive(port: int, queues: list[HostQueue], n_threads: int, seconds: float, rate: float | None) -> Sent:
    """Send each host's batches in order (one thread per host subset) until the deadline or the
    pool runs dry. ``rate`` (GPU windows/s over all threads) paces sends; None = flat out."""
    sent = Sent()
    lock = threading.Lock()
    t0 = time.monotonic()
    deadline = t0 + seconds

    def worker(mine: list[HostQueue]) -> None:
        n = 0
        interval = None
        if rate:
            wpb = mine[0].batches[0][1]
            interval = n_threads * wpb / rate  # seconds between this thread's sends
        i = 0
        while time.monotonic() < deadline and mine:
            queue = mine[i % len(mine)]
            if queue.next >= len(queue.batches):
                mine.remove(queue)
                continue
            if interval is not None:
                due = t0 + n * interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if time.monotonic() >= deadline:
                    break
            batch_id, windows, body = queue.batches[queue.next]
            t_send = time.time()
            try:
                status, payload = _post(port, queue, body)
            except OSError as exc:
                with lock:
                    sent.errors.append(f"{queue.seed.hostname}: {exc!r}")
                time.sleep(0.05)
                continue
            t_ack = time.time()
            if status in (200, 202):
                queue.next += 1
                with lock:
                    sent.acks.append((batch_id, windows, t_send, t_ack))
            else:
                with lock:
                    sent.errors.append(f"{queue.seed.hostname}: {status} {payload[:200]!r}")
                if len(sent.errors) > 50:
                    return
                queue.next += 1  # never resend a rejected batch in a loop
            n += 1
            i += 1

    threads = [threading.Thread(target=worker, args=(queues[k::n_threads],), daemon=True) for k in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return sent


def _pending_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        # Every status but done, spelled out: with a month of done batches in the table (--history-days)
        # "status <> 'done'" scans them all at every poll, and the poll's CPU counts as PostgreSQL's.
        cursor.execute("SELECT count(*) FROM telemetry_telemetrybatch WHERE status IN ('pending', 'claimed', 'failed')")
        return cursor.fetchone()[0]


def _wait_drained(timeout_s: float) -> float | None:
    """Wall time (epoch) at which every batch is done, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _pending_count() == 0:
            return time.time()
        time.sleep(0.1)
    return None


# --- raw COPY ----------------------------------------------------------------------------


# The reference: the same GPU windows as one row each, in the per-window partitioned table the raw
# store used before it became columnar (migrations 0002 + 0005: same columns, key, index), made here.
_RAW_ROWS_DDL = """
CREATE TABLE telemetry_gpuwindow (
    batch_id bigint NOT NULL, host_id bigint NOT NULL, device_id bigint NOT NULL, seq bigint NOT NULL,
    start_at timestamptz NOT NULL, end_at timestamptz NOT NULL,
    energy_j double precision NOT NULL CHECK (energy_j >= 0), counter_mj bigint,
    avg_power_w double precision NOT NULL, max_power_w double precision NOT NULL,
    util_pct double precision NOT NULL, mem_util_pct double precision NOT NULL,
    mem_used_mib double precision NOT NULL, power_limit_w double precision, quality varchar(12) NOT NULL,
    processes jsonb NOT NULL DEFAULT '[]', mig_instances jsonb NOT NULL DEFAULT '[]',
    energy_covers varchar(20) NOT NULL DEFAULT 'gpu',
    PRIMARY KEY (device_id, start_at, seq), CHECK (end_at > start_at)
) PARTITION BY RANGE (start_at);
CREATE INDEX telemetry_gpuwindow_batch ON telemetry_gpuwindow (batch_id);
"""
RAW_ROWS_COLUMNS = (
    ("batch_id", "int8"),
    ("host_id", "int8"),
    ("device_id", "int8"),
    ("seq", "int8"),
    ("start_at", "timestamptz"),
    ("end_at", "timestamptz"),
    ("energy_j", "float8"),
    ("counter_mj", "int8"),
    ("avg_power_w", "float8"),
    ("max_power_w", "float8"),
    ("util_pct", "float8"),
    ("mem_util_pct", "float8"),
    ("mem_used_mib", "float8"),
    ("power_limit_w", "float8"),
    ("quality", "text"),
    ("processes", "jsonb"),
    ("mig_instances", "jsonb"),
    ("energy_covers", "text"),
)


def _raw_copy(limit: int) -> dict:
    """COPY GPU-window rows (phase 1's windows, read back one row each through the
    ``telemetry_gpuwindow`` view) into a per-window partitioned table (``_RAW_ROWS_DDL``) in a
    scratch schema, one connection, with the ingest's own binary COPY (``telemetry.services.copy_rows``)."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname={db['NAME']}"
    from psycopg.types.json import Jsonb

    from telemetry.services import copy_rows

    # jsonb columns (processes, mig_instances) read as text and passed through as the ingest does.
    cols = tuple(f"{name}::text" if pg_type == "jsonb" else name for name, pg_type in RAW_ROWS_COLUMNS)
    with psycopg.connect(dsn) as conn:
        days = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT (first_start_at AT TIME ZONE 'UTC')::date FROM telemetry_gpuseries"
            ).fetchall()
        ]
        rows = conn.execute(f"SELECT {', '.join(cols)} FROM telemetry_gpuwindow LIMIT %s", [limit]).fetchall()
        conn.execute("DROP SCHEMA IF EXISTS bench_scratch CASCADE")
        conn.execute("CREATE SCHEMA bench_scratch")
        conn.execute("SET search_path TO bench_scratch")
        conn.execute(_RAW_ROWS_DDL)
        for day in days:
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            conn.execute(
                f"CREATE TABLE telemetry_gpuwindow_p{day:%Y%m%d} PARTITION OF telemetry_gpuwindow FOR VALUES FROM "
                f"('{start.isoformat()}') TO ('{(start + dt.timedelta(days=1)).isoformat()}')"
            )
        conn.commit()
        # The jsonb columns as the ingest sends them: JSON text already encoded, wrapped for jsonb.
        rows = [
            tuple(
                Jsonb(value, dumps=str) if pg_type == "jsonb" else value
                for value, (_, pg_type) in zip(row, RAW_ROWS_COLUMNS, strict=True)
            )
            for row in rows
        ]
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            copy_rows(cursor=cur, table="telemetry_gpuwindow", columns=RAW_ROWS_COLUMNS, rows=rows)
        conn.commit()
        elapsed = time.perf_counter() - t0
        conn.execute("DROP SCHEMA bench_scratch CASCADE")
        conn.commit()
    return {"rows": len(rows), "seconds": round(elapsed, 3), "rows_per_s": round(len(rows) / elapsed)}


# --- main --------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="carbonledger_bench")
    parser.add_argument("--hosts", type=int, default=128)
    parser.add_argument(
        "--windows-per-batch",
        type=int,
        default=None,
        help="10 s windows per POST (agent max: 30); default 30, or 6 (the agent's default batching, 60 s) "
        "with --shape realistic",
    )
    parser.add_argument(
        "--wire", choices=("v1", "v2"), default="v2", help="wire format of the bodies (the agent sends v2)"
    )
    parser.add_argument(
        "--shape",
        choices=("ideal", "realistic"),
        default="ideal",
        help="ideal: 2 fixed jobs per host, one GPU idle. realistic: job churn through the jobs API during "
        "phase 1, two jobs sharing a GPU, a MIG GPU, the hour before the run ingested first (prefill, 30-window "
        "batches, not measured) and the agent's default batching (6 windows per POST)",
    )
    parser.add_argument(
        "--history-days", type=int, default=0, help="seed this many days of history first (benchmarks.history)"
    )
    parser.add_argument("--history-gpus", type=int, default=10_000, help="GPUs of the history fleet")
    parser.add_argument(
        "--history-raw-hours", type=int, default=24, help="hours of raw windows in the history (the newest)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="phase 1 (flat out) duration")
    parser.add_argument("--fresh-seconds", type=float, default=20.0, help="phase 2 (paced) duration")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=60_000.0,
        help="GPU windows/s the pre-built pool is sized for (phase 1 stops early if it runs dry)",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--celery-workers", type=int, default=1, help="worker processes (prefork concurrency)")
    parser.add_argument("--copy-rows", type=int, default=400_000, help="rows for the raw COPY comparison")
    parser.add_argument("--drain-timeout", type=float, default=240.0)
    parser.add_argument("--out", default=str(VAR / "ingest.json"))
    args = parser.parse_args()

    if shutil.which("redis-server") is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    procs = Procs()

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


def stack_env(*, db: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like stack (DEBUG off, nudges on) on ``db`` and a
    private Redis; also applied to this process, which seeds and reads the same database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
        DATABASE_CONN_MAX_AGE="600",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        LOG_LEVEL="WARNING",
        CARBONLEDGER_SKIP_NUDGE="false",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    os.environ.update(env)
    return env


def database_prepare(*, db: str, env: dict[str, str]) -> None:
    """Drop and recreate ``db``, then migrate it."""
    print(f"database {db}: recreate + migrate", flush=True)
    _recreate_db(db)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def _wal_lsn() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def _wal_bytes(lsn_a: str, lsn_b: str) -> int:
    """WAL written between two LSNs: by the whole PostgreSQL server (every database on it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", [lsn_b, lsn_a])
        return int(cursor.fetchone()[0])


def _seed_history(args) -> dict | None:
    if not args.history_days:
        return None
    from django.db import connection

    from benchmarks.history import seed_history, table_sizes

    print(
        f"seeding {args.history_days} days of history for {args.history_gpus} GPUs "
        f"(raw windows: last {args.history_raw_hours} h)",
        flush=True,
    )
    t0 = time.monotonic()
    seeded = seed_history(
        connection,
        days=args.history_days,
        gpus=args.history_gpus,
        now=dt.datetime.now(dt.UTC),
        raw_hours=args.history_raw_hours,
    )
    seconds = round(time.monotonic() - t0, 1)
    sizes = table_sizes(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        db_bytes = cursor.fetchone()[0]
    connection.close()
    out = {
        "days": args.history_days,
        "gpus": args.history_gpus,
        "raw_hours": args.history_raw_hours,
        "seed_s": seconds,
        "seed_s_by_step": seeded.seconds,
        "rows": seeded.rows,
        "table_bytes": {k: v["bytes"] for k, v in sizes.items()},
        "database_bytes": db_bytes,
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


@dataclass
class Churn:
    """Realistic shape: at phase-1 wall times, end a host's GPUs 0-3 job at its churn window and
    register the next one there, through the scheduler API (as the Slurm integration does)."""

    port: int
    secret: str
    start_ts: float
    hosts: list[HostSeed]
    teams: list[str]
    done: list[tuple[int, int]] = field(default_factory=list)  # (end status, register status)

    def _call(self, path: str, body: dict) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(
                "POST",
                path,
                body=json.dumps(body).encode(),
                headers={
                    "Authorization": f"Bearer {self.secret}",
                    "Content-Type": "application/json",
                    "Host": "127.0.0.1",
                },
            )
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def run(self, seconds: float) -> threading.Thread:
        events = [h for h in self.hosts if h.churn]

        def worker() -> None:
            t0 = time.monotonic()
            for i, host in enumerate(events):
                assert host.churn is not None
                pause = t0 + (i + 1) * seconds / (len(events) + 1) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                seq, old_key, new_key = host.churn
                at = _iso(dt.datetime.fromtimestamp(self.start_ts + (seq - 1) * WINDOW_S, dt.UTC))
                ended = self._call(
                    f"/api/v1/jobs/by-key/{old_key.split(':', 1)[1]}/end/", {"exit_state": "completed", "ended_at": at}
                )
                registered = self._call(
                    "/api/v1/jobs/",
                    {
                        "scheduler_job_id": new_key.split(":", 1)[1],
                        "team": self.teams[i % len(self.teams)],
                        "name": f"train-next-{host.hostname}",
                        "kind": "training",
                        "family": "llm",
                        "started_at": at,
                        "allocation": [{"host": host.hostname, "gpus": list(CHURN_GPUS)}],
                    },
                )
                self.done.append((ended, registered))

        thread = threading.Thread(target=worker, name="churn", daemon=True)
        thread.start()
        return thread


def _run(args, procs: Procs) -> int:
    global _DB_NAME, WIRE
    _DB_NAME = args.db
    WIRE = args.wire
    realistic = args.shape == "realistic"
    if args.windows_per_batch is None:
        # The agent's default batching: batch_interval_s 60 s of 10 s windows (telemetry/agent/config.py).
        args.windows_per_batch = 6 if realistic else 30
    web_port, redis_port = _free_port(), _free_port()
    env = stack_env(db=args.db, redis_url=f"redis://127.0.0.1:{redis_port}/0")
    database_prepare(db=args.db, env=env)

    import django

    django.setup()
    from django.db import connection

    history = _seed_history(args)
    per_host_windows_p1 = args.max_rate * args.seconds / GPUS_PER_HOST / args.hosts
    per_host_windows_p2 = 0.5 * args.max_rate * args.fresh_seconds / GPUS_PER_HOST / args.hosts
    n_batches = max(2, math.ceil((per_host_windows_p1 + per_host_windows_p2) / args.windows_per_batch) + 1)
    # Realistic: the hour before the run (360 windows per host) is ingested first, in 30-window batches.
    prefill_windows = 360 if realistic else 0
    span_s = (prefill_windows + n_batches * args.windows_per_batch) * WINDOW_S
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(seconds=span_s + 600)
    if realistic:
        # Start the prefill at half past an hour: the run's first windows share their hour with the
        # prefill's last 30 minutes (the job-hour rollups re-sum a half-full hour from the start).
        hour = start.replace(minute=0, second=0)
        start = hour - dt.timedelta(minutes=30) if start.minute < 30 else hour + dt.timedelta(minutes=30)
    churn_seqs = None
    if realistic:
        # Churn points spread over the first half of phase 1's expected windows.
        n_churn = math.ceil(args.hosts / CHURN_EVERY_N_HOSTS)
        reach = max(2.0, 0.5 * per_host_windows_p1)
        churn_seqs = [prefill_windows + 1 + math.ceil((i + 1) * reach / (n_churn + 1)) for i in range(n_churn)]
    seeded = _seed(args.hosts, start, shape=args.shape, churn_seqs=churn_seqs)
    seeds, job_ids = seeded.hosts, seeded.job_ids
    connection.close()
    print(
        f"seeded {args.hosts} hosts x {GPUS_PER_HOST} GPUs, {len(job_ids)} jobs ({args.shape} shape); building "
        f"{n_batches} batches/host x {args.windows_per_batch * GPUS_PER_HOST} GPU windows"
        + (f" after {prefill_windows // 30} prefill batches/host of 30 windows" if prefill_windows else ""),
        flush=True,
    )
    t_build = time.monotonic()
    work = [
        (s, start.timestamp(), prefill_windows + 1, n_batches, args.windows_per_batch, i, prefill_windows // 30)
        for i, s in enumerate(seeds)
    ]
    prefill_work = [(s, start.timestamp(), 1, prefill_windows // 30, 30, i, 0) for i, s in enumerate(seeds)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 2) as pool:
        built = pool.map(_build_host_batches, work, chunksize=4)
        prefill = pool.map(_build_host_batches, prefill_work, chunksize=4) if prefill_windows else None
    queues = [HostQueue(seed, batches) for seed, batches in zip(seeds, built, strict=True)]
    gz_bytes = sum(len(b[2]) for q in queues for b in q.batches)
    print(f"built in {time.monotonic() - t_build:.1f}s ({gz_bytes / 1e6:.1f} MB gzip)", flush=True)

    # Servers.
    procs.start(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        env,
    )
    _wait(lambda: _port_open(redis_port), timeout_s=10, what="redis")
    procs.start(
        "web",
        [
            PY,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "-c",
            "config/gunicorn.conf.py",  # the product's gunicorn settings (sync workers, as before)
            "-b",
            f"127.0.0.1:{web_port}",
            "-w",
            str(args.web_workers),
            "--backlog",
            "512",
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        env,
    )
    procs.start(
        "worker",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-n",
            "bench@%h",
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
    _wait(lambda: _port_open(web_port), timeout_s=60, what="gunicorn")
    if prefill is not None:
        # Realistic: the hour before the run, through the real ingest (not measured).
        t_prefill = time.monotonic()
        prefill_queues = [HostQueue(seed, batches) for seed, batches in zip(seeds, prefill, strict=True)]
        sent0 = _drive(web_port, prefill_queues, args.clients, 3600.0, None)
        if sent0.errors:
            raise RuntimeError(f"prefill POSTs failed: {sent0.errors[:3]}")
        if _wait_drained(args.drain_timeout) is None:
            raise RuntimeError("prefill batches were not attributed in time (see var/bench/worker.log)")
        print(
            f"prefill: {sum(a[1] for a in sent0.acks):,} GPU windows (the hour before the run) ingested and "
            f"attributed in {time.monotonic() - t_prefill:.1f}s",
            flush=True,
        )
    # Warm-up: one batch per host (host/device lookups, partitions, imports in every worker).
    for queue in queues:
        _, _, body = queue.batches[0]
        status, payload = _post(web_port, queue, body)
        if status not in (200, 202):
            raise RuntimeError(f"warm-up POST failed: {status} {payload[:300]!r}")
        queue.next = 1
    t_warm = time.monotonic()
    if _wait_drained(args.drain_timeout) is None:
        raise RuntimeError(
            f"warm-up batches were not attributed within {args.drain_timeout:g} s (see var/bench/worker.log)"
        )
    warm_up_s = round(time.monotonic() - t_warm, 1)
    print(f"warm-up: one batch per host attributed in {warm_up_s}s", flush=True)
    time.sleep(1.0)
    # WAL the rest of the server writes meanwhile (other databases: the machine is shared): 5 s idle.
    lsn_idle, t_idle = _wal_lsn(), time.monotonic()
    time.sleep(5.0)
    background_wal_bytes_per_s = _wal_bytes(lsn_idle, _wal_lsn()) / (time.monotonic() - t_idle)

    # Phase 1: flat out.
    print(
        f"phase 1: flat out for {args.seconds:g}s ({args.clients} clients, {args.web_workers} web workers, "
        f"{args.celery_workers} celery worker processes)",
        flush=True,
    )
    churn = Churn(web_port, seeded.scheduler_secret, start.timestamp(), seeds, seeded.team_slugs)
    meter = CpuMeter(procs)
    cpu_a = meter.read()
    lsn_a = _wal_lsn()
    t0_wall, t0 = time.time(), time.monotonic()
    churn_thread = churn.run(args.seconds) if realistic else None
    sent = _drive(web_port, queues, args.clients, args.seconds, None)
    t_sent = time.monotonic()
    if churn_thread is not None:
        churn_thread.join(timeout=120)
    cpu_b = meter.read()
    done_wall = _wait_drained(args.drain_timeout)
    t_done = time.monotonic()
    cpu_c = meter.read()
    by_process = meter.read_by_process()
    lsn_b = _wal_lsn()
    meter.stop()
    windows_p1 = sum(a[1] for a in sent.acks)
    last_ack = max((a[3] for a in sent.acks), default=t0_wall)
    ingest_s = last_ack - t0_wall
    e2e_s = (done_wall - t0_wall) if done_wall else None
    ingest_rate = windows_p1 / ingest_s if ingest_s > 0 else 0.0
    e2e_rate = windows_p1 / e2e_s if e2e_s else None
    lat = [a[3] - a[2] for a in sent.acks]
    wal_p1 = _wal_bytes(lsn_a, lsn_b)
    wal_p1_net = max(0.0, wal_p1 - background_wal_bytes_per_s * (t_done - t0))
    phase1 = {
        "batches": len(sent.acks),
        "gpu_windows": windows_p1,
        "errors": len(sent.errors),
        "error_sample": sent.errors[:3],
        "send_s": round(ingest_s, 2),
        "ingest_gpu_windows_per_s": round(ingest_rate),
        "until_all_done_s": round(e2e_s, 2) if e2e_s else None,
        "attributed_gpu_windows_per_s": round(e2e_rate) if e2e_rate else None,
        "post_latency_p50_ms": round(1000 * _pct(lat, 0.5), 1) if lat else None,
        "post_latency_p99_ms": round(1000 * _pct(lat, 0.99), 1) if lat else None,
        "warm_up_s": warm_up_s,
        "cores_while_sending": _cpu_delta(cpu_a, cpu_b, t_sent - t0),
        "cores_while_draining": _cpu_delta(cpu_b, cpu_c, max(t_done - t_sent, 1e-3)),
        "wal_bytes": wal_p1,
        "background_wal_bytes_per_s": round(background_wal_bytes_per_s),
        "wal_bytes_per_gpu_window": round(wal_p1 / windows_p1, 1) if windows_p1 else None,
        "wal_bytes_per_gpu_window_net_of_background": round(wal_p1_net / windows_p1, 1) if windows_p1 else None,
    }
    if realistic:
        phase1["churn_api_statuses"] = churn.done
    # Contention-independent view: CPU time our stack spent per GPU window (send + drain), and the
    # rate that would give if web, workers, Redis and PostgreSQL had both cores to themselves.
    spent = {k: cpu_c.get(k, 0.0) - cpu_a.get(k, 0.0) for k in cpu_c if k != "bench"}
    if windows_p1:
        phase1["cpu_us_per_gpu_window"] = {k: round(1e6 * v / windows_p1, 1) for k, v in sorted(spent.items())}
        total_us = sum(phase1["cpu_us_per_gpu_window"].values())
        phase1["cpu_us_per_gpu_window_total"] = round(total_us, 1)
        phase1["projected_gpu_windows_per_s_on_2_free_cores"] = round(2e6 / total_us) if total_us else None
        # Per web and worker process (the gunicorn and Celery masters included): the cost per window
        # spreads over processes, it does not grow with their number.
        phase1["cpu_us_per_gpu_window_by_process"] = {
            k: round(1e6 * v / windows_p1, 1)
            for k, v in sorted(by_process.items())
            if k.split(":")[0] in ("web", "worker") and v > 0.05
        }
    print(json.dumps(phase1, indent=1), flush=True)
    if done_wall is None:
        print(f"attribution did not catch up within {args.drain_timeout:g}s", file=sys.stderr)

    # Raw COPY of the same rows (machine otherwise idle: workers drained).
    print(f"raw COPY of {min(args.copy_rows, windows_p1)} of those rows into a scratch schema", flush=True)
    lsn_copy = _wal_lsn()
    t_copy = time.monotonic()
    raw = _raw_copy(min(args.copy_rows, max(windows_p1, 1)))
    copy_wal = _wal_bytes(lsn_copy, _wal_lsn())
    copy_wal_net = max(0.0, copy_wal - background_wal_bytes_per_s * (time.monotonic() - t_copy))
    # The scratch schema's DDL and drop are in it too (a few kB).
    raw["wal_bytes"] = copy_wal
    raw["wal_bytes_per_row"] = round(copy_wal / raw["rows"], 1) if raw["rows"] else None
    raw["wal_bytes_per_row_net_of_background"] = round(copy_wal_net / raw["rows"], 1) if raw["rows"] else None
    connection.close()
    print(json.dumps(raw), flush=True)

    # Phase 2: paced at half the measured end-to-end rate.
    paced = 0.5 * (e2e_rate or ingest_rate)
    print(f"phase 2: paced at {paced:,.0f} GPU windows/s for {args.fresh_seconds:g}s", flush=True)
    sent2 = _drive(web_port, queues, args.clients, args.fresh_seconds, paced)
    done2 = _wait_drained(args.drain_timeout)
    windows_p2 = sum(a[1] for a in sent2.acks)
    fresh: list[float] = []
    if sent2.acks:
        from telemetry.models import TelemetryBatch

        ack_at = {a[0]: a[3] for a in sent2.acks}
        for batch_id, attributed_at in TelemetryBatch.objects.filter(
            batch_id__in=list(ack_at), attributed_at__isnull=False
        ).values_list("batch_id", "attributed_at"):
            fresh.append(attributed_at.timestamp() - ack_at[str(batch_id)])
        connection.close()
    offered = windows_p2 / args.fresh_seconds
    phase2 = {
        "target_gpu_windows_per_s": round(paced),
        "offered_gpu_windows_per_s": round(offered),
        "batches": len(sent2.acks),
        "errors": len(sent2.errors),
        "error_sample": sent2.errors[:3],
        "drained": done2 is not None,
        "measured_batches": len(fresh),
        "freshness_p50_s": round(_pct(fresh, 0.5), 3) if fresh else None,
        "freshness_p99_s": round(_pct(fresh, 0.99), 3) if fresh else None,
        "freshness_max_s": round(max(fresh), 3) if fresh else None,
    }
    print(json.dumps(phase2, indent=1), flush=True)

    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "args": vars(args),
        "shape": args.shape,
        "wire": args.wire,
        "history": history,
        "gpu_windows_per_batch": args.windows_per_batch * GPUS_PER_HOST,
        "phase1": phase1,
        "raw_copy": raw,
        "ratio_ingest_to_raw_copy": round(ingest_rate / raw["rows_per_s"], 3),
        "ratio_attributed_to_raw_copy": round(e2e_rate / raw["rows_per_s"], 3) if e2e_rate else None,
        "phase2": phase2,
        "targets": {"gpu_windows_per_s": 50_000, "ratio_to_raw_copy": 0.5, "freshness_p99_s": 5.0},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    def row(label: str, value, target: str = "") -> None:
        print(f"  {label:<44} {value!s:>14}  {target}")

    print("\nCarbonLedger ingest benchmark", result["date"])
    row("shape", args.shape)
    if history:
        row("history (days x GPUs)", f"{history['days']} x {history['gpus']}")
    row("GPU windows per POST", result["gpu_windows_per_batch"])
    row("ingested (HTTP 202) GPU-windows/s", f"{ingest_rate:,.0f}", "target >= 50,000")
    row("attributed end to end GPU-windows/s", f"{e2e_rate:,.0f}" if e2e_rate else "n/a", "target >= 50,000")
    row("raw binary COPY (1 conn) rows/s", f"{raw['rows_per_s']:,}")
    row("ingest / raw COPY", result["ratio_ingest_to_raw_copy"], "target >= 0.5")
    row("attributed / raw COPY", result["ratio_attributed_to_raw_copy"])
    row("CPU us per GPU window (web+workers+pg+redis)", phase1.get("cpu_us_per_gpu_window_total"))
    projected = phase1.get("projected_gpu_windows_per_s_on_2_free_cores") or 0
    row("=> GPU-windows/s if the stack had 2 free cores", f"{projected:,}")
    row("WAL bytes per GPU window (net)", phase1["wal_bytes_per_gpu_window_net_of_background"])
    row("WAL bytes per row, raw COPY (net)", raw["wal_bytes_per_row_net_of_background"])
    row("freshness p50 s (paced at half)", phase2["freshness_p50_s"])
    row("freshness p99 s (paced at half)", phase2["freshness_p99_s"], "target < 5")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
