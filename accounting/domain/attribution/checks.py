"""Input checks of ``attribute()``: a ValueError naming the item and the field.

Each item is first checked inline (exact types, fixed-offset datetimes, finite floats), which
is all a well-formed batch needs; anything that fails that is checked again by the full
check below, which raises the same error as always (or accepts the item: e.g. an int energy,
a ZoneInfo datetime). Items are checked in the same order, so the first error is the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

from accounting.domain.types import COVERS_RANK, Allocation, GpuWindowIn, HostWindowIn

_INF = math.inf


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
                and not window.mig_instances  # rare: the full check below reads them
                and window.energy_covers in COVERS_RANK
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
