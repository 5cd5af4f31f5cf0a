"""The rules (DESIGN.md §3) as the general path applies them, one window at a time.

A window is cut into pieces at UTC hour boundaries and allocation edges; each piece's idle and
active energy (and held time) goes to the jobs holding the device, or to the fleet-overhead
account; host energy is shared by the GPU slots each job holds, and wall energy nobody measured
is its own component. This is the readable statement of the policy: the fast path (``fast``)
must give exactly the same floats for the windows it takes.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from accounting.domain.attribution.ledger import (
    _FLEET,
    _GPU_ACTIVE,
    _GPU_IDLE,
    _HOST_CPU,
    _HOST_DRAM,
    _HOST_UNMEASURED,
    _JOB,
    _Ledger,
)
from accounting.domain.types import (
    QUALITY_RANK,
    Allocation,
    Diagnostic,
    GpuWindowIn,
    HostWindowIn,
    MigInstanceSample,
    ProcessSample,
)

_HOUR = timedelta(hours=1)


# --- GPU windows ------------------------------------------------------------------------------


def _oversubscribed(window: GpuWindowIn) -> Diagnostic:
    return Diagnostic(
        code="gpu_oversubscribed",
        message=f"allocations on device {window.device_id} hold more than the whole device; normalised pro rata",
        start=window.start,
        end=window.end,
        device_id=window.device_id,
    )


def _mig_by_fraction(window: GpuWindowIn) -> Diagnostic:
    return Diagnostic(
        code="mig_activity_unavailable",
        message=(
            f"MIG device {window.device_id}: no measured activity for every instance; active energy split by "
            "slice fraction"
        ),
        start=window.start,
        end=window.end,
        device_id=window.device_id,
    )


def _mig_measured(instances: Sequence[MigInstanceSample]) -> bool:
    """A MIG window is split by activity only when every instance's activity was measured."""
    return all(instance.activity is not None for instance in instances)


def _attribute_gpu_window(
    window: GpuWindowIn,
    device_allocations: Iterable[Allocation],
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
) -> None:
    """General path: the window cut at hour boundaries and allocation edges."""
    duration = window.end - window.start
    # Catalog idle power x time is what the device draws doing nothing; capped at the measured
    # energy because a window can read below catalog idle (deep idle states, sensor offset).
    idle_j = min(window.energy_j, window.idle_power_w * duration.total_seconds())
    active_j = window.energy_j - idle_j
    relevant = [a for a in device_allocations if _overlaps(a.start, a.end, window.start, window.end)]
    device = window.device_id
    rank = QUALITY_RANK[window.quality]
    oversubscribed = False
    by_fraction_flag = False

    for start, end in _pieces(window.start, window.end, _allocation_edges(relevant)):
        fraction_of_window = (end - start) / duration
        piece_s = (end - start).total_seconds()
        hour = _hour_of(start)
        piece_idle_j = idle_j * fraction_of_window
        piece_active_j = active_j * fraction_of_window
        holders = [a for a in relevant if _covers(a, start, end)]

        if not holders:
            # Nobody holds the device: its energy and its time (the basis of the fleet's
            # embodied charge for idle hardware) go to the fleet-overhead account.
            ledger.add(_FLEET, None, device, _GPU_IDLE, hour, piece_idle_j, 0.0, rank)
            ledger.add(_FLEET, None, device, _GPU_ACTIVE, hour, piece_active_j, piece_s, rank)
            continue

        job_fraction, job_keys = _holders_by_job(holders)
        held_fraction = math.fsum(a.fraction for a in holders)
        if held_fraction > 1.0:
            oversubscribed = True
        # Time-slicing can hand out more than the whole device (oversubscription): holders then
        # share it pro rata, so idle energy and held device-seconds are charged exactly once.
        normaliser = max(held_fraction, 1.0)
        unheld_fraction = max(0.0, 1.0 - held_fraction)

        active_weights = _active_weights(window.processes, job_fraction, job_keys, held_fraction, window.mig_instances)
        if window.mig_instances and not _mig_measured(window.mig_instances):
            by_fraction_flag = True
        for job_id in sorted(job_fraction):
            share_of_device = job_fraction[job_id] / normaliser
            # The holder reserved the device (or its slice), so it pays the idle baseline of
            # what it holds, used or not.
            ledger.add(_JOB, job_id, device, _GPU_IDLE, hour, piece_idle_j * share_of_device, 0.0, rank)
            ledger.add(
                _JOB,
                job_id,
                device,
                _GPU_ACTIVE,
                hour,
                piece_active_j * active_weights[job_id],
                piece_s * share_of_device,
                rank,
            )
        if unheld_fraction > 0.0:
            # Unallocated MIG slices / unreserved share: idle baseline and time to the fleet.
            ledger.add(_FLEET, None, device, _GPU_IDLE, hour, piece_idle_j * unheld_fraction, 0.0, rank)
            ledger.add(_FLEET, None, device, _GPU_ACTIVE, hour, 0.0, piece_s * unheld_fraction, rank)

    if oversubscribed:
        diagnostics.append(_oversubscribed(window))
    if by_fraction_flag:
        diagnostics.append(_mig_by_fraction(window))


def _holders_by_job(holders: Sequence[Allocation]) -> tuple[dict[int, float], dict[int, frozenset[str]]]:
    """A job holding several slices of one device (two MIG instances) is one holder."""
    fractions: dict[int, list[float]] = {}
    keys: dict[int, set[str]] = {}
    for allocation in holders:
        fractions.setdefault(allocation.job_id, []).append(allocation.fraction)
        keys.setdefault(allocation.job_id, set()).update(allocation.job_keys)
    return (
        {job_id: math.fsum(values) for job_id, values in fractions.items()},
        {job_id: frozenset(values) for job_id, values in keys.items()},
    )


def _active_weights(
    processes: Sequence[ProcessSample],
    job_fraction: dict[int, float],
    job_keys: dict[int, frozenset[str]],
    held_fraction: float,
    mig_instances: Sequence[MigInstanceSample] = (),
) -> dict[int, float]:
    """Each holder's share of the window's active energy; the shares sum to 1.

    A GPU in MIG mode (``mig_instances``): active energy follows each instance's measured
    activity x its slices (activity is a ratio of the instance's own engines, so a busy 3g
    instance does three times the work of a busy 1g one), going to the holders whose job keys
    ran on the instance; an instance no holder ran on is treated as an unmatched process below.
    With any instance unmeasured the whole active energy is split by slice fraction (allocation
    fraction), and the caller flags the window (``mig_activity_unavailable``).

    Active energy follows SM utilisation of the processes each job ran. Policy for processes
    that match no holder (key unknown, or the agent mapped them to a job that does not hold
    the device at this time): while the device is held, whatever runs on it is the holders'
    responsibility, so that energy is split among the holders by allocation fraction rather
    than parked on the fleet. With no matched utilisation at all (no per-process data, MIG
    without per-instance counters) the whole active energy is split by fraction.
    """
    by_fraction = {job_id: fraction / held_fraction for job_id, fraction in job_fraction.items()}
    matched: dict[int, list[float]] = {job_id: [] for job_id in job_fraction}
    unmatched: list[float] = []
    if mig_instances:
        if not _mig_measured(mig_instances):
            return by_fraction
        for instance in mig_instances:
            assert instance.activity is not None
            work = instance.activity * instance.slices
            owners = [job_id for job_id in sorted(job_keys) if job_keys[job_id] & instance.job_keys]
            if owners:
                # Several holders on one instance (keys shared, or two jobs in its compute
                # instances) share its work equally, as processes claimed twice do below.
                for job_id in owners:
                    matched[job_id].append(work / len(owners))
            else:
                unmatched.append(work)
        processes = ()
    for process in processes:
        owners = [
            job_id for job_id in sorted(job_keys) if process.job_key is not None and process.job_key in job_keys[job_id]
        ]
        if owners:
            # A key claimed by several holders (a misconfigured scheduler) is shared equally
            # rather than given to whichever allocation happened to come first.
            for job_id in owners:
                matched[job_id].append(process.sm_util_pct / len(owners))
        else:
            unmatched.append(process.sm_util_pct)
    matched_pct = {job_id: math.fsum(values) for job_id, values in matched.items()}
    matched_total_pct = math.fsum(matched_pct.values())
    if matched_total_pct <= 0.0:
        return by_fraction
    unmatched_total_pct = math.fsum(unmatched)
    total_pct = matched_total_pct + unmatched_total_pct
    return {
        job_id: (matched_pct[job_id] + unmatched_total_pct * by_fraction[job_id]) / total_pct for job_id in job_fraction
    }


# --- host windows -----------------------------------------------------------------------------


def _host_components(
    window: HostWindowIn, gpu_index: _WindowIndex, diagnostics: list[Diagnostic]
) -> list[tuple[int, float, int]]:
    """(component, energy, quality rank) of a host window; unmeasured wall energy included."""
    rank = QUALITY_RANK[window.quality]
    components = [(_HOST_CPU, window.cpu_energy_j, rank), (_HOST_DRAM, window.dram_energy_j, rank)]
    if window.wall_energy_j is not None:
        # GPU windows are matched to the host window by time overlap (pro rata, uniform power)
        # rather than by seq, so synthesized gap windows and misaligned windows count too.
        w_start = window.start
        w_end = window.end
        parts = []
        worst = rank
        for g_start, g_end, energy_j, g_rank in gpu_index.candidates(w_start, w_end):
            if not (g_start < w_end and g_end > w_start):
                continue
            if not w_end < g_end and not w_start > g_start:
                # Inside the host window: min()/max() below pick g's own ends, so the ratio
                # is (g.end - g.start) / (g.end - g.start) = 1.0 exactly.
                parts.append(energy_j * 1.0)
            else:
                parts.append(energy_j * ((min(g_end, w_end) - max(g_start, w_start)) / (g_end - g_start)))
            if g_rank > worst:
                worst = g_rank
        gpu_j = math.fsum(parts)
        measured_j = math.fsum((gpu_j, window.cpu_energy_j, window.dram_energy_j))
        unmeasured_j = window.wall_energy_j - measured_j
        if unmeasured_j > 0.0:
            # Wall power nobody explained (fans, PSU loss, NICs, disks) is reported as its own
            # component, shared like the rest of the host; its quality is no better than the
            # worst reading it was derived from.
            components.append((_HOST_UNMEASURED, unmeasured_j, worst))
        elif unmeasured_j < 0.0:
            # The components sum to more than the wall meter: a calibration or alignment problem.
            # Nothing is subtracted from measured components; the discrepancy is reported.
            diagnostics.append(
                Diagnostic(
                    code="wall_below_measured",
                    message=(
                        f"wall energy {window.wall_energy_j!r} J is below GPU + CPU + DRAM {measured_j!r} J "
                        f"in host window seq {window.seq}"
                    ),
                    start=window.start,
                    end=window.end,
                    energy_j=unmeasured_j,
                )
            )
    return components


def _attribute_host_pieces(
    window: HostWindowIn,
    components: list[tuple[int, float, int]],
    host_allocations: Sequence[Allocation],
    slots: int,
    ledger: _Ledger,
) -> None:
    """General path: the host window cut at hour boundaries and allocation edges."""
    duration = window.end - window.start
    relevant = [a for a in host_allocations if _overlaps(a.start, a.end, window.start, window.end)]
    for start, end in _pieces(window.start, window.end, _allocation_edges(relevant)):
        fraction_of_window = (end - start) / duration
        hour = _hour_of(start)
        job_share = _host_shares([a for a in relevant if _covers(a, start, end)], slots)
        overhead_share = max(0.0, 1.0 - math.fsum(job_share.values()))
        for component, energy_j, rank in components:
            piece_j = energy_j * fraction_of_window
            for job_id in sorted(job_share):
                ledger.add(_JOB, job_id, None, component, hour, piece_j * job_share[job_id], 0.0, rank)
            ledger.add(_FLEET, None, None, component, hour, piece_j * overhead_share, 0.0, rank)


def _host_shares(holders: Sequence[Allocation], slots: int) -> dict[int, float]:
    """Policy: a job's share of host energy is the share of the host's GPU slots it holds.

    Fractions are first capped per device (an oversubscribed GPU still counts as one slot),
    then divided by the slot count; what no job holds is the fleet's.
    """
    if slots <= 0:
        return {}
    per_device: dict[int, list[float]] = {}
    for allocation in holders:
        per_device.setdefault(allocation.device_id, []).append(allocation.fraction)
    normaliser = {device: max(1.0, math.fsum(values)) for device, values in per_device.items()}
    shares: dict[int, list[float]] = {}
    for allocation in holders:
        shares.setdefault(allocation.job_id, []).append(allocation.fraction / normaliser[allocation.device_id] / slots)
    return {job_id: math.fsum(values) for job_id, values in shares.items()}


class _WindowIndex:
    """GPU windows by start time, so each host window finds its overlaps without a full scan."""

    def __init__(self, windows: Iterable[GpuWindowIn]) -> None:
        windows = sorted(windows, key=lambda w: w.start)
        # (start, end, energy_j, quality rank) of each window, in start order.
        self._windows = [(w.start, w.end, w.energy_j, QUALITY_RANK[w.quality]) for w in windows]
        self._starts = [w.start for w in windows]
        self._longest = max((w.end - w.start for w in windows), default=timedelta(0))

    def candidates(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, float, int]]:
        """Windows that may overlap [start, end): a superset; the caller tests the overlap."""
        # A window overlapping [start, end) starts before `end` and, being no longer than the
        # longest window, no earlier than `start - longest`.
        low = bisect.bisect_right(self._starts, start - self._longest)
        high = bisect.bisect_left(self._starts, end)
        return self._windows[low:high]


# --- time helpers -----------------------------------------------------------------------------


def _hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _overlaps(start: datetime, end: datetime | None, window_start: datetime, window_end: datetime) -> bool:
    return start < window_end and (end is None or end > window_start)


def _covers(allocation: Allocation, start: datetime, end: datetime) -> bool:
    return allocation.start <= start and (allocation.end is None or allocation.end >= end)


def _allocation_edges(allocations: Iterable[Allocation]) -> list[datetime]:
    edges: list[datetime] = []
    for allocation in allocations:
        edges.append(allocation.start)
        if allocation.end is not None:
            edges.append(allocation.end)
    return edges


def _pieces(start: datetime, end: datetime, edges: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at UTC hour boundaries and at the given edges that fall inside it."""
    cuts = {start, end}
    boundary = _hour_of(start) + _HOUR
    while boundary < end:
        cuts.add(boundary)
        boundary += _HOUR
    cuts.update(edge for edge in edges if start < edge < end)
    ordered = sorted(cuts)
    return list(itertools.pairwise(ordered))
