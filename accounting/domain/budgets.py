"""Team carbon budgets: how much of the period has elapsed and the linear run-rate forecast.

Pure (stdlib only; time is an argument). The API's budget status
(``accounting.selectors.budgets.budget_status``) and the dashboard's budget table
(``accounting.selectors.dashboard.team_budget_list``) both call :func:`budget_forecast`, so the
two never disagree about a team's forecast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from accounting.domain.units import S_PER_DAY, S_PER_H

# Below one elapsed hour a run rate is noise: the forecast is what is already spent.
MIN_RATE_ELAPSED_S = S_PER_H


@dataclass(frozen=True)
class BudgetForecast:
    period_s: float  # length of the budget period (at least 1 s)
    elapsed_s: float  # part of it already past, clamped to [0, period_s]
    forecast_g: float  # spent extrapolated linearly to the end of the period
    run_rate_g_per_day: float  # 0 until an hour has elapsed

    @property
    def elapsed_fraction(self) -> float:
        return self.elapsed_s / self.period_s


def budget_spent_until(*, period_end: dt.date, as_of: dt.datetime) -> dt.date:
    """Exclusive last day counted as spent: days up to and including ``as_of``'s UTC day,
    never past the period end."""
    return min(period_end, as_of.astimezone(dt.UTC).date() + dt.timedelta(days=1))


def budget_forecast(
    *, spent_g: float, period_start: dt.datetime, period_end: dt.datetime, as_of: dt.datetime
) -> BudgetForecast:
    """Linear run-rate forecast of a budget period: ``spent × period length / elapsed time``
    once an hour has passed; before the period (or in its first hour) the forecast is ``spent``."""
    period_s = max((period_end - period_start).total_seconds(), 1.0)
    elapsed_s = min(max((as_of - period_start).total_seconds(), 0.0), period_s)
    if elapsed_s >= MIN_RATE_ELAPSED_S:
        forecast = spent_g * period_s / elapsed_s
        rate = spent_g / (elapsed_s / S_PER_DAY)
    else:
        forecast, rate = spent_g, 0.0
    return BudgetForecast(period_s=period_s, elapsed_s=elapsed_s, forecast_g=forecast, run_rate_g_per_day=rate)
