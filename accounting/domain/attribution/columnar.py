"""The columnar path: a device's windows as arrays, attributed without a Python object per window.

The columnar raw store keeps one row of arrays per (batch, device) (issue 18), and almost every
window of a series is a single piece: inside one UTC hour, between the same two allocation
edges, with the same process set as its neighbours. Such a run of windows shares one plan (the
holders, their shares and active-energy weights: ``fast._GpuPlan``) and one set of ledger
entries, so its contributions are computed for the whole run with numpy, by the same
expressions as the per-window paths (``fast`` and ``rules``): element-wise float64 arithmetic
is IEEE arithmetic, so every contribution is the same float, and the ledger sums them exactly
rounded as before (``ledger._Ledger``). Windows that are not single pieces (an hour boundary or
an allocation edge inside) become ``GpuWindowIn`` and take the general path (``rules``).

``attribute_columns`` is therefore ``attribute`` (``core``) over the same windows, bit for bit:
tests/domain/test_attribution_columnar.py checks it for random inputs against ``attribute`` over
``GpuColumns.windows()``. Input that fails the columnar checks is handed to ``attribute`` whole,
which raises the error it always raised.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from accounting.domain.attribution.checks import (
    _check_allocations,
    _check_gpu_windows,
    _check_host_windows,
    _check_slots,
)
from accounting.domain.attribution.core import (
    Attribution,
    _attribute_host_side,
    _counter_covers,
    _sorted_diagnostics,
    attribute,
)
from accounting.domain.attribution.fast import _attribute_gpu_windows, _GpuPlan, _HourCache, _Segments
from accounting.domain.attribution.ledger import _ENERGY_SLOT, Entry, _Ledger
from accounting.domain.attribution.rules import _mig_by_fraction, _mig_measured, _oversubscribed
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

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_US = 3_600_000_000
_QUALITY_BY_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}
_MEASURED_RANK = QUALITY_RANK[Quality.MEASURED]
_INF = float("inf")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def from_us(micros: int) -> datetime:
    """Integer microseconds since the Unix epoch as an aware UTC datetime (exact)."""
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, eq=False)
class GpuColumns:
    """One device's windows (of one batch) as equal-length arrays, in start order.

    ``runs``: (index of the first window, processes, MIG instances) of each run of consecutive
    windows that share one process set and one MIG instance list; the first run starts at 0.
    ``quality_rank``: ``QUALITY_RANK`` of each window's quality."""

    device_id: int
    seq: IntArray
    start_us: IntArray
    end_us: IntArray
    energy_j: FloatArray
    avg_power_w: FloatArray
    util_pct: FloatArray
    quality_rank: npt.NDArray[np.int8]
    idle_power_w: float
    runs: tuple[tuple[int, tuple[ProcessSample, ...], tuple[MigInstanceSample, ...]], ...]
    energy_covers: str = "gpu"

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def run_ends(self) -> list[int]:
        """The index after the last window of each run."""
        return [first for first, _, _ in self.runs[1:]] + [len(self)]

    def window(self, i: int, processes: tuple[ProcessSample, ...], mig: tuple[MigInstanceSample, ...]) -> GpuWindowIn:
        return GpuWindowIn(
            device_id=self.device_id,
            seq=int(self.seq[i]),
            start=from_us(int(self.start_us[i])),
            end=from_us(int(self.end_us[i])),
            energy_j=float(self.energy_j[i]),
            avg_power_w=float(self.avg_power_w[i]),
            util_pct=float(self.util_pct[i]),
            quality=_QUALITY_BY_RANK[int(self.quality_rank[i])],
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
    the columns' single-piece windows attributed as arrays."""
    if not all(_columns_ok(columns) for columns in gpu_columns):
        return _reference(gpu_columns, gpu_windows, host_windows, allocations, host_gpu_slots)
    _check_slots(host_gpu_slots)
    host_devices = _check_gpu_windows(gpu_windows)
    host_devices.update(columns.device_id for columns in gpu_columns if len(columns))
    _check_host_windows(host_windows)
    _check_allocations(allocations)

    ledger = _Ledger()
    diagnostics: list[Diagnostic] = []
    hours = _HourCache()
    allocations_by_device: dict[int, list[Allocation]] = {}
    for allocation in allocations:
        if allocation.device_id in host_devices:
            allocations_by_device.setdefault(allocation.device_id, []).append(allocation)

    # Windows of the columns that are not single pieces take the per-window paths, with the rest.
    others = list(gpu_windows)
    segments_by_device: dict[int, _Segments] = {}
    for columns in gpu_columns:
        if not len(columns):
            continue
        segments = segments_by_device.get(columns.device_id)
        if segments is None:
            segments = segments_by_device[columns.device_id] = _Segments(
                allocations_by_device.get(columns.device_id, ()), _GpuPlan
            )
        _attribute_columns(columns, segments, ledger, diagnostics, others)
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
    """What ``checks._check_gpu_window`` asks of every window, over the arrays at once (and the
    shape of the columns themselves). False: the per-window checks decide (and name the window)."""
    n = len(columns)
    if not n:
        return True
    if not all(
        array.shape == (n,)
        for array in (
            columns.start_us,
            columns.end_us,
            columns.energy_j,
            columns.avg_power_w,
            columns.util_pct,
            columns.quality_rank,
        )
    ):
        return False
    if not columns.runs or columns.runs[0][0] != 0:
        return False
    firsts = [first for first, _, _ in columns.runs]
    if any(b <= a for a, b in itertools.pairwise(firsts)) or firsts[-1] >= n:
        return False
    idle = columns.idle_power_w
    if type(idle) is not float or not 0.0 <= idle < _INF or columns.energy_covers not in COVERS_RANK:
        return False
    if not (bool(np.all(columns.end_us > columns.start_us)) and bool(np.all(np.diff(columns.start_us) >= 0))):
        return False
    energy = columns.energy_j
    if not bool(np.all((energy >= 0.0) & (energy < _INF))):
        return False
    if not bool(np.all((columns.quality_rank >= 0) & (columns.quality_rank < len(QUALITY_RANK)))):
        return False
    for _, processes, mig in columns.runs:
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
    value = columns.energy_covers
    first_hour = int(columns.start_us[0]) // _HOUR_US
    last_hour = (int(columns.end_us.max()) - 1) // _HOUR_US
    starts = columns.start_us // _HOUR_US
    ends = (columns.end_us - 1) // _HOUR_US
    if last_hour - first_hour < 4:
        hours = range(first_hour, last_hour + 1)
        touched = [h for h in hours if bool(np.any((starts <= h) & (ends >= h)))]
    else:  # a long gap-free span is rare; windows spanning hours even more
        touched_set: set[int] = set(np.unique(starts).tolist())
        for s, e in zip(starts[ends > starts].tolist(), ends[ends > starts].tolist(), strict=True):
            touched_set.update(range(s, e + 1))
        touched = sorted(touched_set)
    device = columns.device_id
    for h in touched:
        key = (device, from_us(h * _HOUR_US))
        known = covers.get(key)
        if known is None or (known != value and COVERS_RANK[value] > COVERS_RANK[known]):
            covers[key] = value


def _attribute_columns(
    columns: GpuColumns,
    segments: _Segments,
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
    others: list[GpuWindowIn],
) -> None:
    """The columns' single-piece windows, run by run; the others appended to ``others``."""
    start_us = columns.start_us
    end_us = columns.end_us
    hour_us = start_us - start_us % _HOUR_US
    single = end_us <= hour_us + _HOUR_US  # no UTC hour boundary inside the window
    if segments.edges is None:  # allocations on a non-fixed-offset timeline: all per window
        single[:] = False
        after = np.zeros(len(columns), dtype=np.int64)
    elif segments.edges:
        edges_us = np.array([to_us(edge) for edge in segments.edges], dtype=np.int64)
        after = np.searchsorted(edges_us, start_us, side="right")  # first edge > start
        next_edge = np.append(edges_us, np.iinfo(np.int64).max)[after]
        single &= ~(next_edge < end_us)  # no allocation edge inside the window
    else:
        after = np.zeros(len(columns), dtype=np.int64)
    # Groups: consecutive windows with the same (single, edge gap, hour, run).
    n = len(columns)
    run_id = np.zeros(n, dtype=np.int64)
    for index, (first, _, _) in enumerate(columns.runs[1:], start=1):
        run_id[first:] = index
    change = np.flatnonzero(
        (single[1:] != single[:-1])
        | (after[1:] != after[:-1])
        | (hour_us[1:] != hour_us[:-1])
        | (run_id[1:] != run_id[:-1])
    )
    bounds = [0, *(change + 1).tolist(), n]
    piece_s = (end_us - start_us) / 1e6  # timedelta.total_seconds(): exact int, one rounding
    energy_j = columns.energy_j
    idle_j = np.minimum(energy_j, columns.idle_power_w * piece_s)
    active_j = energy_j - idle_j
    ranks = columns.quality_rank
    for a, b in itertools.pairwise(bounds):
        _, processes, mig = columns.runs[int(run_id[a])]
        if not single[a]:
            others.extend(columns.window(i, processes, mig) for i in range(a, b))
            continue
        first_start = from_us(int(start_us[a]))
        found = segments.find(first_start, from_us(int(end_us[a])))
        if found is None:  # not reached: the group's windows were found single above
            others.extend(columns.window(i, processes, mig) for i in range(a, b))
            continue
        plan: _GpuPlan = found[2]
        hour = from_us(int(hour_us[a]))
        sinks = plan.sinks.get(hour)
        device = columns.device_id
        if sinks is None:
            sinks = plan.sinks[hour] = plan.make_sinks(ledger, device, hour)
        g_idle = idle_j[a:b]
        g_active = active_j[a:b]
        g_piece = piece_s[a:b]
        g_rank = ranks[a:b]
        if not plan.jobs:
            idle_entry, active_entry = sinks[0]
            _add(idle_entry, g_idle, None, g_rank, g_idle != 0.0)
            _add(active_entry, g_active, g_piece, g_rank, None)  # piece_s > 0: every window
            continue
        weights = plan.weights(processes, mig)
        for job_id, share_of_device, idle_entry, active_entry in sinks:
            energy = g_idle * share_of_device
            _add(idle_entry, energy, None, g_rank, energy != 0.0)
            energy = g_active * weights[job_id]
            held = g_piece * share_of_device
            _add(active_entry, energy, held, g_rank, (energy != 0.0) | (held != 0.0))
        unheld_fraction = plan.unheld_fraction
        if unheld_fraction > 0.0:
            idle_entry, active_entry = plan.fleet_sinks[hour]
            energy = g_idle * unheld_fraction
            _add(idle_entry, energy, None, g_rank, energy != 0.0)
            held = g_piece * unheld_fraction
            _add(active_entry, np.zeros(b - a), held, g_rank, held != 0.0)
        if plan.oversubscribed or (mig and not _mig_measured(mig)):
            for i in range(a, b):
                window = columns.window(i, processes, mig)
                if plan.oversubscribed:
                    diagnostics.append(_oversubscribed(window))
                if mig and not _mig_measured(mig):
                    diagnostics.append(_mig_by_fraction(window))


def _add(
    entry: Entry,
    energy_j: FloatArray,
    held_s: FloatArray | None,
    ranks: npt.NDArray[np.int8],
    used: npt.NDArray[np.bool_] | None,
) -> None:
    """Append the contributions where ``used`` (all if None) to an accumulator entry, as the
    per-window paths append them one by one: energy to the slot of its window's quality, held
    seconds (0.0 for ``held_s`` None), and the worst quality rank."""
    if used is not None and not bool(used.all()):
        energy_j = energy_j[used]
        held_s = None if held_s is None else held_s[used]
        ranks = ranks[used]
    count = int(energy_j.shape[0])
    if not count:
        return
    measured = ranks == _MEASURED_RANK
    if bool(measured.all()):
        entry[_ENERGY_SLOT[_MEASURED_RANK]].extend(energy_j.tolist())
    elif not bool(measured.any()):
        entry[3].extend(energy_j.tolist())
    else:
        entry[_ENERGY_SLOT[_MEASURED_RANK]].extend(energy_j[measured].tolist())
        entry[3].extend(energy_j[~measured].tolist())
    if held_s is None:
        entry[1].extend(itertools.repeat(0.0, count))
    else:
        entry[1].extend(held_s.tolist())
    worst = int(ranks.max())
    if worst > entry[2]:
        entry[2] = worst


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
