"""Parallel mapping: a training job on more or fewer devices. Compute divides evenly; each
step all-reduces the gradients (ring: 2(n−1)/n × gradient bytes per device) over the slowest
link: NVLink/Infinity Fabric within a node, a declared inter-node bandwidth beyond it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accounting.domain.catalog import DeviceSpec
from accounting.domain.energy import facility_energy_j
from accounting.domain.units import J_PER_KWH

from .common import (
    CarbonContext,
    fraction,
    link_gb_s,
    positive,
    power_at,
    require,
    ring_allreduce_factor,
    spec_for,
)


@dataclass(frozen=True)
class ScalingPoint:
    device_count: int
    runtime_s: float
    compute_s: float
    comm_s: float
    speedup: float  # vs one device
    scaling_efficiency: float  # speedup / device_count
    energy_j: float
    co2e_g: float | None


@dataclass(frozen=True)
class ParallelScaling:
    inputs: dict[str, Any]
    points: list[ScalingPoint]
    knee_count: int  # largest count whose scaling efficiency stays >= the threshold
    assumptions: list[str]


def parallel_scaling(
    *,
    device_key: str,
    counts: Sequence[int],
    compute_device_s: float,
    steps: float,
    gradient_bytes: float,
    busy_utilisation: float = 0.9,
    comm_utilisation: float = 0.3,
    overlap: float = 0.0,
    devices_per_node: int = 8,
    inter_node_gb_s: float = 50.0,
    efficiency_threshold: float = 0.7,
    carbon: CarbonContext | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> ParallelScaling:
    spec = spec_for(device_key, specs)
    require(len(counts) > 0, "counts", "give at least one device count")
    for i, n in enumerate(counts):
        require(isinstance(n, int) and n >= 1, f"counts[{i}]", "must be an integer >= 1")
    positive(compute_device_s, "compute_device_s")
    positive(steps, "steps")
    positive(gradient_bytes, "gradient_bytes")
    fraction(busy_utilisation, "busy_utilisation")
    fraction(comm_utilisation, "comm_utilisation")
    fraction(overlap, "overlap")
    positive(inter_node_gb_s, "inter_node_gb_s")
    if carbon is not None:
        carbon.checked()
    p_busy = power_at(spec, busy_utilisation)
    p_comm = power_at(spec, comm_utilisation)
    points = []
    for n in sorted(set(counts)):
        compute_s = compute_device_s / n
        bw = link_gb_s(spec, n, devices_per_node=devices_per_node, inter_node_gb_s=inter_node_gb_s)
        comm_s = steps * ring_allreduce_factor(n) * gradient_bytes / (bw * 1e9) * (1 - overlap)
        runtime = compute_s + comm_s
        speedup = compute_device_s / runtime
        energy = n * (compute_s * p_busy + comm_s * p_comm)
        co2 = None
        if carbon is not None:
            total_j = energy + facility_energy_j(it_energy_j=energy, pue=carbon.pue)
            co2 = total_j / J_PER_KWH * carbon.intensity_g_per_kwh
        points.append(ScalingPoint(n, runtime, compute_s, comm_s, speedup, speedup / n, energy, co2))
    ok = [p.device_count for p in points if p.scaling_efficiency >= efficiency_threshold]
    knee = max(ok) if ok else min(p.device_count for p in points)
    return ParallelScaling(
        inputs={
            "device_key": spec.key,
            "counts": sorted(set(counts)),
            "compute_device_s": compute_device_s,
            "steps": steps,
            "gradient_bytes": gradient_bytes,
            "overlap": overlap,
            "inter_node_gb_s": inter_node_gb_s,
        },
        points=points,
        knee_count=knee,
        assumptions=[
            "data parallel: compute device-seconds divide evenly across devices",
            f"ring all-reduce per step: 2(n−1)/n × {gradient_bytes:.3g} B over "
            f"{spec.interconnect_gb_s or spec.pcie_gb_s:g} "
            f"GB/s within {devices_per_node} devices, {inter_node_gb_s:g} GB/s inter-node beyond",
            f"communication overlapped with compute: {overlap:.0%}",
            f"power: compute at utilisation-equivalent {busy_utilisation:g} ({p_busy:.0f} W), "
            f"communication at {comm_utilisation:g} ({p_comm:.0f} W)",
            f"knee: largest count with scaling efficiency >= {efficiency_threshold:g}",
        ],
    )


def compute_device_s_from_job(
    *,
    device_key: str,
    device_count: int,
    runtime_s: float,
    steps: float,
    gradient_bytes: float,
    avg_util: float | None = None,
    inter_node_gb_s: float = 50.0,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> float:
    """Back out compute device-seconds from a measured run: (runtime − modelled comm) × count,
    with only the busy share of runtime counted."""
    spec = spec_for(device_key, specs)
    positive(runtime_s, "runtime_s")
    bw = link_gb_s(spec, device_count, inter_node_gb_s=inter_node_gb_s)
    comm = steps * ring_allreduce_factor(device_count) * gradient_bytes / (bw * 1e9)
    busy = runtime_s * (1.0 if avg_util is None else avg_util)
    require(busy > comm, "runtime_s", f"modelled communication {comm:.0f} s exceeds the busy runtime {busy:.0f} s")
    return (busy - comm) * device_count
