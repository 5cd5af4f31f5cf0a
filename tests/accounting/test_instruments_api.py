"""API of market-based Scope 2 and water (issue 13): instruments (admin tokens, own
organisation), residual mixes and grid water (shared factors; admin writes, audited), the period
disclosure, and the job footprint's ``scope2`` section. Exact values from the fleet fixture's
hour (tests/accounting/test_market_water.py); a rejected request changes nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from accounting import models as m
from accounting.tokens import token_create
from tests import factories as f
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.accounting.test_market_water import JOB_J, SITE_J, _attribute

pytestmark = pytest.mark.django_db
J_PER_KWH = 3.6e6


def _client(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _post(client: Client, path: str, body: dict):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def _state():
    return (
        m.ContractualInstrument.objects.count(),
        m.InstrumentDelivery.objects.count(),
        m.ResidualMix.objects.count(),
        m.ZoneWaterIntensity.objects.count(),
        m.AuditEvent.objects.count(),
        m.FactorChange.objects.count(),
    )


@pytest.fixture
def tokens(fleet):  # noqa: F811
    host = fleet[0]
    org = host.cluster.site.org
    return {
        "admin": token_create(org=org, name="admin", scope="admin"),
        "user": token_create(org=org, name="u", scope="user", user=f.UserFactory()),
        "other": token_create(org=f.OrganizationFactory(slug="other-org"), name="x", scope="admin"),
    }


def _instrument_body(site_obj, start, **overrides):
    body = {
        "site": site_obj.slug,
        "kind": "ppa",
        "period_start": start.isoformat(),
        "period_end": (start + dt.timedelta(hours=2)).isoformat(),
        "mwh": 6e-6,
        "g_per_kwh": 20.0,
        "certificate_ids": ["PPA-7-0001"],
        "registry": "M-RETS",
        "source": "PPA-2026-7 settlement",
        "deliveries": [
            {"hour": start.isoformat(), "mwh": 1e-6},
            {"hour": (start + dt.timedelta(hours=1)).isoformat(), "mwh": 5e-6},
        ],
        "reason": "hourly PPA",
    }
    return {**body, **overrides}


def test_record_instrument_residual_and_water_then_read_both_scope2_figures(client, fleet, tokens):  # noqa: F811
    host, _gpu0, _gpu1, job, start, _secret = fleet
    site = host.cluster.site
    admin = _client(tokens["admin"].secret)
    created = _post(admin, "/api/v1/instruments/", _instrument_body(site, start))
    assert created.status_code == 201, created.content
    body = created.json()
    assert {k: body[k] for k in ("site", "kind", "mwh", "g_per_kwh", "matching", "delivery_hours", "version")} == {
        "site": site.slug,
        "kind": "ppa",
        "mwh": 6e-6,
        "g_per_kwh": 20.0,
        "matching": "hourly",
        "delivery_hours": 2,
        "version": 1,
    }
    residual = _post(
        admin,
        "/api/v1/residual-mixes/",
        {
            "zone": site.zone.code,
            "year": start.year,
            "g_per_kwh": 500.0,
            "source_detail": "AIB 2026 (test)",
            "reason": "r",
        },
    )
    assert residual.status_code == 200, residual.content
    assert residual.json() == {
        "zone": site.zone.code,
        "year": start.year,
        "g_per_kwh": 500.0,
        "gases": "co2e",
        "source": "published",
        "source_detail": "AIB 2026 (test)",
        "vintage": "",
        "version": 1,
    }
    water = _post(
        admin,
        "/api/v1/zone-water/",
        {
            "zone": site.zone.code,
            "l_per_kwh": 2.0,
            "low_l_per_kwh": 1.0,
            "high_l_per_kwh": 4.0,
            "source_detail": "Macknick et al. 2012 x mix",
            "reason": "w",
        },
    )
    assert water.status_code == 200, water.content
    m.Site.objects.filter(pk=site.pk).update(wue_l_per_kwh=1.8)
    # Every write audited with the token, as a FactorChange needing no recompute.
    events = m.AuditEvent.objects.filter(object_type__in=["instrument", "residual_mix", "zone_water"])
    assert sorted(events.values_list("object_type", "actor_token_id")) == [
        ("instrument", tokens["admin"].token.pk),
        ("residual_mix", tokens["admin"].token.pk),
        ("zone_water", tokens["admin"].token.pk),
    ]
    assert set(m.FactorChange.objects.values_list("recompute_status", flat=True)) == {"none"}

    _attribute(client, fleet)
    plain = _client(tokens["admin"].secret).get(f"/api/v1/jobs/{job.pk}/footprint/")
    assert plain.json()["scope2"] is None  # the hot path stays two queries
    fp = _client(tokens["admin"].secret).get(f"/api/v1/jobs/{job.pk}/footprint/?include=scope2").json()
    site_g = 3600.0 / J_PER_KWH * 20.0 + 8250.0 / J_PER_KWH * 500.0
    scope2 = fp["scope2"]
    assert scope2["location_based_g"] == fp["co2e"]["operational_g"] == pytest.approx(JOB_J / J_PER_KWH * 400.0)
    assert scope2["market_based_g"] == pytest.approx(site_g * JOB_J / SITE_J, rel=1e-12)
    assert scope2["market_matching"] == "hourly"
    assert (scope2["water_onsite_l"], scope2["water_offsite_l"]) == (
        pytest.approx(0.003075, rel=1e-12),
        pytest.approx(0.005125, rel=1e-12),
    )
    assert scope2["location_basis"]["label"] == "life-cycle"
    assert scope2["upstream_g"] == 0.0

    day = start.date()
    period = admin.get(f"/api/v1/disclosure/?start={day}&end={day + dt.timedelta(days=1)}")
    assert period.status_code == 200, period.content
    d = period.json()
    assert d["market_based"]["co2e_g"] == pytest.approx(site_g, rel=1e-12)
    assert d["market_based"]["matching"] == "hourly"
    assert d["location_based_g"] == pytest.approx(SITE_J / J_PER_KWH * 400.0, rel=1e-12)
    assert d["water"]["offsite_l"] == pytest.approx(SITE_J / J_PER_KWH * 2.0, rel=1e-12)
    assert d["labels"]["market_based"] == (
        "Scope 2 market-based (hourly matching; uncovered energy at the residual mix)"
    )
    team = job.team.slug
    narrowed = admin.get(f"/api/v1/disclosure/?start={day}&end={day + dt.timedelta(days=1)}&team={team}").json()
    assert (narrowed["team"], narrowed["market_based"]["co2e_g"]) == (team, scope2["market_based_g"])
    # The team's covered energy: the hour's 3600 J cover pro rata to its 9225 of 11850 J.
    assert narrowed["market_based"]["covered_kwh"] == pytest.approx(3600.0 * JOB_J / SITE_J / J_PER_KWH, rel=1e-12)
    assert narrowed["market_based"]["residual_kwh"] == pytest.approx(
        (JOB_J - 3600.0 * JOB_J / SITE_J) / J_PER_KWH, rel=1e-12
    )


def test_rejected_writes_change_nothing(fleet, tokens):  # noqa: F811
    host, *_rest, start, _secret = fleet
    site = host.cluster.site
    admin = _client(tokens["admin"].secret)
    assert _post(admin, "/api/v1/instruments/", _instrument_body(site, start)).status_code == 201
    before = _state()
    cases = [
        (_instrument_body(site, start, certificate_ids=["PPA-7-0001"]), "certificate_ids"),  # claimed already
        (_instrument_body(site, start, mwh=7e-6, certificate_ids=[]), "deliveries"),  # does not sum
        (_instrument_body(site, start, site="nowhere", certificate_ids=[]), "site"),
        (
            _instrument_body(site, start, certificate_ids=[], period_end=start.isoformat(), deliveries=[], mwh=1.0),
            "period_end",
        ),
        (
            _instrument_body(
                site,
                start,
                certificate_ids=[],
                deliveries=[{"hour": (start + dt.timedelta(hours=5)).isoformat(), "mwh": 6e-6}],
            ),
            "deliveries",
        ),
    ]
    for body, field in cases:
        response = _post(admin, "/api/v1/instruments/", body)
        assert response.status_code == 400, (field, response.content)
        assert [e["field"] for e in response.json()["errors"]] == [field], response.json()
    bad_water = {"zone": site.zone.code, "l_per_kwh": 5.0, "low_l_per_kwh": 1.0, "high_l_per_kwh": 4.0}
    response = _post(admin, "/api/v1/zone-water/", {**bad_water, "source_detail": "x", "reason": "w"})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "l_per_kwh")
    response = _post(
        admin,
        "/api/v1/residual-mixes/",
        {"zone": "XX-NOPE", "year": 2026, "g_per_kwh": 1.0, "source_detail": "x", "reason": "r"},
    )
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "zone")
    # Scopes: a user token reads shared factors but writes nothing; another org's admin cannot
    # see or withdraw this organisation's instrument.
    user = _client(tokens["user"].secret)
    assert user.get("/api/v1/residual-mixes/").status_code == 200
    assert _post(user, "/api/v1/instruments/", _instrument_body(site, start, certificate_ids=[])).status_code == 403
    other = _client(tokens["other"].secret)
    assert other.get("/api/v1/instruments/").json() == {"results": []}
    inst = m.ContractualInstrument.objects.get()
    assert other.delete(f"/api/v1/instruments/{inst.pk}/?reason=x").status_code == 404
    assert _post(other, "/api/v1/instruments/", _instrument_body(site, start, certificate_ids=[])).status_code == 400
    assert _state() == before


def test_withdraw_keeps_the_facts_and_a_revision_bumps_the_version(fleet, tokens):  # noqa: F811
    host, *_rest, start, _secret = fleet
    site = host.cluster.site
    admin = _client(tokens["admin"].secret)
    pk = _post(admin, "/api/v1/instruments/", _instrument_body(site, start)).json()["id"]
    assert admin.delete(f"/api/v1/instruments/{pk}/").status_code == 400  # a reason is required
    assert admin.delete(f"/api/v1/instruments/{pk}/?reason=entered+twice").status_code == 204
    assert not m.ContractualInstrument.objects.exists() and not m.InstrumentDelivery.objects.exists()
    change = m.FactorChange.objects.filter(factor_type="instrument", after__isnull=True).get()
    assert (change.reason, change.before["certificate_ids"], change.before["delivery_hours"]) == (
        "entered twice",
        ["PPA-7-0001"],
        2,
    )
    body = {"zone": site.zone.code, "year": 2025, "g_per_kwh": 500.0, "source_detail": "AIB 2025 v1", "reason": "a"}
    assert _post(admin, "/api/v1/residual-mixes/", body).json()["version"] == 1
    assert _post(admin, "/api/v1/residual-mixes/", body).json()["version"] == 1  # same values: unchanged
    revised = _post(admin, "/api/v1/residual-mixes/", {**body, "g_per_kwh": 510.0, "source_detail": "AIB 2025 v1.1"})
    assert revised.json()["version"] == 2
    change = m.FactorChange.objects.filter(factor_type="residual_mix").order_by("-pk").first()
    assert (change.before, change.after) == (
        {"g_per_kwh": 500.0, "source_detail": "AIB 2025 v1", "version": 1},
        {"g_per_kwh": 510.0, "source_detail": "AIB 2025 v1.1", "version": 2},
    )


def test_disclosure_query_rules(fleet, tokens):  # noqa: F811
    admin = _client(tokens["admin"].secret)
    assert admin.get("/api/v1/disclosure/?start=2026-02-01&end=2026-01-01").json()["errors"] == [
        {"field": "end", "message": "Must be after `start`."}
    ]
    assert admin.get("/api/v1/disclosure/?start=2024-01-01&end=2026-01-01").status_code == 400
    assert admin.get("/api/v1/disclosure/?start=2026-01-01&end=2026-02-01&team=nope").json()["errors"] == [
        {"field": "team", "message": "No such team visible to this token."}
    ]
    empty = admin.get("/api/v1/disclosure/?start=2020-01-01&end=2020-02-01").json()
    assert (empty["energy_kwh"], empty["market_based"]["co2e_g"], empty["market_based"]["matching"]) == (
        0.0,
        0.0,
        "none",
    )


def test_site_wue_series_admin_own_organisation_audited(fleet, tokens):  # noqa: F811
    host, *_rest, start, _secret = fleet
    site = host.cluster.site
    admin = _client(tokens["admin"].secret)
    body = {"site": site.slug, "valid_from": start.isoformat(), "wue_l_per_kwh": 2.5, "source": "meter", "reason": "r"}
    created = _post(admin, "/api/v1/site-wue/", body)
    assert created.status_code == 200, created.content
    assert {k: created.json()[k] for k in ("site", "wue_l_per_kwh", "version")} == {
        "site": site.slug,
        "wue_l_per_kwh": 2.5,
        "version": 1,
    }
    assert _post(admin, "/api/v1/site-wue/", {**body, "wue_l_per_kwh": 2.0}).json()["version"] == 2
    change = m.FactorChange.objects.filter(factor_type="site_wue").order_by("-pk").first()
    assert (change.before, change.after, change.recompute_status) == (
        {"wue_l_per_kwh": 2.5, "version": 1},
        {"wue_l_per_kwh": 2.0, "version": 2},
        "none",
    )
    assert [r["wue_l_per_kwh"] for r in admin.get("/api/v1/site-wue/").json()["results"]] == [2.0]
    before = _state(), m.SiteWue.objects.count()
    other = _client(tokens["other"].secret)
    assert other.get("/api/v1/site-wue/").json() == {"results": []}
    assert _post(other, "/api/v1/site-wue/", body).status_code == 400
    assert _post(_client(tokens["user"].secret), "/api/v1/site-wue/", body).status_code == 403
    assert _post(admin, "/api/v1/site-wue/", {**body, "wue_l_per_kwh": -1.0}).status_code == 400
    assert (_state(), m.SiteWue.objects.count()) == before
