"""Replay of a recorded CSV trace through the pynvml surface (same reader code path).

Columns: timestamp (ISO 8601 or epoch seconds), gpu_uuid, power_w, energy_mj (empty when the
device had no counter), util_pct; optional: mem_util_pct, mem_used_mib, name, index,
power_limit_w, pid, job_key, sm_util_pct. Several rows with the same timestamp and GPU list its
processes.

Replay is an offline import of the trace: the agent ticks at each recorded instant (the union of
all GPUs' timestamps, in order) and reads the trace's own clock, so windows carry recorded times
and energy comes from the recorded counters (or the trapezoid of recorded power). ``replay_speed``
only paces the walk against the real clock (``Agent.run``); it changes no value.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pynvml

from telemetry.agent.host import HostReading
from telemetry.agent.sim import SimProcTree


def _parse_ts(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            raise ValueError(f"timestamp without offset: {text!r}")
        return dt.timestamp()


def _opt(row: dict[str, str], key: str) -> float | None:
    value = (row.get(key) or "").strip()
    return float(value) if value else None


@dataclass
class _Frame:
    ts: float
    power_w: float
    energy_mj: int | None
    util_pct: float
    mem_util_pct: float
    mem_used_mib: float
    procs: dict[int, float | None] = field(default_factory=dict)


@dataclass
class ReplayDevice:
    index: int
    uuid: str
    name: str
    power_limit_w: float
    frames: list[_Frame] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    has_counter: bool = True


class ReplayNvml:
    def __init__(
        self,
        path: str | Path,
        *,
        loop: bool = False,
        proc_tree: SimProcTree | None = None,
    ) -> None:
        self.loop = loop
        self._initialised = False
        devices: dict[str, ReplayDevice] = {}
        jobs: dict[int, str | None] = {}
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for line_no, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    uuid = row["gpu_uuid"].strip()
                    ts = _parse_ts(row["timestamp"])
                    dev = devices.get(uuid)
                    if dev is None:
                        idx = int(row["index"]) if (row.get("index") or "").strip() else len(devices)
                        dev = devices[uuid] = ReplayDevice(
                            idx,
                            uuid,
                            (row.get("name") or "").strip() or "Replayed GPU",
                            _opt(row, "power_limit_w") or 0.0,
                        )
                    energy = (row.get("energy_mj") or "").strip()
                    if not dev.frames or dev.frames[-1].ts != ts:
                        if dev.frames and ts < dev.frames[-1].ts:
                            raise ValueError("timestamps must not go backwards per GPU")
                        dev.frames.append(
                            _Frame(
                                ts,
                                float(row["power_w"]),
                                int(float(energy)) if energy else None,
                                float(row["util_pct"]),
                                _opt(row, "mem_util_pct") or 0.0,
                                _opt(row, "mem_used_mib") or 0.0,
                            )
                        )
                        dev.times.append(ts)
                    if (row.get("pid") or "").strip():
                        pid = int(row["pid"])
                        dev.frames[-1].procs[pid] = _opt(row, "sm_util_pct")
                        jobs[pid] = (row.get("job_key") or "").strip() or None
                except (KeyError, ValueError) as exc:
                    raise ValueError(f"{path}:{line_no}: {exc}") from None
        if not devices:
            raise ValueError(f"{path}: no rows")
        self.devices = sorted(devices.values(), key=lambda d: d.index)
        for dev in self.devices:
            dev.has_counter = all(f.energy_mj is not None for f in dev.frames)
        self.t0 = min(d.times[0] for d in self.devices)
        self.t_end = max(d.times[-1] for d in self.devices)
        self.span_s = self.t_end - self.t0
        self.instants = sorted({t for d in self.devices for t in d.times})
        # Cursor: position -1 is "before the first tick" and reads as the first instant.
        self._pos = -1
        if proc_tree is not None:
            for pid, job in jobs.items():
                proc_tree.add(pid, job, "")

    def _lap_index(self, pos: int) -> tuple[int, int] | None:
        """(lap, index into instants) of cursor position ``pos``; None past a non-looping end.

        A later lap starts at its second instant: its first is the previous lap's last (t_end
        of lap k is t0 of lap k + 1), and the counter reads the same there."""
        n = len(self.instants)
        if pos < n:
            return 0, max(0, pos)
        if not self.loop or n < 2:
            return None
        rest = pos - n
        return 1 + rest // (n - 1), 1 + rest % (n - 1)

    def _time_at(self, lap: int, index: int) -> float:
        return self.instants[index] + lap * self.span_s

    def _cursor(self) -> tuple[int, int]:
        at = self._lap_index(self._pos)
        assert at is not None  # advance() never moves past the end
        return at

    def trace_time(self) -> float:
        """The trace's clock at the cursor (epoch seconds): the agent's clock during a replay."""
        return self._time_at(*self._cursor())

    def next_time(self) -> float | None:
        """The recorded instant the next ``advance`` moves to, or None at the end of the trace."""
        at = self._lap_index(self._pos + 1)
        return None if at is None else self._time_at(*at)

    def advance(self) -> float:
        """Move the cursor to the next recorded instant; returns its trace time."""
        if self._lap_index(self._pos + 1) is None:
            raise IndexError("replay trace exhausted")
        self._pos += 1
        return self.trace_time()

    def _frame(self, dev: ReplayDevice) -> tuple[_Frame, int]:
        # A GPU with no row at this instant holds its latest earlier row (its first before it).
        lap, index = self._cursor()
        i = max(0, bisect.bisect_right(dev.times, self.instants[index]) - 1)
        return dev.frames[i], lap

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("NVMLError", "NVML_")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def _dev(self, handle: Any) -> ReplayDevice:
        if not self._initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, ReplayDevice):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    def nvmlInit(self) -> None:
        self._initialised = True

    def nvmlShutdown(self) -> None:
        self._initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "replay"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> ReplayDevice:
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._dev(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._dev(handle).name

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        dev = self._dev(handle)
        if not dev.power_limit_w:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(dev.power_limit_w * 1000)

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        dev = self._dev(handle)
        if not dev.has_counter:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        frame, laps = self._frame(dev)
        lap_mj = (dev.frames[-1].energy_mj or 0) - (dev.frames[0].energy_mj or 0)
        return int(frame.energy_mj or 0) + laps * lap_mj

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return round(self._frame(self._dev(handle))[0].power_w * 1000)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        frame = self._frame(self._dev(handle))[0]
        out = pynvml.c_nvmlUtilization_t()
        out.gpu, out.memory = round(frame.util_pct), round(frame.mem_util_pct)
        return out

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:
        frame = self._frame(self._dev(handle))[0]
        out = pynvml.c_nvmlMemory_t()
        out.used = int(frame.mem_used_mib * 2**20)
        out.total = max(out.used, 0)
        out.free = 0
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        frame = self._frame(self._dev(handle))[0]
        out = []
        for pid in frame.procs:
            info = pynvml.c_nvmlProcessInfo_v3_t()
            info.pid = pid
            out.append(pynvml.nvmlStructToFriendlyObject(info))
        return out

    def nvmlDeviceGetProcessUtilization(self, handle: Any, timeStamp: int) -> list[Any]:
        frame, laps = self._frame(self._dev(handle))
        ts_us = int((frame.ts + laps * self.span_s) * 1e6)  # later laps are later samples
        samples = [(pid, sm) for pid, sm in frame.procs.items() if sm is not None]
        if not samples or ts_us <= timeStamp:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        out = []
        for pid, sm in samples:
            s = pynvml.c_nvmlProcessUtilizationSample_t()
            s.pid, s.timeStamp, s.smUtil = pid, ts_us, round(sm)
            out.append(s)
        return out


class ReplayHostPower:
    """Host CPU/DRAM during a replay: the trace records GPUs only. Reading this machine's RAPL or
    load instead would put the replaying machine's energy, over real (paced) time, into recorded
    windows, so the host part is 0 J, quality 'modelled', whatever the speed."""

    quality = "modelled"
    source = "replay"

    def read(self) -> HostReading:
        return HostReading(0.0, 0.0, 0.0, None, self.quality)
