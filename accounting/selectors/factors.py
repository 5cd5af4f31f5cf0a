"""Factor reads for the ledger and the methodology page.

Single lookups (``intensity_at``, ``pue_at``) and batch lookups (``intensity_lookup``,
``intensity_lookups``, ``pue_lookup``) that preload a time range in one query each and return a callable, so a ledger
run over thousands of windows issues a constant number of queries. Every value comes with its
version and source so ledger rows can record what they used.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Max, Min, Q

from accounting.domain import embodied as emb
from accounting.domain.forecast import ForecastPoint, baseline_forecast, merge_forecasts
from accounting.models import (
    GridZone,
    HardwareModel,
    Host,
    HourlyIntensity,
    IntensitySignal,
    Site,
    SitePue,
)

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class IntensityValue:
    intensity_g_per_kwh: float
    version: int
    source: str
    is_hourly: bool  # False: the zone's annual factor
    is_fallback: bool = False
    vintage: str = ""
    basis: str = ""  # IntensityBasis of intensity_g_per_kwh
    gases: str = ""  # GasCoverage
    lifecycle_g_per_kwh: float | None = None  # the life-cycle figure beside a direct one


@dataclass(frozen=True)
class PueValue:
    pue: float
    version: int
    source: str
    valid_from: datetime | None  # None: the site's static PUE


def _floor_hour(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return dt.replace(minute=0, second=0, microsecond=0)


def _annual(zone: GridZone, signal: str) -> IntensityValue | None:
    if signal == IntensitySignal.MARGINAL:
        if zone.annual_marginal_g_per_kwh is None:
            return None
        value = zone.annual_marginal_g_per_kwh
        return IntensityValue(value, zone.version, zone.source, is_hourly=False, vintage=zone.vintage)
    return IntensityValue(
        zone.annual_intensity_g_per_kwh,
        zone.version,
        zone.source,
        is_hourly=False,
        vintage=zone.vintage,
        basis=zone.annual_basis,
        gases=zone.annual_gases,
        lifecycle_g_per_kwh=zone.annual_lifecycle_g_per_kwh,
    )


def intensity_lookup(
    *, zone: GridZone, start: datetime, end: datetime, signal: str = IntensitySignal.AVERAGE
) -> Callable[[datetime], IntensityValue | None]:
    """Preload the zone's hourly series over [start, end) (one query); the callable maps any
    instant in the range to its hour's value, or to the annual factor for hours without one.
    Marginal lookups return None where neither hourly nor annual marginal data exists."""
    rows = HourlyIntensity.objects.filter(
        zone=zone, signal=signal, is_forecast=False, hour__gte=_floor_hour(start), hour__lt=end
    ).values_list(*_HOURLY_FIELDS)
    return _hourly_lookup(rows, _annual(zone, signal))


def intensity_lookups(
    *, zone: GridZone, start: datetime, end: datetime, signals: Iterable[str]
) -> dict[str, Callable[[datetime], IntensityValue | None]]:
    """``intensity_lookup`` for several signals (keyed by signal), all read with one statement
    (plain SQL: attribution reads these once per claim of batches)."""
    names = [str(signal) for signal in signals]  # a signal's value (a TextChoices member's name is not)
    by_signal: dict[str, list[tuple]] = {name: [] for name in names}
    with connection.cursor() as cursor:
        cursor.execute(_HOURLY_SQL, [zone.pk, names, _floor_hour(start), end])
        for signal, *row in cursor.fetchall():
            by_signal[signal].append(row)
    return {name: _hourly_lookup(rows, _annual(zone, name)) for name, rows in by_signal.items()}


_HOURLY_FIELDS = (
    "hour",
    "intensity_g_per_kwh",
    "version",
    "source",
    "is_fallback",
    "basis",
    "gases",
    "lifecycle_g_per_kwh",
)
_HOURLY_SQL = f"""
SELECT signal, {", ".join(_HOURLY_FIELDS)}
FROM accounting_hourlyintensity
WHERE zone_id = %s AND signal = ANY(%s) AND NOT is_forecast AND hour >= %s AND hour < %s
"""


def _hourly_lookup(rows: Iterable, annual: IntensityValue | None) -> Callable[[datetime], IntensityValue | None]:
    series = {
        h: IntensityValue(
            v, ver, src, is_hourly=True, is_fallback=fb, vintage=str(h.year), basis=b, gases=g, lifecycle_g_per_kwh=lca
        )
        for h, v, ver, src, fb, b, g, lca in rows
    }

    def lookup(at: datetime) -> IntensityValue | None:
        return series.get(_floor_hour(at), annual)

    return lookup


def intensity_at(*, zone: GridZone, hour: datetime, signal: str = IntensitySignal.AVERAGE) -> IntensityValue | None:
    h = _floor_hour(hour)
    return intensity_lookup(zone=zone, start=h, end=h + HOUR, signal=signal)(h)


# The newest row at or before the range's start, then every row inside it (valid_from is unique
# per site: sorted by it, the rows are in time order).
_PUE_SQL = """
(SELECT valid_from, pue, version, source FROM accounting_sitepue
 WHERE site_id = %(site)s AND valid_from <= %(start)s ORDER BY valid_from DESC LIMIT 1)
UNION ALL
(SELECT valid_from, pue, version, source FROM accounting_sitepue
 WHERE site_id = %(site)s AND valid_from > %(start)s AND valid_from < %(end)s)
"""


def pue_lookup(*, site: Site, start: datetime, end: datetime) -> Callable[[datetime], PueValue]:
    """Preload the PUE series that can apply in [start, end): the newest row at or before
    ``start`` plus every row inside the range (one statement); bisect per lookup."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    with connection.cursor() as cursor:
        cursor.execute(_PUE_SQL, {"site": site.pk, "start": start, "end": end})
        rows = sorted(cursor.fetchall())
    starts = [valid_from for valid_from, *_ in rows]
    static = PueValue(site.pue, site.pue_version, site.pue_source, None)

    def lookup(at: datetime) -> PueValue:
        i = bisect.bisect_right(starts, at) - 1
        if i < 0:
            return static
        valid_from, pue, version, source = rows[i]
        return PueValue(pue, version, source, valid_from)

    return lookup


def pue_at(*, site: Site, at: datetime) -> PueValue:
    """Newest SitePue at or before ``at``, else the site's static PUE."""
    return pue_lookup(site=site, start=at, end=at + timedelta(microseconds=1))(at)


def intensity_forecast(
    *, zone: GridZone, origin: datetime, horizon_h: int, history_days: int = 14
) -> list[ForecastPoint]:
    """Provider forecast where present, the declared baseline (accounting.domain.forecast)
    for the hours it does not cover."""
    start = _floor_hour(origin)
    provider = [
        ForecastPoint(h, v, "provider")
        for h, v in HourlyIntensity.objects.filter(
            zone=zone,
            signal=IntensitySignal.AVERAGE,
            is_forecast=True,
            hour__gte=start,
            hour__lt=start + horizon_h * HOUR,
        ).values_list("hour", "intensity_g_per_kwh")
    ]
    history = dict(
        HourlyIntensity.objects.filter(
            zone=zone,
            signal=IntensitySignal.AVERAGE,
            is_forecast=False,
            is_fallback=False,
            hour__gte=start - timedelta(days=history_days),
            hour__lt=start,
        ).values_list("hour", "intensity_g_per_kwh")
    )
    return merge_forecasts(provider, baseline_forecast(history, origin=start, horizon_h=horizon_h))


# --- embodied ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbodiedTerms:
    key: str
    embodied_kg: float
    low_kg: float
    high_kg: float
    kind: str
    source: str
    version: int
    lifetime_years: float
    expected_utilisation: float
    policy_source: str

    def share_kg(self, *, held_h: float) -> float:
        policy = emb.LifetimePolicy(self.lifetime_years, self.expected_utilisation, self.policy_source)
        return emb.embodied_share_kg(embodied_kg=self.embodied_kg, held_h=held_h, policy=policy)


def embodied_for_hardware(
    *,
    hardware: HardwareModel,
    site: Site | None = None,
    device_lifetime_years: float | None = None,
    quantity: float = 1.0,
) -> EmbodiedTerms:
    """Embodied figure of one catalog row (× quantity, e.g. GB for DRAM/SSD rows) with the
    lifetime/utilisation that applies at ``site``."""
    policy = emb.resolve_lifetime(
        key=hardware.key,
        catalog_lifetime_years=hardware.lifetime_years,
        catalog_expected_utilisation=hardware.expected_utilisation,
        site_overrides=site.hardware_overrides if site is not None else None,
        device_lifetime_years=device_lifetime_years,
    )
    return EmbodiedTerms(
        key=hardware.key,
        embodied_kg=hardware.embodied_kg * quantity,
        low_kg=hardware.embodied_low_kg * quantity,
        high_kg=hardware.embodied_high_kg * quantity,
        kind=hardware.embodied_kind,
        source=hardware.embodied_source,
        version=hardware.version,
        lifetime_years=policy.lifetime_years,
        expected_utilisation=policy.expected_utilisation,
        policy_source=policy.source,
    )


# Host CPU model string -> CPU profile key (first match wins); sockets per GPU server declared.
_CPU_PATTERNS = (
    (re.compile(r"epyc\s*9\d\d\d", re.I), "epyc-genoa-96c"),
    (re.compile(r"epyc\s*7\d\d2", re.I), "epyc-rome-64c"),
    (re.compile(r"xeon", re.I), "xeon-spr-56c"),
)
HOST_CPU_SOCKETS = 2


def host_cpu_profile(cpu_model: str) -> str:
    for pattern, key in _CPU_PATTERNS:
        if pattern.search(cpu_model or ""):
            return key
    return emb.DEFAULT_CPU_PROFILE


def host_component_quantities(host: Host) -> dict[str, float]:
    """HardwareModel key -> quantity of each embodied component of a GPU server."""
    return component_quantities(cpu_model=host.cpu_model, dram_gb=host.dram_gb, ssd_gb=host.ssd_gb)


def component_quantities(*, cpu_model: str, dram_gb: float, ssd_gb: float) -> dict[str, float]:
    """``host_component_quantities`` from a host's values (a row read without the model)."""
    return {
        f"cpu-{host_cpu_profile(cpu_model)}": float(HOST_CPU_SOCKETS),
        "dram-per-gb": float(dram_gb),
        "ssd-per-gb": float(ssd_gb),
        "chassis-gpu-server": 1.0,
    }


# The HardwareModel fields an embodied figure reads (``embodied_for_hardware``): readers of many
# rows load only these (the catalog's JSON fields are not decoded).
EMBODIED_FIELDS = (
    "key",
    "embodied_kg",
    "embodied_low_kg",
    "embodied_high_kg",
    "embodied_kind",
    "embodied_source",
    "version",
    "lifetime_years",
    "expected_utilisation",
)


def host_component_models(hosts: Iterable[Host]) -> dict[str, HardwareModel]:
    """The HardwareModel rows the given hosts' components need, in one query."""
    keys = {key for host in hosts for key in host_component_quantities(host)}
    return {h.key: h for h in HardwareModel.objects.filter(key__in=keys)}


def embodied_for_host(*, host: Host, components: dict[str, HardwareModel] | None = None) -> list[EmbodiedTerms]:
    """Host components (CPUs, DRAM, SSD, chassis) from the loaded HardwareModel rows, so
    operator edits and versions apply. Components whose row is missing are left out.
    ``components`` (from ``host_component_models``) saves the query when many hosts are read."""
    rows = components if components is not None else host_component_models([host])
    return embodied_for_components(quantities=host_component_quantities(host), site=host.cluster.site, components=rows)


def embodied_for_components(
    *, quantities: dict[str, float], site: Site, components: dict[str, HardwareModel]
) -> list[EmbodiedTerms]:
    """``embodied_for_host`` from a host's component quantities (``component_quantities``) and
    its site."""
    return [
        embodied_for_hardware(hardware=components[k], site=site, quantity=q)
        for k, q in quantities.items()
        if k in components and q > 0
    ]


# --- methodology page ----------------------------------------------------------------------


@dataclass(frozen=True)
class FactorRow:
    factor: str
    key: str
    value: float | None
    unit: str
    source: str
    version: int
    effective_since: datetime | None


def factors_in_use(*, org) -> list[FactorRow]:
    """Every factor the organisation's ledger draws on, for the methodology page: zone annual
    factors and hourly series of its sites, site PUE (static and series), and the hardware
    models of its devices. A handful of queries regardless of fleet size."""
    out: list[FactorRow] = []
    sites = list(Site.objects.filter(org=org).select_related("zone").order_by("slug"))
    zones = {s.zone_id: s.zone for s in sites}
    hourly = {
        r["zone_id"]: r
        for r in HourlyIntensity.objects.filter(zone_id__in=zones, is_forecast=False)
        .values("zone_id", "signal")
        .annotate(
            n=Count("id"),
            first=Min("hour"),
            last=Max("hour"),
            v=Max("version"),
            fallbacks=Count("id", filter=Q(is_fallback=True)),
        )
        if r["signal"] == IntensitySignal.AVERAGE
    }
    for z in sorted(zones.values(), key=lambda z: z.code):
        out.append(
            FactorRow(
                "grid intensity (annual)",
                z.code,
                z.annual_intensity_g_per_kwh,
                "gCO2e/kWh",
                f"{z.get_source_display()}: {z.source_detail} (vintage {z.vintage})",
                z.version,
                z.updated_at,
            )
        )
        if z.annual_marginal_g_per_kwh is not None:
            out.append(
                FactorRow(
                    "grid intensity (annual marginal)",
                    z.code,
                    z.annual_marginal_g_per_kwh,
                    "gCO2e/kWh",
                    z.get_source_display(),
                    z.version,
                    z.updated_at,
                )
            )
        h = hourly.get(z.id)
        if h:
            out.append(
                FactorRow(
                    "grid intensity (hourly series)",
                    z.code,
                    None,
                    "gCO2e/kWh",
                    f"{h['n']} hours {h['first']:%Y-%m-%d}..{h['last']:%Y-%m-%d}, {h['fallbacks']} fallback",
                    h["v"],
                    h["first"],
                )
            )
    series: dict[int, list[SitePue]] = {}
    for p in SitePue.objects.filter(site__in=sites).order_by("site_id", "valid_from"):
        series.setdefault(p.site_id, []).append(p)
    for s in sites:
        out.append(FactorRow("PUE (static)", s.slug, s.pue, "ratio", s.pue_source, s.pue_version, None))
        for p in series.get(s.id, []):
            out.append(FactorRow("PUE (series)", s.slug, p.pue, "ratio", p.source, p.version, p.valid_from))
        if s.wue_l_per_kwh is not None:
            out.append(FactorRow("WUE", s.slug, s.wue_l_per_kwh, "L/kWh", "operator", s.pue_version, None))
    models = HardwareModel.objects.filter(device__host__cluster__site__in=sites).distinct().order_by("key")
    for hw in models:
        out.append(
            FactorRow(
                "embodied carbon",
                hw.key,
                hw.embodied_kg,
                "kgCO2e",
                f"{hw.get_embodied_kind_display()}: {hw.embodied_source} "
                f"(range {hw.embodied_low_kg:.1f}-{hw.embodied_high_kg:.1f})",
                hw.version,
                hw.updated_at,
            )
        )
        out.append(
            FactorRow(
                "lifetime",
                hw.key,
                hw.lifetime_years,
                "years",
                "catalog default (site overrides apply)",
                hw.version,
                hw.updated_at,
            )
        )
        out.append(
            FactorRow(
                "expected utilisation",
                hw.key,
                hw.expected_utilisation,
                "fraction",
                "catalog default (site overrides apply)",
                hw.version,
                hw.updated_at,
            )
        )
    return out
