"""Aggregates ticks into windows shaped as the ingest wire format (docs/wire-format.md)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from telemetry.agent.energy import nvml_counter_delta_mj
from telemetry.agent.gpu import GpuSample
from telemetry.agent.host import HostReading
from telemetry.agent.jobs import ProcessJob, visible_includes
from telemetry.agent.log import kv

logger = logging.getLogger("carbonledger.agent.window")

# A counter step larger than this many times the power limit (x interval) is not energy the
# device drew: it is a reset seen as an increase (e.g. counter restarted above the old value).
# The counter advances in ~100 ms updates, so short intervals get a second of slack.
_PLAUSIBLE_FACTOR = 2.0
_COUNTER_SLACK_S = 1.0
_FALLBACK_MAX_W = 2000.0


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _ProcAcc:
    __slots__ = ("job_key", "sm_reported", "sm_sum", "sm_window")

    def __init__(self) -> None:
        self.sm_sum = 0.0
        self.sm_reported = False
        self.sm_window: float | None = None  # the window's mean from a boundary read
        self.job_key: str | None = None


class _MigAcc:
    __slots__ = ("activity", "gpu_instance_id", "mem_max_mib", "pids", "slices", "uuid")

    def __init__(self, uuid: str, gpu_instance_id: int | None) -> None:
        self.uuid = uuid
        self.gpu_instance_id = gpu_instance_id
        self.mem_max_mib: float | None = None
        self.pids: set[int] = set()
        self.slices: int | None = None
        self.activity: float | None = None  # the boundary reading: the window's activity


class _GpuAcc:
    """One GPU's sums over the window being built."""

    __slots__ = (
        "counter_mj",
        "energy_covers",
        "energy_j",
        "index",
        "integrated",
        "mem_max",
        "mem_util_n",
        "mem_util_sum",
        "mig",
        "name",
        "power_limit_w",
        "power_max",
        "power_n",
        "power_sum",
        "procs",
        "ticks",
        "util_n",
        "util_sum",
        "uuid",
        "window_util",
    )

    def __init__(self, index: int, uuid: str, name: str) -> None:
        self.index = index
        self.uuid = uuid
        self.name = name
        self.power_limit_w: float | None = None
        self.energy_j = 0.0
        self.integrated = False
        self.ticks = 0
        self.power_sum = 0.0
        self.power_n = 0
        self.power_max: float | None = None
        self.util_sum = 0.0
        self.util_n = 0
        self.mem_util_sum = 0.0
        self.mem_util_n = 0
        self.mem_max: float | None = None
        self.counter_mj: int | None = None
        self.procs: dict[int, _ProcAcc] = {}
        self.mig: dict[str, _MigAcc] = {}
        self.energy_covers = "gpu"
        self.window_util = False  # a boundary read gave the window's per-process utilisation


def _mig_util_pct(acc: _GpuAcc) -> float:
    """A MIG GPU's utilisation: its instances' activity weighted by their slices (0 if unknown)."""
    measured = [(m.activity, m.slices) for m in acc.mig.values() if m.activity is not None and m.slices]
    slices = sum(s for _, s in measured)
    return round(100.0 * sum(a * s for a, s in measured) / slices, 3) if slices else 0.0


class WindowBuilder:
    """Energy of the interval between two ticks lands in the window holding the later tick; the
    boundary tick closes one window and opens the next, so windows abut with no gap or overlap."""

    def __init__(self) -> None:
        # Per GPU, the last sample that read the energy counter, and the last that read power:
        # with the window read policy they are the boundaries, not every tick.
        self._last_counter: dict[str, GpuSample] = {}
        self._last_power: dict[str, GpuSample] = {}
        self._gpus: dict[str, _GpuAcc] = {}
        self._start_wall: float | None = None
        self._host_cpu_j = 0.0
        self._host_dram_j = 0.0
        self._host_util_sum = 0.0
        self._host_n = 0
        self._host_quality = "modelled"
        self._wall_sum = 0.0
        self._wall_n = 0
        self._host_in_modules = False
        self._warned_visible: set[tuple[int, str]] = set()

    @property
    def started(self) -> bool:
        return self._start_wall is not None

    @property
    def start_wall(self) -> float | None:
        return self._start_wall

    def add_tick(
        self,
        *,
        wall_s: float,
        gpus: list[GpuSample],
        host: HostReading | None,
        jobs: dict[int, ProcessJob],
    ) -> None:
        first = self._start_wall is None
        if first:
            self._start_wall = wall_s
        in_modules = False
        for sample in gpus:
            self._add_gpu(sample, jobs)
            in_modules = in_modules or "cpu" in sample.energy_covers
        if host is not None and not first:
            # The first reading covers the time before the first tick: it belongs to no window.
            if in_modules:
                # Grace Hopper / Blackwell: the modules' counters already hold the CPU and its
                # memory; adding the host's (modelled) CPU and DRAM would count them twice.
                self._host_in_modules = True
            else:
                self._host_cpu_j += host.cpu_energy_j
                self._host_dram_j += host.dram_energy_j
            self._host_util_sum += host.cpu_util_pct
            self._host_n += 1
            self._host_quality = host.quality
            if host.wall_power_w is not None:
                self._wall_sum += host.wall_power_w
                self._wall_n += 1

    def _add_gpu(self, s: GpuSample, jobs: dict[int, ProcessJob]) -> None:
        acc = self._gpus.get(s.uuid)
        if acc is None:
            acc = self._gpus[s.uuid] = _GpuAcc(index=s.index, uuid=s.uuid, name=s.name)
        acc.power_limit_w = s.power_limit_w
        if s.energy_mj is not None:
            last = self._last_counter.get(s.uuid)
            if last is not None and last.energy_mj is not None:
                dt = s.mono_s - last.mono_s
                limit = s.power_limit_w or _FALLBACK_MAX_W
                delta = nvml_counter_delta_mj(
                    last.energy_mj,
                    s.energy_mj,
                    max_delta_mj=limit * _PLAUSIBLE_FACTOR * (max(0.0, dt) + _COUNTER_SLACK_S) * 1000.0,
                )
                if delta is None:
                    kv(
                        logger,
                        logging.WARNING,
                        "energy_counter_reset",
                        gpu=s.uuid,
                        prev_mj=last.energy_mj,
                        cur_mj=s.energy_mj,
                        fallback="integrated",
                    )
                    acc.integrated = True
                    energy_j = (
                        (s.power_w + last.power_w) * 0.5 * dt
                        if s.power_w is not None and last.power_w is not None
                        else 0.0
                    )
                else:
                    energy_j = delta / 1000.0
                acc.energy_j += max(0.0, energy_j)
            self._last_counter[s.uuid] = s
        elif s.power_w is not None:
            # No counter reading: power integrated from the previous power sample (a device
            # without a counter, or one whose counter stopped answering since its last reading).
            last = self._last_power.get(s.uuid)
            if last is not None and last.power_w is not None:
                acc.integrated = True
                acc.energy_j += max(0.0, (s.power_w + last.power_w) * 0.5 * (s.mono_s - last.mono_s))
        if s.power_w is not None:
            self._last_power[s.uuid] = s
        acc.ticks += 1
        acc.energy_covers = s.energy_covers
        if s.energy_mj is not None:
            acc.counter_mj = s.energy_mj
        if s.power_w is not None:
            acc.power_sum += s.power_w
            acc.power_n += 1
            acc.power_max = s.power_w if acc.power_max is None else max(acc.power_max, s.power_w)
        if s.util_pct is not None:
            acc.util_sum += s.util_pct
            acc.util_n += 1
        if s.mem_util_pct is not None:
            acc.mem_util_sum += s.mem_util_pct
            acc.mem_util_n += 1
        if s.mem_used_mib is not None:
            acc.mem_max = s.mem_used_mib if acc.mem_max is None else max(acc.mem_max, s.mem_used_mib)
        if s.process_util_window:
            acc.window_util = True
        for pid, sm in s.processes.items():
            p = acc.procs.get(pid)
            if p is None:
                p = acc.procs[pid] = _ProcAcc()
            if sm is not None:
                if s.process_util_window:
                    p.sm_window = sm
                else:
                    p.sm_sum += sm
                    p.sm_reported = True
            pj = jobs.get(pid)
            if pj is not None:
                if pj.job_key is not None:
                    p.job_key = pj.job_key
                if (
                    visible_includes(pj.visible_devices, uuid=s.uuid) is False
                    and (pid, s.uuid) not in self._warned_visible
                ):
                    self._warned_visible.add((pid, s.uuid))
                    kv(
                        logger,
                        logging.WARNING,
                        "visible_devices_mismatch",
                        pid=pid,
                        gpu=s.uuid,
                        cuda_visible_devices=",".join(pj.visible_devices or ()),
                        job_key=pj.job_key,
                    )
        for m in s.mig:
            ma = acc.mig.get(m.uuid)
            if ma is None:
                ma = acc.mig[m.uuid] = _MigAcc(uuid=m.uuid, gpu_instance_id=m.gpu_instance_id)
            if m.mem_used_mib is not None:
                ma.mem_max_mib = m.mem_used_mib if ma.mem_max_mib is None else max(ma.mem_max_mib, m.mem_used_mib)
            ma.pids.update(m.pids)
            if m.slices is not None:
                ma.slices = m.slices
            if m.activity is not None:
                ma.activity = m.activity

    def close(self, *, end_wall_s: float) -> dict[str, Any] | None:
        """The finished window (without seq: the spool assigns it), or None if it is empty.

        The builder restarts with the next window starting at ``end_wall_s``."""
        start = self._start_wall
        if start is None or iso_utc(end_wall_s) <= iso_utc(start):
            return None  # the wire format has millisecond times and needs end > start
        duration = end_wall_s - start
        gpus = []
        for acc in sorted(self._gpus.values(), key=lambda a: a.index):
            processes = []
            for pid in sorted(acc.procs):
                p = acc.procs[pid]
                if acc.window_util:
                    # One read covered the window: a pid without samples was not scheduled (0 %).
                    sm: float | None = round(p.sm_window if p.sm_window is not None else 0.0, 3)
                else:
                    sm = round(p.sm_sum / acc.ticks, 3) if p.sm_reported else None
                processes.append({"pid": pid, "sm_util_pct": sm, "job_key": p.job_key})
            gpu: dict[str, Any] = {
                "uuid": acc.uuid,
                "index": acc.index,
                "name": acc.name,
                "energy_j": round(acc.energy_j, 3),
                "counter_mj": acc.counter_mj,
                "avg_power_w": round(acc.energy_j / duration, 3),
                # The ingest requires these figures: a window without a power sample (its boundary
                # reading failed) has its mean as its maximum; a GPU that reports no utilisation
                # (MIG mode) has its instances' activity weighted by slices, else 0.
                "max_power_w": round(acc.power_max if acc.power_max is not None else acc.energy_j / duration, 3),
                "util_pct": round(acc.util_sum / acc.util_n, 3) if acc.util_n else _mig_util_pct(acc),
                "mem_util_pct": round(acc.mem_util_sum / acc.mem_util_n, 3) if acc.mem_util_n else 0.0,
                "mem_used_mib": None if acc.mem_max is None else round(acc.mem_max, 3),
                "power_limit_w": acc.power_limit_w,
                "quality": "integrated" if acc.integrated else "measured",
                "processes": processes,
            }
            if acc.energy_covers != "gpu":
                gpu["energy_covers"] = acc.energy_covers
            if acc.mig:
                gpu["mig_instances"] = [
                    {
                        "uuid": m.uuid,
                        "gpu_instance_id": m.gpu_instance_id,
                        "mem_used_mib": None if m.mem_max_mib is None else round(m.mem_max_mib, 3),
                        "pids": sorted(m.pids),
                        "slices": m.slices,
                        "activity": None if m.activity is None else round(m.activity, 6),
                    }
                    for m in sorted(acc.mig.values(), key=lambda m: m.uuid)
                ]
            gpus.append(gpu)
        wall_j = round(self._wall_sum / self._wall_n * duration, 3) if self._wall_n else None
        window: dict[str, Any] = {
            "start": iso_utc(start),
            "end": iso_utc(end_wall_s),
            "host": {
                "cpu_energy_j": round(self._host_cpu_j, 3),
                "dram_energy_j": round(self._host_dram_j, 3),
                "wall_energy_j": wall_j,
                "cpu_util_pct": round(self._host_util_sum / self._host_n, 3) if self._host_n else 0.0,
                "quality": "measured" if self._host_in_modules else self._host_quality,
            },
            "gpus": gpus,
        }
        if self._host_in_modules:
            window["host"]["cpu_dram_in_gpu_modules"] = True
        self._gpus = {}
        self._host_cpu_j = self._host_dram_j = self._host_util_sum = self._wall_sum = 0.0
        self._host_n = self._wall_n = 0
        self._host_in_modules = False
        self._start_wall = end_wall_s
        return window
