"""Power caps: the energy–time trade-off per device model.

Slowdown of the compute-bound share under a cap c: (P / c)^α where P is the job's average
draw (the cap only binds below it), α ≈ 0.5 by default (clock ∝ roughly √power near the top
of the V/f curve); the memory-bound share is almost insensitive (α_mem 0.05); stalls unchanged.
Power under the cap = min(P, c); energy = power × time. α can be fitted from our own jobs run
under different caps."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accounting.domain.catalog import DeviceSpec
from accounting.domain.energy import facility_energy_j
from accounting.domain.units import J_PER_KWH

from .common import (
    CarbonContext,
    fraction,
    positive,
    require,
    spec_for,
)


@dataclass(frozen=True)
class CapRun:
    """One measured run of a job (same ``job_key`` = same work) under a power cap."""

    job_key: str
    cap_w: float
    runtime_s: float


def fit_alpha(*, runs: Sequence[CapRun], compute_share: float) -> tuple[float, int] | None:
    """Median α over pairs of runs of the same job: t2/t1 = (1 − f) + f·(c1/c2)^α.
    Returns (alpha, number of jobs used) or None when no job has two usable caps."""
    fraction(compute_share, "compute_share")
    require(compute_share > 0, "compute_share", "must be > 0 to fit α")
    by_job: dict[str, list[CapRun]] = {}
    for r in runs:
        by_job.setdefault(r.job_key, []).append(r)
    alphas: list[float] = []
    jobs_used = 0
    for job_runs in by_job.values():
        job_runs = sorted(job_runs, key=lambda r: -r.cap_w)
        ref = job_runs[0]
        used = False
        for r in job_runs[1:]:
            if r.cap_w >= ref.cap_w or r.runtime_s <= 0 or ref.runtime_s <= 0:
                continue
            scaled = (r.runtime_s / ref.runtime_s - (1 - compute_share)) / compute_share
            if scaled <= 0:
                continue
            alphas.append(math.log(scaled) / math.log(ref.cap_w / r.cap_w))
            used = True
        jobs_used += used
    if not alphas:
        return None
    return max(0.0, statistics.median(alphas)), jobs_used


@dataclass(frozen=True)
class CapPoint:
    cap_w: float
    runtime_s: float
    avg_power_w: float
    energy_j: float
    slowdown: float
    energy_saving_fraction: float
    co2e_g: float | None


@dataclass(frozen=True)
class PowerCapCurve:
    inputs: dict[str, Any]
    points: list[CapPoint]
    alpha: float
    alpha_source: str
    fitted_from_jobs: int
    min_energy_cap_w: float
    assumptions: list[str]


def power_cap_curve(
    *,
    device_key: str,
    device_count: int,
    runtime_s: float,
    avg_power_w: float,
    caps_w: Sequence[float],
    compute_share: float,
    memory_share: float,
    alpha: float = 0.5,
    alpha_memory: float = 0.05,
    calibration_runs: Sequence[CapRun] = (),
    carbon: CarbonContext | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> PowerCapCurve:
    spec = spec_for(device_key, specs)
    require(device_count >= 1, "device_count", "must be >= 1")
    positive(runtime_s, "runtime_s")
    positive(avg_power_w, "avg_power_w")
    fraction(compute_share, "compute_share")
    fraction(memory_share, "memory_share")
    require(compute_share + memory_share <= 1 + 1e-9, "memory_share", "compute_share + memory_share must be <= 1")
    require(len(caps_w) > 0, "caps_w", "give at least one cap")
    for i, c in enumerate(caps_w):
        require(spec.idle_power_w < c, f"caps_w[{i}]", f"must exceed {spec.key} idle power {spec.idle_power_w:g} W")
    if carbon is not None:
        carbon.checked()
    notes: list[str] = []
    source, fitted_n = "default", 0
    if calibration_runs:
        fit = fit_alpha(runs=calibration_runs, compute_share=compute_share)
        if fit is not None:
            alpha, fitted_n = fit
            source = f"fitted from {fitted_n} jobs run under different caps"
    notes += [
        f"compute-bound share {compute_share:g} slows by (P/cap)^{alpha:.3g} ({source}); memory-bound share "
        f"{memory_share:g} by (P/cap)^{alpha_memory:g}; the rest (stalls, communication) unchanged",
        f"the cap binds only below the job's average draw {avg_power_w:g} W; power under the cap = min(P, cap)",
        "energy = power × time × devices (GPU only)",
    ]
    e0 = avg_power_w * runtime_s * device_count
    points = []
    for cap in caps_w:
        r = min(1.0, cap / avg_power_w)
        slow = compute_share * r ** (-alpha) + memory_share * r ** (-alpha_memory) + (1 - compute_share - memory_share)
        t = runtime_s * slow
        p = min(avg_power_w, cap)
        e = p * t * device_count
        co2 = None
        if carbon is not None:
            co2 = (e + facility_energy_j(it_energy_j=e, pue=carbon.pue)) / J_PER_KWH * carbon.intensity_g_per_kwh
        points.append(
            CapPoint(
                cap_w=float(cap),
                runtime_s=t,
                avg_power_w=p,
                energy_j=e,
                slowdown=slow,
                energy_saving_fraction=1 - e / e0,
                co2e_g=co2,
            )
        )
    best = min(points, key=lambda pt: (pt.energy_j, -pt.cap_w))
    return PowerCapCurve(
        inputs={
            "device_key": spec.key,
            "device_count": device_count,
            "runtime_s": runtime_s,
            "avg_power_w": avg_power_w,
            "caps_w": list(caps_w),
            "compute_share": compute_share,
            "memory_share": memory_share,
        },
        points=points,
        alpha=alpha,
        alpha_source=source,
        fitted_from_jobs=fitted_n,
        min_energy_cap_w=best.cap_w,
        assumptions=notes,
    )
