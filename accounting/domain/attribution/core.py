"""``attribute()``: one host's GPU and host windows and allocations to energy shares.

Checks the input (``checks``), attributes GPU windows, then host windows (``fast``, which hands
every window it cannot take to ``rules``), and orders the diagnostics; the shares come out of
the ``ledger`` sorted by (hour, account, job_id, device_id, component).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from accounting.domain.attribution.checks import (
    _check_allocations,
    _check_gpu_windows,
    _check_host_windows,
    _check_slots,
)
from accounting.domain.attribution.fast import _attribute_gpu_windows, _attribute_host_windows, _HourCache
from accounting.domain.attribution.ledger import _Ledger
from accounting.domain.attribution.rules import _hour_of, _WindowIndex
from accounting.domain.types import COVERS_RANK, Allocation, Diagnostic, EnergyShare, GpuWindowIn, HostWindowIn

_HOUR = timedelta(hours=1)


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
    host_devices, allocations_by_device = _checked(gpu_windows, set(), host_windows, allocations, host_gpu_slots)
    ledger = _Ledger()
    diagnostics: list[Diagnostic] = []
    hours = _HourCache()
    _attribute_gpu_windows(gpu_windows, allocations_by_device, ledger, diagnostics, hours)
    if host_windows:
        _attribute_host_side(
            host_windows, gpu_windows, host_devices, host_gpu_slots, allocations_by_device, ledger, diagnostics, hours
        )
    return Attribution(
        shares=ledger.shares(_counter_covers(gpu_windows, hours)), diagnostics=_sorted_diagnostics(diagnostics)
    )


def _checked(
    gpu_windows: Sequence[GpuWindowIn],
    other_devices: set[int],
    host_windows: Sequence[HostWindowIn],
    allocations: Sequence[Allocation],
    host_gpu_slots: int,
) -> tuple[set[int], dict[int, list[Allocation]]]:
    """Check the input (``checks``); return the host's devices (those of ``gpu_windows`` and
    ``other_devices``) and their allocations by device (allocations of any other device are
    ignored)."""
    _check_slots(host_gpu_slots)
    host_devices = _check_gpu_windows(gpu_windows) | other_devices
    _check_host_windows(host_windows)
    _check_allocations(allocations)
    allocations_by_device: dict[int, list[Allocation]] = {}
    for allocation in allocations:
        if allocation.device_id in host_devices:
            allocations_by_device.setdefault(allocation.device_id, []).append(allocation)
    return host_devices, allocations_by_device


def _attribute_host_side(
    host_windows: Sequence[HostWindowIn],
    gpu_windows: Sequence[GpuWindowIn],
    host_devices: set[int],
    host_gpu_slots: int,
    allocations_by_device: dict[int, list[Allocation]],
    ledger: _Ledger,
    diagnostics: list[Diagnostic],
    hours: _HourCache,
) -> None:
    """The host windows: shared by the GPU slots each job holds (``gpu_windows`` serve only the
    wall-energy balance of host windows that have a wall reading)."""
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


def _sorted_diagnostics(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
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
    return diagnostics


def _counter_covers(gpu_windows: Sequence[GpuWindowIn], hours: _HourCache) -> dict[tuple[int, datetime], str]:
    """Policy: what a GPU share's energy covers is a property of its device's reading in its hour,
    the widest ``energy_covers`` among the device's windows that overlap the hour (a superchip
    module counter that fell back to GPU power for a while still held the CPU the rest of the
    hour; the host path added no CPU for those windows)."""
    covers: dict[tuple[int, datetime], str] = {}
    for window in gpu_windows:
        value = window.energy_covers
        start = window.start
        if type(start.tzinfo) is timezone:
            hour, hour_end = hours.of(start)
        else:
            hour = _hour_of(start)
            hour_end = hour + _HOUR
        device = window.device_id
        while True:
            key = (device, hour)
            known = covers.get(key)
            if known is None or (known != value and COVERS_RANK[value] > COVERS_RANK[known]):
                covers[key] = value
            if not hour_end < window.end:
                break
            hour = hour_end
            hour_end = hour + _HOUR
    return covers
