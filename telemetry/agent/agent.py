"""The agent loop: tick -> window -> spool -> sender."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from telemetry.agent import __version__
from telemetry.agent.config import AgentConfig
from telemetry.agent.gpu import NvmlReader
from telemetry.agent.host import HostPower, IpmiWall, RedfishWall
from telemetry.agent.jobs import JobMapper
from telemetry.agent.log import kv
from telemetry.agent.spool import Spool
from telemetry.agent.window import WindowBuilder, iso_utc

if TYPE_CHECKING:
    from telemetry.agent.replay import ReplayNvml  # imported with backend=replay (dataclasses, csv)
    from telemetry.agent.sender import Sender  # imported when a server_url is set (urllib, ssl, gzip)

logger = logging.getLogger("carbonledger.agent")


def build_host_power(config: AgentConfig) -> HostPower:
    wall: IpmiWall | RedfishWall | None = None
    if config.redfish_url:
        wall = RedfishWall(config.redfish_url, config.redfish_user, config.redfish_password, ca_file=config.ca_file)
    elif config.ipmi:
        wall = IpmiWall(config.ipmi_command)
    return HostPower(
        powercap_root=config.powercap_root,
        proc_root=config.proc_root,
        cpu_tdp_w=config.cpu_tdp_w,
        default_cpu_tdp_w=config.default_cpu_tdp_w,
        dram_w_per_gb=config.dram_w_per_gb,
        wall=wall,
    )


def load_nvml(config: AgentConfig) -> Any:
    """The GPU library (module-like object) for the configured backend: pynvml, AMD SMI's
    ``amdsmi``, or a simulator / trace standing in for pynvml."""
    if config.backend == "nvml":
        import pynvml

        return pynvml
    if config.backend == "amdsmi":
        try:
            import amdsmi  # ROCm's AMD SMI bindings: optional, installed only on AMD hosts
        except ImportError as exc:
            raise ImportError(
                "backend=amdsmi needs AMD SMI's Python bindings (ROCm's amdsmi package, e.g. pip install amdsmi "
                f"matching the installed ROCm): {exc}"
            ) from exc
        return amdsmi
    from telemetry.agent.sim import SimProcTree

    tree = SimProcTree(config.proc_root) if config.proc_root != "/proc" else None
    if config.backend == "sim":
        from telemetry.agent.sim import FakeNvml

        return FakeNvml(
            config.sim_gpus or [{"model": "H100", "workload": "idle"}],
            hostname=config.hostname,
            seed=config.sim_seed,
            proc_tree=tree,
            call_cost_s={
                "nvmlDeviceGetTotalEnergyConsumption": config.sim_energy_call_ms / 1000.0,
                "nvmlDeviceGetProcessUtilization": config.sim_process_util_call_ms / 1000.0,
            },
        )
    from telemetry.agent.replay import ReplayNvml

    return ReplayNvml(config.replay_file, loop=config.replay_loop, proc_tree=tree)


def make_reader(config: AgentConfig, library: Any, *, clock: Callable[[], float] = time.monotonic) -> Any:
    """The device reader for the backend: AMD SMI's or NVML's (the simulator and replay speak NVML)."""
    if config.backend == "amdsmi":
        from telemetry.agent.amd import AmdSmiReader

        return AmdSmiReader(library, clock=clock, read_policy=config.read_policy)
    # A replay is an offline import of a trace recorded every tick (no per-call cost to save), and
    # its last, partial window closes without a further reading: every tick is read in full.
    return NvmlReader(library, clock=clock, read_policy="tick" if config.backend == "replay" else config.read_policy)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        nvml: Any = None,
        host_power: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self._status_clock = wall_clock
        self.nvml = nvml if nvml is not None else load_nvml(config)
        # Replay is an offline import: samples and windows are stamped by the trace's own clock
        # (a ReplayNvml's cursor), and ``clock`` only paces the walk (see _run_replay).
        self.replay: ReplayNvml | None = self.nvml if config.backend == "replay" else None
        sample_clock = clock
        if self.replay is not None:
            sample_clock = self.wall_clock = self.replay.trace_time
            if host_power is None:
                from telemetry.agent.replay import ReplayHostPower

                host_power = ReplayHostPower()
        # A real tick may wake a hair before the boundary; a recorded instant is exact.
        self._boundary_slack_s = 0.0 if self.replay is not None else 0.5 * config.tick_s
        self.reader = make_reader(config, self.nvml, clock=sample_clock)
        self.jobs = JobMapper(config.proc_root)
        self.host_power = host_power if host_power is not None else build_host_power(config)
        self.spool = Spool(config.spool_dir, max_windows=config.spool_max_windows)
        self.builder = WindowBuilder()
        self.sender: Sender | None = None
        if config.server_url:
            from telemetry.agent.sender import Sender

            self.sender = Sender(
                self.spool,
                server_url=config.server_url,
                token=config.token,
                hostname=config.hostname,
                max_batch_windows=config.max_batch_windows,
                batch_interval_s=config.batch_interval_s,
                timeout_s=config.http_timeout_s,
                backoff_base_s=config.backoff_base_s,
                backoff_max_s=config.backoff_max_s,
                ca_file=config.ca_file,
                wire_format=config.wire_format,
            )
        self.stop_event = threading.Event()
        self.windows_closed = 0
        self.last_seq: int | None = None
        self._next_boundary: float | None = None
        self._sender_thread: threading.Thread | None = None

    # -- one tick ----------------------------------------------------------------------------
    def tick(self) -> dict[str, Any] | None:
        """Sample once; returns the window closed by this tick, if any (already spooled)."""
        # Whether this tick will close the window, judged before reading: the energy counter and
        # per-process utilisation are read at boundaries only (read_policy "window").
        before = self.wall_clock()
        boundary = self._next_boundary is None or before + self._boundary_slack_s >= self._next_boundary
        samples = self.reader.sample(boundary=boundary)
        wall = self.wall_clock()
        live: set[int] = set()
        for s in samples:
            live.update(s.processes)
        jobs = {pid: self.jobs.resolve(pid) for pid in live}
        self.jobs.forget_except(live)
        host = self.host_power.read()
        self.builder.add_tick(wall_s=wall, gpus=samples, host=host, jobs=jobs)
        w = self.config.window_s
        if self._next_boundary is None:
            self._next_boundary = (math.floor(wall / w + 1e-9) + 1) * w
            return None
        # Half a tick of tolerance (live): a tick scheduled at the boundary may wake a hair early.
        slack = self._boundary_slack_s
        if wall + slack >= self._next_boundary:
            while self._next_boundary <= wall + slack:
                self._next_boundary += w
            return self.close_window(wall)
        return None

    def close_window(self, end_wall: float) -> dict[str, Any] | None:
        window = self.builder.close(end_wall_s=end_wall)
        if window is None:
            return None
        seq = self.spool.add_window(window)
        window = {"seq": seq, **window}
        self.windows_closed += 1
        self.last_seq = seq
        gpu_j = sum(g["energy_j"] for g in window["gpus"])
        kv(
            logger,
            logging.INFO,
            "window_closed",
            host=self.config.hostname,
            seq=seq,
            start=window["start"],
            end=window["end"],
            gpus=len(window["gpus"]),
            gpu_energy_j=round(gpu_j, 3),
            cpu_energy_j=window["host"]["cpu_energy_j"],
            quality=",".join(sorted({g["quality"] for g in window["gpus"]})),
        )
        if self.sender is not None:
            self.sender.wake.set()
        self.write_status()
        return window

    def write_status(self) -> None:
        status = {
            "hostname": self.config.hostname,
            "agent_version": __version__,
            "backend": self.config.backend,
            "pid": os.getpid(),
            "updated_at": iso_utc(self._status_clock()),  # real time, also during a replay
            "driver_version": self.reader.driver_version,
            "gpus": [
                {
                    "index": d.index,
                    "uuid": d.uuid,
                    "name": d.name,
                    "power_limit_w": d.power_limit_w,
                    "energy_counter": d.has_counter,
                    "mig": d.mig_enabled,
                }
                for d in self.reader.devices
            ],
            "host_power_source": getattr(self.host_power, "source", "unknown"),
            "last_seq": self.last_seq,
            "read_policy": getattr(self.reader, "read_policy", None),
        }
        calls = getattr(self.nvml, "calls", None)
        if isinstance(calls, dict):
            status["library_calls"] = dict(sorted(calls.items()))  # the simulator counts its calls
        path = os.path.join(self.config.spool_dir, "status.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(json.dumps(status, indent=2))  # one write; json.dump writes piece by piece
        os.replace(tmp, path)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.reader.open()
        kv(
            logger,
            logging.INFO,
            "agent_started",
            host=self.config.hostname,
            version=__version__,
            backend=self.config.backend,
            gpus=len(self.reader.devices),
            tick_s=self.config.tick_s,
            window_s=self.config.window_s,
            spool=self.spool.path,
            server=self.config.server_url or "none",
            **{k: v for k, v in self.spool.stats().items() if k in ("depth_windows", "next_seq", "dropped_windows")},
        )
        self.write_status()
        if self.sender is not None:
            # close_window wakes the sender for every window it spools; the idle poll is only a
            # safety net, so once a window (>= 1 s) rather than every second.
            self._sender_thread = threading.Thread(
                target=self.sender.run,
                args=(self.stop_event,),
                kwargs={"idle_wait_s": max(1.0, self.config.window_s)},
                name=f"sender-{self.config.hostname}",
                daemon=True,
            )
            self._sender_thread.start()

    def run(self, *, duration_s: float | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        """Tick on the wall-clock grid until stopped (or for ``duration_s``), then shut down.

        With backend=replay: tick at each recorded instant of the trace instead, until it ends."""
        if self.replay is not None:
            self._run_replay(self.replay, duration_s=duration_s, should_stop=should_stop)
            return
        self.start()
        deadline = None if duration_s is None else self.clock() + duration_s
        tick_s = self.config.tick_s
        try:
            while not self.stop_event.is_set():
                self.tick()
                if should_stop is not None and should_stop():
                    break
                now_wall = self.wall_clock()
                next_tick = (math.floor(now_wall / tick_s + 1e-9) + 1) * tick_s
                wait = max(0.0, next_tick - now_wall)
                if deadline is not None:
                    left = deadline - self.clock()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                self.stop_event.wait(wait)
        finally:
            self.shutdown()

    def _run_replay(
        self, replay: ReplayNvml, *, duration_s: float | None, should_stop: Callable[[], bool] | None
    ) -> None:
        """Walk the trace: one tick per recorded instant, on the trace's clock. ``replay_speed``
        trace seconds pass per real second (0: no waiting); the speed changes no value."""
        self.start()
        speed = self.config.replay_speed
        real0 = self.clock()
        deadline = None if duration_s is None else real0 + duration_s
        first_t: float | None = None
        try:
            while not self.stop_event.is_set():
                t = replay.next_time()
                if t is None:
                    break  # a non-looping trace has ended
                if first_t is None:
                    first_t = t
                if speed > 0:
                    wait = (t - first_t) / speed - (self.clock() - real0)
                    if deadline is not None:
                        wait = min(wait, deadline - self.clock())
                    if wait > 0 and self.stop_event.wait(wait):
                        break
                if deadline is not None and self.clock() >= deadline:
                    break
                replay.advance()
                self.tick()
                if should_stop is not None and should_stop():
                    break
        finally:
            # The final window ends at the last instant ticked: a recorded time, as all others.
            self.shutdown()

    def shutdown(self) -> None:
        self.stop_event.set()
        try:
            # The partial window holds real energy: close it rather than lose it.
            self.tick_final()
        except Exception as exc:  # a failing device must not stop the flush below
            kv(logger, logging.WARNING, "final_tick_failed", error=str(exc))
        if self._sender_thread is not None:
            if self.sender is not None:
                self.sender.wake.set()  # out of its idle wait now, whether or not a window closed
            self._sender_thread.join(timeout=5.0)
            if self.sender is not None and self.config.shutdown_flush_s > 0:
                flush_stop = threading.Event()
                self.sender.drain(flush_stop, deadline=time.monotonic() + self.config.shutdown_flush_s, flush=True)
            if self.sender is not None:
                self.sender.close()
        self.reader.close()
        self.jobs.close()
        stats = self.spool.stats()
        kv(
            logger,
            logging.INFO,
            "agent_stopped",
            host=self.config.hostname,
            windows=self.windows_closed,
            depth_windows=stats["depth_windows"],
            dropped_windows=stats["dropped_windows"],
        )
        self.spool.close()

    def tick_final(self) -> None:
        if not self.builder.started:
            return
        if self.replay is not None:
            # Every instant up to the cursor has been ticked: a new reading would repeat the last
            # row (skewing the window's means), so the partial window just ends there.
            self.close_window(self.wall_clock())
            return
        samples = self.reader.sample(boundary=True)
        wall = self.wall_clock()
        live = {pid for s in samples for pid in s.processes}
        jobs = {pid: self.jobs.resolve(pid) for pid in live}
        self.builder.add_tick(wall_s=wall, gpus=samples, host=self.host_power.read(), jobs=jobs)
        self.close_window(wall)

    def stop(self) -> None:
        self.stop_event.set()
