"""Market-based Scope 2 (exact values, conservation)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.domain.market_based import Instrument, ResidualFactor, market_based

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
RESIDUAL = ResidualFactor(g_per_kwh=500.0, version=3)


def residual(_hour):
    return RESIDUAL


def test_annual_instrument_covers_then_residual_pro_rata_to_energy():
    # Two jobs over two hours: 30 + 10 kWh and 20 + 40 kWh: the site used 100 kWh.
    accounts = {"a": {T0: 30.0, T0 + H: 10.0}, "b": {T0: 20.0, T0 + H: 40.0}}
    go = Instrument(id=1, energy_kwh=40.0, g_per_kwh=0.0, start=T0, end=T0 + 24 * H)
    result = market_based(account_kwh_by_hour=accounts, instruments=[go], residual_at=residual)
    # 40 kWh at 0 g + 60 kWh at 500 g = 30,000 g.
    assert (result.site_energy_kwh, result.covered_kwh, result.residual_kwh, result.co2e_g) == (
        100.0,
        40.0,
        pytest.approx(60.0),
        pytest.approx(30_000.0),
    )
    assert result.matching == "annual"
    # Pro rata to energy over the period: a used 40 % -> 12,000 g, b 60 % -> 18,000 g.
    assert result.by_account_g == {"a": pytest.approx(12_000.0), "b": pytest.approx(18_000.0)}
    assert result.residual_versions == {2026: 3}


def test_hourly_instrument_covers_only_its_hours_and_does_not_bank():
    accounts = {"a": {T0: 30.0, T0 + H: 10.0}, "b": {T0: 20.0, T0 + H: 40.0}}
    # 80 kWh delivered in hour 0 (the site used 50: 30 are lost), 10 in hour 1, at 20 g/kWh.
    ppa = Instrument(
        id=2, energy_kwh=90.0, g_per_kwh=20.0, start=T0, end=T0 + 2 * H, hourly_kwh={T0: 80.0, T0 + H: 10.0}
    )
    result = market_based(account_kwh_by_hour=accounts, instruments=[ppa], residual_at=residual)
    # Hour 0: 50 kWh x 20 = 1,000 g. Hour 1: 10 x 20 + 40 x 500 = 20,200 g.
    assert result.by_hour_g == {T0: pytest.approx(1_000.0), T0 + H: pytest.approx(20_200.0)}
    assert (result.covered_hourly_kwh, result.covered_annual_kwh, result.matching) == (60.0, 0.0, "hourly")
    # a: 30/50 x 1,000 + 10/50 x 20,200 = 600 + 4,040; b: 400 + 16,160.
    assert result.by_account_g == {"a": pytest.approx(4_640.0), "b": pytest.approx(16_560.0)}
    # Covered kWh per account, each hour's cover pro rata: a 30/50 x 50 + 10/50 x 10 = 32, b 28.
    assert result.by_account_covered_kwh == {"a": pytest.approx(32.0), "b": pytest.approx(28.0)}
    assert result.instruments[0].used_kwh == 60.0


def test_hourly_first_then_annual_on_what_is_left():
    accounts = {"a": {T0: 50.0, T0 + H: 50.0}}
    ppa = Instrument(id=1, energy_kwh=50.0, g_per_kwh=0.0, start=T0, end=T0 + H, hourly_kwh={T0: 50.0})
    rec = Instrument(id=2, energy_kwh=100.0, g_per_kwh=10.0, start=T0, end=T0 + 2 * H)
    result = market_based(account_kwh_by_hour=accounts, instruments=[rec, ppa], residual_at=residual)
    # The hourly PPA takes hour 0 whole; the REC covers the 50 kWh left of hour 1 (50 unused).
    assert [(u.id, u.matching, u.used_kwh, u.co2e_g) for u in result.instruments] == [
        (1, "hourly", 50.0, 0.0),
        (2, "annual", 50.0, 500.0),
    ]
    assert (result.co2e_g, result.residual_kwh, result.matching) == (500.0, 0.0, "hourly + annual")


def test_no_instrument_is_residual_mix_only():
    result = market_based(account_kwh_by_hour={"a": {T0: 2.0}}, instruments=[], residual_at=residual)
    assert (result.co2e_g, result.matching, result.covered_kwh) == (1000.0, "none", 0.0)


def test_bad_instruments_are_refused():
    with pytest.raises(ValueError, match="energy_kwh must be > 0"):
        Instrument(id=1, energy_kwh=0.0, g_per_kwh=0.0, start=T0, end=T0 + H)
    with pytest.raises(ValueError, match="outside its period"):
        Instrument(id=1, energy_kwh=1.0, g_per_kwh=0.0, start=T0, end=T0 + H, hourly_kwh={T0 + H: 1.0})


@settings(max_examples=60, deadline=None)
@given(
    energies=st.lists(st.lists(st.floats(0, 1e4), min_size=3, max_size=3), min_size=1, max_size=4),
    covered=st.floats(0.1, 5e4),
    delivered=st.lists(st.floats(0, 1e4), min_size=3, max_size=3),
)
def test_conservation_accounts_sum_to_the_site(energies, covered, delivered):
    accounts = {i: {T0 + k * H: e for k, e in enumerate(row)} for i, row in enumerate(energies)}
    instruments = [
        Instrument(id=1, energy_kwh=covered, g_per_kwh=30.0, start=T0, end=T0 + 3 * H),
        Instrument(
            id=2,
            energy_kwh=sum(delivered) + 1.0,
            g_per_kwh=5.0,
            start=T0,
            end=T0 + 3 * H,
            hourly_kwh={T0 + k * H: d for k, d in enumerate(delivered)},
        ),
    ]
    result = market_based(account_kwh_by_hour=accounts, instruments=instruments, residual_at=residual)
    assert math.fsum(result.by_account_g.values()) == pytest.approx(result.co2e_g, rel=1e-9, abs=1e-6)
    assert result.covered_kwh + result.residual_kwh == pytest.approx(result.site_energy_kwh, rel=1e-9, abs=1e-6)
    assert result.co2e_covered_g + result.co2e_residual_g == pytest.approx(result.co2e_g, rel=1e-12, abs=1e-9)


def test_worked_example_of_the_method_page_by_hand():
    """docs/method.md §3 "Worked example" and the methodology page show these numbers."""
    from accounting.domain.worked_example import basis_worked_example

    ex = basis_worked_example()
    rows = {a.account: a for a in ex.accounts}
    a = rows["job A"]
    # Job A: 60 kWh IT x PUE 1.25 = 75 kWh; 75 x 200 = 15,000 g location-based (direct);
    # 75 x (250 - 200) = 3,750 g upstream; market: the site's 125 kWh are 50 kWh GO at 0 g and
    # 75 kWh at the 400 g residual mix = 30,000 g, A's share 75/125 = 18,000 g.
    assert (a.total_kwh, a.location_based_g, a.upstream_g) == (75.0, 15_000.0, 3_750.0)
    assert a.market_based_g == pytest.approx(18_000.0, rel=1e-12)
    # Water: 60 kWh IT x 1.8 = 108 L on site; 75 kWh x 2.0 = 150 L off site (75..300 L).
    assert (a.water_onsite_l, a.water_offsite_l) == (pytest.approx(108.0), 150.0)
    assert (a.water_low_l, a.water_high_l) == (pytest.approx(183.0), pytest.approx(408.0))
    assert {k: r.market_based_g for k, r in rows.items()} == {
        "job A": pytest.approx(18_000.0, rel=1e-12),
        "job B": pytest.approx(6_000.0, rel=1e-12),
        "fleet overhead": pytest.approx(6_000.0, rel=1e-12),
    }
    # The site: location-based 25,000 g, market-based 30,000 g (the sum over accounts).
    assert (ex.site_total_kwh, ex.site_location_based_g) == (125.0, 25_000.0)
    assert (ex.site_market_based_g, ex.covered_kwh, ex.residual_kwh, ex.matching) == (
        pytest.approx(30_000.0, rel=1e-12),
        50.0,
        pytest.approx(75.0, rel=1e-12),
        "annual",
    )
    # Embodied: 164,000 g / (5 x 8766 h x 0.8) = 4.6772 g per GPU-hour; A held 8 GPU-hours.
    assert ex.embodied_g_per_gpu_h == pytest.approx(164_000 / 35_064, rel=1e-12)
    assert ex.embodied_g_per_gpu_h == pytest.approx(4.67716176, abs=1e-8)
    assert ex.job_a_embodied_g == pytest.approx(37.41729409, abs=1e-8)
