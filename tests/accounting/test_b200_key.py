"""The B200 catalog key names the 180 GB HGX B200 ships: ``b200-sxm-180gb``. Migration
0015_b200_key renames stored HardwareModel rows and site overrides (a FactorChange says so); the
old key ``b200-sxm-192gb`` stays accepted by the estimator and what-if API and reads as the new
one."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps

from accounting import models as m
from accounting.services.factors import hardware_load_catalog
from tests.accounting.test_whatif_api import ESTIMATE, FLEET, client_for, member_of, world  # noqa: F401
from tests.factories import HardwareModelFactory, SiteFactory

pytestmark = pytest.mark.django_db
OLD, NEW = "b200-sxm-192gb", "b200-sxm-180gb"
migration = importlib.import_module("accounting.migrations.0015_b200_key")


def _estimate(world, key):  # noqa: F811
    body = {**ESTIMATE, "device_key": key, "avg_power_w": 800}
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 200, resp.content
    return resp.json()


def test_the_old_key_is_accepted_by_the_estimator_and_reads_as_the_new_one(world):  # noqa: F811
    old, new = _estimate(world, OLD), _estimate(world, NEW)
    assert (old["footprint"]["device_key"], new["footprint"]["device_key"]) == (NEW, NEW)
    assert old == new
    # 8 x 800 W + the default 1128 W host over 10 h, PUE 1.2, 300 g/kWh
    it_j = (8 * 800 + 1128) * 36000
    assert old["footprint"]["it_energy_j"] == pytest.approx(it_j, rel=1e-12)
    assert old["footprint"]["operational_co2e_g"] == pytest.approx(it_j * 1.2 / 3.6e6 * 300, rel=1e-12)


def test_the_old_key_is_accepted_by_the_fleet_plan(world):  # noqa: F811
    client = client_for(member_of(world["team"]))
    bodies = [{**FLEET, "new_key": key, "new_embodied": {"embodied_kg": 284.25}} for key in (OLD, NEW)]
    old, new = (client.post("/api/v1/fleet-plan/", b, format="json") for b in bodies)
    assert (old.status_code, new.status_code) == (200, 200), old.content
    assert old.json() == new.json()
    assert old.json()["new_embodied_co2e_g"] == pytest.approx(8 * 284_250)


def test_an_unknown_key_is_still_refused(world):  # noqa: F811
    resp = client_for(member_of(world["team"])).post(
        "/api/v1/estimate/", {**ESTIMATE, "device_key": "b200-sxm-200gb"}, format="json"
    )
    assert resp.status_code == 400
    assert [e["field"] for e in resp.json()["errors"]] == ["device_key"]


def test_migration_renames_the_row_and_site_overrides_and_records_it():
    row = HardwareModelFactory(key=OLD, name="NVIDIA B200", embodied_kg=150.0)
    version = row.version
    site = SiteFactory(hardware_overrides={OLD: {"lifetime_years": 4}, "h100-sxm5-80gb": {"lifetime_years": 6}})
    untouched = SiteFactory(hardware_overrides={"h100-sxm5-80gb": {"expected_utilisation": 0.6}})
    migration.forward(django_apps, None)
    row.refresh_from_db()
    assert (row.key, row.embodied_kg, row.version) == (NEW, 150.0, version)
    site.refresh_from_db()
    untouched.refresh_from_db()
    assert site.hardware_overrides == {NEW: {"lifetime_years": 4}, "h100-sxm5-80gb": {"lifetime_years": 6}}
    assert untouched.hardware_overrides == {"h100-sxm5-80gb": {"expected_utilisation": 0.6}}
    change = m.FactorChange.objects.get()
    assert (change.factor_type, change.factor_key, change.before, change.after, change.recompute_status) == (
        "hardware",
        NEW,
        {"key": OLD},
        {"key": NEW},
        "none",
    )
    assert change.reason == migration.REASON
    # Run again: nothing to rename, nothing recorded.
    migration.forward(django_apps, None)
    assert (m.HardwareModel.objects.filter(key=NEW).count(), m.FactorChange.objects.count()) == (1, 1)
    # Reversed: the old key is back.
    migration.backward(django_apps, None)
    row.refresh_from_db()
    site.refresh_from_db()
    assert (row.key, site.hardware_overrides[OLD]) == (OLD, {"lifetime_years": 4})


def test_migration_leaves_both_rows_when_the_new_key_exists_already():
    old = HardwareModelFactory(key=OLD, name="old")
    new = HardwareModelFactory(key=NEW, name="new")
    migration.forward(django_apps, None)
    assert sorted(m.HardwareModel.objects.values_list("pk", "key")) == sorted([(old.pk, OLD), (new.pk, NEW)])
    assert m.FactorChange.objects.count() == 0


def test_load_factors_after_the_migration_changes_nothing_on_the_renamed_row():
    hardware_load_catalog()
    m.HardwareModel.objects.filter(key=NEW).update(key=OLD)  # the state before 0015
    migration.forward(django_apps, None)
    counts = hardware_load_catalog()
    assert (counts.created, counts.updated) == (0, 0)
    assert not m.HardwareModel.objects.filter(key=OLD).exists()
    assert m.HardwareModel.objects.get(key=NEW).memory_gb == 180.0


def test_the_service_reads_the_inventory_row_of_the_new_key_for_an_old_key():
    # The advice endpoint passes its hardware_model straight to whatif_estimate.
    from accounting.services.whatif import whatif_embodied_for, whatif_estimate

    HardwareModelFactory(key=NEW, name="NVIDIA B200", embodied_kg=300.0, embodied_low_kg=250.0, embodied_high_kg=350.0)
    assert whatif_embodied_for(device_key=OLD) == whatif_embodied_for(device_key=NEW)
    kwargs = {"device_count": 8, "pue": 1.2, "intensity_g_per_kwh": 300.0, "hours": 10.0, "avg_power_w": 800.0}
    old, new = (whatif_estimate(device_key=key, **kwargs) for key in (OLD, NEW))
    assert old == new
    assert old.footprint.device_key == NEW
    # embodied from the row: 80 device-hours x 300 kg / (5 y x 8766 h x 0.8), plus the host's share
    gpu_g = 80 * 300_000 / (5 * 8766 * 0.8)
    assert old.footprint.embodied_co2e_g - old.footprint.host_embodied_co2e_g == pytest.approx(gpu_g, rel=1e-12)
