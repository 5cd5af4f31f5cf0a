"""GPU energy per window: counter deltas, trapezoid integration, gap filling (exact values)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from accounting.domain.energy import GapFillResult, counter_delta_j, fill_gaps, gapless, trapezoid_j
from accounting.domain.timebase import to_us
from accounting.domain.types import (
    SYNTHETIC_SEQ,
    Gap,
    GapResolution,
    GpuWindowIn,
    PreviousWindow,
    ProcessSample,
    Quality,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def window(seq: int, start_s: float, end_s: float, *, power_w: float, util: float = 50.0, idle_w: float = 60.0):
    return GpuWindowIn(
        device_id=3,
        seq=seq,
        start=at(start_s),
        end=at(end_s),
        energy_j=power_w * (end_s - start_s),
        avg_power_w=power_w,
        util_pct=util,
        quality=Quality.MEASURED,
        idle_power_w=idle_w,
        processes=(ProcessSample(pid=7, sm_util_pct=util, job_key="slurm:1"),),
    )


# --- counter_delta_j ---------------------------------------------------------------------------


def test_counter_delta_normal():
    assert counter_delta_j(prev_mj=1_000_000, curr_mj=1_250_500) == (250.5, False)


def test_counter_delta_unchanged_is_zero():
    assert counter_delta_j(prev_mj=42, curr_mj=42) == (0.0, False)


def test_counter_reset_counts_energy_since_reset():
    # Driver reloaded: the counter restarted at 0 and has since reached 7,500 mJ.
    assert counter_delta_j(prev_mj=9_000_000_000, curr_mj=7_500) == (7.5, True)


def test_counter_near_u64_max_is_still_a_plain_delta():
    assert counter_delta_j(prev_mj=2**64 - 2_001, curr_mj=2**64 - 1) == (2.0, False)


@pytest.mark.parametrize(
    ("prev_mj", "curr_mj", "error"),
    [(-1, 5, ValueError), (0, 2**64, ValueError), (1.5, 2, TypeError), (True, 2, TypeError)],
)
def test_counter_delta_rejects_impossible_reads(prev_mj, curr_mj, error):
    with pytest.raises(error):
        counter_delta_j(prev_mj=prev_mj, curr_mj=curr_mj)


# --- trapezoid_j -------------------------------------------------------------------------------


def test_trapezoid_exact():
    # 0-1 s: (100+200)/2 = 150 J; 1-3 s: (200+300)/2*2 = 500 J; 3-3.5 s: (300+100)/2*0.5 = 100 J.
    assert trapezoid_j([(0.0, 100.0), (1.0, 200.0), (3.0, 300.0), (3.5, 100.0)]) == 750.0


def test_trapezoid_constant_power():
    assert trapezoid_j([(10.0, 250.0), (70.0, 250.0)]) == 15_000.0


@pytest.mark.parametrize("samples", [[], [(5.0, 300.0)]])
def test_trapezoid_spans_no_time_with_fewer_than_two_samples(samples):
    assert trapezoid_j(samples) == 0.0


@pytest.mark.parametrize(
    "samples",
    [
        [(0.0, 100.0), (2.0, 100.0), (1.0, 100.0)],  # unsorted
        [(0.0, 100.0), (1.0, 100.0), (1.0, 120.0)],  # duplicate time
        [(0.0, 100.0), (1.0, math.nan)],
        [(0.0, 100.0), (math.inf, 100.0)],
        [(0.0, 100.0), (1.0, -5.0)],  # a board cannot return energy
    ],
)
def test_trapezoid_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        trapezoid_j(samples)


# --- fill_gaps ---------------------------------------------------------------------------------


def test_no_gaps_returns_windows_unchanged():
    windows = [window(1, 0, 10, power_w=300), window(2, 10, 20, power_w=300)]
    assert fill_gaps(windows=windows, previous=None, counters={}) == GapFillResult(windows=windows, gaps=[])


def test_gap_filled_from_counter_is_measured():
    # Counter at end of seq 1 = 1,000,000 mJ; at end of seq 2 = 21,000,000 mJ -> 20,000 J over
    # 10..40 s; seq 2 itself (30..40 s) measured 3,000 J, so the gap 10..30 s drew 17,000 J.
    w1 = window(1, 0, 10, power_w=300)
    w2 = window(2, 30, 40, power_w=300)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={1: 1_000_000, 2: 21_000_000})

    assert result.gaps == [
        Gap(device_id=3, start=at(10), end=at(30), duration_s=20.0, resolution=GapResolution.COUNTER, energy_j=17_000.0)
    ]
    assert result.windows == [
        w1,
        GpuWindowIn(
            device_id=3,
            seq=SYNTHETIC_SEQ,
            start=at(10),
            end=at(30),
            energy_j=17_000.0,
            avg_power_w=850.0,
            util_pct=50.0,
            quality=Quality.MEASURED,
            idle_power_w=60.0,
            processes=(),
        ),
        w2,
    ]
    assert result.gaps[0].resolution == "counter"


def test_short_gap_without_counter_is_interpolated():
    # Neighbours 200 W and 400 W -> 300 W over a 30 s gap = 9,000 J; util mean (20+60)/2 = 40.
    w1 = window(1, 0, 10, power_w=200, util=20)
    w2 = window(2, 40, 50, power_w=400, util=60)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={1: 5_000, 2: None})

    assert result.gaps == [
        Gap(3, at(10), at(40), 30.0, GapResolution.INTERPOLATED, 9_000.0),
    ]
    synthesized = result.windows[1]
    assert (synthesized.seq, synthesized.start, synthesized.end) == (SYNTHETIC_SEQ, at(10), at(40))
    assert (synthesized.energy_j, synthesized.avg_power_w, synthesized.util_pct) == (9_000.0, 300.0, 40.0)
    assert synthesized.quality is Quality.INTERPOLATED
    assert synthesized.processes == ()


def test_gap_of_exactly_the_limit_is_interpolated():
    w1 = window(1, 0, 10, power_w=100)
    w2 = window(2, 70, 80, power_w=100)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={}, max_interpolate_s=60.0)
    assert result.gaps == [Gap(3, at(10), at(70), 60.0, GapResolution.INTERPOLATED, 6_000.0)]


def test_long_gap_without_counter_is_unfilled():
    w1 = window(1, 0, 10, power_w=100)
    w2 = window(2, 71, 81, power_w=100)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={}, max_interpolate_s=60.0)
    assert result.gaps == [Gap(3, at(10), at(71), 61.0, GapResolution.UNFILLED, None)]
    assert result.windows == [w1, w2]


def test_counter_reset_across_gap_falls_back_to_interpolation():
    w1 = window(1, 0, 10, power_w=100)
    w2 = window(2, 20, 30, power_w=300)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={1: 9_000_000, 2: 4_000})
    assert result.gaps == [Gap(3, at(10), at(20), 10.0, GapResolution.INTERPOLATED, 2_000.0)]


def test_counter_reset_across_long_gap_is_unfilled():
    w1 = window(1, 0, 10, power_w=100)
    w2 = window(2, 600, 610, power_w=300)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={1: 9_000_000, 2: 4_000})
    assert result.gaps == [Gap(3, at(10), at(600), 590.0, GapResolution.UNFILLED, None)]


def test_counter_disagreeing_with_window_energy_is_not_used():
    # Counter moved 2,000 J but the next window alone measured 3,000 J: the sources disagree,
    # so the counter is not trusted for the gap.
    w1 = window(1, 0, 10, power_w=300)
    w2 = window(2, 20, 30, power_w=300)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={1: 1_000_000, 2: 3_000_000})
    assert result.gaps == [Gap(3, at(10), at(20), 10.0, GapResolution.INTERPOLATED, 3_000.0)]


def test_long_gap_filled_by_counter():
    # A counter makes even a 10-minute gap a measurement: 600 s gap + 10 s window.
    w1 = window(1, 0, 10, power_w=300)
    w2 = window(2, 610, 620, power_w=300)
    result = fill_gaps(windows=[w1, w2], previous=None, counters={1: 0, 2: 123_000_000})
    assert result.gaps == [Gap(3, at(10), at(610), 600.0, GapResolution.COUNTER, 120_000.0)]


def test_gap_after_previous_batch_uses_previous_window():
    previous = PreviousWindow(end=at(-20), avg_power_w=100.0, counter_mj=None, util_pct=10.0)
    w1 = window(5, 0, 10, power_w=300, util=30)
    result = fill_gaps(windows=[w1], previous=previous, counters={})
    assert result.gaps == [Gap(3, at(-20), at(0), 20.0, GapResolution.INTERPOLATED, 4_000.0)]
    assert result.windows[0].util_pct == 20.0
    assert result.windows[1] is w1


def test_gap_after_previous_batch_by_counter():
    previous = PreviousWindow(end=at(-20), avg_power_w=100.0, counter_mj=50_000)
    w1 = window(5, 0, 10, power_w=300, util=30)
    result = fill_gaps(windows=[w1], previous=previous, counters={5: 50_000 + 8_000_000})
    # 8,000 J across -20..10 s minus 3,000 J in the window = 5,000 J for the gap.
    assert result.gaps == [Gap(3, at(-20), at(0), 20.0, GapResolution.COUNTER, 5_000.0)]
    # Without a util on the previous window the right neighbour's stands in.
    assert result.windows[0].util_pct == 30.0


def test_previous_window_contiguous_is_no_gap():
    previous = PreviousWindow(end=at(0), avg_power_w=100.0)
    w1 = window(5, 0, 10, power_w=300)
    assert fill_gaps(windows=[w1], previous=previous, counters={}) == GapFillResult(windows=[w1], gaps=[])


@pytest.mark.parametrize(
    ("spans_s", "previous_end_s", "expected"),
    [
        ([], None, True),
        ([], 5, True),
        ([(0, 10)], None, True),
        ([(0, 10), (10, 20)], None, True),  # touching
        ([(0, 10), (8, 18)], None, True),  # overlapping
        ([(0, 10), (10, 20)], 0, True),  # follows the previous window
        ([(0, 10), (10, 20)], 3, True),  # starts inside the previous window
        ([(0, 10), (11, 20)], None, False),  # a second's gap
        ([(0, 10), (10, 20)], -1, False),  # a gap after the previous window
        ([(0, 10), (20, 30), (5, 15)], None, False),  # out of start order
    ],
)
def test_gapless_is_fill_gaps_finding_nothing(spans_s, previous_end_s, expected):
    """One gap rule: ``gapless`` is true exactly where ``fill_gaps`` returns the windows unchanged,
    and gives the same answer on instants as integer microseconds (the columnar form)."""
    windows = [window(i + 1, start, end, power_w=100) for i, (start, end) in enumerate(spans_s)]
    previous_end = None if previous_end_s is None else at(previous_end_s)
    starts, ends = [w.start for w in windows], [w.end for w in windows]
    assert gapless(starts=starts, ends=ends, previous_end=previous_end) is expected
    assert (
        gapless(
            starts=[to_us(s) for s in starts],
            ends=[to_us(e) for e in ends],
            previous_end=None if previous_end is None else to_us(previous_end),
        )
        is expected
    )
    if windows == sorted(windows, key=lambda w: w.start):
        previous = None if previous_end is None else PreviousWindow(end=previous_end, avg_power_w=100.0)
        result = fill_gaps(windows=windows, previous=previous, counters={})
        assert (result == GapFillResult(windows=windows, gaps=[])) is expected


def test_overlapping_windows_are_not_gaps():
    w1 = window(1, 0, 10, power_w=300)
    w2 = window(2, 8, 18, power_w=300)
    assert fill_gaps(windows=[w1, w2], previous=None, counters={}).gaps == []


def test_several_gaps_in_order():
    ws = [window(1, 0, 10, power_w=100), window(2, 20, 30, power_w=100), window(3, 200, 210, power_w=100)]
    result = fill_gaps(windows=ws, previous=None, counters={})
    assert [g.resolution for g in result.gaps] == [GapResolution.INTERPOLATED, GapResolution.UNFILLED]
    assert [w.seq for w in result.windows] == [1, SYNTHETIC_SEQ, 2, 3]


def test_empty_batch():
    assert fill_gaps(windows=[], previous=None, counters={}) == GapFillResult(windows=[], gaps=[])


def test_fill_gaps_rejects_mixed_devices_and_unsorted():
    w1 = window(1, 0, 10, power_w=100)
    other = GpuWindowIn(**{**w1.__dict__, "device_id": 4, "start": at(20), "end": at(30)})
    with pytest.raises(ValueError):
        fill_gaps(windows=[w1, other], previous=None, counters={})
    with pytest.raises(ValueError):
        fill_gaps(windows=[window(2, 20, 30, power_w=1), w1], previous=None, counters={})
