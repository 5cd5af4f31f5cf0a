"""Annual zone factors from codecarbon's shipped files: units, codes, sources; load_factors."""

import csv
import io
import json

import pytest
from django.core.management import call_command

from accounting.domain.catalog import CATALOG
from accounting.domain.embodied import EMBODIED, HOST_EMBODIED
from accounting.domain.water import GAL_TO_L
from accounting.factors import codecarbon_data as cc
from accounting.models import FactorChange, GridZone, HardwareModel, ZoneWaterIntensity

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
    n_water = len(cc.load_codecarbon_generation_mixes())
    assert out.getvalue().splitlines() == [
        f"zones: {n_zones} created, 0 updated, 0 unchanged",
        f"hardware: {n_hw} created, 0 updated, 0 unchanged",
        f"grid water: {n_water} created, 0 updated, 0 unchanged",
    ]
    assert ZoneWaterIntensity.objects.count() == n_water == 213
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
        f"grid water: 0 created, 0 updated, {n_water} unchanged",
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


def test_generation_mixes_cover_the_whole_generation():
    mix = json.loads((DATA / "private_infra/global_energy_mix.json").read_text())
    mixes = {m.code: m for m in cc.load_codecarbon_generation_mixes()}
    assert len(mixes) == len(mix) == 213
    fr = mixes["FR"]
    assert dict(fr.generation_twh) == {
        "coal": 2.16,
        "gas": 31.43,
        "oil": 9.71,
        "nuclear": 335.65,
        "biofuel": 9.5,
        "hydro": 53.19,
        "solar": 23.26,
        "wind": 48.61,
        "other_renewable": 0.6,  # other_renewable_exc_biofuel_TWh: biofuel is not counted twice
    }
    assert (fr.vintage, fr.source_detail) == (
        "2023",
        "codecarbon 3.3.2 data/private_infra/global_energy_mix.json [FRA] generation 2023 (TWh by source)",
    )
    for alpha3, row in mix.items():
        code = next(c for c, m in mixes.items() if f"[{alpha3}]" in m.source_detail)
        assert sum(mixes[code].generation_twh.values()) == pytest.approx(row["total_TWh"], abs=1e-9), alpha3


def _l_per_kwh(gal_per_mwh_by_tech: dict[str, float], twh: dict[str, float]) -> float:
    return sum(twh[t] * g * GAL_TO_L / 1000 for t, g in gal_per_mwh_by_tech.items()) / sum(twh.values())


# Macknick et al. 2012 consumption (gal/MWh) median, min, max as in accounting.domain.water
MEDIAN = {"coal": 687, "gas": 198, "oil": 826, "nuclear": 672, "biofuel": 553, "hydro": 4491, "solar": 1, "wind": 0}
LOW = {"coal": 480, "gas": 130, "oil": 662, "nuclear": 581, "biofuel": 480, "hydro": 1425, "solar": 0, "wind": 0}
HIGH = {"coal": 1100, "gas": 300, "oil": 1170, "nuclear": 845, "biofuel": 965, "hydro": 18000, "solar": 5, "wind": 1}


@pytest.mark.django_db
def test_load_factors_grid_water_of_the_demo_zones_exact():
    call_command("load_factors", "--no-progress", stdout=io.StringIO())
    mixes = {
        "FR": {"coal": 2.16, "gas": 31.43, "oil": 9.71, "nuclear": 335.65, "biofuel": 9.5, "hydro": 53.19,
               "solar": 23.26, "wind": 48.61, "other_renewable": 0.6},
        "DE": {"coal": 135.35, "gas": 76.0, "oil": 20.13, "nuclear": 8.75, "biofuel": 46.02, "hydro": 19.48,
               "solar": 61.56, "wind": 137.29, "other_renewable": 0.21},
        "PL": {"coal": 103.02, "gas": 14.75, "oil": 5.17, "nuclear": 0.0, "biofuel": 8.13, "hydro": 2.38,
               "solar": 12.24, "wind": 23.06, "other_renewable": 0.0},
    }  # fmt: skip
    got = {}
    for code, twh in mixes.items():
        row = ZoneWaterIntensity.objects.get(zone__code=code)
        expected = [
            _l_per_kwh({**table, "other_renewable": other}, twh)
            for table, other in ((MEDIAN, 10), (LOW, 5), (HIGH, 361))
        ]
        assert [row.l_per_kwh, row.low_l_per_kwh, row.high_l_per_kwh] == pytest.approx(expected, rel=1e-12)
        assert (row.source, row.vintage, row.version) == ("codecarbon", "2023", 1)
        got[code] = round(row.l_per_kwh, 3), round(row.low_l_per_kwh, 3), round(row.high_l_per_kwh, 3)
    # the figures docs/factors.md quotes
    assert got == {"FR": (3.574, 2.113, 9.379), "DE": (1.826, 1.073, 4.486), "PL": (2.09, 1.393, 3.916)}
    de = ZoneWaterIntensity.objects.get(zone__code="DE")
    assert de.source_detail == (
        "codecarbon 3.3.2 data/private_infra/global_energy_mix.json [DEU] generation 2023 (TWh by source) x "
        "Macknick et al. 2012 (Environ. Res. Lett. 7 045802) consumption factors, tower cooling for thermal plants "
        "[water method 2026.12-1]"
    )
    assert FactorChange.objects.count() == 0


@pytest.mark.django_db
def test_load_factors_refreshes_shipped_grid_water_audited_and_keeps_operator_rows():
    from accounting.services.instruments import zone_water_set

    call_command("load_factors", "--no-progress", stdout=io.StringIO())
    fr = ZoneWaterIntensity.objects.get(zone__code="FR")
    central = fr.l_per_kwh
    zone_water_set(
        zone=fr.zone,
        l_per_kwh=1.2,
        low_l_per_kwh=1.0,
        high_l_per_kwh=1.5,
        source="operator",
        source_detail="RTE 2025 water report",
        reason="utility figure",
    )
    # a shipped row whose figures drifted (an older release) is refreshed through the audited service
    ZoneWaterIntensity.objects.filter(zone__code="DE").update(l_per_kwh=1.5)
    out = io.StringIO()
    call_command("load_factors", "--no-progress", stdout=out)
    assert out.getvalue().splitlines()[2] == "grid water: 0 created, 1 updated, 212 unchanged"
    fr.refresh_from_db()
    assert (fr.l_per_kwh, fr.source, fr.version) == (1.2, "operator", 2)
    de = ZoneWaterIntensity.objects.get(zone__code="DE")
    assert (round(de.l_per_kwh, 6), de.version) == (1.826289, 2)
    change = FactorChange.objects.filter(factor_type="zone_water", factor_key="DE").get()
    assert (change.reason, change.before["l_per_kwh"], change.after["version"]) == (
        "load_factors: codecarbon generation mix or water method changed",
        1.5,
        2,
    )
    assert central != 1.2
