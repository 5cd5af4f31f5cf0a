"""Embodied model 2026.12-1 (issue 13): harvested yield for GPUs sold with SMs disabled, host
DRAM/SSD per GB from server LCAs instead of fab-only floors, the HBM factor checked against a
second footprint, B200 at the 180 GB HGX B200 ships, one hours-per-year constant. Exact values
computed by hand (docs/factors.md, "Embodied model 2026.12-1", quotes the same numbers)."""

from __future__ import annotations

import math
import pathlib

import pytest

from accounting.domain import embodied as emb
from accounting.domain import units
from accounting.domain.catalog import CATALOG

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_harvested_yield_by_hand_and_its_limits():
    # 100 mm² die, D0 0.1/cm², 10 units on half the die, 9 enabled:
    # fixed 50 mm²: (1 + 0.5 × 0.1 / 3)^-3; a unit 5 mm²: q = (1 + 0.05 × 0.1 / 3)^-3;
    # Y = fixed × (q^10 + 10 (1 - q) q^9).
    fixed = (1 + 0.5 * 0.1 / 3) ** -3
    q = (1 + 0.05 * 0.1 / 3) ** -3
    expected = fixed * (q**10 + 10 * (1 - q) * q**9)
    y = emb.harvested_yield(area_mm2=100.0, d0_per_cm2=0.1, units_total=10, units_enabled=9, repairable_fraction=0.5)
    assert y == pytest.approx(expected, rel=1e-12)
    assert y == pytest.approx(0.9505859, abs=1e-7)
    # No spare unit and the whole die repeated: every unit clean, as a plain die of the same area
    # would be only under Poisson; under the negative binomial the units are independent draws.
    assert emb.harvested_yield(
        area_mm2=100.0, d0_per_cm2=0.1, units_total=1, units_enabled=1, repairable_fraction=1.0
    ) == pytest.approx(emb.die_yield(area_mm2=100.0, d0_per_cm2=0.1), rel=1e-12)
    # Spares only ever help.
    plain = emb.die_yield(area_mm2=814.0, d0_per_cm2=0.1)
    harvested = emb.harvested_yield(
        area_mm2=814.0, d0_per_cm2=0.1, units_total=144, units_enabled=132, repairable_fraction=0.55
    )
    assert plain == pytest.approx(0.4866556, abs=1e-7) and harvested == pytest.approx(0.7077915, abs=1e-7)
    assert plain < harvested < 0.875  # between the plain model and ACT's flat 0.875
    for bad in ({"units_enabled": 0}, {"units_enabled": 145}, {"repairable_fraction": 0.0}):
        args = {"area_mm2": 814.0, "d0_per_cm2": 0.1, "units_total": 144, "units_enabled": 132}
        with pytest.raises(ValueError):
            emb.harvested_yield(**{"repairable_fraction": 0.55, **args, **bad})


def test_harvest_applies_where_sm_counts_are_published_and_is_said():
    a100 = emb.EMBODIED["a100-sxm4-80gb"]
    assert "harvested yield: 108 of 128 SMs enabled" in a100.source
    mi250x = emb.EMBODIED["mi250x-128gb"]
    assert "plain yield (no published full-die unit count)" in mi250x.source
    # A100 80GB: one 826 mm² N7 die harvested (108 of 128 SMs) instead of the plain yield.
    spec = CATALOG["a100-sxm4-80gb"]
    cpa = 583 * 2.15 + (350 + 200) / 2 + 500  # 2028.45 g/cm²
    fixed = (1 + 8.26 * 0.45 * 0.09 / 3) ** -3
    sm_ok = (1 + 8.26 * 0.55 / 128 * 0.09 / 3) ** -3
    y = fixed * math.fsum(math.comb(128, i) * (1 - sm_ok) ** i * sm_ok ** (128 - i) for i in range(21))
    b = emb.accelerator_breakdown(emb.bom_for(spec))
    assert b.dies_kg == pytest.approx(8.26 * cpa / y / 1000, rel=1e-12)
    assert b.dies_kg == pytest.approx(23.0082, abs=1e-4)
    assert a100.kg == pytest.approx(b.total_kg, rel=1e-12)
    assert emb.EMBODIED_VERSION == "2026.12-1"


def test_host_dram_and_ssd_per_gb_from_server_lcas():
    # Central DRAM: Dell R740 LCA, 533 kg over 432 GB; the fab-only ACT figure is the low end,
    # Boavizta's die factor at its default density the high end.
    dram = emb.HOST_EMBODIED["dram-per-gb"][2]
    assert (dram.low_kg, dram.kg, dram.high_kg) == (
        0.065,
        pytest.approx(1.2337963, abs=1e-7),
        pytest.approx(3.52, rel=1e-12),
    )
    ssd = emb.HOST_EMBODIED["ssd-per-gb"][2]
    assert (ssd.low_kg, ssd.kg, ssd.high_kg) == (
        0.010,
        pytest.approx(2.20 / 48.5, rel=1e-12),
        pytest.approx(3373 / 30720, rel=1e-12),
    )
    assert "Dell PowerEdge R740 LCA" in dram.source and "Boavizta" in ssd.source
    # The fab-only figure sat 13x below the HBM factor; the central one is now within 1.5x of it.
    assert emb.HBM_KG_PER_GB_FROM_PCF / 0.065 == pytest.approx(13.246, abs=1e-3)
    assert dram.kg / emb.HBM_KG_PER_GB_FROM_PCF == pytest.approx(1.43298, abs=1e-5)


def test_hbm_factor_checked_against_a_second_footprint():
    """The HBM factor comes from NVIDIA's HGX H100 PCF (0.861 kg/GB). Two checks, quoted in
    docs/factors.md: (1) Dell's R740 LCA, another vendor, puts server DRAM at 1.234 kg/GB, 43.3 %
    above it; (2) the whole model, HBM factor included, predicts the HGX B200 board that NVIDIA
    footprints separately (2,274 kg / 8 = 284.25 kg per GPU) at 312.83 kg: 10.06 % high."""
    assert emb.DELL_R740_DRAM_KG_PER_GB / emb.HBM_KG_PER_GB_FROM_PCF - 1 == pytest.approx(0.43298, abs=1e-5)
    b = emb.accelerator_breakdown(emb.bom_for(CATALOG["b200-sxm-180gb"]))
    # Two 800 mm² 4NP dies at the plain yield (no published full-die SM count), 180 GB HBM3E,
    # 10 packaged ICs, 1000 W board term.
    die = 8.0 * 2430.75 / ((1 + 8.0 * 0.10 / 3) ** -3) / 1000
    assert b.dies_kg == pytest.approx(2 * die, rel=1e-12)
    assert (b.memory_kg, b.packaging_kg) == (pytest.approx(180 * 0.861, rel=1e-12), pytest.approx(1.5, rel=1e-12))
    assert b.board_kg == pytest.approx(1000 * 0.33 * 1312 / 8 / 700, rel=1e-12)
    assert b.total_kg == pytest.approx(312.8344, abs=1e-4)
    assert b.total_kg / (emb.HGX_B200_PCF_KG / 8) - 1 == pytest.approx(0.10056, abs=1e-5)
    # The ledger keeps the published PCF for B200.
    assert (emb.EMBODIED["b200-sxm-180gb"].kind, emb.EMBODIED["b200-sxm-180gb"].kg) == ("lca", 284.25)


def test_b200_memory_is_what_hgx_b200_ships():
    b200 = CATALOG["b200-sxm-180gb"]
    assert (b200.key, b200.memory_gb) == ("b200-sxm-180gb", 180.0)
    assert "180 GB" in b200.sources["memory_gb"]


def test_site_override_under_the_old_b200_key_still_applies():
    old = {"b200-sxm-192gb": {"lifetime_years": 4.0}}
    policy = emb.resolve_lifetime(
        key="b200-sxm-180gb", catalog_lifetime_years=5.0, catalog_expected_utilisation=0.8, site_overrides=old
    )
    assert (policy.lifetime_years, policy.expected_utilisation, policy.source) == (
        4.0,
        0.8,
        "catalog > site lifetime_years",
    )
    both = {**old, "b200-sxm-180gb": {"lifetime_years": 6.0}}
    policy = emb.resolve_lifetime(
        key="b200-sxm-180gb", catalog_lifetime_years=5.0, catalog_expected_utilisation=0.8, site_overrides=both
    )
    assert policy.lifetime_years == 6.0  # the current key wins
    emb.validate_hardware_overrides(old)


def test_one_hours_per_year_constant_everywhere():
    # Julian year: 365.25 d x 24 h = 8766 h; no code or doc says 8760 h any more.
    assert units.HOURS_PER_YEAR == 8766.0
    offenders = []
    for folder in ("accounting", "dashboard", "workers", "telemetry", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".html", ".txt") and path.is_file():
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if ("8760" in line or "8,760" in line or "8 760" in line) and "never" not in line:
                        if "this used 8760" not in line:
                            offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []
