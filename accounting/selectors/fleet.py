"""Fleet reads for the dashboard: sites and grid zones, devices and hosts.

Reads the aggregates (TeamDay, JobHour, DeviceHour) and the fleet/factor tables. Access
follows the one access rule, ``accounting.selectors.access.Principal``: org admins see the whole fleet of
their organisations; a team member sees the energy of their teams' jobs and only the devices
their teams held during the period.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q, QuerySet, Sum

from accounting.domain.embodied import embodied_charge_g_per_h
from accounting.domain.units import DAYS_PER_YEAR, G_PER_KG, HOURS_PER_YEAR
from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.domain.whatif import place_shift_g, time_shift_bound_g
from accounting.models import (
    Device,
    DeviceHour,
    HourlyIntensity,
    IntensitySignal,
    Job,
    JobAllocation,
    JobHour,
    Site,
    TeamDay,
)
from accounting.selectors.access import Principal
from accounting.selectors.dashboard import Period

IDLE_UTIL_PCT = 5.0  # an allocated device-hour below this average utilisation counts as idle-allocated


# --- sites and zones -----------------------------------------------------------------------


@dataclass(frozen=True)
class SiteRow:
    id: int
    name: str
    zone_code: str
    zone_name: str
    annual_intensity_g_per_kwh: float
    pue: float
    pue_source: str
    energy_kwh: float
    co2e_operational_kg: float
    co2e_embodied_kg: float
    effective_g_per_kwh: float | None  # operational carbon / energy actually drawn
    timeshift_saving_kg: float
    placeshift_saving_kg: float


@dataclass(frozen=True)
class SiteOverview:
    period: Period
    sites: list[SiteRow]
    intensity: dict[str, dict[str, list]]  # zone code -> {"hour": [...], "g_per_kwh": [...]}
    heatmap_site_names: list[str]
    heatmap_kwh: list[list[float]]  # [site][hour of day UTC]
    cleanest_site: str | None
    job_energy_kwh: float
    actual_job_co2e_kg: float
    timeshift_co2e_kg: float
    placeshift_co2e_kg: float


def _visible_sites(*, scope: Principal) -> QuerySet[Site]:
    return Site.objects.filter(scope.orgs_q("org_id")).select_related("zone").order_by("name")


def site_overview_get(*, scope: Principal, period: Period, team_id: int | None = None) -> SiteOverview:
    """PUE, hourly intensity, where and when job energy was drawn, and what shifting would have saved.

    Time shifting: within each day and site, the same hourly loads re-ordered so the largest
    load falls in the cleanest hour (rearrangement bound: the best any within-day shift could
    do, ignoring deadlines). Place shifting: the same IT energy at the site with the lowest
    PUE × intensity over the period, hour by hour."""
    sites = list(_visible_sites(scope=scope))
    site_ids = [s.id for s in sites]
    td = TeamDay.objects.filter(scope.rows_q(), site_id__in=site_ids, day__gte=period.start, day__lt=period.end)
    if team_id is not None:
        td = td.filter(team_id=team_id)
    totals = {
        sid: (e, op, emb)
        for sid, e, op, emb in td.values_list("site_id").annotate(
            e=Sum("energy_j"), op=Sum("co2e_operational_g"), emb=Sum("co2e_embodied_g")
        )
    }
    jobs = Job.objects.filter(scope.rows_q())
    if team_id is not None:
        jobs = jobs.filter(team_id=team_id)
    hourly = (
        JobHour.objects.filter(job__in=jobs.values("id"), hour__gte=period.start_at, hour__lt=period.end_at)
        .values_list("job__cluster__site_id", "hour")
        .annotate(e=Sum("energy_j"))
    )
    energy_by_site_hour: dict[int, dict[dt.datetime, float]] = defaultdict(dict)
    for sid, hour, e in hourly:
        energy_by_site_hour[sid][hour] = e
    zone_ids = {s.zone_id for s in sites}
    curves: dict[int, dict[dt.datetime, float]] = defaultdict(dict)
    for zid, hour, value in (
        HourlyIntensity.objects.filter(
            zone_id__in=zone_ids,
            signal=IntensitySignal.AVERAGE,
            is_forecast=False,
            hour__gte=period.start_at,
            hour__lt=period.end_at,
        )
        .order_by("zone_id", "hour")
        .values_list("zone_id", "hour", "intensity_g_per_kwh")
    ):
        curves[zid][hour] = value

    def intensity(site: Site, hour: dt.datetime) -> float:
        return curves[site.zone_id].get(hour, site.zone.annual_intensity_g_per_kwh)

    # Cleanest site: lowest mean PUE × intensity over the period's hours.
    hours = [period.start_at + dt.timedelta(hours=h) for h in range(period.days * 24)]
    best = None
    if sites:
        best = min(sites, key=lambda s: s.pue * sum(intensity(s, h) for h in hours) / max(len(hours), 1))
    rows, heat = [], []
    total_e = actual_all = time_all = place_all = 0.0
    for s in sites:
        per_hour = energy_by_site_hour.get(s.id, {})
        actual = shifted = placed = 0.0
        by_day: dict[dt.date, list[tuple[float, float]]] = defaultdict(list)
        for hour, e in per_hour.items():
            kwh = _kwh(e)
            g = intensity(s, hour)
            actual += kwh * g
            by_day[hour.date()].append((kwh, g))
            if best is not None:
                placed += place_shift_g(
                    energy_j=e or 0.0, from_pue=s.pue, to_pue=best.pue, to_intensity_g_per_kwh=intensity(best, hour)
                )
        for day, pairs in by_day.items():
            day_start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
            shifted += time_shift_bound_g(
                loads_kwh=[kwh for kwh, _ in pairs],
                intensities_g_per_kwh=[intensity(s, day_start + dt.timedelta(hours=h)) for h in range(24)],
            )
        hod = [0.0] * 24
        for hour, e in per_hour.items():
            hod[hour.hour] += _kwh(e)
        heat.append(hod)
        e, op, emb = totals.get(s.id, (0.0, 0.0, 0.0))
        rows.append(
            SiteRow(
                id=s.id,
                name=s.name,
                zone_code=s.zone.code,
                zone_name=s.zone.name,
                annual_intensity_g_per_kwh=s.zone.annual_intensity_g_per_kwh,
                pue=s.pue,
                pue_source=s.pue_source,
                energy_kwh=_kwh(e),
                co2e_operational_kg=_kg(op),
                co2e_embodied_kg=_kg(emb),
                effective_g_per_kwh=(op / _kwh(e)) if e else None,
                timeshift_saving_kg=_kg(actual - shifted),
                placeshift_saving_kg=_kg(actual - placed) if best else 0.0,
            )
        )
        total_e += sum(_kwh(v) for v in per_hour.values())
        actual_all += actual
        time_all += shifted
        place_all += placed
    zone_curves: dict[str, dict[str, list[Any]]] = {}
    for s in sites:
        if s.zone.code in zone_curves or not curves.get(s.zone_id):
            continue
        pts = sorted(curves[s.zone_id].items())
        zone_curves[s.zone.code] = {"hour": [p[0] for p in pts], "g_per_kwh": [p[1] for p in pts]}
    return SiteOverview(
        period=period,
        sites=rows,
        intensity=zone_curves,
        heatmap_site_names=[s.name for s in sites],
        heatmap_kwh=heat,
        cleanest_site=best.name if best else None,
        job_energy_kwh=total_e,
        actual_job_co2e_kg=_kg(actual_all),
        timeshift_co2e_kg=_kg(time_all),
        placeshift_co2e_kg=_kg(place_all),
    )


# --- devices and hosts ---------------------------------------------------------------------


@dataclass(frozen=True)
class UsageRow:
    key: str
    name: str
    devices: int
    observed_h: float
    allocated_h: float
    idle_allocated_h: float
    avg_util_pct: float | None
    avg_power_w: float | None
    energy_kwh: float
    co2e_operational_kg: float
    embodied_charged_kg: float  # amortised embodied carbon of the period (all device-hours)
    site: str = ""

    @property
    def allocated_share(self) -> float | None:
        return self.allocated_h / self.observed_h if self.observed_h else None

    @property
    def unallocated_h(self) -> float:
        return max(self.observed_h - self.allocated_h, 0.0)

    @property
    def busy_allocated_h(self) -> float:
        return max(self.allocated_h - self.idle_allocated_h, 0.0)


@dataclass(frozen=True)
class EmbodiedRow:
    key: str
    name: str
    devices: int
    embodied_kg: float
    embodied_low_kg: float
    embodied_high_kg: float
    embodied_kind: str
    lifetime_years: float
    expected_utilisation: float
    charge_g_per_h: float  # per device-hour held (SCI time share)
    avg_age_years: float | None
    amortised_share: float | None  # mean share of life already elapsed
    embodied_charged_kg: float


@dataclass(frozen=True)
class DeviceOverview:
    period: Period
    models: list[UsageRow]
    hosts: list[UsageRow]
    embodied: list[EmbodiedRow]
    devices_total: int
    fleet_scope: bool


def _device_ids_for_scope(*, scope: Principal, period: Period, team_id: int | None) -> Q:
    """Devices the viewer may see: the fleet of admin orgs (unless a team is picked) plus the
    devices the viewer's (or the picked) teams held during the period."""
    if scope.is_superuser and team_id is None:
        return Q()
    held_jobs = Job.objects.filter(scope.rows_q())
    if team_id is not None:
        held_jobs = held_jobs.filter(team_id=team_id)
    held = (
        JobAllocation.objects.filter(job__in=held_jobs.values("id"), start__lt=period.end_at)
        .filter(Q(end__isnull=True) | Q(end__gt=period.start_at))
        .values("device_id")
    )
    q = Q(id__in=held)
    if team_id is None and scope.admin_org_ids:
        q |= Q(host__cluster__site__org_id__in=sorted(scope.admin_org_ids))
    return q


def device_overview_get(
    *, scope: Principal, period: Period, now: dt.datetime, team_id: int | None = None
) -> DeviceOverview:
    devices = list(
        Device.objects.filter(_device_ids_for_scope(scope=scope, period=period, team_id=team_id))
        .select_related("hardware_model", "host__cluster__site")
        .order_by("host__hostname", "index")
    )
    ids = [d.id for d in devices]
    agg = {}
    if ids:
        agg = {
            r[0]: r[1:]
            for r in DeviceHour.objects.filter(device_id__in=ids, hour__gte=period.start_at, hour__lt=period.end_at)
            .values_list("device_id")
            .annotate(
                obs=Sum("observed_s"),
                alloc=Sum("allocated_s"),
                idle_alloc=Sum("allocated_s", filter=Q(allocated_s__gt=0, avg_util_pct__lt=IDLE_UTIL_PCT)),
                util_s=Sum(F("avg_util_pct") * F("observed_s")),
                e=Sum("energy_j"),
                op=Sum("co2e_operational_g"),
                emb=Sum("co2e_embodied_g"),
            )
        }
    by_model: dict[str, list] = defaultdict(list)
    by_host: dict[str, list] = defaultdict(list)
    for d in devices:
        key = d.hardware_model.key if d.hardware_model else "unknown"
        by_model[key].append(d)
        by_host[d.host.hostname].append(d)

    def usage(key: str, name: str, group: list[Device], site: str = "") -> UsageRow:
        obs = alloc = idle = util_s = e = op = emb = 0.0
        for d in group:
            r = agg.get(d.id)
            if r is None:
                continue
            obs += r[0] or 0
            alloc += r[1] or 0
            idle += r[2] or 0
            util_s += r[3] or 0
            e += r[4] or 0
            op += r[5] or 0
            emb += r[6] or 0
        return UsageRow(
            key=key,
            name=name,
            devices=len(group),
            observed_h=obs / 3600,
            allocated_h=alloc / 3600,
            idle_allocated_h=idle / 3600,
            avg_util_pct=util_s / obs if obs else None,
            avg_power_w=e / obs if obs else None,
            energy_kwh=_kwh(e),
            co2e_operational_kg=_kg(op),
            embodied_charged_kg=_kg(emb),
            site=site,
        )

    models = []
    embodied = []
    for key, group in by_model.items():
        hw = group[0].hardware_model
        name = hw.name if hw else "Unknown model"
        row = usage(key, name, group)
        models.append(row)
        if hw is None:
            continue
        ages, shares = [], []
        for d in group:
            site_override = (d.host.cluster.site.hardware_overrides or {}).get(hw.key, {})
            life = d.lifetime_years or site_override.get("lifetime_years") or hw.lifetime_years
            if d.deployed_on:
                age = (now.date() - d.deployed_on).days / DAYS_PER_YEAR
                ages.append(age)
                shares.append(min(max(age / life, 0.0), 1.0))
        embodied.append(
            EmbodiedRow(
                key=key,
                name=name,
                devices=len(group),
                embodied_kg=hw.embodied_kg,
                embodied_low_kg=hw.embodied_low_kg,
                embodied_high_kg=hw.embodied_high_kg,
                embodied_kind=hw.get_embodied_kind_display(),
                lifetime_years=hw.lifetime_years,
                expected_utilisation=hw.expected_utilisation,
                # Julian year like the ledger (8766 h); this used 8760 h (0.07 % high).
                charge_g_per_h=embodied_charge_g_per_h(
                    embodied_g=hw.embodied_kg * G_PER_KG,
                    lifetime_h=hw.lifetime_years * HOURS_PER_YEAR,
                    expected_utilisation=hw.expected_utilisation,
                ),
                avg_age_years=sum(ages) / len(ages) if ages else None,
                amortised_share=sum(shares) / len(shares) if shares else None,
                embodied_charged_kg=row.embodied_charged_kg,
            )
        )
    models.sort(key=lambda r: -r.energy_kwh)
    embodied.sort(key=lambda r: -r.embodied_kg * r.devices)
    hosts = [usage(h, h, group, site=group[0].host.cluster.site.name) for h, group in by_host.items()]
    hosts.sort(key=lambda r: (-r.idle_allocated_h, r.name))
    fleet_scope = team_id is None and scope.is_admin
    return DeviceOverview(
        period=period,
        models=models,
        hosts=hosts,
        embodied=embodied,
        devices_total=len(devices),
        fleet_scope=fleet_scope,
    )


def device_usage_summary(*, rows: list[UsageRow]) -> dict[str, Any]:
    obs = sum(r.observed_h for r in rows)
    return {
        "devices": sum(r.devices for r in rows),
        "energy_kwh": sum(r.energy_kwh for r in rows),
        "allocated_share": (sum(r.allocated_h for r in rows) / obs) if obs else None,
        "idle_allocated_h": sum(r.idle_allocated_h for r in rows),
        "avg_util_pct": (sum((r.avg_util_pct or 0) * r.observed_h for r in rows) / obs) if obs else None,
        "embodied_charged_kg": sum(r.embodied_charged_kg for r in rows),
    }


# --- fleet planner defaults ----------------------------------------------------------------


def planner_default_get(*, scope: Principal, now: dt.datetime, days: int = 90) -> dict[str, Any]:
    """Starting values for the upgrade planner from the viewer's history: device-hours per year
    by workload (the last ``days`` days of finished and running jobs, scaled to a year), the most
    common device model in scope and its count, and the most used site's PUE and zone."""
    from django.db.models import Count

    from accounting.models import JobFootprint

    since = now - dt.timedelta(days=days)
    jobs = Job.objects.filter(scope.rows_q(), started_at__gte=since, started_at__lt=now)
    per_year = DAYS_PER_YEAR / days  # Julian year, like HOURS_PER_YEAR (this used 365 d)
    workloads = [
        {"family": fam, "kind": kind, "device_hours_per_year": round((h or 0.0) * per_year)}
        for fam, kind, h in JobFootprint.objects.filter(job__in=jobs.values("id"))
        .values_list("job__family", "job__kind")
        .annotate(h=Sum("device_hours"))
        .order_by("job__family", "job__kind")
    ]
    devices = Device.objects.filter(scope.orgs_q("host__cluster__site__org_id"), hardware_model__isnull=False)
    top = list(
        devices.values_list("hardware_model__key").annotate(n=Count("id")).order_by("-n", "hardware_model__key")[:1]
    )
    site = (
        Site.objects.filter(scope.orgs_q("org_id"))
        .select_related("zone")
        .annotate(n=Count("clusters__hosts__devices"))
        .order_by("-n", "name")
        .first()
    )
    return {
        "workloads": workloads,
        "old_key": top[0][0] if top else "",
        "old_count": top[0][1] if top else 8,
        # Newer accelerators do the same work on fewer devices; the engine reports any shortfall.
        "new_count": max(1, (top[0][1] if top else 8) // 2),
        "pue": site.pue if site else 1.3,
        "zone_code": site.zone.code if site else "",
        "days": days,
    }
