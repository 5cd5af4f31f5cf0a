"""Baseline forecast, MAPE, backtest and cleanest window (pure)."""

from datetime import UTC, datetime, timedelta

import pytest

from accounting.domain import forecast as fc

H = timedelta(hours=1)
T0 = datetime(2026, 11, 2, 0, tzinfo=UTC)  # a Monday


def test_mape_exact_and_zero_actuals_skipped():
    assert fc.mape([100.0, 200.0], [110.0, 150.0]) == pytest.approx(100 * (0.10 + 0.25) / 2)
    assert fc.mape([0.0, 50.0], [5.0, 55.0]) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        fc.mape([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        fc.mape([0.0], [1.0])


def test_same_hour_last_week_then_daily_profile():
    # Two weeks of history with a daily shape (100 + hour) plus +50 on the last day only.
    history = {T0 + i * H: 100.0 + (T0 + i * H).hour for i in range(14 * 24)}
    origin = T0 + 14 * 24 * H
    points = fc.baseline_forecast(history, origin=origin, horizon_h=3)
    assert [(p.hour, p.intensity_g_per_kwh, p.method) for p in points] == [
        (origin, 100.0, "same_hour_last_week"),
        (origin + H, 101.0, "same_hour_last_week"),
        (origin + 2 * H, 102.0, "same_hour_last_week"),
    ]
    # Without last week's values, the mean of the same hour over the previous 7 days is used.
    recent = {h: v + (50.0 if h >= origin - 24 * H else 0.0) for h, v in history.items() if h >= origin - 7 * 24 * H}
    recent.pop(origin - 7 * 24 * H)
    points = fc.baseline_forecast(recent, origin=origin, horizon_h=1)
    assert points[0].method == "daily_profile"
    # Days -1..-6 remain (day -7 was the popped lag): five at 100 and the last day at 150.
    assert points[0].intensity_g_per_kwh == pytest.approx((5 * 100.0 + 150.0) / 6)


def test_baseline_never_peeks_past_origin_and_omits_unknown_hours():
    origin = T0 + 24 * H
    history = {origin + H: 999.0}  # only a "future" value
    assert fc.baseline_forecast(history, origin=origin, horizon_h=3) == []
    with pytest.raises(ValueError):
        fc.baseline_forecast({}, origin=datetime(2026, 1, 1), horizon_h=1)


def test_backtest_perfect_weekly_pattern_has_zero_error():
    history = {T0 + i * H: 200.0 + 10 * ((T0 + i * H).weekday()) + (T0 + i * H).hour for i in range(21 * 24)}
    origins = [T0 + (14 * 24 + k * 6) * H for k in range(4)]
    result = fc.backtest(history, origins=origins, horizon_h=24)
    assert result == fc.BacktestResult(mape_pct=0.0, pairs=4 * 24, origins=4)


def test_backtest_measures_error_of_a_shifted_week():
    # Week 2 is week 1 scaled by 1.1: the last-week baseline under-forecasts by 1/11 everywhere.
    history = {T0 + i * H: 100.0 for i in range(7 * 24)}
    history.update({T0 + (7 * 24 + i) * H: 110.0 for i in range(7 * 24)})
    result = fc.backtest(history, origins=[T0 + 7 * 24 * H], horizon_h=24)
    assert result.mape_pct == pytest.approx(100 * 10 / 110)
    assert result.pairs == 24


def test_merge_prefers_provider_and_cleanest_window():
    base = [fc.ForecastPoint(T0 + i * H, 300.0, "daily_profile") for i in range(6)]
    provider = [fc.ForecastPoint(T0 + 2 * H, 100.0, "provider"), fc.ForecastPoint(T0 + 3 * H, 120.0, "provider")]
    merged = fc.merge_forecasts(provider, base)
    assert [p.method for p in merged] == ["daily_profile"] * 2 + ["provider"] * 2 + ["daily_profile"] * 2
    w = fc.cleanest_window(merged, duration_h=2, earliest=T0 + timedelta(minutes=10), deadline=T0 + 6 * H)
    assert w == fc.Window(T0 + 2 * H, T0 + 4 * H, 110.0)
    assert fc.cleanest_window(merged, duration_h=7, earliest=T0, deadline=T0 + 6 * H) is None
