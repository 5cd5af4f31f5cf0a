"""What-if service: builds pure-engine inputs from ORM rows (Job, JobFootprint, HardwareModel,
Site, GridZone, HourlyIntensity) and calls accounting.domain.whatif. Keyword-only arguments;
raises InputError (naming the field) for anything the caller can fix."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from accounting.domain import embodied as emb
from accounting.domain.catalog import CATALOG, TFLOPS, DeviceSpec, canonical_key, device_from_figures
from accounting.domain.errors import InputError, StateError
from accounting.domain.units import HOURS_PER_YEAR
from accounting.domain.whatif import (
    CapRun,
    CarbonContext,
    EmbodiedPolicy,
    EstimateResult,
    FleetPlan,
    FleetWorkload,
    HardwareProjection,
    HostShare,
    LedgerTotals,
    MeasuredJob,
    StartWindow,
    best_start_window,
    default_host,
    estimate_job,
    plan_fleet_upgrade,
    project_hardware,
    rebase_on_ledger,
)
from accounting.domain.whatif import host as host_defaults
from accounting.models import GridZone, HardwareModel, HourlyIntensity, IntensitySignal, Job


def whatif_device_specs() -> Mapping[str, DeviceSpec]:
    """The catalog, plus inventory rows (HardwareModel) for devices it lacks when they carry the
    figures the engine needs. Catalog entries win: their figures are cited datasheet data."""
    specs: dict[str, DeviceSpec] = dict(CATALOG)
    rows = HardwareModel.objects.exclude(key__in=list(CATALOG)).filter(
        kind=HardwareModel.Kind.GPU,
        idle_power_w__isnull=False,
        max_power_w__isnull=False,
        memory_gb__isnull=False,
        memory_bandwidth_gb_s__isnull=False,
    )
    for row in rows:
        idle_w, max_w = row.idle_power_w, row.max_power_w
        memory_gb, bandwidth = row.memory_gb, row.memory_bandwidth_gb_s
        if idle_w is None or max_w is None or memory_gb is None or bandwidth is None:
            continue  # excluded by the query above; narrows the nullable fields
        flops = {k: float(v) for k, v in (row.peak_flops or {}).items() if isinstance(v, (int, float)) and v > 0}
        if "fp32" not in flops or max_w <= idle_w:
            continue
        specs[row.key] = DeviceSpec(
            key=row.key,
            name=row.name,
            vendor=row.vendor,
            match_names=tuple(row.match_names or ()),
            idle_power_w=idle_w,
            max_power_w=max_w,
            peak_flops=flops,
            memory_gb=memory_gb,
            memory_bandwidth_gb_s=bandwidth,
            interconnect_gb_s=row.interconnect_gb_s or 0.0,
            pcie_gb_s=64.0,
            process_node_nm=row.process_node_nm or 0.0,
            die_area_mm2=row.die_area_mm2 or 0.0,
            release_year=row.release_year or 0,
            sources=dict(row.sources or {}),
        )
    return specs


def whatif_embodied_for(*, device_key: str) -> EmbodiedPolicy | None:
    # An old catalog key (catalog.KEY_ALIASES) reads the row stored under its key now.
    row = HardwareModel.objects.filter(key=canonical_key(device_key)).first()
    if row is None:
        return None
    return _policy_from_row(row)


def _policy_from_row(row: HardwareModel) -> EmbodiedPolicy:
    return EmbodiedPolicy(
        embodied_kg=row.embodied_kg,
        embodied_low_kg=row.embodied_low_kg,
        embodied_high_kg=row.embodied_high_kg,
        lifetime_h=row.lifetime_years * HOURS_PER_YEAR,
        expected_utilisation=row.expected_utilisation,
        source=f"HardwareModel {row.key} v{row.version}: {row.embodied_source}",
    )


_GPU_POLICY = emb.DEFAULT_LIFETIME["gpu"]


def _embodied_from_args(args: Mapping[str, Any] | None, field_name: str) -> EmbodiedPolicy | None:
    if not args or args.get("embodied_kg") is None:
        return None
    kg = args["embodied_kg"]
    return EmbodiedPolicy(
        embodied_kg=kg,
        embodied_low_kg=args.get("embodied_low_kg", kg),
        embodied_high_kg=args.get("embodied_high_kg", kg),
        lifetime_h=args.get("lifetime_years", _GPU_POLICY.lifetime_years) * HOURS_PER_YEAR,
        expected_utilisation=args.get("expected_utilisation", _GPU_POLICY.expected_utilisation),
        source=str(args.get("citation", "given in request")),
    ).checked(field_name)


def device_spec_from_args(args: Mapping[str, Any]) -> DeviceSpec:
    """A device outside the catalog from the request's figures (peak TFLOP/s by precision)."""
    return device_from_figures(
        key=args.get("key", "described-device"),
        name=args.get("name") or args.get("key", "described-device"),
        peak_flops={p: v * TFLOPS for p, v in args["peak_tflops"].items()},
        memory_bandwidth_gb_s=args["memory_bandwidth_gb_s"],
        max_power_w=args["max_power_w"],
        memory_gb=args["memory_gb"],
        idle_power_w=args.get("idle_power_w"),
        interconnect_gb_s=args.get("interconnect_gb_s", 0.0),
        source=args.get("citation", "given in request"),
    )


def whatif_host(*, args: Mapping[str, Any] | None = None) -> HostShare:
    """The host share of a planned job: the request's figures over the domain defaults. Host
    embodied carbon comes from the loaded host rows (CPU, DRAM/GB, SSD/GB, chassis), as the
    ledger's does, so an operator's correction of a host factor moves both; without the rows,
    from the domain figures those rows are loaded from."""
    args = dict(args or {})
    base = default_host(
        **{k: args[k] for k in ("gpu_slots", "cpu_sockets", "dram_gb", "ssd_gb") if k in args},
    )
    power_w = args.get("power_w", base.power_w)
    source = base.source if "power_w" not in args else f"host power {power_w:g} W (given)"
    policy: EmbodiedPolicy | None
    if args.get("embodied_kg") is not None:
        kg = args["embodied_kg"]
        policy = EmbodiedPolicy(
            embodied_kg=kg,
            embodied_low_kg=args.get("embodied_low_kg", kg),
            embodied_high_kg=args.get("embodied_high_kg", kg),
            lifetime_h=args.get("lifetime_years", emb.DEFAULT_LIFETIME["chassis"].lifetime_years) * HOURS_PER_YEAR,
            expected_utilisation=args.get("expected_utilisation", emb.DEFAULT_LIFETIME["chassis"].expected_utilisation),
            source="host embodied given in request",
        )
    else:
        policy = (
            _host_policy_from_rows(
                cpu_sockets=args.get("cpu_sockets", host_defaults.DEFAULT_CPU_SOCKETS),
                dram_gb=args.get("dram_gb", host_defaults.DEFAULT_DRAM_GB),
                ssd_gb=args.get("ssd_gb", host_defaults.DEFAULT_SSD_GB),
            )
            or base.embodied
        )
    return HostShare(power_w=power_w, gpu_slots=base.gpu_slots, embodied=policy, source=source).checked()


def _host_policy_from_rows(*, cpu_sockets: int, dram_gb: float, ssd_gb: float) -> EmbodiedPolicy | None:
    """One policy whose charge per hour equals the sum of the host rows' charges (each row with
    its own lifetime and utilisation), in the chassis row's lifetime."""
    quantities = {
        f"cpu-{emb.DEFAULT_CPU_PROFILE}": float(cpu_sockets),
        "dram-per-gb": float(dram_gb),
        "ssd-per-gb": float(ssd_gb),
        "chassis-gpu-server": 1.0,
    }
    rows = {r.key: r for r in HardwareModel.objects.filter(key__in=list(quantities))}
    if set(rows) != set(quantities):
        return None
    ref = rows["chassis-gpu-server"]
    ref_h = ref.lifetime_years * HOURS_PER_YEAR * ref.expected_utilisation
    totals = [0.0, 0.0, 0.0]
    for key, qty in quantities.items():
        r = rows[key]
        scale = qty * ref_h / (r.lifetime_years * HOURS_PER_YEAR * r.expected_utilisation)
        for i, kg in enumerate((r.embodied_kg, r.embodied_low_kg, r.embodied_high_kg)):
            totals[i] += kg * scale
    return EmbodiedPolicy(
        embodied_kg=totals[0],
        embodied_low_kg=totals[1],
        embodied_high_kg=totals[2],
        lifetime_h=ref.lifetime_years * HOURS_PER_YEAR,
        expected_utilisation=ref.expected_utilisation,
        source="host rows "
        + ", ".join(f"{k} × {q:g}" for k, q in quantities.items())
        + f" (v{max(r.version for r in rows.values())})",
    )


def whatif_carbon_context(
    *,
    pue: float | None,
    intensity_g_per_kwh: float | None,
    zone_code: str | None,
    default_pue: float | None = None,
    field_prefix: str = "",
    zone_obj: GridZone | None = None,
) -> CarbonContext:
    """Intensity given, or the zone's annual factor (with its marginal as the high end when higher)."""
    if intensity_g_per_kwh is None and not zone_code and zone_obj is None:
        raise InputError(f"{field_prefix}intensity_g_per_kwh", "give intensity_g_per_kwh or zone_code")
    low = high = None
    source = "given in request"
    if intensity_g_per_kwh is None:
        zone = zone_obj if zone_obj is not None else GridZone.objects.filter(code=zone_code).first()
        if zone is None:
            raise InputError(f"{field_prefix}zone_code", f"unknown grid zone {zone_code!r}")
        intensity_g_per_kwh = zone.annual_intensity_g_per_kwh
        if zone.annual_marginal_g_per_kwh and zone.annual_marginal_g_per_kwh > intensity_g_per_kwh:
            high = zone.annual_marginal_g_per_kwh
        source = f"zone {zone.code} annual ({zone.source} {zone.vintage} v{zone.version})"
    final_pue = pue if pue is not None else default_pue
    if final_pue is None:
        raise InputError(f"{field_prefix}pue", "give pue")
    return CarbonContext(
        pue=final_pue,
        intensity_g_per_kwh=intensity_g_per_kwh,
        intensity_low_g_per_kwh=low,
        intensity_high_g_per_kwh=high,
        source=source,
    ).checked()


def whatif_estimate(
    *,
    device_count: int,
    pue: float,
    device_key: str | None = None,
    device: Mapping[str, Any] | None = None,
    intensity_g_per_kwh: float | None = None,
    zone_code: str | None = None,
    hours: float | None = None,
    device_hours: float | None = None,
    flops: float | None = None,
    parameters: float | None = None,
    tokens: float | None = None,
    efficiency: float | None = None,
    precision: str = "bf16",
    avg_power_w: float | None = None,
    utilisation: float | None = None,
    embodied: Mapping[str, Any] | None = None,
    host: Mapping[str, Any] | None = None,
    include_host: bool = True,
    units: Mapping[str, float] | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> EstimateResult:
    """A planned job as the ledger would charge it: the device from the catalog/inventory or
    described by its figures, the host share from ``whatif_host`` unless ``include_host`` is off."""
    carbon = whatif_carbon_context(pue=pue, intensity_g_per_kwh=intensity_g_per_kwh, zone_code=zone_code)
    if device_key is not None:
        device_key = canonical_key(device_key)  # an old catalog key is read as its key now
    spec = None
    if device is not None:
        spec = device["spec"] if "spec" in device else device_spec_from_args(device)
        policy = _embodied_from_args(embodied, "embodied") or _embodied_from_args(device, "device")
    else:
        specs = specs if specs is not None else whatif_device_specs()
        policy = _embodied_from_args(embodied, "embodied") or (
            whatif_embodied_for(device_key=device_key) if device_key else None
        )
    return estimate_job(
        device_key=None if spec is not None else device_key,
        device=spec,
        device_count=device_count,
        carbon=carbon,
        hours=hours,
        device_hours=device_hours,
        flops=flops,
        parameters=parameters,
        tokens=tokens,
        efficiency=efficiency,
        precision=precision,
        avg_power_w=avg_power_w,
        utilisation=utilisation,
        embodied=policy,
        host=whatif_host(args=host) if include_host else None,
        units=units,
        specs=specs,
    )


def whatif_measured_job(*, job: Job) -> MeasuredJob:
    """A finished (or running) job as the engine sees it: device model and count from its
    allocations, runtime from its timestamps, GPU energy from its JobFootprint."""
    rows = list(job.allocations.values_list("device_id", "device__hardware_model__key"))
    if not rows:
        raise StateError("The job has no device allocations: nothing measured to project.")
    models = Counter(key for _, key in rows if key)
    if not models:
        raise StateError("The job's devices have no hardware model: nothing measured to project.")
    device_key = models.most_common(1)[0][0]
    count = len({device_id for device_id, _ in rows})
    try:
        footprint = job.footprint
    except Job.footprint.RelatedObjectDoesNotExist:  # type: ignore[attr-defined]
        footprint = None
    if footprint is None or footprint.gpu_energy_j <= 0:
        raise StateError("The job has no measured GPU energy yet: nothing measured to project.")
    if job.ended_at is not None:
        runtime_s = (job.ended_at - job.started_at).total_seconds()
    else:
        runtime_s = footprint.device_hours * 3600 / count
    if runtime_s <= 0:
        raise StateError("The job has no measured runtime yet: nothing measured to project.")
    meta = dict(job.model_meta or {})
    precision = str(meta.get("precision", "bf16"))
    util = meta.get("avg_util")
    split = meta.get("time_split")
    return MeasuredJob(
        device_key=device_key,
        device_count=count,
        runtime_s=runtime_s,
        gpu_energy_j=footprint.gpu_energy_j,
        family=job.family,
        kind=job.kind,
        precision=precision,
        avg_util=float(util) if isinstance(util, (int, float)) and 0 <= util <= 1 else None,
        units={k: float(v) for k, v in (job.units or {}).items() if isinstance(v, (int, float)) and v > 0},
        split=tuple(float(x) for x in split) if isinstance(split, (list, tuple)) and len(split) == 3 else None,  # type: ignore[arg-type]
        model_meta=meta,
        power_cap_w=job.power_cap_w,
        job_id=job.pk,
    )


def whatif_ledger_totals(*, job: Job) -> LedgerTotals:
    """The job's JobFootprint as the baseline of a projection (409 when nothing is measured)."""
    try:
        fp = job.footprint
    except Job.footprint.RelatedObjectDoesNotExist:  # type: ignore[attr-defined]
        fp = None
    if fp is None or fp.gpu_energy_j <= 0:
        raise StateError("The job has no measured GPU energy yet: nothing measured to project.")
    return LedgerTotals(
        gpu_energy_j=fp.gpu_energy_j,
        host_energy_j=fp.host_energy_j,
        facility_energy_j=fp.facility_energy_j,
        energy_j=fp.energy_j,
        operational_co2e_g=fp.co2e_operational_g,
        embodied_co2e_g=fp.co2e_embodied_g,
        co2e_low_g=fp.co2e_low_g,
        co2e_high_g=fp.co2e_high_g,
    )


def whatif_cap_runs(*, job: Job, device_key: str, limit: int = 500) -> list[CapRun]:
    """Runs of the same work (same organisation, job name and kind) on ``device_key`` that ended,
    with their power cap (none = the device's limit): what the power-cap α is fitted from."""
    if not job.name:
        return []
    spec = CATALOG.get(device_key)
    rows = (
        Job.objects.filter(
            org_id=job.org_id,
            name=job.name,
            kind=job.kind,
            status=Job.Status.COMPLETED,
            ended_at__isnull=False,
            allocations__device__hardware_model__key=device_key,
        )
        .distinct()
        .order_by("-ended_at")
        .values_list("power_cap_w", "started_at", "ended_at")[:limit]
    )
    runs = []
    for cap_w, started_at, ended_at in rows:
        cap = cap_w if cap_w is not None else (spec.max_power_w if spec else None)
        if ended_at is None:
            continue  # excluded by the query; narrows the nullable field
        runtime_s = (ended_at - started_at).total_seconds()
        if cap is not None and runtime_s > 0:
            runs.append(CapRun(job_key=job.name, cap_w=float(cap), runtime_s=runtime_s))
    return runs


def whatif_project_job(
    *,
    job: Job,
    target_key: str,
    target_count: int | None = None,
    target_precision: str | None = None,
    target_power_cap_w: float | None = None,
    target_zone_code: str | None = None,
    target_pue: float | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> HardwareProjection:
    """The engine's projection of the measured job, rebased on its ledger footprint: the baseline
    is what the ledger charged (GPU + host + facility energy, hourly intensities, embodied); the
    projection changes only what the scenario changes (``rebase_on_ledger``)."""
    measured = whatif_measured_job(job=job)
    ledger = whatif_ledger_totals(job=job)
    carbon = CarbonContext(
        pue=ledger.pue,
        intensity_g_per_kwh=ledger.intensity_g_per_kwh,
        source=f"the ledger's effective intensity over the job's hours (site {job.cluster.site.name})",
    ).checked()
    target_intensity = None
    if target_zone_code:
        target_intensity = whatif_carbon_context(
            pue=target_pue,
            intensity_g_per_kwh=None,
            zone_code=target_zone_code,
            default_pue=ledger.pue,
            field_prefix="target_",
        )
    target_carbon = None
    if target_intensity is not None or target_pue is not None:
        target_carbon = CarbonContext(
            pue=target_pue if target_pue is not None else ledger.pue,
            intensity_g_per_kwh=(
                target_intensity.intensity_g_per_kwh if target_intensity else ledger.intensity_g_per_kwh
            ),
            intensity_high_g_per_kwh=target_intensity.intensity_high_g_per_kwh if target_intensity else None,
            source=target_intensity.source if target_intensity else carbon.source,
        ).checked()
    policies = {
        row.key: _policy_from_row(row)
        for row in HardwareModel.objects.filter(key__in={measured.device_key, target_key})
    }
    projection = project_hardware(
        job=measured,
        target_key=target_key,
        carbon=carbon,
        target_count=target_count,
        target_precision=target_precision,
        target_power_cap_w=target_power_cap_w,
        source_embodied=policies.get(measured.device_key),
        target_embodied=policies.get(target_key),
        target_carbon=target_carbon,
        specs=specs if specs is not None else whatif_device_specs(),
        cap_runs=whatif_cap_runs(job=job, device_key=target_key) if target_power_cap_w is not None else (),
    )
    return rebase_on_ledger(
        projection=projection,
        ledger=ledger,
        source_embodied=policies.get(measured.device_key),
        target_embodied=policies.get(target_key),
        target_pue=target_pue,
        target_intensity=target_intensity,
    )


def whatif_fleet_plan(
    *,
    old_key: str,
    old_count: int,
    new_key: str,
    new_count: int,
    workloads: Sequence[Mapping[str, Any]],
    pue: float,
    intensity_g_per_kwh: float | None = None,
    zone_code: str | None = None,
    old_age_years: float = 0.0,
    old_embodied: Mapping[str, Any] | None = None,
    new_embodied: Mapping[str, Any] | None = None,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> FleetPlan:
    carbon = whatif_carbon_context(pue=pue, intensity_g_per_kwh=intensity_g_per_kwh, zone_code=zone_code)
    old_policy = _embodied_from_args(old_embodied, "old_embodied") or whatif_embodied_for(device_key=old_key)
    new_policy = _embodied_from_args(new_embodied, "new_embodied") or whatif_embodied_for(device_key=new_key)
    if old_policy is None:
        raise InputError("old_embodied", f"no HardwareModel row for {old_key!r}: give embodied figures")
    if new_policy is None:
        raise InputError("new_embodied", f"no HardwareModel row for {new_key!r}: give embodied figures")
    return plan_fleet_upgrade(
        old_key=old_key,
        old_count=old_count,
        new_key=new_key,
        new_count=new_count,
        workloads=[FleetWorkload(**dict(w)) for w in workloads],
        carbon=carbon,
        old_embodied=old_policy,
        new_embodied=new_policy,
        old_age_years=old_age_years,
        specs=specs if specs is not None else whatif_device_specs(),
    )


def whatif_best_window(
    *,
    duration_s: float,
    earliest_start: dt.datetime,
    deadline: dt.datetime,
    forecast: Sequence[tuple[dt.datetime, float]] | None = None,
    zone_code: str | None = None,
    energy_j: float | None = None,
    pue: float = 1.0,
) -> StartWindow:
    """Forecast from the request, or the zone's stored hourly average series (measured values
    win over forecasts for the same hour)."""
    if not forecast:
        if not zone_code:
            raise InputError("forecast", "give forecast points or zone_code")
        zone = GridZone.objects.filter(code=zone_code).first()
        if zone is None:
            raise InputError("zone_code", f"unknown grid zone {zone_code!r}")
        series: dict[dt.datetime, tuple[bool, float]] = {}
        rows = HourlyIntensity.objects.filter(
            zone=zone,
            signal=IntensitySignal.AVERAGE,
            hour__gte=earliest_start - dt.timedelta(hours=1),
            hour__lt=deadline,
        ).values_list("hour", "is_forecast", "intensity_g_per_kwh")
        for hour, is_forecast, value in rows:
            if hour not in series or series[hour][0]:
                series[hour] = (is_forecast, value)
        forecast = [(h, v) for h, (_, v) in sorted(series.items())]
        if not forecast:
            raise InputError("zone_code", f"zone {zone_code!r} has no hourly intensity in the window")
    return best_start_window(
        forecast=forecast,
        duration_s=duration_s,
        earliest_start=earliest_start,
        deadline=deadline,
        energy_j=energy_j,
        pue=pue,
    )


def whatif_jsonable(value: Any) -> Any:
    """Dataclass results as JSON-ready data: datetimes as ISO strings, non-finite floats as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: whatif_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): whatif_jsonable(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): whatif_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [whatif_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
