"""Factor lookups for a batch: PUE and grid intensity per hour, preloaded for a time range.

Hourly intensity (average, and marginal alongside when present) wins over the zone's annual
factor; a site's PUE series (newest row at or before t) wins over its static PUE.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from accounting.domain.types import IntensityPoint
from accounting.models import HourlyIntensity, IntensitySignal, Site, SitePue


@dataclass(frozen=True)
class FactorLookups:
    pue_at: Callable[[dt.datetime], tuple[float, int]]
    intensity_at: Callable[[dt.datetime], IntensityPoint]


def _hour(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def factor_lookups_for_site(*, site: Site, start: dt.datetime, end: dt.datetime) -> FactorLookups:
    zone = site.zone
    first_hour = _hour(start)
    rows = HourlyIntensity.objects.filter(
        zone=zone, is_forecast=False, hour__gte=first_hour, hour__lt=end
    ).values_list("hour", "signal", "intensity_g_per_kwh", "source", "version", "is_fallback")
    average: dict[dt.datetime, tuple[float, str, int]] = {}
    marginal: dict[dt.datetime, float] = {}
    for hour, signal, value, source, version, is_fallback in rows:
        if signal == IntensitySignal.MARGINAL:
            marginal[hour] = value
        else:
            label = f"hourly:{source}" + (":fallback" if is_fallback else "")
            average[hour] = (value, label, version)
    annual = IntensityPoint(
        intensity_g_per_kwh=zone.annual_intensity_g_per_kwh,
        source=f"annual:{zone.source}:{zone.vintage}" if zone.vintage else f"annual:{zone.source}",
        marginal_g_per_kwh=zone.annual_marginal_g_per_kwh,
        version=zone.version,
    )

    def intensity_at(moment: dt.datetime) -> IntensityPoint:
        hour = _hour(moment)
        hit = average.get(hour)
        if hit is None:
            if hour in marginal:
                return IntensityPoint(
                    intensity_g_per_kwh=annual.intensity_g_per_kwh, source=annual.source,
                    marginal_g_per_kwh=marginal[hour], version=annual.version,
                )
            return annual
        value, label, version = hit
        return IntensityPoint(intensity_g_per_kwh=value, source=label,
                              marginal_g_per_kwh=marginal.get(hour), version=version)

    series = list(
        SitePue.objects.filter(site=site, valid_from__lt=end).order_by("valid_from").values_list(
            "valid_from", "pue", "version"
        )
    )
    times = [row[0] for row in series]

    def pue_at(moment: dt.datetime) -> tuple[float, int]:
        index = bisect.bisect_right(times, moment) - 1
        if index >= 0:
            return series[index][1], series[index][2]
        return site.pue, site.pue_version

    return FactorLookups(pue_at=pue_at, intensity_at=intensity_at)
