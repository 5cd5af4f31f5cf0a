"""The fast path: single-piece windows, which are almost all of them.

Performance (docs/performance.md, "Domain attribution micro-benchmark"): a window is cut into
pieces at UTC hour boundaries and allocation edges. Almost every window is a single piece (no
hour boundary, no allocation starting or ending inside it), so that case takes a fast path:
the holders of the device are found once per run of allocation edges (not per window), their
fractions, shares and the active-energy weights of a process set are computed once, and the
contributions are appended straight to the accumulator entries of the (account, job, device,
component, hour) keys. Every contribution is the same float, computed by the same expression
(fraction of window = 1.0 exactly for a single piece), as on the general path (``rules``),
which is kept for everything else; tests/domain/test_attribution_fastpath.py checks the output
against a frozen copy of the original implementation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from accounting.domain.attribution.ledger import (
    _ENERGY_SLOT,
    _FLEET,
    _GPU_ACTIVE,
    _GPU_IDLE,
    _HOST_CPU,
    _HOST_DRAM,
    _HOST_UNMEASURED,
    _JOB,
    Entry,
    _Ledger,
)
from accounting.domain.attribution.rules import (
    _HOUR,
    _active_weights,
    _attribute_gpu_window,
    _attribute_host_pieces,
    _covers,
    _holders_by_job,
    _host_components,
    _host_shares,
    _hour_of,
    _mig_by_fraction,
    _mig_measured,
    _overlaps,
    _oversubscribed,
    _WindowIndex,
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

# The sinks of a GPU plan for one hour: [(idle entry, active entry)] of the fleet-overhead
# account when nobody holds the device, else [(job_id, share of device, idle entry, active
# entry)] per job. The two shapes share a list (the caller knows which from ``plan.jobs``), so
# the tuple is typed by length only.
_GpuSinks = list[tuple[Any, ...]]
# The sinks of a host plan for one hour and component: (share, entry) per job, then the overhead.
_HostSinks = list[tuple[float, Entry]]

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
    fits: dict[int, tuple[datetime, datetime, _GpuPlan, datetime, _GpuSinks]] = {}
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
        mig_instances = window.mig_instances
        if processes is plan.last_processes and mig_instances is plan.last_mig:
            weights = plan.last_weights
        else:
            weights = plan.weights(processes, mig_instances)
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
        if mig_instances and not _mig_measured(mig_instances):
            diagnostics.append(_mig_by_fraction(window))


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
        "last_mig",
        "last_processes",
        "last_weights",
        "oversubscribed",
        "share_of_device",
        "sinks",
        "unheld_fraction",
    )

    def __init__(self, holders: Sequence[Allocation]) -> None:
        self.sinks: dict[datetime, _GpuSinks] = {}
        self.fleet_sinks: dict[datetime, tuple[Entry, Entry]] = {}
        self._weights: dict[tuple[int, int], tuple[object, object, dict[int, float]]] = {}
        self.last_processes: object = None  # the last tuples weighed, and their weights
        self.last_mig: object = None
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

    def make_sinks(self, ledger: _Ledger, device: int, hour: datetime) -> _GpuSinks:
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

    def weights(
        self, processes: Sequence[ProcessSample], mig_instances: Sequence[MigInstanceSample]
    ) -> dict[int, float]:
        # Windows of a device usually share one processes tuple (the mapper memoises it, and its
        # MIG instance tuple): keyed by identity, the tuples kept alive in the cache so their ids
        # cannot be reused.
        key = (id(processes), id(mig_instances))
        cached = self._weights.get(key)
        if cached is not None and cached[0] is processes and cached[1] is mig_instances:
            weights = cached[2]
        else:
            weights = _active_weights(processes, self.job_fraction, self.job_keys, self.held_fraction, mig_instances)
            self._weights[key] = (processes, mig_instances, weights)
        self.last_processes = processes
        self.last_mig = mig_instances
        self.last_weights = weights
        return weights


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


class _HostPlan:
    """Each job's share of the host over a run of host windows between allocation edges."""

    __slots__ = ("_holders", "_sinks")

    def __init__(self, holders: Sequence[Allocation]) -> None:
        self._holders = holders
        self._sinks: dict[datetime, dict[int, _HostSinks]] = {}

    def sinks_for(self, ledger: _Ledger, slots: int, hour: datetime) -> dict[int, _HostSinks]:
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
