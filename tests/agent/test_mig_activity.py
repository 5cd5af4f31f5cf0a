"""MIG instances through NVML: slices from the instance's attributes and, on Hopper, each GPU
instance's graphics activity from GPM at window boundaries (the agent's measured MIG split)."""

from __future__ import annotations

from telemetry.agent.gpu import NvmlReader
from telemetry.agent.sim import FakeNvml, SimProcTree
from telemetry.agent.window import WindowBuilder


def _window(clock, tmp_path, model: str) -> tuple[dict, FakeNvml]:
    nvml = FakeNvml(
        [
            {
                "model": model,
                "workload": "llm_inference",
                "mig": [{"profile": "3g.40gb", "job_key": "k8s:a"}, {"profile": "1g.10gb"}],
            }
        ],
        clock=clock,
        proc_tree=SimProcTree(tmp_path),
    )
    reader = NvmlReader(nvml, clock=clock)
    reader.open()
    builder = WindowBuilder()
    builder.add_tick(wall_s=0.0, gpus=reader.sample(boundary=True), host=None, jobs={})
    for tick in range(1, 11):
        clock.advance(1.0)
        builder.add_tick(wall_s=float(tick), gpus=reader.sample(boundary=tick == 10), host=None, jobs={})
    window = builder.close(end_wall_s=10.0)
    assert window is not None
    reader.close()
    return window["gpus"][0], nvml


def test_hopper_mig_instances_carry_measured_activity_and_slices(clock, tmp_path):
    gpu, nvml = _window(clock, tmp_path, "H100")
    by_gi = {m["gpu_instance_id"]: m for m in gpu["mig_instances"]}
    busy, idle = by_gi[1], by_gi[2]
    assert (busy["slices"], idle["slices"]) == (3, 1)
    # The busy instance's activity is the mean of its two boundary samples; the empty one reads 0.
    assert busy["activity"] is not None and 0.0 < busy["activity"] <= 1.0
    assert idle["activity"] == 0.0
    assert len(busy["pids"]) == 1 and idle["pids"] == []
    # One GPM sample per instance per boundary (two boundaries), each freed when superseded or closed.
    assert nvml.calls["nvmlGpmMigSampleGet"] == 2 * 2


def test_ampere_mig_has_no_gpm_so_no_activity(clock, tmp_path):
    gpu, nvml = _window(clock, tmp_path, "A100")
    ordered = sorted(gpu["mig_instances"], key=lambda m: m["gpu_instance_id"])
    assert [(m["slices"], m["activity"]) for m in ordered] == [(3, None), (1, None)]
    assert "nvmlGpmMigSampleGet" not in nvml.calls
