"""The monthly reports: the list of months and one month's per-team summary."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db.models import Count, F, Sum
from django.db.models.functions import TruncMonth

from accounting.domain.comparison import compare, coverage, like_for_like_previous
from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.models import CarbonBudget, Job, JobFootprint, TeamDay
from accounting.selectors.access import Principal
from accounting.selectors.dashboard.common import (
    OVERHEAD_LABEL,
    Period,
    _jobs_scoped,
    _teamday_qs,
)


def report_month_list(*, scope: Principal) -> list[dict[str, Any]]:
    rows = (
        TeamDay.objects.filter(scope.rows_q())
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


def report_month_get(
    *, scope: Principal, month: dt.date, team_id: int | None = None, today: dt.date | None = None
) -> dict[str, Any]:
    """Monthly per-team summary: TeamDay totals and change vs the previous month, JobFootprint
    by family and the top jobs of jobs started in the month, and the month's budgets. The change
    follows accounting.domain.comparison, as the mailed report does: a month to date (``today``
    inside it) against as many days at the start of the previous month, and no percentage when
    that period is mostly empty."""
    period = _month_bounds(month)
    prev_full = _month_bounds(period.start - dt.timedelta(days=1))
    cur_end = period.end
    if today is not None and period.start <= today < period.end:
        cur_end = today + dt.timedelta(days=1)
    p_start, p_end = like_for_like_previous(period.start, cur_end, prev_full.start, prev_full.end)
    prev = Period(start=p_start, end=p_end)
    by_team: dict[int | None, dict[str, Any]] = {}
    prev_days: dict[int | None, set[dt.date]] = defaultdict(set)
    for tid, day in (
        _teamday_qs(scope=scope, period=prev, team_id=team_id).filter(energy_j__gt=0).values_list("team_id", "day")
    ):
        prev_days[tid].add(day)
    prev_len = (p_end - p_start).days
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
        change = compare(
            row["cur"]["co2e_kg"], prev_kg, previous_coverage=coverage(len(prev_days[row["team_id"]]), prev_len)
        )
        row["co2e_change_pct"], row["co2e_change_reason"] = change.change_pct, change.reason
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
    all_days = set().union(*prev_days.values()) if prev_days else set()
    change = compare(totals["co2e_kg"], totals["prev_co2e_kg"], previous_coverage=coverage(len(all_days), prev_len))
    totals["co2e_change_pct"], totals["co2e_change_reason"] = change.change_pct, change.reason
    return {"period": period, "teams": teams, "top_jobs": top, "totals": totals}
