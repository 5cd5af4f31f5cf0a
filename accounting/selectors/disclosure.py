"""What a disclosure needs per scope and period: Scope 2 location-based (with its basis) and
market-based (with the matching used), upstream electricity emissions (Scope 3 cat. 3) as their
own figure, embodied carbon, energy and water; per job as well (``job_market_water``).

Reads the team-hour aggregates (the ledger's sums per org, team, site and hour), the ledger's
facility energy per site (water on site is by IT energy), each site's instruments and the zone's
residual mix and water intensity. The market-based rule itself is pure
(accounting.domain.market_based); this module feeds it and labels the result.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from django.db.models import Q, Sum

from accounting.domain.carbon import BasisMix, basis_mix
from accounting.domain.market_based import (
    MARKET_METHOD_VERSION,
    Instrument,
    MarketBasedResult,
    ResidualFactor,
    market_based,
)
from accounting.domain.units import J_PER_KWH
from accounting.domain.water import WATER_METHOD_VERSION, WaterFactor, onsite_water_l, water_l
from accounting.models import (
    ContractualInstrument,
    Job,
    JobFootprint,
    JobHour,
    LedgerEntry,
    ResidualMix,
    Site,
    SiteWue,
    TeamHour,
    ZoneWaterIntensity,
)
from accounting.selectors.access import Principal

H = dt.timedelta(hours=1)
# Location-based label: what the operational figure is, whatever the basis mix.
LOCATION_LABEL = "Scope 2 location-based (grid average intensity of the hour, else of the year)"
UPSTREAM_LABEL = "upstream (Scope 3 cat. 3): life-cycle minus direct intensity, where both are known"


@dataclass(frozen=True)
class MarketFigure:
    co2e_g: float
    matching: str  # "hourly", "annual", "hourly + annual", "none" (residual mix only)
    covered_kwh: float
    residual_kwh: float
    residual_sources: list[str]  # "DE 2024: AIB European Residual Mixes 2024 v1", or a fallback note
    method_version: str = MARKET_METHOD_VERSION


@dataclass(frozen=True)
class WaterFigure:
    onsite_l: float
    offsite_l: float
    low_l: float
    high_l: float
    sites_without_wue: list[str]
    zones_without_water: list[str]
    method_version: str = WATER_METHOD_VERSION
    it_kwh_without_wue: float = 0.0  # hours before a site's first WUE (no static value): not counted

    @property
    def total_l(self) -> float:
        return self.onsite_l + self.offsite_l


@dataclass(frozen=True)
class Disclosure:
    start: dt.date
    end: dt.date  # exclusive
    team_id: int | None
    energy_kwh: float
    location_based_g: float
    location_basis: BasisMix
    upstream_g: float
    embodied_g: float
    market: MarketFigure
    water: WaterFigure
    labels: dict[str, str] = field(default_factory=dict)


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def residual_lookup(*, site: Site) -> tuple[Callable[[dt.datetime], ResidualFactor], list[str]]:
    """The residual mix of the site's zone by year; a year without one falls back to the zone's
    annual location-based factor (the GHG Protocol's last step of the hierarchy), and says so."""
    rows = {r.year: r for r in ResidualMix.objects.filter(zone_id=site.zone_id)}
    used: list[str] = []

    def at(hour: dt.datetime) -> ResidualFactor:
        row = rows.get(hour.year)
        if row is not None:
            note = (
                f"{site.zone.code} {row.year}: residual mix {row.g_per_kwh:g} g/kWh, {row.source_detail} v{row.version}"
            )
            if note not in used:
                used.append(note)
            return ResidualFactor(row.g_per_kwh, row.version)
        note = (
            f"{site.zone.code} {hour.year}: no residual mix; grid average {site.zone.annual_intensity_g_per_kwh:g} "
            f"g/kWh ({site.zone.annual_basis}) used instead"
        )
        if note not in used:
            used.append(note)
        return ResidualFactor(site.zone.annual_intensity_g_per_kwh, site.zone.version)

    return at, used


def site_instruments(*, site: Site, start: dt.datetime, end: dt.datetime) -> list[Instrument]:
    """The site's instruments whose period overlaps [start, end), for the pure rule, in id order."""
    out = []
    for inst in (
        ContractualInstrument.objects.filter(site=site, period_start__lt=end, period_end__gt=start)
        .prefetch_related("deliveries")
        .order_by("pk")
    ):
        deliveries = {d.hour: d.mwh * 1000.0 for d in inst.deliveries.all()}
        out.append(
            Instrument(
                id=inst.pk,
                energy_kwh=inst.mwh * 1000.0,
                g_per_kwh=inst.g_per_kwh,
                start=inst.period_start,
                end=inst.period_end,
                hourly_kwh=deliveries or None,
            )
        )
    return out


def _site_market(
    *, site: Site, start: dt.datetime, end: dt.datetime, accounts_in_period: dict[Hashable, dict[dt.datetime, float]]
) -> tuple[MarketBasedResult, list[str]]:
    """Run the rule over the site's hours in [start, end) and every instrument period overlapping
    it (an annual instrument is spread over its whole period). ``accounts_in_period``: energy (kWh)
    by hour of the accounts being disclosed; the rest of the site's energy is the account "rest"."""
    instruments = site_instruments(site=site, start=start, end=end)
    lo = min([start] + [i.start for i in instruments])
    hi = max([end] + [i.end for i in instruments])
    site_kwh: dict[dt.datetime, float] = defaultdict(float)
    for hour, energy_j in TeamHour.objects.filter(site=site, hour__gte=lo, hour__lt=hi).values_list("hour", "energy_j"):
        site_kwh[hour] += energy_j / J_PER_KWH
    rest: dict[dt.datetime, float] = {}
    for hour, kwh in site_kwh.items():
        disclosed = math.fsum(per_hour.get(hour, 0.0) for per_hour in accounts_in_period.values())
        rest[hour] = max(kwh - disclosed, 0.0)
    residual_at, notes = residual_lookup(site=site)
    result = market_based(
        account_kwh_by_hour={**accounts_in_period, "rest": rest}, instruments=instruments, residual_at=residual_at
    )
    return result, notes


def _grid_water(zone_ids: Iterable[int]) -> dict[int, WaterFactor]:
    return {
        w.zone_id: WaterFactor(w.l_per_kwh, w.low_l_per_kwh, w.high_l_per_kwh)
        for w in ZoneWaterIntensity.objects.filter(zone_id__in=list(zone_ids))
    }


def _wue_series(sites: Iterable[Site]) -> dict[int, list[tuple[dt.datetime, float]]]:
    out: dict[int, list[tuple[dt.datetime, float]]] = defaultdict(list)
    for site_id, valid_from, wue in SiteWue.objects.filter(site__in=[s.pk for s in sites]).values_list(
        "site_id", "valid_from", "wue_l_per_kwh"
    ):
        out[site_id].append((valid_from, wue))
    return out


def disclosure_period(*, scope: Principal, start: dt.date, end: dt.date, team_id: int | None) -> Disclosure:
    """Per scope and period [start, end) (UTC dates): location-based, market-based (with the
    matching used), upstream, embodied, energy and water. ``team_id`` narrows to one team (None:
    everything the principal sees, the fleet-overhead account included for organisation admins)."""
    if end <= start:
        raise ValueError("end must be after start")
    t0, t1 = _utc(start), _utc(end)
    q = scope.rows_q() & Q(hour__gte=t0, hour__lt=t1)
    if team_id is not None:
        q &= Q(team_id=team_id)
    rows = list(
        TeamHour.objects.filter(q).values_list(
            "site_id",
            "hour",
            "energy_j",
            "co2e_operational_g",
            "co2e_embodied_g",
            "co2e_upstream_g",
            "direct_basis_energy_j",
            "lifecycle_basis_energy_j",
            "co2_only_energy_j",
        )
    )
    energy_j = math.fsum(r[2] for r in rows)
    mix = basis_mix(
        energy_j=energy_j,
        direct_energy_j=math.fsum(r[6] for r in rows),
        lifecycle_energy_j=math.fsum(r[7] for r in rows),
        co2_only_energy_j=math.fsum(r[8] for r in rows),
    )
    by_site: dict[int, dict[dt.datetime, float]] = defaultdict(lambda: defaultdict(float))
    for site_id, hour, e, *_ in rows:
        by_site[site_id][hour] += e / J_PER_KWH
    sites = {s.pk: s for s in Site.objects.filter(pk__in=list(by_site)).select_related("zone")}

    market_g = covered = residual = 0.0
    matchings: set[str] = set()
    notes: list[str] = []
    for site_id, per_hour in sorted(by_site.items()):
        result, site_notes = _site_market(
            site=sites[site_id], start=t0, end=t1, accounts_in_period={"disclosed": dict(per_hour)}
        )
        market_g += result.by_account_g["disclosed"]
        disclosed_covered = result.by_account_covered_kwh["disclosed"]
        covered += disclosed_covered
        residual += max(math.fsum(per_hour.values()) - disclosed_covered, 0.0)
        if result.matching != "none":
            matchings.update(result.matching.split(" + "))
        notes.extend(n for n in site_notes if n not in notes)
    matching = " + ".join(m for m in ("hourly", "annual") if m in matchings) or "none"

    # Water: on-site by IT energy per hour (ledger energy less its facility lines) x the WUE of
    # the hour, off-site by all energy x grid water.
    lq = scope.rows_q() & Q(hour__gte=t0, hour__lt=t1)
    if team_id is not None:
        lq &= Q(team_id=team_id)
    facility: dict[tuple[int, dt.datetime], float] = {
        (site_id, hour): j
        for site_id, hour, j in LedgerEntry.objects.filter(lq, component="facility")
        .values("site_id", "hour")
        .annotate(j=Sum("energy_j"))
        .values_list("site_id", "hour", "j")
    }
    grid = _grid_water(s.zone_id for s in sites.values())
    series = _wue_series(sites.values())
    onsite = offsite = low = high = without_wue_kwh = 0.0
    no_wue: list[str] = []
    no_water: list[str] = []
    for site_id, per_hour in sorted(by_site.items()):
        site = sites[site_id]
        total_kwh = math.fsum(per_hour.values())
        it_by_hour = {
            hour: max(kwh - (facility.get((site_id, hour)) or 0.0) / J_PER_KWH, 0.0) for hour, kwh in per_hour.items()
        }
        on = onsite_water_l(
            it_kwh_by_hour=it_by_hour, static_wue_l_per_kwh=site.wue_l_per_kwh, series=series.get(site_id, [])
        )
        off = water_l(
            it_energy_kwh=min(math.fsum(it_by_hour.values()), total_kwh),
            total_energy_kwh=total_kwh,
            wue_l_per_kwh=None,
            grid=grid.get(site.zone_id),
        )
        if on.litres is None:
            no_wue.append(site.slug)
        without_wue_kwh += on.kwh_without_wue if on.litres is not None else 0.0
        if off.offsite_l is None and site.zone.code not in no_water:
            no_water.append(site.zone.code)
        onsite += on.litres or 0.0
        offsite += off.offsite_l or 0.0
        low += (on.litres or 0.0) + (off.offsite_low_l or 0.0)
        high += (on.litres or 0.0) + (off.offsite_high_l or 0.0)

    return Disclosure(
        start=start,
        end=end,
        team_id=team_id,
        energy_kwh=energy_j / J_PER_KWH,
        location_based_g=math.fsum(r[3] for r in rows),
        location_basis=mix,
        upstream_g=math.fsum(r[5] for r in rows),
        embodied_g=math.fsum(r[4] for r in rows),
        market=MarketFigure(
            co2e_g=market_g, matching=matching, covered_kwh=covered, residual_kwh=residual, residual_sources=notes
        ),
        water=WaterFigure(
            onsite_l=onsite,
            offsite_l=offsite,
            low_l=low,
            high_l=high,
            sites_without_wue=no_wue,
            zones_without_water=no_water,
            it_kwh_without_wue=without_wue_kwh,
        ),
        labels={
            "location_based": f"{LOCATION_LABEL}; basis: {mix.label}",
            "market_based": f"Scope 2 market-based ({matching} matching; uncovered energy at the residual mix)",
            "upstream": UPSTREAM_LABEL,
            "water": "on-site: IT energy x site WUE; off-site: all energy x grid water intensity",
        },
    )


@dataclass(frozen=True)
class JobMarketWater:
    location_based_g: float
    market_based_g: float
    market_matching: str
    residual_sources: list[str]
    upstream_g: float
    location_basis: BasisMix
    water_onsite_l: float | None
    water_offsite_l: float | None
    water_low_l: float
    water_high_l: float
    water_it_kwh_without_wue: float = 0.0


def job_market_water(*, job: Job, footprint: JobFootprint, site: Site | None = None) -> JobMarketWater:
    """A job's market-based Scope 2 (its energy's share of its site's, pro rata by hour), its
    upstream figure and basis, and its water (IT energy x WUE; all energy x grid water).
    ``site``: the job's site with its zone, when the caller has it loaded already."""
    if site is None:
        site = Site.objects.select_related("zone").get(clusters=job.cluster_id)
    hour_rows = list(JobHour.objects.filter(job=job).values_list("hour", "energy_j", "facility_energy_j"))
    hours = {h: e for h, e, _f in hour_rows}
    if hours:
        t0, t1 = min(hours), max(hours) + H
        result, notes = _site_market(
            site=site, start=t0, end=t1, accounts_in_period={"job": {h: e / J_PER_KWH for h, e in hours.items()}}
        )
        market_g, matching = result.by_account_g["job"], result.matching
    else:
        market_g, matching, notes = 0.0, "none", []
    total_kwh = footprint.energy_j / J_PER_KWH
    it_kwh = max(total_kwh - footprint.facility_energy_j / J_PER_KWH, 0.0)
    # On-site water by the hour's WUE (series, else static); the footprint's totals when the
    # hourly roll-up has no rows yet.
    it_by_hour = {h: max(e - f, 0.0) / J_PER_KWH for h, e, f in hour_rows} or {job.started_at: it_kwh}
    on = onsite_water_l(
        it_kwh_by_hour=it_by_hour, static_wue_l_per_kwh=site.wue_l_per_kwh, series=_wue_series([site])[site.pk]
    )
    grid = _grid_water([site.zone_id]).get(site.zone_id)
    off = water_l(it_energy_kwh=it_kwh, total_energy_kwh=total_kwh, wue_l_per_kwh=None, grid=grid)
    return JobMarketWater(
        location_based_g=footprint.co2e_operational_g,
        market_based_g=market_g,
        market_matching=matching,
        residual_sources=notes,
        upstream_g=footprint.co2e_upstream_g,
        location_basis=basis_mix(
            energy_j=footprint.energy_j,
            direct_energy_j=footprint.direct_basis_energy_j,
            lifecycle_energy_j=footprint.lifecycle_basis_energy_j,
            co2_only_energy_j=footprint.co2_only_energy_j,
        ),
        water_onsite_l=on.litres,
        water_offsite_l=off.offsite_l,
        water_low_l=(on.litres or 0.0) + (off.offsite_low_l or 0.0),
        water_high_l=(on.litres or 0.0) + (off.offsite_high_l or 0.0),
        water_it_kwh_without_wue=on.kwh_without_wue if on.litres is not None else 0.0,
    )
