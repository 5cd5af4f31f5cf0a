# FROZEN REFERENCE (test-only): a verbatim copy of accounting/domain/attribution.py as it was
# before the fast-path rewrite. tests/domain/test_attribution_fastpath.py and
# benchmarks/attribution_micro.py compare the production attribute() against it, result for
# result. Do not edit or optimise it; it is the specification the fast paths must reproduce.
# One amendment since (issue 19, quality per window): _Ledger also sums each share's energy
# from MEASURED windows (``measured_energy_j``), the rule stated where it is applied.
# A second (issue 15, MIG by measured activity): _active_weights splits a MIG GPU's active
# energy by instance activity x slices, by slice fraction when any instance is unmeasured, and
# _attribute_gpu_window then reports ``mig_activity_unavailable``; _check_gpu_window checks the
# instances.
# A third (issue 15 follow-up, what a counter covers): a GPU share states the widest
# ``energy_covers`` among its device's windows overlapping its hour (_counter_covers), host shares
# ""; _check_gpu_window checks the value.

"""Attribution of measured energy to accounts: every joule lands on exactly one job or the fleet.

Pure: stdlib only, time is always an argument. The policies (DESIGN.md §3) are declared where
they are applied; the invariant the tests hold is conservation:

    Σ shares.energy_j == Σ gpu energy_j + Σ (cpu + dram) + Σ max(0, wall − measured)

Sums are taken with ``math.fsum`` (exactly rounded, so independent of summation order), which
makes the output bit-identical for any ordering of the inputs.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from accounting.domain.types import (
    COVERS_RANK,
    QUALITY_RANK,
    Account,
    Allocation,
    Component,
    Diagnostic,
    EnergyShare,
    GpuWindowIn,
    HostWindowIn,
    Quality,
)

_HOUR = timedelta(hours=1)
_COMPONENT_ORDER = {component: index for index, component in enumerate(Component)}
_QUALITY_BY_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}


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
    for window in gpu_windows:
        _check_gpu_window(window)
    for host_window in host_windows:
        _check_host_window(host_window)
    for allocation in allocations:
        _check_allocation(allocation)

    ledger = _Ledger()
    diagnostics: list[Diagnostic] = []

    host_devices = {window.device_id for window in gpu_windows}
    allocations_by_device: dict[int, list[Allocation]] = {}
    for allocation in allocations:
        if allocation.device_id in host_devices:
            allocations_by_device.setdefault(allocation.device_id, []).append(allocation)

    for window in gpu_windows:
        _attribute_gpu_window(window, allocations_by_device.get(window.device_id, ()), ledger, diagnostics)

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
        gpu_index = _WindowIndex(gpu_windows)
        for host_window in host_windows:
            _attribute_host_window(host_window, gpu_index, host_allocations, slots, ledger, diagnostics)

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
    return Attribution(shares=ledger.shares(_counter_covers(gpu_windows)), diagnostics=diagnostics)


def _counter_covers(gpu_windows: Sequence[GpuWindowIn]) -> dict[tuple[int, datetime], str]:
    """Per (device, UTC hour): the widest energy_covers among the device's windows overlapping the hour."""
    covers: dict[tuple[int, datetime], str] = {}
    for window in gpu_windows:
        hour = _hour_of(window.start)
        while hour < window.end:
            key = (window.device_id, hour)
            if key not in covers or COVERS_RANK[window.energy_covers] > COVERS_RANK[covers[key]]:
                covers[key] = window.energy_covers
            hour += _HOUR
    return covers


# --- GPU windows ------------------------------------------------------------------------------


def _attribute_gpu_window(
    window: GpuWindowIn,
    device_allocations: Iterable[Allocation],
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
) -> None:
    duration = window.end - window.start
    # Catalog idle power x time is what the device draws doing nothing; capped at the measured
    # energy because a window can read below catalog idle (deep idle states, sensor offset).
    idle_j = min(window.energy_j, window.idle_power_w * duration.total_seconds())
    active_j = window.energy_j - idle_j
    relevant = [a for a in device_allocations if _overlaps(a.start, a.end, window.start, window.end)]
    device = window.device_id
    quality = window.quality
    oversubscribed = False
    mig_by_fraction = False

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
            ledger.add(Account.FLEET_OVERHEAD, None, device, Component.GPU_IDLE, hour, piece_idle_j, 0.0, quality)
            ledger.add(
                Account.FLEET_OVERHEAD, None, device, Component.GPU_ACTIVE, hour, piece_active_j, piece_s, quality
            )
            continue

        job_fraction, job_keys = _holders_by_job(holders)
        held_fraction = math.fsum(a.fraction for a in holders)
        if held_fraction > 1.0:
            oversubscribed = True
        # Time-slicing can hand out more than the whole device (oversubscription): holders then
        # share it pro rata, so idle energy and held device-seconds are charged exactly once.
        normaliser = max(held_fraction, 1.0)
        unheld_fraction = max(0.0, 1.0 - held_fraction)

        active_weights = _active_weights(window, job_fraction, job_keys, held_fraction)
        if window.mig_instances and any(i.activity is None for i in window.mig_instances):
            mig_by_fraction = True
        for job_id in sorted(job_fraction):
            share_of_device = job_fraction[job_id] / normaliser
            # The holder reserved the device (or its slice), so it pays the idle baseline of
            # what it holds, used or not.
            ledger.add(
                Account.JOB, job_id, device, Component.GPU_IDLE, hour, piece_idle_j * share_of_device, 0.0, quality
            )
            ledger.add(
                Account.JOB,
                job_id,
                device,
                Component.GPU_ACTIVE,
                hour,
                piece_active_j * active_weights[job_id],
                piece_s * share_of_device,
                quality,
            )
        if unheld_fraction > 0.0:
            # Unallocated MIG slices / unreserved share: idle baseline and time to the fleet.
            ledger.add(
                Account.FLEET_OVERHEAD,
                None,
                device,
                Component.GPU_IDLE,
                hour,
                piece_idle_j * unheld_fraction,
                0.0,
                quality,
            )
            ledger.add(
                Account.FLEET_OVERHEAD,
                None,
                device,
                Component.GPU_ACTIVE,
                hour,
                0.0,
                piece_s * unheld_fraction,
                quality,
            )

    if oversubscribed:
        diagnostics.append(
            Diagnostic(
                code="gpu_oversubscribed",
                message=f"allocations on device {device} hold more than the whole device; normalised pro rata",
                start=window.start,
                end=window.end,
                device_id=device,
            )
        )
    if mig_by_fraction:
        diagnostics.append(
            Diagnostic(
                code="mig_activity_unavailable",
                message=(
                    f"MIG device {device}: no measured activity for every instance; active energy split by "
                    "slice fraction"
                ),
                start=window.start,
                end=window.end,
                device_id=device,
            )
        )


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
    window: GpuWindowIn,
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
    processes = window.processes
    if window.mig_instances:
        # MIG: each instance's work is its measured activity x its slices, to the holders whose
        # keys ran on it; unmeasured instances: the whole active energy by slice fraction.
        if any(instance.activity is None for instance in window.mig_instances):
            return by_fraction
        for instance in window.mig_instances:
            work = instance.activity * instance.slices
            owners = [job_id for job_id in sorted(job_keys) if job_keys[job_id] & instance.job_keys]
            if owners:
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


def _attribute_host_window(
    window: HostWindowIn,
    gpu_index: _WindowIndex,
    host_allocations: Sequence[Allocation],
    slots: int,
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
) -> None:
    duration = window.end - window.start
    components: list[tuple[Component, float, Quality]] = [
        (Component.HOST_CPU, window.cpu_energy_j, window.quality),
        (Component.HOST_DRAM, window.dram_energy_j, window.quality),
    ]
    if window.wall_energy_j is not None:
        # GPU windows are matched to the host window by time overlap (pro rata, uniform power)
        # rather than by seq, so synthesized gap windows and misaligned windows count too.
        overlapping = gpu_index.overlapping(window.start, window.end)
        gpu_j = math.fsum(
            g.energy_j * ((min(g.end, window.end) - max(g.start, window.start)) / (g.end - g.start))
            for g in overlapping
        )
        measured_j = math.fsum((gpu_j, window.cpu_energy_j, window.dram_energy_j))
        unmeasured_j = window.wall_energy_j - measured_j
        if unmeasured_j > 0.0:
            # Wall power nobody explained (fans, PSU loss, NICs, disks) is reported as its own
            # component, shared like the rest of the host; its quality is no better than the
            # worst reading it was derived from.
            worst = max([QUALITY_RANK[window.quality], *(QUALITY_RANK[g.quality] for g in overlapping)])
            components.append((Component.HOST_UNMEASURED, unmeasured_j, _QUALITY_BY_RANK[worst]))
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

    relevant = [a for a in host_allocations if _overlaps(a.start, a.end, window.start, window.end)]
    for start, end in _pieces(window.start, window.end, _allocation_edges(relevant)):
        fraction_of_window = (end - start) / duration
        hour = _hour_of(start)
        job_share = _host_shares([a for a in relevant if _covers(a, start, end)], slots)
        overhead_share = max(0.0, 1.0 - math.fsum(job_share.values()))
        for component, energy_j, quality in components:
            piece_j = energy_j * fraction_of_window
            for job_id in sorted(job_share):
                ledger.add(Account.JOB, job_id, None, component, hour, piece_j * job_share[job_id], 0.0, quality)
            ledger.add(Account.FLEET_OVERHEAD, None, None, component, hour, piece_j * overhead_share, 0.0, quality)


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
        self._windows = sorted(windows, key=lambda w: w.start)
        self._starts = [w.start for w in self._windows]
        self._longest = max((w.end - w.start for w in self._windows), default=timedelta(0))

    def overlapping(self, start: datetime, end: datetime) -> list[GpuWindowIn]:
        # A window overlapping [start, end) starts before `end` and, being no longer than the
        # longest window, no earlier than `start - longest`.
        low = bisect.bisect_right(self._starts, start - self._longest)
        high = bisect.bisect_left(self._starts, end)
        return [w for w in self._windows[low:high] if _overlaps(w.start, w.end, start, end)]


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

_Key = tuple[Account, int | None, int | None, Component, datetime]


class _Ledger:
    """Collects contributions per share key; sums them exactly rounded at the end."""

    def __init__(self) -> None:
        self._energy: dict[_Key, list[float]] = {}
        self._held: dict[_Key, list[float]] = {}
        self._worst: dict[_Key, int] = {}
        self._measured: dict[_Key, list[float]] = {}

    def add(
        self,
        account: Account,
        job_id: int | None,
        device_id: int | None,
        component: Component,
        hour: datetime,
        energy_j: float,
        held_s: float,
        quality: Quality,
    ) -> None:
        if energy_j == 0.0 and held_s == 0.0:
            return
        key = (account, job_id, device_id, component, hour)
        self._energy.setdefault(key, []).append(energy_j)
        self._held.setdefault(key, []).append(held_s)
        rank = QUALITY_RANK[quality]
        self._worst[key] = max(rank, self._worst.get(key, rank))
        # Quality is per window: the share's measured energy is what its measured windows gave,
        # not its energy when its worst window happens to be measured.
        if quality is Quality.MEASURED:
            self._measured.setdefault(key, []).append(energy_j)

    def shares(self, covers: dict[tuple[int, datetime], str]) -> list[EnergyShare]:
        return [
            EnergyShare(
                account=key[0],
                job_id=key[1],
                device_id=key[2],
                component=key[3],
                hour=key[4],
                energy_j=math.fsum(self._energy[key]),
                held_s=math.fsum(self._held[key]),
                quality=_QUALITY_BY_RANK[self._worst[key]],
                measured_energy_j=math.fsum(self._measured.get(key, [])),
                energy_covers="" if key[2] is None else covers[(key[2], key[4])],
            )
            for key in sorted(self._energy, key=_sort_key)
        ]


def _sort_key(key: _Key) -> tuple:
    account, job_id, device_id, component, hour = key
    return (
        hour,
        account.value,
        job_id is not None,
        job_id if job_id is not None else 0,
        device_id is not None,
        device_id if device_id is not None else 0,
        _COMPONENT_ORDER[component],
    )


# --- input checks -----------------------------------------------------------------------------


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
    if not isinstance(window.energy_covers, str) or window.energy_covers not in COVERS_RANK:
        raise ValueError(f"{label} energy_covers must be one of {sorted(COVERS_RANK)}, got {window.energy_covers!r}")
    for instance in window.mig_instances:
        name = f"{label} MIG instance {instance.gpu_instance_id}"
        if isinstance(instance.slices, bool) or not isinstance(instance.slices, int) or instance.slices < 1:
            raise ValueError(f"{name} slices must be an int >= 1, got {instance.slices!r}")
        if instance.activity is not None and not (math.isfinite(instance.activity) and 0.0 <= instance.activity <= 1.0):
            raise ValueError(f"{name} activity must be in [0, 1] or None, got {instance.activity!r}")


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
