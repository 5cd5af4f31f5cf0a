"""Factor writes: operator edits (versioned, with who and why), bulk loads and imports, and
the live intensity fetch run by beat.

Every change to a value the ledger uses creates a FactorChange (before/after, reason, user,
the affected period) with recompute_status="pending"; the ledger's recompute task picks those
up. A change that changes nothing records nothing and bumps no version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Min

from accounting.domain import embodied as emb
from accounting.domain.catalog import CATALOG
from accounting.factors.codecarbon_data import ZoneFactor
from accounting.factors.csv_import import HourlyRow, PueRow
from accounting.factors.electricitymaps import EMISSION_FACTOR_TYPE, ElectricityMapsClient, ProviderError
from accounting.models import (
    AuditEvent,
    FactorChange,
    FactorSource,
    GasCoverage,
    GridZone,
    HardwareModel,
    HourlyIntensity,
    IntensityBasis,
    IntensitySignal,
    Site,
    SitePue,
    SiteWue,
)
from accounting.services.audit import audit_record
from accounting.services.instruments import site_wue_set

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# A provider value older than this is not carried forward: the annual factor is the more
# honest fallback than a stale hour from a different time of day.
LAST_GOOD_MAX_AGE = timedelta(hours=6)


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "A reason is required for every factor change."})
    return reason[:500]


def _user_or_none(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _jsonable(v):
    if isinstance(v, datetime):
        return v.isoformat()
    if hasattr(v, "pk"):
        return v.pk
    return v


def _record(
    *,
    factor_type: str,
    factor_key: str,
    before,
    after,
    reason: str,
    user,
    affects_from=None,
    affects_to=None,
    recompute_status: str = "pending",
    org_id: int | None = None,
    action: str = AuditEvent.Action.FACTOR_UPDATE,
) -> FactorChange:
    """The FactorChange of one edit, and its AuditEvent beside it (``org_id``: the site's
    organisation; null for global factors: zones, hourly intensities, hardware models)."""
    audit_record(
        action=action,
        object_type=factor_type,
        object_id=factor_key,
        org=org_id,
        actor=_user_or_none(user),
        before=before,
        after=after,
        reason=reason,
    )
    return FactorChange.objects.create(
        changed_by=_user_or_none(user),
        reason=reason,
        factor_type=factor_type,
        factor_key=factor_key,
        before=before,
        after=after,
        affects_from=affects_from,
        affects_to=affects_to,
        recompute_status=recompute_status,
    )


# --- operator edits ------------------------------------------------------------------------

ZONE_EDITABLE = (
    "name",
    "annual_intensity_g_per_kwh",
    "annual_marginal_g_per_kwh",
    "annual_basis",
    "annual_gases",
    "annual_lifecycle_g_per_kwh",
    "source",
    "source_detail",
    "vintage",
)


@transaction.atomic
def zone_update(*, zone: GridZone, changes: dict, reason: str, user) -> FactorChange | None:
    """Edit a zone's annual factors. Annual factors apply to every hour without hourly data, so
    the affected period is unbounded (affects_from/to null)."""
    reason = _require_reason(reason)
    unknown = set(changes) - set(ZONE_EDITABLE)
    if unknown:
        raise ValidationError(f"not editable on a zone: {sorted(unknown)}")
    locked = GridZone.objects.select_for_update().get(pk=zone.pk)
    before = {f: getattr(locked, f) for f in changes if getattr(locked, f) != changes[f]}
    if not before:
        return None
    for f in before:
        setattr(locked, f, changes[f])
    if "source" not in changes:
        locked.source = FactorSource.OPERATOR
    locked.version += 1
    locked.full_clean()
    locked.save()
    zone.refresh_from_db()
    after = {f: getattr(locked, f) for f in before}
    return _record(
        factor_type="zone",
        factor_key=locked.code,
        before={**before, "version": locked.version - 1},
        after={**after, "version": locked.version},
        reason=reason,
        user=user,
    )


def zone_update_intensity(*, zone: GridZone, intensity_g_per_kwh: float, reason: str, user) -> FactorChange | None:
    if intensity_g_per_kwh is None or intensity_g_per_kwh < 0:
        raise ValidationError({"intensity_g_per_kwh": "must be a non-negative number"})
    return zone_update(
        zone=zone, changes={"annual_intensity_g_per_kwh": float(intensity_g_per_kwh)}, reason=reason, user=user
    )


@transaction.atomic
def site_set_pue(
    *, site: Site, pue: float, valid_from: datetime | None, source: str, reason: str, user
) -> FactorChange | None:
    """Set a site's PUE from ``valid_from`` (a SitePue row; history is kept), or, with
    ``valid_from=None``, the static Site.pue that applies before the first series row."""
    reason = _require_reason(reason)
    if pue is None or pue < 1.0:
        raise ValidationError({"pue": "PUE must be at least 1.0"})
    if not (source or "").strip():
        raise ValidationError({"source": "A source is required for a PUE value."})
    locked = Site.objects.select_for_update().get(pk=site.pk)
    series = SitePue.objects.filter(site=locked)
    before: dict[str, object] | None
    if valid_from is None:
        if locked.pue == pue and locked.pue_source == source:
            return None
        before = {"pue": locked.pue, "source": locked.pue_source, "version": locked.pue_version}
        locked.pue, locked.pue_source, locked.pue_version = float(pue), source[:300], locked.pue_version + 1
        locked.save(update_fields=["pue", "pue_source", "pue_version"])
        site.refresh_from_db()
        first = series.aggregate(m=Min("valid_from"))["m"]
        return _record(
            factor_type="pue",
            factor_key=f"{locked.org_id}/{locked.slug}",
            before=before,
            after={"pue": locked.pue, "source": locked.pue_source, "version": locked.pue_version},
            reason=reason,
            user=user,
            affects_from=None,
            affects_to=first,
            org_id=locked.org_id,
        )
    if valid_from.tzinfo is None:
        raise ValidationError({"valid_from": "must be timezone-aware (UTC)"})
    existing = series.select_for_update().filter(valid_from=valid_from).first()
    if existing is not None:
        if existing.pue == pue and existing.source == source:
            return None
        before = {"pue": existing.pue, "source": existing.source, "version": existing.version}
        existing.pue, existing.source, existing.version = float(pue), source[:300], existing.version + 1
        existing.save(update_fields=["pue", "source", "version"])
        row = existing
    else:
        before = None
        row = SitePue.objects.create(site=locked, valid_from=valid_from, pue=float(pue), source=source[:300], version=1)
    nxt = series.filter(valid_from__gt=valid_from).aggregate(m=Min("valid_from"))["m"]
    return _record(
        factor_type="pue",
        factor_key=f"{locked.org_id}/{locked.slug}@{valid_from.isoformat()}",
        before=before,
        after={"pue": row.pue, "source": row.source, "version": row.version},
        reason=reason,
        user=user,
        affects_from=valid_from,
        affects_to=nxt,
        org_id=locked.org_id,
    )


SITE_FACTOR_FIELDS = ("zone", "wue_l_per_kwh", "hardware_overrides")


@transaction.atomic
def site_update_factors(*, site: Site, changes: dict, reason: str, user) -> FactorChange | None:
    """Zone, WUE and hardware overrides of a site (PUE goes through site_set_pue)."""
    reason = _require_reason(reason)
    unknown = set(changes) - set(SITE_FACTOR_FIELDS)
    if unknown:
        raise ValidationError(f"not a site factor: {sorted(unknown)}")
    if "hardware_overrides" in changes:
        try:
            emb.validate_hardware_overrides(changes["hardware_overrides"])
        except ValueError as exc:
            raise ValidationError({"hardware_overrides": str(exc)})
    locked = Site.objects.select_for_update().get(pk=site.pk)
    before = {f: getattr(locked, f) for f in changes if getattr(locked, f) != changes[f]}
    if not before:
        return None
    for f in before:
        setattr(locked, f, changes[f])
    locked.save()
    site.refresh_from_db()
    # WUE does not enter carbon: nothing to recompute when only it changed.
    status = "none" if set(before) == {"wue_l_per_kwh"} else "pending"
    return _record(
        factor_type="site",
        factor_key=f"{locked.org_id}/{locked.slug}",
        before={f: _jsonable(v) for f, v in before.items()},
        after={f: _jsonable(getattr(locked, f)) for f in before},
        reason=reason,
        user=user,
        recompute_status=status,
        org_id=locked.org_id,
    )


HARDWARE_NOT_EDITABLE = ("id", "key", "version", "updated_at")


@transaction.atomic
def hardware_update(*, hardware: HardwareModel, changes: dict, reason: str, user) -> FactorChange | None:
    reason = _require_reason(reason)
    field_names = {f.name for f in HardwareModel._meta.concrete_fields}
    bad = set(changes) - (field_names - set(HARDWARE_NOT_EDITABLE))
    if bad:
        raise ValidationError(f"not editable on a hardware model: {sorted(bad)}")
    locked = HardwareModel.objects.select_for_update().get(pk=hardware.pk)
    before = {f: getattr(locked, f) for f in changes if getattr(locked, f) != changes[f]}
    if not before:
        return None
    for f in before:
        setattr(locked, f, changes[f])
    locked.version += 1
    locked.full_clean()
    locked.save()
    hardware.refresh_from_db()
    return _record(
        factor_type="hardware",
        factor_key=locked.key,
        before={**before, "version": locked.version - 1},
        after={**{f: getattr(locked, f) for f in before}, "version": locked.version},
        reason=reason,
        user=user,
    )


def factor_record_created(*, obj, factor_type: str, factor_key: str, after: dict, reason: str, user) -> FactorChange:
    """Audit row for a factor object created by an operator (admin add form)."""
    return _record(
        factor_type=factor_type,
        factor_key=factor_key,
        before=None,
        after={k: _jsonable(v) for k, v in after.items()},
        reason=_require_reason(reason),
        user=user,
        org_id=getattr(obj, "org_id", None) or getattr(getattr(obj, "site", None), "org_id", None),
        action=AuditEvent.Action.FACTOR_CREATE,
    )


# --- bulk loads ----------------------------------------------------------------------------


@dataclass
class LoadCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def zones_load_codecarbon(*, zones: Iterable[ZoneFactor], progress: Callable | None = None) -> LoadCounts:
    """Create codecarbon zones; refresh ones still on codecarbon data whose value moved (a new
    codecarbon release). Zones an operator or provider edited are left alone."""
    counts = LoadCounts()
    existing = {z.code: z for z in GridZone.objects.all()}
    for zf in zones:
        z = existing.get(zf.code)
        detail = zf.source_detail[:300]
        if z is None:
            GridZone.objects.create(
                code=zf.code,
                name=zf.name[:200],
                annual_intensity_g_per_kwh=zf.annual_intensity_g_per_kwh,
                annual_basis=zf.basis,
                annual_gases=zf.gases,
                annual_lifecycle_g_per_kwh=(
                    zf.annual_intensity_g_per_kwh if zf.basis == IntensityBasis.LIFECYCLE else None
                ),
                source=FactorSource.CODECARBON,
                source_detail=detail,
                vintage=zf.vintage[:40],
            )
            counts.created += 1
        elif z.source == FactorSource.CODECARBON and (
            z.annual_intensity_g_per_kwh != zf.annual_intensity_g_per_kwh
            or z.source_detail != detail
            or z.annual_basis != zf.basis
            or z.annual_gases != zf.gases
        ):
            zone_update(
                zone=z,
                changes={
                    "annual_intensity_g_per_kwh": zf.annual_intensity_g_per_kwh,
                    "annual_basis": zf.basis,
                    "annual_gases": zf.gases,
                    "annual_lifecycle_g_per_kwh": (
                        zf.annual_intensity_g_per_kwh if zf.basis == IntensityBasis.LIFECYCLE else None
                    ),
                    "source_detail": detail,
                    "vintage": zf.vintage[:40],
                    "source": FactorSource.CODECARBON,
                },
                reason="load_factors: codecarbon data changed (value, source or basis)",
                user=None,
            )
            counts.updated += 1
        else:
            counts.unchanged += 1
        if progress:
            progress(1)
    return counts


def _hardware_defaults_gpu(key: str) -> dict:
    spec = CATALOG[key]
    fig = emb.EMBODIED[key]
    life = emb.DEFAULT_LIFETIME["gpu"]
    return {
        "name": spec.name,
        "vendor": spec.vendor,
        "kind": HardwareModel.Kind.GPU,
        "match_names": list(spec.match_names),
        "idle_power_w": spec.idle_power_w,
        "max_power_w": spec.max_power_w,
        "peak_flops": dict(spec.peak_flops),
        "memory_gb": spec.memory_gb,
        "memory_bandwidth_gb_s": spec.memory_bandwidth_gb_s,
        "interconnect_gb_s": spec.interconnect_gb_s,
        "process_node_nm": spec.process_node_nm,
        "die_area_mm2": spec.die_area_mm2,
        "release_year": spec.release_year,
        "embodied_kg": fig.kg,
        "embodied_low_kg": fig.low_kg,
        "embodied_high_kg": fig.high_kg,
        "embodied_kind": fig.kind,
        "embodied_source": f"{fig.source} [embodied {fig.version}]"[:500],
        "lifetime_years": life.lifetime_years,
        "expected_utilisation": life.expected_utilisation,
        "sources": {**dict(spec.sources), "embodied": fig.source, "lifetime": life.source},
    }


def _hardware_defaults_host(key: str) -> dict:
    kind, name, fig = emb.HOST_EMBODIED[key]
    life = emb.DEFAULT_LIFETIME[kind]
    return {
        "name": name,
        "vendor": "generic",
        "kind": kind,
        "match_names": [],
        "embodied_kg": fig.kg,
        "embodied_low_kg": fig.low_kg,
        "embodied_high_kg": fig.high_kg,
        "embodied_kind": fig.kind,
        "embodied_source": f"{fig.source} [embodied {fig.version}]"[:500],
        "lifetime_years": life.lifetime_years,
        "expected_utilisation": life.expected_utilisation,
        "sources": {"embodied": fig.source, "lifetime": life.source},
    }


def hardware_catalog_keys() -> list[str]:
    return sorted(CATALOG) + sorted(emb.HOST_EMBODIED)


def hardware_load_catalog(*, progress: Callable | None = None) -> LoadCounts:
    """HardwareModel rows from CATALOG + EMBODIED (+ host components). A row whose values
    differ from the shipped ones is updated through hardware_update (versioned) only while its
    embodied_source still carries a shipped embodied version: operator edits are kept."""
    counts = LoadCounts()
    existing = {h.key: h for h in HardwareModel.objects.all()}
    for key in hardware_catalog_keys():
        values = _hardware_defaults_gpu(key) if key in CATALOG else _hardware_defaults_host(key)
        row = existing.get(key)
        if row is None:
            HardwareModel.objects.create(key=key, **values)
            counts.created += 1
        elif "[embodied " in row.embodied_source:
            changes = {f: v for f, v in values.items() if getattr(row, f) != v}
            if changes:
                hardware_update(
                    hardware=row,
                    changes=changes,
                    reason="load_factors: shipped catalog/embodied data changed",
                    user=None,
                )
                counts.updated += 1
            else:
                counts.unchanged += 1
        else:
            counts.unchanged += 1
        if progress:
            progress(1)
    return counts


# --- hourly intensity imports --------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    unknown_zones: dict[str, int] = field(default_factory=dict)
    factor_changes: list[int] = field(default_factory=list)


def intensity_import(
    *,
    rows: Sequence[HourlyRow],
    signal: str,
    source: str,
    reason: str,
    user=None,
    is_forecast: bool = False,
    batch_size: int = 2000,
    progress: Callable | None = None,
) -> ImportReport:
    """Bulk upsert hourly rows. Unchanged hours are skipped (re-importing is a no-op); changed
    hours get version + 1. Rows for zones that do not exist are counted, not created: a zone is
    a factor an operator introduces deliberately. One FactorChange per zone and chunk covers the
    span of hours inserted or changed (new hourly data replaces the annual fallback there too);
    its ``before`` keeps every replaced hour's values (intensity, life-cycle value, basis, gases,
    source, version), its ``after`` the values written, so a replaced series is never lost."""
    reason = _require_reason(reason)
    report = ImportReport()
    zones = {z.code: z for z in GridZone.objects.filter(code__in={r.zone_code for r in rows})}
    by_zone: dict[str, list[HourlyRow]] = {}
    for r in rows:
        if r.zone_code not in zones:
            report.unknown_zones[r.zone_code] = report.unknown_zones.get(r.zone_code, 0) + 1
            if progress:
                progress(1)
            continue
        by_zone.setdefault(r.zone_code, []).append(r)
    for code, zrows in by_zone.items():
        zone = zones[code]
        for i in range(0, len(zrows), batch_size):
            chunk = zrows[i : i + batch_size]
            with transaction.atomic():
                hours = [r.hour for r in chunk]
                current = {
                    h.hour: h
                    for h in HourlyIntensity.objects.select_for_update().filter(
                        zone=zone, signal=signal, is_forecast=is_forecast, hour__in=hours
                    )
                }
                objs, touched = [], []
                replaced: list[dict] = []
                written: list[dict] = []
                for r in chunk:
                    old = current.get(r.hour)
                    if (
                        old is not None
                        and old.intensity_g_per_kwh == r.intensity_g_per_kwh
                        and old.lifecycle_g_per_kwh == r.lifecycle_g_per_kwh
                        and old.basis == r.basis
                        and old.gases == r.gases
                        and old.source == source
                        and not old.is_fallback
                    ):
                        report.unchanged += 1
                        continue
                    version = 1 if old is None else old.version + 1
                    if old is None:
                        report.created += 1
                    else:
                        report.updated += 1
                        replaced.append(_hourly_values(old))
                    obj = HourlyIntensity(
                        zone=zone,
                        hour=r.hour,
                        signal=signal,
                        intensity_g_per_kwh=r.intensity_g_per_kwh,
                        basis=r.basis,
                        gases=r.gases,
                        lifecycle_g_per_kwh=r.lifecycle_g_per_kwh,
                        is_forecast=is_forecast,
                        is_fallback=False,
                        source=source,
                        version=version,
                    )
                    objs.append(obj)
                    written.append(_hourly_values(obj))
                    touched.append(r.hour)
                if objs:
                    HourlyIntensity.objects.bulk_create(
                        objs,
                        update_conflicts=True,
                        unique_fields=["zone", "signal", "hour", "is_forecast"],
                        update_fields=[
                            "intensity_g_per_kwh",
                            "basis",
                            "gases",
                            "lifecycle_g_per_kwh",
                            "is_fallback",
                            "source",
                            "version",
                            "fetched_at",
                        ],
                    )
                    if not is_forecast:
                        fc = _record(
                            factor_type="hourly_intensity",
                            factor_key=f"{code}/{signal}",
                            before={"rows": len(replaced), "hours": replaced} if replaced else None,
                            after={"rows": len(objs), "source": source, "hours": written},
                            reason=reason,
                            user=user,
                            affects_from=min(touched),
                            affects_to=max(touched) + HOUR,
                        )
                        report.factor_changes.append(fc.pk)
            if progress:
                progress(len(chunk))
    return report


def _hourly_values(row: HourlyIntensity) -> dict:
    return {
        "hour": row.hour.isoformat(),
        "intensity_g_per_kwh": row.intensity_g_per_kwh,
        "lifecycle_g_per_kwh": row.lifecycle_g_per_kwh,
        "basis": row.basis,
        "gases": row.gases,
        "source": row.source,
        "is_fallback": row.is_fallback,
        "version": row.version,
    }


@dataclass
class PueImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # SiteWue series rows from the optional wue_l_per_kwh column
    wue_created: int = 0
    wue_updated: int = 0
    wue_unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _wue_import_row(
    *, site: Site, row: PueRow, wue_l_per_kwh: float, reason: str, user, report: PueImportReport
) -> None:
    """A row's WUE becomes a SiteWue series row from the row's valid_from (audited by
    site_wue_set); the static ``Site.wue_l_per_kwh`` stays the value before the series' first row."""
    existing = SiteWue.objects.filter(site=site, valid_from=row.valid_from).first()
    saved = site_wue_set(
        site=site, valid_from=row.valid_from, wue_l_per_kwh=wue_l_per_kwh, source=row.source, reason=reason, actor=user
    )
    if existing is None:
        report.wue_created += 1
    elif saved.version != existing.version:
        report.wue_updated += 1
    else:
        report.wue_unchanged += 1


def pue_import(
    *, rows: Sequence[PueRow], org=None, reason: str, user=None, progress: Callable | None = None
) -> PueImportReport:
    """SitePue rows from parsed CSV rows (site = site slug, within ``org`` when given).
    Unknown sites are rejected per row; each good row goes through site_set_pue, and its WUE,
    when given, through site_wue_set (a SiteWue row from the same valid_from)."""
    reason = _require_reason(reason)
    report = PueImportReport()
    sites_qs = Site.objects.all() if org is None else Site.objects.filter(org=org)
    sites: dict[str, list[Site]] = {}
    for s in sites_qs:
        sites.setdefault(s.slug, []).append(s)
    for r in rows:
        matches = sites.get(r.site_slug, [])
        if len(matches) != 1:
            report.rejected.append(
                (
                    r.row,
                    f"unknown site {r.site_slug!r}"
                    if not matches
                    else f"site slug {r.site_slug!r} is ambiguous across organisations (pass --org)",
                )
            )
        else:
            site = matches[0]
            existed = SitePue.objects.filter(site=site, valid_from=r.valid_from).exists()
            change = site_set_pue(
                site=site, pue=r.pue, valid_from=r.valid_from, source=r.source, reason=reason, user=user
            )
            if change is None:
                report.unchanged += 1
            elif existed:
                report.updated += 1
            else:
                report.created += 1
            if r.wue_l_per_kwh is not None:
                _wue_import_row(
                    site=site, row=r, wue_l_per_kwh=r.wue_l_per_kwh, reason=reason, user=user, report=report
                )
        if progress:
            progress(1)
    return report


# --- live provider (beat) -----------------------------------------------------------------


def electricitymaps_client() -> ElectricityMapsClient:
    return ElectricityMapsClient(
        base_url=settings.ELECTRICITYMAPS_API_URL,
        token=settings.ELECTRICITYMAPS_API_TOKEN,
        timeout_s=settings.ELECTRICITYMAPS_TIMEOUT_S,
    )


def _zones_to_fetch() -> list[GridZone]:
    # Zones some site sits in; cloud-region pseudo-zones ("gcp:...") are not Electricity Maps zones.
    return [z for z in GridZone.objects.filter(sites__isnull=False).distinct().order_by("code") if ":" not in z.code]


def intensity_fetch_latest(*, now: datetime, client: ElectricityMapsClient | None = None) -> dict:
    """Fetch the latest hour and the forecast for every zone in use (Celery-task body, run by beat).

    Idempotent per (zone, hour): re-running upserts the same rows. On a provider failure the
    current hour gets a fallback row (is_fallback=True): the last good provider value if it is
    at most LAST_GOOD_MAX_AGE old, else the zone's annual factor. A fallback never overwrites a
    real provider value, and a later real value overwrites the fallback. Returns a JSON-able
    report."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    client = client or electricitymaps_client()
    hour_now = now.replace(minute=0, second=0, microsecond=0)
    report: dict = {
        "zones": 0,
        "fetched": 0,
        "fallback_last_good": 0,
        "fallback_annual": 0,
        "forecast_rows": 0,
        "errors": [],
    }
    if not client.token:
        report["errors"].append("ELECTRICITYMAPS_API_TOKEN is not set; using fallbacks")
    for zone in _zones_to_fetch():
        report["zones"] += 1
        try:
            if not client.token:
                raise ProviderError("config", "no API token")
            point = client.latest(zone.code)
        except ProviderError as exc:
            logger.warning("electricitymaps latest failed for %s: %s", zone.code, exc)
            report["errors"].append(f"{zone.code} latest: {exc}")
            kind = _write_fallback(zone=zone, hour=hour_now)
            if kind:
                report[f"fallback_{kind}"] += 1
        else:
            _upsert_point(zone=zone, hour=point.hour, value=point.intensity_g_per_kwh, is_forecast=False)
            report["fetched"] += 1
        if client.token:
            try:
                points = client.forecast(zone.code)
            except ProviderError as exc:
                logger.warning("electricitymaps forecast failed for %s: %s", zone.code, exc)
                report["errors"].append(f"{zone.code} forecast: {exc}")
            else:
                for p in points:
                    if p.hour >= hour_now:
                        _upsert_point(zone=zone, hour=p.hour, value=p.intensity_g_per_kwh, is_forecast=True)
                        report["forecast_rows"] += 1
    return report


def _upsert_point(*, zone: GridZone, hour: datetime, value: float, is_forecast: bool) -> None:
    with transaction.atomic():
        row = (
            HourlyIntensity.objects.select_for_update()
            .filter(zone=zone, signal=IntensitySignal.AVERAGE, hour=hour, is_forecast=is_forecast)
            .first()
        )
        if row is None:
            HourlyIntensity.objects.create(
                zone=zone,
                signal=IntensitySignal.AVERAGE,
                hour=hour,
                is_forecast=is_forecast,
                intensity_g_per_kwh=value,
                basis=EMISSION_FACTOR_TYPE,
                source=FactorSource.ELECTRICITYMAPS,
            )
            return
        if (
            row.intensity_g_per_kwh == value
            and not row.is_fallback
            and row.source == FactorSource.ELECTRICITYMAPS
            and row.basis == EMISSION_FACTOR_TYPE
        ):
            return
        replaced_fallback = row.is_fallback
        before = {
            "value": row.intensity_g_per_kwh,
            "basis": row.basis,
            "is_fallback": row.is_fallback,
            "version": row.version,
        }
        row.intensity_g_per_kwh, row.is_fallback, row.source = value, False, FactorSource.ELECTRICITYMAPS
        row.basis, row.gases, row.lifecycle_g_per_kwh = EMISSION_FACTOR_TYPE, GasCoverage.CO2E, None
        row.version += 1
        row.save()
        if not is_forecast:
            # Ledger rows for this hour may have used the fallback or an earlier provider value.
            _record(
                factor_type="hourly_intensity",
                factor_key=f"{zone.code}/average",
                before=before,
                after={"value": value, "basis": row.basis, "is_fallback": False, "version": row.version},
                reason="provider value replaced " + ("fallback" if replaced_fallback else "earlier provider value"),
                user=None,
                affects_from=hour,
                affects_to=hour + HOUR,
            )


def _write_fallback(*, zone: GridZone, hour: datetime) -> str | None:
    """Returns "last_good", "annual", or None when a real value for the hour already exists."""
    with transaction.atomic():
        row = (
            HourlyIntensity.objects.select_for_update()
            .filter(zone=zone, signal=IntensitySignal.AVERAGE, hour=hour, is_forecast=False)
            .first()
        )
        if row is not None and not row.is_fallback:
            return None
        last = (
            HourlyIntensity.objects.filter(
                zone=zone,
                signal=IntensitySignal.AVERAGE,
                is_forecast=False,
                is_fallback=False,
                hour__lt=hour,
                hour__gte=hour - LAST_GOOD_MAX_AGE,
            )
            .order_by("-hour")
            .first()
        )
        # The fallback carries the basis of the value it copies (a life-cycle annual factor stays
        # labelled life-cycle).
        if last is not None:
            value, kind, source = last.intensity_g_per_kwh, "last_good", last.source
            basis, gases, lifecycle = last.basis, last.gases, last.lifecycle_g_per_kwh
        else:
            value, kind, source = zone.annual_intensity_g_per_kwh, "annual", zone.source
            basis, gases, lifecycle = zone.annual_basis, zone.annual_gases, zone.annual_lifecycle_g_per_kwh
        if row is None:
            HourlyIntensity.objects.create(
                zone=zone,
                signal=IntensitySignal.AVERAGE,
                hour=hour,
                is_forecast=False,
                is_fallback=True,
                intensity_g_per_kwh=value,
                basis=basis,
                gases=gases,
                lifecycle_g_per_kwh=lifecycle,
                source=source,
            )
        elif row.intensity_g_per_kwh != value or row.basis != basis:
            row.intensity_g_per_kwh, row.source, row.version = value, source, row.version + 1
            row.basis, row.gases, row.lifecycle_g_per_kwh = basis, gases, lifecycle
            row.save()
    return kind
