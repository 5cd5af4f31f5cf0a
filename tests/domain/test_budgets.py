"""The one budget forecast (accounting.domain.budgets), hand-worked."""

import datetime as dt

import pytest

from accounting.domain.budgets import budget_forecast, budget_spent_until

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)  # 31 days


def test_linear_run_rate_to_the_period_end():
    # 19.5 days in, 738 kg spent: 738 x 31 / 19.5 = 1173.23... kg by the end, 37.846... kg/day.
    f = budget_forecast(spent_g=738_000.0, period_start=START, period_end=END, as_of=START + dt.timedelta(days=19.5))
    assert f.period_s == 31 * 86_400.0
    assert f.elapsed_s == 19.5 * 86_400.0
    assert f.forecast_g == pytest.approx(738_000.0 * 31 / 19.5, rel=1e-15)
    assert f.run_rate_g_per_day == pytest.approx(738_000.0 / 19.5, rel=1e-15)
    assert f.elapsed_fraction == pytest.approx(19.5 / 31, rel=1e-15)


def test_first_hour_before_and_after_the_period():
    early = budget_forecast(spent_g=50.0, period_start=START, period_end=END, as_of=START + dt.timedelta(minutes=59))
    assert (early.forecast_g, early.run_rate_g_per_day) == (50.0, 0.0)
    hour = budget_forecast(spent_g=50.0, period_start=START, period_end=END, as_of=START + dt.timedelta(hours=1))
    assert hour.forecast_g == 50.0 * 744  # 31 d = 744 h
    assert hour.run_rate_g_per_day == 1200.0
    before = budget_forecast(spent_g=0.0, period_start=START, period_end=END, as_of=START - dt.timedelta(days=3))
    assert (before.elapsed_s, before.forecast_g, before.elapsed_fraction) == (0.0, 0.0, 0.0)
    after = budget_forecast(spent_g=900.0, period_start=START, period_end=END, as_of=END + dt.timedelta(days=3))
    assert (after.forecast_g, after.elapsed_fraction) == (900.0, 1.0)
    # An empty period counts as 1 s, so nothing divides by zero.
    empty = budget_forecast(spent_g=5.0, period_start=START, period_end=START, as_of=START)
    assert (empty.period_s, empty.forecast_g) == (1.0, 5.0)


def test_spent_counts_today_and_stops_at_the_period_end():
    noon = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    assert budget_spent_until(period_end=END.date(), as_of=noon) == dt.date(2026, 3, 11)
    # A non-UTC instant is read on its UTC day: 01:00 at UTC+2 is 23:00 UTC the day before.
    cest = dt.datetime(2026, 3, 10, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert budget_spent_until(period_end=END.date(), as_of=cest) == dt.date(2026, 3, 10)
    assert budget_spent_until(period_end=END.date(), as_of=END + dt.timedelta(days=9)) == END.date()
