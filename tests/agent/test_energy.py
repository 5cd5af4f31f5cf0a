from __future__ import annotations

import pynvml
import pytest

from telemetry.agent.energy import NVML_COUNTER_MODULUS, nvml_counter_delta_mj, rapl_delta_uj, trapezoid_j
from telemetry.agent.gpu import GpuSample, NvmlReader
from telemetry.agent.sim import FakeNvml
from telemetry.agent.window import WindowBuilder


def sample(t: float, energy_mj: int | None, power_w: float, *, limit_w: float = 700.0) -> GpuSample:
    return GpuSample(
        index=0,
        uuid="GPU-x",
        name="NVIDIA H100 80GB HBM3",
        mono_s=t,
        power_w=power_w,
        energy_mj=energy_mj,
        util_pct=50.0,
        mem_util_pct=10.0,
        mem_used_mib=1000.0,
        power_limit_w=limit_w,
    )


def test_counter_delta_plain_wrap_and_reset():
    assert nvml_counter_delta_mj(1_000, 1_650, max_delta_mj=10_000) == 650
    assert nvml_counter_delta_mj(NVML_COUNTER_MODULUS - 1_000, 500, max_delta_mj=10_000) == 1_500
    # A decrease far from 2**64 is a driver reload, not energy.
    assert nvml_counter_delta_mj(5_000_000, 200, max_delta_mj=10_000) is None
    # So is an impossible jump upwards.
    assert nvml_counter_delta_mj(1_000, 1_000_000_000, max_delta_mj=10_000) is None


def test_rapl_delta_and_trapezoid():
    assert rapl_delta_uj(100, 350, max_energy_range_uj=1000) == 250
    assert rapl_delta_uj(900, 50, max_energy_range_uj=1000) == 150
    assert trapezoid_j([0.0, 1.0, 3.0], [100.0, 200.0, 100.0]) == 450.0


def test_window_uses_counter_delta_across_wrap():
    b = WindowBuilder()
    b.add_tick(wall_s=0.0, gpus=[sample(0.0, NVML_COUNTER_MODULUS - 300_000, 600.0)], host=None, jobs={})
    b.add_tick(wall_s=1.0, gpus=[sample(1.0, 350_000, 650.0)], host=None, jobs={})
    w = b.close(end_wall_s=1.0)
    g = w["gpus"][0]
    assert g["energy_j"] == 650.0
    assert g["quality"] == "measured"
    assert g["counter_mj"] == 350_000
    assert g["avg_power_w"] == 650.0
    assert g["max_power_w"] == 650.0


def test_window_counter_reset_integrates_that_interval():
    b = WindowBuilder()
    b.add_tick(wall_s=0.0, gpus=[sample(0.0, 9_000_000, 400.0)], host=None, jobs={})
    b.add_tick(wall_s=1.0, gpus=[sample(1.0, 9_500_000, 600.0)], host=None, jobs={})  # +500 J measured
    b.add_tick(wall_s=2.0, gpus=[sample(2.0, 1_000, 200.0)], host=None, jobs={})  # reset: (600+200)/2 J
    b.add_tick(wall_s=3.0, gpus=[sample(3.0, 301_000, 300.0)], host=None, jobs={})  # +300 J measured again
    w = b.close(end_wall_s=3.0)
    g = w["gpus"][0]
    assert g["energy_j"] == 500.0 + 400.0 + 300.0
    assert g["quality"] == "integrated"
    # The next window, all counter deltas, is measured again.
    b.add_tick(wall_s=4.0, gpus=[sample(4.0, 401_000, 100.0)], host=None, jobs={})
    assert b.close(end_wall_s=4.0)["gpus"][0] == {**b_expected_next(), "counter_mj": 401_000}


def b_expected_next():
    return {
        "uuid": "GPU-x",
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "energy_j": 100.0,
        "counter_mj": None,
        "avg_power_w": 100.0,
        "max_power_w": 100.0,
        "util_pct": 50.0,
        "mem_util_pct": 10.0,
        "mem_used_mib": 1000.0,
        "power_limit_w": 700.0,
        "quality": "measured",
        "processes": [],
    }


def test_fake_nvml_counter_consistent_with_power(clock):
    nvml = FakeNvml([{"model": "A100", "workload": "llm_training", "job_key": "slurm:1"}], clock=clock)
    reader = NvmlReader(nvml, clock=clock)
    reader.open()
    dev = nvml.devices[0]
    e0 = nvml.nvmlDeviceGetTotalEnergyConsumption(dev)
    total_j = 0.0
    for _ in range(50):
        clock.advance(0.1)
        total_j += nvml.nvmlDeviceGetPowerUsage(dev) / 1000.0 * 0.1
    e1 = nvml.nvmlDeviceGetTotalEnergyConsumption(dev)
    # Power is reported in whole mW and the counter in whole mJ: agreement to rounding.
    assert abs((e1 - e0) / 1000.0 - total_j) < 0.01
    assert 50.0 <= total_j / 5.0 <= 400.0


def test_missing_counter_falls_back_to_integration(clock):
    nvml = FakeNvml(
        [{"model": "V100", "workload": "recsys_training", "job_key": "slurm:7", "energy_counter": False}], clock=clock
    )
    reader = NvmlReader(nvml, clock=clock)
    reader.open()
    assert reader.devices[0].has_counter is False
    b = WindowBuilder()
    powers, times = [], []
    for i in range(11):
        s = reader.sample()[0]
        assert s.energy_mj is None
        powers.append(s.power_w)
        times.append(s.mono_s)
        b.add_tick(wall_s=float(i), gpus=[s], host=None, jobs={})
        clock.advance(0.5)
    g = b.close(end_wall_s=10.0)["gpus"][0]
    assert g["quality"] == "integrated"
    assert g["counter_mj"] is None
    assert g["energy_j"] == round(trapezoid_j(times, powers), 3)
    assert g["max_power_w"] == max(powers)


def test_fake_raises_real_pynvml_error_classes(clock):
    nvml = FakeNvml(
        [{"model": "H100", "energy_counter": False}], clock=clock, init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    )
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        nvml.nvmlInit()
    ok = FakeNvml([{"model": "H100", "energy_counter": False}], clock=clock)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        ok.nvmlDeviceGetCount()
    ok.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        ok.nvmlDeviceGetTotalEnergyConsumption(ok.nvmlDeviceGetHandleByIndex(0))
    with pytest.raises(pynvml.NVMLError_NotFound):
        ok.nvmlDeviceGetProcessUtilization(ok.nvmlDeviceGetHandleByIndex(0), 0)
    assert ok.NVMLError_NotSupported is pynvml.NVMLError_NotSupported


def test_reader_counter_reset_through_fake(clock):
    nvml = FakeNvml([{"model": "H100", "workload": "llm_inference", "job_key": "k8s:x"}], clock=clock)
    reader = NvmlReader(nvml, clock=clock)
    reader.open()
    b = WindowBuilder()
    b.add_tick(wall_s=0.0, gpus=reader.sample(), host=None, jobs={})
    clock.advance(1.0)
    b.add_tick(wall_s=1.0, gpus=reader.sample(), host=None, jobs={})
    assert b.close(end_wall_s=1.0)["gpus"][0]["quality"] == "measured"
    nvml.set_counter(0, 0)  # driver reload
    clock.advance(1.0)
    s = reader.sample()
    b.add_tick(wall_s=2.0, gpus=s, host=None, jobs={})
    g = b.close(end_wall_s=2.0)["gpus"][0]
    assert g["quality"] == "integrated"
    assert g["counter_mj"] == s[0].energy_mj
