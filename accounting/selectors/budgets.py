"""Team carbon budgets: spent so far, linear run-rate forecast, and the scheduler's check.

Spent is the sum of the team's TeamDay rows (operational + embodied) over the budget period
up to and including the day of ``as_of``: TeamDay is the per-day roll-up of the ledger, so it
counts each gram once even for jobs that span the period boundary (a sum of JobFootprint
would charge a job's whole footprint to the period it started in).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.db.models import F, QuerySet, Sum

from accounting.domain.budgets import budget_forecast, budget_spent_until
from accounting.models import CarbonBudget, Team, TeamDay

WARN_FRACTION = 0.9
HOLD_FRACTION = 1.0


@dataclass(frozen=True)
class BudgetStatus:
    budget: CarbonBudget
    as_of: dt.datetime
    spent_g: float
    forecast_g: float  # spent extrapolated linearly to the end of the period
    remaining_g: float
    used_fraction: float | None  # spent / budget (None for a zero budget)
    elapsed_fraction: float  # share of the period already past


@dataclass(frozen=True)
class BudgetDecision:
    decision: str  # "ok" | "warn" | "hold"
    team: Team
    estimate_g: float
    status: BudgetStatus | None
    projected_g: float  # spent + the job's estimate
    projected_fraction: float | None
    warn_fraction: float = WARN_FRACTION
    hold_fraction: float = HOLD_FRACTION


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def budget_spent_g(*, team_id: int, start: dt.date, end: dt.date) -> float:
    """Team carbon over days [start, end) from the TeamDay roll-up (gCO2e)."""
    total = TeamDay.objects.filter(team_id=team_id, day__gte=start, day__lt=end).aggregate(
        total=Sum(F("co2e_operational_g") + F("co2e_embodied_g"))
    )["total"]
    return float(total or 0.0)


def budget_status(*, budget: CarbonBudget, as_of: dt.datetime) -> BudgetStatus:
    period_start = _day_start(budget.period_start)
    period_end = _day_start(budget.period_end)
    last_day = budget_spent_until(period_end=budget.period_end, as_of=as_of)
    spent = (
        budget_spent_g(team_id=budget.team_id, start=budget.period_start, end=last_day)
        if (last_day > budget.period_start)
        else 0.0
    )
    projection = budget_forecast(spent_g=spent, period_start=period_start, period_end=period_end, as_of=as_of)
    return BudgetStatus(
        budget=budget,
        as_of=as_of,
        spent_g=spent,
        forecast_g=projection.forecast_g,
        remaining_g=budget.co2e_budget_g - spent,
        used_fraction=(spent / budget.co2e_budget_g) if budget.co2e_budget_g > 0 else None,
        elapsed_fraction=projection.elapsed_fraction,
    )


def budget_for_team_at(*, team: Team, at: dt.datetime) -> CarbonBudget | None:
    day = at.astimezone(dt.UTC).date()
    return (
        CarbonBudget.objects.filter(team=team, period_start__lte=day, period_end__gt=day)
        .order_by("-period_start")
        .first()
    )


def budget_visible_queryset(*, teams: QuerySet[Team]) -> QuerySet[CarbonBudget]:
    return CarbonBudget.objects.filter(team__in=teams).select_related("team").order_by("-period_start", "team__slug")


def budget_check(*, team: Team, estimate_g: float, at: dt.datetime, as_of: dt.datetime) -> BudgetDecision:
    """Would a job of ``estimate_g`` starting at ``at`` push the team over its budget?

    ``warn`` once spent + estimate reaches 90 % of the budget, ``hold`` at 100 %. A team
    without a budget for that day is always ``ok``."""
    budget = budget_for_team_at(team=team, at=at)
    if budget is None:
        return BudgetDecision(
            decision="ok",
            team=team,
            estimate_g=estimate_g,
            status=None,
            projected_g=estimate_g,
            projected_fraction=None,
        )
    status = budget_status(budget=budget, as_of=as_of)
    projected = status.spent_g + estimate_g
    if budget.co2e_budget_g > 0:
        fraction: float | None = projected / budget.co2e_budget_g
    else:
        fraction = None
    effective = fraction if fraction is not None else (math.inf if projected > 0 else 0.0)
    if effective >= HOLD_FRACTION:
        decision = "hold"
    elif effective >= WARN_FRACTION:
        decision = "warn"
    else:
        decision = "ok"
    return BudgetDecision(
        decision=decision,
        team=team,
        estimate_g=estimate_g,
        status=status,
        projected_g=projected,
        projected_fraction=fraction,
    )
