"""Writes for market-based Scope 2 and water factors: contractual instruments (PPAs, GOs, RECs)
of a site, residual-mix factors and grid water intensities of a zone.

Each write is audited like every factor edit (a FactorChange with before/after and an
AuditEvent beside it) in its own transaction. None of these enter the ledger rows (market-based
Scope 2 and water are computed on read from the ledger's energy, accounting.selectors.disclosure),
so the FactorChange says no recompute is needed (``recompute_status="none"``): the next read uses
them. Residual mixes and grid water intensities are global, like grid zones (org null);
instruments belong to a site's organisation.

Input the rule cannot take raises ``InputError`` naming the field; a rejected call writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from accounting.domain.errors import InputError
from accounting.domain.water import WATER_METHOD_VERSION, mix_water_factor
from accounting.factors.codecarbon_data import ZoneMix
from accounting.factors.csv_import import ResidualMixRow
from accounting.models import (
    ApiToken,
    AuditEvent,
    ContractualInstrument,
    FactorChange,
    FactorSource,
    GridZone,
    InstrumentDelivery,
    ResidualMix,
    Site,
    SiteWue,
    ZoneWaterIntensity,
)
from accounting.services.audit import audit_record


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InputError("reason", "A reason is required for every factor change.")
    return reason[:500]


def _nonneg(name: str, value: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(name, "must be a finite number")
    if value < 0 or (positive and value == 0):
        raise InputError(name, "must be > 0" if positive else "must be >= 0")
    return float(value)


@transaction.atomic
def instrument_record(
    *,
    site: Site,
    kind: str,
    period_start: datetime,
    period_end: datetime,
    mwh: float,
    g_per_kwh: float,
    source: str,
    certificate_ids: Sequence[str] = (),
    registry: str = "",
    deliveries_mwh: Mapping[datetime, float] | None = None,
    reason: str,
    actor=None,
) -> ContractualInstrument:
    """Record an instrument of ``site``. With ``deliveries_mwh`` (UTC hour start -> MWh, summing
    to ``mwh``) it is matched hour by hour, otherwise over its whole period."""
    reason = _reason(reason)
    if kind not in ContractualInstrument.Kind.values:
        raise InputError("kind", f"must be one of {ContractualInstrument.Kind.values}")
    for name, value in (("period_start", period_start), ("period_end", period_end)):
        if value.tzinfo is None:
            raise InputError(name, "must be timezone-aware (UTC)")
    if period_end <= period_start:
        raise InputError("period_end", "must be after period_start")
    mwh = _nonneg("mwh", mwh, positive=True)
    g_per_kwh = _nonneg("g_per_kwh", g_per_kwh)
    if not (source or "").strip():
        raise InputError("source", "a contract or cancellation-statement reference is required")
    ids = [str(c).strip() for c in certificate_ids]
    if len(set(ids)) != len(ids) or "" in ids:
        raise InputError("certificate_ids", "certificate ids must be unique and non-empty")
    if ids:
        # A certificate is claimed once: the same id on another instrument of the organisation
        # would count the same MWh twice.
        taken = Q()
        for cid in ids:
            taken |= Q(certificate_ids__contains=[cid])
        clash = ContractualInstrument.objects.filter(taken, org_id=site.org_id).first()
        if clash is not None:
            again = sorted(set(ids) & set(clash.certificate_ids))
            raise InputError("certificate_ids", f"already claimed by instrument {clash.pk}: {', '.join(again)}")
    if deliveries_mwh:
        for hour, hour_mwh in deliveries_mwh.items():
            if hour.tzinfo is None or (hour.minute, hour.second, hour.microsecond) != (0, 0, 0):
                raise InputError("deliveries", f"{hour.isoformat()} is not the start of a UTC hour")
            if not period_start <= hour < period_end:
                raise InputError("deliveries", f"{hour.isoformat()} lies outside the instrument's period")
            _nonneg("deliveries", hour_mwh)
        if not math.isclose(math.fsum(deliveries_mwh.values()), mwh, rel_tol=1e-9):
            raise InputError(
                "deliveries", f"hourly deliveries sum to {math.fsum(deliveries_mwh.values()):g} MWh, not {mwh:g}"
            )
    inst = ContractualInstrument.objects.create(
        org_id=site.org_id,
        site=site,
        kind=kind,
        period_start=period_start,
        period_end=period_end,
        mwh=mwh,
        g_per_kwh=g_per_kwh,
        certificate_ids=ids,
        registry=registry[:200],
        source=source.strip()[:300],
    )
    if deliveries_mwh:
        InstrumentDelivery.objects.bulk_create(
            [InstrumentDelivery(instrument=inst, hour=h, mwh=float(v)) for h, v in sorted(deliveries_mwh.items())]
        )
    _audited(
        action=AuditEvent.Action.FACTOR_CREATE,
        object_type="instrument",
        object_id=str(inst.pk),
        org_id=site.org_id,
        actor=actor,
        before=None,
        after=_instrument_facts(inst, delivery_hours=len(deliveries_mwh or {})),
        reason=reason,
    )
    return inst


def _instrument_facts(inst: ContractualInstrument, *, delivery_hours: int) -> dict:
    return {
        "site": inst.site.slug,
        "kind": inst.kind,
        "period_start": inst.period_start.isoformat(),
        "period_end": inst.period_end.isoformat(),
        "mwh": inst.mwh,
        "g_per_kwh": inst.g_per_kwh,
        "certificate_ids": list(inst.certificate_ids),
        "registry": inst.registry,
        "source": inst.source,
        "matching": "hourly" if delivery_hours else "annual",
        "delivery_hours": delivery_hours,
    }


@transaction.atomic
def instrument_delete(*, instrument: ContractualInstrument, reason: str, actor=None) -> None:
    """Withdraw an instrument recorded in error; its facts stay in the audit trail (before)."""
    reason = _reason(reason)
    facts = _instrument_facts(instrument, delivery_hours=instrument.deliveries.count())
    pk, org_id = instrument.pk, instrument.org_id
    instrument.delete()
    _audited(
        action=AuditEvent.Action.FACTOR_UPDATE,
        object_type="instrument",
        object_id=str(pk),
        org_id=org_id,
        actor=actor,
        before=facts,
        after=None,
        reason=reason,
    )


def _audited(*, action: str, object_type: str, object_id: str, org_id: int | None, actor, before, after, reason: str):
    """The AuditEvent of one edit and its FactorChange beside it, as for every factor; nothing to
    recompute (these factors are read, not stored in ledger rows)."""
    user = actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) is not None else None
    audit_record(
        action=action,
        object_type=object_type,
        object_id=object_id,
        org=org_id,
        actor=actor,
        before=before,
        after=after,
        reason=reason,
    )
    FactorChange.objects.create(
        changed_by=user if not isinstance(user, ApiToken) else None,
        reason=reason,
        factor_type=object_type,
        factor_key=object_id,
        before=before,
        after=after,
        recompute_status="none",
    )


def _factor_set(
    *, model, lookup: dict, values: dict, object_type: str, object_id: str, reason: str, actor, org_id=None
):
    """Create the row of ``lookup`` or revise it (version + 1) when a value changed, audited
    either way; ``org_id``: the organisation the factor belongs to (a site's), none for a zone's."""
    reason = _reason(reason)
    row = model.objects.select_for_update().filter(**lookup).first()
    if row is None:
        row = model.objects.create(**lookup, **values)
        _audited(
            action=AuditEvent.Action.FACTOR_CREATE,
            object_type=object_type,
            object_id=object_id,
            org_id=org_id,
            actor=actor,
            before=None,
            after={**values, "version": row.version},
            reason=reason,
        )
        return row
    before = {f: getattr(row, f) for f in values if getattr(row, f) != values[f]}
    if not before:
        return row
    for f, v in values.items():
        setattr(row, f, v)
    row.version += 1
    row.save()
    _audited(
        action=AuditEvent.Action.FACTOR_UPDATE,
        object_type=object_type,
        object_id=object_id,
        org_id=org_id,
        actor=actor,
        before={**before, "version": row.version - 1},
        after={**{f: values[f] for f in before}, "version": row.version},
        reason=reason,
    )
    return row


@transaction.atomic
def residual_mix_set(
    *,
    zone: GridZone,
    year: int,
    g_per_kwh: float,
    source_detail: str,
    gases: str = "co2e",
    source: str = FactorSource.PUBLISHED,
    vintage: str = "",
    reason: str,
    actor=None,
) -> ResidualMix:
    """Create or revise (version + 1, before/after audited) a zone's residual mix for a year."""
    if not 1990 <= int(year) <= 2100:
        raise InputError("year", "must be a calendar year")
    if not (source_detail or "").strip():
        raise InputError("source_detail", "name the dataset and its release")
    if gases not in ("co2e", "co2"):
        raise InputError("gases", "must be co2e or co2")
    values = {
        "g_per_kwh": _nonneg("g_per_kwh", g_per_kwh),
        "gases": gases,
        "source": source,
        "source_detail": source_detail.strip()[:300],
        "vintage": vintage[:40],
    }
    return _factor_set(
        model=ResidualMix,
        lookup={"zone": zone, "year": int(year)},
        values=values,
        object_type="residual_mix",
        object_id=f"{zone.code}/{int(year)}",
        reason=reason,
        actor=actor,
    )


@transaction.atomic
def zone_water_set(
    *,
    zone: GridZone,
    l_per_kwh: float,
    low_l_per_kwh: float,
    high_l_per_kwh: float,
    source_detail: str,
    source: str = FactorSource.PUBLISHED,
    vintage: str = "",
    reason: str,
    actor=None,
) -> ZoneWaterIntensity:
    """Create or revise a zone's grid water intensity (L/kWh generated, with its range)."""
    central = _nonneg("l_per_kwh", l_per_kwh)
    low = _nonneg("low_l_per_kwh", low_l_per_kwh)
    high = _nonneg("high_l_per_kwh", high_l_per_kwh)
    if not low <= central <= high:
        raise InputError("l_per_kwh", "need low <= central <= high")
    values = {
        "l_per_kwh": central,
        "low_l_per_kwh": low,
        "high_l_per_kwh": high,
        "source": source,
        "source_detail": source_detail.strip()[:500],
        "vintage": vintage[:40],
    }
    return _factor_set(
        model=ZoneWaterIntensity,
        lookup={"zone": zone},
        values=values,
        object_type="zone_water",
        object_id=zone.code,
        reason=reason,
        actor=actor,
    )


@transaction.atomic
def site_wue_set(
    *, site: Site, valid_from: datetime, wue_l_per_kwh: float, source: str, reason: str, actor=None
) -> SiteWue:
    """Create or revise a row of the site's WUE series (L per kWh of IT energy from
    ``valid_from`` until the next row; ``Site.wue_l_per_kwh`` before the first)."""
    reason = _reason(reason)
    if valid_from.tzinfo is None:
        raise InputError("valid_from", "must be timezone-aware (UTC)")
    wue = _nonneg("wue_l_per_kwh", wue_l_per_kwh)
    if not (source or "").strip():
        raise InputError("source", "name where the WUE comes from (meter, utility bill, operator estimate)")
    values = {"wue_l_per_kwh": wue, "source": source.strip()[:300]}
    return _factor_set(
        model=SiteWue,
        lookup={"site": site, "valid_from": valid_from},
        values=values,
        object_type="site_wue",
        object_id=f"{site.slug}@{valid_from.isoformat()}",
        reason=reason,
        actor=actor,
        org_id=site.org_id,
    )


# --- bulk loads: load_factors (grid water) and import_residual_mix -------------------------


@dataclass
class FactorLoadReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (file line, reason)


def residual_mix_import(
    *, rows: Iterable[ResidualMixRow], reason: str, actor=None, progress: Callable | None = None
) -> FactorLoadReport:
    """Residual mixes from parsed CSV rows, each through ``residual_mix_set`` (versioned and
    audited; a row equal to the stored one changes nothing). A zone that does not exist is
    rejected per row; source is ``published``."""
    reason = _reason(reason)
    report = FactorLoadReport()
    rows = list(rows)
    zones = GridZone.objects.in_bulk({r.zone_code for r in rows}, field_name="code")
    for r in rows:
        zone = zones.get(r.zone_code)
        if zone is None:
            report.rejected.append((r.row, f"unknown zone {r.zone_code!r}"))
        else:
            before = ResidualMix.objects.filter(zone=zone, year=r.year).values_list("version", flat=True).first()
            saved = residual_mix_set(
                zone=zone,
                year=r.year,
                g_per_kwh=r.g_per_kwh,
                gases=r.gases,
                source=FactorSource.PUBLISHED,
                source_detail=r.source_detail,
                vintage=r.vintage,
                reason=reason,
                actor=actor,
            )
            if before is None:
                report.created += 1
            elif saved.version != before:
                report.updated += 1
            else:
                report.unchanged += 1
        if progress:
            progress(1)
    return report


def zone_water_load_codecarbon(*, mixes: Iterable[ZoneMix], progress: Callable | None = None) -> FactorLoadReport:
    """Grid water intensity of every country zone from its generation mix (codecarbon's global
    mix x Macknick et al. 2012 consumption factors, ``accounting.domain.water``), through
    ``zone_water_set`` once created. Rows still on this data are refreshed (audited) when the mix
    or the method moves; rows an operator entered (any other source) are left alone (counted
    unchanged); mixes of zones not loaded are skipped."""
    report = FactorLoadReport()
    mixes = list(mixes)
    zones = GridZone.objects.in_bulk({mix.code for mix in mixes}, field_name="code")
    existing = {w.zone_id: w for w in ZoneWaterIntensity.objects.filter(zone__in=zones.values())}
    for mix in mixes:
        zone = zones.get(mix.code)
        if zone is not None:
            factor = mix_water_factor(generation_twh=mix.generation_twh)
            detail = (
                f"{mix.source_detail} x Macknick et al. 2012 (Environ. Res. Lett. 7 045802) consumption factors, "
                f"tower cooling for thermal plants [water method {WATER_METHOD_VERSION}]"
            )
            row = existing.get(zone.pk)
            values = (factor.l_per_kwh, factor.low_l_per_kwh, factor.high_l_per_kwh, detail[:500], mix.vintage[:40])
            if row is not None and (
                row.source != FactorSource.CODECARBON
                or (row.l_per_kwh, row.low_l_per_kwh, row.high_l_per_kwh, row.source_detail, row.vintage) == values
            ):
                report.unchanged += 1
            elif row is None:
                # Shipped data is created like the shipped zones and hardware rows (version 1, no
                # FactorChange); every later change of it is audited.
                ZoneWaterIntensity.objects.create(
                    zone=zone,
                    l_per_kwh=factor.l_per_kwh,
                    low_l_per_kwh=factor.low_l_per_kwh,
                    high_l_per_kwh=factor.high_l_per_kwh,
                    source=FactorSource.CODECARBON,
                    source_detail=detail[:500],
                    vintage=mix.vintage[:40],
                )
                report.created += 1
            else:
                zone_water_set(
                    zone=zone,
                    l_per_kwh=factor.l_per_kwh,
                    low_l_per_kwh=factor.low_l_per_kwh,
                    high_l_per_kwh=factor.high_l_per_kwh,
                    source=FactorSource.CODECARBON,
                    source_detail=detail,
                    vintage=mix.vintage,
                    reason="load_factors: codecarbon generation mix or water method changed",
                )
                report.updated += 1
        if progress:
            progress(1)
    return report
