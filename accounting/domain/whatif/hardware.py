"""Hardware upgrade of one measured job: roofline-style projection onto another device/count.

Busy time (avg utilisation × runtime) splits into compute-, memory-bandwidth- and
communication-bound parts; each part scales with the ratio of the source's to the target's
capability (peak FLOP/s at the job's precision, HBM bandwidth, interconnect). The idle/stall
part (1 − utilisation: input pipeline, host, I/O) does not change with the accelerator."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accounting.domain.catalog import CATALOG, DeviceSpec

from .calibration import Calibration, MeasuredJob
from .common import (
    REL_ERROR_MEASURED,
    REL_ERROR_ROOFLINE,
    CarbonContext,
    EmbodiedPolicy,
    Footprint,
    build_footprint,
    carbon_assumptions,
    family_split,
    flops_at,
    link_gb_s,
    meta_number,
    positive,
    power_at,
    precision_bytes,
    require,
    ring_allreduce_factor,
    spec_for,
    utilisation_equivalent,
)
from .power_cap import CapRun, power_cap_curve

USABLE_MEMORY_FRACTION = 0.90  # runtime, activations, fragmentation take the rest


@dataclass(frozen=True)
class MemoryRequirement:
    weights_gb: float
    kv_cache_gb: float
    total_gb: float
    assumptions: list[str]


def inference_memory_gb(
    model_meta: Mapping[str, Any], *, precision: str, kv_precision: str | None = None
) -> MemoryRequirement | None:
    """Weights + KV cache of an LLM/MoE server from model_meta, or None without a parameter count.

    Keys read: parameters (total), layers, kv_heads (or heads), head_dim (or hidden_size/heads,
    or hidden_size for multi-head attention), batch_size, context_tokens."""
    params = meta_number(model_meta, "parameters", "total_parameters", "params")
    if params is None:
        return None
    notes: list[str] = []
    w_bytes = precision_bytes(precision)
    weights_gb = params * w_bytes / 1e9
    layers = meta_number(model_meta, "layers", "num_layers")
    heads = meta_number(model_meta, "heads", "num_heads")
    kv_heads = meta_number(model_meta, "kv_heads", "num_kv_heads") or heads
    hidden = meta_number(model_meta, "hidden_size", "d_model")
    head_dim = meta_number(model_meta, "head_dim") or (hidden / heads if hidden and heads else None)
    kv_dim = kv_heads * head_dim if kv_heads and head_dim else hidden
    batch = meta_number(model_meta, "batch_size") or 1.0
    context = meta_number(model_meta, "context_tokens", "context_len", "max_seq_len")
    kv_gb = 0.0
    if layers and kv_dim and context:
        kv_bytes = precision_bytes(kv_precision or precision, "kv_precision")
        kv_gb = 2 * layers * kv_dim * kv_bytes * batch * context / 1e9
        notes.append(
            f"KV cache = 2 × {layers:g} layers × {kv_dim:g} KV dims × {kv_bytes:g} B × batch {batch:g} × "
            f"context {context:g} tokens = {kv_gb:.1f} GB"
        )
    else:
        notes.append("KV cache not counted: model_meta lacks layers / KV dims / context_tokens")
    notes.insert(0, f"weights = {params:g} parameters × {w_bytes:g} B = {weights_gb:.1f} GB")
    return MemoryRequirement(weights_gb=weights_gb, kv_cache_gb=kv_gb, total_gb=weights_gb + kv_gb, assumptions=notes)


def min_devices_for(required_gb: float, spec: DeviceSpec) -> int:
    return max(1, math.ceil(required_gb / (spec.memory_gb * USABLE_MEMORY_FRACTION) - 1e-9))


@dataclass(frozen=True)
class RooflineRatio:
    time_ratio: float  # target runtime / source runtime
    split: tuple[float, float, float]
    compute_ratio: float
    memory_ratio: float
    comm_ratio: float
    assumptions: list[str]


def roofline_time_ratio(
    *,
    source: DeviceSpec,
    target: DeviceSpec,
    source_count: int,
    target_count: int,
    family: str,
    kind: str,
    precision: str,
    target_precision: str,
    avg_util: float | None,
    split: tuple[float, float, float] | None,
    inter_node_gb_s: float = 50.0,
) -> RooflineRatio:
    notes: list[str] = []
    if split is None:
        fc, fm, fn = family_split(family, kind)
        notes.append(f"time split compute/memory/communication {fc:g}/{fm:g}/{fn:g} (family default {family} {kind})")
    else:
        require(all(x >= 0 for x in split) and sum(split) > 0, "split", "shares must be >= 0 and not all 0")
        total = sum(split)
        fc, fm, fn = (x / total for x in split)
        notes.append(f"time split compute/memory/communication {fc:.2f}/{fm:.2f}/{fn:.2f} (measured profile)")
    if source_count == 1 and fn > 0:
        fc, fm = fc / (fc + fm), fm / (fc + fm)
        fn = 0.0
        notes.append("single-device source: no communication time; its default share folded into compute/memory")
    u = 1.0 if avg_util is None else avg_util
    if avg_util is None:
        notes.append("no utilisation measured: all runtime treated as busy (no host/input stalls)")
    else:
        notes.append(f"{1 - u:.0%} of runtime idle/stalled (1 − avg utilisation): unchanged on the target")
    src_flops = flops_at(source, precision, notes)
    tgt_flops = flops_at(target, target_precision, notes)
    r_c = src_flops / tgt_flops
    bytes_ratio = 1.0
    if target_precision != precision and kind == "inference":
        bytes_ratio = precision_bytes(target_precision) / precision_bytes(precision)
        notes.append(f"inference at {target_precision}: bytes moved per weight × {bytes_ratio:g}")
    elif target_precision != precision:
        notes.append(
            "training at another precision changes matmul rate only: master weights, gradients and "
            "optimizer state keep their formats (memory and communication bytes unchanged)"
        )
    r_m = source.memory_bandwidth_gb_s / target.memory_bandwidth_gb_s * bytes_ratio
    k = source_count / target_count
    r_n = 1.0
    if fn > 0:
        src_link = link_gb_s(source, source_count, inter_node_gb_s=inter_node_gb_s)
        tgt_link = link_gb_s(target, target_count, inter_node_gb_s=inter_node_gb_s)
        f_s, f_t = ring_allreduce_factor(source_count), ring_allreduce_factor(target_count)
        r_n = (src_link / tgt_link) * (f_t / f_s if f_s > 0 else 1.0)
        notes.append(
            f"communication ∝ ring all-reduce 2(n−1)/n ÷ link bandwidth: {src_link:g} → {tgt_link:g} GB/s "
            f"(inter-node {inter_node_gb_s:g} GB/s beyond 8 devices)"
        )
    if target_count != source_count:
        notes.append(
            f"compute and memory work split evenly: per-device share × {k:.3g} "
            f"({source_count} → {target_count} devices)"
        )
    busy = fc * r_c * k + fm * r_m * k + fn * r_n
    return RooflineRatio(
        time_ratio=(1 - u) + u * busy,
        split=(fc, fm, fn),
        compute_ratio=r_c,
        memory_ratio=r_m,
        comm_ratio=r_n,
        assumptions=notes,
    )


@dataclass(frozen=True)
class HardwareProjection:
    inputs: dict[str, Any]
    baseline: Footprint
    projected: Footprint
    speedup: float  # baseline runtime / projected runtime
    method: str  # "roofline" | "calibrated"
    time_split: tuple[float, float, float] | None
    memory_required_gb: float | None
    calibration_jobs: int
    co2e_change_g: float
    assumptions: list[str]


def project_hardware(
    *,
    job: MeasuredJob,
    target_key: str,
    carbon: CarbonContext,
    target_count: int | None = None,
    target_precision: str | None = None,
    target_power_cap_w: float | None = None,
    source_embodied: EmbodiedPolicy | None = None,
    target_embodied: EmbodiedPolicy | None = None,
    target_carbon: CarbonContext | None = None,
    calibration: Calibration | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
    inter_node_gb_s: float = 50.0,
    cap_runs: Sequence[CapRun] = (),
) -> HardwareProjection:
    """A power cap below the projected draw slows the job along the power-cap energy–time curve
    (``power_cap_curve``; α fitted from ``cap_runs`` where jobs ran under different caps)."""
    specs = CATALOG if specs is None else specs
    source = spec_for(job.device_key, specs, "device_key")
    target = spec_for(target_key, specs, "target_key")
    require(job.device_count >= 1, "device_count", "must be >= 1")
    positive(job.runtime_s, "runtime_s")
    positive(job.gpu_energy_j, "gpu_energy_j")
    if job.avg_util is not None:
        require(0 <= job.avg_util <= 1, "avg_util", "must be within [0, 1]")
    precision_bytes(job.precision, "precision")
    tgt_precision = target_precision or job.precision
    precision_bytes(tgt_precision, "target_precision")
    if target_count is not None:
        require(target_count >= 1, "target_count", "must be >= 1")
    carbon.checked()
    tgt_carbon = (target_carbon or carbon).checked()
    notes: list[str] = []

    # Capacity: an LLM/MoE server must hold weights + KV cache.
    mem_req = None
    count = target_count or job.device_count
    if job.kind == "inference" and job.family in ("llm", "moe"):
        mem_req = inference_memory_gb(
            job.model_meta, precision=tgt_precision, kv_precision=job.model_meta.get("kv_precision")
        )
        if mem_req is not None:
            notes.extend(mem_req.assumptions)
            src_min = min_devices_for(
                (
                    inference_memory_gb(
                        job.model_meta, precision=job.precision, kv_precision=job.model_meta.get("kv_precision")
                    )
                    or mem_req
                ).total_gb,
                source,
            )
            tgt_min = min_devices_for(mem_req.total_gb, target)
            if target_count is None and job.device_count <= src_min:
                count = tgt_min
                notes.append(
                    f"memory-capacity-bound: source needs {src_min} × {source.key}; target count = "
                    f"ceil({mem_req.total_gb:.1f} GB / (90% × {target.memory_gb:g} GB)) = {tgt_min}"
                )
            elif count < tgt_min:
                notes.append(
                    f"requested {count} × {target.key} cannot hold {mem_req.total_gb:.1f} GB: raised to {tgt_min}"
                )
                count = tgt_min
            else:
                count = max(count, tgt_min)

    measured_power_w = job.gpu_energy_j / (job.runtime_s * job.device_count)
    src_top = job.power_cap_w or source.max_power_w
    u_eq = utilisation_equivalent(source, measured_power_w, src_top)
    tgt_power_w = power_at(target, u_eq)
    u = 1.0 if job.avg_util is None else job.avg_util

    if calibration is not None:
        require(
            calibration.source_key == source.key
            and calibration.target_key == target.key
            and calibration.family == job.family,
            "calibration",
            "does not match the job's device, target or family",
        )
        method = "calibrated"
        device_s = job.runtime_s * job.device_count * calibration.runtime_ratio
        runtime_t = device_s / count
        energy_t = job.gpu_energy_j * calibration.energy_ratio
        rel = calibration.rel_error
        split = None
        fc, fm, _ = family_split(job.family, job.kind)
        compute_share, memory_share = u * fc, u * fm
        notes.extend(calibration.assumptions)
        notes.append("runtime and energy from measured ratios, not the roofline model")
    else:
        method = "roofline"
        ratio = roofline_time_ratio(
            source=source,
            target=target,
            source_count=job.device_count,
            target_count=count,
            family=job.family,
            kind=job.kind,
            precision=job.precision,
            target_precision=tgt_precision,
            avg_util=job.avg_util,
            split=job.split,
            inter_node_gb_s=inter_node_gb_s,
        )
        notes.extend(ratio.assumptions)
        runtime_t = job.runtime_s * ratio.time_ratio
        energy_t = tgt_power_w * runtime_t * count
        rel = REL_ERROR_ROOFLINE
        split = ratio.split
        k = job.device_count / count
        compute_share = u * split[0] * ratio.compute_ratio * k / ratio.time_ratio
        memory_share = u * split[1] * ratio.memory_ratio * k / ratio.time_ratio
        notes.append(
            f"target power = idle + (limit − idle) × {u_eq:.2f}, the source's utilisation-equivalent "
            f"(measured {measured_power_w:.0f} W between {source.idle_power_w:g} W idle and {src_top:g} W): "
            f"{tgt_power_w:.0f} W per {target.key}"
        )
    draw_w = energy_t / (runtime_t * count)
    if target_power_cap_w is not None and target_power_cap_w < draw_w:
        curve = power_cap_curve(
            device_key=target.key,
            device_count=count,
            runtime_s=runtime_t,
            avg_power_w=draw_w,
            caps_w=[target_power_cap_w],
            compute_share=min(1.0, compute_share),
            memory_share=min(1.0 - min(1.0, compute_share), memory_share),
            calibration_runs=cap_runs,
            specs=specs,
        )
        point = curve.points[0]
        notes.append(
            f"power cap {target_power_cap_w:g} W below the projected draw {draw_w:.0f} W: "
            f"the job slows × {point.slowdown:.3f} (compute share {compute_share:.2f} of runtime at "
            f"(P/cap)^{curve.alpha:.3g}, {curve.alpha_source}; memory share {memory_share:.2f}) and draws the cap"
        )
        runtime_t, energy_t = point.runtime_s, point.energy_j
    elif target_power_cap_w is not None:
        notes.append(
            f"power cap {target_power_cap_w:g} W at or above the projected draw {draw_w:.0f} W: it does not bind"
        )
    notes.append("IT energy is accelerator energy only: host CPU/DRAM not projected")
    baseline = build_footprint(
        device_key=source.key,
        device_count=job.device_count,
        runtime_s=job.runtime_s,
        it_energy_j=job.gpu_energy_j,
        carbon=carbon,
        embodied=source_embodied,
        rel_error=REL_ERROR_MEASURED,
        basis="measured",
        units=job.units,
    )
    projected = build_footprint(
        device_key=target.key,
        device_count=count,
        runtime_s=runtime_t,
        it_energy_j=energy_t,
        carbon=tgt_carbon,
        embodied=target_embodied,
        rel_error=rel,
        basis=method if method == "calibrated" else "modelled",
        units=job.units,
    )
    notes.extend(carbon_assumptions(tgt_carbon, target_embodied, rel))
    return HardwareProjection(
        inputs={
            "job_id": job.job_id,
            "device_key": source.key,
            "device_count": job.device_count,
            "runtime_s": job.runtime_s,
            "gpu_energy_j": job.gpu_energy_j,
            "family": job.family,
            "kind": job.kind,
            "precision": job.precision,
            "avg_util": job.avg_util,
            "target_key": target.key,
            "target_count": target_count,
            "target_precision": tgt_precision,
            "target_power_cap_w": target_power_cap_w,
        },
        baseline=baseline,
        projected=projected,
        speedup=job.runtime_s / runtime_t,
        method=method,
        time_split=split,
        memory_required_gb=mem_req.total_gb if mem_req else None,
        calibration_jobs=(calibration.n_source + calibration.n_target) if calibration else 0,
        co2e_change_g=projected.co2e_g - baseline.co2e_g,
        assumptions=notes,
    )
