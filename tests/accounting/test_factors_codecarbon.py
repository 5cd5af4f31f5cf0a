"""Annual zone factors from codecarbon's shipped files: units, codes, sources; load_factors."""

import csv
import io
import json

import pytest
from django.core.management import call_command

from accounting.domain.catalog import CATALOG
from accounting.domain.embodied import EMBODIED, HOST_EMBODIED
from accounting.factors import codecarbon_data as cc
from accounting.models import FactorChange, GridZone, HardwareModel

DATA = cc.codecarbon_data_dir()


@pytest.fixture(scope="module")
def zones():
    return {z.code: z for z in cc.load_codecarbon_zones()}


def test_codecarbon_is_the_pinned_release():
    assert cc.codecarbon_version() == cc.CODECARBON_VERSION_EXPECTED


def test_us_state_lbs_per_mwh_converted_to_g_per_kwh(zones):
    doc = json.loads((DATA / "private_infra/2023/usa_emissions.json").read_text())
    assert doc["_unit"]["emissions"] == "lbs/MWh"
    lbs = doc["washington"]["emissions"]
    assert zones["US-WA"].annual_intensity_g_per_kwh == lbs * 0.45359237
    assert zones["US-WA"].annual_intensity_g_per_kwh == pytest.approx(120.92092, abs=1e-5)  # 266.585 lbs/MWh
    assert zones["US-WA"].vintage == "eGRID2023"
    assert "lbs/MWh" in zones["US-WA"].source_detail
    # 50 states + DC; the national row is not a state zone.
    assert len([c for c in zones if c.startswith("US-")]) == 51


def test_countries_by_alpha2_in_g_per_kwh(zones):
    mix = json.loads((DATA / "private_infra/global_energy_mix.json").read_text())
    assert zones["FR"].annual_intensity_g_per_kwh == mix["FRA"]["carbon_intensity"]
    assert zones["DE"].annual_intensity_g_per_kwh == mix["DEU"]["carbon_intensity"]
    assert zones["DE"].vintage == str(mix["DEU"]["year"])
    assert "FRA" not in zones and "DEU" not in zones


def test_canadian_province_uses_codecarbon_fossil_conversion(zones):
    mix = json.loads((DATA / "private_infra/2023/canada_energy_mix.json").read_text())["alberta"]
    expected_g = 1000 * (
        mix["coal"] / mix["total"] * 0.995725971
        + mix["petroleum"] / mix["total"] * 0.8166885263
        + mix["naturalGas"] / mix["total"] * 0.7438415916
    )
    assert zones["CA-AB"].annual_intensity_g_per_kwh == pytest.approx(expected_g, rel=1e-12)
    assert "CA-QC" in zones and len([c for c in zones if c.startswith("CA-")]) == 13


def test_china_nordic_and_cloud_zones(zones):
    china = json.loads((DATA / "private_infra/2023/china_provincial_emissions.json").read_text())["data"]
    assert zones["CN-BJ"].annual_intensity_g_per_kwh == china["CN-BJ"]["emission_factor"]
    nordic = json.loads((DATA / "private_infra/nordic_emissions.json").read_text())["data"]
    assert zones["SE-SE1"].annual_intensity_g_per_kwh == nordic["SE1"]["emission_factor"]
    assert zones["NO-NO4"].annual_intensity_g_per_kwh == nordic["NO4"]["emission_factor"]
    # Finland is one bidding zone: the Nordic (2025) figure replaces the country mix value.
    assert zones["FI"].annual_intensity_g_per_kwh == nordic["FI"]["emission_factor"]
    raw = (DATA / "cloud/impact.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = {r["region"]: r for r in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))}
    assert zones["gcp:europe-west1"].annual_intensity_g_per_kwh == float(rows["europe-west1"]["impact"])
    assert "gcp:me-central1" in zones and "gcp:me-cenrtal1" not in zones
    assert all(len(z.source_detail) <= 300 and len(z.code) <= 64 for z in zones.values())


@pytest.mark.django_db
def test_load_factors_is_idempotent():
    out = io.StringIO()
    call_command("load_factors", "--no-progress", stdout=out)
    n_zones = len(cc.load_codecarbon_zones())
    n_hw = len(CATALOG) + len(HOST_EMBODIED)
    assert out.getvalue().splitlines() == [
        f"zones: {n_zones} created, 0 updated, 0 unchanged",
        f"hardware: {n_hw} created, 0 updated, 0 unchanged",
    ]
    wa = GridZone.objects.get(code="US-WA")
    assert (wa.source, wa.version) == ("codecarbon", 1)
    h100 = HardwareModel.objects.get(key="h100-sxm5-80gb")
    assert (h100.embodied_kg, h100.embodied_kind, h100.max_power_w) == (164.0, "lca", 700.0)
    a100 = HardwareModel.objects.get(key="a100-sxm4-80gb")
    assert a100.embodied_kg == EMBODIED["a100-sxm4-80gb"].kg
    assert HardwareModel.objects.get(key="dram-per-gb").kind == "dram"
    snapshot = list(GridZone.objects.order_by("code").values_list("code", "annual_intensity_g_per_kwh", "version"))

    out = io.StringIO()
    call_command("load_factors", "--no-progress", stdout=out)
    assert out.getvalue().splitlines() == [
        f"zones: 0 created, 0 updated, {n_zones} unchanged",
        f"hardware: 0 created, 0 updated, {n_hw} unchanged",
    ]
    assert (
        list(GridZone.objects.order_by("code").values_list("code", "annual_intensity_g_per_kwh", "version")) == snapshot
    )
    assert FactorChange.objects.count() == 0


@pytest.mark.django_db
def test_load_factors_keeps_operator_edits():
    from accounting.services.factors import hardware_update, zone_update_intensity

    call_command("load_factors", "--no-progress", stdout=io.StringIO())
    zone_update_intensity(
        zone=GridZone.objects.get(code="FR"), intensity_g_per_kwh=44.0, reason="RTE 2025 figure", user=None
    )
    hw = HardwareModel.objects.get(key="l4-24gb")
    hardware_update(
        hardware=hw,
        changes={"embodied_kg": 20.0, "embodied_source": "vendor LCA 2026"},
        reason="vendor published an LCA",
        user=None,
    )
    out = io.StringIO()
    call_command("load_factors", "--no-progress", stdout=out)
    assert "0 updated" in out.getvalue().splitlines()[0] and "0 updated" in out.getvalue().splitlines()[1]
    assert GridZone.objects.get(code="FR").annual_intensity_g_per_kwh == 44.0
    assert HardwareModel.objects.get(key="l4-24gb").embodied_kg == 20.0
