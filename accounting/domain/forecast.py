"""Grid-intensity forecasts for carbon-aware scheduling (pure, stdlib only).

When the provider publishes a forecast we use it. Otherwise a declared baseline predicts hour
``t`` from history strictly before the forecast origin:

1. ``same_hour_last_week``: the value at ``t − 7 days`` (captures weekday/weekend and daily
   shape); falls back to
2. ``daily_profile``: the mean of the same UTC hour-of-day over the ``profile_days`` days
   before the origin.

``mape`` and ``backtest`` measure a method's error on history, so the methodology page can state
how good the baseline is for each zone instead of presenting it as a measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)

METHOD_SAME_HOUR_LAST_WEEK = "same_hour_last_week"
METHOD_DAILY_PROFILE = "daily_profile"
METHOD_PROVIDER = "provider"


@dataclass(frozen=True)
class ForecastPoint:
    hour: datetime
    intensity_g_per_kwh: float
    method: str  # "provider" | "same_hour_last_week" | "daily_profile"


def _check_aware(dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"datetimes must be timezone-aware UTC, got naive {dt!r}")


def floor_hour(dt: datetime) -> datetime:
    _check_aware(dt)
    return dt.replace(minute=0, second=0, microsecond=0)


def daily_profile_value(
    history: Mapping[datetime, float], *, hour: datetime, origin: datetime, profile_days: int = 7
) -> float | None:
    """Mean of the values at the same hour-of-day on the ``profile_days`` days before ``origin``."""
    values = []
    # Start from the most recent same hour-of-day strictly before the origin (no peeking).
    candidate = hour
    while candidate >= origin:
        candidate -= timedelta(days=1)
    for i in range(profile_days):
        v = history.get(candidate - i * timedelta(days=1))
        if v is not None:
            values.append(v)
    return sum(values) / len(values) if values else None


def baseline_forecast(
    history: Mapping[datetime, float],
    *,
    origin: datetime,
    horizon_h: int,
    profile_days: int = 7,
) -> list[ForecastPoint]:
    """Baseline forecast for the ``horizon_h`` hours starting at ``floor_hour(origin)``.

    Uses only history before the origin (no peeking). Hours with no usable history are
    omitted rather than invented; the caller then falls back to the annual factor."""
    start = floor_hour(origin)
    out: list[ForecastPoint] = []
    for i in range(horizon_h):
        hour = start + i * HOUR
        lag = hour - WEEK
        if lag < start and lag in history:
            out.append(ForecastPoint(hour, history[lag], METHOD_SAME_HOUR_LAST_WEEK))
            continue
        v = daily_profile_value(history, hour=hour, origin=start, profile_days=profile_days)
        if v is not None:
            out.append(ForecastPoint(hour, v, METHOD_DAILY_PROFILE))
    return out


def merge_forecasts(provider: Iterable[ForecastPoint], baseline: Iterable[ForecastPoint]) -> list[ForecastPoint]:
    """Provider points win; the baseline fills the hours the provider did not cover."""
    merged = {p.hour: p for p in baseline}
    merged.update({p.hour: p for p in provider})
    return [merged[h] for h in sorted(merged)]


def mape(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent.

    Pairs whose actual value is zero are skipped (the percentage is undefined there; a zone at
    exactly 0 g/kWh is rare and reported through the count of pairs used)."""
    if len(actual) != len(predicted):
        raise ValueError("actual and predicted must have the same length")
    terms = [abs(a - p) / abs(a) for a, p in zip(actual, predicted, strict=True) if a != 0]
    if not terms:
        raise ValueError("no pairs with a non-zero actual value")
    return 100.0 * sum(terms) / len(terms)


@dataclass(frozen=True)
class BacktestResult:
    mape_pct: float
    pairs: int
    origins: int


def backtest(
    history: Mapping[datetime, float],
    *,
    origins: Iterable[datetime],
    horizon_h: int,
    forecaster: Callable[..., list[ForecastPoint]] = baseline_forecast,
) -> BacktestResult:
    """Forecast from each origin using only history before it, score against what happened."""
    actual: list[float] = []
    predicted: list[float] = []
    n_origins = 0
    for origin in origins:
        n_origins += 1
        for p in forecaster(history, origin=origin, horizon_h=horizon_h):
            a = history.get(p.hour)
            if a is not None:
                actual.append(a)
                predicted.append(p.intensity_g_per_kwh)
    return BacktestResult(mape_pct=mape(actual, predicted), pairs=len(actual), origins=n_origins)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    mean_intensity_g_per_kwh: float


def cleanest_window(
    points: Sequence[ForecastPoint], *, duration_h: int, earliest: datetime, deadline: datetime
) -> Window | None:
    """The start hour that minimises mean forecast intensity for a ``duration_h`` job that must
    start at or after ``earliest`` and finish by ``deadline``; ties go to the earliest start.
    Windows that run over an hour the forecast does not cover are not considered."""
    if duration_h <= 0:
        raise ValueError("duration_h must be positive")
    by_hour = {p.hour: p.intensity_g_per_kwh for p in points}
    start = floor_hour(earliest)
    if start < earliest:
        start += HOUR
    best: Window | None = None
    while start + duration_h * HOUR <= deadline:
        values = [v for i in range(duration_h) if (v := by_hour.get(start + i * HOUR)) is not None]
        if len(values) == duration_h:  # every hour of the window is forecast
            mean = sum(values) / duration_h
            if best is None or mean < best.mean_intensity_g_per_kwh:
                best = Window(start, start + duration_h * HOUR, mean)
        start += HOUR
    return best
