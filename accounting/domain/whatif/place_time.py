"""Place and time: the same job in another grid zone; the cleanest start before a deadline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from accounting.domain.energy import facility_energy_j
from accounting.domain.units import J_PER_KWH

from .common import (
    CarbonContext,
    Footprint,
    build_footprint,
    non_negative,
    positive,
    require,
)


@dataclass(frozen=True)
class ZoneShift:
    inputs: dict[str, Any]
    before: Footprint
    after: Footprint
    saving_co2e_g: float
    saving_fraction: float
    assumptions: list[str]


def zone_shift(*, before: Footprint, to_carbon: CarbonContext, embodied_co2e_g: float | None = None) -> ZoneShift:
    """Same IT energy, runtime and hardware; another PUE/intensity. Embodied is unchanged."""
    to_carbon.checked()
    rel = (before.energy_high_j / before.it_energy_j - 1) if before.it_energy_j else 0.0
    emb = before.embodied_co2e_g if embodied_co2e_g is None else embodied_co2e_g
    after = build_footprint(
        device_key=before.device_key,
        device_count=before.device_count,
        runtime_s=before.runtime_s,
        it_energy_j=before.it_energy_j,
        carbon=to_carbon,
        embodied=None,
        rel_error=rel,
        basis="modelled",
        units=before.units,
    )
    # Embodied is a property of the devices, not the zone: carry it over unchanged.
    after = Footprint(
        **{
            **after.__dict__,
            "embodied_co2e_g": emb,
            "co2e_g": after.co2e_g + emb,
            "co2e_low_g": after.co2e_low_g + emb * (1 - rel),
            "co2e_high_g": after.co2e_high_g + emb * (1 + rel),
            "co2e_per_unit_g": {k: (after.co2e_g + emb) / v for k, v in after.units.items()},
        }
    )
    saving = before.co2e_g - after.co2e_g
    return ZoneShift(
        inputs={"to_pue": to_carbon.pue, "to_intensity_g_per_kwh": to_carbon.intensity_g_per_kwh},
        before=before,
        after=after,
        saving_co2e_g=saving,
        saving_fraction=saving / before.co2e_g if before.co2e_g else 0.0,
        assumptions=[
            "same hardware, runtime and IT energy in the other zone (no network/data-transfer energy)",
            f"target PUE {to_carbon.pue:g}, intensity {to_carbon.intensity_g_per_kwh:g} gCO2e/kWh"
            + (f" ({to_carbon.source})" if to_carbon.source else ""),
            "embodied carbon unchanged (same devices held for the same time)",
        ],
    )


@dataclass(frozen=True)
class StartWindow:
    inputs: dict[str, Any]
    best_start: datetime
    best_end: datetime
    best_avg_intensity_g_per_kwh: float
    now_avg_intensity_g_per_kwh: float
    saving_g_per_kwh: float
    saving_fraction: float
    saving_co2e_g: float | None
    best_co2e_g: float | None
    now_co2e_g: float | None
    candidates: int
    assumptions: list[str]


def _avg_intensity(series: list[tuple[datetime, float]], start: datetime, end: datetime) -> float | None:
    """Time-weighted mean of an hourly step series over [start, end); None if not covered."""
    total = 0.0
    covered = 0.0
    for hour, value in series:
        h_end = hour + timedelta(hours=1)
        lo, hi = max(start, hour), min(end, h_end)
        if hi > lo:
            sec = (hi - lo).total_seconds()
            total += value * sec
            covered += sec
    span = (end - start).total_seconds()
    if span <= 0 or covered < span - 1e-6:
        return None
    return total / span


def best_start_window(
    *,
    forecast: Sequence[tuple[datetime, float]],
    duration_s: float,
    earliest_start: datetime,
    deadline: datetime,
    energy_j: float | None = None,
    pue: float = 1.0,
) -> StartWindow:
    """Cleanest start in [earliest_start, deadline − duration], on the hour grid of the forecast
    (plus earliest_start itself). ``energy_j`` (IT) is spread evenly over the run."""
    positive(duration_s, "duration_s")
    require(
        earliest_start.tzinfo is not None and deadline.tzinfo is not None,
        "earliest_start",
        "datetimes must be timezone-aware (UTC)",
    )
    require(len(forecast) > 0, "forecast", "give at least one (hour, g/kWh) point")
    series = sorted((h, float(v)) for h, v in forecast)
    for i, (h, v) in enumerate(series):
        require(h.tzinfo is not None, f"forecast[{i}].hour", "must be timezone-aware (UTC)")
        non_negative(v, f"forecast[{i}].intensity_g_per_kwh")
    duration = timedelta(seconds=duration_s)
    require(
        earliest_start + duration <= deadline,
        "deadline",
        "the job cannot finish before the deadline even if started now",
    )
    if energy_j is not None:
        non_negative(energy_j, "energy_j")
    now_avg = _avg_intensity(series, earliest_start, earliest_start + duration)
    require(now_avg is not None, "forecast", "does not cover a run starting at earliest_start")
    assert now_avg is not None  # require raised otherwise (narrows the type)
    starts = {earliest_start} | {h for h, _ in series if earliest_start <= h and h + duration <= deadline}
    best: tuple[float, datetime] | None = None
    n = 0
    for start in sorted(starts):
        avg = _avg_intensity(series, start, start + duration)
        if avg is None:
            continue
        n += 1
        if best is None or avg < best[0] - 1e-12:
            best = (avg, start)
    assert best is not None  # earliest_start is always a covered candidate here
    best_avg, best_start = best
    kwh = None if energy_j is None else (energy_j + facility_energy_j(it_energy_j=energy_j, pue=pue)) / J_PER_KWH
    return StartWindow(
        inputs={
            "duration_s": duration_s,
            "earliest_start": earliest_start.isoformat(),
            "deadline": deadline.isoformat(),
            "energy_j": energy_j,
            "pue": pue,
            "forecast_points": len(series),
        },
        best_start=best_start,
        best_end=best_start + duration,
        best_avg_intensity_g_per_kwh=best_avg,
        now_avg_intensity_g_per_kwh=now_avg,
        saving_g_per_kwh=now_avg - best_avg,
        saving_fraction=(now_avg - best_avg) / now_avg if now_avg else 0.0,
        saving_co2e_g=None if kwh is None else kwh * (now_avg - best_avg),
        best_co2e_g=None if kwh is None else kwh * best_avg,
        now_co2e_g=None if kwh is None else kwh * now_avg,
        candidates=n,
        assumptions=[
            "hourly intensity is constant within each hour; candidate starts on the forecast's hour grid and now",
            "energy drawn evenly over the run; runtime the same whenever it starts",
            "only windows fully covered by the forecast are considered; ties keep the earliest start",
        ],
    )


def time_shift_bound_g(*, loads_kwh: Sequence[float], intensities_g_per_kwh: Sequence[float]) -> float:
    """Operational carbon of the same hourly loads re-ordered so the largest falls in the
    cleanest hour (rearrangement inequality): the best any shift within those hours could do,
    ignoring deadlines. Loads beyond the number of hours are dropped (there is nowhere to put
    them; the dashboard passes one day's loads and its 24 hours)."""
    curve = sorted(intensities_g_per_kwh)
    loads = sorted(loads_kwh, reverse=True)
    return sum(kwh * g for kwh, g in zip(loads, curve, strict=False))


def place_shift_g(*, energy_j: float, from_pue: float, to_pue: float, to_intensity_g_per_kwh: float) -> float:
    """Operational carbon of ``energy_j`` drawn at a site with ``from_pue`` (facility included)
    if the same IT energy ran instead at a site with ``to_pue`` and ``to_intensity_g_per_kwh``
    (the rule of :func:`zone_shift`)."""
    it_j = energy_j / from_pue
    return (it_j + facility_energy_j(it_energy_j=it_j, pue=to_pue)) / J_PER_KWH * to_intensity_g_per_kwh
