"""Factor lookups for a batch, shaped for the pure core: PUE and grid intensity per instant.

Built on the preloading selectors of accounting.selectors.factors (hourly intensity wins over
the zone's annual factor; a site's PUE series wins over its static PUE); this module only
adapts them to the domain's ``IntensityPoint`` and ``(pue, version)`` callables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from accounting.domain.types import IntensityPoint
from accounting.models import IntensitySignal, Site
from accounting.selectors.factors import IntensityValue, intensity_lookups, pue_lookup


@dataclass(frozen=True)
class FactorLookups:
    pue_at: Callable[[dt.datetime], tuple[float, int]]
    intensity_at: Callable[[dt.datetime], IntensityPoint]


def _label(value: IntensityValue) -> str:
    kind = "hourly" if value.is_hourly else "annual"
    label = f"{kind}:{value.source}"
    if value.vintage and not value.is_hourly:
        label += f":{value.vintage}"
    return label + (":fallback" if value.is_fallback else "")


def factor_lookups_for_site(*, site: Site, start: dt.datetime, end: dt.datetime) -> FactorLookups:
    zone = site.zone
    signals = intensity_lookups(
        zone=zone, start=start, end=end, signals=(IntensitySignal.AVERAGE, IntensitySignal.MARGINAL)
    )
    average, marginal = signals[IntensitySignal.AVERAGE], signals[IntensitySignal.MARGINAL]
    pue = pue_lookup(site=site, start=start, end=end)

    def intensity_at(moment: dt.datetime) -> IntensityPoint:
        value = average(moment)
        assert value is not None  # the average signal always has the annual factor behind it
        margin = marginal(moment)
        return IntensityPoint(
            intensity_g_per_kwh=value.intensity_g_per_kwh,
            source=_label(value),
            marginal_g_per_kwh=margin.intensity_g_per_kwh if margin is not None else None,
            version=value.version,
            basis=value.basis,
            gases=value.gases,
            lifecycle_g_per_kwh=value.lifecycle_g_per_kwh,
        )

    def pue_at(moment: dt.datetime) -> tuple[float, int]:
        point = pue(moment)
        return point.pue, point.version

    return FactorLookups(pue_at=pue_at, intensity_at=intensity_at)
