"""Read policy "window": the energy counter and per-process utilisation at window boundaries only,
power every tick only without a counter; the window's energy is the same as reading every tick."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from telemetry.agent.config import AgentConfig, ConfigError
from telemetry.agent.gpu import NvmlReader
from telemetry.agent.sim import FakeNvml
from telemetry.agent.window import WindowBuilder


class CountingNvml:
    """Counts the calls made to an nvml module-like object (attributes pass through)."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._nvml, name)
        if name.startswith("nvml") and callable(value):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return value(*args, **kwargs)

            return counted
        return value


GPUS = [
    {"model": "H100", "workload": "llm_training", "job_key": "slurm:1"},
    {"model": "V100", "workload": "recsys_training", "job_key": "slurm:2", "energy_counter": False},
]


def _run(clock, policy: str, *, windows: int = 3, ticks_per_window: int = 10):
    nvml = CountingNvml(FakeNvml(GPUS, clock=clock, seed=7))
    reader = NvmlReader(nvml, clock=clock, read_policy=policy)
    reader.open()
    nvml.calls.clear()  # discovery (and the policy's priming read) is once per start
    builder = WindowBuilder()
    out = []
    wall = 0.0
    builder.add_tick(wall_s=wall, gpus=reader.sample(boundary=True), host=None, jobs={})
    for _ in range(windows):
        for tick in range(1, ticks_per_window + 1):
            clock.advance(1.0)
            wall += 1.0
            boundary = tick == ticks_per_window
            builder.add_tick(wall_s=wall, gpus=reader.sample(boundary=boundary), host=None, jobs={})
        out.append(builder.close(end_wall_s=wall))
    return out, nvml.calls


def test_window_policy_reads_the_counter_and_process_utilisation_once_per_window(clock):
    _, calls = _run(clock, "window")
    # 3 windows + the first tick: 4 boundary reads; 31 ticks in all.
    assert calls["nvmlDeviceGetTotalEnergyConsumption"] == 4  # the H100's counter only
    assert calls["nvmlDeviceGetProcessUtilization"] == 2 * 4
    # Power: the H100 at boundaries (4), the V100 (no counter) every tick (31).
    assert calls["nvmlDeviceGetPowerUsage"] == 4 + 31
    # Job mapping still sees the processes every tick.
    assert calls["nvmlDeviceGetComputeRunningProcesses"] == 2 * 31


def test_tick_policy_reads_everything_every_tick(clock):
    _, calls = _run(clock, "tick")
    assert calls["nvmlDeviceGetTotalEnergyConsumption"] == 31
    assert calls["nvmlDeviceGetProcessUtilization"] == 2 * 31
    assert calls["nvmlDeviceGetPowerUsage"] == 2 * 31


def test_the_counter_delta_is_the_same_energy_whichever_the_policy():
    from tests.agent.conftest import ManualClock

    by_window, _ = _run(ManualClock(), "window")
    by_tick, _ = _run(ManualClock(), "tick")
    for window, tick in zip(by_window, by_tick, strict=True):
        (h100_w, v100_w), (h100_t, v100_t) = window["gpus"], tick["gpus"]
        assert (h100_w["energy_j"], h100_w["counter_mj"], h100_w["quality"]) == (
            h100_t["energy_j"],
            h100_t["counter_mj"],
            "measured",
        )
        # Without a counter both integrate the same power samples (every tick).
        assert (v100_w["energy_j"], v100_w["quality"]) == (v100_t["energy_j"], "integrated")
        # One window-long read of per-process utilisation: the process's mean over its samples.
        assert [p["pid"] for p in h100_w["processes"]] == [p["pid"] for p in h100_t["processes"]]
        assert len(h100_w["processes"]) == 1 and h100_w["processes"][0]["sm_util_pct"] is not None


def test_read_policy_is_validated():
    assert AgentConfig(read_policy="tick").validate().read_policy == "tick"
    with pytest.raises(ConfigError, match="read_policy"):
        AgentConfig(read_policy="sometimes").validate()


def test_window_utilisation_weighs_each_process_by_the_periods_it_ran(clock):
    import pynvml

    nvml = FakeNvml([{"model": "H100", "workload": "llm_training", "job_key": "slurm:1"}], clock=clock)
    reader = NvmlReader(nvml, clock=clock)
    reader.open()

    def sample(pid: int, stamp: int, sm: int):
        s = pynvml.c_nvmlProcessUtilizationSample_t()
        s.pid, s.timeStamp, s.smUtil = pid, stamp, sm
        return s

    # pid 1 at 50 % in all four sampling periods, pid 2 at 100 % in one of them.
    samples = [sample(1, t, 50) for t in (10, 20, 30, 40)] + [sample(2, 20, 100)]
    nvml.nvmlDeviceGetProcessUtilization = lambda handle, since: [s for s in samples if s.timeStamp > since]
    device = reader.devices[0]
    device.last_proc_ts_us = 0
    assert reader._process_util_mean(device) == {1: 50.0, 2: 25.0}
    assert device.last_proc_ts_us == 40
    assert reader._process_util_mean(device) == {}  # nothing since: NVML's NotFound, or an empty list


def _samples_for(policy: str, counters: list[int], powers: list[float], boundaries: set[int], *, counter: bool):
    """GpuSamples a reader of ``policy`` would give at each tick (one per second)."""
    from telemetry.agent.gpu import GpuSample

    out = []
    for i, (counter_mj, power_w) in enumerate(zip(counters, powers, strict=True)):
        full = policy == "tick" or i in boundaries
        out.append(
            GpuSample(
                index=0,
                uuid="GPU-p",
                name="NVIDIA H100 80GB HBM3",
                mono_s=float(i),
                power_w=power_w if (full or not counter) else None,
                energy_mj=counter_mj if (full and counter) else None,
                util_pct=50.0,
                mem_util_pct=10.0,
                mem_used_mib=1.0,
                power_limit_w=700.0,
            )
        )
    return out


def test_window_energies_add_up_to_the_counter_whatever_the_policy_and_boundaries():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(st.integers(0, 700_000), min_size=2, max_size=40),  # mJ per 1 s tick (<= 700 W)
        st.lists(st.floats(0.0, 700.0, allow_nan=False), min_size=40, max_size=40),
        st.sets(st.integers(1, 39), max_size=10),
    )
    def check(steps, powers, cuts):
        counters = [10**9]
        for step in steps:
            counters.append(counters[-1] + step)
        n = len(counters)
        powers = powers[:n]
        # The ticks that close windows: the chosen cuts inside the run, and always the last one.
        closes = sorted({c for c in cuts if c < n - 1} | {n - 1})
        boundaries = {0, *closes}
        totals = {}
        for policy in ("window", "tick"):
            for counter in (True, False):
                builder = WindowBuilder()
                energy = 0.0
                samples = _samples_for(policy, counters, powers, boundaries, counter=counter)
                for i, sample in enumerate(samples):
                    builder.add_tick(wall_s=float(i), gpus=[sample], host=None, jobs={})
                    if i in closes:
                        window = builder.close(end_wall_s=float(i))
                        energy += window["gpus"][0]["energy_j"]
                totals[policy, counter] = energy
        # With a counter: every joule of the counter's advance, once, in some window.
        expected_j = (counters[-1] - counters[0]) / 1000.0
        assert abs(totals["window", True] - expected_j) <= 1e-3 * len(closes)
        assert abs(totals["tick", True] - expected_j) <= 1e-3 * len(closes)
        # Without one: the same power samples every tick under both policies, the same trapezoids.
        assert totals["window", False] == totals["tick", False]

    check()
