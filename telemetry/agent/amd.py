"""AMD Instinct reader over AMD SMI's Python bindings (``amdsmi``), behind the NVML reader's
interface (``open``/``sample``/``close``, ``devices``, ``driver_version``): the window builder,
the spool and the wire format do not know which vendor measured.

The real library is optional (ROCm's ``amdsmi`` package; the agent imports it only with
``backend = "amdsmi"``); tests drive the reader with ``tests/agent/fake_amdsmi.py``, which
raises the library's own exception classes.

What is read, per processor handle (a GPU, or one compute partition of it):

- energy: ``amdsmi_get_energy_count`` -> ``energy_accumulator`` x ``counter_resolution`` (uJ),
  passed on in mJ like NVML's counter; quality ``measured``. ``AMDSMI_STATUS_NOT_SUPPORTED``
  (e.g. a virtual-machine guest) -> integrated from power, flagged, as for NVML;
- power: ``amdsmi_get_power_info`` ``current_socket_power`` (W; ``average_socket_power`` where
  the current value is "N/A"); power limit from ``amdsmi_get_power_cap_info`` (uW);
- utilisation: ``amdsmi_get_gpu_activity`` ``gfx_activity``/``umc_activity`` (%), memory from
  ``amdsmi_get_gpu_vram_usage`` (MB);
- per process: ``amdsmi_get_gpu_process_list`` gives each pid's cumulative GFX engine time
  (``engine_usage.gfx``, ns): its delta over the tick interval is the process's utilisation;
- partitions: ``amdsmi_get_gpu_compute_partition`` (SPX/DPX/QPX/CPX) and
  ``amdsmi_get_gpu_memory_partition`` (NPS1/NPS4), logged at discovery and in status.json.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from telemetry.agent.gpu import GPU_ONLY, MODULE, GpuSample
from telemetry.agent.log import kv

logger = logging.getLogger("carbonledger.agent.amd")

# amdsmi_wrapper.AMDSMI_STATUS_NOT_SUPPORTED (py-interface/amdsmi_wrapper.py).
AMDSMI_STATUS_NOT_SUPPORTED = 2


def amd_energy_covers(name: str) -> str:
    """MI300A is an APU: its socket's accumulator holds the Zen 4 cores and the shared HBM too."""
    return MODULE if "MI300A" in name.upper() else GPU_ONLY


def _number(value: Any) -> float | None:
    """A figure AMD SMI returned, or None for its "N/A" (and anything that is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class _AmdDevice:
    __slots__ = (
        "asic_serial",
        "compute_partition",
        "energy_covers",
        "handle",
        "has_counter",
        "has_process_list",
        "index",
        "last_gfx_ns",
        "last_mono_s",
        "memory_partition",
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
        self.has_process_list = True
        self.mig_enabled = False  # NVIDIA's MIG: never on an AMD device (partitions are devices)
        self.compute_partition: str | None = None
        self.memory_partition: str | None = None
        self.asic_serial: str | None = None
        self.energy_covers = amd_energy_covers(name)
        self.last_gfx_ns: dict[int, int] = {}
        self.last_mono_s: float | None = None


class AmdSmiReader:
    """Discovers AMD GPUs (or their compute partitions) once, then samples them each tick."""

    def __init__(self, amdsmi: Any, *, clock=time.monotonic, read_policy: str = "window") -> None:
        self.amdsmi = amdsmi
        self.clock = clock
        self.read_policy = read_policy  # as NvmlReader's: counter and process list at boundaries
        self.devices: list[_AmdDevice] = []
        self.driver_version: str | None = None
        self._opened = False
        # The library's base class where it exports one, else the two families it raises.
        base = getattr(amdsmi, "AmdSmiException", None)
        self._errors: tuple[type[BaseException], ...] = (
            (base,) if base is not None else (amdsmi.AmdSmiLibraryException, amdsmi.AmdSmiParameterException)
        )

    def _not_supported(self, exc: BaseException) -> bool:
        return isinstance(exc, self.amdsmi.AmdSmiLibraryException) and exc.err_code == AMDSMI_STATUS_NOT_SUPPORTED

    def open(self) -> None:
        amd = self.amdsmi
        amd.amdsmi_init(amd.AmdSmiInitFlags.INIT_AMD_GPUS)  # AmdSmiLibraryException without a driver
        self._opened = True
        self.devices = []
        for index, handle in enumerate(amd.amdsmi_get_processor_handles()):
            try:
                limit_w: float | None = amd.amdsmi_get_power_cap_info(handle)["power_cap"] / 1e6  # uW -> W
            except self._errors:
                limit_w = None
            try:
                asic = amd.amdsmi_get_gpu_asic_info(handle)
            except self._errors:
                asic = {}
            device = _AmdDevice(
                index=index,
                handle=handle,
                uuid=str(amd.amdsmi_get_gpu_device_uuid(handle)),
                name=str(asic.get("market_name") or "AMD GPU"),
                power_limit_w=limit_w,
            )
            device.asic_serial = asic.get("asic_serial") or None
            if self.driver_version is None:
                try:
                    self.driver_version = str(amd.amdsmi_get_gpu_driver_info(handle)["driver_version"])
                except self._errors:
                    self.driver_version = None
            for attribute, call in (
                ("compute_partition", "amdsmi_get_gpu_compute_partition"),
                ("memory_partition", "amdsmi_get_gpu_memory_partition"),
            ):
                try:
                    setattr(device, attribute, str(getattr(amd, call)(handle)) or None)
                except self._errors:
                    setattr(device, attribute, None)  # not partitionable (e.g. MI210)
            try:
                amd.amdsmi_get_energy_count(handle)
            except self._errors as exc:
                if not self._not_supported(exc):
                    raise
                device.has_counter = False
                kv(logger, logging.WARNING, "energy_counter_unsupported", gpu=device.uuid, fallback="integrated")
            self.devices.append(device)
            kv(
                logger,
                logging.INFO,
                "gpu_discovered",
                vendor="amd",
                index=index,
                uuid=device.uuid,
                name=device.name,
                power_limit_w=limit_w,
                energy_counter=device.has_counter,
                compute_partition=device.compute_partition,
                memory_partition=device.memory_partition,
            )

    def close(self) -> None:
        if self._opened:
            try:
                self.amdsmi.amdsmi_shut_down()
            except self._errors:
                pass
            self._opened = False

    def _energy_mj(self, device: _AmdDevice) -> int | None:
        if not device.has_counter:
            return None
        try:
            count = self.amdsmi.amdsmi_get_energy_count(device.handle)
        except self._errors as exc:
            if not self._not_supported(exc):
                raise
            device.has_counter = False
            kv(logger, logging.WARNING, "energy_counter_unsupported", gpu=device.uuid, fallback="integrated")
            return None
        # energy_accumulator x counter_resolution is in microjoules.
        return int(count["energy_accumulator"] * count["counter_resolution"] / 1000.0)

    def _processes(self, device: _AmdDevice, mono_s: float) -> dict[int, float | None]:
        if not device.has_process_list:
            return {}
        try:
            listed = self.amdsmi.amdsmi_get_gpu_process_list(device.handle)
        except self._errors as exc:
            if not self._not_supported(exc):
                raise
            device.has_process_list = False
            return {}
        interval_ns = None if device.last_mono_s is None else (mono_s - device.last_mono_s) * 1e9
        out: dict[int, float | None] = {}
        gfx_now: dict[int, int] = {}
        for process in listed:
            pid = int(process["pid"])
            gfx_ns = int(process["engine_usage"]["gfx"])
            gfx_now[pid] = gfx_ns
            before = device.last_gfx_ns.get(pid)
            if before is None or interval_ns is None or interval_ns <= 0 or gfx_ns < before:
                out[pid] = None  # first sight (or a restarted count): no interval to measure
            else:
                out[pid] = min(100.0, (gfx_ns - before) / interval_ns * 100.0)
        device.last_gfx_ns = gfx_now
        device.last_mono_s = mono_s
        return out

    def sample_device(self, device: _AmdDevice, *, boundary: bool = True) -> GpuSample:
        amd = self.amdsmi
        h = device.handle
        every = boundary or self.read_policy == "tick"
        energy = self._energy_mj(device) if every else None
        power: float | None = None
        if every or not device.has_counter:
            try:
                info = amd.amdsmi_get_power_info(h)
                power = _number(info.get("current_socket_power"))
                if power is None:
                    power = _number(info.get("average_socket_power"))
            except self._errors as exc:
                if not self._not_supported(exc):
                    raise
        util = mem_util = None
        try:
            activity = amd.amdsmi_get_gpu_activity(h)
            util, mem_util = _number(activity.get("gfx_activity")), _number(activity.get("umc_activity"))
        except self._errors as exc:
            if not self._not_supported(exc):
                raise
        try:
            mem_used: float | None = _number(amd.amdsmi_get_gpu_vram_usage(h).get("vram_used"))
        except self._errors as exc:
            if not self._not_supported(exc):
                raise
            mem_used = None
        mono_s = self.clock()
        return GpuSample(
            index=device.index,
            uuid=device.uuid,
            name=device.name,
            mono_s=mono_s,
            power_w=power,
            energy_mj=energy,
            util_pct=util,
            mem_util_pct=mem_util,
            mem_used_mib=mem_used,
            power_limit_w=device.power_limit_w,
            # The process list also maps jobs, so it is read every tick; its GFX engine times
            # are cumulative, so the utilisation of each interval is exact at any read rate.
            processes=self._processes(device, mono_s),
            energy_covers=device.energy_covers if device.has_counter else GPU_ONLY,
        )

    def sample(self, *, boundary: bool = True) -> list[GpuSample]:
        out = []
        for device in self.devices:
            try:
                out.append(self.sample_device(device, boundary=boundary))
            except self._errors as exc:
                # One sick device must not stop the others being measured.
                kv(logger, logging.WARNING, "gpu_sample_failed", gpu=device.uuid, error=str(exc))
        return out
