"""The columnar path: a device's windows as arrays, attributed without a Python object per window.

The columnar raw store keeps one row of arrays per (batch, device) (issue 18), and almost every
window of a series is a single piece: inside one UTC hour, between the same two allocation
edges, with the same process set as its neighbours. Such a run of windows shares one plan (the
holders, their shares and active-energy weights: ``fast._GpuPlan``) and one set of ledger
entries, so its contributions are computed for the whole run by list comprehensions, with the
same expressions as the per-window paths (``fast`` and ``rules``): every contribution is the
same float, and the ledger sums them exactly rounded as before (``ledger._Ledger``), with no
Python object, branch or dictionary lookup per window. Windows that are not single pieces (an
hour boundary or an allocation edge inside) become ``GpuWindowIn`` and take the per-window paths.

``attribute_columns`` is therefore ``attribute`` (``core``) over the same windows, bit for bit:
tests/domain/test_attribution_columnar.py checks it for random inputs against ``attribute`` over
``GpuColumns.windows()``. Input that fails the columnar checks is handed to ``attribute`` whole,
which raises the error it always raised.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from accounting.domain.attribution.core import (
    Attribution,
    _attribute_host_side,
    _checked,
    _counter_covers,
    _sorted_diagnostics,
    attribute,
)
from accounting.domain.attribution.fast import _attribute_gpu_windows, _GpuPlan, _HourCache, _Segments
from accounting.domain.attribution.ledger import _ENERGY_SLOT, Entry, _Ledger
from accounting.domain.attribution.rules import _mig_by_fraction, _mig_measured, _oversubscribed
from accounting.domain.timebase import from_us, to_us
from accounting.domain.types import (
    COVERS_RANK,
    QUALITY_RANK,
    Allocation,
    Diagnostic,
    GpuWindowIn,
    HostWindowIn,
    MigInstanceSample,
    ProcessSample,
    Quality,
)

_HOUR_US = 3_600_000_000
_QUALITY_BY_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}
_MEASURED_RANK = QUALITY_RANK[Quality.MEASURED]
_MEASURED_SLOT = _ENERGY_SLOT[_MEASURED_RANK]
_RANKS = range(len(QUALITY_RANK))
_INF = float("inf")

Run = tuple[int, tuple[ProcessSample, ...], tuple[MigInstanceSample, ...]]


@dataclass(frozen=True, eq=False)
class GpuColumns:
    """One device's windows (of one batch) as equal-length columns, in start order.

    Plain lists, as the database driver returns the stored arrays: the windows of a batch are
    few per device (6 to 240), where a list comprehension costs less than a numpy call.
    ``runs``: (index of the first window, processes, MIG instances) of each run of consecutive
    windows that share one process set and one MIG instance list; the first run starts at 0.
    ``quality_rank``: ``QUALITY_RANK`` of each window's quality."""

    device_id: int
    seq: list[int]
    start_us: list[int]
    end_us: list[int]
    energy_j: list[float]
    avg_power_w: list[float]
    util_pct: list[float]
    quality_rank: list[int]
    idle_power_w: float
    runs: tuple[Run, ...]
    energy_covers: str = "gpu"

    def __len__(self) -> int:
        return len(self.seq)

    def run_ends(self) -> list[int]:
        """The index after the last window of each run."""
        return [first for first, _, _ in self.runs[1:]] + [len(self)]

    def window(self, i: int, processes: tuple[ProcessSample, ...], mig: tuple[MigInstanceSample, ...]) -> GpuWindowIn:
        return GpuWindowIn(
            device_id=self.device_id,
            seq=self.seq[i],
            start=from_us(self.start_us[i]),
            end=from_us(self.end_us[i]),
            energy_j=self.energy_j[i],
            avg_power_w=self.avg_power_w[i],
            util_pct=self.util_pct[i],
            quality=_QUALITY_BY_RANK[self.quality_rank[i]],
            idle_power_w=self.idle_power_w,
            processes=processes,
            mig_instances=mig,
            energy_covers=self.energy_covers,
        )

    def windows(self) -> list[GpuWindowIn]:
        """The same windows as ``GpuWindowIn`` (the per-window form every other path takes)."""
        out: list[GpuWindowIn] = []
        for (first, processes, mig), end in zip(self.runs, self.run_ends(), strict=True):
            out.extend(self.window(i, processes, mig) for i in range(first, end))
        return out


def attribute_columns(
    *,
    gpu_columns: Sequence[GpuColumns],
    gpu_windows: Sequence[GpuWindowIn] = (),
    host_windows: Sequence[HostWindowIn],
    allocations: Sequence[Allocation],
    host_gpu_slots: int,
) -> Attribution:
    """``attribute(gpu_windows=[*gpu_windows, *windows of gpu_columns], ...)``, bit for bit, with
    the columns' single-piece windows attributed a run at a time."""
    if not all(_columns_ok(columns) for columns in gpu_columns):
        return _reference(gpu_columns, gpu_windows, host_windows, allocations, host_gpu_slots)
    host_devices, allocations_by_device = _checked(
        gpu_windows,
        {columns.device_id for columns in gpu_columns if len(columns)},
        host_windows,
        allocations,
        host_gpu_slots,
    )
    ledger = _Ledger()
    diagnostics: list[Diagnostic] = []
    hours = _HourCache()

    # Windows of the columns that are not single pieces take the per-window paths, with the rest.
    others = list(gpu_windows)
    segments_by_device: dict[int, tuple[_Segments, list[int] | None]] = {}
    for columns in gpu_columns:
        if not len(columns):
            continue
        found = segments_by_device.get(columns.device_id)
        if found is None:
            segments = _Segments(allocations_by_device.get(columns.device_id, ()), _GpuPlan)
            edges_us = None if segments.edges is None else [to_us(edge) for edge in segments.edges]
            found = segments_by_device[columns.device_id] = (segments, edges_us)
        _attribute_columns(columns, found[0], found[1], ledger, diagnostics, others)
    _attribute_gpu_windows(others, allocations_by_device, ledger, diagnostics, hours)

    covers = _counter_covers(gpu_windows, hours)
    for columns in gpu_columns:
        _columns_covers(columns, covers)
    if host_windows:
        all_windows: Sequence[GpuWindowIn] = ()
        if any(w.wall_energy_j is not None for w in host_windows):
            # The wall-energy balance matches GPU windows to host windows one by one (rare: a
            # host with a wall meter); it takes them in the per-window form.
            all_windows = [*gpu_windows, *(w for columns in gpu_columns for w in columns.windows())]
        _attribute_host_side(
            host_windows, all_windows, host_devices, host_gpu_slots, allocations_by_device, ledger, diagnostics, hours
        )
    return Attribution(shares=ledger.shares(covers), diagnostics=_sorted_diagnostics(diagnostics))


def _reference(
    gpu_columns: Sequence[GpuColumns],
    gpu_windows: Sequence[GpuWindowIn],
    host_windows: Sequence[HostWindowIn],
    allocations: Sequence[Allocation],
    host_gpu_slots: int,
) -> Attribution:
    return attribute(
        gpu_windows=[*gpu_windows, *(w for columns in gpu_columns for w in columns.windows())],
        host_windows=host_windows,
        allocations=allocations,
        host_gpu_slots=host_gpu_slots,
    )


def _columns_ok(columns: GpuColumns) -> bool:
    """What ``checks._check_gpu_window`` asks of every window, for the columns at once (and the
    shape of the columns themselves: equal lengths, starts in order, runs from 0). False: the
    per-window checks decide (and name the window)."""
    n = len(columns)
    if not n:
        return True
    start_us = columns.start_us
    end_us = columns.end_us
    energy_j = columns.energy_j
    ranks = columns.quality_rank
    if not (
        len(start_us) == len(end_us) == len(energy_j) == len(columns.avg_power_w) == len(columns.util_pct) == n
        and len(ranks) == n
    ):
        return False
    runs = columns.runs
    if not runs or runs[0][0] != 0 or runs[-1][0] >= n or any(b[0] <= a[0] for a, b in itertools.pairwise(runs)):
        return False
    idle = columns.idle_power_w
    if type(idle) is not float or not 0.0 <= idle < _INF or columns.energy_covers not in COVERS_RANK:
        return False
    if not (all(map(operator.gt, end_us, start_us)) and all(map(operator.le, start_us, start_us[1:]))):
        return False
    if not all(type(x) is float for x in energy_j) or not (min(energy_j) >= 0.0 and math.isfinite(sum(energy_j))):
        return False
    if not all(rank in _RANKS and type(rank) is int for rank in ranks):
        return False
    for _, processes, mig in runs:
        for process in processes:
            util = process.sm_util_pct
            if not (type(util) is float and 0.0 <= util < _INF):
                return False
        for instance in mig:
            slices = instance.slices
            if type(slices) is not int or slices < 1:
                return False
            activity = instance.activity
            if activity is not None and not (0.0 <= activity <= 1.0):
                return False
    return True


def _columns_covers(columns: GpuColumns, covers: dict[tuple[int, datetime], str]) -> None:
    """``core._counter_covers`` for the columns: every hour a window overlaps states the widest
    ``energy_covers`` of the device's windows in it (a column has one)."""
    if not len(columns):
        return
    first_hour = columns.start_us[0] // _HOUR_US
    last_hour = (max(columns.end_us) - 1) // _HOUR_US
    if first_hour == last_hour:
        touched: Iterable[int] = (first_hour,)
    else:  # windows in or across several hours: each window's hours
        hours: set[int] = set()
        for start, end in zip(columns.start_us, columns.end_us, strict=True):
            hours.update(range(start // _HOUR_US, (end - 1) // _HOUR_US + 1))
        touched = sorted(hours)
    value = columns.energy_covers
    device = columns.device_id
    for hour in touched:
        key = (device, from_us(hour * _HOUR_US))
        known = covers.get(key)
        if known is None or (known != value and COVERS_RANK[value] > COVERS_RANK[known]):
            covers[key] = value


def _groups(columns: GpuColumns, edges_us: list[int] | None) -> list[tuple[int, int, bool]]:
    """(first, end, single) of each run of consecutive windows that lie in one UTC hour, between
    the same two allocation edges and in one run of process sets, with whether they are single
    pieces (no hour boundary and no allocation edge inside any of them)."""
    start_us = columns.start_us
    end_us = columns.end_us
    bounds = columns.run_ends()
    if edges_us is None:  # allocations on a non-fixed-offset timeline: every window per window
        return [(first, end, False) for (first, _, _), end in zip(columns.runs, bounds, strict=True)]
    hour = start_us[0] - start_us[0] % _HOUR_US
    last_end = max(end_us)
    after = bisect.bisect_right(edges_us, start_us[0])
    if last_end <= hour + _HOUR_US and (after == len(edges_us) or edges_us[after] >= last_end):
        # The usual case: the device's windows lie in one hour between two edges; one group per run.
        return [(first, end, True) for (first, _, _), end in zip(columns.runs, bounds, strict=True)]
    out: list[tuple[int, int, bool]] = []
    key = None
    run = 0
    for i, (start, end) in enumerate(zip(start_us, end_us, strict=True)):
        if i == bounds[run]:
            run += 1
        hour = start - start % _HOUR_US
        after = bisect.bisect_right(edges_us, start)
        single = end <= hour + _HOUR_US and (after == len(edges_us) or edges_us[after] >= end)
        this = (single, after, hour, run)
        if this != key or i == 0:
            out.append((i, i + 1, single))
            key = this
        else:
            out[-1] = (out[-1][0], i + 1, single)
    return out


def _attribute_columns(
    columns: GpuColumns,
    segments: _Segments,
    edges_us: list[int] | None,
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
    others: list[GpuWindowIn],
) -> None:
    """The columns' single-piece windows, group by group (the fast path's arithmetic, with
    fraction_of_window = 1.0 exactly); the others appended to ``others``."""
    start_us = columns.start_us
    end_us = columns.end_us
    idle_power_w = columns.idle_power_w
    piece_s = [(end - start) / 1e6 for start, end in zip(start_us, end_us, strict=True)]  # total_seconds()
    idle_j = [min(energy, idle_power_w * piece) for energy, piece in zip(columns.energy_j, piece_s, strict=True)]
    active_j = [energy - idle for energy, idle in zip(columns.energy_j, idle_j, strict=True)]
    all_measured = max(columns.quality_rank) == _MEASURED_RANK
    device = columns.device_id
    run_index = 0
    bounds = columns.run_ends()
    for a, b, single in _groups(columns, edges_us):
        while a >= bounds[run_index]:
            run_index += 1
        _, processes, mig = columns.runs[run_index]
        if not single:
            others.extend(columns.window(i, processes, mig) for i in range(a, b))
            continue
        found = segments.find(from_us(start_us[a]), from_us(end_us[a]))
        if found is None:  # not reached: the group's windows were found single above
            others.extend(columns.window(i, processes, mig) for i in range(a, b))
            continue
        plan: _GpuPlan = found[2]
        hour = from_us(start_us[a] - start_us[a] % _HOUR_US)
        sinks = plan.sinks.get(hour)
        if sinks is None:
            sinks = plan.sinks[hour] = plan.make_sinks(ledger, device, hour)
        g_idle = idle_j[a:b]
        g_active = active_j[a:b]
        g_piece = piece_s[a:b]
        ranks = None if all_measured else columns.quality_rank[a:b]
        if not plan.jobs:
            idle_entry, active_entry = sinks[0]
            _add(idle_entry, g_idle, None, ranks)
            _add(active_entry, g_active, g_piece, ranks)
            continue
        weights = plan.weights(processes, mig)
        for job_id, share_of_device, idle_entry, active_entry in sinks:
            _add(idle_entry, [idle * share_of_device for idle in g_idle], None, ranks)
            weight = weights[job_id]
            _add(
                active_entry,
                [active * weight for active in g_active],
                [piece * share_of_device for piece in g_piece],
                ranks,
            )
        unheld_fraction = plan.unheld_fraction
        if unheld_fraction > 0.0:
            idle_entry, active_entry = plan.fleet_sinks[hour]
            _add(idle_entry, [idle * unheld_fraction for idle in g_idle], None, ranks)
            _add(active_entry, [0.0] * (b - a), [piece * unheld_fraction for piece in g_piece], ranks)
        mig_by_fraction = bool(mig) and not _mig_measured(mig)
        if plan.oversubscribed or mig_by_fraction:
            for i in range(a, b):
                window = columns.window(i, processes, mig)
                if plan.oversubscribed:
                    diagnostics.append(_oversubscribed(window))
                if mig_by_fraction:
                    diagnostics.append(_mig_by_fraction(window))


def _add(entry: Entry, energy_j: list[float], held_s: list[float] | None, ranks: list[int] | None) -> None:
    """Append contributions to an accumulator entry as the per-window paths do one by one: each
    whose energy or held time is not 0.0 (held 0.0 for ``held_s`` None), its energy to the slot of
    its window's quality (``ranks`` None: all measured), and the worst quality rank."""
    if ranks is None:
        if held_s is None:
            if 0.0 in energy_j:
                energy_j = [energy for energy in energy_j if energy != 0.0]
            held_s = [0.0] * len(energy_j)
        elif 0.0 in energy_j and 0.0 in held_s:
            kept = [(e, h) for e, h in zip(energy_j, held_s, strict=True) if e != 0.0 or h != 0.0]
            energy_j = [e for e, _ in kept]
            held_s = [h for _, h in kept]
        if energy_j:
            entry[_MEASURED_SLOT].extend(energy_j)
            entry[1].extend(held_s)
            if _MEASURED_RANK > entry[2]:
                entry[2] = _MEASURED_RANK
        return
    for energy, held, rank in zip(energy_j, held_s or itertools.repeat(0.0), ranks, strict=False):
        if energy != 0.0 or held != 0.0:
            entry[_ENERGY_SLOT[rank]].append(energy)
            entry[1].append(held)
            if rank > entry[2]:
                entry[2] = rank
