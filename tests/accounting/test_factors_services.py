"""Operator factor edits: versioned, audited (who, why, affected period), no-ops record nothing;
selectors for the methodology page and embodied terms; the admin change form needs a reason."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from accounting.models import FactorChange, GridZone, HardwareModel, SitePue
from accounting.selectors.factors import embodied_for_hardware, embodied_for_host, factors_in_use, pue_at
from accounting.services.factors import (
    hardware_load_catalog,
    hardware_update,
    site_set_pue,
    site_update_factors,
    zone_update_intensity,
)
from tests.factories import DeviceFactory, GridZoneFactory, HardwareModelFactory, HostFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db
JAN = datetime(2026, 1, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)


def test_zone_update_intensity_versions_and_audits():
    user = UserFactory()
    zone = GridZoneFactory(code="PL", annual_intensity_g_per_kwh=700.0, source="codecarbon")
    fc = zone_update_intensity(zone=zone, intensity_g_per_kwh=650.5, reason="PSE 2025 annual report", user=user)
    zone.refresh_from_db()
    assert (zone.annual_intensity_g_per_kwh, zone.version, zone.source) == (650.5, 2, "operator")
    assert (fc.factor_type, fc.factor_key, fc.changed_by, fc.reason, fc.recompute_status) == (
        "zone",
        "PL",
        user,
        "PSE 2025 annual report",
        "pending",
    )
    assert fc.before == {"annual_intensity_g_per_kwh": 700.0, "version": 1}
    assert fc.after == {"annual_intensity_g_per_kwh": 650.5, "version": 2}
    assert (fc.affects_from, fc.affects_to) == (None, None)
    assert zone_update_intensity(zone=zone, intensity_g_per_kwh=650.5, reason="again", user=user) is None
    assert FactorChange.objects.count() == 1


def test_reason_required_and_rejected_change_changes_nothing():
    zone = GridZoneFactory(code="PL", annual_intensity_g_per_kwh=700.0)
    for bad in ("", "   "):
        with pytest.raises(ValidationError):
            zone_update_intensity(zone=zone, intensity_g_per_kwh=1.0, reason=bad, user=None)
    with pytest.raises(ValidationError):
        zone_update_intensity(zone=zone, intensity_g_per_kwh=-1.0, reason="typo", user=None)
    zone.refresh_from_db()
    assert (zone.annual_intensity_g_per_kwh, zone.version) == (700.0, 1)
    assert not FactorChange.objects.exists()


def test_site_set_pue_keeps_history_and_bounds_affected_period():
    site = SiteFactory(pue=1.5)
    fc_mar = site_set_pue(site=site, pue=1.3, valid_from=MAR, source="BMS", reason="new chillers", user=None)
    fc_jan = site_set_pue(site=site, pue=1.4, valid_from=JAN, source="BMS", reason="backfill", user=None)
    assert (fc_mar.affects_from, fc_mar.affects_to) == (MAR, None)
    assert (fc_jan.affects_from, fc_jan.affects_to) == (JAN, MAR)
    fc_fix = site_set_pue(site=site, pue=1.35, valid_from=JAN, source="BMS audited", reason="audit", user=None)
    assert fc_fix.before == {"pue": 1.4, "source": "BMS", "version": 1}
    assert list(SitePue.objects.filter(site=site).order_by("valid_from").values_list("pue", "version")) == [
        (1.35, 2),
        (1.3, 1),
    ]
    v = pue_at(site=site, at=datetime(2026, 2, 10, tzinfo=UTC))
    assert (v.pue, v.version, v.source) == (1.35, 2, "BMS audited")
    static = site_set_pue(site=site, pue=1.45, valid_from=None, source="design PUE", reason="baseline", user=None)
    site.refresh_from_db()
    assert (site.pue, site.pue_version, static.affects_to) == (1.45, 2, JAN)
    with pytest.raises(ValidationError):
        site_set_pue(site=site, pue=0.9, valid_from=MAR, source="x", reason="typo", user=None)


def test_hardware_update_validates_and_versions():
    hw = HardwareModelFactory(key="t4-16gb", embodied_kg=19.0, embodied_low_kg=13.0, embodied_high_kg=27.0)
    fc = hardware_update(
        hardware=hw,
        changes={"lifetime_years": 6.0, "expected_utilisation": 0.7},
        reason="inference fleet runs longer",
        user=None,
    )
    hw.refresh_from_db()
    assert (hw.lifetime_years, hw.expected_utilisation, hw.version) == (6.0, 0.7, 2)
    assert fc.after == {"lifetime_years": 6.0, "expected_utilisation": 0.7, "version": 2}
    with pytest.raises(ValidationError):
        hardware_update(hardware=hw, changes={"embodied_kg": 50.0}, reason="outside its own range", user=None)
    with pytest.raises(ValidationError):
        hardware_update(hardware=hw, changes={"key": "other"}, reason="rename", user=None)
    hw.refresh_from_db()
    assert (hw.embodied_kg, hw.version) == (19.0, 2)


def test_site_overrides_validated_and_applied_to_embodied_terms():
    hardware_load_catalog()
    h100 = HardwareModel.objects.get(key="h100-sxm5-80gb")
    device = DeviceFactory(hardware_model=h100)
    site = device.host.cluster.site
    with pytest.raises(ValidationError):
        site_update_factors(
            site=site,
            changes={"hardware_overrides": {"h100-sxm5-80gb": {"lifetime_years": -1}}},
            reason="typo",
            user=None,
        )
    site_update_factors(
        site=site,
        changes={"hardware_overrides": {"h100-sxm5-80gb": {"lifetime_years": 4}}},
        reason="refresh cycle is 4 years",
        user=None,
    )
    device.refresh_from_db()
    terms = embodied_for_hardware(
        hardware=device.hardware_model, site=device.host.cluster.site, device_lifetime_years=device.lifetime_years
    )
    assert (terms.embodied_kg, terms.lifetime_years, terms.expected_utilisation) == (164.0, 4.0, 0.8)
    assert terms.share_kg(held_h=100.0) == pytest.approx(164.0 * 100 / (4 * 8766 * 0.8))
    host = HostFactory(cpu_model="AMD EPYC 9654 96-Core Processor", dram_gb=2048, ssd_gb=7680)
    parts = {t.key: t for t in embodied_for_host(host=host)}
    assert set(parts) == {"cpu-epyc-genoa-96c", "dram-per-gb", "ssd-per-gb", "chassis-gpu-server"}
    # Embodied 2026.12-1: DRAM at the Dell R740 LCA's 533 kg / 432 GB, not the fab-only 0.065 kg/GB.
    assert parts["dram-per-gb"].embodied_kg == pytest.approx(2048 * 533 / 432)
    assert parts["ssd-per-gb"].embodied_kg == pytest.approx(7680 * 2.20 / 48.5)


def test_factors_in_use_lists_zone_pue_and_hardware():
    zone = GridZoneFactory(code="SE-SE3", annual_intensity_g_per_kwh=27.0, vintage="2025")
    hw = HardwareModelFactory()
    device = DeviceFactory(hardware_model=hw, host__cluster__site__zone=zone, host__cluster__site__pue=1.2)
    site = device.host.cluster.site
    site_set_pue(site=site, pue=1.15, valid_from=MAR, source="BMS", reason="measured", user=None)
    rows = factors_in_use(org=site.org)
    table = [(r.factor, r.key, r.value, r.unit, r.version) for r in rows]
    assert table == [
        ("grid intensity (annual)", "SE-SE3", 27.0, "gCO2e/kWh", 1),
        ("PUE (static)", site.slug, 1.2, "ratio", 1),
        ("PUE (series)", site.slug, 1.15, "ratio", 1),
        ("embodied carbon", hw.key, 150.0, "kgCO2e", 1),
        ("lifetime", hw.key, 5.0, "years", 1),
        ("expected utilisation", hw.key, 0.8, "fraction", 1),
    ]
    assert rows[2].effective_since == MAR


def test_admin_change_requires_reason_and_goes_through_service(admin_client):
    zone = GridZoneFactory(code="PL", annual_intensity_g_per_kwh=700.0)
    url = f"/admin/accounting/gridzone/{zone.pk}/change/"
    data = {
        "name": zone.name,
        "annual_intensity_g_per_kwh": "650",
        "annual_marginal_g_per_kwh": "",
        "source": "operator",
        "source_detail": "",
        "vintage": "2025",
    }
    resp = admin_client.post(url, {**data, "reason": ""})
    assert resp.status_code == 200 and "reason" in resp.context["adminform"].form.errors
    zone.refresh_from_db()
    assert (zone.annual_intensity_g_per_kwh, zone.version) == (700.0, 1)
    resp = admin_client.post(url, {**data, "reason": "annual update"})
    assert resp.status_code == 302
    zone.refresh_from_db()
    assert (zone.annual_intensity_g_per_kwh, zone.version) == (650.0, 2)
    fc = FactorChange.objects.get()
    assert (fc.reason, fc.changed_by.is_superuser) == ("annual update", True)
    assert GridZone.objects.count() == 1
