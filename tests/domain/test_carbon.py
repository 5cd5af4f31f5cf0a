"""Carbon of attributed energy: IT + facility lines, embodied, band, SCI (exact values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounting.domain.carbon import (
    ENERGY_UNCERTAINTY,
    BasisMix,
    EmbodiedRate,
    Totals,
    basis_mix,
    carbonize,
    embodied_rate_g_per_s,
    energy_per_unit,
    sci_per_unit,
    summarise,
)
from accounting.domain.types import Account, Component, EnergyShare, IntensityPoint, LedgerLine, Quality

H10 = datetime(2026, 3, 2, 10, tzinfo=UTC)
H11 = H10 + timedelta(hours=1)
JOB, FLEET = Account.JOB, Account.FLEET_OVERHEAD
POINT = IntensityPoint(
    intensity_g_per_kwh=400.0,
    source="hourly:electricitymaps",
    marginal_g_per_kwh=600.0,
    low_g_per_kwh=300.0,
    high_g_per_kwh=500.0,
    version=7,
    basis="direct",
    gases="co2e",
    lifecycle_g_per_kwh=470.0,
)
RATE = EmbodiedRate(central_g_per_s=0.001, low_g_per_s=0.0005, high_g_per_s=0.002, version=4)


def share(
    component=Component.GPU_ACTIVE,
    *,
    energy_j=3.6e6,
    held_s=0.0,
    account=JOB,
    job_id=1,
    device_id=0,
    hour=H10,
    quality=Quality.MEASURED,
    measured_energy_j=None,
):
    if measured_energy_j is None:  # a share built from windows of one quality
        measured_energy_j = energy_j if quality is Quality.MEASURED else 0.0
    return EnergyShare(
        account=account,
        job_id=job_id,
        device_id=device_id,
        component=component,
        hour=hour,
        energy_j=energy_j,
        held_s=held_s,
        quality=quality,
        measured_energy_j=measured_energy_j,
    )


def run(shares, *, pue=1.5, point=POINT, rates=None):
    return carbonize(
        shares=shares,
        pue_at=lambda hour: (pue, 3),
        intensity_at=lambda hour: point,
        embodied_rates={0: RATE} if rates is None else rates,
        factor_versions={"catalog": 2},
    )


def test_embodied_rate_150_kg_over_5_years_at_80_percent():
    # 5 y x 365.25 d x 86,400 s x 0.8 = 126,230,400 s; 150 kg = 150,000 g.
    assert embodied_rate_g_per_s(embodied_kg=150.0, lifetime_years=5.0, expected_utilisation=0.8) == pytest.approx(
        150_000.0 / 126_230_400.0, rel=1e-15
    )
    # One held hour at that rate: 3,600 x 150,000 / 126,230,400 = 4.2779... g.
    rate = embodied_rate_g_per_s(embodied_kg=150.0, lifetime_years=5.0, expected_utilisation=0.8)
    assert 3_600 * rate == pytest.approx(4.277_891_854_893_908, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"embodied_kg": -1.0, "lifetime_years": 5.0, "expected_utilisation": 0.8},
        {"embodied_kg": 150.0, "lifetime_years": 0.0, "expected_utilisation": 0.8},
        {"embodied_kg": 150.0, "lifetime_years": 5.0, "expected_utilisation": 0.0},
        {"embodied_kg": 150.0, "lifetime_years": 5.0, "expected_utilisation": 1.2},
        {"embodied_kg": float("nan"), "lifetime_years": 5.0, "expected_utilisation": 0.8},
    ],
)
def test_embodied_rate_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        embodied_rate_g_per_s(**kwargs)


def test_embodied_rate_range_must_be_ordered():
    with pytest.raises(ValueError):
        EmbodiedRate(central_g_per_s=1.0, low_g_per_s=2.0, high_g_per_s=3.0, version=1)


def test_uncertainty_constants():
    assert ENERGY_UNCERTAINTY == {
        Quality.MEASURED: 0.02,
        Quality.INTEGRATED: 0.05,
        Quality.INTERPOLATED: 0.15,
        Quality.MODELLED: 0.30,
    }


def test_one_kwh_at_pue_1_5_and_400_g_per_kwh():
    facility, it = run([share(held_s=3_600.0)])  # host-level (device None) lines sort first

    # IT line: 1 kWh x 400 g = 400 g; embodied 3,600 s x 0.001 g/s = 3.6 g.
    assert it == LedgerLine(
        account=JOB,
        job_id=1,
        device_id=0,
        component=Component.GPU_ACTIVE,
        hour=H10,
        energy_j=3.6e6,
        held_s=3_600.0,
        co2e_operational_g=400.0,
        co2e_operational_marginal_g=600.0,
        co2e_embodied_g=3.6,
        co2e_low_g=it.co2e_low_g,
        co2e_high_g=it.co2e_high_g,
        intensity_g_per_kwh=400.0,
        intensity_source="hourly:electricitymaps",
        pue=1.5,
        quality=Quality.MEASURED,
        measured_energy_j=3.6e6,
        factor_versions={
            "catalog": 2,
            "intensity": 7,
            "intensity_basis": "direct",
            "intensity_gases": "co2e",
            "pue": 3,
            "embodied": 4,
        },
        intensity_basis="direct",
        intensity_gases="co2e",
        co2e_upstream_g=it.co2e_upstream_g,
    )
    # Upstream beside operational: 1 kWh x (470 - 400) g/kWh = 70 g.
    assert it.co2e_upstream_g == pytest.approx(70.0, rel=1e-12)
    # Low: 0.98 kWh x 300 + 1.8 g = 295.8 g; high: 1.02 kWh x 500 + 7.2 g = 517.2 g.
    assert it.co2e_low_g == pytest.approx(295.8, rel=1e-12)
    assert it.co2e_high_g == pytest.approx(517.2, rel=1e-12)

    # Facility line: (1.5 - 1) x 3.6e6 J = 1.8e6 J = 0.5 kWh -> 200 g.
    assert facility == LedgerLine(
        account=JOB,
        job_id=1,
        device_id=None,
        component=Component.FACILITY,
        hour=H10,
        energy_j=1.8e6,
        held_s=0.0,
        co2e_operational_g=200.0,
        co2e_operational_marginal_g=300.0,
        co2e_embodied_g=0.0,
        co2e_low_g=facility.co2e_low_g,
        co2e_high_g=facility.co2e_high_g,
        intensity_g_per_kwh=400.0,
        intensity_source="hourly:electricitymaps",
        pue=1.5,
        quality=Quality.MEASURED,
        measured_energy_j=1.8e6,
        factor_versions={
            "catalog": 2,
            "intensity": 7,
            "intensity_basis": "direct",
            "intensity_gases": "co2e",
            "pue": 3,
        },
        intensity_basis="direct",
        intensity_gases="co2e",
        co2e_upstream_g=facility.co2e_upstream_g,
    )
    # 0.5 kWh x 70 g/kWh = 35 g upstream.
    assert facility.co2e_upstream_g == pytest.approx(35.0, rel=1e-12)
    # 0.5 kWh x 0.98 x 300 = 147 g; 0.5 x 1.02 x 500 = 255 g.
    assert facility.co2e_low_g == pytest.approx(147.0, rel=1e-12)
    assert facility.co2e_high_g == pytest.approx(255.0, rel=1e-12)


def test_facility_line_per_account_job_hour_sums_components_and_takes_worst_quality():
    shares = [
        share(Component.GPU_ACTIVE, energy_j=1.8e6, held_s=100.0),
        share(Component.GPU_IDLE, energy_j=0.72e6),
        share(Component.HOST_CPU, energy_j=1.08e6, device_id=None, quality=Quality.MODELLED),
        share(Component.GPU_ACTIVE, energy_j=3.6e6, job_id=2),
        share(Component.GPU_ACTIVE, energy_j=3.6e6, hour=H11),
    ]
    lines = run(shares, point=IntensityPoint(intensity_g_per_kwh=400.0, source="annual:codecarbon", version=1))
    facility = [line for line in lines if line.component is Component.FACILITY]
    assert [(f.job_id, f.hour, f.energy_j, f.co2e_operational_g, f.quality) for f in facility] == [
        # 0.5 x (1.8 + 0.72 + 1.08) MJ; the modelled CPU share makes the line modelled.
        (1, H10, pytest.approx(1.8e6, rel=1e-12), pytest.approx(200.0, rel=1e-12), Quality.MODELLED),
        (2, H10, 1.8e6, 200.0, Quality.MEASURED),
        (1, H11, 1.8e6, 200.0, Quality.MEASURED),
    ]
    first = facility[0]
    # No intensity range: band from energy uncertainty only.
    # low = 0.5 x (1.8 x 0.98 + 0.72 x 0.98 + 1.08 x 0.7) MJ / 3.6 MJ/kWh x 400 g.
    assert first.co2e_low_g == pytest.approx(0.5 * (1.8 * 0.98 + 0.72 * 0.98 + 1.08 * 0.7) / 3.6 * 400, rel=1e-12)
    assert first.co2e_high_g == pytest.approx(0.5 * (1.8 * 1.02 + 0.72 * 1.02 + 1.08 * 1.3) / 3.6 * 400, rel=1e-12)
    assert first.co2e_operational_marginal_g is None


def test_lines_sorted_by_hour_account_job_device_component():
    shares = [
        share(Component.HOST_CPU, device_id=None, hour=H11),
        share(Component.GPU_IDLE, account=FLEET, job_id=None),
        share(Component.GPU_IDLE),
        share(Component.GPU_ACTIVE),
    ]
    keys = [(line.hour, line.account, line.job_id, line.device_id, line.component) for line in run(shares)]
    assert keys == [
        (H10, FLEET, None, None, Component.FACILITY),
        (H10, FLEET, None, 0, Component.GPU_IDLE),
        (H10, JOB, 1, None, Component.FACILITY),
        (H10, JOB, 1, 0, Component.GPU_ACTIVE),
        (H10, JOB, 1, 0, Component.GPU_IDLE),
        (H11, JOB, 1, None, Component.HOST_CPU),
        (H11, JOB, 1, None, Component.FACILITY),
    ]


def test_pue_one_means_no_facility_line():
    lines = run([share()], pue=1.0)
    assert [line.component for line in lines] == [Component.GPU_ACTIVE]
    assert lines[0].pue == 1.0


def test_fleet_overhead_held_time_carries_embodied():
    lines = run([share(account=FLEET, job_id=None, energy_j=0.0, held_s=60.0)])
    assert [(line.component, line.energy_j, line.co2e_embodied_g) for line in lines] == [
        (Component.GPU_ACTIVE, 0.0, 0.06)
    ]


def test_factors_resolved_per_hour():
    points = {H10: POINT, H11: IntensityPoint(intensity_g_per_kwh=100.0, source="hourly:x", version=8)}
    calls = []

    def intensity_at(hour):
        calls.append(hour)
        return points[hour]

    lines = carbonize(
        shares=[share(), share(Component.GPU_IDLE), share(hour=H11)],
        pue_at=lambda hour: (1.25 if hour == H11 else 1.5, 9),
        intensity_at=intensity_at,
        embodied_rates={},
        factor_versions={},
    )
    assert sorted(calls) == [H10, H11]
    h11 = [line for line in lines if line.hour == H11]
    assert [(line.component, line.energy_j, line.co2e_operational_g, line.pue) for line in h11] == [
        (Component.FACILITY, 0.9e6, 25.0, 1.25),
        (Component.GPU_ACTIVE, 3.6e6, 100.0, 1.25),
    ]
    # A point without a recorded basis says so (empty), and has no upstream figure.
    assert h11[1].factor_versions == {"intensity": 8, "intensity_basis": "", "intensity_gases": "", "pue": 9}
    assert h11[1].co2e_upstream_g is None


def test_held_time_without_a_rate_is_refused():
    with pytest.raises(ValueError, match="no embodied rate"):
        run([share(held_s=10.0, device_id=5)])


def test_facility_share_input_is_refused():
    with pytest.raises(ValueError):
        run([share(Component.FACILITY)])


@pytest.mark.parametrize("pue", [0.9, float("nan")])
def test_pue_below_one_is_refused(pue):
    with pytest.raises(ValueError):
        run([share()], pue=pue)


def test_intensity_range_must_bracket_central():
    with pytest.raises(ValueError):
        run([share()], point=IntensityPoint(intensity_g_per_kwh=400.0, source="x", low_g_per_kwh=450.0))


def test_sci_and_energy_per_unit():
    assert sci_per_unit(co2e_g=500.0, units=2_000_000) == 0.00025
    assert sci_per_unit(co2e_g=500.0, units=0) is None
    assert sci_per_unit(co2e_g=500.0, units=-1) is None
    assert energy_per_unit(energy_j=3.6e6, units=1_000) == 3_600.0
    assert energy_per_unit(energy_j=3.6e6, units=0.0) is None


def test_summarise():
    shares = [
        share(Component.GPU_ACTIVE, energy_j=2.7e6, held_s=3_600.0),
        share(Component.GPU_IDLE, energy_j=0.9e6, quality=Quality.INTERPOLATED),
        share(Component.HOST_CPU, energy_j=0.36e6, device_id=None, quality=Quality.MODELLED),
        share(Component.HOST_DRAM, energy_j=0.18e6, device_id=None),
        share(Component.HOST_UNMEASURED, energy_j=0.18e6, device_id=None),
    ]
    lines = run(shares, point=IntensityPoint(intensity_g_per_kwh=400.0, source="annual:x"))
    totals = summarise(lines)
    it_j = 2.7e6 + 0.9e6 + 0.36e6 + 0.18e6 + 0.18e6  # 4.32e6 J = 1.2 kWh
    assert totals == Totals(
        energy_j=pytest.approx(it_j * 1.5, rel=1e-12),
        it_energy_j=pytest.approx(it_j, rel=1e-12),
        gpu_energy_j=3.6e6,
        gpu_idle_energy_j=0.9e6,
        host_energy_j=pytest.approx(0.72e6, rel=1e-12),
        facility_energy_j=pytest.approx(it_j * 0.5, rel=1e-12),
        co2e_operational_g=pytest.approx(1.8 * 400, rel=1e-12),  # 1.2 kWh x 1.5 = 1.8 kWh
        co2e_embodied_g=3.6,
        co2e_low_g=totals.co2e_low_g,
        co2e_high_g=totals.co2e_high_g,
        held_s=3_600.0,
        measured_fraction=0.75,  # 2.7 of 3.6 MJ GPU energy measured
    )
    assert totals.co2e_low_g < totals.co2e_operational_g + totals.co2e_embodied_g < totals.co2e_high_g


def test_measured_fraction_counts_measured_windows_not_the_worst_quality_of_a_line():
    # One GPU line of 3.6 MJ, 3.24 MJ of it from measured windows and 0.36 MJ from a counter-reset
    # window (integrated): the line is labelled integrated (its worst window), yet 90 % of its
    # energy was measured, and the job's measured fraction says so.
    shares = [
        share(Component.GPU_ACTIVE, energy_j=3.6e6, quality=Quality.INTEGRATED, measured_energy_j=3.24e6),
        share(Component.HOST_CPU, energy_j=0.4e6, device_id=None),
    ]
    cpu, facility, gpu = run(shares, point=IntensityPoint(intensity_g_per_kwh=400.0, source="annual:x"))
    assert (gpu.quality, gpu.energy_j, gpu.measured_energy_j) == (Quality.INTEGRATED, 3.6e6, 3.24e6)
    assert (cpu.quality, cpu.measured_energy_j) == (Quality.MEASURED, 0.4e6)
    # Facility = 0.5 x 4.0 MJ = 2.0 MJ, measured to the extent its IT energy was: 0.5 x 3.64 MJ.
    assert (facility.quality, facility.energy_j, facility.measured_energy_j) == (Quality.INTEGRATED, 2.0e6, 1.82e6)
    assert summarise([facility, cpu, gpu]).measured_fraction == 0.9  # 3.24 / 3.6


def test_summarise_nothing():
    assert summarise([]) == Totals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_upstream_only_on_direct_basis_with_a_lifecycle_figure():
    """A life-cycle intensity already contains the upstream part: no separate figure, never
    counted twice; a direct intensity without life-cycle data has none either."""
    lifecycle = IntensityPoint(400.0, "annual:codecarbon", basis="lifecycle", gases="co2e", lifecycle_g_per_kwh=400.0)
    direct_only = IntensityPoint(300.0, "annual:codecarbon", basis="direct", gases="co2")
    for point, expected in ((lifecycle, None), (direct_only, None), (POINT, 70.0)):
        (it,) = carbonize(
            shares=[share()],
            pue_at=lambda hour: (1.0, 1),
            intensity_at=lambda hour, p=point: p,
            embodied_rates={},
            factor_versions={},
        )
        assert (it.intensity_basis, it.intensity_gases) == (point.basis, point.gases)
        assert it.co2e_upstream_g == (None if expected is None else pytest.approx(expected, rel=1e-12))


def test_basis_mix_labels_mixed_totals_with_their_shares():
    assert basis_mix(energy_j=8.0, direct_energy_j=5.0, lifecycle_energy_j=3.0, co2_only_energy_j=0.0) == BasisMix(
        0.625, 0.375, 0.0, "mixed basis: 62.5 % direct, 37.5 % life-cycle"
    )
    assert basis_mix(energy_j=4.0, direct_energy_j=4.0, lifecycle_energy_j=0.0, co2_only_energy_j=1.0).label == (
        "direct; 25.0 % CO2 only (no CH4/N2O)"
    )
    assert basis_mix(energy_j=2.0, direct_energy_j=0.0, lifecycle_energy_j=2.0, co2_only_energy_j=0.0).label == (
        "life-cycle"
    )
    assert basis_mix(energy_j=4.0, direct_energy_j=1.0, lifecycle_energy_j=2.0, co2_only_energy_j=0.0).label == (
        "mixed basis: 25.0 % direct, 50.0 % life-cycle, 25.0 % basis not recorded"
    )
    assert basis_mix(energy_j=0.0, direct_energy_j=0.0, lifecycle_energy_j=0.0, co2_only_energy_j=0.0).label == (
        "no energy"
    )
