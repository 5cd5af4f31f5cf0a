"""Instants as integer microseconds since the Unix epoch: exact both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from accounting.domain.timebase import EPOCH, from_us, to_us


def test_epoch_is_zero():
    assert to_us(EPOCH) == 0
    assert from_us(0) == EPOCH


def test_round_trip_is_exact_to_the_microsecond():
    moment = datetime(2026, 3, 2, 10, 59, 59, 999_999, tzinfo=UTC)
    assert to_us(moment) == 1_772_449_199_999_999
    assert from_us(1_772_449_199_999_999) == moment
    assert from_us(to_us(moment) + 1) == datetime(2026, 3, 2, 11, tzinfo=UTC)


def test_before_the_epoch_and_other_offsets():
    assert to_us(EPOCH - timedelta(microseconds=1)) == -1
    assert from_us(-1_000_001) == datetime(1969, 12, 31, 23, 59, 58, 999_999, tzinfo=UTC)
    # An aware instant in another offset is the same instant.
    assert to_us(datetime(1970, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == 0


def test_from_us_takes_numpy_integers():
    value = from_us(np.int64(3_600_000_000))
    assert value == datetime(1970, 1, 1, 1, tzinfo=UTC)
    assert value.tzinfo is UTC
