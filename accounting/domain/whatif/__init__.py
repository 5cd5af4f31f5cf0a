"""What-if engine (pure Python, stdlib only; time is an argument).

Every scenario returns a frozen dataclass with its inputs, the projected footprint(s) and the
assumptions spelled out; ``Footprint`` carries runtime, IT and facility energy, operational and
embodied carbon, per-unit figures and a low/high band."""

from .calibration import Calibration, MeasuredJob, calibrate
from .common import (
    FAMILY_SPLITS,
    CarbonContext,
    EmbodiedPolicy,
    Footprint,
    build_footprint,
)
from .consolidation import ConsolidationSaving, idle_consolidation
from .estimator import EstimateResult, estimate_job
from .families import (
    BatchPoint,
    InferenceConfig,
    InferenceResult,
    MoeOffloadComparison,
    RecommenderServing,
    decode_batch_sweep,
    llm_inference,
    llm_training,
    moe_offload_comparison,
    recommender_inference,
)
from .fleet import FleetPlan, FleetWorkload, plan_fleet_upgrade, workloads_from_jobs
from .hardware import HardwareProjection, MemoryRequirement, inference_memory_gb, project_hardware, roofline_time_ratio
from .host import DEFAULT_HOST, HostShare, default_host
from .ledger_baseline import LedgerTotals, rebase_on_ledger
from .parallel import ParallelScaling, ScalingPoint, compute_device_s_from_job, parallel_scaling
from .place_time import (
    StartWindow,
    ZoneShift,
    best_start_window,
    place_shift_g,
    time_shift_bound_g,
    zone_shift,
)
from .power_cap import CapPoint, CapRun, PowerCapCurve, fit_alpha, power_cap_curve
from .tradeoffs import JobPoint, TradeoffSummary, pareto_front

__all__ = [
    "DEFAULT_HOST",
    "FAMILY_SPLITS",
    "BatchPoint",
    "Calibration",
    "CapPoint",
    "CapRun",
    "CarbonContext",
    "ConsolidationSaving",
    "EmbodiedPolicy",
    "EstimateResult",
    "FleetPlan",
    "FleetWorkload",
    "Footprint",
    "HardwareProjection",
    "HostShare",
    "InferenceConfig",
    "InferenceResult",
    "JobPoint",
    "LedgerTotals",
    "MeasuredJob",
    "MemoryRequirement",
    "MoeOffloadComparison",
    "ParallelScaling",
    "PowerCapCurve",
    "RecommenderServing",
    "ScalingPoint",
    "StartWindow",
    "TradeoffSummary",
    "ZoneShift",
    "best_start_window",
    "build_footprint",
    "calibrate",
    "compute_device_s_from_job",
    "decode_batch_sweep",
    "default_host",
    "estimate_job",
    "fit_alpha",
    "idle_consolidation",
    "inference_memory_gb",
    "llm_inference",
    "llm_training",
    "moe_offload_comparison",
    "parallel_scaling",
    "pareto_front",
    "place_shift_g",
    "plan_fleet_upgrade",
    "power_cap_curve",
    "project_hardware",
    "rebase_on_ledger",
    "recommender_inference",
    "roofline_time_ratio",
    "time_shift_bound_g",
    "workloads_from_jobs",
    "zone_shift",
]
