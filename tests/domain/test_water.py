"""Water of energy: on-site by WUE of IT energy, off-site by the grid's water intensity (exact values)."""

from __future__ import annotations

import pytest

from accounting.domain.water import TECHNOLOGY_WATER, WaterFactor, mix_water_factor, water_l


def test_water_onsite_by_wue_of_it_energy_and_offsite_by_all_energy():
    grid = WaterFactor(2.0, 1.0, 4.0)
    w = water_l(it_energy_kwh=100.0, total_energy_kwh=140.0, wue_l_per_kwh=1.8, grid=grid)
    # On-site 100 kWh x 1.8 L/kWh = 180 L; off-site 140 kWh x 2 L/kWh = 280 L (140..560).
    assert (w.onsite_l, w.offsite_l, w.offsite_low_l, w.offsite_high_l) == (180.0, 280.0, 140.0, 560.0)
    assert (w.total_l, w.low_l, w.high_l) == (460.0, 320.0, 740.0)
    none = water_l(it_energy_kwh=1.0, total_energy_kwh=1.0, wue_l_per_kwh=None, grid=None)
    assert (none.onsite_l, none.offsite_l, none.total_l) == (None, None, 0.0)


def test_mix_water_factor_from_macknick_gal_per_mwh():
    # Half coal (687 gal/MWh), half wind (0): 343.5 gal/MWh = 1.300289 L/kWh.
    f = mix_water_factor(generation_twh={"coal": 1.0, "wind": 1.0})
    assert f.l_per_kwh == pytest.approx(343.5 * 3.785411784 / 1000, rel=1e-12)
    assert (f.low_l_per_kwh, f.high_l_per_kwh) == (
        pytest.approx(240 * 3.785411784 / 1000, rel=1e-12),
        pytest.approx(550.5 * 3.785411784 / 1000, rel=1e-12),
    )
    assert TECHNOLOGY_WATER["nuclear"].l_per_kwh == pytest.approx(2.543796718848, rel=1e-12)
    with pytest.raises(ValueError, match="no water factor"):
        mix_water_factor(generation_twh={"fusion": 1.0})


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="IT energy"):
        water_l(it_energy_kwh=2.0, total_energy_kwh=1.0, wue_l_per_kwh=1.0, grid=None)
    with pytest.raises(ValueError, match="WUE"):
        water_l(it_energy_kwh=1.0, total_energy_kwh=1.0, wue_l_per_kwh=-1.0, grid=None)
    with pytest.raises(ValueError, match="low <= central <= high"):
        WaterFactor(2.0, 3.0, 4.0)


def test_onsite_water_by_hour_from_a_wue_series_else_the_static_value():
    from datetime import UTC, datetime, timedelta

    from accounting.domain.water import onsite_water_l

    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    h = timedelta(hours=1)
    it = {t0: 10.0, t0 + h: 20.0, t0 + 2 * h: 30.0}
    # Series from hour 1 (summer cooling 2.5 L/kWh): hour 0 at the static 1.5, hours 1-2 at 2.5.
    # 10 x 1.5 + 20 x 2.5 + 30 x 2.5 = 15 + 50 + 75 = 140 L.
    got = onsite_water_l(it_kwh_by_hour=it, static_wue_l_per_kwh=1.5, series=[(t0 + h, 2.5)])
    assert (got.litres, got.kwh_without_wue) == (140.0, 0.0)
    # No static WUE: hour 0 has none and is reported, not counted as zero water.
    got = onsite_water_l(it_kwh_by_hour=it, static_wue_l_per_kwh=None, series=[(t0 + h, 2.5)])
    assert (got.litres, got.kwh_without_wue) == (125.0, 10.0)
    assert onsite_water_l(it_kwh_by_hour=it, static_wue_l_per_kwh=None).litres is None
    # A later series row replaces the earlier one from its own hour on.
    got = onsite_water_l(it_kwh_by_hour=it, static_wue_l_per_kwh=None, series=[(t0 + 2 * h, 1.0), (t0, 2.0)])
    assert got.litres == 10 * 2.0 + 20 * 2.0 + 30 * 1.0
    with pytest.raises(ValueError, match="WUE at"):
        onsite_water_l(it_kwh_by_hour=it, static_wue_l_per_kwh=None, series=[(t0, -1.0)])
