"""Market-based Scope 2 (GHG Protocol Scope 2 Guidance, dual reporting): the electricity a site
used, covered by its contractual instruments at their emission factor, the rest at the zone's
residual mix; then allocated to the accounts (jobs, fleet overhead) that used the energy.

Pure: stdlib only. Energy in kWh, factors in gCO2e/kWh, hours aware UTC (start of the hour).

Declared policy (versioned with ``MARKET_METHOD_VERSION``):

1. Hourly matching first: an instrument with an hourly delivery profile covers, in each hour,
   at most what the site used in that hour; a delivery the site did not use in its hour is not
   banked to another hour (the revised Scope 2 proposal's hourly matching). Within an hour,
   instruments claim in the order given (the caller orders them by id).
2. Annual (period) matching for instruments without a profile: over its period the instrument
   covers at most the energy not covered yet, spread over the period's hours pro rata to that
   uncovered energy.
3. What is left of every hour is charged at the residual mix of its hour's year.
4. Each hour's market-based emissions go to the accounts pro rata to their energy in the hour;
   with only period instruments this is pro rata to their energy over the period.

Conservation (tested): the accounts' market-based grams sum to the site's, and covered +
residual kWh equal the site's kWh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

MARKET_METHOD_VERSION = "2026.12-1"

HOURLY = "hourly"
ANNUAL = "annual"


@dataclass(frozen=True)
class Instrument:
    """A contractual instrument of one site: ``energy_kwh`` over [start, end) at ``g_per_kwh``;
    ``hourly_kwh`` (hour start -> kWh) makes it hourly-matched."""

    id: int
    energy_kwh: float
    g_per_kwh: float
    start: datetime
    end: datetime
    hourly_kwh: Mapping[datetime, float] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.energy_kwh) and self.energy_kwh > 0):
            raise ValueError(f"instrument {self.id}: energy_kwh must be > 0, got {self.energy_kwh!r}")
        if not (math.isfinite(self.g_per_kwh) and self.g_per_kwh >= 0):
            raise ValueError(f"instrument {self.id}: g_per_kwh must be >= 0, got {self.g_per_kwh!r}")
        if self.end <= self.start:
            raise ValueError(f"instrument {self.id}: period must end after it starts")
        if self.hourly_kwh is not None:
            if any(not (math.isfinite(v) and v >= 0) for v in self.hourly_kwh.values()):
                raise ValueError(f"instrument {self.id}: hourly deliveries must be >= 0")
            if any(not (self.start <= h < self.end) for h in self.hourly_kwh):
                raise ValueError(f"instrument {self.id}: a delivery hour lies outside its period")

    @property
    def matching(self) -> str:
        return HOURLY if self.hourly_kwh is not None else ANNUAL


@dataclass(frozen=True)
class InstrumentUse:
    id: int
    matching: str
    used_kwh: float
    co2e_g: float


@dataclass(frozen=True)
class MarketBasedResult:
    site_energy_kwh: float
    covered_kwh: float  # by instruments (hourly + annual)
    covered_hourly_kwh: float
    covered_annual_kwh: float
    residual_kwh: float
    co2e_g: float  # market-based Scope 2 of the site
    co2e_covered_g: float
    co2e_residual_g: float
    by_account_g: dict[Hashable, float]
    by_hour_g: dict[datetime, float]
    instruments: list[InstrumentUse] = field(default_factory=list)
    # kWh of each account covered by instruments (each hour's cover pro rata to its energy)
    by_account_covered_kwh: dict[Hashable, float] = field(default_factory=dict)
    residual_versions: dict[int, int] = field(default_factory=dict)  # year -> factor version

    @property
    def matching(self) -> str:
        """What matching the figure used: "hourly", "annual", "hourly + annual" or "none"
        (no instrument covered anything: residual mix only)."""
        kinds = [k for k, v in ((HOURLY, self.covered_hourly_kwh), (ANNUAL, self.covered_annual_kwh)) if v > 0]
        return " + ".join(kinds) if kinds else "none"


@dataclass(frozen=True)
class ResidualFactor:
    g_per_kwh: float
    version: int


def market_based(
    *,
    account_kwh_by_hour: Mapping[Hashable, Mapping[datetime, float]],
    instruments: Sequence[Instrument],
    residual_at: Callable[[datetime], ResidualFactor],
) -> MarketBasedResult:
    """Market-based emissions of one site over the hours in ``account_kwh_by_hour`` (every
    account's energy, facility included: Scope 2 counts all electricity bought), allocated to
    the accounts. ``residual_at`` gives the residual mix applying to an hour (raise if none)."""
    site_kwh: dict[datetime, float] = {}
    for per_hour in account_kwh_by_hour.values():
        for hour, kwh in per_hour.items():
            if not (math.isfinite(kwh) and kwh >= 0):
                raise ValueError(f"energy at {hour.isoformat()} must be finite and >= 0, got {kwh!r}")
            site_kwh[hour] = site_kwh.get(hour, 0.0) + kwh
    hours = sorted(site_kwh)
    uncovered = dict(site_kwh)
    covered_g: dict[datetime, float] = dict.fromkeys(hours, 0.0)
    uses: list[InstrumentUse] = []

    for inst in (i for i in instruments if i.matching == HOURLY):
        assert inst.hourly_kwh is not None
        used = grams = 0.0
        for hour, delivered in sorted(inst.hourly_kwh.items()):
            take = min(delivered, uncovered.get(hour, 0.0))
            if take <= 0:
                continue
            uncovered[hour] -= take
            covered_g[hour] += take * inst.g_per_kwh
            used += take
            grams += take * inst.g_per_kwh
        uses.append(InstrumentUse(inst.id, HOURLY, used, grams))

    for inst in (i for i in instruments if i.matching == ANNUAL):
        in_period = [h for h in hours if inst.start <= h < inst.end]
        open_kwh = math.fsum(uncovered[h] for h in in_period)
        take = min(inst.energy_kwh, open_kwh)
        if take > 0:
            fraction = take / open_kwh
            for h in in_period:
                part = uncovered[h] * fraction
                uncovered[h] -= part
                covered_g[h] += part * inst.g_per_kwh
        uses.append(InstrumentUse(inst.id, ANNUAL, max(take, 0.0), max(take, 0.0) * inst.g_per_kwh))

    by_hour_g: dict[datetime, float] = {}
    residual_g = 0.0
    residual_versions: dict[int, int] = {}
    for h in hours:
        rest = max(uncovered[h], 0.0)
        if rest > 0:
            factor = residual_at(h)
            residual_versions[h.year] = factor.version
            rest_g = rest * factor.g_per_kwh
        else:
            rest_g = 0.0
        residual_g += rest_g
        by_hour_g[h] = covered_g[h] + rest_g

    by_account: dict[Hashable, float] = {}
    by_account_covered: dict[Hashable, float] = {}
    for account, per_hour in account_kwh_by_hour.items():
        by_account[account] = math.fsum(
            by_hour_g[h] * kwh / site_kwh[h] for h, kwh in per_hour.items() if site_kwh[h] > 0
        )
        by_account_covered[account] = math.fsum(
            (site_kwh[h] - max(uncovered[h], 0.0)) * kwh / site_kwh[h] for h, kwh in per_hour.items() if site_kwh[h] > 0
        )

    hourly_kwh = math.fsum(u.used_kwh for u in uses if u.matching == HOURLY)
    annual_kwh = math.fsum(u.used_kwh for u in uses if u.matching == ANNUAL)
    total_kwh = math.fsum(site_kwh.values())
    covered_total_g = math.fsum(covered_g.values())
    return MarketBasedResult(
        site_energy_kwh=total_kwh,
        covered_kwh=hourly_kwh + annual_kwh,
        covered_hourly_kwh=hourly_kwh,
        covered_annual_kwh=annual_kwh,
        residual_kwh=math.fsum(max(v, 0.0) for v in uncovered.values()),
        co2e_g=covered_total_g + residual_g,
        co2e_covered_g=covered_total_g,
        co2e_residual_g=residual_g,
        by_account_g=by_account,
        by_hour_g=by_hour_g,
        instruments=uses,
        residual_versions=residual_versions,
        by_account_covered_kwh=by_account_covered,
    )
