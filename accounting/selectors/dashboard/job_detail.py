"""The job page: footprint breakdown, hourly series, devices and per-unit efficiency."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef

from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.models import DeviceHour, JobAllocation, JobHour, ServingCounters
from accounting.selectors.access import Principal, jobs_visible
from accounting.selectors.dashboard.common import _unit_scale, unit_singular
from accounting.selectors.disclosure import job_market_water


def quality_label(measured_fraction: float | None) -> str:
    if measured_fraction is None:
        return "No ledger yet"
    if measured_fraction >= 0.95:
        return "Measured"
    if measured_fraction >= 0.5:
        return "Partly modelled"
    return "Modelled"


_COVERS_WORDS = (
    ("covers_gpu_energy_j", "the GPU alone"),
    ("covers_gpu_memory_energy_j", "GPU + memory"),
    ("covers_gpu_cpu_memory_energy_j", "GPU + CPU + memory (module counter; host CPU not added)"),
)


def counter_coverage_label(footprint: Any) -> str:
    """What the job's GPU readings covered, by share of its GPU energy (docs/method.md §2):
    "GPU readings cover the GPU alone", or each coverage with its share where they differ; "" with
    no ledger or none recorded."""
    if footprint is None or footprint.gpu_energy_j <= 0:
        return ""
    parts = [(getattr(footprint, name), words) for name, words in _COVERS_WORDS]
    recorded = [(energy_j, words) for energy_j, words in parts if energy_j > 0]
    unrecorded_j = footprint.gpu_energy_j - sum(energy_j for energy_j, _ in parts)
    if not recorded:  # a ledger written before coverage was recorded
        return ""
    if unrecorded_j > 1e-9 * footprint.gpu_energy_j:
        recorded.append((unrecorded_j, "not recorded"))
    if len(recorded) == 1:
        return f"GPU readings cover {recorded[0][1]}"
    shares = ", ".join(f"{energy_j / footprint.gpu_energy_j:.0%} {words}" for energy_j, words in recorded)
    return f"GPU readings cover: {shares}"


@dataclass(frozen=True)
class UnitEfficiencyRow:
    unit: str
    count: float
    per_label: str  # "1M tokens"
    energy_wh_per: float
    co2e_g_per: float
    is_primary: bool


def job_detail_get(*, scope: Principal, job_id: int) -> dict[str, Any] | None:
    """Everything the job page shows, or None when the job does not exist or is not visible."""
    job = (
        jobs_visible(principal=scope)
        .filter(id=job_id)
        .select_related("team", "org", "cluster__site__zone", "footprint")
        # an inference service with counters gets the serving card (selectors/dashboard/serving.py)
        .annotate(has_serving_counters=Exists(ServingCounters.objects.filter(job=OuterRef("pk"))))
        .first()
    )
    if job is None:
        return None
    fp = getattr(job, "footprint", None)
    allocs = list(
        JobAllocation.objects.filter(job_id=job.id)
        .select_related("device__host", "device__hardware_model")
        .order_by("device__host__hostname", "device__index", "start")
    )
    hours = list(
        JobHour.objects.filter(job_id=job.id)
        .order_by("hour")
        .values_list("hour", "energy_j", "gpu_energy_j", "co2e_operational_g", "co2e_embodied_g", "intensity_g_per_kwh")
    )
    device_traces: list[dict[str, Any]] = []
    if allocs:
        first = min(a.start for a in allocs).replace(minute=0, second=0, microsecond=0)
        ends = [a.end for a in allocs]
        last = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
        dh = DeviceHour.objects.filter(device_id__in={a.device_id for a in allocs}, hour__gte=first)
        if last is not None:
            dh = dh.filter(hour__lt=last)
        per_device: dict[int, list[tuple]] = defaultdict(list)
        for row in dh.order_by("device_id", "hour").values_list(
            "device_id", "hour", "avg_power_w", "avg_util_pct", "allocated_s"
        ):
            per_device[row[0]].append(row[1:])
        seen = set()
        for a in allocs:
            if a.device_id in seen:
                continue
            seen.add(a.device_id)
            pts = per_device.get(a.device_id, [])
            device_traces.append(
                {
                    "label": f"{a.device.host.hostname} GPU{a.device.index}",
                    "model": a.device.hardware_model.name if a.device.hardware_model else a.device.reported_name,
                    "hours": [p[0] for p in pts],
                    "power_w": [p[1] for p in pts],
                    "util_pct": [p[2] for p in pts],
                    "allocated_s": [p[3] for p in pts],
                }
            )
    units = job.units or {}
    efficiency: list[UnitEfficiencyRow] = []
    breakdown_energy: dict[str, float] = {}
    breakdown_co2: dict[str, float] = {}
    if fp is not None:
        breakdown_energy = {
            "GPU active": _kwh(fp.gpu_energy_j - fp.gpu_idle_energy_j),
            "GPU idle baseline": _kwh(fp.gpu_idle_energy_j),
            "Host (CPU, DRAM)": _kwh(fp.host_energy_j),
            "Facility (PUE)": _kwh(fp.facility_energy_j),
        }
        breakdown_co2 = {"Operational": _kg(fp.co2e_operational_g), "Embodied": _kg(fp.co2e_embodied_g)}
        for unit, count in units.items():
            if not isinstance(count, (int, float)) or count <= 0:
                continue
            co2_per = fp.co2e_g / count
            factor, label = _unit_scale(co2_per)
            efficiency.append(
                UnitEfficiencyRow(
                    unit=unit,
                    count=float(count),
                    per_label=f"{label}{unit}" if label else unit_singular(unit),
                    energy_wh_per=fp.energy_j / 3600 / count * factor,
                    co2e_g_per=co2_per * factor,
                    is_primary=unit == job.primary_unit,
                )
            )
        efficiency.sort(key=lambda r: (not r.is_primary, r.unit))
    end = job.ended_at or (fp.last_window_end if fp else None)
    hw_ids = sorted({a.device.hardware_model_id for a in allocs if a.device.hardware_model_id})
    # The what-if panel starts from the job's own device model: a cap or zone alone is then a
    # projection of the job as it ran (the most-held model when the job mixed models).
    held = Counter(a.device.hardware_model.key for a in allocs if a.device.hardware_model is not None)
    return {
        "job": job,
        "site": job.cluster.site,
        "zone": job.cluster.site.zone,
        "footprint": fp,
        # Dual Scope 2, upstream and water beside the ledger's figures (docs/method.md §3).
        "scope2": job_market_water(job=job, footprint=fp, site=job.cluster.site) if fp else None,
        "co2e_kg": _kg(fp.co2e_g) if fp else None,
        "co2e_low_kg": _kg(fp.co2e_low_g) if fp else None,
        "co2e_high_kg": _kg(fp.co2e_high_g) if fp else None,
        "energy_kwh": _kwh(fp.energy_j) if fp else None,
        # The intensity the ledger applied over the job's hours, weighted by its energy.
        "avg_intensity_g_per_kwh": fp.co2e_operational_g / _kwh(fp.energy_j) if fp and fp.energy_j > 0 else None,
        "quality_label": quality_label(fp.measured_fraction if fp else None),
        "coverage_label": counter_coverage_label(fp),
        "duration_h": (end - job.started_at).total_seconds() / 3600 if end else None,
        "allocations": [
            {
                "host": a.device.host.hostname,
                "index": a.device.index,
                "uuid": a.device.uuid,
                "model": a.device.hardware_model.name if a.device.hardware_model else a.device.reported_name,
                "start": a.start,
                "end": a.end,
                "fraction": a.fraction,
                "mig_instance": a.mig_instance,
            }
            for a in allocs
        ],
        "gpu_count": len({a.device_id for a in allocs}),
        "hardware_model_ids": hw_ids,
        "device_key": held.most_common(1)[0][0] if held else None,
        "hours": {
            "hour": [h[0] for h in hours],
            "energy_kwh": [_kwh(h[1]) for h in hours],
            "gpu_energy_kwh": [_kwh(h[2]) for h in hours],
            "co2e_operational_kg": [_kg(h[3]) for h in hours],
            "co2e_embodied_kg": [_kg(h[4]) for h in hours],
            "intensity_g_per_kwh": [h[5] for h in hours],
        },
        "device_traces": device_traces,
        "breakdown_energy_kwh": breakdown_energy,
        "breakdown_co2e_kg": breakdown_co2,
        "efficiency": efficiency,
    }
