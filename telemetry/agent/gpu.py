"""GPU reader over an ``nvml`` module-like object: the real ``pynvml`` or a test double.

The same code runs on a GPU host (real pynvml) and in CI (``telemetry.agent.sim.FakeNvml`` /
``telemetry.agent.replay.ReplayNvml``), which raise pynvml's own error classes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from telemetry.agent.log import kv

logger = logging.getLogger("carbonledger.agent.gpu")


# The agent's records are NamedTuples and __slots__ classes, not dataclasses: importing
# dataclasses (with the inspect/ast/dis modules it pulls in) and building its 17 dataclasses cost
# ~17 ms of CPU at every start, as much as ~17 one-second ticks of 8 GPUs (docs/agent.md, "Overhead").

_NO_PROCESSES: Mapping[int, float | None] = MappingProxyType({})

# Grace Hopper (GH200) and Grace Blackwell (GB200, GB300) superchips: the module's energy counter
# covers the GPU, the Grace CPU and their memory (HBM + LPDDR5X).
_SUPERCHIP = re.compile(r"\bG[HB]\d{3}\b")
GPU_ONLY = "gpu"
MODULE = "gpu+cpu+memory"


def energy_covers_for(name: str) -> str:
    """What a device's energy counter covers, from its NVML name: ``gpu`` or ``gpu+cpu+memory``."""
    return MODULE if _SUPERCHIP.search(name) else GPU_ONLY


class MigSample(NamedTuple):
    uuid: str
    gpu_instance_id: int | None
    mem_used_mib: float | None
    pids: tuple[int, ...]
    slices: int | None = None  # the GPU instance's compute slices (nvmlDeviceGetAttributes)
    # Graphics-engine activity 0..1 of the GPU instance since the previous boundary (NVML GPM,
    # NVML_GPM_METRIC_GRAPHICS_UTIL; Hopper and newer); None between boundaries or unsupported.
    activity: float | None = None


class GpuSample:
    """One device's reading at one tick (read-only once built)."""

    __slots__ = (
        "energy_covers",
        "energy_mj",
        "index",
        "mem_used_mib",
        "mem_util_pct",
        "mig",
        "mono_s",
        "name",
        "power_limit_w",
        "power_w",
        "process_util_window",
        "processes",
        "util_pct",
        "uuid",
    )

    def __init__(
        self,
        index: int,
        uuid: str,
        name: str,
        mono_s: float,
        power_w: float | None,
        energy_mj: int | None,  # None: the device has no total-energy counter
        util_pct: float | None,
        mem_util_pct: float | None,
        mem_used_mib: float | None,
        power_limit_w: float | None,
        # pid -> SM utilisation (%) from nvmlDeviceGetProcessUtilization, None where not reported.
        processes: Mapping[int, float | None] = _NO_PROCESSES,
        mig: tuple[MigSample, ...] = (),
        # What energy_mj covers (``gpu``, or ``gpu+cpu+memory`` for a superchip module's counter).
        energy_covers: str = GPU_ONLY,
        # True: ``processes`` holds each pid's mean SM utilisation over every NVML sample since the
        # previous such read (a window's worth), not this tick's.
        process_util_window: bool = False,
    ) -> None:
        self.index = index
        self.uuid = uuid
        self.name = name
        self.mono_s = mono_s
        self.power_w = power_w
        self.energy_mj = energy_mj
        self.util_pct = util_pct
        self.mem_util_pct = mem_util_pct
        self.mem_used_mib = mem_used_mib
        self.power_limit_w = power_limit_w
        self.processes = processes
        self.mig = mig
        self.energy_covers = energy_covers
        self.process_util_window = process_util_window

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"GpuSample({fields})"


class _Device:
    __slots__ = (
        "energy_covers",
        "gpm_prev",
        "gpm_supported",
        "handle",
        "has_counter",
        "has_process_util",
        "has_util",
        "index",
        "last_proc_ts_us",
        "mig_enabled",
        "name",
        "power_limit_w",
        "uuid",
    )

    def __init__(self, index: int, handle: Any, uuid: str, name: str, power_limit_w: float | None) -> None:
        self.index = index
        self.handle = handle
        self.uuid = uuid
        self.name = name
        self.power_limit_w = power_limit_w
        self.has_counter = True
        self.has_process_util = True
        self.has_util = True
        self.last_proc_ts_us = 0
        self.mig_enabled = False
        self.energy_covers = energy_covers_for(name)
        self.gpm_supported = False
        self.gpm_prev: dict[int, Any] = {}  # GPU instance id -> its GPM sample at the last boundary


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlReader:
    """Discovers devices once, then samples them each tick.

    ``read_policy`` "window" (the default): ``sample(boundary=False)`` between window boundaries
    reads only what the window needs every tick (running processes for job mapping, utilisation,
    memory, and power on devices without an energy counter); the energy counter, power of counter
    devices and per-process utilisation are read at boundaries. "tick": everything every tick."""

    def __init__(self, nvml: Any, *, clock=time.monotonic, read_policy: str = "window") -> None:
        self.nvml = nvml
        self.clock = clock
        self.read_policy = read_policy
        self.devices: list[_Device] = []
        self.driver_version: str | None = None
        self._opened = False

    def open(self) -> None:
        nvml = self.nvml
        nvml.nvmlInit()  # raises pynvml.NVMLError_LibraryNotFound without a driver
        self._opened = True
        try:
            self.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            self.driver_version = None
        self.devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            try:
                limit_w: float | None = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
            except nvml.NVMLError:
                limit_w = None
            device = _Device(
                index=index,
                handle=handle,
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=_text(nvml.nvmlDeviceGetName(handle)),
                power_limit_w=limit_w,
            )
            try:
                current, _pending = nvml.nvmlDeviceGetMigMode(handle)
                device.mig_enabled = current == nvml.NVML_DEVICE_MIG_ENABLE
            except nvml.NVMLError:
                device.mig_enabled = False  # NotSupported on pre-Ampere devices
            if device.mig_enabled:
                try:
                    device.gpm_supported = bool(nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
                except (nvml.NVMLError, AttributeError):
                    device.gpm_supported = False  # A100 (no GPM), or an older driver/binding
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            except nvml.NVMLError_NotSupported:
                device.has_counter = False
                kv(logger, logging.WARNING, "energy_counter_unsupported", gpu=device.uuid, fallback="integrated")
            if self.read_policy == "window":
                self._process_util_mean(device)  # from now on: samples before the agent ran are not a window's
            self.devices.append(device)
            kv(
                logger,
                logging.INFO,
                "gpu_discovered",
                index=index,
                uuid=device.uuid,
                name=device.name,
                power_limit_w=limit_w,
                energy_counter=device.has_counter,
                energy_covers=device.energy_covers,
                mig=device.mig_enabled,
            )

    def close(self) -> None:
        if self._opened:
            for device in self.devices:
                for sample in device.gpm_prev.values():
                    try:
                        self.nvml.nvmlGpmSampleFree(sample)
                    except self.nvml.NVMLError:
                        pass
                device.gpm_prev = {}
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass
            self._opened = False

    def _processes(self, device: _Device, handle: Any) -> list[int]:
        nvml = self.nvml
        try:
            return [int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)]
        except nvml.NVMLError_NotSupported:
            return []

    def _process_util(self, device: _Device) -> dict[int, float]:
        nvml = self.nvml
        if not device.has_process_util:
            return {}
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(device.handle, device.last_proc_ts_us)
        except nvml.NVMLError_NotFound:
            return {}  # no sample since the last timestamp: no process was scheduled
        except nvml.NVMLError_NotSupported:
            device.has_process_util = False
            return {}
        utils: dict[int, float] = {}
        for s in samples:  # each field read once: pynvml's structs read through Python-level code
            device.last_proc_ts_us = max(device.last_proc_ts_us, int(s.timeStamp))
            pid = int(s.pid)
            utils[pid] = max(utils.get(pid, 0.0), float(s.smUtil))
        return utils

    def _process_util_mean(self, device: _Device) -> dict[int, float] | None:
        """Each pid's SM utilisation over every sampling period since the previous read (None: the
        device reports none); an empty dict: no process was scheduled since then."""
        nvml = self.nvml
        if not device.has_process_util:
            return None
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(device.handle, device.last_proc_ts_us)
        except nvml.NVMLError_NotFound:
            return {}
        except nvml.NVMLError_NotSupported:
            device.has_process_util = False
            return None
        sums: dict[int, float] = {}
        stamps: set[int] = set()
        for s in samples:  # each field read once: pynvml's structs read through Python-level code
            stamp = int(s.timeStamp)
            stamps.add(stamp)
            device.last_proc_ts_us = max(device.last_proc_ts_us, stamp)
            pid = int(s.pid)
            sums[pid] = sums.get(pid, 0.0) + float(s.smUtil)
        # Over the device's sampling periods in the read, not each pid's own: a process that ran
        # in a quarter of them weighs a quarter of one that ran throughout at the same SM use.
        periods = len(stamps) or 1
        return {pid: min(100.0, total / periods) for pid, total in sums.items()}

    def _instance_activity(self, device: _Device, gpu_instance_id: int) -> float | None:
        """The GPU instance's graphics-engine activity (0..1) since the previous boundary, by NVML
        GPM; None at the first boundary or where GPM cannot say."""
        nvml = self.nvml
        sample = nvml.nvmlGpmSampleAlloc()
        try:
            nvml.nvmlGpmMigSampleGet(device.handle, gpu_instance_id, sample)
        except nvml.NVMLError:
            nvml.nvmlGpmSampleFree(sample)
            return None
        previous = device.gpm_prev.get(gpu_instance_id)
        device.gpm_prev[gpu_instance_id] = sample
        if previous is None:
            return None
        try:
            request = nvml.c_nvmlGpmMetricsGet_t()
            request.version = nvml.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = 1
            request.sample1 = previous
            request.sample2 = sample
            request.metrics[0].metricId = nvml.NVML_GPM_METRIC_GRAPHICS_UTIL
            nvml.nvmlGpmMetricsGet(request)
            metric = request.metrics[0]
            if metric.nvmlReturn != nvml.NVML_SUCCESS:
                return None
            return min(1.0, max(0.0, float(metric.value) / 100.0))  # percent -> ratio
        except nvml.NVMLError:
            return None
        finally:
            nvml.nvmlGpmSampleFree(previous)

    def _mig(self, device: _Device, *, boundary: bool = False) -> tuple[MigSample, ...]:
        nvml = self.nvml
        out = []
        for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(device.handle)):
            try:
                mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(device.handle, i)
            except nvml.NVMLError_NotFound:
                continue  # empty slot
            try:
                gi: int | None = int(nvml.nvmlDeviceGetGpuInstanceId(mh))
            except nvml.NVMLError:
                gi = None
            try:
                mem: float | None = nvml.nvmlDeviceGetMemoryInfo(mh).used / 2**20
            except nvml.NVMLError:
                mem = None
            try:
                slices: int | None = int(nvml.nvmlDeviceGetAttributes(mh).gpuInstanceSliceCount) or None
            except nvml.NVMLError:
                slices = None
            activity = (
                self._instance_activity(device, gi) if boundary and device.gpm_supported and gi is not None else None
            )
            out.append(
                MigSample(
                    uuid=_text(nvml.nvmlDeviceGetUUID(mh)),
                    gpu_instance_id=gi,
                    mem_used_mib=mem,
                    pids=tuple(self._processes(device, mh)),
                    slices=slices,
                    activity=activity,
                )
            )
        return tuple(out)

    def sample_device(self, device: _Device, *, boundary: bool = True) -> GpuSample:
        nvml = self.nvml
        h = device.handle
        every = boundary or self.read_policy == "tick"
        energy: int | None = None
        if device.has_counter and every:
            try:
                energy = int(nvml.nvmlDeviceGetTotalEnergyConsumption(h))
            except nvml.NVMLError_NotSupported:
                device.has_counter = False
                kv(logger, logging.WARNING, "energy_counter_unsupported", gpu=device.uuid, fallback="integrated")
        power: float | None = None
        if every or not device.has_counter:
            # With a counter, power only at boundaries: max_power_w, and the trapezoid should the
            # counter reset inside the window.
            try:
                power = nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            except nvml.NVMLError_NotSupported:
                power = None
        util = mem_util = None
        if device.has_util:
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(h)
                util, mem_util = float(rates.gpu), float(rates.memory)
            except nvml.NVMLError_NotSupported:
                device.has_util = False  # MIG-enabled GPUs report no device utilisation
        try:
            mem_used: float | None = nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
        except nvml.NVMLError_NotSupported:
            mem_used = None
        mig = self._mig(device, boundary=boundary) if device.mig_enabled else ()
        pids = self._processes(device, h)
        for m in mig:
            pids.extend(m.pids)
        window_util = False
        if self.read_policy == "tick":
            sm: dict[int, float] = self._process_util(device)
        elif boundary:
            mean = self._process_util_mean(device)
            window_util = mean is not None
            sm = mean or {}
            pids.extend(pid for pid in sm if pid not in pids)  # ran in the window, gone now
        else:
            sm = {}
        processes: dict[int, float | None] = {pid: sm.get(pid) for pid in pids}
        return GpuSample(
            index=device.index,
            uuid=device.uuid,
            name=device.name,
            mono_s=self.clock(),
            power_w=power,
            energy_mj=energy,
            util_pct=util,
            mem_util_pct=mem_util,
            mem_used_mib=mem_used,
            power_limit_w=device.power_limit_w,
            processes=processes,
            mig=mig,
            # Only the counter is known to cover the module; power samples integrated instead
            # are taken as the GPU's, and the host's CPU/DRAM stay reported (modelled or RAPL).
            energy_covers=device.energy_covers if device.has_counter else GPU_ONLY,
            process_util_window=window_util,
        )

    def sample(self, *, boundary: bool = True) -> list[GpuSample]:
        """One reading of every device; ``boundary`` False between window boundaries (see the class)."""
        out = []
        for device in self.devices:
            try:
                out.append(self.sample_device(device, boundary=boundary))
            except self.nvml.NVMLError as exc:
                # One sick device (GPU lost, ECC storm) must not stop the others being measured.
                kv(logger, logging.WARNING, "gpu_sample_failed", gpu=device.uuid, error=str(exc))
        return out
