"""Units, the amortisation rule and the PUE rule: one home each (issue 12 step 5)."""

import pytest

from accounting.domain import units
from accounting.domain.embodied import embodied_charge_g_per_h
from accounting.domain.energy import facility_energy_j


def test_units_are_the_documented_ones():
    assert units.J_PER_KWH == 3_600_000.0
    assert units.S_PER_H == 3600.0
    # Julian year (docs/method.md): 365.25 d x 24 h = 8766 h, not 8760.
    assert units.HOURS_PER_YEAR == 8766.0
    assert units.S_PER_YEAR == 31_557_600.0
    assert units.S_PER_DAY == 86_400.0
    assert units.kwh_from_j(7_200_000.0) == 2.0
    assert units.kwh_from_j(None) == 0.0
    assert units.kg_from_g(1500.0) == 1.5
    assert units.kg_from_g(None) == 0.0


def test_embodied_charge_per_held_hour():
    # 150 kg over 5 Julian years at 80 %: 150,000 g / (43,830 h x 0.8 = 35,064 h) = 4.27789... g/h.
    assert embodied_charge_g_per_h(
        embodied_g=150_000.0, lifetime_h=5 * 8766.0, expected_utilisation=0.8
    ) == pytest.approx(150_000.0 / 35_064.0, rel=1e-15)
    assert 150_000.0 / 35_064.0 == pytest.approx(4.277_891_854_893_908, rel=1e-15)
    # Full utilisation: the plain time share, 1,000 g over 1,000 h.
    assert embodied_charge_g_per_h(embodied_g=1000.0, lifetime_h=1000.0, expected_utilisation=1.0) == 1.0


def test_every_copy_of_the_amortisation_agrees():
    from accounting.domain.carbon import embodied_rate_g_per_s
    from accounting.domain.embodied import LifetimePolicy, embodied_share_kg
    from accounting.domain.whatif import EmbodiedPolicy

    per_h = 150_000.0 / 35_064.0
    rate = embodied_rate_g_per_s(embodied_kg=150.0, lifetime_years=5.0, expected_utilisation=0.8)
    assert rate * 3600 == pytest.approx(per_h, rel=1e-15)
    share = embodied_share_kg(embodied_kg=150.0, held_h=10.0, policy=LifetimePolicy(5.0, 0.8, "catalog"))
    assert share == pytest.approx(10 * per_h / 1000, rel=1e-15)
    pol = EmbodiedPolicy(
        embodied_kg=150.0, embodied_low_kg=75.0, embodied_high_kg=300.0, lifetime_h=5 * 8766.0, expected_utilisation=0.8
    )
    mid, low, high = pol.charge_g(10.0)
    assert (mid, low, high) == pytest.approx((10 * per_h, 5 * per_h, 20 * per_h), rel=1e-15)


def test_facility_energy_is_pue_minus_one_times_it():
    # PUE 1.5 on 3.6 MJ of IT energy: 1.8 MJ of facility energy; PUE 1.0: none.
    assert facility_energy_j(it_energy_j=3.6e6, pue=1.5) == 1.8e6
    assert facility_energy_j(it_energy_j=3.6e6, pue=1.0) == 0.0
    assert facility_energy_j(it_energy_j=1000.0, pue=1.25) == 250.0
