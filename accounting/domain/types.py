"""Value types of the pure accounting core (stdlib only).

The service layer (accounting/services.py, via accounting/mappers.py) builds these from ORM
rows, calls the pure functions, and writes the results back as ledger rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# 2026.12-1: a MIG GPU's active energy follows each instance's measured activity x slices (was the
# slice fraction alone); the slice fraction remains the rule, flagged, when any instance is unmeasured.
METHOD_VERSION = "2026.12-1"
# Units and the (Julian) year live in accounting.domain.units.


class Quality(StrEnum):
    MEASURED = "measured"  # NVML energy counter delta / RAPL counter
    INTEGRATED = "integrated"  # trapezoidal integration of power samples
    INTERPOLATED = "interpolated"  # short gap filled from neighbours (bounded)
    MODELLED = "modelled"  # from a model (TDP x load, W/GB), not a sensor


# Worst-first order: an aggregate of windows carries the worst quality among them (as a label;
# figures by quality, such as the measured fraction, come from the energy of each window's own
# quality, carried beside it as ``measured_energy_j``).
QUALITY_RANK = {Quality.MEASURED: 0, Quality.INTEGRATED: 1, Quality.INTERPOLATED: 2, Quality.MODELLED: 3}

# What a GPU's energy reading covers (the agent's ``energy_covers``), narrowest first: the GPU
# alone; the GPU and its memory; a superchip module's counter (Grace Hopper / Grace Blackwell,
# MI300A) that also holds the CPU and its memory. A GPU ledger entry states the widest among its
# device's windows in its hour (docs/method.md §2).
COVERS_RANK = {"gpu": 0, "gpu+memory": 1, "gpu+cpu+memory": 2}


class Account(StrEnum):
    JOB = "job"
    FLEET_OVERHEAD = "fleet_overhead"


class Component(StrEnum):
    GPU_ACTIVE = "gpu_active"
    GPU_IDLE = "gpu_idle"
    HOST_CPU = "host_cpu"
    HOST_DRAM = "host_dram"
    HOST_UNMEASURED = "host_unmeasured"
    FACILITY = "facility"


@dataclass(frozen=True)
class ProcessSample:
    """A GPU process seen by the agent during a window, mapped to a job key if known."""

    pid: int | None  # None: the source saw a workload, not a process (dcgm-exporter)
    sm_util_pct: float
    job_key: str | None = None  # e.g. "slurm:4242", "k8s:<pod-uid>", "env:<value>"


@dataclass(frozen=True)
class MigInstanceSample:
    """A MIG instance of a GPU during a window: its size, its measured activity, who ran on it.

    ``activity`` is the instance's graphics-engine activity (0..1, DCGM's
    DCGM_FI_PROF_GR_ENGINE_ACTIVE per GPU instance, or NVML's per-instance utilisation / 100)
    averaged over the window; None where nothing measured it. A ratio of the instance's own
    engines, so an instance's share of the GPU's work is activity x slices."""

    gpu_instance_id: int
    slices: int  # compute slices of its profile (3g.40gb -> 3)
    activity: float | None
    job_keys: frozenset[str] = frozenset()
    compute_instance_id: int | None = None


@dataclass(frozen=True)
class GpuWindowIn:
    device_id: int
    seq: int
    start: datetime
    end: datetime
    energy_j: float
    avg_power_w: float
    util_pct: float
    quality: Quality
    idle_power_w: float  # catalog idle power of the device model (baseline for idle split)
    processes: tuple[ProcessSample, ...] = ()
    mig_instances: tuple[MigInstanceSample, ...] = ()  # non-empty only for a GPU in MIG mode
    energy_covers: str = "gpu"  # what energy_j covers: a key of COVERS_RANK


@dataclass(frozen=True)
class HostWindowIn:
    seq: int
    start: datetime
    end: datetime
    cpu_energy_j: float
    dram_energy_j: float
    quality: Quality
    wall_energy_j: float | None = None


@dataclass(frozen=True)
class Allocation:
    """A job holds a device (or a fraction of it) over [start, end); end None = still held."""

    job_id: int
    device_id: int
    start: datetime
    end: datetime | None
    fraction: float = 1.0
    job_keys: frozenset[str] = frozenset()  # keys the agent may report for this job's processes
    mig_instance: str = ""


@dataclass(frozen=True)
class EnergyShare:
    """Energy of one component attributed to one account, for one device (None: host-level) and hour."""

    account: Account
    job_id: int | None
    device_id: int | None
    component: Component
    hour: datetime
    energy_j: float
    held_s: float  # device-seconds held by the account within the hour (embodied basis)
    quality: Quality  # worst quality among the windows the share was built from
    # The part of energy_j that came from windows of quality MEASURED: per window, so a share's
    # measured energy does not depend on which other windows were attributed with it.
    measured_energy_j: float
    # GPU components: what the device's energy reading covered in this hour (a key of
    # COVERS_RANK, the widest among its windows); host components: "".
    energy_covers: str = ""


@dataclass(frozen=True)
class IntensityPoint:
    intensity_g_per_kwh: float
    source: str  # "hourly:electricitymaps", "annual:codecarbon", ...
    marginal_g_per_kwh: float | None = None
    low_g_per_kwh: float | None = None
    high_g_per_kwh: float | None = None
    version: int = 1
    # What intensity_g_per_kwh counts ("direct" | "lifecycle", "" unknown), its gases ("co2e" |
    # "co2"), and the life-cycle figure beside a direct one (upstream = lifecycle - direct).
    basis: str = ""
    gases: str = ""
    lifecycle_g_per_kwh: float | None = None


@dataclass(frozen=True)
class LedgerLine:
    """An EnergyShare with carbon: what becomes a LedgerEntry row."""

    account: Account
    job_id: int | None
    device_id: int | None
    component: Component
    hour: datetime
    energy_j: float
    held_s: float
    co2e_operational_g: float
    co2e_operational_marginal_g: float | None
    co2e_embodied_g: float
    co2e_low_g: float
    co2e_high_g: float
    intensity_g_per_kwh: float
    intensity_source: str
    pue: float
    quality: Quality  # worst quality among the line's windows
    measured_energy_j: float  # part of energy_j from MEASURED windows (facility: (PUE - 1) x that of IT)
    # Factor versions, and the intensity's basis and gases as "intensity_basis"/"intensity_gases".
    factor_versions: dict[str, int | str] = field(default_factory=dict)
    intensity_basis: str = ""
    intensity_gases: str = ""
    # Upstream (Scope 3 cat. 3) carbon: energy x (life-cycle - direct) where both are known.
    co2e_upstream_g: float | None = None
    energy_covers: str = ""  # the share's (GPU components); "" for host and facility lines


# --- gap filling (accounting/domain/energy.py) ---------------------------------------------

# Sequence number of a window synthesized to fill a telemetry gap. Agents number windows from
# 0 upwards, so a negative seq can never collide with a reported window.
SYNTHETIC_SEQ = -1


@dataclass(frozen=True)
class PreviousWindow:
    """The device's last window before the batch being filled (the left neighbour of a first gap)."""

    end: datetime
    avg_power_w: float
    counter_mj: int | None = None  # NVML total-energy counter at `end`, when the device has one
    util_pct: float | None = None  # None: the synthesized window takes the right neighbour's


class GapResolution(StrEnum):
    COUNTER = "counter"  # energy from the NVML counter across the gap (a measurement)
    INTERPOLATED = "interpolated"  # short gap: mean neighbour power x gap length
    UNFILLED = "unfilled"  # too long to interpolate and no usable counter: no energy invented


@dataclass(frozen=True)
class Gap:
    device_id: int
    start: datetime
    end: datetime
    duration_s: float
    resolution: GapResolution
    energy_j: float | None  # None when UNFILLED: unknown, not zero


# --- attribution diagnostics (accounting/domain/attribution.py) ---------------------------


@dataclass(frozen=True)
class Diagnostic:
    """Something the attribution noticed and reports instead of silently correcting."""

    code: str  # "wall_below_measured", "gpu_oversubscribed", "host_slots_exceeded"
    message: str
    start: datetime
    end: datetime
    device_id: int | None = None
    energy_j: float | None = None
