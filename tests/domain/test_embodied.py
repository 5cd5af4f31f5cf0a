"""Embodied-carbon model: ACT arithmetic, yield model, EMBODIED coverage, lifetime resolver."""

import math

import pytest

from accounting.domain import embodied as emb
from accounting.domain.catalog import CATALOG


def test_h100_sxm5_act_estimate_reproduces_hand_calculation():
    """Hand calculation, central scenario, NVIDIA H100 SXM5 80GB (embodied 2026.12-1):

    Logic die GH100: 814 mm² = 8.14 cm², TSMC 4N -> ACT 5 nm factors
        EPA 2.75 kWh/cm², GPA (430 + 225) / 2 = 327.5 g/cm² (ACT "97" default), MPA 500 g/cm²
        fab carbon per area = 583 g/kWh × 2.75 + 327.5 + 500 = 2430.75 g/cm²
        harvested yield (132 of 144 SMs enabled; SM array 0.55 of the die):
          fixed area 814 × 0.45 = 366.3 mm²: (1 + 3.663 × 0.10 / 3)^-3 = 0.7077915
          one SM 814 × 0.55 / 144 = 3.1090 mm²: good with (1 + 0.031090 × 0.10 / 3)^-3 = 0.9968974
          P(at most 12 of 144 SMs bad) = 1 - 2e-15 (0.447 bad SMs expected)
          Y = 0.7077915 (the plain model gave 0.4866556 for the whole die; ACT assumes 0.875)
        die = 8.14 × 2430.75 / 0.7077915 / 1000 = 27.9550 kg (was 40.6577)
    HBM: 80 GB × (0.42 × 1312 kg / 640 GB = 0.861 kg/GB) = 68.88 kg
    Packaging: (1 die + 6 HBM sites) × 0.150 kg = 1.05 kg
    Board/thermal/assembly: 700 W × (0.33 × 1312 / 8 / 700 kg/W) = 0.33 × 164 = 54.12 kg
    Total = 27.9550 + 68.88 + 1.05 + 54.12 = 152.0050 kg
    (NVIDIA's PCF per-GPU share is 164.0 kg, 7.9 % above; its "integrated circuits" share,
    0.25 × 1312 / 8 = 41.0 kg, also holds 1/8 of the NVSwitch chips.)
    """
    bom = emb.bom_for(CATALOG["h100-sxm5-80gb"])
    b = emb.accelerator_breakdown(bom)

    cpa = 583 * 2.75 + (430 + 225) / 2 + 500
    assert cpa == 2430.75
    fixed = (1 + 8.14 * 0.45 * 0.10 / 3) ** -3
    sm_ok = (1 + 8.14 * 0.55 / 144 * 0.10 / 3) ** -3
    repaired = sum(math.comb(144, i) * (1 - sm_ok) ** i * sm_ok ** (144 - i) for i in range(13))
    y = fixed * repaired
    assert b.yields == (pytest.approx(y, rel=1e-12),)
    assert (fixed, sm_ok, y) == (
        pytest.approx(0.7077915, abs=1e-7),
        pytest.approx(0.9968974, abs=1e-7),
        pytest.approx(0.7077915, abs=1e-7),
    )
    assert b.dies_kg == pytest.approx(8.14 * cpa / y / 1000, rel=1e-12)
    assert b.dies_kg == pytest.approx(27.9550, abs=1e-4)
    assert b.memory_kg == pytest.approx(68.88, rel=1e-12)
    assert b.packaging_kg == pytest.approx(1.05, rel=1e-12)
    assert b.board_kg == pytest.approx(54.12, rel=1e-12)
    assert emb.accelerator_estimate_kg(bom) == pytest.approx(152.0050, abs=1e-4)


def test_yield_model_and_node_mapping():
    assert emb.die_yield(area_mm2=100.0, d0_per_cm2=0.1) == pytest.approx((1 + 0.1 / 3) ** -3)
    # Bigger dies yield worse: a reticle-sized die is far below ACT's flat 0.875.
    assert emb.die_yield(area_mm2=814.0, d0_per_cm2=0.1) < 0.5 < emb.die_yield(area_mm2=100.0, d0_per_cm2=0.1)
    assert emb.die_yield(area_mm2=500.0, d0_per_cm2=0.0) == 1.0
    assert [emb.act_node_for(n) for n in (3, 4, 5, 6, 7, 12, 16, 28, 40)] == [3, 5, 5, 7, 7, 14, 20, 28, 28]
    with pytest.raises(ValueError):
        emb.act_node_for(0)
    with pytest.raises(ValueError):
        emb.die_yield(area_mm2=-1, d0_per_cm2=0.1)


def test_embodied_covers_every_catalog_key_with_ordered_ranges():
    assert set(emb.EMBODIED) == set(CATALOG)
    for key, fig in emb.EMBODIED.items():
        assert fig.low_kg <= fig.kg <= fig.high_kg, key
        assert fig.kind in ("lca", "estimate")
        assert fig.source and fig.version == emb.EMBODIED_VERSION
    h100 = emb.EMBODIED["h100-sxm5-80gb"]
    assert (h100.kind, h100.kg) == ("lca", 164.0)
    assert (h100.low_kg, h100.high_kg) == (pytest.approx(131.2, rel=1e-12), pytest.approx(196.8, rel=1e-12))
    assert emb.EMBODIED["b200-sxm-180gb"].kg == 284.25
    assert emb.EMBODIED["a100-sxm4-80gb"].kind == "estimate"
    # More memory on the same die costs more.
    assert emb.EMBODIED["a100-sxm4-80gb"].kg > emb.EMBODIED["a100-sxm4-40gb"].kg


def test_multi_die_parts_use_per_die_yield():
    mi300x = emb.bom_for(CATALOG["mi300x-192gb"])
    assert len(mi300x.dies) == 12
    assert sum(d.area_mm2 for d in mi300x.dies) == CATALOG["mi300x-192gb"].die_area_mm2
    # Splitting 1600 mm² into two dies yields better than one monolithic 1600 mm² die would.
    two = emb.logic_die_kg(area_mm2=800.0, process_node_nm=4.0) * 2
    one = emb.logic_die_kg(area_mm2=1600.0, process_node_nm=4.0)
    assert two < one


def test_host_components():
    chassis = emb.HOST_EMBODIED["chassis-gpu-server"][2]
    assert chassis.kg == pytest.approx(150.0 + 66.10 + 6.68 + 4 * 24.30 * 2.99)
    assert chassis.low_kg == pytest.approx(150.0 + 66.10 + 6.68 + 2 * 24.30 * 2.99)
    host = emb.host_embodied(cpu_count=2, dram_gb=1024, ssd_gb=0)
    cpu = emb.cpu_kg(emb.CPU_PROFILES["epyc-genoa-96c"])
    # DRAM at the Dell R740 LCA's 533 kg / 432 GB (2026.12-1; the fab-only 0.065 kg/GB is the low).
    assert host.kg == pytest.approx(2 * cpu + 1024 * 533 / 432 + chassis.kg)
    assert host.low_kg == pytest.approx(
        2 * emb.cpu_kg(emb.CPU_PROFILES["epyc-genoa-96c"], scenario=emb.LOW) + 1024 * 0.065 + chassis.low_kg
    )
    assert host.low_kg <= host.kg <= host.high_kg
    with pytest.raises(ValueError):
        emb.host_embodied(cpu_count=-1, dram_gb=0, ssd_gb=0)


def test_lifetime_resolver_precedence_and_validation():
    base = {"catalog_lifetime_years": 5.0, "catalog_expected_utilisation": 0.8}
    p = emb.resolve_lifetime(key="h100-sxm5-80gb", **base)
    assert (p.lifetime_years, p.expected_utilisation, p.source) == (5.0, 0.8, "catalog")
    overrides = {"h100-sxm5-80gb": {"lifetime_years": 4, "expected_utilisation": 0.6}}
    p = emb.resolve_lifetime(key="h100-sxm5-80gb", site_overrides=overrides, **base)
    assert (p.lifetime_years, p.expected_utilisation) == (4.0, 0.6)
    p = emb.resolve_lifetime(key="a100-sxm4-80gb", site_overrides=overrides, **base)
    assert (p.lifetime_years, p.expected_utilisation) == (5.0, 0.8)
    p = emb.resolve_lifetime(key="h100-sxm5-80gb", site_overrides=overrides, device_lifetime_years=3.0, **base)
    assert (p.lifetime_years, p.expected_utilisation) == (3.0, 0.6)
    for bad in ({"lifetime_years": 0}, {"expected_utilisation": 1.5}, {"lifetime": 4}, {"lifetime_years": "4"}):
        with pytest.raises(ValueError):
            emb.resolve_lifetime(key="k", site_overrides={"k": bad}, **base)
    with pytest.raises(ValueError):
        emb.validate_hardware_overrides({"k": 4})


def test_embodied_share_is_sci_time_share():
    policy = emb.LifetimePolicy(5.0, 0.8, "catalog")
    # 35,064 expected hours (5 × 8766 h Julian year × 0.8): 100 h of a 164 kg GPU = 164 × 100 / 35064.
    assert emb.embodied_share_kg(embodied_kg=164.0, held_h=100.0, policy=policy) == pytest.approx(164.0 * 100 / 35064)
