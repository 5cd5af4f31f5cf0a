"""Market-based Scope 2 and water: contractual instruments of a site (admin tokens, own
organisation), residual mixes and grid water intensities of a zone (shared factors like grid
zones: any read scope reads them, admin tokens write them, audited with the token), and the
period disclosure (location- and market-based Scope 2, upstream, embodied, energy, water) of
what the token sees.

Views are thin: validate, resolve what the principal may touch, call the service or selector
(``accounting.services.instruments``, ``accounting.selectors.disclosure``), shape the answer.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema_view
from rest_framework import exceptions
from rest_framework.response import Response

from accounting.api import instruments_serializers as ser
from accounting.api import schema
from accounting.api.base import ApiView, field_error
from accounting.api.permissions import ADMIN_SCOPES, READ_SCOPES
from accounting.api.serializers import validated
from accounting.models import ContractualInstrument, GridZone, ResidualMix, Site, SiteWue, ZoneWaterIntensity
from accounting.selectors.access import teams_visible
from accounting.selectors.disclosure import disclosure_period
from accounting.services.instruments import (
    instrument_delete,
    instrument_record,
    residual_mix_set,
    site_wue_set,
    zone_water_set,
)

MAX_DISCLOSURE_DAYS = 366


def _zone(code: str) -> GridZone:
    zone = GridZone.objects.filter(code=code).first()
    if zone is None:
        raise field_error("zone", f"No grid zone {code!r}.")
    return zone


@extend_schema_view(**schema.INSTRUMENTS_SCHEMA)
class InstrumentCollectionView(ApiView):
    scopes = ADMIN_SCOPES

    def _own(self):
        return ContractualInstrument.objects.filter(org_id=self.principal().org_id)

    def get(self, request):
        rows = self._own().select_related("site").prefetch_related("deliveries").order_by("period_start", "pk")
        return Response({"results": ser.InstrumentSerializer(rows, many=True).data})

    def post(self, request):
        data = validated(ser.InstrumentCreateSerializer, request.data)
        site = Site.objects.filter(org_id=self.principal().org_id, slug=data["site"]).first()
        if site is None:
            raise field_error("site", f"No site {data['site']!r} in this organisation.")
        deliveries: dict = {}
        for item in data.get("deliveries") or []:
            if item["hour"] in deliveries:
                raise field_error("deliveries", f"{item['hour'].isoformat()} is given twice.")
            deliveries[item["hour"]] = item["mwh"]
        inst = instrument_record(
            site=site,
            kind=data["kind"],
            period_start=data["period_start"],
            period_end=data["period_end"],
            mwh=data["mwh"],
            g_per_kwh=data["g_per_kwh"],
            source=data["source"],
            certificate_ids=data["certificate_ids"],
            registry=data["registry"],
            deliveries_mwh=deliveries or None,
            reason=data["reason"],
            actor=self.token(),
        )
        inst = self._own().select_related("site").prefetch_related("deliveries").get(pk=inst.pk)
        return Response(ser.InstrumentSerializer(inst).data, status=201)


@extend_schema_view(**schema.INSTRUMENT_DETAIL_SCHEMA)
class InstrumentDetailView(ApiView):
    scopes = ADMIN_SCOPES

    def delete(self, request, pk: int):
        reason = validated(ser.InstrumentDeleteQuerySerializer, request.query_params.dict())["reason"]
        with transaction.atomic():
            inst = (
                ContractualInstrument.objects.select_for_update()
                .filter(org_id=self.principal().org_id, pk=pk)
                .select_related("site")
                .first()
            )
            if inst is None:
                raise exceptions.NotFound("No such instrument in this organisation.")
            instrument_delete(instrument=inst, reason=reason, actor=self.token())
        return Response(status=204)


@extend_schema_view(**schema.RESIDUAL_MIXES_SCHEMA)
class ResidualMixCollectionView(ApiView):
    scopes_by_method = {"GET": READ_SCOPES, "POST": ADMIN_SCOPES}

    def get(self, request):
        rows = ResidualMix.objects.select_related("zone").order_by("zone__code", "year")
        return Response({"results": ser.ResidualMixSerializer(rows, many=True).data})

    def post(self, request):
        data = validated(ser.ResidualMixSetSerializer, request.data)
        row = residual_mix_set(
            zone=_zone(data["zone"]),
            year=data["year"],
            g_per_kwh=data["g_per_kwh"],
            gases=data["gases"],
            source=data["source"],
            source_detail=data["source_detail"],
            vintage=data["vintage"],
            reason=data["reason"],
            actor=self.token(),
        )
        return Response(ser.ResidualMixSerializer(row).data)


@extend_schema_view(**schema.ZONE_WATER_SCHEMA)
class ZoneWaterCollectionView(ApiView):
    scopes_by_method = {"GET": READ_SCOPES, "POST": ADMIN_SCOPES}

    def get(self, request):
        rows = ZoneWaterIntensity.objects.select_related("zone").order_by("zone__code")
        return Response({"results": ser.ZoneWaterSerializer(rows, many=True).data})

    def post(self, request):
        data = validated(ser.ZoneWaterSetSerializer, request.data)
        row = zone_water_set(
            zone=_zone(data["zone"]),
            l_per_kwh=data["l_per_kwh"],
            low_l_per_kwh=data["low_l_per_kwh"],
            high_l_per_kwh=data["high_l_per_kwh"],
            source=data["source"],
            source_detail=data["source_detail"],
            vintage=data["vintage"],
            reason=data["reason"],
            actor=self.token(),
        )
        return Response(ser.ZoneWaterSerializer(row).data)


@extend_schema_view(**schema.SITE_WUE_SCHEMA)
class SiteWueCollectionView(ApiView):
    scopes = ADMIN_SCOPES

    def get(self, request):
        rows = (
            SiteWue.objects.filter(site__org_id=self.principal().org_id)
            .select_related("site")
            .order_by("site__slug", "valid_from")
        )
        return Response({"results": ser.SiteWueSerializer(rows, many=True).data})

    def post(self, request):
        data = validated(ser.SiteWueSetSerializer, request.data)
        site = Site.objects.filter(org_id=self.principal().org_id, slug=data["site"]).first()
        if site is None:
            raise field_error("site", f"No site {data['site']!r} in this organisation.")
        row = site_wue_set(
            site=site,
            valid_from=data["valid_from"],
            wue_l_per_kwh=data["wue_l_per_kwh"],
            source=data["source"],
            reason=data["reason"],
            actor=self.token(),
        )
        return Response(ser.SiteWueSerializer(row).data)


@extend_schema_view(**schema.DISCLOSURE_SCHEMA)
class DisclosureView(ApiView):
    scopes = READ_SCOPES

    def get(self, request):
        query = validated(ser.DisclosureQuerySerializer, request.query_params.dict())
        start, end = query["start"], query["end"]
        if end <= start:
            raise field_error("end", "Must be after `start`.")
        if (end - start).days > MAX_DISCLOSURE_DAYS:
            raise field_error("end", f"At most {MAX_DISCLOSURE_DAYS} days after `start`.")
        principal = self.principal()
        team_id = None
        if "team" in query:
            team_id = teams_visible(principal=principal).filter(slug=query["team"]).values_list("pk", flat=True).first()
            if team_id is None:
                raise field_error("team", "No such team visible to this token.")
        disclosure = disclosure_period(scope=principal, start=start, end=end, team_id=team_id)
        return Response(ser.DisclosureSerializer(disclosure, context={"team": query.get("team")}).data)
