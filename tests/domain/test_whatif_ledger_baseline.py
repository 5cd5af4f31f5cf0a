"""Projection of a measured job: a power cap slows it along the power-cap curve, and the
baseline is the job's ledger footprint (rebase_on_ledger)."""

import dataclasses

import pytest

from accounting.domain.errors import InputError
from accounting.domain.whatif import (
    CapRun,
    CarbonContext,
    EmbodiedPolicy,
    LedgerTotals,
    MeasuredJob,
    project_hardware,
    rebase_on_ledger,
)

C450 = CarbonContext(pue=1.5, intensity_g_per_kwh=450.0)
A100 = EmbodiedPolicy(
    embodied_kg=100.0, embodied_low_kg=80.0, embodied_high_kg=120.0, lifetime_h=5 * 8760.0, expected_utilisation=0.8
)
H100 = EmbodiedPolicy(
    embodied_kg=150.0, embodied_low_kg=100.0, embodied_high_kg=200.0, lifetime_h=5 * 8760.0, expected_utilisation=0.8
)
GPU_EMB_G = 40 * 100_000 / (5 * 8760 * 0.8)  # 40 A100-hours
LEDGER = LedgerTotals(
    gpu_energy_j=43.2e6,
    host_energy_j=20.304e6,
    facility_energy_j=31.752e6,
    energy_j=95.256e6,
    operational_co2e_g=11907.0,
    embodied_co2e_g=GPU_EMB_G + 600.0,
    co2e_low_g=11000.0,
    co2e_high_g=13500.0,
)


def job(**kw):
    base = dict(
        device_key="a100-sxm4-80gb",
        device_count=4,
        runtime_s=36000.0,
        gpu_energy_j=43.2e6,  # 300 W per GPU
        family="llm",
        kind="training",
        precision="bf16",
        avg_util=0.9,
        units={"tokens": 1e9},
    )
    base.update(kw)
    return MeasuredJob(**base)


def test_a_cap_below_the_draw_slows_the_job_along_the_power_cap_curve():
    free = project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450)
    capped = project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450, target_power_cap_w=200.0)
    assert free.projected.runtime_s == pytest.approx(36000.0, rel=1e-12)
    # same device: compute share of runtime 0.9 × 0.70, memory 0.9 × 0.15, at (300/200)^α
    cs, ms = 0.9 * 0.70, 0.9 * 0.15
    slow = cs * (200 / 300) ** -0.5 + ms * (200 / 300) ** -0.05 + (1 - cs - ms)
    assert capped.projected.runtime_s == pytest.approx(36000.0 * slow, rel=1e-12)
    assert capped.projected.avg_power_w == pytest.approx(200.0, rel=1e-12)
    assert capped.projected.it_energy_j == pytest.approx(200.0 * 4 * 36000.0 * slow, rel=1e-12)
    assert capped.speedup == pytest.approx(1 / slow, rel=1e-12)
    assert any("slows × " in n for n in capped.assumptions)


def test_an_h100_at_100_w_or_350_w_runs_longer_than_uncapped():
    free = project_hardware(job=job(), target_key="h100-sxm5-80gb", carbon=C450)
    at_350 = project_hardware(job=job(), target_key="h100-sxm5-80gb", carbon=C450, target_power_cap_w=350.0)
    at_100 = project_hardware(job=job(), target_key="h100-sxm5-80gb", carbon=C450, target_power_cap_w=100.0)
    assert free.projected.runtime_s < at_350.projected.runtime_s < at_100.projected.runtime_s
    assert at_350.projected.avg_power_w == pytest.approx(350.0) and at_100.projected.avg_power_w == pytest.approx(100.0)


def test_a_cap_above_the_draw_does_not_bind():
    free = project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450)
    loose = project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450, target_power_cap_w=350.0)
    assert loose.projected.runtime_s == free.projected.runtime_s
    assert loose.projected.it_energy_j == free.projected.it_energy_j
    assert any("does not bind" in n for n in loose.assumptions)


def test_the_cap_exponent_is_fitted_from_runs_under_different_caps():
    # one job at 400 W took 10 h, at 200 W 12 h: with compute share 0.63, (12/10 − 0.37)/0.63 = 2^α
    runs = [
        CapRun(job_key="bert", cap_w=400.0, runtime_s=36000.0),
        CapRun(job_key="bert", cap_w=200.0, runtime_s=43200.0),
    ]
    import math

    alpha = math.log((1.2 - (1 - 0.63)) / 0.63) / math.log(2.0)
    capped = project_hardware(
        job=job(), target_key="a100-sxm4-80gb", carbon=C450, target_power_cap_w=200.0, cap_runs=runs
    )
    cs, ms = 0.9 * 0.70, 0.9 * 0.15
    slow = cs * (200 / 300) ** -alpha + ms * (200 / 300) ** -0.05 + (1 - cs - ms)
    assert capped.projected.runtime_s == pytest.approx(36000.0 * slow, rel=1e-12)
    assert any("fitted from 1 jobs" in n for n in capped.assumptions)


def test_a_scenario_that_changes_nothing_equals_the_ledger():
    r = rebase_on_ledger(
        projection=project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450, source_embodied=A100),
        ledger=LEDGER,
        source_embodied=A100,
        target_embodied=A100,
    )
    b, p = r.baseline, r.projected
    assert b.total_energy_j == 95.256e6 and b.it_energy_j == 43.2e6 + 20.304e6
    assert b.operational_co2e_g == 11907.0 and b.embodied_co2e_g == GPU_EMB_G + 600.0
    assert b.co2e_g == 11907.0 + GPU_EMB_G + 600.0 and (b.co2e_low_g, b.co2e_high_g) == (11000.0, 13500.0)
    assert b.pue == pytest.approx(1.5, rel=1e-12) and b.intensity_g_per_kwh == pytest.approx(450.0, rel=1e-12)
    assert b.host_energy_j == 20.304e6 and b.host_embodied_co2e_g == pytest.approx(600.0, rel=1e-12)
    for f in (
        "runtime_s",
        "it_energy_j",
        "facility_energy_j",
        "total_energy_j",
        "operational_co2e_g",
        "embodied_co2e_g",
        "co2e_g",
        "host_energy_j",
    ):
        assert getattr(p, f) == pytest.approx(getattr(b, f), rel=1e-9), f
    assert r.co2e_change_g == pytest.approx(0.0, abs=1e-6)
    assert b.co2e_per_unit_g == {"tokens": b.co2e_g / 1e9}


def test_the_projection_changes_only_what_the_scenario_changes():
    engine = project_hardware(job=job(), target_key="h100-sxm5-80gb", carbon=C450, source_embodied=A100)
    r = rebase_on_ledger(projection=engine, ledger=LEDGER, source_embodied=A100, target_embodied=H100)
    p = r.projected
    dh = 4 * engine.projected.runtime_s / 3600
    assert p.runtime_s == engine.projected.runtime_s
    assert p.host_energy_j == pytest.approx(20.304e6 * dh / 40, rel=1e-12)
    assert p.it_energy_j == pytest.approx(engine.projected.it_energy_j + 20.304e6 * dh / 40, rel=1e-12)
    assert p.facility_energy_j == pytest.approx(0.5 * p.it_energy_j, rel=1e-12)
    assert p.operational_co2e_g == pytest.approx(p.total_energy_j / 3.6e6 * 450.0, rel=1e-12)
    assert p.embodied_co2e_g == pytest.approx(600.0 * dh / 40 + dh * 150_000 / (5 * 8760 * 0.8), rel=1e-12)
    assert r.co2e_change_g == pytest.approx(p.co2e_g - r.baseline.co2e_g, rel=1e-12)
    assert not any(n.startswith("IT energy is accelerator energy only") for n in r.assumptions)
    # one statement each of the intensity and the PUE in use: the ledger's
    assert [n for n in r.assumptions if "gCO2e/kWh" in n and "intensity" in n and not n.startswith("baseline")] == [
        "grid intensity unchanged: the ledger's effective 450.0 gCO2e/kWh (same hours, same profile)"
    ]
    assert [n for n in r.assumptions if n.startswith(("PUE", "facility energy"))] == [
        "PUE unchanged: the ledger's effective 1.500"
    ]


def test_another_zone_or_pue_changes_only_intensity_or_facility():
    engine = project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450, source_embodied=A100)
    zone = CarbonContext(pue=1.5, intensity_g_per_kwh=50.0, source="zone FR annual")
    r = rebase_on_ledger(
        projection=engine, ledger=LEDGER, source_embodied=A100, target_embodied=A100, target_intensity=zone
    )
    assert r.projected.total_energy_j == pytest.approx(95.256e6, rel=1e-9)
    assert r.projected.operational_co2e_g == pytest.approx(95.256e6 / 3.6e6 * 50.0, rel=1e-9)
    r2 = rebase_on_ledger(projection=engine, ledger=LEDGER, source_embodied=A100, target_embodied=A100, target_pue=1.1)
    assert r2.projected.facility_energy_j == pytest.approx(0.1 * 63.504e6, rel=1e-9)
    assert r2.projected.operational_co2e_g == pytest.approx(63.504e6 * 1.1 / 3.6e6 * 450.0, rel=1e-9)


def test_a_ledger_whose_energy_does_not_add_up_is_refused():
    bad = dataclasses.replace(LEDGER, energy_j=1.0)
    engine = project_hardware(job=job(), target_key="a100-sxm4-80gb", carbon=C450)
    with pytest.raises(InputError):
        rebase_on_ledger(projection=engine, ledger=bad, source_embodied=None, target_embodied=None)
