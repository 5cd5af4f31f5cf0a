"""Micro-benchmark of the pure domain attribution (not a test): µs per GPU window, reference vs new.

Compares ``accounting.domain.attribution.attribute`` with the frozen pre-optimisation copy in
``tests/domain/reference_attribution.py`` on synthetic batches shaped like the agent's: one
host, 8 GPUs, consecutive 10 s windows (one host window per tick, with wall energy unless
``--no-wall``), one process per busy GPU, allocations covering the whole batch. Both
implementations run in the same process, interleaved round by round, and every result is
checked to be identical.

``--columnar`` also times ``attribute_columns`` on the same windows as ``GpuColumns`` (the
columnar raw store's form, as the worker now reads it) and, for comparison, building the
per-window ``GpuWindowIn`` objects from those columns (what the worker did before attributing
them one by one).

    .venv/bin/python benchmarks/attribution_micro.py            # default: 7 rounds
    .venv/bin/python benchmarks/attribution_micro.py --rounds 15 --carbonize

Reported figure per case: the best (minimum) round, in µs per GPU window (host windows and
everything else attribute() does included), then the median; the ratio is reference / new.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accounting.domain import attribution as new
from accounting.domain.attribution.columnar import GpuColumns, attribute_columns
from accounting.domain.carbon import EmbodiedRate, carbonize
from accounting.domain.timebase import to_us
from accounting.domain.types import (
    QUALITY_RANK,
    Allocation,
    GpuWindowIn,
    HostWindowIn,
    IntensityPoint,
    ProcessSample,
    Quality,
)
from tests.domain import reference_attribution as ref

GPUS = 8
TICK_S = 10
T0 = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)  # 120 windows (20 min) stay inside the hour


def _batch(n_windows: int, *, shared: bool):
    stamps = [T0 + timedelta(seconds=TICK_S * i) for i in range(n_windows + 1)]  # shared objects, like the mapper
    horizon_start, horizon_end = T0 - timedelta(hours=3), None
    allocations: list[Allocation] = []
    procs: dict[int, tuple[ProcessSample, ...]] = {}
    if not shared:
        # As benchmarks/ingest.py: job 1 holds GPUs 0-3, job 2 GPUs 4-6, GPU 7 idle (fleet).
        for device in range(GPUS - 1):
            job = 1 if device < 4 else 2
            allocations.append(Allocation(job, device, horizon_start, horizon_end, 1.0, frozenset({f"slurm:{job}"})))
            procs[device] = (ProcessSample(pid=1000 + device, sm_util_pct=87.0, job_key=f"slurm:{job}"),)
        procs[GPUS - 1] = ()
    else:
        # Every GPU shared: even devices time-sliced by two jobs (0.5 + 0.5) with per-process
        # utilisation; odd devices MIG (0.25 + 0.5 + 0.125, one eighth unheld) without it.
        for device in range(GPUS):
            if device % 2 == 0:
                jobs = ((10 + device, 0.5), (11 + device, 0.5))
                procs[device] = tuple(
                    ProcessSample(pid=2000 + 10 * device + k, sm_util_pct=30.0 + 20 * k, job_key=f"slurm:{job}")
                    for k, (job, _) in enumerate(jobs)
                )
            else:
                jobs = ((10 + device, 0.25), (11 + device, 0.5), (12 + device, 0.125))
                procs[device] = ()
            for job, fraction in jobs:
                allocations.append(
                    Allocation(job, device, horizon_start, horizon_end, fraction, frozenset({f"slurm:{job}"}))
                )
    gpu_windows = [
        GpuWindowIn(
            device_id=device,
            seq=i,
            start=stamps[i],
            end=stamps[i + 1],
            energy_j=3_100.0 + 7.0 * ((device * 31 + i * 17) % 50),
            avg_power_w=310.0,
            util_pct=87.0,
            quality=Quality.MEASURED,
            idle_power_w=60.0,
            processes=procs[device],
        )
        for device in range(GPUS)
        for i in range(n_windows)
    ]
    host_windows = [
        HostWindowIn(
            seq=i,
            start=stamps[i],
            end=stamps[i + 1],
            cpu_energy_j=2_400.0 + i,
            dram_energy_j=400.0,
            quality=Quality.MEASURED,
            wall_energy_j=32_000.0,
        )
        for i in range(n_windows)
    ]
    return {
        "gpu_windows": gpu_windows,
        "host_windows": host_windows,
        "allocations": allocations,
        "host_gpu_slots": GPUS,
    }


def _columns(gpu_windows: list[GpuWindowIn]) -> list[GpuColumns]:
    """The windows as one ``GpuColumns`` per device (runs: consecutive windows sharing a process tuple)."""
    by_device: dict[int, list[GpuWindowIn]] = {}
    for window in gpu_windows:
        by_device.setdefault(window.device_id, []).append(window)
    out = []
    for device, windows in by_device.items():
        runs = []
        for i, w in enumerate(windows):
            if not runs or runs[-1][1] is not w.processes or runs[-1][2] is not w.mig_instances:
                runs.append((i, w.processes, w.mig_instances))
        out.append(
            GpuColumns(
                device_id=device,
                seq=[w.seq for w in windows],
                start_us=[to_us(w.start) for w in windows],
                end_us=[to_us(w.end) for w in windows],
                energy_j=[w.energy_j for w in windows],
                avg_power_w=[w.avg_power_w for w in windows],
                util_pct=[w.util_pct for w in windows],
                quality_rank=[QUALITY_RANK[w.quality] for w in windows],
                idle_power_w=windows[0].idle_power_w,
                runs=tuple(runs),
                energy_covers=windows[0].energy_covers,
            )
        )
    return out


def _time(fn, kwargs, repeat: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(repeat):
        fn(**kwargs)
    return (time.perf_counter() - start) / repeat


def _carbonize(shares):
    point = IntensityPoint(intensity_g_per_kwh=350.0, source="annual:bench", low_g_per_kwh=300.0, high_g_per_kwh=400.0)
    return carbonize(
        shares=shares,
        pue_at=lambda hour: (1.3, 1),
        intensity_at=lambda hour: point,
        embodied_rates={d: EmbodiedRate(0.001, 0.0005, 0.002, 1) for d in range(GPUS)},
        factor_versions={"method": 1},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--min-windows-per-round",
        type=int,
        default=4_000,
        help="GPU windows attributed per implementation per round (sets the repeat count)",
    )
    parser.add_argument("--carbonize", action="store_true", help="also time carbonize() of the new shares")
    parser.add_argument("--columnar", action="store_true", help="also time attribute_columns() (see above)")
    parser.add_argument("--no-wall", action="store_true", help="host windows without wall energy")
    args = parser.parse_args()

    sizes = (6, 30, 120) if args.columnar else (30, 120)
    cases = [
        (f"{kind}, 8 GPUs x {n} windows", _batch(n, shared=kind == "shared"))
        for kind in ("exclusive", "shared")
        for n in sizes
    ]
    if args.no_wall:
        for _, kwargs in cases:
            kwargs["host_windows"] = [
                HostWindowIn(w.seq, w.start, w.end, w.cpu_energy_j, w.dram_energy_j, w.quality)
                for w in kwargs["host_windows"]
            ]
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds, best (median) µs per GPU window")
    print(f"{'case':34} {'reference':>18} {'new':>18} {'speed-up':>16}")
    for name, kwargs in cases:
        expected, got = ref.attribute(**kwargs), new.attribute(**kwargs)
        if (got.shares, got.diagnostics) != (expected.shares, expected.diagnostics):
            raise SystemExit(f"{name}: new attribute() differs from the reference")
        n = len(kwargs["gpu_windows"])
        repeat = max(1, args.min_windows_per_round // n)
        ref_us, new_us = [], []
        for _ in range(args.rounds):
            ref_us.append(_time(ref.attribute, kwargs, repeat) / n * 1e6)
            new_us.append(_time(new.attribute, kwargs, repeat) / n * 1e6)
        r_best, n_best = min(ref_us), min(new_us)
        r_med, n_med = statistics.median(ref_us), statistics.median(new_us)
        print(
            f"{name:34} {r_best:8.2f} ({r_med:6.2f}) {n_best:8.2f} ({n_med:6.2f}) "
            f"{r_best / n_best:6.1f}x ({r_med / n_med:4.1f}x)"
        )
        if args.columnar:
            columnar = {**kwargs, "gpu_columns": _columns(kwargs["gpu_windows"])}
            del columnar["gpu_windows"]
            result = attribute_columns(**columnar)
            if (result.shares, result.diagnostics) != (got.shares, got.diagnostics):
                raise SystemExit(f"{name}: attribute_columns() differs from attribute()")
            columns = columnar["gpu_columns"]
            c_us = [_time(attribute_columns, columnar, repeat) / n * 1e6 for _ in range(args.rounds)]
            b_us = [
                _time(lambda columns=columns: [w for c in columns for w in c.windows()], {}, repeat) / n * 1e6
                for _ in range(args.rounds)
            ]
            print(
                f"{'  columnar: attribute_columns()':34} {min(c_us):8.2f} ({statistics.median(c_us):6.2f})"
                f"   per window: attribute() + building the windows {n_best + min(b_us):.2f}"
                f" ({n_med + statistics.median(b_us):.2f})"
            )
        if args.carbonize:
            shares = got.shares
            c_us = min(
                _time(lambda shares=shares: _carbonize(shares), {}, repeat) / n * 1e6 for _ in range(args.rounds)
            )
            print(f"{'  carbonize() of those shares':34} {c_us:8.2f} µs per GPU window ({len(shares)} shares)")


if __name__ == "__main__":
    main()
