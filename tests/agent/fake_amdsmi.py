"""A fake of AMD SMI's Python bindings (``amdsmi``) for tests: the functions the agent calls,
with the library's return shapes and its exception classes and status codes
(py-interface/amdsmi_interface.py, amdsmi_exception.py, amdsmi_wrapper.py of ROCm/amdsmi).

Devices draw a constant power per spec; the energy accumulator advances with the injected
clock (counts of ``counter_resolution`` uJ), processes accumulate GFX engine time at their
``gfx_pct`` of the interval. Test-only: the agent imports the real ``amdsmi``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

# amdsmi_wrapper status codes used here.
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NOT_INIT = 32
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34
_INFO = {
    AMDSMI_STATUS_INVAL: "AMDSMI_STATUS_INVAL - Invalid parameters",
    AMDSMI_STATUS_NOT_SUPPORTED: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
    AMDSMI_STATUS_NOT_INIT: "AMDSMI_STATUS_NOT_INIT - Device not initialized",
    AMDSMI_STATUS_DRIVER_NOT_LOADED: "AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded",
}


class AmdSmiException(Exception):
    """Base smi exception class"""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int) -> None:
        err_code = abs(err_code)
        super().__init__(err_code)
        self.err_code = err_code
        self.err_info = _INFO.get(err_code, "AMDSMI_STATUS_UNKNOWN_ERROR - An unknown error occurred")

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiRetryException(AmdSmiLibraryException):
    def __init__(self) -> None:
        super().__init__(9)


class AmdSmiTimeoutException(AmdSmiLibraryException):
    def __init__(self) -> None:
        super().__init__(8)


class AmdSmiParameterException(AmdSmiException):
    def __init__(self, receivedValue: Any, expectedType: Any, msg: str | None = None) -> None:
        super().__init__(msg)
        self.err_code = None
        self.actualType = type(receivedValue)
        self.expectedType = expectedType
        self.err_msg = msg or f"Invalid parameter:\nActual type: {self.actualType}\nExpected type: {expectedType}"

    def __str__(self) -> str:
        return self.err_msg


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1
    INIT_AMD_GPUS = 2


class _Handle:
    """Stands for amdsmi_wrapper.amdsmi_processor_handle (a ctypes pointer in the library)."""

    def __init__(self, spec: dict[str, Any], index: int, clock) -> None:
        self.index = index
        self.spec = spec
        self.clock = clock
        self.t0 = clock()
        self.energy_base_uj = float(spec.get("energy_start_uj", 5.0e12))


class FakeAmdSmi:
    """Module-like: pass it where the agent would use ``import amdsmi``."""

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiRetryException = AmdSmiRetryException
    AmdSmiTimeoutException = AmdSmiTimeoutException
    AmdSmiParameterException = AmdSmiParameterException
    AmdSmiInitFlags = AmdSmiInitFlags
    COUNTER_RESOLUTION_UJ = 15.259  # MI300X-class accumulator resolution

    def __init__(self, specs: list[dict[str, Any]], *, clock, init_error: int | None = None) -> None:
        self.specs = specs
        self.clock = clock
        self.init_error = init_error
        self.handles: list[_Handle] = []
        self.initialised = False
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _check(self, handle: Any) -> _Handle:
        if not self.initialised:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)
        if not isinstance(handle, _Handle):
            raise AmdSmiParameterException(handle, _Handle)
        return handle

    def _unsupported(self, handle: _Handle, feature: str) -> None:
        if feature in handle.spec.get("unsupported", ()):
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)

    # -- lifecycle ---------------------------------------------------------------------------
    def amdsmi_init(self, flag: int = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        if self.init_error is not None:
            raise AmdSmiLibraryException(self.init_error)
        self.initialised = True
        self.handles = [_Handle(spec, i, self.clock) for i, spec in enumerate(self.specs)]

    def amdsmi_shut_down(self) -> None:
        self.initialised = False

    def amdsmi_get_processor_handles(self) -> list[_Handle]:
        if not self.initialised:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)
        return list(self.handles)

    # -- identity ----------------------------------------------------------------------------
    def amdsmi_get_gpu_device_uuid(self, handle: Any) -> str:
        h = self._check(handle)
        return h.spec.get("uuid", f"{h.index:08x}-0000-1000-80ff-d2e3e8d6b7e5")

    def amdsmi_get_gpu_asic_info(self, handle: Any) -> dict[str, Any]:
        h = self._check(handle)
        return {
            "market_name": h.spec.get("name", "AMD Instinct MI300X"),
            "vendor_id": 0x1002,
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "device_id": 0x74A1,
            "rev_id": 0,
            "asic_serial": h.spec.get("asic_serial", f"0x{h.index:016X}"),
            "oam_id": h.index,
            "num_of_compute_units": 304,
            "target_graphics_version": "gfx942",
        }

    def amdsmi_get_gpu_driver_info(self, handle: Any) -> dict[str, str]:
        self._check(handle)
        return {"driver_name": "amdgpu", "driver_version": "6.10.5", "driver_date": "2015/01/01 00:00"}

    def amdsmi_get_gpu_compute_partition(self, handle: Any) -> str:
        h = self._check(handle)
        self._unsupported(h, "partition")
        return h.spec.get("compute_partition", "SPX")

    def amdsmi_get_gpu_memory_partition(self, handle: Any) -> str:
        h = self._check(handle)
        self._unsupported(h, "partition")
        return h.spec.get("memory_partition", "NPS1")

    # -- power and energy --------------------------------------------------------------------
    def _elapsed_s(self, h: _Handle) -> float:
        return self.clock() - h.t0

    def amdsmi_get_energy_count(self, handle: Any) -> dict[str, Any]:
        h = self._check(handle)
        self._count("amdsmi_get_energy_count")
        self._unsupported(h, "energy")
        energy_uj = h.energy_base_uj + float(h.spec.get("power_w", 300.0)) * self._elapsed_s(h) * 1e6
        accumulator = int(energy_uj / self.COUNTER_RESOLUTION_UJ)
        return {
            "power": accumulator,
            "energy_accumulator": accumulator,
            "counter_resolution": self.COUNTER_RESOLUTION_UJ,
            "timestamp": int(self.clock() * 1e9),
        }

    def amdsmi_get_power_info(self, handle: Any) -> dict[str, Any]:
        h = self._check(handle)
        self._count("amdsmi_get_power_info")
        self._unsupported(h, "power")
        watts = int(h.spec.get("power_w", 300.0))
        # MI300-class boards report the current socket power and "N/A" for the average.
        return {
            "current_socket_power": watts,
            "average_socket_power": "N/A",
            "gfx_voltage": "N/A",
            "soc_voltage": "N/A",
            "mem_voltage": "N/A",
            "power_limit": int(h.spec.get("power_cap_w", 750)),
        }

    def amdsmi_get_power_cap_info(self, handle: Any) -> dict[str, int]:
        h = self._check(handle)
        cap_uw = int(h.spec.get("power_cap_w", 750) * 1_000_000)
        return {
            "power_cap": cap_uw,
            "dpm_cap": 0,
            "default_power_cap": cap_uw,
            "min_power_cap": 0,
            "max_power_cap": cap_uw,
        }

    # -- utilisation -------------------------------------------------------------------------
    def amdsmi_get_gpu_activity(self, handle: Any) -> dict[str, Any]:
        h = self._check(handle)
        self._count("amdsmi_get_gpu_activity")
        return {
            "gfx_activity": int(h.spec.get("gfx_pct", 0)),
            "umc_activity": int(h.spec.get("umc_pct", 0)),
            "mm_activity": "N/A",
        }

    def amdsmi_get_gpu_vram_usage(self, handle: Any) -> dict[str, int]:
        h = self._check(handle)
        return {"vram_total": 196592, "vram_used": int(h.spec.get("vram_used_mb", 1024))}

    def amdsmi_get_gpu_process_list(self, handle: Any) -> list[dict[str, Any]]:
        h = self._check(handle)
        self._count("amdsmi_get_gpu_process_list")
        self._unsupported(h, "processes")
        elapsed_ns = self._elapsed_s(h) * 1e9
        return [
            {
                "name": "N/A",
                "pid": pid,
                "mem": 0,
                "engine_usage": {"gfx": int(elapsed_ns * gfx_pct / 100.0), "enc": 0},
                "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": 0},
            }
            for pid, gfx_pct in sorted(h.spec.get("processes", {}).items())
        ]
