"""Reads for the web dashboard: viewer scope, overview, jobs, job detail, live, trade-offs,
budgets, methodology and monthly reports.

Everything here reads the ledger aggregates (JobFootprint, JobHour, DeviceHour, TeamDay) and
the fleet/factor tables, never raw telemetry. Every function takes the viewer's
``ViewerScope`` and filters by it, so a page or an export cannot forget the access rule:

* a superuser sees everything;
* an organisation admin (Membership role=admin, team NULL) sees all of that organisation,
  including the fleet-overhead account (TeamDay rows with team NULL);
* a team member sees the rows of their teams only (never the fleet-overhead account).

Return values are plain dataclasses/dicts with units in the names.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.db import connection
from django.db.models import Count, F, FloatField, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate, TruncMonth

from accounting.domain.budgets import budget_forecast, budget_spent_until
from accounting.domain.pareto import pareto_front
from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.models import (
    CarbonBudget,
    DeviceHour,
    GridZone,
    HardwareModel,
    Job,
    JobAllocation,
    JobFootprint,
    JobHour,
    Membership,
    Organization,
    Site,
    Team,
    TeamDay,
)
from accounting.selectors.job_filters import JobFilters, job_filter_apply

UTC = dt.UTC
OVERHEAD_LABEL = "Fleet overhead (unallocated)"
LOST_STATUSES = (Job.Status.FAILED, Job.Status.PREEMPTED)
# Quality metrics where a smaller value is better (the Pareto front flips for them).
LOWER_IS_BETTER_WORDS = ("latency", "loss", "perplexity", "error", "wer")


# --- scope ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewerScope:
    user_id: int | None
    is_superuser: bool = False
    admin_org_ids: frozenset[int] = frozenset()
    team_ids: frozenset[int] = frozenset()
    member_org_ids: frozenset[int] = frozenset()

    @property
    def org_ids(self) -> frozenset[int]:
        return self.admin_org_ids | self.member_org_ids

    @property
    def sees_fleet(self) -> bool:
        """True when the viewer may see fleet-level rows (overhead account, whole-fleet devices)."""
        return self.is_superuser or bool(self.admin_org_ids)

    def q(self, prefix: str = "") -> Q:
        """Q over rows with ``<prefix>org_id`` / ``<prefix>team_id`` the viewer may read."""
        if self.is_superuser:
            return Q()
        if not self.admin_org_ids and not self.team_ids:
            return Q(pk__in=[])
        return Q(**{f"{prefix}org_id__in": sorted(self.admin_org_ids)}) | Q(
            **{f"{prefix}team_id__in": sorted(self.team_ids)}
        )

    def org_q(self, prefix: str = "") -> Q:
        if self.is_superuser:
            return Q()
        return Q(**{f"{prefix}org_id__in": sorted(self.org_ids)})


def viewer_scope_get(*, user) -> ViewerScope:
    if user is None or not user.is_authenticated:
        return ViewerScope(user_id=None)
    if user.is_superuser:
        return ViewerScope(user_id=user.pk, is_superuser=True)
    admin: set[int] = set()
    teams: set[int] = set()
    orgs: set[int] = set()
    for org_id, team_id, role in Membership.objects.filter(user=user).values_list("org_id", "team_id", "role"):
        orgs.add(org_id)
        if team_id is None and role == Membership.Role.ADMIN:
            admin.add(org_id)
        elif team_id is not None:
            teams.add(team_id)
    return ViewerScope(
        user_id=user.pk,
        admin_org_ids=frozenset(admin),
        team_ids=frozenset(teams),
        member_org_ids=frozenset(orgs - admin),
    )


class TeamOption(TypedDict):
    id: int
    name: str
    slug: str
    org_id: int


def team_option_list(*, scope: ViewerScope) -> list[TeamOption]:
    teams = (
        Team.objects.all()
        if scope.is_superuser
        else Team.objects.filter(Q(org_id__in=sorted(scope.admin_org_ids)) | Q(id__in=sorted(scope.team_ids)))
    )
    return list(teams.order_by("name", "id").values("id", "name", "slug", "org_id"))


# --- periods -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def start_at(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time.min, tzinfo=UTC)

    @property
    def end_at(self) -> dt.datetime:
        return dt.datetime.combine(self.end, dt.time.min, tzinfo=UTC)

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    def previous(self) -> Period:
        return Period(start=self.start - dt.timedelta(days=self.days), end=self.start)

    def day_list(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


def _pct_change(current: float, previous: float) -> float | None:
    if previous <= 0:
        return None
    return (current - previous) / previous * 100.0


# --- overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesGroup:
    name: str
    energy_kwh: list[float]
    co2e_operational_kg: list[float]
    co2e_embodied_kg: list[float]


@dataclass(frozen=True)
class OverviewKpis:
    energy_kwh: float
    co2e_operational_kg: float
    co2e_embodied_kg: float
    co2e_kg: float
    idle_share: float | None
    overhead_share: float | None
    lost_energy_kwh: float
    lost_co2e_kg: float
    lost_share: float | None
    prev_energy_kwh: float
    prev_co2e_kg: float
    energy_change_pct: float | None
    co2e_change_pct: float | None


@dataclass(frozen=True)
class Overview:
    period: Period
    group_by: str
    days: list[dt.date]
    groups: list[SeriesGroup]
    kpis: OverviewKpis
    lost_by_status: list[dict[str, Any]]
    top_jobs: list[dict[str, Any]]
    energy_split_kwh: dict[str, float]  # jobs active / jobs idle baseline / fleet overhead


GROUP_BY_CHOICES = ("team", "family", "site", "device_model")


def _teamday_qs(*, scope: ViewerScope, period: Period, team_id: int | None) -> QuerySet[TeamDay]:
    qs = TeamDay.objects.filter(scope.q(), day__gte=period.start, day__lt=period.end)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def _jobs_scoped(*, scope: ViewerScope, team_id: int | None) -> QuerySet[Job]:
    qs = Job.objects.filter(scope.q())
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def _series(days: list[dt.date], rows: Sequence[tuple[str, dt.date, float, float, float]]) -> list[SeriesGroup]:
    index = {d: i for i, d in enumerate(days)}
    acc: dict[str, list[list[float]]] = {}
    for name, day, e, op, emb in rows:
        if day not in index:
            continue
        slot = acc.setdefault(name, [[0.0] * len(days), [0.0] * len(days), [0.0] * len(days)])
        i = index[day]
        slot[0][i] += _kwh(e)
        slot[1][i] += _kg(op)
        slot[2][i] += _kg(emb)
    groups = [SeriesGroup(name, v[0], v[1], v[2]) for name, v in acc.items()]
    # Biggest first, the overhead account always last so it reads as "the rest".
    groups.sort(key=lambda g: (g.name == OVERHEAD_LABEL, -sum(g.co2e_operational_kg) - sum(g.co2e_embodied_kg)))
    return groups


def _jobhour_group_rows(*, scope: ViewerScope, period: Period, team_id: int | None, group_by: str):
    jobs = (
        _jobs_scoped(scope=scope, team_id=team_id)
        .filter(started_at__lt=period.end_at)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=period.start_at))
    )
    if group_by == "family":
        labels = dict(Job.Family.choices)
        rows = (
            JobHour.objects.filter(job__in=jobs.values("id"), hour__gte=period.start_at, hour__lt=period.end_at)
            .annotate(day=TruncDate("hour", tzinfo=UTC))
            .values_list("job__family", "day")
            .annotate(e=Sum("energy_j"), op=Sum("co2e_operational_g"), emb=Sum("co2e_embodied_g"))
        )
        return [(labels.get(f, f), d, e, op, emb) for f, d, e, op, emb in rows]
    # device_model: each job counted under the model of its first allocation (jobs run on one
    # model; a mixed job is rare and is not split).
    job_sql, job_params = jobs.values("id").query.sql_with_params()
    sql = f"""
        WITH jm AS (
            SELECT DISTINCT ON (a.job_id) a.job_id, d.hardware_model_id
            FROM accounting_joballocation a JOIN accounting_device d ON d.id = a.device_id
            WHERE a.job_id IN ({job_sql})
            ORDER BY a.job_id, a.id
        )
        SELECT COALESCE(hm.name, 'Unknown model'), (jh.hour AT TIME ZONE 'UTC')::date,
               SUM(jh.energy_j), SUM(jh.co2e_operational_g), SUM(jh.co2e_embodied_g)
        FROM accounting_jobhour jh
        JOIN jm ON jm.job_id = jh.job_id
        LEFT JOIN accounting_hardwaremodel hm ON hm.id = jm.hardware_model_id
        WHERE jh.hour >= %s AND jh.hour < %s
        GROUP BY 1, 2
    """
    with connection.cursor() as cur:
        cur.execute(sql, [*job_params, period.start_at, period.end_at])
        return list(cur.fetchall())


def overview_get(*, scope: ViewerScope, period: Period, team_id: int | None = None, group_by: str = "team") -> Overview:
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"group_by must be one of {GROUP_BY_CHOICES}")
    days = period.day_list()
    td = _teamday_qs(scope=scope, period=period, team_id=team_id)
    label_field = "site__name" if group_by == "site" else "team__name"
    td_rows = list(
        td.values_list(label_field, "team_id", "day").annotate(
            e=Sum("energy_j"),
            idle=Sum("gpu_idle_energy_j"),
            op=Sum("co2e_operational_g"),
            emb=Sum("co2e_embodied_g"),
        )
    )
    total_e = sum(r[3] for r in td_rows)
    idle_e = sum(r[4] for r in td_rows)
    overhead_e = sum(r[3] for r in td_rows if r[1] is None)
    total_op = sum(r[5] for r in td_rows)
    total_emb = sum(r[6] for r in td_rows)
    if group_by in ("team", "site"):
        series_rows = [
            (OVERHEAD_LABEL if (team is None and group_by == "team") else label, day, e, op, emb)
            for label, team, day, e, _idle, op, emb in td_rows
        ]
    else:
        series_rows = _jobhour_group_rows(scope=scope, period=period, team_id=team_id, group_by=group_by)
        series_rows += [(OVERHEAD_LABEL, day, e, op, emb) for _l, team, day, e, _i, op, emb in td_rows if team is None]
    prev = _teamday_qs(scope=scope, period=period.previous(), team_id=team_id).aggregate(
        e=Coalesce(Sum("energy_j"), 0.0), co2=Coalesce(Sum(F("co2e_operational_g") + F("co2e_embodied_g")), 0.0)
    )
    jobs = _jobs_scoped(scope=scope, team_id=team_id).filter(
        started_at__gte=period.start_at, started_at__lt=period.end_at
    )
    lost = list(
        JobFootprint.objects.filter(job__in=jobs.filter(status__in=LOST_STATUSES).values("id"))
        .values("job__status")
        .annotate(n=Count("job_id"), e=Sum("energy_j"), co2=Sum(F("co2e_operational_g") + F("co2e_embodied_g")))
        .order_by("job__status")
    )
    lost_by_status = [
        {
            "status": r["job__status"],
            "label": Job.Status(r["job__status"]).label,
            "jobs": r["n"],
            "energy_kwh": _kwh(r["e"]),
            "co2e_kg": _kg(r["co2"]),
        }
        for r in lost
    ]
    lost_e = sum(r["energy_kwh"] for r in lost_by_status)
    top = (
        jobs.filter(footprint__isnull=False)
        .annotate(co2e_g=F("footprint__co2e_operational_g") + F("footprint__co2e_embodied_g"))
        .order_by("-co2e_g", "id")
        .values(
            "id",
            "scheduler_job_id",
            "name",
            "team__name",
            "family",
            "kind",
            "status",
            "co2e_g",
            "footprint__energy_j",
            "footprint__device_hours",
        )[:10]
    )
    top_jobs = [
        {
            "id": r["id"],
            "scheduler_job_id": r["scheduler_job_id"],
            "name": r["name"],
            "team": r["team__name"],
            "family": r["family"],
            "kind": r["kind"],
            "status": r["status"],
            "co2e_kg": _kg(r["co2e_g"]),
            "energy_kwh": _kwh(r["footprint__energy_j"]),
            "device_hours": r["footprint__device_hours"],
        }
        for r in top
    ]
    energy_kwh, co2_kg = _kwh(total_e), _kg(total_op + total_emb)
    fleet_visible = scope.sees_fleet and team_id is None
    kpis = OverviewKpis(
        energy_kwh=energy_kwh,
        co2e_operational_kg=_kg(total_op),
        co2e_embodied_kg=_kg(total_emb),
        co2e_kg=co2_kg,
        idle_share=(idle_e / total_e) if total_e > 0 else None,
        overhead_share=(overhead_e / total_e) if (total_e > 0 and fleet_visible) else None,
        lost_energy_kwh=lost_e,
        lost_co2e_kg=sum(r["co2e_kg"] for r in lost_by_status),
        lost_share=(lost_e / energy_kwh) if energy_kwh > 0 else None,
        prev_energy_kwh=_kwh(prev["e"]),
        prev_co2e_kg=_kg(prev["co2"]),
        energy_change_pct=_pct_change(energy_kwh, _kwh(prev["e"])),
        co2e_change_pct=_pct_change(co2_kg, _kg(prev["co2"])),
    )
    job_idle = idle_e - sum(r[4] for r in td_rows if r[1] is None)
    split = {
        "Jobs: GPU idle baseline": _kwh(job_idle),
        "Jobs: active, host and facility": _kwh(total_e - overhead_e - job_idle),
    }
    if fleet_visible:
        split[OVERHEAD_LABEL] = _kwh(overhead_e)
    return Overview(
        period=period,
        group_by=group_by,
        days=days,
        groups=_series(days, series_rows),
        kpis=kpis,
        lost_by_status=lost_by_status,
        top_jobs=top_jobs,
        energy_split_kwh=split,
    )


# --- jobs list -----------------------------------------------------------------------------


# The one job-filter type (accounting.selectors.job_filters), under the name the dashboard's
# view still uses: team_id, username, device_model, start/end (UTC days, end exclusive), q.
JobListFilters = JobFilters


SORT_FIELDS = {
    "started": "started_at",
    "name": "name",
    "team": "team__name",
    "status": "status",
    "energy": "energy_j",
    "co2e": "co2e_g",
    "gpu_hours": "device_hours",
}


@dataclass(frozen=True)
class JobRow:
    id: int
    scheduler_job_id: str
    name: str
    team: str
    username: str
    family: str
    kind: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_h: float | None
    device_hours: float
    energy_kwh: float
    co2e_kg: float
    co2e_per_unit_g: float | None
    primary_unit: str
    measured_fraction: float | None
    device_models: str = ""


@dataclass(frozen=True)
class JobPage:
    rows: list[JobRow]
    total: int
    page: int
    num_pages: int
    page_size: int
    sort: str


def _job_list_qs(*, scope: ViewerScope, filters: JobListFilters, sort: str) -> QuerySet[Job]:
    qs = job_filter_apply(jobs=Job.objects.filter(scope.q()), filters=filters)
    desc = sort.startswith("-")
    key = SORT_FIELDS.get(sort.lstrip("-"), "started_at")
    qs = qs.annotate(
        energy_j=Coalesce(F("footprint__energy_j"), 0.0, output_field=FloatField()),
        co2e_g=Coalesce(
            F("footprint__co2e_operational_g") + F("footprint__co2e_embodied_g"), 0.0, output_field=FloatField()
        ),
        device_hours=Coalesce(F("footprint__device_hours"), 0.0, output_field=FloatField()),
    )
    # Every sort key is NOT NULL (columns, or coalesced annotations): plain ORDER BY lets the
    # (org, started_at) index serve the default "newest first" page.
    return qs.order_by(f"-{key}" if desc else key, "-id" if desc else "id")


_JOB_VALUES = (
    "id",
    "scheduler_job_id",
    "name",
    "team__name",
    "username",
    "family",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "energy_j",
    "co2e_g",
    "device_hours",
    "units",
    "primary_unit",
    "footprint__measured_fraction",
    "footprint__last_window_end",
)


def _job_row(r: dict[str, Any], models: str = "") -> JobRow:
    end = r["ended_at"] or r["footprint__last_window_end"]
    duration_h = (end - r["started_at"]).total_seconds() / 3600 if end else None
    units = r["units"] or {}
    primary = r["primary_unit"]
    count = units.get(primary) if primary else None
    per_unit = r["co2e_g"] / count if (count and r["co2e_g"]) else None
    return JobRow(
        id=r["id"],
        scheduler_job_id=r["scheduler_job_id"],
        name=r["name"],
        team=r["team__name"],
        username=r["username"],
        family=r["family"],
        kind=r["kind"],
        status=r["status"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        duration_h=duration_h,
        device_hours=r["device_hours"],
        energy_kwh=_kwh(r["energy_j"]),
        co2e_kg=_kg(r["co2e_g"]),
        co2e_per_unit_g=per_unit,
        primary_unit=primary,
        measured_fraction=r["footprint__measured_fraction"],
        device_models=models,
    )


def job_list(
    *, scope: ViewerScope, filters: JobListFilters, sort: str = "-started", page: int = 1, page_size: int = 50
) -> JobPage:
    qs = _job_list_qs(scope=scope, filters=filters, sort=sort)
    total = qs.count()
    num_pages = max(1, math.ceil(total / page_size))
    page = min(max(page, 1), num_pages)
    raw = list(qs.values(*_JOB_VALUES)[(page - 1) * page_size : page * page_size])
    models: dict[int, set[str]] = defaultdict(set)
    if raw:
        for job_id, name in (
            JobAllocation.objects.filter(job_id__in=[r["id"] for r in raw])
            .values_list("job_id", "device__hardware_model__name")
            .distinct()
        ):
            models[job_id].add(name or "Unknown model")
    rows = [_job_row(r, ", ".join(sorted(models.get(r["id"], ())))) for r in raw]
    return JobPage(rows=rows, total=total, page=page, num_pages=num_pages, page_size=page_size, sort=sort)


EXPORT_COLUMNS = (
    "id",
    "scheduler_job_id",
    "name",
    "team",
    "username",
    "family",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "duration_h",
    "device_hours",
    "energy_kwh",
    "co2e_kg",
    "co2e_per_unit_g",
    "primary_unit",
    "measured_fraction",
)


def job_export_rows(*, scope: ViewerScope, filters: JobListFilters, sort: str = "-started") -> Iterator[list[Any]]:
    """CSV rows (header first) for every job matching the filters, streamed in chunks."""
    yield list(EXPORT_COLUMNS)
    qs = _job_list_qs(scope=scope, filters=filters, sort=sort).values(*_JOB_VALUES)
    for r in qs.iterator(chunk_size=2000):
        row = _job_row(r)
        yield [
            row.id,
            row.scheduler_job_id,
            row.name,
            row.team,
            row.username,
            row.family,
            row.kind,
            row.status,
            row.started_at.isoformat(),
            row.ended_at.isoformat() if row.ended_at else "",
            "" if row.duration_h is None else round(row.duration_h, 4),
            round(row.device_hours, 4),
            round(row.energy_kwh, 6),
            round(row.co2e_kg, 6),
            "" if row.co2e_per_unit_g is None else f"{row.co2e_per_unit_g:.6g}",
            row.primary_unit,
            "" if row.measured_fraction is None else round(row.measured_fraction, 4),
        ]


def job_user_option_list(*, scope: ViewerScope, team_id: int | None = None) -> list[str]:
    qs = Job.objects.filter(scope.q()).exclude(username="")
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return list(qs.order_by("username").values_list("username", flat=True).distinct()[:500])


# --- job detail ----------------------------------------------------------------------------


def quality_label(measured_fraction: float | None) -> str:
    if measured_fraction is None:
        return "No ledger yet"
    if measured_fraction >= 0.95:
        return "Measured"
    if measured_fraction >= 0.5:
        return "Partly modelled"
    return "Modelled"


def _unit_scale(per_unit: float) -> tuple[float, str]:
    """Pick a readable multiple of the unit (per 1, per 1k, per 1M)."""
    for factor, label in ((1.0, ""), (1e3, "1k "), (1e6, "1M "), (1e9, "1G ")):
        if per_unit * factor >= 0.01:
            return factor, label
    return 1e9, "1G "


@dataclass(frozen=True)
class UnitEfficiencyRow:
    unit: str
    count: float
    per_label: str  # "1M tokens"
    energy_wh_per: float
    co2e_g_per: float
    is_primary: bool


def job_detail_get(*, scope: ViewerScope, job_id: int) -> dict[str, Any] | None:
    """Everything the job page shows, or None when the job does not exist or is not visible."""
    job = (
        Job.objects.filter(scope.q(), id=job_id)
        .select_related("team", "org", "cluster__site__zone", "footprint")
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
                    per_label=f"{label}{unit}",
                    energy_wh_per=fp.energy_j / 3600 / count * factor,
                    co2e_g_per=co2_per * factor,
                    is_primary=unit == job.primary_unit,
                )
            )
        efficiency.sort(key=lambda r: (not r.is_primary, r.unit))
    end = job.ended_at or (fp.last_window_end if fp else None)
    hw_ids = sorted({a.device.hardware_model_id for a in allocs if a.device.hardware_model_id})
    return {
        "job": job,
        "site": job.cluster.site,
        "zone": job.cluster.site.zone,
        "footprint": fp,
        "co2e_kg": _kg(fp.co2e_g) if fp else None,
        "co2e_low_kg": _kg(fp.co2e_low_g) if fp else None,
        "co2e_high_kg": _kg(fp.co2e_high_g) if fp else None,
        "energy_kwh": _kwh(fp.energy_j) if fp else None,
        "quality_label": quality_label(fp.measured_fraction if fp else None),
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


def whatif_option_get() -> dict[str, Any]:
    """Choices for the what-if forms: accelerators and grid zones."""
    return {
        "devices": list(
            HardwareModel.objects.filter(kind=HardwareModel.Kind.GPU)
            .order_by("name")
            .values("key", "name", "max_power_w")
        ),
        "zones": list(GridZone.objects.order_by("code").values("code", "name", "annual_intensity_g_per_kwh")),
    }


# --- live ----------------------------------------------------------------------------------


def running_job_list(*, scope: ViewerScope, now: dt.datetime, limit: int = 200) -> dict[str, Any]:
    qs = (
        Job.objects.filter(scope.q(), status=Job.Status.RUNNING)
        .select_related("team", "footprint", "cluster__site")
        .order_by("-started_at", "-id")
    )
    total = qs.count()
    rows: list[dict[str, Any]] = []
    for job in qs[:limit]:
        fp = getattr(job, "footprint", None)
        elapsed_s = max((now - job.started_at).total_seconds(), 0.0)
        covered_s = (fp.last_window_end - job.started_at).total_seconds() if fp and fp.last_window_end else 0.0
        rows.append(
            {
                "id": job.id,
                "scheduler_job_id": job.scheduler_job_id,
                "name": job.name,
                "team": job.team.name,
                "username": job.username,
                "family": job.get_family_display(),
                "kind": job.get_kind_display(),
                "site": job.cluster.site.name,
                "started_at": job.started_at.isoformat(),
                "elapsed_h": round(elapsed_s / 3600, 2),
                "energy_kwh": round(_kwh(fp.energy_j), 3) if fp else 0.0,
                "co2e_kg": round(_kg(fp.co2e_g), 3) if fp else 0.0,
                "avg_power_kw": round(fp.energy_j / covered_s / 1000, 3) if (fp and covered_s > 0) else None,
                "last_window_end": fp.last_window_end.isoformat() if fp and fp.last_window_end else None,
            }
        )
    return {
        "generated_at": now.isoformat(),
        "running": total,
        "shown": len(rows),
        "energy_kwh": round(sum(r["energy_kwh"] for r in rows), 3),
        "co2e_kg": round(sum(r["co2e_kg"] for r in rows), 3),
        "power_kw": round(sum(r["avg_power_kw"] or 0 for r in rows), 3),
        "jobs": rows,
    }


# --- trade-offs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeoffPoint:
    job_id: int
    name: str
    x: float
    co2e_g_per_unit: float
    device: str
    zone: str
    team: str
    on_front: bool


@dataclass(frozen=True)
class Tradeoffs:
    family: str
    kind: str
    x_metric: str  # "throughput" | "quality"
    x_label: str
    unit: str
    quality_metric: str
    x_higher_is_better: bool
    total: int
    points: list[TradeoffPoint]
    front: list[TradeoffPoint]
    per_factor: float = 1.0  # carbon per unit is shown per this many units
    per_label: str = ""  # "1M tokens"


def _lower_is_better(metric: str) -> bool:
    metric = metric.lower()
    return any(word in metric for word in LOWER_IS_BETTER_WORDS)


def tradeoff_point_list(
    *,
    scope: ViewerScope,
    period: Period,
    family: str,
    kind: str,
    x_metric: str = "throughput",
    team_id: int | None = None,
    max_points: int = 4000,
) -> Tradeoffs:
    """Carbon per functional unit versus throughput (units/s) or quality, for finished jobs of one
    family and kind started in the period, with the Pareto front over all of them."""
    jobs = (
        _jobs_scoped(scope=scope, team_id=team_id)
        .filter(
            family=family,
            kind=kind,
            started_at__gte=period.start_at,
            started_at__lt=period.end_at,
            ended_at__isnull=False,
            footprint__isnull=False,
        )
        .exclude(primary_unit="")
    )
    rows = list(
        jobs.values_list(
            "id",
            "name",
            "units",
            "primary_unit",
            "quality_metric",
            "quality_value",
            "started_at",
            "ended_at",
            "team__name",
            "cluster__site__zone__code",
            "footprint__co2e_operational_g",
            "footprint__co2e_embodied_g",
        )
    )
    unit_counts: dict[str, int] = defaultdict(int)
    for r in rows:
        unit_counts[r[3]] += 1
    unit = max(unit_counts, key=lambda u: unit_counts[u]) if unit_counts else ""
    metric_counts: dict[str, int] = defaultdict(int)
    for r in rows:
        if r[4] and r[5] is not None:
            metric_counts[r[4]] += 1
    quality_metric = max(metric_counts, key=lambda q: metric_counts[q]) if metric_counts else ""
    models: dict[int, str] = {}
    if rows:
        for job_id, name in (
            JobAllocation.objects.filter(job__in=jobs.values("id"))
            .order_by("job_id", "id")
            .distinct("job_id")
            .values_list("job_id", "device__hardware_model__name")
        ):
            models[job_id] = name or "Unknown model"
    raw: list[tuple] = []
    for jid, name, units, primary, qm, qv, started, ended, team, zone, op, emb in rows:
        count = (units or {}).get(unit) if primary == unit else None
        if not count or count <= 0:
            continue
        if ended is None:  # excluded by the query (ended_at__isnull=False)
            continue
        duration_s = (ended - started).total_seconds()
        if x_metric == "quality":
            if qm != quality_metric or qv is None:
                continue
            x = float(qv)
        else:
            if duration_s <= 0:
                continue
            x = count / duration_s
        raw.append((jid, name, x, (op + emb) / count, models.get(jid, "Unknown model"), zone, team))
    x_higher = not (x_metric == "quality" and _lower_is_better(quality_metric))
    front_idx = set(pareto_front([(r[2], r[3]) for r in raw], x_higher_is_better=x_higher))
    pts = [TradeoffPoint(r[0], r[1], r[2], r[3], r[4], r[5], r[6], i in front_idx) for i, r in enumerate(raw)]
    front = sorted((p for p in pts if p.on_front), key=lambda p: p.x)
    shown = pts
    if len(pts) > max_points:
        # Keep every front point and an evenly spaced, deterministic sample of the rest.
        rest = [p for p in pts if not p.on_front]
        step = len(rest) / max(max_points - len(front), 1)
        shown = front + [rest[int(i * step)] for i in range(max_points - len(front))]
    x_label = f"Throughput ({unit}/s)" if x_metric == "throughput" else (quality_metric or "Quality")
    ys = sorted(p.co2e_g_per_unit for p in pts)
    factor, prefix = _unit_scale(ys[len(ys) // 2]) if ys else (1.0, "")
    singular = unit[:-1] if (unit.endswith("s") and not prefix) else unit
    return Tradeoffs(
        family=family,
        kind=kind,
        x_metric=x_metric,
        x_label=x_label,
        unit=unit,
        quality_metric=quality_metric,
        x_higher_is_better=x_higher,
        total=len(pts),
        points=shown,
        front=front,
        per_factor=factor,
        per_label=f"{prefix}{singular}",
    )


# --- budgets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRow:
    team_id: int
    team: str
    budget_id: int | None
    period_start: dt.date | None
    period_end: dt.date | None
    budget_kg: float | None
    spent_kg: float
    forecast_kg: float
    run_rate_kg_per_day: float
    used_fraction: float | None
    forecast_fraction: float | None
    status: str  # "on_track" | "at_risk" | "over" | "no_budget"
    days: list[dt.date] = field(default_factory=list)
    cumulative_kg: list[float] = field(default_factory=list)

    @property
    def status_label(self) -> str:
        return {"on_track": "On track", "at_risk": "At risk", "over": "Over budget", "no_budget": "No budget"}[
            self.status
        ]


def team_budget_list(*, scope: ViewerScope, now: dt.datetime, on: dt.date | None = None) -> list[BudgetRow]:
    """Each visible team's budget for the period containing ``on`` (default: today), what it has
    spent (TeamDay, operational + embodied), and a linear forecast to the period end.

    Same rule as ``accounting.selectors.budgets.budget_status`` (both call
    ``accounting.domain.budgets``: spent up to and including today; forecast = spent × period
    length / elapsed time once an hour has passed), computed for all teams in three queries."""
    on = on or now.date()
    teams = team_option_list(scope=scope)
    budgets = {
        b.team_id: b
        for b in CarbonBudget.objects.filter(
            team_id__in=[t["id"] for t in teams], period_start__lte=on, period_end__gt=on
        ).order_by("team_id", "period_start")
    }
    daily: dict[int, dict[dt.date, float]] = defaultdict(dict)
    if budgets:
        lo = min(b.period_start for b in budgets.values())
        hi = max(b.period_end for b in budgets.values())
        for team_id, day, g in (
            TeamDay.objects.filter(team_id__in=list(budgets), day__gte=lo, day__lt=hi)
            .values_list("team_id", "day")
            .annotate(g=Sum(F("co2e_operational_g") + F("co2e_embodied_g")))
        ):
            daily[team_id][day] = daily[team_id].get(day, 0.0) + g
    out = []
    for t in teams:
        b = budgets.get(t["id"])
        if b is None:
            out.append(BudgetRow(t["id"], t["name"], None, None, None, None, 0.0, 0.0, 0.0, None, None, "no_budget"))
            continue
        start_at = dt.datetime.combine(b.period_start, dt.time.min, tzinfo=UTC)
        end_at = dt.datetime.combine(b.period_end, dt.time.min, tzinfo=UTC)
        last_day = budget_spent_until(period_end=b.period_end, as_of=now)
        days, cumulative, running = [], [], 0.0
        d = b.period_start
        while d < last_day:
            running += daily[t["id"]].get(d, 0.0)
            days.append(d)
            cumulative.append(_kg(running))
            d += dt.timedelta(days=1)
        spent = running
        projection = budget_forecast(spent_g=spent, period_start=start_at, period_end=end_at, as_of=now)
        forecast, rate = projection.forecast_g, projection.run_rate_g_per_day
        budget_g = b.co2e_budget_g
        used = spent / budget_g if budget_g > 0 else None
        fc = forecast / budget_g if budget_g > 0 else None
        if spent > budget_g:
            status = "over"
        elif forecast > budget_g:
            status = "at_risk"
        else:
            status = "on_track"
        out.append(
            BudgetRow(
                t["id"],
                t["name"],
                b.id,
                b.period_start,
                b.period_end,
                _kg(budget_g),
                _kg(spent),
                _kg(forecast),
                _kg(rate),
                used,
                fc,
                status,
                days,
                cumulative,
            )
        )
    order = {"over": 0, "at_risk": 1, "on_track": 2, "no_budget": 3}
    out.sort(key=lambda r: (order[r.status], r.team))
    return out


# --- methodology ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorRow:
    category: str
    name: str
    value: str
    unit: str
    source: str
    version: str


def _factor_rows_direct(*, org_ids: Sequence[int] | None) -> list[FactorRow]:
    sites_qs = Site.objects.select_related("zone").order_by("name")
    if org_ids is not None:
        sites_qs = sites_qs.filter(org_id__in=org_ids)
    sites = list(sites_qs)
    zone_ids = {s.zone_id for s in sites}
    rows: list[FactorRow] = []
    for z in GridZone.objects.filter(id__in=zone_ids).order_by("code"):
        src = z.get_source_display() + (f" — {z.source_detail}" if z.source_detail else "")
        rows.append(
            FactorRow(
                "Grid intensity (annual average)",
                f"{z.code} · {z.name}",
                f"{z.annual_intensity_g_per_kwh:g}",
                "gCO2e/kWh",
                src + (f" ({z.vintage})" if z.vintage else ""),
                f"v{z.version}",
            )
        )
        if z.annual_marginal_g_per_kwh is not None:
            rows.append(
                FactorRow(
                    "Grid intensity (annual marginal)",
                    f"{z.code} · {z.name}",
                    f"{z.annual_marginal_g_per_kwh:g}",
                    "gCO2e/kWh",
                    src,
                    f"v{z.version}",
                )
            )
    for s in sites:
        rows.append(FactorRow("PUE", s.name, f"{s.pue:g}", "ratio", s.pue_source, f"v{s.pue_version}"))
    models = HardwareModel.objects.order_by("kind", "name")
    if org_ids is not None:
        models = models.filter(device__host__cluster__site__org_id__in=org_ids).distinct()
    for hw in models:
        rows.append(
            FactorRow(
                "Embodied carbon",
                hw.name,
                f"{hw.embodied_kg:g} ({hw.embodied_low_kg:g}–{hw.embodied_high_kg:g})",
                "kgCO2e per unit",
                f"{hw.get_embodied_kind_display()}: {hw.embodied_source}",
                f"v{hw.version}",
            )
        )
        rows.append(
            FactorRow(
                "Lifetime × expected utilisation",
                hw.name,
                f"{hw.lifetime_years:g} y × {hw.expected_utilisation:.0%}",
                "years × share",
                hw.sources.get("lifetime_years", "catalog default")
                if isinstance(hw.sources, dict)
                else "catalog default",
                f"v{hw.version}",
            )
        )
        if hw.idle_power_w is not None and hw.max_power_w is not None:
            rows.append(
                FactorRow(
                    "Power (idle / max)",
                    hw.name,
                    f"{hw.idle_power_w:g} / {hw.max_power_w:g}",
                    "W",
                    hw.sources.get("max_power_w", "datasheet") if isinstance(hw.sources, dict) else "datasheet",
                    f"v{hw.version}",
                )
            )
    return rows


def _normalise_factor(item: Any) -> FactorRow:
    if hasattr(item, "__dataclass_fields__"):
        data = {k: getattr(item, k) for k in item.__dataclass_fields__}
    elif isinstance(item, dict):
        data = item
    else:
        data = {"name": str(item)}
    value = data.get("value")
    version = data.get("version", "")
    since = data.get("effective_since")
    category = str(data.get("factor") or data.get("category") or data.get("kind") or "")
    category = category.replace("pue", "PUE")
    return FactorRow(
        category=category[:1].upper() + category[1:],
        name=str(data.get("key") or data.get("name") or ""),
        value="—" if value is None else (f"{value:g}" if isinstance(value, (int, float)) else str(value)),
        unit=str(data.get("unit", "")),
        source=str(data.get("source", "")) + (f" (since {since:%Y-%m-%d})" if hasattr(since, "strftime") else ""),
        version=f"v{version}" if isinstance(version, int) else str(version),
    )


def _factors_in_use_or_none() -> Callable[..., Iterable[Any]] | None:
    try:
        from accounting.selectors.factors import factors_in_use  # written in parallel by the factors owner
    except ImportError:
        return None
    return factors_in_use


def methodology_factor_list(*, scope: ViewerScope) -> dict[str, Any]:
    """Every factor in use for the viewer's organisations with its source and version.

    Uses ``accounting.selectors.factors.factors_in_use`` when that module is present (it owns
    the definition of "in use"); otherwise lists the GridZone, Site and HardwareModel rows
    directly."""
    orgs = (
        list(Organization.objects.all().order_by("name"))
        if scope.is_superuser
        else list(Organization.objects.filter(id__in=sorted(scope.org_ids)).order_by("name"))
    )
    factors_in_use = _factors_in_use_or_none()
    rows: list[FactorRow] = []
    source = "direct"
    if factors_in_use is not None:
        source = "factors_in_use"
        seen = set()
        for org in orgs:
            for item in factors_in_use(org=org):
                row = _normalise_factor(item)
                if row not in seen:
                    seen.add(row)
                    rows.append(row)
    else:
        rows = _factor_rows_direct(org_ids=None if scope.is_superuser else sorted(scope.org_ids))
    versions = list(
        JobFootprint.objects.filter(job__in=Job.objects.filter(scope.q()).values("id"))
        .values_list("method_version")
        .annotate(n=Count("job_id"))
        .order_by("method_version")
    )
    return {"rows": rows, "source": source, "method_versions": versions, "orgs": [o.name for o in orgs]}


# --- reports -------------------------------------------------------------------------------


def report_month_list(*, scope: ViewerScope) -> list[dict[str, Any]]:
    rows = (
        TeamDay.objects.filter(scope.q())
        .annotate(month=TruncMonth("day"))
        .values("month")
        .annotate(
            e=Sum("energy_j"),
            co2=Sum(F("co2e_operational_g") + F("co2e_embodied_g")),
            teams=Count("team_id", distinct=True),
        )
        .order_by("-month")
    )
    return [
        {"month": r["month"], "energy_kwh": _kwh(r["e"]), "co2e_kg": _kg(r["co2"]), "teams": r["teams"]} for r in rows
    ]


def _month_bounds(month: dt.date) -> Period:
    start = month.replace(day=1)
    nxt = (start + dt.timedelta(days=32)).replace(day=1)
    return Period(start=start, end=nxt)


def report_month_get(*, scope: ViewerScope, month: dt.date, team_id: int | None = None) -> dict[str, Any]:
    """Monthly per-team summary: TeamDay totals and change vs the previous month, JobFootprint
    by family and the top jobs of jobs started in the month, and the month's budgets."""
    period = _month_bounds(month)
    prev = _month_bounds(period.start - dt.timedelta(days=1))
    by_team: dict[int | None, dict[str, Any]] = {}
    for p, key in ((period, "cur"), (prev, "prev")):
        for tid, name, e, idle, op, emb in (
            _teamday_qs(scope=scope, period=p, team_id=team_id)
            .values_list("team_id", "team__name")
            .annotate(
                e=Sum("energy_j"),
                idle=Sum("gpu_idle_energy_j"),
                op=Sum("co2e_operational_g"),
                emb=Sum("co2e_embodied_g"),
            )
        ):
            row = by_team.setdefault(tid, {"team_id": tid, "team": name or OVERHEAD_LABEL, "cur": None, "prev": None})
            row[key] = {
                "energy_kwh": _kwh(e),
                "idle_kwh": _kwh(idle),
                "co2e_operational_kg": _kg(op),
                "co2e_embodied_kg": _kg(emb),
                "co2e_kg": _kg(op + emb),
            }
    teams = []
    for row in by_team.values():
        if row["cur"] is None:
            continue
        prev_kg = row["prev"]["co2e_kg"] if row["prev"] else 0.0
        row["co2e_change_pct"] = _pct_change(row["cur"]["co2e_kg"], prev_kg)
        teams.append(row)
    teams.sort(key=lambda r: (r["team_id"] is None, -r["cur"]["co2e_kg"]))
    jobs = _jobs_scoped(scope=scope, team_id=team_id).filter(
        started_at__gte=period.start_at, started_at__lt=period.end_at
    )
    families = defaultdict(list)
    fam_labels = dict(Job.Family.choices)
    kind_labels = dict(Job.Kind.choices)
    for tid, fam, kind, n, e, co2 in (
        JobFootprint.objects.filter(job__in=jobs.values("id"))
        .values_list("job__team_id", "job__family", "job__kind")
        .annotate(n=Count("job_id"), e=Sum("energy_j"), co2=Sum(F("co2e_operational_g") + F("co2e_embodied_g")))
        .order_by("job__team_id", "-co2")
    ):
        families[tid].append(
            {
                "family": fam_labels.get(fam, fam),
                "kind": kind_labels.get(kind, kind),
                "jobs": n,
                "energy_kwh": _kwh(e),
                "co2e_kg": _kg(co2),
            }
        )
    top = [
        {
            "id": r["id"],
            "scheduler_job_id": r["scheduler_job_id"],
            "name": r["name"],
            "team": r["team__name"],
            "co2e_kg": _kg(r["co2e_g"]),
            "energy_kwh": _kwh(r["footprint__energy_j"]),
        }
        for r in jobs.filter(footprint__isnull=False)
        .annotate(co2e_g=F("footprint__co2e_operational_g") + F("footprint__co2e_embodied_g"))
        .order_by("-co2e_g", "id")
        .values("id", "scheduler_job_id", "name", "team__name", "co2e_g", "footprint__energy_j")[:10]
    ]
    budgets = {
        b["team_id"]: _kg(b["co2e_budget_g"])
        for b in CarbonBudget.objects.filter(
            team_id__in=[t["team_id"] for t in teams if t["team_id"] is not None],
            period_start__lte=period.start,
            period_end__gt=period.start,
        ).values("team_id", "co2e_budget_g")
    }
    for t in teams:
        t["families"] = families.get(t["team_id"], [])
        t["budget_kg"] = budgets.get(t["team_id"])
        t["budget_used"] = (t["cur"]["co2e_kg"] / t["budget_kg"]) if t.get("budget_kg") else None
    totals = {
        "energy_kwh": sum(t["cur"]["energy_kwh"] for t in teams),
        "co2e_kg": sum(t["cur"]["co2e_kg"] for t in teams),
        "co2e_operational_kg": sum(t["cur"]["co2e_operational_kg"] for t in teams),
        "co2e_embodied_kg": sum(t["cur"]["co2e_embodied_kg"] for t in teams),
        "prev_co2e_kg": sum(t["prev"]["co2e_kg"] for t in teams if t["prev"]),
    }
    totals["co2e_change_pct"] = _pct_change(totals["co2e_kg"], totals["prev_co2e_kg"])
    return {"period": period, "teams": teams, "top_jobs": top, "totals": totals}
