"""Grace Hopper / Grace Blackwell: the module counter holds the CPU and memory: no modelled CPU on top."""

from __future__ import annotations

from telemetry.agent.gpu import GpuSample, NvmlReader, energy_covers_for
from telemetry.agent.host import HostReading
from telemetry.agent.sim import FakeNvml
from telemetry.agent.window import WindowBuilder

HOST_TICK = HostReading(
    cpu_energy_j=250.0, dram_energy_j=40.0, cpu_util_pct=50.0, wall_power_w=None, quality="modelled"
)


def _sample(t: float, energy_mj: int | None, covers: str, power_w: float = 900.0) -> GpuSample:
    return GpuSample(
        index=0,
        uuid="GPU-gh200",
        name="NVIDIA GH200 480GB",
        mono_s=t,
        power_w=power_w,
        energy_mj=energy_mj,
        util_pct=90.0,
        mem_util_pct=40.0,
        mem_used_mib=50_000.0,
        power_limit_w=1000.0,
        energy_covers=covers,
    )


def test_names_of_superchips_and_plain_gpus():
    assert energy_covers_for("NVIDIA GH200 480GB") == "gpu+cpu+memory"
    assert energy_covers_for("NVIDIA GB200") == "gpu+cpu+memory"
    assert energy_covers_for("NVIDIA GB300") == "gpu+cpu+memory"
    assert energy_covers_for("NVIDIA H200") == "gpu"
    assert energy_covers_for("NVIDIA H100 80GB HBM3") == "gpu"


def test_module_counter_window_carries_the_cpu_and_the_host_adds_none():
    builder = WindowBuilder()
    for i in range(11):  # 10 one-second intervals at 900 W of module energy
        builder.add_tick(
            wall_s=float(i),
            gpus=[_sample(float(i), 7_000_000 + 900_000 * i, "gpu+cpu+memory")],
            host=HOST_TICK,
            jobs={},
        )
    window = builder.close(end_wall_s=10.0)
    (gpu,) = window["gpus"]
    assert (gpu["energy_j"], gpu["energy_covers"], gpu["quality"]) == (9000.0, "gpu+cpu+memory", "measured")
    # 10 ticks x (250 + 40) J of modelled CPU/DRAM would have been counted twice.
    assert window["host"] == {
        "cpu_energy_j": 0.0,
        "dram_energy_j": 0.0,
        "wall_energy_j": None,
        "cpu_util_pct": 50.0,
        "quality": "measured",
        "cpu_dram_in_gpu_modules": True,
    }
    # Energy of the whole module in the window: 9,000 J, once.
    assert gpu["energy_j"] + window["host"]["cpu_energy_j"] + window["host"]["dram_energy_j"] == 9000.0


def test_plain_gpu_keeps_the_host_model():
    builder = WindowBuilder()
    for i in range(11):
        builder.add_tick(wall_s=float(i), gpus=[_sample(float(i), 700_000 * i, "gpu")], host=HOST_TICK, jobs={})
    window = builder.close(end_wall_s=10.0)
    assert "energy_covers" not in window["gpus"][0]
    assert (window["host"]["cpu_energy_j"], window["host"]["dram_energy_j"], window["host"]["quality"]) == (
        2500.0,
        400.0,
        "modelled",
    )
    assert "cpu_dram_in_gpu_modules" not in window["host"]


def test_reader_marks_a_gh200_counter_and_not_its_integrated_power(clock):
    nvml = FakeNvml([{"model": "GH200", "workload": "llm_training", "job_key": "slurm:1"}], clock=clock)
    reader = NvmlReader(nvml, clock=clock)
    reader.open()
    assert reader.devices[0].energy_covers == "gpu+cpu+memory"
    clock.advance(1.0)
    assert reader.sample()[0].energy_covers == "gpu+cpu+memory"
    without = FakeNvml([{"model": "GH200", "energy_counter": False}], clock=clock)
    reader = NvmlReader(without, clock=clock)
    reader.open()
    assert reader.sample()[0].energy_covers == "gpu"  # integrated power: not known to cover the CPU
