"""The budgets page: each visible team's budget, spend and forecast."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import F, Sum

from accounting.domain.budgets import budget_forecast, budget_spent_until
from accounting.domain.units import kg_from_g as _kg
from accounting.models import CarbonBudget, TeamDay
from accounting.selectors.access import Principal
from accounting.selectors.dashboard.common import (
    UTC,
    team_option_list,
)


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


def team_budget_list(*, scope: Principal, now: dt.datetime, on: dt.date | None = None) -> list[BudgetRow]:
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
