"""Estimate a planned job from inputs alone: the same footprint builder the projections use,
so a scheduler gets the same answer before submission as the ledger's method afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accounting.domain.catalog import DeviceSpec
from accounting.domain.units import S_PER_H

from .common import (
    REL_ERROR_ESTIMATE,
    CarbonContext,
    EmbodiedPolicy,
    Footprint,
    build_footprint,
    carbon_assumptions,
    flops_at,
    fraction,
    positive,
    power_at,
    precision_bytes,
    require,
    spec_for,
)


@dataclass(frozen=True)
class EstimateResult:
    inputs: dict[str, Any]
    footprint: Footprint
    flops: float | None
    avg_power_w: float
    assumptions: list[str]


def estimate_job(
    *,
    device_key: str,
    device_count: int,
    carbon: CarbonContext,
    hours: float | None = None,
    flops: float | None = None,
    efficiency: float | None = None,
    precision: str = "bf16",
    avg_power_w: float | None = None,
    utilisation: float | None = None,
    embodied: EmbodiedPolicy | None = None,
    units: Mapping[str, float] | None = None,
    rel_error: float = REL_ERROR_ESTIMATE,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> EstimateResult:
    """Runtime from ``hours`` (wall clock) or ``flops`` / (devices × peak × efficiency);
    power from ``avg_power_w`` (per device) or ``utilisation`` (idle + (max − idle) × u)."""
    spec = spec_for(device_key, specs)
    require(isinstance(device_count, int) and device_count >= 1, "device_count", "must be an integer >= 1")
    require((hours is None) != (flops is None), "hours", "give exactly one of hours or flops")
    require(
        (avg_power_w is None) != (utilisation is None), "avg_power_w", "give exactly one of avg_power_w or utilisation"
    )
    precision_bytes(precision)
    carbon.checked()
    if embodied is not None:
        embodied.checked()
    notes: list[str] = []
    if hours is not None:
        runtime_s = positive(hours, "hours") * S_PER_H
        notes.append(f"runtime {hours:g} h wall clock on {device_count} × {spec.key} (given)")
    else:
        flops_checked = positive(flops, "flops")
        eff = fraction(efficiency if efficiency is not None else 0.4, "efficiency")
        require(eff > 0, "efficiency", "must be > 0")
        peak = flops_at(spec, precision, notes)
        runtime_s = flops_checked / (device_count * peak * eff)
        notes.append(
            f"runtime = {flops:.3g} FLOP / ({device_count} × {peak / 1e12:g} TFLOP/s {precision} × "
            f"{eff:g} efficiency{' (default MFU 0.4)' if efficiency is None else ''})"
        )
    if avg_power_w is not None:
        power_w = positive(avg_power_w, "avg_power_w")
        notes.append(f"average power {power_w:g} W per device (given)")
        if power_w > spec.max_power_w:
            notes.append(
                f"given power exceeds the {spec.key} limit {spec.max_power_w:g} W: read as including the "
                "device's share of host power"
            )
    else:
        u = fraction(utilisation, "utilisation")
        power_w = power_at(spec, u)
        notes.append(
            f"average power = {spec.idle_power_w:g} W idle + ({spec.max_power_w:g} − {spec.idle_power_w:g}) W × {u:g} "
            f"= {power_w:g} W per device"
        )
    it_energy_j = power_w * runtime_s * device_count
    fp = build_footprint(
        device_key=spec.key,
        device_count=device_count,
        runtime_s=runtime_s,
        it_energy_j=it_energy_j,
        carbon=carbon,
        embodied=embodied,
        rel_error=rel_error,
        basis="modelled",
        units=units,
    )
    notes.extend(carbon_assumptions(carbon, embodied, rel_error))
    return EstimateResult(
        inputs={
            "device_key": spec.key,
            "device_count": device_count,
            "hours": hours,
            "flops": flops,
            "efficiency": efficiency,
            "precision": precision,
            "avg_power_w": avg_power_w,
            "utilisation": utilisation,
            "pue": carbon.pue,
            "intensity_g_per_kwh": carbon.intensity_g_per_kwh,
        },
        footprint=fp,
        flops=flops,
        avg_power_w=power_w,
        assumptions=notes,
    )
