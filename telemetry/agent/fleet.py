"""Several simulated hosts in one process (one agent thread each), for demos and load tests.

Fleet file::

    {"server_url": "http://127.0.0.1:8000", "window_s": 10, "tick_s": 1, "seed": 1,
     "hosts": [
       {"hostname": "gpu-node-01", "token": "...",
        "gpus": [{"model": "H100", "workload": "llm_training", "job_key": "slurm:1001"}, ...],
        "schedule": {"repeat_s": 1800, "events": [
            {"at_s": 600, "gpus": [0, 1], "workload": "idle"},
            {"at_s": 660, "gpus": [0, 1], "workload": "llm_inference", "job_key": "k8s:{uuid}"}]},
        "rotate_jobs_s": null}]}

Schedule events fire ``at_s`` seconds into each ``repeat_s`` cycle (once, without repeat_s);
in a job_key, ``{cycle}`` is the cycle number and ``{uuid}`` a fresh pod uid per firing.
``rotate_jobs_s`` instead gives every busy GPU a new job of the same family every N seconds
(slurm ids count up; k8s pods get new uids; env labels get a -<n> suffix).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from telemetry.agent.agent import Agent
from telemetry.agent.config import AgentConfig
from telemetry.agent.log import kv
from telemetry.agent.sim import GPU_MODELS, WORKLOADS, FakeNvml, SimHostPower, SimProcTree

logger = logging.getLogger("carbonledger.agent.fleet")

_HOST_KEYS = {"hostname", "token", "gpus", "schedule", "rotate_jobs_s", "cpu_tdp_w", "mem_gb", "wall"}
_FLEET_KEYS = {"server_url", "window_s", "tick_s", "seed", "hosts", "max_batch_windows", "spool_max_windows"}
_GPU_KEYS = {"model", "workload", "job_key", "uuid", "energy_counter", "mig"}


class FleetError(ValueError):
    pass


@dataclass
class ScheduleEvent:
    at_s: float
    gpus: list[int]
    workload: str
    job_key: str | None


@dataclass
class HostSpec:
    hostname: str
    token: str
    gpus: list[dict[str, Any]]
    events: list[ScheduleEvent] = field(default_factory=list)
    repeat_s: float | None = None
    rotate_jobs_s: float | None = None
    cpu_tdp_w: float = 410.0
    mem_gb: float = 1024.0
    wall: bool = True


@dataclass
class FleetSpec:
    server_url: str
    window_s: float
    tick_s: float
    seed: int
    hosts: list[HostSpec]
    max_batch_windows: int = 30
    spool_max_windows: int = 100_000


def _check_keys(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(doc) - allowed
    if unknown:
        raise FleetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def parse_fleet(doc: dict[str, Any]) -> FleetSpec:
    _check_keys(doc, _FLEET_KEYS, "fleet")
    hosts = []
    names = set()
    for i, h in enumerate(doc.get("hosts") or []):
        where = f"hosts[{i}]"
        _check_keys(h, _HOST_KEYS, where)
        if not h.get("hostname") or h["hostname"] in names:
            raise FleetError(f"{where}.hostname: missing or duplicate")
        names.add(h["hostname"])
        gpus = h.get("gpus") or []
        for j, g in enumerate(gpus):
            _check_keys(g, _GPU_KEYS, f"{where}.gpus[{j}]")
            if g.get("model", "H100") not in GPU_MODELS:
                raise FleetError(f"{where}.gpus[{j}].model: unknown {g.get('model')!r}")
            if g.get("workload", "idle") not in WORKLOADS:
                raise FleetError(f"{where}.gpus[{j}].workload: unknown {g.get('workload')!r}")
        sched = h.get("schedule") or {}
        events = []
        for k, e in enumerate(sched.get("events") or []):
            if e.get("workload", "idle") not in WORKLOADS:
                raise FleetError(f"{where}.schedule.events[{k}].workload: unknown {e.get('workload')!r}")
            idx = e.get("gpus") or list(range(len(gpus)))
            if any(not 0 <= x < len(gpus) for x in idx):
                raise FleetError(f"{where}.schedule.events[{k}].gpus: index out of range")
            events.append(ScheduleEvent(float(e["at_s"]), list(idx), e.get("workload", "idle"), e.get("job_key")))
        hosts.append(
            HostSpec(
                hostname=h["hostname"],
                token=h.get("token", ""),
                gpus=gpus,
                events=sorted(events, key=lambda e: e.at_s),
                repeat_s=float(sched["repeat_s"]) if sched.get("repeat_s") else None,
                rotate_jobs_s=float(h["rotate_jobs_s"]) if h.get("rotate_jobs_s") else None,
                cpu_tdp_w=float(h.get("cpu_tdp_w", 410.0)),
                mem_gb=float(h.get("mem_gb", 1024.0)),
                wall=bool(h.get("wall", True)),
            )
        )
    if not hosts:
        raise FleetError("hosts: at least one host is required")
    return FleetSpec(
        server_url=doc.get("server_url", ""),
        window_s=float(doc.get("window_s", 10)),
        tick_s=float(doc.get("tick_s", 1)),
        seed=int(doc.get("seed", 0)),
        hosts=hosts,
        max_batch_windows=int(doc.get("max_batch_windows", 30)),
        spool_max_windows=int(doc.get("spool_max_windows", 100_000)),
    )


def load_fleet(path: str | os.PathLike[str]) -> FleetSpec:
    try:
        return parse_fleet(json.loads(Path(path).read_text()))
    except json.JSONDecodeError as exc:
        raise FleetError(f"{path}: {exc}")


@overload
def rotate_job_key(job_key: str, n: int) -> str: ...


@overload
def rotate_job_key(job_key: None, n: int) -> None: ...


def rotate_job_key(job_key: str | None, n: int) -> str | None:
    if not job_key or n == 0:
        return job_key
    kind, _, value = job_key.partition(":")
    if kind == "slurm" and value.isdigit():
        return f"slurm:{int(value) + n * 1000}"
    if kind == "k8s":
        return "k8s:" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"{value}/{n}"))
    return f"{job_key}-{n}"


def _render_key(template: str | None, cycle: int) -> str | None:
    if template is None:
        return None
    out = template.replace("{cycle}", str(cycle))
    return re.sub(r"\{uuid\}", lambda _m: str(uuid.uuid4()), out)


class SimHost:
    """One simulated host: its FakeNvml, /proc tree, spool and agent, plus its job schedule."""

    def __init__(
        self,
        spec: HostSpec,
        fleet: FleetSpec,
        base_dir: str | os.PathLike[str],
        *,
        min_tick_s: float = 0.1,
        pid_base: int = 20000,
    ) -> None:
        self.spec = spec
        host_dir = Path(base_dir) / spec.hostname
        self.proc_tree = SimProcTree(host_dir / "proc")
        self.nvml = FakeNvml(
            spec.gpus, hostname=spec.hostname, seed=fleet.seed, proc_tree=self.proc_tree, pid_base=pid_base
        )
        config = AgentConfig(
            server_url=fleet.server_url,
            token=spec.token,
            hostname=spec.hostname,
            tick_s=fleet.tick_s,
            window_s=fleet.window_s,
            spool_dir=str(host_dir / "spool"),
            backend="sim",
            proc_root=str(host_dir / "proc"),
            max_batch_windows=fleet.max_batch_windows,
            spool_max_windows=fleet.spool_max_windows,
        ).validate(min_tick_s=min_tick_s)
        host_power = SimHostPower(self.nvml, cpu_tdp_w=spec.cpu_tdp_w, mem_gb=spec.mem_gb, wall=spec.wall)
        self.agent = Agent(config, nvml=self.nvml, host_power=host_power)
        self.t0 = time.monotonic()
        self._fired: set[tuple[int, int]] = set()
        self._rotations = 0
        self._base = [(g.get("workload", "idle"), g.get("job_key")) for g in spec.gpus]

    def apply_schedule(self, now: float | None = None) -> None:
        elapsed = (time.monotonic() if now is None else now) - self.t0
        spec = self.spec
        if spec.events:
            cycle = int(elapsed // spec.repeat_s) if spec.repeat_s else 0
            offset = elapsed - cycle * spec.repeat_s if spec.repeat_s else elapsed
            for k, e in enumerate(spec.events):
                if e.at_s <= offset and (cycle, k) not in self._fired:
                    self._fired.add((cycle, k))
                    key = _render_key(e.job_key, cycle)
                    for idx in e.gpus:
                        self.nvml.assign(idx, e.workload, key)
                    kv(
                        logger,
                        logging.INFO,
                        "sim_schedule",
                        host=spec.hostname,
                        cycle=cycle,
                        gpus=",".join(map(str, e.gpus)),
                        workload=e.workload,
                        job_key=key,
                    )
        if spec.rotate_jobs_s:
            n = int(elapsed // spec.rotate_jobs_s)
            if n != self._rotations:
                self._rotations = n
                for idx, (workload, key) in enumerate(self._base):
                    if workload != "idle":
                        rotated = (
                            [rotate_job_key(k, n) for k in key] if isinstance(key, list) else rotate_job_key(key, n)
                        )
                        self.nvml.assign(idx, workload, rotated)
                kv(logger, logging.INFO, "sim_rotate_jobs", host=spec.hostname, rotation=n)

    def run(self, *, duration_s: float | None = None) -> None:
        def should_stop() -> bool:
            self.apply_schedule()
            return False

        self.agent.run(duration_s=duration_s, should_stop=should_stop)


class Fleet:
    """Runs every host of a fleet file in its own thread. ``start()``, then ``stop()``/``join()``."""

    def __init__(self, spec: FleetSpec, base_dir: str | os.PathLike[str], *, min_tick_s: float = 0.1) -> None:
        self.spec = spec
        self.hosts = [
            SimHost(h, spec, base_dir, min_tick_s=min_tick_s, pid_base=20000 + 10000 * i)
            for i, h in enumerate(spec.hosts)
        ]
        self.threads: list[threading.Thread] = []

    def start(self, *, duration_s: float | None = None) -> None:
        for host in self.hosts:
            t = threading.Thread(
                target=host.run, kwargs={"duration_s": duration_s}, name=f"agent-{host.spec.hostname}", daemon=True
            )
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        for host in self.hosts:
            host.agent.stop()

    def join(self, timeout: float | None = None) -> None:
        for t in self.threads:
            t.join(timeout)


def run_fleet(
    path_or_doc: str | os.PathLike[str] | dict[str, Any],
    base_dir: str | os.PathLike[str],
    *,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
) -> Fleet:
    """Start a fleet from a fleet file (or its parsed JSON) and block until ``duration_s`` passes
    or ``stop`` is set; every host then closes its last window and flushes its spool."""
    spec = parse_fleet(path_or_doc) if isinstance(path_or_doc, dict) else load_fleet(path_or_doc)
    fleet = Fleet(spec, base_dir)
    fleet.start(duration_s=duration_s)
    stop = stop or threading.Event()
    try:
        while any(t.is_alive() for t in fleet.threads) and not stop.wait(0.5):
            pass
    finally:
        fleet.stop()
        fleet.join()
    return fleet
