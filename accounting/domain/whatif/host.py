"""The host of a planned job as the ledger charges it, and the estimator's defaults.

The ledger charges a job, per GPU it holds, ``host energy / GPU slots`` (CPU and DRAM windows,
measured by RAPL or modelled by the agent as CPU TDP × load + DRAM W/GB) and
``host embodied / GPU slots`` amortised like the GPU (DESIGN.md §3). An estimate of a planned
job adds the same two terms, so a job run as estimated lands where the estimate said.

``DEFAULT_HOST`` is the one set of host defaults (the estimator's, the API's and the docs');
every figure says where it comes from. Pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accounting.domain.embodied import DEFAULT_CPU_PROFILE, DEFAULT_LIFETIME, host_embodied
from accounting.domain.errors import InputError
from accounting.domain.units import HOURS_PER_YEAR

from .common import EmbodiedPolicy, require

# codecarbon's DRAM model, which the agent uses where RAPL cannot read DRAM: 3 W per 8 GB DIMM.
DRAM_W_PER_GB = 0.375
# A GPU server's defaults: DGX H100 class (NVIDIA DGX H100 datasheet: 2 CPU sockets, 2 TB DRAM,
# 8 × 3.84 TB NVMe data drives, 8 GPUs). CPU TDP 360 W per socket (AMD EPYC 9654, the catalog's
# default CPU profile ``epyc-genoa-96c``; AMD product page). Average CPU load 0.5 while the GPUs
# train (input pipelines, NCCL proxies; declared, the agent's simulated hosts run 0.08 + 0.45 ×
# GPU busy, 0.53 at full load).
DEFAULT_GPU_SLOTS = 8
DEFAULT_CPU_SOCKETS = 2
DEFAULT_CPU_TDP_W = 360.0
DEFAULT_CPU_LOAD = 0.5
DEFAULT_DRAM_GB = 2048.0
DEFAULT_SSD_GB = 30_720.0


def host_power_w(*, cpu_sockets: int, cpu_tdp_w: float, cpu_load: float, dram_gb: float) -> float:
    """The agent's host model where RAPL is not readable: CPU TDP × load + DRAM W/GB × GB."""
    return cpu_sockets * cpu_tdp_w * cpu_load + DRAM_W_PER_GB * dram_gb


@dataclass(frozen=True)
class HostShare:
    """A GPU server's host (CPUs, DRAM, SSD, chassis): whole-host average power and embodied
    footprint, shared by the host's GPU slots as the ledger shares them."""

    power_w: float
    gpu_slots: int
    embodied: EmbodiedPolicy | None
    source: str = ""

    def checked(self, field_name: str = "host") -> HostShare:
        if not (math.isfinite(self.power_w) and self.power_w >= 0):
            raise InputError(f"{field_name}.power_w", "must be >= 0")
        require(
            isinstance(self.gpu_slots, int) and not isinstance(self.gpu_slots, bool) and self.gpu_slots >= 1,
            f"{field_name}.gpu_slots",
            "must be an integer >= 1",
        )
        if self.embodied is not None:
            self.embodied.checked(f"{field_name}.embodied")
        return self

    @property
    def power_per_device_w(self) -> float:
        return self.power_w / self.gpu_slots

    def charge_g(self, device_h: float) -> tuple[float, float, float]:
        """(mid, low, high) grams of host embodied carbon for ``device_h`` GPU-hours held."""
        if self.embodied is None:
            return 0.0, 0.0, 0.0
        mid, low, high = self.embodied.charge_g(device_h)
        return mid / self.gpu_slots, low / self.gpu_slots, high / self.gpu_slots


def default_host(
    *,
    gpu_slots: int = DEFAULT_GPU_SLOTS,
    cpu_sockets: int = DEFAULT_CPU_SOCKETS,
    cpu_tdp_w: float = DEFAULT_CPU_TDP_W,
    cpu_load: float = DEFAULT_CPU_LOAD,
    dram_gb: float = DEFAULT_DRAM_GB,
    ssd_gb: float = DEFAULT_SSD_GB,
    cpu_profile: str = DEFAULT_CPU_PROFILE,
) -> HostShare:
    """The host the estimator assumes when none is described: power from the agent's model,
    embodied from ``embodied.host_embodied`` (the figures the ledger's host rows are loaded from)."""
    figure = host_embodied(cpu_count=cpu_sockets, dram_gb=dram_gb, ssd_gb=ssd_gb, cpu_profile=cpu_profile)
    policy = DEFAULT_LIFETIME["chassis"]
    power = host_power_w(cpu_sockets=cpu_sockets, cpu_tdp_w=cpu_tdp_w, cpu_load=cpu_load, dram_gb=dram_gb)
    return HostShare(
        power_w=power,
        gpu_slots=gpu_slots,
        embodied=EmbodiedPolicy(
            embodied_kg=figure.kg,
            embodied_low_kg=figure.low_kg,
            embodied_high_kg=figure.high_kg,
            lifetime_h=policy.lifetime_years * HOURS_PER_YEAR,
            expected_utilisation=policy.expected_utilisation,
            source=figure.source,
        ),
        source=(
            f"default host: {cpu_sockets} × {cpu_tdp_w:g} W CPU at load {cpu_load:g} + {dram_gb:g} GB DRAM × "
            f"{DRAM_W_PER_GB:g} W/GB = {power:g} W over {gpu_slots} GPU slots"
        ),
    )


DEFAULT_HOST = default_host()
