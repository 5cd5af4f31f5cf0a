"""What a GPU share's energy covers: the widest reading of its device in its hour (docs/method.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounting.domain.attribution import attribute
from accounting.domain.carbon import EmbodiedRate, carbonize
from accounting.domain.types import Allocation, Component, GpuWindowIn, HostWindowIn, IntensityPoint, Quality
from tests.domain import reference_attribution as reference

T = datetime(2026, 3, 2, 10, 59, 50, tzinfo=UTC)


def _gpu(device: int, seq: int, start: datetime, seconds: int, covers: str) -> GpuWindowIn:
    return GpuWindowIn(
        device_id=device,
        seq=seq,
        start=start,
        end=start + timedelta(seconds=seconds),
        energy_j=100.0 * seconds,
        avg_power_w=100.0,
        util_pct=50.0,
        quality=Quality.MEASURED,
        idle_power_w=60.0,
        energy_covers=covers,
    )


def test_each_gpu_share_states_the_widest_reading_of_its_device_in_its_hour():
    windows = [
        # Device 0: a module counter across 11:00, then a window of GPU power alone (counter lost).
        _gpu(0, 1, T, 20, "gpu+cpu+memory"),
        _gpu(0, 2, T + timedelta(seconds=20), 10, "gpu"),
        # Device 1: GPU alone in hour 10, GPU + memory from 11:00.
        _gpu(1, 1, T, 10, "gpu"),
        _gpu(1, 2, T + timedelta(seconds=10), 10, "gpu+memory"),
    ]
    host = [HostWindowIn(1, T, T + timedelta(seconds=30), 300.0, 30.0, Quality.MEASURED)]
    holds = [Allocation(7, device, T - timedelta(hours=1), None) for device in (0, 1)]
    result = attribute(gpu_windows=windows, host_windows=host, allocations=holds, host_gpu_slots=2)
    expected = reference.attribute(gpu_windows=windows, host_windows=host, allocations=holds, host_gpu_slots=2)
    assert (result.shares, result.diagnostics) == (expected.shares, expected.diagnostics)
    covers = {(s.device_id, s.hour.hour, s.component.value): s.energy_covers for s in result.shares}
    assert covers == {
        (0, 10, "gpu_active"): "gpu+cpu+memory",
        (0, 10, "gpu_idle"): "gpu+cpu+memory",
        (0, 11, "gpu_active"): "gpu+cpu+memory",
        (0, 11, "gpu_idle"): "gpu+cpu+memory",
        (1, 10, "gpu_active"): "gpu",
        (1, 10, "gpu_idle"): "gpu",
        (1, 11, "gpu_active"): "gpu+memory",
        (1, 11, "gpu_idle"): "gpu+memory",
        (None, 10, "host_cpu"): "",
        (None, 10, "host_dram"): "",
        (None, 11, "host_cpu"): "",
        (None, 11, "host_dram"): "",
    }
    # Hour 10 of device 0: 10 s of its first window, 1,000 J (600 idle, 400 active).
    energy = {(s.device_id, s.hour.hour, s.component.value): s.energy_j for s in result.shares}
    assert (energy[(0, 10, "gpu_idle")], energy[(0, 10, "gpu_active")]) == (600.0, 400.0)

    lines = carbonize(
        shares=result.shares,
        pue_at=lambda hour: (1.5, 1),
        intensity_at=lambda hour: IntensityPoint(400.0, "annual:test"),
        embodied_rates={device: EmbodiedRate(0.001, 0.0005, 0.002, 1) for device in (0, 1)},
        factor_versions={},
    )
    by_key = {(ln.device_id, ln.hour.hour, ln.component.value): ln.energy_covers for ln in lines}
    assert by_key[(0, 11, "gpu_active")] == "gpu+cpu+memory" and by_key[(1, 10, "gpu_idle")] == "gpu"
    assert {ln.energy_covers for ln in lines if ln.component is Component.FACILITY} == {""}


def test_an_unknown_coverage_is_refused_naming_the_window():
    with pytest.raises(ValueError, match=r"GPU window device 0 seq 1 energy_covers must be one of"):
        attribute(gpu_windows=[_gpu(0, 1, T, 10, "board")], host_windows=[], allocations=[], host_gpu_slots=1)
