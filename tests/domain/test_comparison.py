"""Period comparisons withhold a percentage when the previous period is empty or mostly empty."""

import datetime as dt

import pytest

from accounting.domain.comparison import (
    NO_PREVIOUS_DATA,
    PREVIOUS_MOSTLY_EMPTY,
    compare,
    coverage,
    like_for_like_previous,
)


def test_full_previous_period_gives_the_exact_change():
    c = compare(150.0, 120.0, previous_coverage=1.0)
    assert c.change_pct == pytest.approx(25.0, rel=1e-12)
    assert c.reason is None and c.comparable


def test_three_stray_days_are_not_a_baseline():
    # 30-day overview over a 30-day history: the previous period holds 1 day of 30.
    c = compare(16137.5, 100.0, previous_coverage=coverage(1, 30))
    assert c.change_pct is None
    assert c.reason == PREVIOUS_MOSTLY_EMPTY


def test_empty_previous_period():
    assert compare(5.0, 0.0, previous_coverage=1.0).reason == NO_PREVIOUS_DATA
    assert compare(5.0, 3.0, previous_coverage=0.0).reason == NO_PREVIOUS_DATA


def test_half_covered_is_enough():
    assert compare(2.0, 1.0, previous_coverage=0.5).change_pct == pytest.approx(100.0)


def test_coverage_bounds():
    assert coverage(0, 0) == 0.0
    assert coverage(31, 30) == 1.0
    with pytest.raises(ValueError):
        compare(1.0, 1.0, previous_coverage=1.5)


def test_month_to_date_compares_the_same_days():
    assert like_for_like_previous(
        dt.date(2026, 12, 1), dt.date(2026, 12, 4), dt.date(2026, 11, 1), dt.date(2026, 12, 1)
    ) == (
        dt.date(2026, 11, 1),
        dt.date(2026, 11, 4),
    )
    # A 31-day month against a 28-day February: never beyond the previous period.
    assert like_for_like_previous(
        dt.date(2027, 3, 1), dt.date(2027, 4, 1), dt.date(2027, 2, 1), dt.date(2027, 3, 1)
    ) == (
        dt.date(2027, 2, 1),
        dt.date(2027, 3, 1),
    )
