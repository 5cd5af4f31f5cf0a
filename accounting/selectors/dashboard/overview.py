"""The overview page: energy and CO2e per day by team, family, site or device model; KPIs
against the previous period, lost work, the top jobs and the energy split."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from accounting.domain.comparison import compare, coverage
from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.models import Job, JobFootprint, JobHour
from accounting.selectors.access import Principal
from accounting.selectors.dashboard.common import (
    LOST_STATUSES,
    OVERHEAD_LABEL,
    UTC,
    Period,
    _jobs_scoped,
    _teamday_qs,
)
from accounting.selectors.disclosure import Disclosure, disclosure_period


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
    # Why there is no change figure ("no comparable data ..."), the period compared with, the
    # share of its days that carry data, and whether the current period is a partial month.
    change_reason: str | None = None
    previous_period: Period | None = None
    previous_coverage: float = 0.0
    partial: bool = False


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


def _jobhour_group_rows(*, scope: Principal, period: Period, team_id: int | None, group_by: str):
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


def overview_get(*, scope: Principal, period: Period, team_id: int | None = None, group_by: str = "team") -> Overview:
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
    prev_period = period.comparison()
    prev = _teamday_qs(scope=scope, period=prev_period, team_id=team_id).aggregate(
        e=Coalesce(Sum("energy_j"), 0.0),
        co2=Coalesce(Sum(F("co2e_operational_g") + F("co2e_embodied_g")), 0.0),
        days=Count("day", distinct=True, filter=Q(energy_j__gt=0)),
    )
    prev_coverage = coverage(prev["days"], prev_period.days)
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
    energy_cmp = compare(energy_kwh, _kwh(prev["e"]), previous_coverage=prev_coverage)
    co2e_cmp = compare(co2_kg, _kg(prev["co2"]), previous_coverage=prev_coverage)
    fleet_visible = scope.is_admin and team_id is None
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
        energy_change_pct=energy_cmp.change_pct,
        co2e_change_pct=co2e_cmp.change_pct,
        change_reason=energy_cmp.reason or co2e_cmp.reason,
        previous_period=prev_period,
        previous_coverage=prev_coverage,
        partial=period.is_partial_month,
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


def overview_disclosure_get(*, scope: Principal, period: Period, team_id: int | None = None) -> Disclosure:
    """The period's dual Scope 2 (location- and market-based), upstream, embodied and water for
    the overview's statement card: ``accounting.selectors.disclosure.disclosure_period``."""
    return disclosure_period(scope=scope, start=period.start, end=period.end, team_id=team_id)
