"""Estimate a planned job from inputs alone: the same footprint builder the projections use and
the ledger's own terms (GPU energy, the host's share of host energy, facility energy by PUE,
GPU and host embodied carbon amortised with the ledger's lifetime and expected utilisation), so
a scheduler gets the same answer before submission as the ledger gives afterwards."""

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
from .host import DEFAULT_HOST, HostShare


@dataclass(frozen=True)
class EstimateResult:
    inputs: dict[str, Any]
    footprint: Footprint
    flops: float | None
    avg_power_w: float
    assumptions: list[str]


DEFAULT_MFU = 0.4  # model FLOPs utilisation of large dense training (PaLM reports 46 %, GPT-3 21 %)


def estimate_job(
    *,
    device_count: int,
    carbon: CarbonContext,
    device_key: str | None = None,
    device: DeviceSpec | None = None,
    hours: float | None = None,
    device_hours: float | None = None,
    flops: float | None = None,
    parameters: float | None = None,
    tokens: float | None = None,
    efficiency: float | None = None,
    precision: str = "bf16",
    avg_power_w: float | None = None,
    utilisation: float | None = None,
    embodied: EmbodiedPolicy | None = None,
    host: HostShare | None = DEFAULT_HOST,
    units: Mapping[str, float] | None = None,
    rel_error: float = REL_ERROR_ESTIMATE,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> EstimateResult:
    """Runtime from ``hours`` (wall clock), ``device_hours`` (GPU-hours over all devices),
    ``flops`` or ``parameters`` × ``tokens`` (6·N·D) / (devices × peak × efficiency); power per
    device from ``avg_power_w`` or ``utilisation`` (idle + (max − idle) × u).

    The device is a catalog (or inventory) key, or ``device``: one described by its figures
    (``catalog.device_from_figures``). ``host`` adds the host's share of energy and embodied
    carbon per GPU (``host.DEFAULT_HOST`` unless given; None leaves the host out, for a power
    figure that already includes it)."""
    require((device_key is None) != (device is None), "device_key", "give exactly one of device_key or device")
    spec = device if device is not None else spec_for(str(device_key), specs)
    require(
        isinstance(device_count, int) and not isinstance(device_count, bool) and device_count >= 1,
        "device_count",
        "must be an integer >= 1",
    )
    given = [name for name, v in (("hours", hours), ("device_hours", device_hours), ("flops", flops)) if v is not None]
    if parameters is not None or tokens is not None:
        given.append("parameters")
    require(len(given) == 1, "hours", "give exactly one of hours, device_hours, flops or parameters with tokens")
    require(
        (avg_power_w is None) != (utilisation is None), "avg_power_w", "give exactly one of avg_power_w or utilisation"
    )
    precision_bytes(precision)
    carbon.checked()
    if embodied is not None:
        embodied.checked()
    if host is not None:
        host.checked()
    notes: list[str] = []
    if device is not None:
        notes.append(f"device {spec.key} described by its figures ({spec.sources.get('figures', 'given')})")
    if parameters is not None or tokens is not None:
        n_params = positive(parameters, "parameters")
        n_tokens = positive(tokens, "tokens")
        flops = 6 * n_params * n_tokens
        notes.append(f"training FLOPs = 6 × {n_params:.4g} parameters × {n_tokens:.4g} tokens = {flops:.4g}")
        units = {"tokens": n_tokens, **dict(units or {})}
    if hours is not None:
        runtime_s = positive(hours, "hours") * S_PER_H
        notes.append(f"runtime {hours:g} h wall clock on {device_count} × {spec.key} (given)")
    elif device_hours is not None:
        runtime_s = positive(device_hours, "device_hours") * S_PER_H / device_count
        notes.append(
            f"runtime = {device_hours:g} device-hours / {device_count} devices = {runtime_s / S_PER_H:.6g} h (given)"
        )
    else:
        flops_checked = positive(flops, "flops")
        eff = fraction(efficiency if efficiency is not None else DEFAULT_MFU, "efficiency")
        require(eff > 0, "efficiency", "must be > 0")
        peak = flops_at(spec, precision, notes)
        runtime_s = flops_checked / (device_count * peak * eff)
        notes.append(
            f"runtime = {flops_checked:.4g} FLOP / ({device_count} × {peak / 1e12:g} TFLOP/s {precision} × "
            f"{eff:g} efficiency{f' (default MFU {DEFAULT_MFU:g})' if efficiency is None else ''})"
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
    device_h = device_count * runtime_s / S_PER_H
    gpu_energy_j = power_w * runtime_s * device_count
    if host is None:
        host_j, host_g = 0.0, (0.0, 0.0, 0.0)
        notes.append("host left out: no host energy or host embodied carbon (the power given includes it)")
    else:
        host_j = host.power_per_device_w * runtime_s * device_count
        host_g = host.charge_g(device_h)
        notes.append(
            f"host share as the ledger charges it: {host.power_w:g} W and "
            f"{host.embodied.embodied_kg if host.embodied else 0:g} kgCO2e embodied per host over "
            f"{host.gpu_slots} GPU slots = {host.power_per_device_w:g} W per device"
            + (f" ({host.source})" if host.source else "")
        )
    fp = build_footprint(
        device_key=spec.key,
        device_count=device_count,
        runtime_s=runtime_s,
        it_energy_j=gpu_energy_j + host_j,
        carbon=carbon,
        embodied=embodied,
        rel_error=rel_error,
        basis="modelled",
        units=units,
        host_energy_j=host_j,
        host_embodied_g=host_g,
    )
    notes.extend(carbon_assumptions(carbon, embodied, rel_error))
    return EstimateResult(
        inputs={
            "device_key": spec.key,
            "device_count": device_count,
            "hours": hours,
            "device_hours": device_h,
            "flops": flops,
            "parameters": parameters,
            "tokens": tokens,
            "efficiency": efficiency,
            "precision": precision,
            "avg_power_w": avg_power_w,
            "utilisation": utilisation,
            "pue": carbon.pue,
            "intensity_g_per_kwh": carbon.intensity_g_per_kwh,
            "host_power_w": host.power_w if host is not None else None,
            "host_gpu_slots": host.gpu_slots if host is not None else None,
        },
        footprint=fp,
        flops=flops,
        avg_power_w=power_w,
        assumptions=notes,
    )
