"""Water of attributed energy: on-site (cooling, by WUE) and off-site (power generation, by the
grid's water intensity). Pure: stdlib only. Litres, kWh.

- On-site: ``IT kWh x WUE``. WUE is The Green Grid's metric: site water use (L) per kWh of IT
  energy, so it multiplies IT energy, not facility energy.
- Off-site: ``(IT + facility) kWh x grid water intensity``: every kWh the site buys was generated
  somewhere, consuming (evaporating) water there.

Grid water intensity of a generation mix: each technology's operational water consumption
factor (Macknick, Newmark, Heath & Hallett 2012, "Operational water consumption and withdrawal
factors for electricity generating technologies: a review of existing literature", Environ.
Res. Lett. 7 045802, medians and min/max for recirculating (tower) cooling; hydropower
evaporation from the NREL technical report NREL/TP-6A20-50900, Macknick et al. 2011) weighted by
its share of generation. Tower cooling is the declared assumption for every thermal plant (the
common case; once-through plants withdraw far more but consume less): the range carries the
spread of the literature, not of the cooling mix.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

GAL_TO_L = 3.785411784  # US gallon, exact
WATER_METHOD_VERSION = "2026.12-1"


@dataclass(frozen=True)
class WaterFactor:
    """Litres consumed per kWh generated: central, low, high."""

    l_per_kwh: float
    low_l_per_kwh: float
    high_l_per_kwh: float

    def __post_init__(self) -> None:
        values = (self.low_l_per_kwh, self.l_per_kwh, self.high_l_per_kwh)
        if not all(math.isfinite(v) and v >= 0 for v in values) or not values[0] <= values[1] <= values[2]:
            raise ValueError(f"water factor must satisfy 0 <= low <= central <= high, got {values!r}")


def _gal_per_mwh(median: float, low: float, high: float) -> WaterFactor:
    # gal/MWh -> L/kWh: x 3.785411784 L/gal / 1000 kWh/MWh.
    return WaterFactor(median * GAL_TO_L / 1000.0, low * GAL_TO_L / 1000.0, high * GAL_TO_L / 1000.0)


# Consumption factors (gal/MWh: median, min, max), Macknick et al. 2012 Table 1 (tower cooling);
# oil is counted as a natural-gas steam turbine (no separate entry in the review); "other
# renewables" as geothermal flash; solar as utility PV (cleaning water).
TECHNOLOGY_WATER: dict[str, WaterFactor] = {
    "coal": _gal_per_mwh(687, 480, 1100),
    "gas": _gal_per_mwh(198, 130, 300),
    "oil": _gal_per_mwh(826, 662, 1170),
    "nuclear": _gal_per_mwh(672, 581, 845),
    "biofuel": _gal_per_mwh(553, 480, 965),
    "hydro": _gal_per_mwh(4491, 1425, 18000),
    "solar": _gal_per_mwh(1, 0, 5),
    "wind": _gal_per_mwh(0, 0, 1),
    "other_renewable": _gal_per_mwh(10, 5, 361),
}


def mix_water_factor(*, generation_twh: Mapping[str, float]) -> WaterFactor:
    """Water intensity of a generation mix (technology -> TWh, keys of TECHNOLOGY_WATER):
    generation-weighted central, low and high."""
    unknown = set(generation_twh) - set(TECHNOLOGY_WATER)
    if unknown:
        raise ValueError(f"no water factor for {sorted(unknown)}")
    total = math.fsum(generation_twh.values())
    if not total > 0:
        raise ValueError("a generation mix needs some generation")

    def weighted(pick: Callable[[WaterFactor], float]) -> float:
        return math.fsum(twh * pick(TECHNOLOGY_WATER[tech]) for tech, twh in generation_twh.items()) / total

    return WaterFactor(
        weighted(lambda f: f.l_per_kwh), weighted(lambda f: f.low_l_per_kwh), weighted(lambda f: f.high_l_per_kwh)
    )


@dataclass(frozen=True)
class Water:
    onsite_l: float | None  # None: the site has no WUE
    offsite_l: float | None  # None: the zone has no water intensity
    offsite_low_l: float | None
    offsite_high_l: float | None

    @property
    def total_l(self) -> float:
        return (self.onsite_l or 0.0) + (self.offsite_l or 0.0)

    @property
    def low_l(self) -> float:
        return (self.onsite_l or 0.0) + (self.offsite_low_l or 0.0)

    @property
    def high_l(self) -> float:
        return (self.onsite_l or 0.0) + (self.offsite_high_l or 0.0)


def water_l(
    *, it_energy_kwh: float, total_energy_kwh: float, wue_l_per_kwh: float | None, grid: WaterFactor | None
) -> Water:
    """On-site and off-site water of energy used at one site (IT and IT + facility kWh)."""
    if not (math.isfinite(it_energy_kwh) and 0 <= it_energy_kwh <= total_energy_kwh + 1e-9 * total_energy_kwh):
        raise ValueError(f"need 0 <= IT energy <= total energy, got {it_energy_kwh!r}, {total_energy_kwh!r}")
    if wue_l_per_kwh is not None and not (math.isfinite(wue_l_per_kwh) and wue_l_per_kwh >= 0):
        raise ValueError(f"WUE must be finite and >= 0, got {wue_l_per_kwh!r}")
    onsite = None if wue_l_per_kwh is None else it_energy_kwh * wue_l_per_kwh
    if grid is None:
        return Water(onsite, None, None, None)
    return Water(
        onsite,
        total_energy_kwh * grid.l_per_kwh,
        total_energy_kwh * grid.low_l_per_kwh,
        total_energy_kwh * grid.high_l_per_kwh,
    )


@dataclass(frozen=True)
class Onsite:
    litres: float | None  # None: no hour had a WUE
    kwh_without_wue: float  # IT energy of hours before the first WUE (not counted, reported)


def onsite_water_l(
    *,
    it_kwh_by_hour: Mapping[datetime, float],
    static_wue_l_per_kwh: float | None,
    series: Sequence[tuple[datetime, float]] = (),
) -> Onsite:
    """On-site water of IT energy by hour: ``Σ_h IT kWh(h) × WUE(h)``, WUE(h) the newest series
    value at or before the hour, else the site's static WUE; hours with neither are reported as
    ``kwh_without_wue``, never counted as zero water silently."""
    points = sorted(series)
    for when, wue in points:
        if not (math.isfinite(wue) and wue >= 0):
            raise ValueError(f"WUE at {when.isoformat()} must be finite and >= 0, got {wue!r}")
    starts = [when for when, _ in points]
    litres: list[float] = []
    missing = 0.0
    for hour, kwh in it_kwh_by_hour.items():
        i = bisect.bisect_right(starts, hour) - 1
        hour_wue = points[i][1] if i >= 0 else static_wue_l_per_kwh
        if hour_wue is None:
            missing += kwh
        else:
            litres.append(kwh * hour_wue)
    return Onsite(math.fsum(litres) if litres else None, missing)
