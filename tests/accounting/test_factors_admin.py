"""Admin pages of the market-based Scope 2 and water factors (issue 13 follow-up): contractual
instruments (with their hourly deliveries), residual mixes, grid water intensities and site WUE
series save through accounting.services.instruments, so an admin edit writes the same versioned
row, FactorChange and AuditEvent as an API edit; the service's own rules refuse bad input beside
the field; a refused edit or a non-staff user changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from accounting import models as m
from accounting.services.instruments import instrument_record, residual_mix_set
from tests.factories import GridZoneFactory, OrganizationFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db
JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)


def _state():
    return (
        m.ContractualInstrument.objects.count(),
        m.InstrumentDelivery.objects.count(),
        m.ResidualMix.objects.count(),
        m.ZoneWaterIntensity.objects.count(),
        m.SiteWue.objects.count(),
        m.AuditEvent.objects.count(),
        m.FactorChange.objects.count(),
    )


def _audit(object_type: str):
    return m.AuditEvent.objects.filter(object_type=object_type).order_by("-pk").first()


def _change(factor_type: str):
    return m.FactorChange.objects.filter(factor_type=factor_type).order_by("-pk").first()


@pytest.fixture
def staff(client):
    user = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client, user


def _mix_form(zone, **overrides):
    data = {
        "zone": str(zone.pk),
        "year": "2024",
        "g_per_kwh": "512.5",
        "gases": "co2e",
        "source": "published",
        "source_detail": "AIB European Residual Mixes 2024 v1.0",
        "vintage": "2024",
        "reason": "AIB 2024 release",
    }
    return {**data, **overrides}


def test_residual_mix_admin_add_and_change_are_versioned_and_audited(staff):
    client, user = staff
    zone = GridZoneFactory(code="DE")
    resp = client.post("/admin/accounting/residualmix/add/", _mix_form(zone))
    assert resp.status_code == 302
    row = m.ResidualMix.objects.get()
    assert (row.zone_id, row.year, row.g_per_kwh, row.version) == (zone.pk, 2024, 512.5, 1)
    event, change = _audit("residual_mix"), _change("residual_mix")
    assert (event.action, event.object_id, event.actor_user, event.reason, event.before) == (
        "factor.create",
        "DE/2024",
        user,
        "AIB 2024 release",
        None,
    )
    assert (change.factor_key, change.changed_by, change.recompute_status) == ("DE/2024", user, "none")
    assert change.after == {
        "g_per_kwh": 512.5,
        "gases": "co2e",
        "source": "published",
        "source_detail": "AIB European Residual Mixes 2024 v1.0",
        "vintage": "2024",
        "version": 1,
    }

    url = f"/admin/accounting/residualmix/{row.pk}/change/"
    # zone and year identify the row: read-only on change (a posted zone is ignored)
    other = GridZoneFactory(code="PL")
    resp = client.post(url, _mix_form(other, g_per_kwh="498.0", reason="AIB 2024 v1.1 correction"))
    assert resp.status_code == 302
    row.refresh_from_db()
    assert (row.zone_id, row.year, row.g_per_kwh, row.version) == (zone.pk, 2024, 498.0, 2)
    change = _change("residual_mix")
    assert (change.before, change.after, change.reason) == (
        {"g_per_kwh": 512.5, "version": 1},
        {"g_per_kwh": 498.0, "version": 2},
        "AIB 2024 v1.1 correction",
    )
    assert (_audit("residual_mix").action, m.ResidualMix.objects.count()) == ("factor.update", 1)


def test_residual_mix_admin_refuses_without_reason_or_by_the_service_rule(staff):
    client, _user = staff
    zone = GridZoneFactory(code="FR")
    before = _state()
    resp = client.post("/admin/accounting/residualmix/add/", _mix_form(zone, reason=""))
    assert resp.status_code == 200 and "reason" in resp.context["adminform"].form.errors
    # the service's rule (a calendar year), shown beside the field
    resp = client.post("/admin/accounting/residualmix/add/", _mix_form(zone, year="1800"))
    assert resp.context["adminform"].form.errors["year"] == ["must be a calendar year"]
    assert _state() == before


def test_zone_water_admin_change_goes_through_the_service(staff):
    client, user = staff
    zone = GridZoneFactory(code="FR")
    data = {
        "zone": str(zone.pk),
        "l_per_kwh": "1.6",
        "low_l_per_kwh": "0.8",
        "high_l_per_kwh": "2.9",
        "source": "published",
        "source_detail": "Macknick et al. 2012 by generation mix",
        "vintage": "2023",
        "reason": "grid water for FR",
    }
    assert client.post("/admin/accounting/zonewaterintensity/add/", data).status_code == 302
    row = m.ZoneWaterIntensity.objects.get()
    assert (row.l_per_kwh, row.low_l_per_kwh, row.high_l_per_kwh, row.version) == (1.6, 0.8, 2.9, 1)
    before = _state()
    bad = {**data, "l_per_kwh": "3.5", "reason": "typo"}
    resp = client.post(f"/admin/accounting/zonewaterintensity/{row.pk}/change/", bad)
    assert resp.context["adminform"].form.errors["l_per_kwh"] == ["need low <= central <= high"]
    assert _state() == before
    good = {**data, "l_per_kwh": "1.9", "reason": "2024 mix"}
    assert client.post(f"/admin/accounting/zonewaterintensity/{row.pk}/change/", good).status_code == 302
    row.refresh_from_db()
    assert (row.l_per_kwh, row.version) == (1.9, 2)
    change = _change("zone_water")
    assert (change.factor_key, change.before, change.after, change.changed_by) == (
        "FR",
        {"l_per_kwh": 1.6, "version": 1},
        {"l_per_kwh": 1.9, "version": 2},
        user,
    )
    assert (_audit("zone_water").action, _audit("zone_water").object_id) == ("factor.update", "FR")


def test_site_wue_admin_add_and_change_audited_with_the_site_org(staff):
    client, user = staff
    site = SiteFactory(slug="dc-paris")
    data = {
        "site": str(site.pk),
        "valid_from_0": "2026-01-01",
        "valid_from_1": "00:00:00",
        "wue_l_per_kwh": "1.8",
        "source": "meter W-1",
        "reason": "winter",
    }
    assert client.post("/admin/accounting/sitewue/add/", data).status_code == 302
    row = m.SiteWue.objects.get()
    assert (row.site_id, row.valid_from, row.wue_l_per_kwh, row.version) == (site.pk, JAN, 1.8, 1)
    resp = client.post(f"/admin/accounting/sitewue/{row.pk}/change/", {**data, "wue_l_per_kwh": "2.2"})
    assert resp.status_code == 302
    row.refresh_from_db()
    assert (row.wue_l_per_kwh, row.version) == (2.2, 2)
    event = _audit("site_wue")
    assert (event.action, event.object_id, event.org_id, event.actor_user) == (
        "factor.update",
        "dc-paris@2026-01-01T00:00:00+00:00",
        site.org_id,
        user,
    )
    assert (event.before, event.after) == ({"wue_l_per_kwh": 1.8, "version": 1}, {"wue_l_per_kwh": 2.2, "version": 2})
    # the site's page lists its series, read-only
    page = client.get(f"/admin/accounting/site/{site.pk}/change/")
    assert page.status_code == 200 and "meter W-1" in page.content.decode()


def _instrument_form(site, **overrides):
    data = {
        "site": str(site.pk),
        "kind": "ppa",
        "period_start_0": "2026-01-01",
        "period_start_1": "00:00:00",
        "period_end_0": "2026-02-01",
        "period_end_1": "00:00:00",
        "mwh": "1.5",
        "g_per_kwh": "0",
        "registry": "AIB hub",
        "source": "PPA contract 2026-07",
        "certificate_ids": "GO-1, GO-2\nGO-3",
        "hourly_deliveries": "2026-01-01T10:00Z,1.0\n2026-01-01T11:00:00+00:00,0.5\n",
        "reason": "signed PPA",
    }
    return {**data, **overrides}


def test_instrument_admin_records_through_the_service_with_deliveries(staff):
    client, user = staff
    site = SiteFactory(slug="dc-berlin")
    resp = client.post("/admin/accounting/contractualinstrument/add/", _instrument_form(site))
    assert resp.status_code == 302
    inst = m.ContractualInstrument.objects.get()
    assert (inst.org_id, inst.site_id, inst.kind, inst.mwh, inst.g_per_kwh, inst.certificate_ids) == (
        site.org_id,
        site.pk,
        "ppa",
        1.5,
        0.0,
        ["GO-1", "GO-2", "GO-3"],
    )
    assert list(inst.deliveries.order_by("hour").values_list("hour", "mwh")) == [
        (datetime(2026, 1, 1, 10, tzinfo=UTC), 1.0),
        (datetime(2026, 1, 1, 11, tzinfo=UTC), 0.5),
    ]
    event = _audit("instrument")
    assert (event.action, event.object_id, event.org_id, event.actor_user, event.reason) == (
        "factor.create",
        str(inst.pk),
        site.org_id,
        user,
        "signed PPA",
    )
    assert (event.after["matching"], event.after["delivery_hours"]) == ("hourly", 2)
    assert _change("instrument").after == event.after
    # the recorded instrument is read-only: its page shows it and its deliveries, a POST changes nothing
    page = client.get(f"/admin/accounting/contractualinstrument/{inst.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert ("<p>1 Jan 2026, 10 a.m.</p>" in html, "<p>1 Jan 2026, 11 a.m.</p>" in html, "<p>0.5</p>" in html) == (
        True,
        True,
        True,
    )
    before = _state()
    resp = client.post(f"/admin/accounting/contractualinstrument/{inst.pk}/change/", _instrument_form(site, mwh="9"))
    assert resp.status_code == 403
    assert client.post(f"/admin/accounting/contractualinstrument/{inst.pk}/delete/", {"post": "yes"}).status_code == 403
    inst.refresh_from_db()
    assert (inst.mwh, _state()) == (1.5, before)


def test_instrument_admin_refusals_change_nothing(staff):
    client, _user = staff
    site = SiteFactory(slug="dc-berlin")
    taken = instrument_record(
        site=site,
        kind="go",
        period_start=JAN,
        period_end=FEB,
        mwh=2.0,
        g_per_kwh=0.0,
        source="cancellation statement 17",
        certificate_ids=["GO-2"],
        reason="GOs",
    )
    before = _state()
    url = "/admin/accounting/contractualinstrument/add/"
    fresh = {"certificate_ids": "GO-9"}
    cases = [
        (_instrument_form(site, **fresh, hourly_deliveries="2026-01-01T10:00Z,1.0"), "sum to 1 MWh, not 1.5"),
        (_instrument_form(site, **fresh, hourly_deliveries="2026-01-01T10:30Z,1.5"), "not the start of a UTC hour"),
        (_instrument_form(site, **fresh, hourly_deliveries="2026-03-01T10:00Z,1.5"), "outside the instrument's period"),
        (_instrument_form(site, **fresh, hourly_deliveries="2026-01-01T10:00Z"), "line 1: expected 'hour,mwh'"),
        (_instrument_form(site, hourly_deliveries=""), f"already claimed by instrument {taken.pk}: GO-2"),
    ]
    for data, text in cases:
        resp = client.post(url, data)
        assert resp.status_code == 200
        errors = resp.context["adminform"].form.errors
        field = "certificate_ids" if "claimed" in text else "hourly_deliveries"
        assert list(errors) == [field] and text in errors[field][0], errors
    assert _state() == before


def test_non_staff_user_is_refused_and_nothing_changes(client):
    user = UserFactory(username="analyst", is_staff=False)
    client.force_login(user)
    zone = GridZoneFactory(code="PL")
    row = residual_mix_set(zone=zone, year=2024, g_per_kwh=760.0, source_detail="AIB 2024", reason="r")
    site = SiteFactory(slug="dc-warsaw", zone=zone)
    before = _state()
    posts = [
        ("/admin/accounting/residualmix/add/", _mix_form(zone, year="2023")),
        (f"/admin/accounting/residualmix/{row.pk}/change/", _mix_form(zone, g_per_kwh="1.0")),
        ("/admin/accounting/contractualinstrument/add/", _instrument_form(site)),
        ("/admin/accounting/sitewue/add/", {"site": str(site.pk), "wue_l_per_kwh": "1.0", "reason": "x"}),
    ]
    for url, data in posts:
        resp = client.post(url, data)
        assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/"), url
    assert client.get("/admin/accounting/zonewaterintensity/").status_code == 302
    row.refresh_from_db()
    assert (row.g_per_kwh, row.version, _state()) == (760.0, 1, before)


def test_staff_without_permissions_cannot_add(client):
    client.force_login(UserFactory(username="helpdesk", is_staff=True))
    zone = GridZoneFactory(code="PL")
    before = _state()
    assert client.post("/admin/accounting/residualmix/add/", _mix_form(zone)).status_code == 403
    assert _state() == before


def test_factor_admin_pages_render(staff):
    client, _user = staff
    org = OrganizationFactory()
    site = SiteFactory(org=org)
    residual_mix_set(zone=site.zone, year=2024, g_per_kwh=56.0, source_detail="AIB 2024", reason="r")
    for name in ("contractualinstrument", "residualmix", "zonewaterintensity", "sitewue"):
        assert client.get(f"/admin/accounting/{name}/").status_code == 200, name
        assert client.get(f"/admin/accounting/{name}/add/").status_code == 200, name
