"""GPU energy per window: NVML counter deltas, trapezoidal integration and gap filling.

Pure: stdlib only, time is always an argument.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from accounting.domain.types import (
    SYNTHETIC_SEQ,
    Gap,
    GapResolution,
    GpuWindowIn,
    PreviousWindow,
    Quality,
)


def facility_energy_j(*, it_energy_j: float, pue: float) -> float:
    """Facility overhead energy: ``(PUE − 1) × IT energy`` (DESIGN.md §3), the one PUE rule.

    The ledger's facility lines, every what-if scenario and the dashboard's place shift apply
    PUE through this (total energy = IT energy + this)."""
    return (pue - 1.0) * it_energy_j


# nvmlDeviceGetTotalEnergyConsumption returns an unsigned long long (mJ since driver load).
_U64_MAX = 2**64 - 1

# mJ per J.
_MJ_PER_J = 1000.0


def counter_delta_j(*, prev_mj: int, curr_mj: int) -> tuple[float, bool]:
    """Energy between two reads of the NVML total-energy counter, and whether it was reset.

    A decrease means the counter restarted from zero (driver reload, GPU reset, reboot), so the
    energy since the reset is ``curr_mj`` itself; what was drawn between ``prev_mj`` and the
    reset is lost and is not guessed here. A decrease is never read as an unsigned 64-bit wrap:
    2**64 mJ is 1.8e16 J, which at 1 kW (above any single GPU's board power) takes ~585,000
    years to accumulate.
    """
    for name, value in (("prev_mj", prev_mj), ("curr_mj", curr_mj)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int (NVML reports whole millijoules), got {value!r}")
        if not 0 <= value <= _U64_MAX:
            raise ValueError(f"{name}={value} is outside the unsigned 64-bit counter range")
    if curr_mj < prev_mj:
        return curr_mj / _MJ_PER_J, True
    return (curr_mj - prev_mj) / _MJ_PER_J, False


def trapezoid_j(samples: Sequence[tuple[float, float]]) -> float:
    """Energy (J) from ``(t_s, power_w)`` samples by the trapezoidal rule.

    Fewer than two samples span no time, so they integrate to 0 J. Samples must be strictly
    increasing in time: a duplicate or out-of-order timestamp means the caller did not
    de-duplicate or sort, and integrating anyway would silently add or cancel energy.
    """
    previous: tuple[float, float] | None = None
    total: list[float] = []
    for index, (t_s, power_w) in enumerate(samples):
        if not (math.isfinite(t_s) and math.isfinite(power_w)):
            raise ValueError(f"sample {index} is not finite: t_s={t_s!r}, power_w={power_w!r}")
        if power_w < 0:
            raise ValueError(f"sample {index} has negative power {power_w!r} W")
        if previous is not None:
            prev_t, prev_w = previous
            if t_s <= prev_t:
                raise ValueError(f"sample {index} at t={t_s!r}s is not after the previous sample at t={prev_t!r}s")
            total.append((t_s - prev_t) * (prev_w + power_w) / 2.0)
        previous = (t_s, power_w)
    return math.fsum(total)


# The gap rule: a window that starts at or before its predecessor's end (touching, or
# overlapping: clock skew, a re-sent window) leaves no gap; one that starts after it does.
_NO_GAP_BETWEEN = operator.le  # (right start, left end)

_Instant = TypeVar("_Instant", int, datetime)


def gapless(*, starts: Sequence[_Instant], ends: Sequence[_Instant], previous_end: _Instant | None = None) -> bool:
    """Whether ``fill_gaps`` returns one device's windows unchanged: in start order, none
    starting after its predecessor (or, for the first, the device's previous window,
    ``previous_end``) ended. Instants as datetimes, or as integer microseconds (the columnar
    form) in all three arguments."""
    if not starts:
        return True
    if previous_end is not None and not _NO_GAP_BETWEEN(starts[0], previous_end):
        return False
    return all(map(_NO_GAP_BETWEEN, starts[1:], ends)) and all(map(operator.le, starts, starts[1:]))


@dataclass(frozen=True)
class GapFillResult:
    windows: list[GpuWindowIn]  # the input windows plus synthesized ones, sorted by start
    gaps: list[Gap]


def fill_gaps(
    *,
    windows: Sequence[GpuWindowIn],
    previous: PreviousWindow | None,
    counters: Mapping[int, int | None],
    max_interpolate_s: float = 60.0,
) -> GapFillResult:
    """Fill the holes between one device's consecutive windows, never inventing energy.

    ``counters`` maps a window's seq to the NVML counter (mJ) read at its end. For each gap
    (a window starting after its predecessor ended):

    1. Counter: if both neighbours' counters are known and did not go backwards, the counter
       moved by the gap's energy plus the right neighbour's, so the gap gets
       ``(counter_next - counter_prev) / 1000 - next.energy_j`` as a MEASURED window (when that
       is not negative: a negative value means the two sources disagree, so it is not used).
    2. Interpolation: a gap no longer than ``max_interpolate_s`` gets the mean of the
       neighbours' average power over its length, as an INTERPOLATED window.
    3. Otherwise the gap is reported UNFILLED with no window: the energy is unknown, and a
       long gap (agent down, host off) may not have drawn neighbour power at all.

    Synthesized windows carry seq ``SYNTHETIC_SEQ``, no processes (nobody was observed), the
    right neighbour's catalog idle power and the mean neighbour utilisation. Overlapping
    windows (clock skew, re-sent windows) are not gaps and are passed through untouched.
    """
    if not math.isfinite(max_interpolate_s) or max_interpolate_s < 0:
        raise ValueError(f"max_interpolate_s must be finite and >= 0, got {max_interpolate_s!r}")
    if not windows:
        return GapFillResult(windows=[], gaps=[])
    device_id = windows[0].device_id
    for before, after in itertools.pairwise(windows):
        if after.device_id != device_id:
            raise ValueError(f"fill_gaps takes one device's windows; got devices {device_id} and {after.device_id}")
        if after.start < before.start:
            raise ValueError(f"windows must be sorted by start: seq {after.seq} starts before seq {before.seq}")
    if gapless(
        starts=[w.start for w in windows],
        ends=[w.end for w in windows],
        previous_end=None if previous is None else previous.end,
    ):
        return GapFillResult(windows=list(windows), gaps=[])

    out: list[GpuWindowIn] = []
    gaps: list[Gap] = []
    if previous is not None:
        first = windows[0]
        _fill_one(
            left_end=previous.end,
            left_power_w=previous.avg_power_w,
            left_util_pct=previous.util_pct if previous.util_pct is not None else first.util_pct,
            left_counter_mj=previous.counter_mj,
            right=first,
            right_counter_mj=counters.get(first.seq),
            max_interpolate_s=max_interpolate_s,
            out=out,
            gaps=gaps,
        )
    out.append(windows[0])
    for before, after in itertools.pairwise(windows):
        _fill_one(
            left_end=before.end,
            left_power_w=before.avg_power_w,
            left_util_pct=before.util_pct,
            left_counter_mj=counters.get(before.seq),
            right=after,
            right_counter_mj=counters.get(after.seq),
            max_interpolate_s=max_interpolate_s,
            out=out,
            gaps=gaps,
        )
        out.append(after)
    return GapFillResult(windows=out, gaps=gaps)


def _fill_one(
    *,
    left_end: datetime,
    left_power_w: float,
    left_util_pct: float,
    left_counter_mj: int | None,
    right: GpuWindowIn,
    right_counter_mj: int | None,
    max_interpolate_s: float,
    out: list[GpuWindowIn],
    gaps: list[Gap],
) -> None:
    if _NO_GAP_BETWEEN(right.start, left_end):
        return
    gap_s = (right.start - left_end).total_seconds()
    energy_j: float | None = None
    resolution = GapResolution.UNFILLED
    quality = Quality.INTERPOLATED
    if left_counter_mj is not None and right_counter_mj is not None and right_counter_mj >= left_counter_mj:
        across_j = (right_counter_mj - left_counter_mj) / _MJ_PER_J - right.energy_j
        if across_j >= 0:
            energy_j, resolution, quality = across_j, GapResolution.COUNTER, Quality.MEASURED
    if energy_j is None and gap_s <= max_interpolate_s:
        energy_j = (left_power_w + right.avg_power_w) / 2.0 * gap_s
        resolution = GapResolution.INTERPOLATED
    gaps.append(
        Gap(
            device_id=right.device_id,
            start=left_end,
            end=right.start,
            duration_s=gap_s,
            resolution=resolution,
            energy_j=energy_j,
        )
    )
    if energy_j is None:
        return
    out.append(
        replace(
            right,
            seq=SYNTHETIC_SEQ,
            start=left_end,
            end=right.start,
            energy_j=energy_j,
            avg_power_w=energy_j / gap_s,
            util_pct=(left_util_pct + right.util_pct) / 2.0,
            quality=quality,
            processes=(),
        )
    )
