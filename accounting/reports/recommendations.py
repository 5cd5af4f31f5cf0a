"""Three recommendations for a month's report, computed from the month's data with the what-if
engine (accounting.domain.whatif through accounting.services.whatif, the same code as the
what-if API and the planner), each with its figure and the engine's assumptions.

Candidates, each from the month's own jobs and the organisation's own sites and hardware:

- **zone move**: the month's largest job run at the organisation's site with the cleanest grid
  (lowest PUE x annual intensity), or, where the job's site is already the cleanest, started in
  the cleanest window of the following 24 h (the zone's hourly series); a job that recurred in
  the month (same name and team) counts each run;
- **power cap**: the same job with its GPUs capped at 70 % of their maximum power, where its
  measured draw is above that (the energy-time trade-off of the power-cap model);
- **consolidation of idle allocations**: the job-hours whose held GPUs drew only their idle
  baseline (MonthReport.idle_allocations), consolidated so the idle devices are freed;
- **upgrade**: the month's jobs on their most used accelerator model moved to the most efficient
  newer model the inventory has, one for one, with the carbon payback of the new hardware.

The three with the largest saving per month are kept (at most one of each kind). A candidate
the engine cannot compute (a job without allocations, a zone without an hourly series) is left
out, never invented.
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from collections import Counter
from dataclasses import dataclass

from accounting.domain.errors import InputError, StateError
from accounting.domain.units import J_PER_KWH, S_PER_H
from accounting.domain.whatif import CarbonContext
from accounting.domain.whatif.common import family_split
from accounting.domain.whatif.consolidation import idle_consolidation
from accounting.domain.whatif.fleet import workloads_from_jobs
from accounting.domain.whatif.power_cap import power_cap_curve
from accounting.models import HardwareModel, Job, Site
from accounting.selectors.reports import MonthReport
from accounting.services.whatif import (
    whatif_best_window,
    whatif_carbon_context,
    whatif_device_specs,
    whatif_embodied_for,
    whatif_fleet_plan,
    whatif_measured_job,
    whatif_project_job,
)

CAP_SHARE = 0.7  # the power cap tried: 70 % of the device's maximum power
WINDOW_H = 24  # a start may move this far for the start-window candidate
KEEP = 3


@dataclass(frozen=True)
class Recommendation:
    kind: str  # "zone_move" | "start_window" | "power_cap" | "consolidate_idle" | "upgrade"
    title: str  # what to do, in plain words
    figure: str  # the saving, in plain words
    saving_co2e_g: float  # per month, as projected (the ranking key)
    saving_energy_j: float  # per month (negative: uses more energy)
    assumptions: tuple[str, ...]
    job_id: int | None = None
    payback_years: float | None = None


def _kg(g: float) -> str:
    return f"{g / 1000.0:,.1f} kg CO₂e"


def _kwh(j: float) -> str:
    return f"{j / J_PER_KWH:,.0f} kWh"


MAX_RUNS = 50  # runs of a recurring job projected one by one


def _subject_runs(report: MonthReport) -> list[Job]:
    """The month's largest job the engine can project (allocations, hardware model, GPU energy)
    first, then the other runs of it (same name and team) that started in the month and can be
    projected: each run is projected on its own, so a short rerun counts as short."""
    for line in report.top_jobs:
        job = Job.objects.select_related("cluster__site__zone", "footprint").filter(pk=line.id).first()
        if job is None or not _projectable(job):
            continue
        runs = [job]
        if job.name:
            others = Job.objects.select_related("cluster__site__zone", "footprint").filter(
                team_id=job.team_id,
                name=job.name,
                started_at__gte=dt.datetime.combine(report.month, dt.time.min, tzinfo=dt.UTC),
                started_at__lt=dt.datetime.combine(report.period_end, dt.time.min, tzinfo=dt.UTC),
            )
            runs += [o for o in others.exclude(pk=job.pk).order_by("started_at", "pk")[:MAX_RUNS] if _projectable(o)]
        return runs
    return []


def _projectable(job: Job) -> bool:
    try:
        whatif_measured_job(job=job)
    except StateError:
        return False
    return True


def _runs_note(runs: list[Job]) -> tuple[str, ...]:
    if len(runs) <= 1:
        return ()
    return (f"the job ran {len(runs)} times this month: each run projected from its own measurements, summed",)


def _label(job: Job) -> str:
    return job.name or job.scheduler_job_id


def _zone_move(runs: list[Job]) -> Recommendation | None:
    job = runs[0]
    site = job.cluster.site
    candidates = [
        s
        for s in Site.objects.filter(org_id=job.org_id).select_related("zone").order_by("pk")
        if s.zone is not None and s.zone.annual_intensity_g_per_kwh is not None
    ]
    best = min(candidates, key=lambda s: (s.pue * s.zone.annual_intensity_g_per_kwh, s.pk), default=None)
    if best is None or best.pue * best.zone.annual_intensity_g_per_kwh >= (
        site.pue * site.zone.annual_intensity_g_per_kwh
    ):
        return _start_window(runs)
    projections = [
        whatif_project_job(
            job=run,
            target_key=whatif_measured_job(job=run).device_key,
            target_zone_code=best.zone.code,
            target_pue=best.pue,
        )
        for run in runs
        if run.cluster.site_id == site.pk
    ]
    saving = -sum(p.co2e_change_g for p in projections)
    before = sum(p.baseline.co2e_g for p in projections)
    return Recommendation(
        kind="zone_move",
        title=f"Run “{_label(job)}” at {best.name} ({best.zone.code}) instead of {site.name} ({site.zone.code})",
        figure=f"saves about {_kg(saving)} a month ({saving / before * 100:.0f} % of the job's projected footprint)",
        saving_co2e_g=saving,
        saving_energy_j=sum(p.baseline.total_energy_j - p.projected.total_energy_j for p in projections),
        assumptions=tuple(projections[0].assumptions) + _runs_note(runs),
        job_id=job.pk,
    )


def _start_window(runs: list[Job]) -> Recommendation | None:
    job = runs[0]
    site = job.cluster.site
    windows = []
    for run in runs:
        runtime_s = ((run.ended_at or run.started_at) - run.started_at).total_seconds()
        if runtime_s <= 0:
            continue
        try:
            windows.append(
                whatif_best_window(
                    duration_s=runtime_s,
                    earliest_start=run.started_at,
                    deadline=run.started_at + dt.timedelta(hours=WINDOW_H, seconds=runtime_s),
                    zone_code=site.zone.code,
                    energy_j=run.footprint.energy_j / site.pue,
                    pue=site.pue,
                )
            )
        except InputError:
            continue  # no hourly series around this run: nothing to choose its window from
    if not windows:
        return None
    saving = sum(w.saving_co2e_g or 0.0 for w in windows)
    return Recommendation(
        kind="start_window",
        title=f"Start “{_label(job)}” at {windows[0].best_start:%H:%M} UTC instead of {job.started_at:%H:%M} UTC "
        "(the cleanest hours of the grid within a day)",
        figure=f"saves about {_kg(saving)} a month",
        saving_co2e_g=saving,
        saving_energy_j=0.0,
        assumptions=tuple(windows[0].assumptions)
        + _runs_note(runs)
        + (
            (
                f"{len(windows)} of the {len(runs)} runs have an hourly grid series to choose from; "
                "the others are left out",
            )
            if len(windows) < len(runs)
            else ()
        ),
        job_id=job.pk,
    )


def _power_cap(runs: list[Job]) -> Recommendation | None:
    job = runs[0]
    specs = whatif_device_specs()
    first = whatif_measured_job(job=job)
    spec = specs.get(first.device_key)
    if spec is None:
        return None
    cap_w = float(round(spec.max_power_w * CAP_SHARE))
    saving = energy = 0.0
    notes: tuple[str, ...] = ()
    slowdowns = []
    for run in runs:
        measured = whatif_measured_job(job=run)
        power_w = measured.gpu_energy_j / (measured.runtime_s * measured.device_count)
        if measured.device_key != first.device_key or power_w <= cap_w:
            continue  # the cap would not bind on this run: nothing to save
        site = run.cluster.site
        carbon = whatif_carbon_context(pue=site.pue, intensity_g_per_kwh=None, zone_code=None, zone_obj=site.zone)
        compute, memory, _ = measured.split or family_split(measured.family, measured.kind)
        curve = power_cap_curve(
            device_key=measured.device_key,
            device_count=measured.device_count,
            runtime_s=measured.runtime_s,
            avg_power_w=power_w,
            caps_w=[power_w, cap_w],
            compute_share=compute,
            memory_share=memory,
            carbon=carbon,
            specs=specs,
        )
        now, capped = curve.points
        saving += (now.co2e_g or 0.0) - (capped.co2e_g or 0.0)
        energy += (now.energy_j - capped.energy_j) * site.pue
        slowdowns.append(capped.slowdown)
        if not notes:
            notes = (
                *curve.assumptions,
                f"time split compute/memory/other {compute:g}/{memory:g}/{1 - compute - memory:g}"
                + (" (measured)" if measured.split else f" (family default {measured.family} {measured.kind})"),
                f"PUE {carbon.pue:g}, intensity {carbon.intensity_g_per_kwh:g} gCO2e/kWh ({carbon.source})",
                "embodied carbon of the longer hold not counted against the saving",
            )
    if not slowdowns:
        return None
    power_w = first.gpu_energy_j / (first.runtime_s * first.device_count)
    return Recommendation(
        kind="power_cap",
        title=f"Cap the GPUs of “{_label(job)}” at {cap_w:g} W ({spec.name}; they drew {power_w:.0f} W on average)",
        figure=f"saves about {_kg(saving)} and {_kwh(energy)} a month; the job runs about "
        f"{(max(slowdowns) - 1.0) * 100:.0f} % longer",
        saving_co2e_g=saving,
        saving_energy_j=energy,
        assumptions=notes + _runs_note(runs),
        job_id=job.pk,
    )


def _main_site(report: MonthReport, job: Job | None) -> Site | None:
    """The site the consolidation and upgrade figures are priced at: the subject job's, else
    the site with the most energy this month."""
    if job is not None:
        return job.cluster.site
    if not report.by_site:
        return None
    return Site.objects.select_related("zone").filter(name=report.by_site[0].site).first()


def _consolidate(report: MonthReport, site: Site | None) -> Recommendation | None:
    idle = report.idle_allocations
    if idle is None or idle.device_h <= 0 or idle.gpu_energy_j <= 0 or site is None:
        return None
    carbon: CarbonContext = whatif_carbon_context(
        pue=site.pue, intensity_g_per_kwh=None, zone_code=None, zone_obj=site.zone
    )
    period_h = (report.period_end - report.month).days * 24.0
    key = idle.by_model[0][0] if idle.by_model else None
    policy = whatif_embodied_for(device_key=key) if key else None
    freed = int(idle.device_h // period_h) if policy is not None and period_h > 0 else 0
    s = idle_consolidation(
        idle_device_h=idle.device_h,
        idle_power_w=idle.gpu_energy_j / (idle.device_h * S_PER_H),
        carbon=carbon,
        devices_freed=freed,
        period_h=period_h,
        embodied=policy,
    )
    return Recommendation(
        kind="consolidate_idle",
        title=f"Release GPUs that were reserved but idle ({idle.device_h:,.0f} GPU-hours this month)",
        figure=f"saves about {_kg(s.co2e_saved_g)} and {_kwh(s.it_energy_saved_j + s.facility_energy_saved_j)} a month"
        + (f"; frees {freed} GPU{'s' if freed != 1 else ''}" if freed else ""),
        saving_co2e_g=s.co2e_saved_g,
        saving_energy_j=s.it_energy_saved_j + s.facility_energy_saved_j,
        assumptions=(
            "idle: job-hours whose GPUs drew no more than 5 % above their idle baseline",
            *s.assumptions,
        ),
    )


def _upgrade(report: MonthReport, site: Site | None) -> Recommendation | None:
    if site is None:
        return None
    measured = []
    devices: dict[str, set[int]] = {}
    for line in report.top_jobs:
        job = Job.objects.select_related("footprint").filter(pk=line.id).first()
        if job is None:
            continue
        try:
            mj = whatif_measured_job(job=job)
        except StateError:
            continue
        measured.append(mj)
        devices.setdefault(mj.device_key, set()).update(job.allocations.values_list("device_id", flat=True))
    if not measured:
        return None
    old_key = Counter({k: len(v) for k, v in devices.items()}).most_common(1)[0][0]
    specs = whatif_device_specs()
    old = specs.get(old_key)
    if old is None:
        return None
    newer = [
        specs[k]
        for k in HardwareModel.objects.values_list("key", flat=True)
        if k in specs and k != old_key and specs[k].vendor == old.vendor and specs[k].release_year > old.release_year
    ]
    if not newer:
        return None
    new = max(newer, key=lambda d: (d.flops_at("bf16")[0] / d.max_power_w, d.key))
    period_s = (report.period_end - report.month).days * 86400.0
    count = len(devices[old_key])
    try:
        plan = whatif_fleet_plan(
            old_key=old_key,
            old_count=count,
            new_key=new.key,
            new_count=count,
            workloads=[
                vars(w)
                for w in workloads_from_jobs(jobs=[m for m in measured if m.device_key == old_key], period_s=period_s)
            ],
            pue=site.pue,
            zone_code=site.zone.code,
            specs=specs,
        )
    except InputError:
        return None
    monthly = plan.operational_saving_g_per_year / 12.0
    payback = plan.payback_years
    return Recommendation(
        kind="upgrade",
        title=f"Replace the {count} {old.name} GPU{'s' if count != 1 else ''} these jobs used with {new.name}",
        figure=f"saves about {_kg(monthly)} of electricity emissions a month; making the new hardware emits "
        f"{_kg(plan.new_embodied_co2e_g)}, "
        + (f"paid back in {payback:.1f} years" if payback is not None else "never paid back at this grid intensity"),
        saving_co2e_g=monthly,
        saving_energy_j=(
            plan.energy_before_j_per_year
            + plan.facility_energy_before_j_per_year
            - plan.energy_after_j_per_year
            - plan.facility_energy_after_j_per_year
        )
        / 12.0,
        assumptions=tuple(plan.assumptions),
        payback_years=payback,
    )


def _forget(key: int, _ref: object) -> None:
    _CACHE.pop(key, None)


_CACHE: dict[int, tuple[weakref.ref[MonthReport], tuple[Recommendation, ...]]] = {}


def report_recommendations(report: MonthReport) -> tuple[Recommendation, ...]:
    """The report's three recommendations with the largest saving per month (fewer when fewer
    apply). Computed once per report object (the mail's HTML, text and PDF share them)."""
    hit = _CACHE.get(id(report))
    if hit is not None and hit[0]() is report:
        return hit[1]
    runs = _subject_runs(report)
    site = _main_site(report, runs[0] if runs else None)
    candidates = [
        _zone_move(runs) if runs else None,
        _power_cap(runs) if runs else None,
        _consolidate(report, site),
        _upgrade(report, site),
    ]
    kept = sorted(
        (c for c in candidates if c is not None and c.saving_co2e_g > 0), key=lambda c: (-c.saving_co2e_g, c.kind)
    )[:KEEP]
    result = tuple(kept)
    key = id(report)
    _CACHE[key] = (weakref.ref(report, functools.partial(_forget, key)), result)
    return result
