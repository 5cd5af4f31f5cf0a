"""Attribution of measured energy to accounts: every joule lands on exactly one job or the fleet.

Pure: stdlib only, time is always an argument. The policies (DESIGN.md §3) are declared where
they are applied; the invariant the tests hold is conservation:

    Σ shares.energy_j == Σ gpu energy_j + Σ (cpu + dram) + Σ max(0, wall − measured)

Sums are taken with ``math.fsum`` (exactly rounded, so independent of summation order), which
makes the output bit-identical for any ordering of the inputs.

Performance (docs/performance.md, "Domain attribution micro-benchmark"): a window is cut into
pieces at UTC hour boundaries and allocation edges. Almost every window is a single piece (no
hour boundary, no allocation starting or ending inside it), so that case takes a fast path:
the holders of the device are found once per run of allocation edges (not per window), their
fractions, shares and the active-energy weights of a process set are computed once, and the
contributions are appended straight to the accumulator entries of the (account, job, device,
component, hour) keys. Every contribution is the same float, computed by the same expression
(fraction of window = 1.0 exactly for a single piece), as on the general path, which is kept
for everything else; tests/domain/test_attribution_fastpath.py checks the output against a
frozen copy of the original implementation.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from accounting.domain.types import (
    QUALITY_RANK,
    Account,
    Allocation,
    Component,
    Diagnostic,
    EnergyShare,
    GpuWindowIn,
    HostWindowIn,
    ProcessSample,
    Quality,
)

_HOUR = timedelta(hours=1)
_INF = math.inf
_COMPONENT_ORDER = {component: index for index, component in enumerate(Component)}
_COMPONENTS = list(Component)
_QUALITY_BY_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}
# Where a contribution's energy goes in its accumulator entry, by the quality rank of the window
# it came from: measured energy apart from the rest (see _Ledger).
_ENERGY_SLOT = tuple(0 if _QUALITY_BY_RANK[rank] is Quality.MEASURED else 3 for rank in range(len(QUALITY_RANK)))

# Accumulator keys use small ints for account and component. Account codes follow the order
# of ``Account.value`` (the output sort order); component codes are _COMPONENT_ORDER.
_ACCOUNTS = sorted(Account, key=lambda account: account.value)
_ACCOUNT_CODE = {account: code for code, account in enumerate(_ACCOUNTS)}
_JOB = _ACCOUNT_CODE[Account.JOB]
_FLEET = _ACCOUNT_CODE[Account.FLEET_OVERHEAD]
_GPU_ACTIVE = _COMPONENT_ORDER[Component.GPU_ACTIVE]
_GPU_IDLE = _COMPONENT_ORDER[Component.GPU_IDLE]
_HOST_CPU = _COMPONENT_ORDER[Component.HOST_CPU]
_HOST_DRAM = _COMPONENT_ORDER[Component.HOST_DRAM]
_HOST_UNMEASURED = _COMPONENT_ORDER[Component.HOST_UNMEASURED]


@dataclass(frozen=True)
class Attribution:
    shares: list[EnergyShare]  # sorted by (hour, account, job_id, device_id, component)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def attribute(
    *,
    gpu_windows: Sequence[GpuWindowIn],
    host_windows: Sequence[HostWindowIn],
    allocations: Sequence[Allocation],
    host_gpu_slots: int,
) -> Attribution:
    """Split one host's GPU and host energy into shares per (account, job, device, component, hour).

    ``gpu_windows`` are the host's GPU windows (gap-filled or not); the devices they name are
    the host's GPUs, and allocations of any other device are ignored. ``host_gpu_slots`` is the
    host's GPU count from the inventory, the denominator of each job's share of host energy.
    """
    _check_slots(host_gpu_slots)
    host_devices = _check_gpu_windows(gpu_windows)
    _check_host_windows(host_windows)
    _check_allocations(allocations)

    ledger = _Ledger()
    diagnostics: list[Diagnostic] = []
    hours = _HourCache()

    allocations_by_device: dict[int, list[Allocation]] = {}
    for allocation in allocations:
        if allocation.device_id in host_devices:
            allocations_by_device.setdefault(allocation.device_id, []).append(allocation)

    _attribute_gpu_windows(gpu_windows, allocations_by_device, ledger, diagnostics, hours)

    if host_windows:
        # More GPUs reporting than the inventory says the host has: divide by what is really
        # there, so no job is charged more than the whole host, and say so.
        slots = max(host_gpu_slots, len(host_devices))
        if slots > host_gpu_slots:
            diagnostics.append(
                Diagnostic(
                    code="host_slots_exceeded",
                    message=(
                        f"{len(host_devices)} GPUs reported windows but the host has {host_gpu_slots} GPU slots; "
                        f"host energy shared over {slots} slots"
                    ),
                    start=min(w.start for w in host_windows),
                    end=max(w.end for w in host_windows),
                )
            )
        host_allocations = [a for device_allocations in allocations_by_device.values() for a in device_allocations]
        # The index serves only the wall-energy balance: not built when no host window has one.
        needs_index = any(w.wall_energy_j is not None for w in host_windows)
        gpu_index = _WindowIndex(gpu_windows if needs_index else ())
        _attribute_host_windows(host_windows, gpu_index, host_allocations, slots, ledger, diagnostics, hours)

    diagnostics.sort(
        key=lambda d: (
            d.start,
            d.end,
            d.code,
            -1 if d.device_id is None else d.device_id,
            0.0 if d.energy_j is None else d.energy_j,
            d.message,
        )
    )
    return Attribution(shares=ledger.shares(), diagnostics=diagnostics)


# --- GPU windows ------------------------------------------------------------------------------


def _attribute_gpu_windows(
    gpu_windows: Sequence[GpuWindowIn],
    allocations_by_device: dict[int, list[Allocation]],
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
    hours: _HourCache,
) -> None:
    """Every GPU window: single-piece windows on the fast path, the rest on the general one."""
    devices: dict[int, _Segments] = {}
    # Per device, the last single-piece range found: (from, to, plan, hour, sinks). A window
    # with from <= start and end <= to lies inside one hour and between the same two
    # allocation edges as the window that found it, so the same plan and hour apply.
    fits: dict[int, tuple] = {}
    for window in gpu_windows:
        device = window.device_id
        start = window.start
        end = window.end
        fixed = type(start.tzinfo) is timezone and type(end.tzinfo) is timezone
        fit = fits.get(device) if fixed else None
        if fit is None or start < fit[0] or fit[1] < end:
            segments = devices.get(device)
            if segments is None:
                segments = devices[device] = _Segments(allocations_by_device.get(device, ()), _GpuPlan)
            fit = None
            if fixed and segments.edges is not None:
                hour, hour_end = hours.of(start)
                if not hour_end < end:  # no UTC hour boundary inside the window
                    found = segments.find(start, end)
                    if found is not None:
                        low, high, plan = found
                        sinks = plan.sinks.get(hour)
                        if sinks is None:
                            sinks = plan.sinks[hour] = plan.make_sinks(ledger, device, hour)
                        fit = fits[device] = (
                            hour if low is None else max(low, hour),
                            hour_end if high is None else min(high, hour_end),
                            plan,
                            hour,
                            sinks,
                        )
            if fit is None:
                _attribute_gpu_window(window, segments.allocations, ledger, diagnostics)
                continue
        _, _, plan, hour, sinks = fit

        # The single piece [start, end): the general path's arithmetic with fraction_of_window
        # = (end - start) / duration = 1.0 exactly.
        piece_s = (end - start).total_seconds()
        idle_j = min(window.energy_j, window.idle_power_w * piece_s)
        active_j = window.energy_j - idle_j
        piece_idle_j = idle_j * 1.0
        piece_active_j = active_j * 1.0
        rank = QUALITY_RANK[window.quality]
        slot = _ENERGY_SLOT[rank]

        if not plan.jobs:
            # Nobody holds the device: its energy and its time to the fleet-overhead account.
            idle_entry, active_entry = sinks[0]
            if piece_idle_j != 0.0:
                idle_entry[slot].append(piece_idle_j)
                idle_entry[1].append(0.0)
                if rank > idle_entry[2]:
                    idle_entry[2] = rank
            if piece_active_j != 0.0 or piece_s != 0.0:
                active_entry[slot].append(piece_active_j)
                active_entry[1].append(piece_s)
                if rank > active_entry[2]:
                    active_entry[2] = rank
            continue

        processes = window.processes
        if processes is plan.last_processes:
            weights = plan.last_weights
        else:
            weights = plan.weights(processes)
        for job_id, share_of_device, idle_entry, active_entry in sinks:
            energy_j = piece_idle_j * share_of_device
            if energy_j != 0.0:
                idle_entry[slot].append(energy_j)
                idle_entry[1].append(0.0)
                if rank > idle_entry[2]:
                    idle_entry[2] = rank
            energy_j = piece_active_j * weights[job_id]
            held_s = piece_s * share_of_device
            if energy_j != 0.0 or held_s != 0.0:
                active_entry[slot].append(energy_j)
                active_entry[1].append(held_s)
                if rank > active_entry[2]:
                    active_entry[2] = rank
        unheld_fraction = plan.unheld_fraction
        if unheld_fraction > 0.0:
            idle_entry, active_entry = plan.fleet_sinks[hour]
            energy_j = piece_idle_j * unheld_fraction
            if energy_j != 0.0:
                idle_entry[slot].append(energy_j)
                idle_entry[1].append(0.0)
                if rank > idle_entry[2]:
                    idle_entry[2] = rank
            held_s = piece_s * unheld_fraction
            if held_s != 0.0:
                active_entry[slot].append(0.0)
                active_entry[1].append(held_s)
                if rank > active_entry[2]:
                    active_entry[2] = rank
        if plan.oversubscribed:
            diagnostics.append(_oversubscribed(window))


class _GpuPlan:
    """The holders of a device over a run of windows between allocation edges, and what follows.

    Computed once per (device, run) instead of once per window; each value is the general
    path's expression over the same holders.
    """

    __slots__ = (
        "_weights",
        "fleet_sinks",
        "held_fraction",
        "job_fraction",
        "job_keys",
        "jobs",
        "last_processes",
        "last_weights",
        "oversubscribed",
        "share_of_device",
        "sinks",
        "unheld_fraction",
    )

    def __init__(self, holders: Sequence[Allocation]) -> None:
        self.sinks: dict[datetime, list] = {}
        self.fleet_sinks: dict[datetime, tuple[list, list]] = {}
        self._weights: dict[int, tuple[object, dict[int, float]]] = {}
        self.last_processes: object = None  # the last tuple weighed, and its weights
        self.last_weights: dict[int, float] = {}
        if not holders:
            self.jobs: list[int] = []
            self.oversubscribed = False
            return
        self.job_fraction, self.job_keys = _holders_by_job(holders)
        self.held_fraction = math.fsum(a.fraction for a in holders)
        self.oversubscribed = self.held_fraction > 1.0
        normaliser = max(self.held_fraction, 1.0)
        self.unheld_fraction = max(0.0, 1.0 - self.held_fraction)
        self.jobs = sorted(self.job_fraction)
        self.share_of_device = {job_id: self.job_fraction[job_id] / normaliser for job_id in self.jobs}

    def make_sinks(self, ledger: _Ledger, device: int, hour: datetime) -> list:
        entry = ledger.entry
        if not self.jobs:
            return [
                (
                    entry(_FLEET, None, device, _GPU_IDLE, hour),
                    entry(_FLEET, None, device, _GPU_ACTIVE, hour),
                )
            ]
        if self.unheld_fraction > 0.0:
            self.fleet_sinks[hour] = (
                entry(_FLEET, None, device, _GPU_IDLE, hour),
                entry(_FLEET, None, device, _GPU_ACTIVE, hour),
            )
        return [
            (
                job_id,
                self.share_of_device[job_id],
                entry(_JOB, job_id, device, _GPU_IDLE, hour),
                entry(_JOB, job_id, device, _GPU_ACTIVE, hour),
            )
            for job_id in self.jobs
        ]

    def weights(self, processes: Sequence[ProcessSample]) -> dict[int, float]:
        # Windows of a device usually share one processes tuple (the mapper memoises it): keyed
        # by identity, the tuple kept alive in the cache so its id cannot be reused.
        cached = self._weights.get(id(processes))
        if cached is not None and cached[0] is processes:
            weights = cached[1]
        else:
            weights = _active_weights(processes, self.job_fraction, self.job_keys, self.held_fraction)
            self._weights[id(processes)] = (processes, weights)
        self.last_processes = processes
        self.last_weights = weights
        return weights


def _oversubscribed(window: GpuWindowIn) -> Diagnostic:
    return Diagnostic(
        code="gpu_oversubscribed",
        message=f"allocations on device {window.device_id} hold more than the whole device; normalised pro rata",
        start=window.start,
        end=window.end,
        device_id=window.device_id,
    )


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

        active_weights = _active_weights(window.processes, job_fraction, job_keys, held_fraction)
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
) -> dict[int, float]:
    """Each holder's share of the window's active energy; the shares sum to 1.

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


def _attribute_host_windows(
    host_windows: Sequence[HostWindowIn],
    gpu_index: _WindowIndex,
    host_allocations: Sequence[Allocation],
    slots: int,
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
    hours: _HourCache,
) -> None:
    """Every host window: single-piece windows on the fast path, the rest on the general one."""
    segments = _Segments(host_allocations, _HostPlan)
    fit = None  # (from, to, sinks): as for GPU windows, the last single-piece range found
    for window in host_windows:
        start = window.start
        end = window.end
        fixed = type(start.tzinfo) is timezone and type(end.tzinfo) is timezone
        if not fixed or fit is None or start < fit[0] or fit[1] < end:
            fit = None
            if fixed and segments.edges is not None:
                hour, hour_end = hours.of(start)
                if not hour_end < end:  # no UTC hour boundary inside the window
                    found = segments.find(start, end)
                    if found is not None:
                        low, high, plan = found
                        fit = (
                            hour if low is None else max(low, hour),
                            hour_end if high is None else min(high, hour_end),
                            plan.sinks_for(ledger, slots, hour),
                        )
        components = _host_components(window, gpu_index, diagnostics)
        if fit is None:
            _attribute_host_pieces(window, components, host_allocations, slots, ledger)
            continue

        # The single piece: fraction_of_window = 1.0 exactly, as on the general path.
        sinks = fit[2]
        for component, energy_j, rank in components:
            piece_j = energy_j * 1.0
            slot = _ENERGY_SLOT[rank]
            for share, entry in sinks[component]:
                value = piece_j * share
                if value != 0.0:
                    entry[slot].append(value)
                    entry[1].append(0.0)
                    if rank > entry[2]:
                        entry[2] = rank


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


class _HostPlan:
    """Each job's share of the host over a run of host windows between allocation edges."""

    __slots__ = ("_holders", "_sinks")

    def __init__(self, holders: Sequence[Allocation]) -> None:
        self._holders = holders
        self._sinks: dict[datetime, dict[int, list]] = {}

    def sinks_for(self, ledger: _Ledger, slots: int, hour: datetime) -> dict[int, list]:
        sinks = self._sinks.get(hour)
        if sinks is None:
            job_share = _host_shares(self._holders, slots)
            overhead_share = max(0.0, 1.0 - math.fsum(job_share.values()))
            entry = ledger.entry
            sinks = self._sinks[hour] = {
                component: [
                    *((job_share[job_id], entry(_JOB, job_id, None, component, hour)) for job_id in sorted(job_share)),
                    (overhead_share, entry(_FLEET, None, None, component, hour)),
                ]
                for component in (_HOST_CPU, _HOST_DRAM, _HOST_UNMEASURED)
            }
        return sinks


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


# --- single-piece lookup ----------------------------------------------------------------------


class _Segments:
    """Allocation edges of a device (or of the host), to find single-piece windows by bisection.

    A window [start, end) with no edge strictly inside is one piece (as far as allocations go),
    and its holders are the allocations covering it. Those are the same for every such window
    whose first edge after ``start`` is the same edge: an allocation covers the window iff it
    starts at or before the edge before that one and ends (if it ends) at or after it. So the
    holders, and the plan built from them, are computed once per gap between edges.

    Only for fixed-offset datetimes (``datetime.timezone``: UTC and constant offsets), which
    order and compare by instant; anything else (``edges`` None) takes the general path.
    """

    __slots__ = ("_plan_type", "_plans", "allocations", "edges")

    def __init__(self, allocations: Sequence[Allocation], plan_type: type) -> None:
        self.allocations = allocations
        self._plan_type = plan_type
        self._plans: dict[int, Any] = {}
        self.edges: list[datetime] | None = None
        edges = []
        for allocation in allocations:
            if type(allocation.start) is not datetime or type(allocation.start.tzinfo) is not timezone:
                return
            edges.append(allocation.start)
            if allocation.end is not None:
                if type(allocation.end) is not datetime or type(allocation.end.tzinfo) is not timezone:
                    return
                edges.append(allocation.end)
        self.edges = sorted(edges)

    def find(self, start: datetime, end: datetime) -> tuple[datetime | None, datetime | None, Any] | None:
        """(last edge <= start, first edge > start, plan) if no edge is strictly inside (start, end).

        None for an edge: there is none on that side. None overall: the window must be cut.
        """
        edges = self.edges
        if edges is None:  # callers check first; not a fixed-offset timeline
            return None
        after = bisect.bisect_right(edges, start)  # first edge > start
        high = edges[after] if after < len(edges) else None
        if high is not None and high < end:
            return None
        plan = self._plans.get(after)
        if plan is None:
            holders = [a for a in self.allocations if _overlaps(a.start, a.end, start, end) and _covers(a, start, end)]
            plan = self._plans[after] = self._plan_type(holders)
        return (edges[after - 1] if after else None, high, plan)


class _HourCache:
    """UTC hour of a window start (and the next boundary), computed once per distinct start."""

    __slots__ = ("_hours",)

    def __init__(self) -> None:
        self._hours: dict[datetime, tuple[datetime, datetime]] = {}

    def of(self, moment: datetime) -> tuple[datetime, datetime]:
        # Only called with fixed-offset datetimes, for which equal means the same instant.
        hours = self._hours.get(moment)
        if hours is None:
            hour = _hour_of(moment)
            hours = self._hours[moment] = (hour, hour + _HOUR)
        return hours


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


# --- accumulation -----------------------------------------------------------------------------

# (account code, job_id, device_id, component code, hour)
_Key = tuple[int, int | None, int | None, int, datetime]


class _Ledger:
    """Collects contributions per share key; sums them exactly rounded at the end.

    An entry is ``[energies from measured windows, held seconds, worst quality rank, energies
    from other windows]``: every contribution appends to the held seconds and to one of the two
    energy lists (``_ENERGY_SLOT``), so a share's measured energy is the exact sum of its
    measured windows' contributions, whatever else was attributed with them, and its energy
    the exact sum of both lists (``math.fsum`` is exactly rounded, so splitting changes no bit).
    Entries may be created before anything is added to them (the fast path's sinks); only those
    that received a contribution become shares.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[_Key, list] = {}

    def entry(self, account: int, job_id: int | None, device_id: int | None, component: int, hour: datetime) -> list:
        key = (account, job_id, device_id, component, hour)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = [[], [], -1, []]
        return entry

    def add(
        self,
        account: int,
        job_id: int | None,
        device_id: int | None,
        component: int,
        hour: datetime,
        energy_j: float,
        held_s: float,
        rank: int,
    ) -> None:
        if energy_j == 0.0 and held_s == 0.0:
            return
        entry = self.entry(account, job_id, device_id, component, hour)
        entry[_ENERGY_SLOT[rank]].append(energy_j)
        entry[1].append(held_s)
        if rank > entry[2]:
            entry[2] = rank

    def shares(self) -> list[EnergyShare]:
        entries = self._entries
        shares = []
        # Every contribution appended a held-seconds value: a non-empty list marks a used entry.
        for key in sorted((key for key, entry in entries.items() if entry[1]), key=_sort_key):
            measured, held, rank, other = entries[key]
            measured_j = math.fsum(measured)
            shares.append(
                EnergyShare(
                    account=_ACCOUNTS[key[0]],
                    job_id=key[1],
                    device_id=key[2],
                    component=_COMPONENTS[key[3]],
                    hour=key[4],
                    energy_j=math.fsum(measured + other) if other else measured_j,
                    held_s=math.fsum(held),
                    quality=_QUALITY_BY_RANK[rank],
                    measured_energy_j=measured_j,
                )
            )
        return shares


def _sort_key(key: _Key) -> tuple:
    account, job_id, device_id, component, hour = key
    return (
        hour,
        account,
        job_id is not None,
        job_id if job_id is not None else 0,
        device_id is not None,
        device_id if device_id is not None else 0,
        component,
    )


# --- input checks -----------------------------------------------------------------------------
#
# Each item is first checked inline (exact types, fixed-offset datetimes, finite floats), which
# is all a well-formed batch needs; anything that fails that is checked again by the full
# check below, which raises the same error as always (or accepts the item: e.g. an int energy,
# a ZoneInfo datetime). Items are checked in the same order, so the first error is the same.


def _check_gpu_windows(gpu_windows: Sequence[GpuWindowIn]) -> set[int]:
    """Checks every GPU window; returns the host's devices (those that reported windows)."""
    devices: set[int] = set()
    checked_processes: dict[int, object] = {}
    for window in gpu_windows:
        try:
            start = window.start
            end = window.end
            energy_j = window.energy_j
            idle_power_w = window.idle_power_w
            ok = (
                type(start) is datetime
                and type(end) is datetime
                and type(start.tzinfo) is timezone
                and type(end.tzinfo) is timezone
                and end > start
                and type(energy_j) is float
                and 0.0 <= energy_j < _INF
                and type(idle_power_w) is float
                and 0.0 <= idle_power_w < _INF
            )
            if ok:
                processes = window.processes
                if checked_processes.get(id(processes)) is not processes:
                    for process in processes:
                        util = process.sm_util_pct
                        process.pid  # noqa: B018 - the full check reads it for its message
                        if not (type(util) is float and 0.0 <= util < _INF):
                            ok = False
                            break
                    else:
                        checked_processes[id(processes)] = processes
        except Exception:
            ok = False
        if not ok:
            _check_gpu_window(window)
        devices.add(window.device_id)
    return devices


def _check_host_windows(host_windows: Sequence[HostWindowIn]) -> None:
    for window in host_windows:
        try:
            start = window.start
            end = window.end
            wall_j = window.wall_energy_j
            ok = (
                type(start) is datetime
                and type(end) is datetime
                and type(start.tzinfo) is timezone
                and type(end.tzinfo) is timezone
                and end > start
                and type(window.cpu_energy_j) is float
                and 0.0 <= window.cpu_energy_j < _INF
                and type(window.dram_energy_j) is float
                and 0.0 <= window.dram_energy_j < _INF
                and (wall_j is None or (type(wall_j) is float and 0.0 <= wall_j < _INF))
            )
        except Exception:
            ok = False
        if not ok:
            _check_host_window(window)


def _check_allocations(allocations: Sequence[Allocation]) -> None:
    for allocation in allocations:
        try:
            start = allocation.start
            end = allocation.end
            fraction = allocation.fraction
            ok = (
                type(start) is datetime
                and type(start.tzinfo) is timezone
                and (end is None or (type(end) is datetime and type(end.tzinfo) is timezone and not end < start))
                and type(fraction) is float
                and 0.0 < fraction <= 1.0
            )
        except Exception:
            ok = False
        if not ok:
            _check_allocation(allocation)


def _check_slots(host_gpu_slots: int) -> None:
    if isinstance(host_gpu_slots, bool) or not isinstance(host_gpu_slots, int) or host_gpu_slots < 0:
        raise ValueError(f"host_gpu_slots must be an int >= 0, got {host_gpu_slots!r}")


def _check_aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {moment!r}")


def _check_energy(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_gpu_window(window: GpuWindowIn) -> None:
    label = f"GPU window device {window.device_id} seq {window.seq}"
    _check_aware(f"{label} start", window.start)
    _check_aware(f"{label} end", window.end)
    if window.end <= window.start:
        raise ValueError(f"{label} must end after it starts ({window.start} .. {window.end})")
    _check_energy(f"{label} energy_j", window.energy_j)
    _check_energy(f"{label} idle_power_w", window.idle_power_w)
    for process in window.processes:
        _check_energy(f"{label} pid {process.pid} sm_util_pct", process.sm_util_pct)


def _check_host_window(window: HostWindowIn) -> None:
    label = f"host window seq {window.seq}"
    _check_aware(f"{label} start", window.start)
    _check_aware(f"{label} end", window.end)
    if window.end <= window.start:
        raise ValueError(f"{label} must end after it starts ({window.start} .. {window.end})")
    _check_energy(f"{label} cpu_energy_j", window.cpu_energy_j)
    _check_energy(f"{label} dram_energy_j", window.dram_energy_j)
    if window.wall_energy_j is not None:
        _check_energy(f"{label} wall_energy_j", window.wall_energy_j)


def _check_allocation(allocation: Allocation) -> None:
    label = f"allocation of job {allocation.job_id} on device {allocation.device_id}"
    _check_aware(f"{label} start", allocation.start)
    if allocation.end is not None:
        _check_aware(f"{label} end", allocation.end)
        if allocation.end < allocation.start:
            raise ValueError(f"{label} ends before it starts")
    if not (math.isfinite(allocation.fraction) and 0.0 < allocation.fraction <= 1.0):
        raise ValueError(f"{label} fraction must be in (0, 1], got {allocation.fraction!r}")
