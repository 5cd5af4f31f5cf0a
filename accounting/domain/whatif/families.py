"""Family models: LLM training (6·N·D), LLM/MoE inference (prefill compute-bound, decode
bandwidth-bound), MoE expert offloading, recommender serving under a tail-latency target."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accounting.domain.catalog import DeviceSpec

from .common import (
    REL_ERROR_ROOFLINE,
    CarbonContext,
    EmbodiedPolicy,
    Footprint,
    build_footprint,
    carbon_assumptions,
    flops_at,
    fraction,
    non_negative,
    positive,
    power_at,
    precision_bytes,
    require,
    spec_for,
)
from .estimator import EstimateResult, estimate_job
from .hardware import USABLE_MEMORY_FRACTION


def llm_training(
    *,
    parameters: float,
    tokens: float,
    device_key: str,
    device_count: int,
    carbon: CarbonContext,
    precision: str = "bf16",
    mfu: float | None = None,
    avg_power_w: float | None = None,
    utilisation: float | None = None,
    embodied: EmbodiedPolicy | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> EstimateResult:
    """Dense transformer training: FLOPs ≈ 6·N·D; time = FLOPs / (devices · peak · MFU)."""
    positive(parameters, "parameters")
    positive(tokens, "tokens")
    if avg_power_w is None and utilisation is None:
        utilisation = 0.9
    result = estimate_job(
        device_key=device_key,
        device_count=device_count,
        carbon=carbon,
        flops=6 * parameters * tokens,
        efficiency=mfu,
        precision=precision,
        avg_power_w=avg_power_w,
        utilisation=utilisation,
        embodied=embodied,
        units={"tokens": tokens},
        specs=specs,
    )
    result.assumptions.insert(0, f"training FLOPs = 6 × {parameters:.3g} parameters × {tokens:.3g} tokens")
    if avg_power_w is None and utilisation == 0.9:
        result.assumptions.append("power at utilisation-equivalent 0.9 (large training jobs run near the power limit)")
    return result


@dataclass(frozen=True)
class InferenceConfig:
    """Serving a dense or MoE LLM: parameter counts, attention shape, workload."""

    parameters: float  # total
    prompt_tokens: float  # total over the job
    output_tokens: float  # total over the job
    batch_size: int
    context_tokens: float  # mean context length attended during decode
    layers: int
    kv_dim: float  # kv_heads × head_dim
    active_parameters: float | None = None  # MoE: per token
    num_experts: int | None = None
    experts_per_token: int | None = None


@dataclass(frozen=True)
class InferenceResult:
    inputs: dict[str, Any]
    footprint: Footprint
    device_count: int
    memory_required_gb: float
    resident_gb: float
    prefill_s: float
    decode_s: float
    decode_step_s: float
    decode_bound: str  # "memory" | "compute" | "pcie"
    tokens_per_s_per_device: float
    pcie_bytes_per_step: float
    assumptions: list[str]


def _moe_parts(cfg: InferenceConfig) -> tuple[float, float, float]:
    """(shared params, total expert params, fraction of experts a token uses)."""
    if cfg.num_experts and cfg.experts_per_token and cfg.active_parameters:
        k_over_e = cfg.experts_per_token / cfg.num_experts
        expert_total = (cfg.parameters - cfg.active_parameters) / (1 - k_over_e)
        return cfg.parameters - expert_total, expert_total, k_over_e
    return cfg.parameters, 0.0, 0.0


def llm_inference(
    *,
    config: InferenceConfig,
    device_key: str,
    carbon: CarbonContext,
    device_count: int | None = None,
    precision: str = "bf16",
    kv_precision: str | None = None,
    mfu_prefill: float = 0.5,
    mfu_decode: float = 0.5,
    bandwidth_efficiency: float = 0.8,
    offload_fraction: float = 0.0,
    offload_miss_rate: float = 1.0,
    embodied: EmbodiedPolicy | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> InferenceResult:
    spec = spec_for(device_key, specs)
    cfg = config
    positive(cfg.parameters, "parameters")
    non_negative(cfg.prompt_tokens, "prompt_tokens")
    positive(cfg.output_tokens, "output_tokens")
    require(isinstance(cfg.batch_size, int) and cfg.batch_size >= 1, "batch_size", "must be an integer >= 1")
    non_negative(cfg.context_tokens, "context_tokens")
    require(cfg.layers >= 1, "layers", "must be >= 1")
    positive(cfg.kv_dim, "kv_dim")
    if cfg.active_parameters is not None:
        require(0 < cfg.active_parameters <= cfg.parameters, "active_parameters", "must be within (0, parameters]")
    fraction(offload_fraction, "offload_fraction")
    fraction(offload_miss_rate, "offload_miss_rate")
    for name, v in (
        ("mfu_prefill", mfu_prefill),
        ("mfu_decode", mfu_decode),
        ("bandwidth_efficiency", bandwidth_efficiency),
    ):
        require(0 < v <= 1, name, "must be within (0, 1]")
    carbon.checked()
    notes: list[str] = []
    w_b = precision_bytes(precision)
    kv_b = precision_bytes(kv_precision or precision, "kv_precision")
    active = cfg.active_parameters or cfg.parameters
    shared, experts, k_over_e = _moe_parts(cfg)
    require(
        offload_fraction == 0 or experts > 0,
        "offload_fraction",
        "expert offloading needs num_experts, experts_per_token and active_parameters",
    )
    kv_gb = 2 * cfg.layers * cfg.kv_dim * kv_b * cfg.batch_size * cfg.context_tokens / 1e9
    weights_gb = cfg.parameters * w_b / 1e9
    resident_gb = (shared + experts * (1 - offload_fraction)) * w_b / 1e9 + kv_gb
    min_count = max(1, math.ceil(resident_gb / (spec.memory_gb * USABLE_MEMORY_FRACTION) - 1e-9))
    if device_count is None:
        count = min_count
        notes.append(f"devices = ceil({resident_gb:.1f} GB resident / (90% × {spec.memory_gb:g} GB)) = {count}")
    else:
        require(
            device_count >= min_count,
            "device_count",
            f"{device_count} × {spec.key} cannot hold {resident_gb:.1f} GB (needs {min_count})",
        )
        count = device_count
    notes.append(
        f"weights {weights_gb:.1f} GB ({cfg.parameters:.3g} × {w_b:g} B), KV cache {kv_gb:.1f} GB "
        f"(2 × {cfg.layers} layers × {cfg.kv_dim:g} × {kv_b:g} B × batch {cfg.batch_size} × "
        f"{cfg.context_tokens:g} tokens)"
    )
    peak = flops_at(spec, precision, notes)
    prefill_s = 2 * active * cfg.prompt_tokens / (count * peak * mfu_prefill)
    notes.append(
        f"prefill compute-bound: 2 × {active:.3g} active parameters FLOPs per prompt token at MFU {mfu_prefill:g}"
    )
    # One decode step produces one token for each of batch_size sequences.
    if experts > 0:
        touched = 1 - (1 - k_over_e) ** cfg.batch_size
        notes.append(
            f"MoE: compute by {active:.3g} active parameters, memory by {cfg.parameters:.3g} total; a decode step "
            f"of batch {cfg.batch_size} reads {touched:.0%} of experts (1 − (1 − k/E)^batch)"
        )
    else:
        touched = 0.0
    resident_weight_bytes_step = (shared + experts * touched * (1 - offload_fraction)) * w_b
    kv_bytes_step = cfg.batch_size * cfg.context_tokens * 2 * cfg.layers * cfg.kv_dim * kv_b
    mem_s = (resident_weight_bytes_step + kv_bytes_step) / (
        count * spec.memory_bandwidth_gb_s * 1e9 * bandwidth_efficiency
    )
    comp_s = 2 * active * cfg.batch_size / (count * peak * mfu_decode)
    pcie_bytes = experts * touched * offload_fraction * offload_miss_rate * w_b
    pcie_s = pcie_bytes / (count * spec.pcie_gb_s / 2 * 1e9 * bandwidth_efficiency) if pcie_bytes else 0.0
    step_s = max(mem_s, comp_s) + pcie_s
    bound = "pcie" if pcie_s > max(mem_s, comp_s) else ("memory" if mem_s >= comp_s else "compute")
    notes.append(
        f"decode step = max(bytes / ({bandwidth_efficiency:g} × HBM bandwidth), FLOPs / (MFU {mfu_decode:g} × peak))"
        + (" + PCIe transfer of offloaded experts (not overlapped)" if pcie_bytes else "")
        + "; weights read once per step, KV cache per sequence; tensor-parallel traffic not modelled"
    )
    if offload_fraction > 0:
        notes.append(
            f"{offload_fraction:.0%} of expert weights in host memory; miss rate {offload_miss_rate:g}: "
            f"{pcie_bytes / 1e9:.2f} GB per step over PCIe at half of {spec.pcie_gb_s:g} GB/s (one direction)"
        )
    steps = cfg.output_tokens / cfg.batch_size
    decode_s = steps * step_s
    runtime_s = prefill_s + decode_s
    p_prefill = power_at(spec, 0.9)
    p_decode = power_at(spec, 0.6 if bound != "compute" else 0.9)
    notes.append("power: prefill at utilisation-equivalent 0.9, memory/PCIe-bound decode at 0.6, compute-bound at 0.9")
    energy_j = count * (prefill_s * p_prefill + decode_s * p_decode)
    fp = build_footprint(
        device_key=spec.key,
        device_count=count,
        runtime_s=runtime_s,
        it_energy_j=energy_j,
        carbon=carbon,
        embodied=embodied,
        rel_error=REL_ERROR_ROOFLINE,
        basis="modelled",
        units={"output_tokens": cfg.output_tokens, "tokens": cfg.output_tokens + cfg.prompt_tokens},
    )
    notes.extend(carbon_assumptions(carbon, embodied, REL_ERROR_ROOFLINE))
    return InferenceResult(
        inputs={
            "device_key": spec.key,
            "device_count": device_count,
            "precision": precision,
            "kv_precision": kv_precision or precision,
            "batch_size": cfg.batch_size,
            "parameters": cfg.parameters,
            "active_parameters": active,
            "offload_fraction": offload_fraction,
        },
        footprint=fp,
        device_count=count,
        memory_required_gb=weights_gb + kv_gb,
        resident_gb=resident_gb,
        prefill_s=prefill_s,
        decode_s=decode_s,
        decode_step_s=step_s,
        decode_bound=bound,
        tokens_per_s_per_device=cfg.batch_size / step_s / count,
        pcie_bytes_per_step=pcie_bytes,
        assumptions=notes,
    )


@dataclass(frozen=True)
class MoeOffloadComparison:
    resident: InferenceResult
    offloaded: InferenceResult
    devices_saved: int
    embodied_saved_g: float  # for this job: fewer devices but held longer (may be negative)
    provisioned_embodied_saved_g_per_h: float  # embodied rate of the devices no longer provisioned
    operational_change_g: float
    slowdown: float  # offloaded runtime / resident runtime
    assumptions: list[str]


def moe_offload_comparison(
    *,
    config: InferenceConfig,
    device_key: str,
    carbon: CarbonContext,
    offload_fraction: float,
    offload_miss_rate: float = 1.0,
    precision: str = "bf16",
    embodied: EmbodiedPolicy | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> MoeOffloadComparison:
    """Both configurations: all experts in HBM vs a share of experts in host memory."""
    require(offload_fraction > 0, "offload_fraction", "must be > 0 to compare with all-resident")
    resident = llm_inference(
        config=config, device_key=device_key, carbon=carbon, precision=precision, embodied=embodied, specs=specs
    )
    offloaded = llm_inference(
        config=config,
        device_key=device_key,
        carbon=carbon,
        precision=precision,
        embodied=embodied,
        specs=specs,
        offload_fraction=offload_fraction,
        offload_miss_rate=offload_miss_rate,
    )
    return MoeOffloadComparison(
        resident=resident,
        offloaded=offloaded,
        devices_saved=resident.device_count - offloaded.device_count,
        provisioned_embodied_saved_g_per_h=(
            0.0 if embodied is None else embodied.charge_g(resident.device_count - offloaded.device_count)[0]
        ),
        embodied_saved_g=resident.footprint.embodied_co2e_g - offloaded.footprint.embodied_co2e_g,
        operational_change_g=offloaded.footprint.operational_co2e_g - resident.footprint.operational_co2e_g,
        slowdown=offloaded.footprint.runtime_s / resident.footprint.runtime_s,
        assumptions=[
            "both configurations use the minimum device count that holds their resident bytes",
            "per-job embodied = devices × time held: offloading frees devices for other work (provisioned rate "
            "saving) but holds the remaining ones longer",
        ],
    )


@dataclass(frozen=True)
class BatchPoint:
    batch_size: int
    decode_step_s: float
    tokens_per_s_per_device: float
    decode_bound: str
    energy_per_output_token_j: float
    fits: bool


def decode_batch_sweep(
    *,
    config: InferenceConfig,
    device_key: str,
    device_count: int,
    batch_sizes: Sequence[int],
    carbon: CarbonContext,
    precision: str = "bf16",
    kv_precision: str | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> list[BatchPoint]:
    """Decode throughput rises with batch (weights amortised) until compute-bound or out of memory."""
    require(len(batch_sizes) > 0, "batch_sizes", "give at least one batch size")
    points = []
    for b in batch_sizes:
        cfg = InferenceConfig(**{**config.__dict__, "batch_size": int(b)})
        try:
            r = llm_inference(
                config=cfg,
                device_key=device_key,
                device_count=device_count,
                carbon=carbon,
                precision=precision,
                kv_precision=kv_precision,
                specs=specs,
            )
        except ValueError:
            points.append(BatchPoint(int(b), math.inf, 0.0, "capacity", math.inf, False))
            continue
        points.append(
            BatchPoint(
                int(b),
                r.decode_step_s,
                r.tokens_per_s_per_device,
                r.decode_bound,
                r.footprint.energy_per_unit_j["output_tokens"],
                True,
            )
        )
    return points


@dataclass(frozen=True)
class RecommenderServing:
    inputs: dict[str, Any]
    footprint: Footprint
    device_count: int
    batch_service_s: float
    rho_max: float
    rho_actual: float
    qps_per_device_max: float
    p99_latency_s: float
    bound: str
    assumptions: list[str]


def recommender_inference(
    *,
    qps: float,
    duration_s: float,
    lookups_per_query: float,
    embedding_dim: int,
    dense_flops_per_query: float,
    p99_latency_s: float,
    device_key: str,
    carbon: CarbonContext,
    embedding_precision: str = "fp32",
    precision: str = "fp16",
    batch_size: int = 256,
    batch_overhead_s: float = 0.002,
    rho_cap: float = 0.7,
    bandwidth_efficiency: float = 0.6,
    mfu: float = 0.3,
    embodied: EmbodiedPolicy | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> RecommenderServing:
    """Devices needed to serve ``qps`` within a p99 target; energy over ``duration_s``.

    A batch of queries is one M/M/1 'customer': service time = fixed overhead (launch,
    framework) + max(embedding bytes / bandwidth, dense FLOPs / compute). p99 sojourn of M/M/1
    is ln(100)·s/(1 − ρ), so ρ ≤ 1 − ln(100)·s/target, further capped at ``rho_cap``."""
    spec = spec_for(device_key, specs)
    positive(qps, "qps")
    positive(duration_s, "duration_s")
    positive(lookups_per_query, "lookups_per_query")
    positive(embedding_dim, "embedding_dim")
    non_negative(dense_flops_per_query, "dense_flops_per_query")
    positive(p99_latency_s, "p99_latency_s")
    require(isinstance(batch_size, int) and batch_size >= 1, "batch_size", "must be an integer >= 1")
    non_negative(batch_overhead_s, "batch_overhead_s")
    require(0 < rho_cap < 1, "rho_cap", "must be within (0, 1)")
    carbon.checked()
    notes: list[str] = []
    e_b = precision_bytes(embedding_precision, "embedding_precision")
    bytes_per_query = lookups_per_query * embedding_dim * e_b
    peak = flops_at(spec, precision, notes)
    mem_s = batch_size * bytes_per_query / (spec.memory_bandwidth_gb_s * 1e9 * bandwidth_efficiency)
    comp_s = batch_size * dense_flops_per_query / (peak * mfu)
    s = batch_overhead_s + max(mem_s, comp_s)
    bound = "memory" if mem_s >= comp_s else "compute"
    rho_latency = 1 - math.log(100) * s / p99_latency_s
    require(
        rho_latency > 0,
        "p99_latency_s",
        f"unreachable: one batch of {batch_size} already takes {s * 1e3:.2f} ms; lower batch_size or relax the target",
    )
    rho_max = min(rho_cap, rho_latency)
    qps_dev = rho_max * batch_size / s
    count = max(1, math.ceil(qps / qps_dev - 1e-9))
    rho = qps * s / (batch_size * count)
    p99 = math.log(100) * s / (1 - rho)
    power_w = power_at(spec, rho)
    energy_j = power_w * duration_s * count
    notes += [
        f"bytes per query = {lookups_per_query:g} lookups × {embedding_dim} dims × {e_b:g} B = {bytes_per_query:g} B "
        f"at {bandwidth_efficiency:g} of HBM bandwidth (random gathers)",
        f"dense MLP {dense_flops_per_query:g} FLOP per query at MFU {mfu:g}",
        f"batch of {batch_size} served in {s * 1e3:.3f} ms incl. {batch_overhead_s * 1e3:g} ms fixed overhead "
        f"({bound}-bound)",
        f"M/M/1 utilisation cap ρ ≤ min({rho_cap:g}, 1 − ln(100)·s/p99) = {rho_max:.3f}",
        "power = idle + (max − idle) × ρ (busy fraction)",
    ]
    fp = build_footprint(
        device_key=spec.key,
        device_count=count,
        runtime_s=duration_s,
        it_energy_j=energy_j,
        carbon=carbon,
        embodied=embodied,
        rel_error=REL_ERROR_ROOFLINE,
        basis="modelled",
        units={"queries": qps * duration_s},
    )
    notes.extend(carbon_assumptions(carbon, embodied, REL_ERROR_ROOFLINE))
    return RecommenderServing(
        inputs={
            "qps": qps,
            "duration_s": duration_s,
            "lookups_per_query": lookups_per_query,
            "embedding_dim": embedding_dim,
            "dense_flops_per_query": dense_flops_per_query,
            "p99_latency_s": p99_latency_s,
            "device_key": spec.key,
            "batch_size": batch_size,
        },
        footprint=fp,
        device_count=count,
        batch_service_s=s,
        rho_max=rho_max,
        rho_actual=rho,
        qps_per_device_max=qps_dev,
        p99_latency_s=p99,
        bound=bound,
        assumptions=notes,
    )
