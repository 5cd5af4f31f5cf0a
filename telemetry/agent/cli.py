"""carbonledger-agent: run | status | probe | simulate."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from telemetry.agent import __version__
from telemetry.agent.config import ConfigError, load_config
from telemetry.agent.log import kv, setup_logging

# json and tempfile are imported by the subcommands that use them (status, probe, simulate).

logger = logging.getLogger("carbonledger.agent.cli")

NVML_MISSING = (
    "NVML is not available ({error}). Install the NVIDIA driver (libnvidia-ml.so.1) on this host, or in a "
    "container run with the NVIDIA runtime (--gpus all / runtimeClassName: nvidia). "
    "Use --backend sim to try the agent without a GPU."
)
AMDSMI_MISSING = (
    "AMD SMI is not available ({error}). Install ROCm's amdgpu driver and AMD SMI's Python bindings "
    "(the amdsmi package matching the installed ROCm) on this host. "
    "Use --backend sim to try the agent without a GPU."
)
# AMD SMI status codes meaning "no library or driver here" (amdsmi_wrapper: FAIL_LOAD_MODULE,
# FAIL_LOAD_SYMBOL, DRIVER_NOT_LOADED).
_AMDSMI_MISSING_CODES = {4, 5, 34}


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "server_url",
        "token",
        "hostname",
        "tick_s",
        "window_s",
        "spool_dir",
        "backend",
        "proc_root",
        "powercap_root",
        "replay_file",
        "replay_speed",
        "log_level",
    )
    return {k: getattr(args, k, None) for k in keys}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config file (default: $CARBONLEDGER_CONFIG)")
    p.add_argument("--server-url")
    p.add_argument("--token")
    p.add_argument("--hostname")
    p.add_argument("--tick-s", type=float)
    p.add_argument("--window-s", type=float)
    p.add_argument("--spool-dir")
    p.add_argument("--backend", choices=("nvml", "amdsmi", "sim", "replay"))
    p.add_argument("--proc-root")
    p.add_argument("--powercap-root")
    p.add_argument("--replay-file")
    p.add_argument("--replay-speed", type=float, help="trace seconds per real second (0: as fast as possible)")
    p.add_argument("--log-level")


def _install_signals(stop: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop())


def _is_nvml_missing(exc: BaseException) -> bool:
    import pynvml

    return isinstance(exc, pynvml.NVMLError_LibraryNotFound | pynvml.NVMLError_DriverNotLoaded)


def _missing_library_message(exc: BaseException) -> str | None:
    """The operator's message when ``exc`` says the GPU library or driver is absent, else None."""
    if _is_nvml_missing(exc):
        return NVML_MISSING.format(error=exc)
    if isinstance(exc, ImportError) and "amdsmi" in str(exc):
        return AMDSMI_MISSING.format(error=exc)
    if type(exc).__name__ == "AmdSmiLibraryException" and getattr(exc, "err_code", None) in _AMDSMI_MISSING_CODES:
        return AMDSMI_MISSING.format(error=getattr(exc, "err_info", exc))
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from telemetry.agent.agent import Agent

    config = load_config(args.config, overrides=_config_overrides(args))
    setup_logging(config.log_level)
    if not config.server_url:
        kv(logger, logging.WARNING, "no_server_url", hint="windows are spooled but not sent")
    try:
        agent = Agent(config)
    except ImportError as exc:
        message = _missing_library_message(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    # Start-up is over: what it imported and built (~24k objects: modules, classes, functions)
    # lives as long as the process. Moving it to the GC's permanent generation keeps later full
    # collections, and the interpreter's final ones at exit (~15 ms of CPU), from walking it again.
    gc.freeze()
    _install_signals(agent.stop)
    try:
        agent.run(duration_s=args.duration)  # a replay stops at the end of its trace
    except Exception as exc:
        message = _missing_library_message(exc)
        if message is not None:
            print(message, file=sys.stderr)
            return 2
        raise
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from telemetry.agent.spool import Spool

    config = load_config(args.config, overrides=_config_overrides(args))
    spool_file = os.path.join(config.spool_dir, "spool.sqlite3")
    out: dict[str, Any] = {"hostname": config.hostname, "spool_dir": config.spool_dir, "server_url": config.server_url}
    if os.path.exists(spool_file):
        spool = Spool(config.spool_dir)
        out.update(spool.stats())
        out["dead_letters"] = spool.dead_letters()[-5:]
        spool.close()
    else:
        out["spool"] = "absent (agent never ran with this spool_dir)"
    status_file = os.path.join(config.spool_dir, "status.json")
    if os.path.exists(status_file):
        with open(status_file) as fh:
            out["agent"] = json.load(fh)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            if key == "last_send_at" and value is not None:
                value = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
            print(f"{key}={json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import json

    from telemetry.agent.agent import build_host_power, load_nvml, make_reader
    from telemetry.agent.jobs import JobMapper

    config = load_config(args.config, overrides=_config_overrides(args))
    setup_logging("WARNING")
    try:
        nvml = load_nvml(config)
    except ImportError as exc:
        message = _missing_library_message(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    # A replay is read on the trace's clock: its second reading is the trace's next instant.
    replay = nvml if config.backend == "replay" else None
    reader = make_reader(config, nvml) if replay is None else make_reader(config, nvml, clock=replay.trace_time)
    try:
        reader.open()
    except Exception as exc:
        message = _missing_library_message(exc)
        if message is not None:
            print(message, file=sys.stderr)
            return 2
        raise
    try:
        host = build_host_power(config)
        mapper = JobMapper(config.proc_root)
        if replay is not None:
            replay.advance()  # to the first recorded instant
        first = {s.uuid: s for s in reader.sample()}
        host.read()
        if replay is not None and replay.next_time() is not None:
            replay.advance()
        else:
            time.sleep(args.interval)
        second = reader.sample()
        h = host.read()
        result: dict[str, Any] = {
            "agent_version": __version__,
            "backend": config.backend,
            "driver_version": reader.driver_version,
            "gpus": [],
        }
        for s in second:
            prev = first.get(s.uuid)
            dt = s.mono_s - prev.mono_s if prev else 0.0
            counter_w = None
            if prev and prev.energy_mj is not None and s.energy_mj is not None and dt > 0:
                counter_w = round((s.energy_mj - prev.energy_mj) / 1000.0 / dt, 1)
            result["gpus"].append(
                {
                    "index": s.index,
                    "uuid": s.uuid,
                    "name": s.name,
                    "power_w": s.power_w,
                    "power_limit_w": s.power_limit_w,
                    "energy_counter_mj": s.energy_mj,
                    "power_from_counter_w": counter_w,
                    "energy_source": "counter" if s.energy_mj is not None else "integrated",
                    "util_pct": s.util_pct,
                    "mem_util_pct": s.mem_util_pct,
                    "mem_used_mib": s.mem_used_mib,
                    "mig_instances": [m.uuid for m in s.mig],
                    "processes": [
                        {"pid": pid, "sm_util_pct": sm, "job_key": mapper.resolve(pid).job_key}
                        for pid, sm in sorted(s.processes.items())
                    ],
                }
            )
        result["host"] = {
            "source": getattr(host, "source", None),
            "quality": h.quality,
            "cpu_w": round(h.cpu_energy_j / args.interval, 2),
            "dram_w": round(h.dram_energy_j / args.interval, 2),
            "cpu_util_pct": round(h.cpu_util_pct, 1),
            "wall_w": h.wall_power_w,
        }
        print(json.dumps(result, indent=2))
    finally:
        reader.close()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from telemetry.agent.fleet import FleetError, load_fleet, parse_fleet, run_fleet

    setup_logging(args.log_level or "INFO")
    base_dir = args.base_dir or tempfile.mkdtemp(prefix="carbonledger-sim-")
    if args.fleet:
        doc = json.loads(open(args.fleet).read())
    else:
        doc = {
            "server_url": args.server_url or "",
            "window_s": args.window_s or 10,
            "tick_s": args.tick_s or 1,
            "hosts": [
                {
                    "hostname": args.hostname or "sim-node-01",
                    "token": args.token or "",
                    "gpus": [
                        {
                            "model": args.model,
                            "workload": args.workload,
                            "job_key": f"slurm:{1000 + i // 4}" if args.workload != "idle" else None,
                        }
                        for i in range(args.gpus)
                    ],
                }
            ],
        }
    for key in ("server_url", "window_s", "tick_s"):
        if getattr(args, key, None) is not None and args.fleet:
            doc[key] = getattr(args, key)
    try:
        spec = parse_fleet(doc)
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    del spec, load_fleet
    stop = threading.Event()
    _install_signals(stop.set)
    kv(logger, logging.INFO, "simulate_started", base_dir=base_dir, hosts=len(doc["hosts"]))
    run_fleet(doc, base_dir, duration_s=args.duration, stop=stop)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonledger-agent", description="CarbonLedger GPU host telemetry agent")
    parser.add_argument("--version", action="version", version=f"carbonledger-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="measure and send until stopped (SIGTERM/SIGINT)")
    _add_config_args(p)
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until signalled)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="what the agent sees: GPUs, spool depth, last send, dropped count")
    _add_config_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("probe", help="print one reading (install check); exit 2 if NVML is missing")
    _add_config_args(p)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between the two samples")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("simulate", help="run simulated hosts (one, or a fleet file)")
    p.add_argument("--fleet", help="fleet JSON file (several hosts, one thread each)")
    p.add_argument("--base-dir", help="per-host spool and /proc trees go under here (default: a temp dir)")
    p.add_argument("--duration", type=float, help="seconds (default: until signalled)")
    p.add_argument("--server-url")
    p.add_argument("--token")
    p.add_argument("--hostname")
    p.add_argument("--tick-s", type=float)
    p.add_argument("--window-s", type=float)
    p.add_argument("--gpus", type=int, default=8, help="without --fleet: number of simulated GPUs")
    p.add_argument("--model", default="H100")
    p.add_argument("--workload", default="llm_training")
    p.add_argument("--log-level")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
