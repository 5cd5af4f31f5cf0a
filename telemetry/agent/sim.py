"""Simulated NVML: a test double of the pynvml subset the agent calls, with realistic traces.

It raises pynvml's own error classes (``pynvml.NVMLError(code)`` builds the matching subclass)
and returns pynvml's own ctypes struct types (filled in C, like NVML fills them), so
``telemetry.agent.gpu.NvmlReader`` runs unchanged.
The energy counter integrates the very power the device reports, in 100 ms steps (NVML's own
update period), so counter deltas and power samples agree the way they do on hardware. A read
that finds n > 1 steps elapsed advances them in one go: the workload's mean activity over those
steps in closed form (phase fractions, burst counts, noise of a mean), held as the interval's
power (NVML reports power averaged over its last period too), so the counter still advances by
exactly power x time and a 1 s tick costs one draw per GPU rather than ten.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pynvml

from telemetry.agent.ids import uuid4_text

STEP_S = 0.1
_STEP_DUE_S = STEP_S - 1e-9 * STEP_S  # a step has elapsed (float slack)


# The structs pynvml returns, built here the way NVML fills them: in C. Constructing pynvml's
# classes with values runs their Python-level __setattr__ for every field (it converts str to
# bytes for callers that set fields), a cost a real read never pays; these subclasses set fields
# through ctypes directly. Reads still go through pynvml's own __getattribute__, as on a GPU host.
class _Utilization(pynvml.c_nvmlUtilization_t):
    __setattr__ = ctypes.Structure.__setattr__


class _Memory(pynvml.c_nvmlMemory_t):
    __setattr__ = ctypes.Structure.__setattr__


class _ProcessUtilizationSample(pynvml.c_nvmlProcessUtilizationSample_t):
    __setattr__ = ctypes.Structure.__setattr__


class GpuModel(NamedTuple):
    name: str
    idle_w: float
    max_w: float
    mem_gib: int


GPU_MODELS: dict[str, GpuModel] = {
    "V100": GpuModel("Tesla V100-SXM2-32GB", 35.0, 300.0, 32),
    "A100": GpuModel("NVIDIA A100-SXM4-80GB", 50.0, 400.0, 80),
    "H100": GpuModel("NVIDIA H100 80GB HBM3", 70.0, 700.0, 80),
    "H200": GpuModel("NVIDIA H200", 75.0, 700.0, 141),
    "L4": GpuModel("NVIDIA L4", 16.0, 72.0, 24),
    # Grace Hopper superchip: figures of the whole module (GPU + Grace CPU + memory).
    "GH200": GpuModel("NVIDIA GH200 480GB", 120.0, 1000.0, 96),
}

MIG_PROFILES = {"1g.10gb": 1, "2g.20gb": 2, "3g.40gb": 3, "4g.40gb": 4, "7g.80gb": 7}


def daily_load(wall_s: float) -> float:
    """Interactive traffic: trough around 04:00 UTC (0.2), peak around 16:00 UTC (0.9)."""
    hour = (wall_s % 86400.0) / 3600.0
    return 0.55 - 0.35 * math.cos(2 * math.pi * (hour - 4.0) / 24.0)


class Activity(NamedTuple):
    power_frac: float  # 0 = idle power, 1 = peak power
    util_pct: float
    mem_util_pct: float
    mem_frac: float


def _phase_s(a: float, b: float, period: float, lo: float, hi: float) -> float:
    """Seconds of [a, b) (a >= 0) whose phase ``t % period`` lies in [lo, hi)."""

    def upto(x: float) -> float:
        cycles, rem = divmod(x, period)
        return cycles * (hi - lo) + min(hi - lo, max(0.0, rem - lo))

    return max(0.0, upto(b) - upto(a))


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 64:
        return sum(1 for _ in range(n) if rng.random() < p)
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1.0 - p))))))


class Workload:
    """Per-step activity of a workload family; ``t`` is seconds since the job started.

    ``mean`` is the average activity over ``n`` consecutive 100 ms steps from ``t`` (what
    ``n`` calls of ``step`` would average to, noise of the mean included), in closed form."""

    name = "idle"
    busy = False
    _HALF_NORMAL_MEAN = 1.0 / math.sqrt(2.0 * math.pi)  # E[max(0, X)] / sigma, X ~ N(0, sigma)
    _HALF_NORMAL_SD = math.sqrt(0.5 - 1.0 / (2.0 * math.pi))  # its standard deviation / sigma

    def step(self, t: float, wall_s: float, rng: random.Random) -> Activity:
        return Activity(max(0.0, rng.gauss(0.0, 0.005)), 0.0, 0.0, 0.005)

    def mean(self, t: float, wall_s: float, n: int, step_s: float, rng: random.Random) -> Activity:
        sigma = 0.005
        frac = sigma * self._HALF_NORMAL_MEAN + rng.gauss(0.0, sigma * self._HALF_NORMAL_SD / math.sqrt(n))
        return Activity(max(0.0, frac), 0.0, 0.0, 0.005)


class LlmTraining(Workload):
    """Steady near-peak compute; an all-reduce dip each ~1.2 s step; a checkpoint every 10 min
    (25 s of near-idle GPUs while weights go to storage)."""

    name, busy = "llm_training", True
    checkpoint_every_s, checkpoint_s, step_s = 600.0, 25.0, 1.2

    def step(self, t, wall_s, rng):
        if t % self.checkpoint_every_s >= self.checkpoint_every_s - self.checkpoint_s:
            return Activity(0.12 + rng.gauss(0, 0.01), 3.0, 2.0, 0.92)
        if t % self.step_s < 0.2:
            return Activity(0.70 + rng.gauss(0, 0.02), 92.0, 30.0, 0.92)
        return Activity(0.93 + rng.gauss(0, 0.02), 99.0, 42.0 + rng.gauss(0, 2), 0.92)

    def mean(self, t, wall_s, n, step_s, rng):
        dur = n * step_s
        every = self.checkpoint_every_s
        ck = _phase_s(t, t + dur, every, every - self.checkpoint_s, every) / dur
        dip = _phase_s(t, t + dur, self.step_s, 0.0, 0.2) / dur * (1.0 - ck)
        comp = max(0.0, 1.0 - ck - dip)
        noise = math.sqrt((ck * 0.01**2 + (dip + comp) * 0.02**2) / n)
        return Activity(
            ck * 0.12 + dip * 0.70 + comp * 0.93 + rng.gauss(0, noise),
            ck * 3.0 + dip * 92.0 + comp * 99.0,
            ck * 2.0 + dip * 30.0 + comp * 42.0 + rng.gauss(0, 2.0 * math.sqrt(comp / n)),
            0.92,
        )


class LlmInference(Workload):
    """Prefill bursts (compute-bound, near peak) on top of decode (bandwidth-bound, lower power);
    request rate follows the daily curve."""

    name, busy = "llm_inference", True
    burst_left = 0

    def step(self, t, wall_s, rng):
        load = daily_load(wall_s)
        if self.burst_left > 0 or rng.random() < 0.25 * load:
            if self.burst_left <= 0:
                self.burst_left = rng.randint(1, 3)
            self.burst_left -= 1
            return Activity(0.85 + rng.gauss(0, 0.03), 100.0, 30.0, 0.85)
        return Activity(0.30 + 0.30 * load + rng.gauss(0, 0.02), 60.0 + 35.0 * load, 50.0 + 35.0 * load, 0.85)

    def mean(self, t, wall_s, n, step_s, rng):
        # The same burst chain as ``step``, walked a run at a time: the steps before the next
        # burst starts are geometric with the per-step start probability.
        load = daily_load(wall_s)
        p = 0.25 * load
        left, bursts = n, 0
        while left > 0:
            if self.burst_left > 0:
                k = min(self.burst_left, left)
                self.burst_left -= k
                bursts += k
                left -= k
                continue
            if p <= 0.0:
                quiet = left
            elif p >= 1.0:
                quiet = 0
            else:
                quiet = int(math.log(1.0 - rng.random()) / math.log(1.0 - p))
            left -= min(quiet, left)
            if left > 0:
                self.burst_left = rng.randint(1, 3)
        b = bursts / n
        q = 1.0 - b
        noise = math.sqrt((b * 0.03**2 + q * 0.02**2) / n)
        return Activity(
            b * 0.85 + q * (0.30 + 0.30 * load) + rng.gauss(0, noise),
            b * 100.0 + q * (60.0 + 35.0 * load),
            b * 30.0 + q * (50.0 + 35.0 * load),
            0.85,
        )


class MoeInference(Workload):
    """Like dense inference but burstier (expert routing imbalance) and lower average SM use;
    memory nearly full with all experts resident."""

    name, busy = "moe_inference", True

    def step(self, t, wall_s, rng):
        load = daily_load(wall_s)
        if rng.random() < 0.2 * load:
            return Activity(0.75 + rng.gauss(0, 0.05), 95.0, 35.0, 0.93)
        return Activity(0.25 + 0.25 * load + rng.gauss(0, 0.06), 45.0 + 40.0 * load, 55.0 + 30.0 * load, 0.93)

    def mean(self, t, wall_s, n, step_s, rng):
        load = daily_load(wall_s)
        b = _binomial(rng, n, 0.2 * load) / n
        q = 1.0 - b
        noise = math.sqrt((b * 0.05**2 + q * 0.06**2) / n)
        return Activity(
            b * 0.75 + q * (0.25 + 0.25 * load) + rng.gauss(0, noise),
            b * 95.0 + q * (45.0 + 40.0 * load),
            b * 35.0 + q * (55.0 + 30.0 * load),
            0.93,
        )


class RecsysTraining(Workload):
    """Embedding lookups dominate: memory-bound (high memory utilisation, moderate SM), with an
    evaluation pass every 5 min."""

    name, busy = "recsys_training", True

    def step(self, t, wall_s, rng):
        if t % 300.0 >= 290.0:
            return Activity(0.30 + rng.gauss(0, 0.02), 35.0, 50.0, 0.75)
        return Activity(0.55 + rng.gauss(0, 0.03), 55.0 + rng.gauss(0, 5), 85.0 + rng.gauss(0, 3), 0.75)

    def mean(self, t, wall_s, n, step_s, rng):
        dur = n * step_s
        ev = _phase_s(t, t + dur, 300.0, 290.0, 300.0) / dur
        tr = 1.0 - ev
        return Activity(
            ev * 0.30 + tr * 0.55 + rng.gauss(0, math.sqrt((ev * 0.02**2 + tr * 0.03**2) / n)),
            ev * 35.0 + tr * 55.0 + rng.gauss(0, 5.0 * math.sqrt(tr / n)),
            ev * 50.0 + tr * 85.0 + rng.gauss(0, 3.0 * math.sqrt(tr / n)),
            0.75,
        )


class RecsysInference(Workload):
    name, busy = "recsys_inference", True

    def step(self, t, wall_s, rng):
        load = daily_load(wall_s)
        return Activity(0.25 + 0.20 * load + rng.gauss(0, 0.02), 25.0 + 20.0 * load, 60.0 + 25.0 * load, 0.6)

    def mean(self, t, wall_s, n, step_s, rng):
        load = daily_load(wall_s)
        return Activity(
            0.25 + 0.20 * load + rng.gauss(0, 0.02 / math.sqrt(n)), 25.0 + 20.0 * load, 60.0 + 25.0 * load, 0.6
        )


WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (Workload, LlmTraining, LlmInference, MoeInference, RecsysTraining, RecsysInference)
}


def _stable_uuid(*parts: Any) -> str:
    return uuid4_text(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16])


class SimProcess(NamedTuple):
    pid: int
    job_key: str | None
    mig_uuid: str | None = None


class SimMig:
    """A MIG instance: its device handle."""

    __slots__ = ("gpu_instance_id", "job_key", "parent", "profile", "slices", "slot", "uuid")

    def __init__(
        self,
        parent: SimGpu,
        slot: int,
        uuid: str,
        profile: str,
        slices: int,
        gpu_instance_id: int,
        job_key: str | None = None,
    ) -> None:
        self.parent = parent
        self.slot = slot
        self.uuid = uuid
        self.profile = profile
        self.slices = slices
        self.gpu_instance_id = gpu_instance_id
        self.job_key = job_key


class _GpmSample:
    """Stands for pynvml's c_nvmlGpmSample_t: what nvmlGpmMigSampleGet filled in."""

    __slots__ = ("activity", "freed", "gpu_instance_id", "t_mono")

    def __init__(self) -> None:
        self.t_mono: float | None = None
        self.activity = 0.0
        self.gpu_instance_id: int | None = None
        self.freed = False


class _GpmMetric:
    __slots__ = ("metricId", "nvmlReturn", "value")

    def __init__(self) -> None:
        self.metricId = 0
        self.nvmlReturn = 0
        self.value = 0.0


class GpmMetricsGet:
    """Stands for pynvml's c_nvmlGpmMetricsGet_t (fields as the real struct's)."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: _GpmSample | None = None
        self.sample2: _GpmSample | None = None
        self.metrics = [_GpmMetric() for _ in range(8)]


class _Attributes(NamedTuple):
    gpuInstanceSliceCount: int
    computeInstanceSliceCount: int
    multiprocessorCount: int


# GPU performance monitoring (GPM), and so per-MIG-instance activity, exists from Hopper on.
_GPM_MODELS = ("H100", "H200", "GH200")


class SimGpu:
    """A simulated device: its handle, and the state its readings come from."""

    __slots__ = (
        "activity",
        "counter_mj",
        "energy_counter",
        "index",
        "job_start_mono",
        "mig",
        "model",
        "power_w",
        "processes",
        "rng",
        "t_mono",
        "uuid",
        "workload",
    )

    def __init__(
        self,
        index: int,
        model: GpuModel,
        uuid: str,
        workload: Workload,
        rng: random.Random,
        energy_counter: bool = True,
        counter_mj: float = 0.0,
        t_mono: float = 0.0,
    ) -> None:
        self.index = index
        self.model = model
        self.uuid = uuid
        self.workload = workload
        self.rng = rng
        self.energy_counter = energy_counter
        self.counter_mj = counter_mj
        self.power_w = 0.0
        self.activity = Activity(0.0, 0.0, 0.0, 0.0)
        self.t_mono = t_mono
        self.job_start_mono = 0.0
        self.processes: list[SimProcess] = []
        self.mig: list[SimMig] = []

    @property
    def power_limit_w(self) -> float:
        return self.model.max_w


class SimProcTree:
    """Writes /proc/<pid>/{environ,cgroup,stat} for simulated processes, so the agent's real
    JobMapper maps them (Slurm cgroup v2 layout, Kubernetes systemd-driver slice, or env label)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int, job_key: str | None, visible: str) -> None:
        d = self.root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        env = {"CUDA_VISIBLE_DEVICES": visible, "PATH": "/usr/bin"}
        cgroup = "0::/user.slice/user-1000.slice/session-1.scope\n"
        if job_key and job_key.startswith("slurm:"):
            jid = job_key.split(":", 1)[1]
            env["SLURM_JOB_ID"] = jid
            cgroup = f"0::/system.slice/slurmstepd.scope/job_{jid}/step_0/user/task_0\n"
        elif job_key and job_key.startswith("k8s:"):
            uid = job_key.split(":", 1)[1].replace("-", "_")
            cgroup = (
                f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/"
                f"cri-containerd-{pid:064x}.scope\n"
            )
        elif job_key and job_key.startswith("env:"):
            env["CARBONLEDGER_JOB"] = job_key.split(":", 1)[1]
        (d / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
        (d / "cgroup").write_text(cgroup)
        (d / "stat").write_text(f"{pid} (python) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 8 0 {pid * 7} 0 0\n")

    def remove(self, pid: int) -> None:
        d = self.root / str(pid)
        for name in ("environ", "cgroup", "stat"):
            try:
                (d / name).unlink()
            except FileNotFoundError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


class FakeNvml:
    """Module-like stand-in for ``pynvml`` backed by simulated devices."""

    def __init__(
        self,
        gpus: list[dict[str, Any]],
        *,
        hostname: str = "sim-host",
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        proc_tree: SimProcTree | None = None,
        init_error: int | None = None,
        pid_base: int = 20000,
        call_cost_s: dict[str, float] | None = None,
    ) -> None:
        # Simulated CPU cost per call (busy time in this thread), e.g. what a real driver's
        # nvmlDeviceGetTotalEnergyConsumption costs, so benchmarks weigh read policies as on
        # hardware; and a count of the calls each method received.
        self._call_cost_s = {k: v for k, v in (call_cost_s or {}).items() if v > 0}
        self.calls: dict[str, int] = {}
        self._clock = clock
        self._wall0 = wall_clock()
        self._mono0 = clock()
        self._init_error = init_error
        self._initialised = False
        self._lock = threading.Lock()
        self.proc_tree = proc_tree
        self._next_pid = pid_base
        self.devices: list[SimGpu] = []
        for index, spec in enumerate(gpus):
            model_name = spec.get("model", "H100")
            if model_name not in GPU_MODELS:
                raise ValueError(f"gpus[{index}].model: unknown {model_name!r} (known: {', '.join(GPU_MODELS)})")
            model = GPU_MODELS[model_name]
            rng = random.Random(f"{seed}/{hostname}/{index}")
            dev = SimGpu(
                index=index,
                model=model,
                uuid=spec.get("uuid") or "GPU-" + _stable_uuid(hostname, index, model_name),
                workload=Workload(),
                rng=rng,
                energy_counter=bool(spec.get("energy_counter", True)),
                # Counter since driver load: days of uptime already on it.
                counter_mj=float(rng.randint(1, 30) * 86400 * model.idle_w * 1000),
                t_mono=self._mono0,
            )
            self.devices.append(dev)
            for slot, mig_spec in enumerate(spec.get("mig", [])):
                profile = mig_spec.get("profile", "1g.10gb")
                if profile not in MIG_PROFILES:
                    raise ValueError(f"gpus[{index}].mig[{slot}].profile: unknown {profile!r}")
                dev.mig.append(
                    SimMig(
                        dev,
                        slot,
                        "MIG-" + _stable_uuid(dev.uuid, slot),
                        profile,
                        MIG_PROFILES[profile],
                        gpu_instance_id=slot + 1,
                        job_key=mig_spec.get("job_key"),
                    )
                )
            self.assign(index, spec.get("workload", "idle"), spec.get("job_key"))

    # -- simulation control ------------------------------------------------------------------
    def _wall(self, mono: float) -> float:
        return self._wall0 + (mono - self._mono0)

    def assign(self, index: int, workload: str, job_key: str | list[str] | None) -> None:
        """Put a (new) job on a device: its old processes exit, new ones start."""
        if workload not in WORKLOADS:
            raise ValueError(f"workload: unknown {workload!r} (known: {', '.join(WORKLOADS)})")
        with self._lock:
            dev = self.devices[index]
            self._advance(dev, self._clock())
            for p in dev.processes:
                if self.proc_tree is not None:
                    self.proc_tree.remove(p.pid)
            dev.processes = []
            dev.workload = WORKLOADS[workload]()
            dev.job_start_mono = dev.t_mono
            keys: list[str | None] = list(job_key) if isinstance(job_key, list) else [job_key]
            targets: list[tuple[str | None, str | None]]
            if dev.mig:
                targets = [(m.job_key, m.uuid) for m in dev.mig if m.job_key] if dev.workload.busy else []
            elif dev.workload.busy:
                targets = [(k, None) for k in keys]
            else:
                targets = []
            for key, mig_uuid in targets:
                pid = self._next_pid
                self._next_pid += 1
                dev.processes.append(SimProcess(pid, key, mig_uuid))
                if self.proc_tree is not None:
                    self.proc_tree.add(pid, key, mig_uuid or dev.uuid)

    def set_counter(self, index: int, value_mj: int) -> None:
        """Test hook: jump the energy counter (driver reload -> reset, or near 2**64 -> wrap)."""
        with self._lock:
            dev = self.devices[index]
            self._advance(dev, self._clock())
            dev.counter_mj = float(value_mj)

    def _advance(self, dev: SimGpu, now: float) -> None:
        n = int((now - dev.t_mono) / STEP_S + 1e-9)
        if n <= 0:
            return
        if n > 36000:  # a suspended process woke up: jump, keeping the counter consistent
            skip = n - 36000
            dev.counter_mj += dev.power_w * skip * STEP_S * 1000.0
            dev.t_mono += skip * STEP_S
            n = 36000
        model = dev.model
        span = model.max_w - model.idle_w
        mig_scale = 1.0
        if dev.mig:
            mig_scale = sum(m.slices for m in dev.mig if m.job_key) / 7.0
        t, wall = dev.t_mono - dev.job_start_mono, self._wall(dev.t_mono)
        if n == 1:
            act = dev.workload.step(t, wall, dev.rng)
        else:  # n steps in one go: their mean activity, held as the interval's power
            act = dev.workload.mean(t, wall, n, STEP_S, dev.rng)
        frac = min(1.0, max(0.0, act.power_frac)) * mig_scale
        noise_w = dev.rng.gauss(0, 0.3 / math.sqrt(n))
        dev.power_w = min(model.max_w, max(0.0, model.idle_w + span * frac + noise_w))
        dev.activity = act
        dev.counter_mj = (dev.counter_mj + dev.power_w * n * STEP_S * 1000.0) % 2**64
        dev.t_mono += n * STEP_S

    # -- pynvml surface ----------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Error classes and constants are pynvml's own, so `except nvml.NVMLError_NotSupported`
        # catches what the real library raises.
        if name.startswith(("NVMLError", "NVML_")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def _check(self) -> None:
        if not self._initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _dev(self, handle: Any) -> SimGpu:
        if not self._initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, SimGpu):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        now = self._clock()
        # Most calls of a sample land within the same 100 ms step: nothing to advance, no lock.
        if now - handle.t_mono >= _STEP_DUE_S:
            with self._lock:
                self._advance(handle, now)
        return handle

    def nvmlInit(self) -> None:
        if self._init_error is not None:
            raise pynvml.NVMLError(self._init_error)
        self._initialised = True

    def nvmlShutdown(self) -> None:
        self._check()
        self._initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check()
        return "550.54.15-sim"

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimGpu:
        self._check()
        if not 0 <= index < len(self.devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._check()
        return handle.uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._dev(handle).model.name

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return int(self._dev(handle).power_limit_w * 1000)

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        dev = self._dev(handle)
        if dev.model.name.startswith("Tesla V100"):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if dev.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        self._dev(handle)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> SimMig:
        dev = self._dev(handle)
        if index >= len(dev.mig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return dev.mig[index]

    c_nvmlGpmMetricsGet_t = GpmMetricsGet

    def nvmlDeviceGetAttributes(self, handle: Any) -> _Attributes:
        self._check()
        if not isinstance(handle, SimMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return _Attributes(handle.slices, handle.slices, 132 * handle.slices // 7)

    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> Any:
        dev = self._dev(handle)
        supported = dev.model in tuple(GPU_MODELS[k] for k in _GPM_MODELS)
        return pynvml.nvmlFriendlyObject({"version": 1, "isSupportedDevice": int(supported)})

    def nvmlGpmSampleAlloc(self) -> _GpmSample:
        self._check()
        return _GpmSample()

    def nvmlGpmSampleFree(self, sample: _GpmSample) -> None:
        sample.freed = True

    def nvmlGpmMigSampleGet(self, handle: Any, gpuInstanceId: int, sample: _GpmSample) -> _GpmSample:
        self._cost("nvmlGpmMigSampleGet")
        dev = self._dev(handle)
        instance = next((m for m in dev.mig if m.gpu_instance_id == gpuInstanceId), None)
        if instance is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        busy = bool(instance.job_key) and dev.workload.busy
        sample.t_mono = dev.t_mono
        sample.activity = min(1.0, max(0.0, dev.activity.util_pct / 100.0)) if busy else 0.0
        sample.gpu_instance_id = gpuInstanceId
        return sample

    def nvmlGpmMetricsGet(self, request: GpmMetricsGet) -> GpmMetricsGet:
        self._check()
        first, second = request.sample1, request.sample2
        if first is None or second is None or first.freed or second.freed or first.t_mono is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        for metric in request.metrics[: request.numMetrics]:
            if metric.metricId == pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL:
                metric.value = (first.activity + second.activity) / 2.0 * 100.0  # percent
                metric.nvmlReturn = pynvml.NVML_SUCCESS
            else:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return request

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:
        self._check()
        if not isinstance(handle, SimMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.gpu_instance_id

    def _cost(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        cost = self._call_cost_s.get(name)
        if cost:
            end = time.thread_time() + cost
            while time.thread_time() < end:
                pass

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._cost("nvmlDeviceGetTotalEnergyConsumption")
        dev = self._dev(handle)
        if not dev.energy_counter:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(dev.counter_mj)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._cost("nvmlDeviceGetPowerUsage")
        return round(self._dev(handle).power_w * 1000)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        self._cost("nvmlDeviceGetUtilizationRates")
        dev = self._dev(handle)
        if dev.mig:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        act = dev.activity
        return _Utilization(round(min(100.0, max(0.0, act.util_pct))), round(min(100.0, max(0.0, act.mem_util_pct))))

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:
        self._cost("nvmlDeviceGetMemoryInfo")
        if isinstance(handle, SimMig):
            self._check()
            total = handle.parent.model.mem_gib * 2**30 * handle.slices // 8
            used = int(total * (0.8 if handle.job_key and handle.parent.workload.busy else 0.0))
        else:
            dev = self._dev(handle)
            total = dev.model.mem_gib * 2**30
            used = int(total * min(1.0, dev.activity.mem_frac)) if dev.processes or not dev.workload.busy else 0
        return _Memory(total, total - used, used)  # fields: total, free, used

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        self._cost("nvmlDeviceGetComputeRunningProcesses")
        if isinstance(handle, SimMig):
            self._check()
            procs = [p for p in handle.parent.processes if p.mig_uuid == handle.uuid]
            per = handle.parent.model.mem_gib * 2**30 // 10
        else:
            dev = self._dev(handle)
            procs = [p for p in dev.processes if p.mig_uuid is None]
            per = int(dev.model.mem_gib * 2**30 * dev.activity.mem_frac / max(1, len(procs)))
        # What pynvml returns: its c_nvmlProcessInfo_v3_t as an nvmlFriendlyObject (built directly).
        return [
            pynvml.nvmlFriendlyObject(
                {"pid": p.pid, "usedGpuMemory": per, "gpuInstanceId": 0xFFFFFFFF, "computeInstanceId": 0xFFFFFFFF}
            )
            for p in procs
        ]

    def nvmlDeviceGetProcessUtilization(self, handle: Any, timeStamp: int) -> list[Any]:
        self._cost("nvmlDeviceGetProcessUtilization")
        dev = self._dev(handle)
        now_us = int(self._wall(dev.t_mono) * 1e6)
        if not dev.processes or now_us <= timeStamp:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        share = dev.activity.util_pct / len(dev.processes)
        sm = round(min(100.0, share))
        mem = round(dev.activity.mem_util_pct / len(dev.processes))
        # fields: pid, timeStamp, smUtil, memUtil (encUtil, decUtil left 0)
        return [_ProcessUtilizationSample(p.pid, now_us, sm, mem) for p in dev.processes]


class SimHostPower:
    """Host CPU/DRAM and wall power of a simulated host, following its GPUs' activity: input
    pipelines and NCCL proxies keep CPUs busier when GPUs are. Quality 'modelled'."""

    quality = "modelled"
    source = "sim"

    def __init__(
        self,
        nvml: FakeNvml,
        *,
        cpu_tdp_w: float = 2 * 205.0,
        mem_gb: float = 1024.0,
        dram_w_per_gb: float = 0.375,
        overhead_w: float = 180.0,
        clock: Callable[[], float] = time.monotonic,
        wall: bool = True,
    ) -> None:
        self.nvml = nvml
        self.cpu_tdp_w = cpu_tdp_w
        self.dram_w = dram_w_per_gb * mem_gb
        self.overhead_w = overhead_w  # fans, NICs, storage, PSU losses: what only the BMC sees
        self.clock = clock
        self.wall = wall
        self._last = clock()

    def read(self) -> Any:
        from telemetry.agent.host import HostReading

        now = self.clock()
        dt, self._last = max(0.0, now - self._last), now
        devs = self.nvml.devices
        busy = sum(d.activity.util_pct for d in devs) / (100.0 * len(devs)) if devs else 0.0
        load = min(1.0, 0.08 + 0.45 * busy)
        cpu_w = self.cpu_tdp_w * load
        gpu_w = sum(d.power_w for d in devs)
        wall_w = (gpu_w + cpu_w + self.dram_w) * 1.06 + self.overhead_w if self.wall else None
        return HostReading(cpu_w * dt, self.dram_w * dt, load * 100.0, wall_w, self.quality)
