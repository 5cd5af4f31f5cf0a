"""Hardware catalog: accelerator specifications as pure data (stdlib only).

Every figure is a vendor datasheet/whitepaper number for DENSE math (sparsity doubles the
tensor-core figures vendors headline; those doubled numbers are never used here). FLOP/s are
per device, in FLOP/s (not TFLOP/s). Bandwidths are in GB/s (10^9 bytes/s):
- ``memory_bandwidth_gb_s``: device memory (HBM/GDDR) peak.
- ``interconnect_gb_s``: scale-up link per device, total bidirectional as vendors quote it
  (NVLink, AMD Infinity Fabric); 0.0 where the part has none (traffic then uses PCIe).
- ``pcie_gb_s``: host link, total bidirectional as vendors quote it (Gen3 x16 32, Gen4 x16
  64, Gen5 x16 128).

``idle_power_w`` is the power an allocated-but-idle device draws at default clocks with no
context running work (what nvidia-smi / amd-smi shows between kernels); vendors do not publish
it, so the source is "typical observed idle" (ML.ENERGY / Zeus measurements and operator
nvidia-smi readings), approximate to perhaps ±30 %.

Embodied-carbon data is deliberately NOT here (see accounting/domain/embodied.py, keyed by
the same keys).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PRECISIONS: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")

# Bytes per value of each precision (weights, activations, KV cache).
PRECISION_BYTES: Mapping[str, float] = MappingProxyType(
    {"fp64": 8.0, "fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
)

# When a device lacks a precision the job would run at the next wider format the device has.
# bf16 falls to fp16 first: on V100/T4 teams run FP16 mixed precision instead of BF16.
PRECISION_FALLBACK: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "int8": ("int8", "fp8", "fp16", "bf16", "tf32", "fp32"),
        "fp8": ("fp8", "bf16", "fp16", "tf32", "fp32"),
        "bf16": ("bf16", "fp16", "tf32", "fp32"),
        "fp16": ("fp16", "bf16", "tf32", "fp32"),
        "tf32": ("tf32", "fp32"),
        "fp32": ("fp32",),
        "fp64": ("fp64",),
    }
)

TFLOPS = 1e12

_IDLE_SOURCE = "typical observed idle (ML.ENERGY/Zeus measurements, nvidia-smi/amd-smi readings; approx.)"


@dataclass(frozen=True)
class DeviceSpec:
    key: str
    name: str
    vendor: str
    match_names: tuple[str, ...]
    idle_power_w: float
    max_power_w: float
    peak_flops: Mapping[str, float]  # FLOP/s dense by precision key (int8: OP/s)
    memory_gb: float
    memory_bandwidth_gb_s: float
    interconnect_gb_s: float
    pcie_gb_s: float
    process_node_nm: float
    die_area_mm2: float
    release_year: int
    sources: Mapping[str, str] = field(default_factory=dict)
    # Lowest power limit the board enforces (nvidia-smi -pl / NVML / Redfish AllowableMin); None
    # where no figure is cited: accounting.domain.bounds then applies its documented rule.
    min_power_limit_w: float | None = None

    def flops_at(self, precision: str) -> tuple[float, str]:
        """Peak dense FLOP/s at ``precision``, or at the first fallback the device has.

        Returns (flop_per_s, precision actually used)."""
        chain = PRECISION_FALLBACK.get(precision)
        if chain is None:
            raise KeyError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        for p in chain:
            rate = self.peak_flops.get(p)
            if rate:
                return rate, p
        raise KeyError(f"{self.key} has no rate for {precision!r} or its fallbacks")


def _spec(**kw: Any) -> DeviceSpec:
    kw["peak_flops"] = MappingProxyType({k: v * TFLOPS for k, v in kw.pop("peak_tflops").items()})
    kw["sources"] = MappingProxyType(kw["sources"])
    kw["match_names"] = tuple(kw["match_names"])
    return DeviceSpec(**kw)


_V100_DS = "NVIDIA Tesla V100 GPU datasheet (2018) / Volta architecture whitepaper (2017)"
_A100_DS = "NVIDIA A100 Tensor Core GPU datasheet (2021, SXM4 40GB/80GB columns)"
_H100_DS = "NVIDIA H100 Tensor Core GPU datasheet (2023, SXM5 / PCIe columns, dense = sparsity figures / 2)"
_H200_DS = "NVIDIA H200 Tensor Core GPU datasheet (2024, H200 SXM column, dense = sparsity figures / 2)"
_B200_DS = "NVIDIA HGX B200 / DGX B200 datasheets and GTC 2024 Blackwell announcement (2024), per-GPU dense"
_L4_DS = "NVIDIA L4 Tensor Core GPU datasheet (2023, dense = sparsity figures / 2)"
_L40S_DS = "NVIDIA L40S GPU datasheet (2023, dense = sparsity figures / 2)"
_T4_DS = "NVIDIA T4 Tensor Core GPU datasheet (2019)"
_MI250X_DS = "AMD Instinct MI250X accelerator datasheet (2021) / CDNA 2 whitepaper (2021)"
# Enforceable power-limit range (AllowableMin/AllowableMax of the GPU's PowerLimitWatts).
_DGX_H100_PL = (
    "NVIDIA DGX user guides, Managing Power Capping: GPU PowerLimitWatts AllowableMin 200 W, AllowableMax 700 W "
    "(700 W H100/H200 SXM boards)"
)
_DGX_B200_PL = (
    "NVIDIA DGX B200 User Guide, Managing Power Capping: GPU PowerLimitWatts AllowableMin 200 W, AllowableMax 1000 W"
)
_A100_PL = "nvidia-smi -q -d POWER on A100 SXM4 boards (Min Power Limit 100 W, Max 400 W; operator readings)"
_MI300X_DS = "AMD Instinct MI300X accelerator datasheet (2023) / CDNA 3 whitepaper (2023), dense"


CATALOG: dict[str, DeviceSpec] = {
    s.key: s
    for s in (
        _spec(
            key="v100-sxm2-32gb",
            name="NVIDIA Tesla V100 SXM2 32GB",
            vendor="NVIDIA",
            match_names=("Tesla V100-SXM2-32GB", "Tesla V100-SXM2-32GB-LS", "NVIDIA Tesla V100-SXM2-32GB"),
            idle_power_w=40.0,
            max_power_w=300.0,
            # FP16 = tensor-core mixed precision; no BF16/TF32/FP8 hardware.
            peak_tflops={"fp64": 7.8, "fp32": 15.7, "fp16": 125.0},
            memory_gb=32.0,
            memory_bandwidth_gb_s=900.0,
            interconnect_gb_s=300.0,
            pcie_gb_s=32.0,
            process_node_nm=12.0,
            die_area_mm2=815.0,
            release_year=2018,
            sources={
                "max_power_w": _V100_DS,
                "peak_flops": _V100_DS,
                "memory_gb": _V100_DS,
                "memory_bandwidth_gb_s": _V100_DS,
                "interconnect_gb_s": _V100_DS + " (NVLink 2, 6 links)",
                "pcie_gb_s": _V100_DS + " (PCIe Gen3 x16)",
                "process_node_nm": "NVIDIA Volta architecture whitepaper (2017): TSMC 12nm FFN",
                "die_area_mm2": "NVIDIA Volta architecture whitepaper (2017): GV100 815 mm2",
                "release_year": "NVIDIA announcement of V100 32GB (GTC 2018)",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="a100-sxm4-40gb",
            name="NVIDIA A100 SXM4 40GB",
            vendor="NVIDIA",
            match_names=("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
            idle_power_w=50.0,
            max_power_w=400.0,
            # fp64 = FP64 tensor core (9.7 vector); no FP8 hardware.
            peak_tflops={"fp64": 19.5, "fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
            memory_gb=40.0,
            memory_bandwidth_gb_s=1555.0,
            interconnect_gb_s=600.0,
            pcie_gb_s=64.0,
            process_node_nm=7.0,
            die_area_mm2=826.0,
            release_year=2020,
            min_power_limit_w=100.0,
            sources={
                "min_power_limit_w": _A100_PL,
                "max_power_w": _A100_DS,
                "peak_flops": _A100_DS + " (fp64 = FP64 Tensor Core)",
                "memory_gb": _A100_DS,
                "memory_bandwidth_gb_s": _A100_DS,
                "interconnect_gb_s": _A100_DS + " (NVLink 3)",
                "pcie_gb_s": _A100_DS + " (PCIe Gen4)",
                "process_node_nm": "NVIDIA Ampere GA100 whitepaper (2020): TSMC 7nm N7",
                "die_area_mm2": "NVIDIA Ampere GA100 whitepaper (2020): 826 mm2",
                "release_year": "NVIDIA GTC 2020 announcement",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="a100-sxm4-80gb",
            name="NVIDIA A100 SXM4 80GB",
            vendor="NVIDIA",
            match_names=("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", "NVIDIA A100-SXM-80GB", "NVIDIA A100 80GB SXM"),
            idle_power_w=55.0,
            max_power_w=400.0,
            peak_tflops={"fp64": 19.5, "fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
            memory_gb=80.0,
            memory_bandwidth_gb_s=2039.0,
            interconnect_gb_s=600.0,
            pcie_gb_s=64.0,
            process_node_nm=7.0,
            die_area_mm2=826.0,
            release_year=2020,
            min_power_limit_w=100.0,
            sources={
                "min_power_limit_w": _A100_PL,
                "max_power_w": _A100_DS,
                "peak_flops": _A100_DS + " (fp64 = FP64 Tensor Core)",
                "memory_gb": _A100_DS,
                "memory_bandwidth_gb_s": _A100_DS,
                "interconnect_gb_s": _A100_DS + " (NVLink 3)",
                "pcie_gb_s": _A100_DS + " (PCIe Gen4)",
                "process_node_nm": "NVIDIA Ampere GA100 whitepaper (2020): TSMC 7nm N7",
                "die_area_mm2": "NVIDIA Ampere GA100 whitepaper (2020): 826 mm2",
                "release_year": "NVIDIA A100 80GB announcement (SC20, Nov 2020)",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="h100-sxm5-80gb",
            name="NVIDIA H100 SXM5 80GB",
            vendor="NVIDIA",
            match_names=("NVIDIA H100 80GB HBM3", "NVIDIA H100-SXM5-80GB", "NVIDIA H100 SXM5 80GB", "H100-SXM5-80GB"),
            idle_power_w=70.0,
            max_power_w=700.0,
            peak_tflops={
                "fp64": 67.0,
                "fp32": 67.0,
                "tf32": 494.7,
                "bf16": 989.4,
                "fp16": 989.4,
                "fp8": 1978.9,
                "int8": 1978.9,
            },
            memory_gb=80.0,
            memory_bandwidth_gb_s=3350.0,
            interconnect_gb_s=900.0,
            pcie_gb_s=128.0,
            process_node_nm=4.0,
            die_area_mm2=814.0,
            release_year=2022,
            min_power_limit_w=200.0,
            sources={
                "min_power_limit_w": _DGX_H100_PL,
                "max_power_w": _H100_DS,
                "peak_flops": _H100_DS + " (fp64 = FP64 Tensor Core)",
                "memory_gb": _H100_DS,
                "memory_bandwidth_gb_s": _H100_DS,
                "interconnect_gb_s": _H100_DS + " (NVLink 4)",
                "pcie_gb_s": _H100_DS + " (PCIe Gen5)",
                "process_node_nm": "NVIDIA H100 Hopper architecture whitepaper (2022): TSMC 4N",
                "die_area_mm2": "NVIDIA H100 Hopper architecture whitepaper (2022): GH100 814 mm2",
                "release_year": "NVIDIA GTC 2022 announcement; shipping Q3 2022",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="h100-pcie-80gb",
            name="NVIDIA H100 PCIe 80GB",
            vendor="NVIDIA",
            match_names=("NVIDIA H100 PCIe", "NVIDIA H100 80GB PCIe", "NVIDIA H100-PCIE-80GB", "H100-PCIE-80GB"),
            idle_power_w=50.0,
            max_power_w=350.0,
            peak_tflops={
                "fp64": 51.0,
                "fp32": 51.0,
                "tf32": 378.0,
                "bf16": 756.0,
                "fp16": 756.0,
                "fp8": 1513.0,
                "int8": 1513.0,
            },
            memory_gb=80.0,
            memory_bandwidth_gb_s=2000.0,
            interconnect_gb_s=600.0,
            pcie_gb_s=128.0,
            process_node_nm=4.0,
            die_area_mm2=814.0,
            release_year=2022,
            sources={
                "max_power_w": _H100_DS,
                "peak_flops": _H100_DS + " (fp64 = FP64 Tensor Core)",
                "memory_gb": _H100_DS,
                "memory_bandwidth_gb_s": _H100_DS + " (HBM2e)",
                "interconnect_gb_s": _H100_DS + " (NVLink bridge, pairs only)",
                "pcie_gb_s": _H100_DS + " (PCIe Gen5)",
                "process_node_nm": "NVIDIA H100 Hopper architecture whitepaper (2022): TSMC 4N",
                "die_area_mm2": "NVIDIA H100 Hopper architecture whitepaper (2022): GH100 814 mm2",
                "release_year": "NVIDIA GTC 2022 announcement",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="h200-sxm-141gb",
            name="NVIDIA H200 SXM 141GB",
            vendor="NVIDIA",
            match_names=("NVIDIA H200", "NVIDIA H200 141GB HBM3e", "NVIDIA H200 SXM 141GB"),
            idle_power_w=75.0,
            max_power_w=700.0,
            peak_tflops={
                "fp64": 67.0,
                "fp32": 67.0,
                "tf32": 494.7,
                "bf16": 989.4,
                "fp16": 989.4,
                "fp8": 1978.9,
                "int8": 1978.9,
            },
            memory_gb=141.0,
            memory_bandwidth_gb_s=4800.0,
            interconnect_gb_s=900.0,
            pcie_gb_s=128.0,
            process_node_nm=4.0,
            die_area_mm2=814.0,
            release_year=2024,
            min_power_limit_w=200.0,
            sources={
                "min_power_limit_w": _DGX_H100_PL,
                "max_power_w": _H200_DS,
                "peak_flops": _H200_DS + " (fp64 = FP64 Tensor Core)",
                "memory_gb": _H200_DS,
                "memory_bandwidth_gb_s": _H200_DS + " (HBM3e)",
                "interconnect_gb_s": _H200_DS + " (NVLink 4)",
                "pcie_gb_s": _H200_DS + " (PCIe Gen5)",
                "process_node_nm": "NVIDIA H200 datasheet (2024): same GH100 die as H100, TSMC 4N",
                "die_area_mm2": "NVIDIA H100 Hopper architecture whitepaper (2022): GH100 814 mm2",
                "release_year": "NVIDIA H200 announcement (SC23), shipping 2024",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            # Keyed by the 180 GB HGX B200 ships usable; the old key "b200-sxm-192gb" is an alias
            # (KEY_ALIASES), and migration 0015_b200_key renamed stored rows.
            key="b200-sxm-180gb",
            name="NVIDIA B200 SXM (HGX B200, 180 GB)",
            vendor="NVIDIA",
            match_names=("NVIDIA B200", "NVIDIA B200 192GB HBM3e", "NVIDIA B200 SXM 192GB"),
            idle_power_w=120.0,
            max_power_w=1000.0,
            peak_tflops={
                "fp64": 37.0,
                "fp32": 75.0,
                "tf32": 1100.0,
                "bf16": 2250.0,
                "fp16": 2250.0,
                "fp8": 4500.0,
                "int8": 4500.0,
            },
            memory_gb=180.0,
            memory_bandwidth_gb_s=8000.0,
            interconnect_gb_s=1800.0,
            pcie_gb_s=128.0,
            process_node_nm=4.0,
            die_area_mm2=1600.0,
            release_year=2024,
            min_power_limit_w=200.0,
            sources={
                "min_power_limit_w": _DGX_B200_PL,
                "max_power_w": _B200_DS + " (HGX B200 1000 W per GPU)",
                "peak_flops": _B200_DS + " (HGX B200 8-GPU totals / 8, sparse figures / 2)",
                "memory_gb": "NVIDIA HGX B200 datasheet and NVIDIA technical blog 'NVIDIA HGX B200 Reduces Embodied "
                "Carbon Emissions Intensity' (2025): 180 GB HBM3E per GPU usable (192 GB physical, 8 stacks)",
                "memory_bandwidth_gb_s": _B200_DS,
                "interconnect_gb_s": _B200_DS + " (NVLink 5)",
                "pcie_gb_s": _B200_DS + " (PCIe Gen5 host link)",
                "process_node_nm": "NVIDIA Blackwell architecture technical brief (2024): TSMC 4NP",
                "die_area_mm2": "estimate: two reticle-limited dies (~800 mm2 each) per Blackwell "
                "architecture technical brief (2024); NVIDIA publishes no exact area",
                "release_year": "NVIDIA GTC 2024 announcement",
                "idle_power_w": _IDLE_SOURCE + " (few public readings; least certain entry)",
            },
        ),
        _spec(
            key="l4-24gb",
            name="NVIDIA L4 24GB",
            vendor="NVIDIA",
            match_names=("NVIDIA L4",),
            idle_power_w=16.0,
            max_power_w=72.0,
            peak_tflops={"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5, "int8": 242.5},
            memory_gb=24.0,
            memory_bandwidth_gb_s=300.0,
            interconnect_gb_s=0.0,
            pcie_gb_s=64.0,
            process_node_nm=4.0,
            die_area_mm2=294.5,
            release_year=2023,
            sources={
                "max_power_w": _L4_DS,
                "peak_flops": _L4_DS,
                "memory_gb": _L4_DS,
                "memory_bandwidth_gb_s": _L4_DS + " (GDDR6)",
                "interconnect_gb_s": _L4_DS + " (no NVLink)",
                "pcie_gb_s": _L4_DS + " (PCIe Gen4 x16)",
                "process_node_nm": "NVIDIA Ada Lovelace architecture whitepaper (2022): TSMC 4N",
                "die_area_mm2": "NVIDIA Ada Lovelace architecture whitepaper (2022): AD104 294.5 mm2",
                "release_year": "NVIDIA GTC 2023 announcement",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="l40s-48gb",
            name="NVIDIA L40S 48GB",
            vendor="NVIDIA",
            match_names=("NVIDIA L40S",),
            idle_power_w=35.0,
            max_power_w=350.0,
            peak_tflops={"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0, "int8": 733.0},
            memory_gb=48.0,
            memory_bandwidth_gb_s=864.0,
            interconnect_gb_s=0.0,
            pcie_gb_s=64.0,
            process_node_nm=4.0,
            die_area_mm2=608.5,
            release_year=2023,
            sources={
                "max_power_w": _L40S_DS,
                "peak_flops": _L40S_DS,
                "memory_gb": _L40S_DS,
                "memory_bandwidth_gb_s": _L40S_DS + " (GDDR6)",
                "interconnect_gb_s": _L40S_DS + " (no NVLink)",
                "pcie_gb_s": _L40S_DS + " (PCIe Gen4 x16)",
                "process_node_nm": "NVIDIA Ada Lovelace architecture whitepaper (2022): TSMC 4N",
                "die_area_mm2": "NVIDIA Ada Lovelace architecture whitepaper (2022): AD102 608.5 mm2",
                "release_year": "NVIDIA SIGGRAPH 2023 announcement",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="t4-16gb",
            name="NVIDIA T4 16GB",
            vendor="NVIDIA",
            match_names=("Tesla T4", "NVIDIA T4"),
            idle_power_w=10.0,
            max_power_w=70.0,
            # fp16 = tensor-core mixed precision; no BF16/TF32/FP8 hardware.
            peak_tflops={"fp32": 8.1, "fp16": 65.0, "int8": 130.0},
            memory_gb=16.0,
            memory_bandwidth_gb_s=320.0,
            interconnect_gb_s=0.0,
            pcie_gb_s=32.0,
            process_node_nm=12.0,
            die_area_mm2=545.0,
            release_year=2018,
            sources={
                "max_power_w": _T4_DS,
                "peak_flops": _T4_DS,
                "memory_gb": _T4_DS,
                "memory_bandwidth_gb_s": _T4_DS + " (GDDR6)",
                "interconnect_gb_s": _T4_DS + " (no NVLink)",
                "pcie_gb_s": _T4_DS + " (PCIe Gen3 x16)",
                "process_node_nm": "NVIDIA Turing architecture whitepaper (2018): TSMC 12nm FFN",
                "die_area_mm2": "NVIDIA Turing architecture whitepaper (2018): TU104 545 mm2",
                "release_year": "NVIDIA GTC Japan 2018 announcement",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="mi250x-128gb",
            name="AMD Instinct MI250X 128GB",
            vendor="AMD",
            match_names=("AMD Instinct MI250X", "AMD Instinct MI250X/MI250", "Instinct MI250X"),
            idle_power_w=90.0,
            max_power_w=560.0,
            # Matrix-core rates; no TF32/FP8 hardware.
            peak_tflops={"fp64": 95.7, "fp32": 95.7, "bf16": 383.0, "fp16": 383.0, "int8": 383.0},
            memory_gb=128.0,
            memory_bandwidth_gb_s=3276.8,
            interconnect_gb_s=800.0,
            pcie_gb_s=64.0,
            process_node_nm=6.0,
            die_area_mm2=1448.0,
            release_year=2021,
            sources={
                "max_power_w": _MI250X_DS,
                "peak_flops": _MI250X_DS + " (matrix-core peak)",
                "memory_gb": _MI250X_DS,
                "memory_bandwidth_gb_s": _MI250X_DS,
                "interconnect_gb_s": _MI250X_DS + " (8 Infinity Fabric links, aggregate peak)",
                "pcie_gb_s": _MI250X_DS + " (PCIe Gen4 x16)",
                "process_node_nm": "AMD CDNA 2 whitepaper (2021): TSMC N6",
                "die_area_mm2": "estimate: 2 x ~724 mm2 GCD (third-party die measurements; AMD publishes no area)",
                "release_year": "AMD announcement (Nov 2021)",
                "idle_power_w": _IDLE_SOURCE,
            },
        ),
        _spec(
            key="mi300x-192gb",
            name="AMD Instinct MI300X 192GB",
            vendor="AMD",
            match_names=("AMD Instinct MI300X", "AMD Instinct MI300X OAM", "Instinct MI300X"),
            idle_power_w=120.0,
            max_power_w=750.0,
            peak_tflops={
                "fp64": 163.4,
                "fp32": 163.4,
                "tf32": 653.7,
                "bf16": 1307.4,
                "fp16": 1307.4,
                "fp8": 2614.9,
                "int8": 2614.9,
            },
            memory_gb=192.0,
            memory_bandwidth_gb_s=5300.0,
            interconnect_gb_s=896.0,
            pcie_gb_s=128.0,
            process_node_nm=5.0,
            die_area_mm2=2400.0,
            release_year=2023,
            sources={
                "max_power_w": _MI300X_DS,
                "peak_flops": _MI300X_DS + " (matrix-core peak, without sparsity)",
                "memory_gb": _MI300X_DS,
                "memory_bandwidth_gb_s": _MI300X_DS,
                "interconnect_gb_s": _MI300X_DS + " (7 Infinity Fabric links x 128 GB/s)",
                "pcie_gb_s": _MI300X_DS + " (PCIe Gen5 x16)",
                "process_node_nm": "AMD CDNA 3 whitepaper (2023): XCDs on TSMC N5 (IODs on N6)",
                "die_area_mm2": "estimate: 8 XCD x ~115 mm2 + 4 IOD x ~370 mm2 (third-party die measurements; "
                "AMD publishes no total)",
                "release_year": "AMD Advancing AI event (Dec 2023)",
                "idle_power_w": _IDLE_SOURCE + " (few public readings)",
            },
        ),
    )
}


# Keys a catalog entry was known by before a rename -> its key now. Accepted wherever a key is
# given (the estimator and what-if API, device-name lookup, a site's hardware_overrides) and read
# as the current key; stored HardwareModel rows were renamed by a data migration.
KEY_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        # HGX B200 ships 180 GB usable per GPU (192 GB physical): accounting/migrations/0015_b200_key.py
        "b200-sxm-192gb": "b200-sxm-180gb",
    }
)


def canonical_key(key: str) -> str:
    """The current catalog key for ``key`` (an old key's rename, else ``key`` unchanged)."""
    return KEY_ALIASES.get(key, key)


def key_aliases(key: str) -> tuple[str, ...]:
    """The old keys that now read as ``key`` (none for most entries)."""
    return tuple(sorted(old for old, new in KEY_ALIASES.items() if new == key))


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().casefold())


_BY_NAME: dict[str, str] = {}
for _spec_item in CATALOG.values():
    for _n in _spec_item.match_names:
        _BY_NAME[_normalise(_n)] = _spec_item.key
    _BY_NAME.setdefault(_normalise(_spec_item.key), _spec_item.key)
for _old_key, _new_key in KEY_ALIASES.items():
    _BY_NAME.setdefault(_normalise(_old_key), _new_key)
_VENDOR_PREFIXES = ("nvidia ", "tesla ", "amd ")


def _strip_vendor(name: str) -> str:
    for prefix in _VENDOR_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


_BY_BARE_NAME: dict[str, str] = {_strip_vendor(n): k for n, k in _BY_NAME.items()}
_MIG_SUFFIX = re.compile(r"\s+mig\s+\S+$")


def lookup_by_name(nvml_name: str) -> DeviceSpec | None:
    """Map the device name NVML/amd-smi reports (or a catalog key) to a spec.

    Exact match after case/whitespace normalisation, then the same without a vendor prefix
    ("NVIDIA "/"Tesla "/"AMD "), each also with a MIG instance suffix removed
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb"). No prefix guessing: "NVIDIA H200 NVL" is a
    different board from "NVIDIA H200", so an unknown name is None, never the nearest model."""
    if not nvml_name or not nvml_name.strip():
        return None
    norm = _normalise(nvml_name)
    for candidate in (norm, _MIG_SUFFIX.sub("", norm)):
        key = _BY_NAME.get(candidate) or _BY_BARE_NAME.get(_strip_vendor(candidate))
        if key:
            return CATALOG[key]
    return None


# A device outside the catalog, described by its figures, idles at this fraction of its power
# limit unless its idle draw is given: the catalog's measured idle figures are 10-14 % of the
# limit (H100 SXM 70 of 700 W, A100 SXM4 40GB 50 of 400 W, T4 10 of 70 W).
DESCRIBED_IDLE_FRACTION = 0.10


def device_from_figures(
    *,
    key: str,
    name: str,
    peak_flops: Mapping[str, float],
    memory_bandwidth_gb_s: float,
    max_power_w: float,
    memory_gb: float,
    idle_power_w: float | None = None,
    interconnect_gb_s: float = 0.0,
    pcie_gb_s: float = 64.0,
    source: str = "given in request",
) -> DeviceSpec:
    """A DeviceSpec for a device the catalog lacks (a TPU, a new part): peak dense FLOP/s by
    precision (FLOP/s, not TFLOP/s), memory bandwidth (GB/s), power limit and memory (GB).
    Raises ValueError naming the figure that is missing or not physical."""
    rates = {p: float(v) for p, v in peak_flops.items()}
    unknown = sorted(set(rates) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"peak_flops: unknown precision(s) {unknown}; expected some of {PRECISIONS}")
    if not rates or not all(v > 0 and v < 1e19 for v in rates.values()):
        raise ValueError("peak_flops: give at least one precision with a rate above 0 and below 1e19 FLOP/s")
    for label, value in (
        ("memory_bandwidth_gb_s", memory_bandwidth_gb_s),
        ("max_power_w", max_power_w),
        ("memory_gb", memory_gb),
    ):
        if not value > 0:
            raise ValueError(f"{label}: must be above 0")
    idle = DESCRIBED_IDLE_FRACTION * max_power_w if idle_power_w is None else float(idle_power_w)
    if not 0 <= idle < max_power_w:
        raise ValueError("idle_power_w: must be >= 0 and below max_power_w")
    return DeviceSpec(
        key=key,
        name=name,
        vendor="",
        match_names=(),
        idle_power_w=idle,
        max_power_w=float(max_power_w),
        peak_flops=MappingProxyType(rates),
        memory_gb=float(memory_gb),
        memory_bandwidth_gb_s=float(memory_bandwidth_gb_s),
        interconnect_gb_s=float(interconnect_gb_s),
        pcie_gb_s=float(pcie_gb_s),
        process_node_nm=0.0,
        die_area_mm2=0.0,
        release_year=0,
        sources=MappingProxyType(
            {
                "figures": source,
                "idle_power_w": source
                if idle_power_w is not None
                else f"{DESCRIBED_IDLE_FRACTION:.0%} of the power limit (catalog idle figures are 10-14 %)",
            }
        ),
    )
