"""Calibration: where our own fleet ran jobs of one family on both devices, the measured
median ratio beats the roofline guess. Ratios are of medians per functional unit:
device-seconds per unit and GPU energy per unit."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .common import REL_ERROR_CALIBRATED, require


@dataclass(frozen=True)
class MeasuredJob:
    """A finished job as the ledger measured it (GPU energy, not host or facility)."""

    device_key: str
    device_count: int
    runtime_s: float
    gpu_energy_j: float
    family: str = "other"
    kind: str = "training"
    precision: str = "bf16"
    avg_util: float | None = None  # 0..1, share of time a kernel ran (NVML utilisation)
    units: Mapping[str, float] = field(default_factory=dict)
    split: tuple[float, float, float] | None = None  # measured compute/memory/comm shares
    model_meta: Mapping[str, Any] = field(default_factory=dict)
    power_cap_w: float | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class Calibration:
    source_key: str
    target_key: str
    family: str
    kind: str | None
    unit: str
    runtime_ratio: float  # target device-seconds per unit / source device-seconds per unit
    energy_ratio: float  # target GPU energy per unit / source GPU energy per unit
    n_source: int
    n_target: int
    rel_error: float
    assumptions: list[str]


def _iqr_rel(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    med = statistics.median(values)
    return (q[2] - q[0]) / (2 * med) if med > 0 else 0.0


def calibrate(
    *,
    jobs: Sequence[MeasuredJob],
    source_key: str,
    target_key: str,
    family: str,
    unit: str,
    kind: str | None = None,
    min_jobs_per_side: int = 1,
) -> Calibration | None:
    """Median-ratio calibration between two devices, or None if either side has too few jobs."""
    require(bool(unit), "unit", "a functional unit is needed to compare jobs of different sizes")

    def per_unit(key: str) -> tuple[list[float], list[float]]:
        time_pu, energy_pu = [], []
        for j in jobs:
            if j.device_key != key or j.family != family or (kind is not None and j.kind != kind):
                continue
            n_units = j.units.get(unit) if j.units else None
            if not n_units or n_units <= 0 or j.runtime_s <= 0 or j.gpu_energy_j <= 0:
                continue
            time_pu.append(j.runtime_s * j.device_count / n_units)
            energy_pu.append(j.gpu_energy_j / n_units)
        return time_pu, energy_pu

    src_t, src_e = per_unit(source_key)
    tgt_t, tgt_e = per_unit(target_key)
    if len(src_t) < min_jobs_per_side or len(tgt_t) < min_jobs_per_side:
        return None
    spread = (sum(x * x for x in (_iqr_rel(src_t), _iqr_rel(tgt_t), _iqr_rel(src_e), _iqr_rel(tgt_e)))) ** 0.5
    rel = max(REL_ERROR_CALIBRATED, spread)
    return Calibration(
        source_key=source_key,
        target_key=target_key,
        family=family,
        kind=kind,
        unit=unit,
        runtime_ratio=statistics.median(tgt_t) / statistics.median(src_t),
        energy_ratio=statistics.median(tgt_e) / statistics.median(src_e),
        n_source=len(src_t),
        n_target=len(tgt_t),
        rel_error=rel,
        assumptions=[
            f"calibrated from measured {family} jobs: {len(src_t)} on {source_key}, {len(tgt_t)} on {target_key}",
            f"ratio of medians per {unit!r}: device-seconds and GPU energy; band ±{rel:.0%} "
            "(interquartile spread, floor 10%)",
        ],
    )
