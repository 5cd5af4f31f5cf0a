"""The worker's cost of attributing stored batches, layer by layer (a benchmark, not a test).

Stores ``--rounds`` x 25 batches of ``--windows-per-batch`` windows per 8-GPU host through the
production WSGI application in this process (as ``benchmarks/post_profile.py`` does, on a
scratch database ``--db``, recreated, and a private redis-server with no worker), then attributes
them the way the Celery task does (``batches_attribute`` with rounds of 1 + 24 claims), and prints:

  * CPU per GPU window, unprofiled: this process (the worker side) and the PostgreSQL backend
    serving it, over the first half of the rounds;
  * a cProfile of the other half: cumulative CPU per GPU window of each layer (profiled times are
    inflated by the profiler; read them as shares), and the top functions by own time.

  * with ``--layers``, the timed rounds' CPU by layer, unprofiled (each layer's function wrapped
    with a CPU timer: a few hundred calls per round, no profiler's inflation).

    .venv/bin/python benchmarks/attribution_profile.py --windows-per-batch 30 --rounds 8
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's code, not an installed copy

import ingest as base  # the ingest benchmark's process, seeding and payload helpers
import post_profile  # its in-process WSGI request

CLAIMS_PER_ROUND = 25  # workers.tasks: 1 + ATTRIBUTE_EXTRA_BATCHES

# (label, file suffix, function name) of the layers reported from the profile.
LAYERS = (
    ("batches_attribute, whole round", "accounting/services/attribution.py", "batches_attribute"),
    ("  claim (work queue)", "accounting/services/work_queue.py", "batches_claim"),
    ("  _attribute_many (read, attribute, merge)", "accounting/services/attribution.py", "_attribute_many"),
    ("    read GPU series (mapper)", "accounting/mappers.py", "gpu_series_for_batches"),
    ("    read host windows (mapper)", "accounting/mappers.py", "host_windows_for_batches"),
    ("    previous windows (mapper)", "accounting/mappers.py", "previous_windows_for_many"),
    ("    allocations (mapper)", "accounting/mappers.py", "allocations_for"),
    ("    embodied rates (mapper)", "accounting/mappers.py", "embodied_rates_for"),
    ("    gap filling (domain)", "accounting/domain/energy.py", "fill_gaps"),
    ("    attribute (domain, columnar)", "accounting/domain/attribution/columnar.py", "attribute_columns"),
    ("      GPU windows as arrays", "accounting/domain/attribution/columnar.py", "_attribute_columns"),
    ("      GPU windows one by one", "accounting/domain/attribution/fast.py", "_attribute_gpu_windows"),
    ("      host windows", "accounting/domain/attribution/fast.py", "_attribute_host_windows"),
    ("      shares (exact sums)", "accounting/domain/attribution/ledger.py", "shares"),
    ("    carbonize (domain)", "accounting/domain/carbon.py", "carbonize"),
    ("    merge into the hourly ledger", "accounting/services/attribution.py", "_merge_lines"),
    ("  rollup (aggregates)", "accounting/services/rollup.py", "aggregates_rollup"),
)


# Functions of accounting.services.attribution (looked up as module globals when called) timed by
# --layers, in the order printed (the round itself is the worker's figure above).
TIMED_LAYERS = (
    "batches_claim",
    "batches_get",
    "_attribute_many",
    "batches_lock",
    "host_windows_for_batches",
    "gpu_series_for_batches",
    "previous_windows_for_many",
    "factor_lookups_for_site",
    "embodied_rates_for",
    "allocations_for",
    "_unmatched_sightings",
    "attribute_columns",
    "carbonize",
    "job_teams",
    "_raw_window_sums",
    "_merge_lines",
    "batches_record_attempts",
    "aggregates_rollup",
)


def _timed_layers(module, names: tuple[str, ...]) -> tuple[dict[str, list[float]], Callable[[], None]]:
    """Wrap ``module``'s functions ``names`` (those it has) with CPU timers; returns the totals
    (seconds, calls) by name and a function that puts the originals back."""
    totals: dict[str, list[float]] = {}
    originals = {name: getattr(module, name) for name in names if hasattr(module, name)}

    def wrapped(name, function):
        def timed(*args, **kwargs):
            t = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                total = totals.setdefault(name, [0.0, 0])
                total[0] += time.process_time() - t
                total[1] += 1

        return timed

    for name, function in originals.items():
        setattr(module, name, wrapped(name, function))

    def restore() -> None:
        for name, function in originals.items():
            setattr(module, name, function)

    return totals, restore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="carbonledger_attribution_profile")
    parser.add_argument("--hosts", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=8, help="rounds of 25 claims (half timed, half profiled)")
    parser.add_argument("--windows-per-batch", type=int, default=30, help="windows per GPU per batch")
    parser.add_argument("--history-days", type=int, default=0, help="seed this much history first (benchmarks.history)")
    parser.add_argument("--history-gpus", type=int, default=1024, help="GPUs of the history fleet")
    parser.add_argument("--layers", action="store_true", help="time the timed rounds' layers (CPU per batch)")
    args = parser.parse_args()
    procs = base.Procs()
    try:
        return _run(args, procs)
    finally:
        procs.stop_all()


def _run(args, procs: base.Procs) -> int:
    n_batches = (args.rounds + 2) * CLAIMS_PER_ROUND  # a warm-up round and the SQL round
    per_host = -(-n_batches // args.hosts)
    _env, seeds, queues, _redis_pid = post_profile._prepare(args, procs, per_host)
    import datetime as dt
    import logging

    logging.getLogger("telemetry.services").setLevel(logging.ERROR)
    from django.db import connection
    from django.utils import timezone

    from accounting.services.attribution import batches_attribute
    from telemetry.models import TelemetryBatch

    if args.history_days:
        from benchmarks.history import seed_history

        t0 = time.monotonic()
        seed_history(connection, days=args.history_days, gpus=args.history_gpus, now=dt.datetime.now(dt.UTC))
        print(f"seeded {args.history_days} d x {args.history_gpus} GPUs of history in {time.monotonic() - t0:.0f} s")
    print(f"storing {per_host * len(seeds)} batches of {8 * args.windows_per_batch} GPU windows ...", flush=True)
    batches = post_profile._Batches(seeds, queues)
    app = post_profile._InProcess()
    for _ in range(per_host * len(seeds)):
        app.post(batches)
    pks = list(
        TelemetryBatch.objects.filter(status=TelemetryBatch.Status.PENDING).order_by("pk").values_list("pk", flat=True)
    )
    backend = app.backend()

    def one_round() -> int:
        outcome = batches_attribute(batch_pks=[pks.pop(0)], now=timezone.now(), extra=CLAIMS_PER_ROUND - 1)
        if outcome.failed:
            raise RuntimeError(f"failed batches: {outcome.failed}")
        taken = set(outcome.attributed)
        pks[:] = [pk for pk in pks if pk not in taken]
        return len(outcome.attributed)

    one_round()  # warm-up: imports, caches
    gpu_windows_per_batch = 8 * args.windows_per_batch
    timed_rounds = args.rounds // 2
    if args.layers:
        import accounting.services.attribution as attribution_module

        layers, restore = _timed_layers(attribution_module, TIMED_LAYERS)
    web0, pg0, t0 = time.process_time(), post_profile._proc_cpu_s(backend), time.perf_counter()
    batches = sum(one_round() for _ in range(timed_rounds))
    web1, pg1, t1 = time.process_time(), post_profile._proc_cpu_s(backend), time.perf_counter()
    if args.layers:
        restore()
    windows = batches * gpu_windows_per_batch
    print(f"\n{batches} batches of {gpu_windows_per_batch} GPU windows in {timed_rounds} rounds, unprofiled:")
    print(f"  worker (this process)  {1e6 * (web1 - web0) / windows:8.2f} us CPU per GPU window")
    print(
        f"  PostgreSQL backend     {1e6 * (pg1 - pg0) / windows:8.2f} us CPU per GPU window "
        f"(clock ticks of 10 ms: +-{1e6 * 0.01 / windows:.2f})"
    )
    print(f"  wall                   {1e6 * (t1 - t0) / windows:8.2f} us per GPU window")
    if args.layers:
        print("\nCPU by layer over those rounds (unprofiled, us per batch; nested layers count in their callers):")
        for name in TIMED_LAYERS:
            if name in layers:
                seconds, calls = layers[name]
                print(f"  {1e6 * seconds / batches:8.1f}  x{calls:<4d} {name}")

    # The SQL of the rounds: each statement's wall time seen by the client (PostgreSQL's share).
    walls: dict[str, list[float]] = {}

    def timed(execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            text = " ".join(sql.split())[:110]
            walls.setdefault(text, []).append(time.perf_counter() - t)

    with connection.execute_wrapper(timed):
        batches = one_round()
    windows = batches * gpu_windows_per_batch
    print(f"\nSQL of one round ({batches} batches; COPY not included), wall us per GPU window, by total:")
    for text, times in sorted(walls.items(), key=lambda item: -sum(item[1]))[:15]:
        print(f"  {1e6 * sum(times) / windows:7.2f}  x{len(times):<3d} {text}")

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    batches = sum(one_round() for _ in range(args.rounds - timed_rounds))
    profiler.disable()
    windows = batches * gpu_windows_per_batch
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    print(f"\ncProfile (CPU) of {batches} batches: cumulative us per GPU window (profiled, inflated)")
    for label, suffix, name in LAYERS:
        cum = sum(
            ct
            for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in table.items()
            if func == name and filename.endswith(suffix)
        )
        print(f"  {1e6 * cum / windows:8.2f}  {label}")
    for name in ("embodied_rates_for", "carbonize", "_attribute_many"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_callees(name)
        print(f"\n{name}'s callees (CPU s over all rounds):")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-2500:])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    print("\nTop 30 by own time:")
    print("\n".join(line for line in out.getvalue().splitlines()[6:44] if line.strip()))
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
