"""Time and place shifting of the site page, hand-worked (accounting.domain.whatif.place_time)."""

import pytest

from accounting.domain.whatif import place_shift_g, time_shift_bound_g


def test_time_shift_puts_the_largest_load_in_the_cleanest_hour():
    # Loads 1, 3, 2 kWh in hours at 100, 300, 200 g/kWh: actual 100 + 900 + 400 = 1400 g.
    # Best order: 3 kWh at 100, 2 at 200, 1 at 300 = 300 + 400 + 300 = 1000 g.
    assert time_shift_bound_g(loads_kwh=[1.0, 3.0, 2.0], intensities_g_per_kwh=[100.0, 300.0, 200.0]) == 1000.0
    # Fewer loads than hours: the loads take the cleanest hours.
    assert time_shift_bound_g(loads_kwh=[2.0], intensities_g_per_kwh=[500.0, 50.0, 80.0]) == 100.0
    assert time_shift_bound_g(loads_kwh=[], intensities_g_per_kwh=[100.0]) == 0.0


def test_place_shift_keeps_the_it_energy():
    # 15 kWh at PUE 1.5 is 10 kWh of IT energy; at PUE 1.2 and 50 g/kWh: 12 kWh x 50 = 600 g.
    assert place_shift_g(energy_j=15 * 3.6e6, from_pue=1.5, to_pue=1.2, to_intensity_g_per_kwh=50.0) == pytest.approx(
        600.0, rel=1e-15
    )
    # Same site: the carbon of the energy as drawn.
    assert place_shift_g(energy_j=3.6e6, from_pue=1.3, to_pue=1.3, to_intensity_g_per_kwh=400.0) == pytest.approx(
        400.0, rel=1e-15
    )
