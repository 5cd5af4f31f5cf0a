"""Agent overhead vs codecarbon (a benchmark, not a test).

Runs, side by side and for the same time, in three subprocesses:
  * the CarbonLedger agent at 1 s ticks / 10 s windows on 8 simulated H100s (the real reader,
    job mapper, host-power model, spool and HTTP sender; batches go to a loopback sink) with
    read_policy = "window" (energy counter and per-process utilisation at window boundaries),
  * the same agent with read_policy = "tick" (every call every tick: the former behaviour), and
  * codecarbon's OfflineEmissionsTracker(country_iso_code="FRA", measure_power_secs=1),
and reports each one's CPU time (user+sys, from wait4) as % of one core and peak RSS, and the
agents' NVML calls per window per GPU (counted by the simulator, from status.json).
Target: agent < 0.5 % of one core and < 60 MB RSS.

The simulated NVML charges each call the CPU a real driver costs (``--nvml-cost h200``, the
default: nvmlDeviceGetTotalEnergyConsumption 3.5 ms and nvmlDeviceGetProcessUtilization 2.15 ms,
the middle of what a real H200 with driver 580 measured, docs/agent.md "Overhead"); ``none``
makes every call free (the simulator's own cost only).

    .venv/bin/python benchmarks/agent_overhead.py            # 60 s
    .venv/bin/python benchmarks/agent_overhead.py --seconds 10
    .venv/bin/python benchmarks/agent_overhead.py --nvml-cost none
    .venv/bin/python benchmarks/agent_overhead.py --cold-bytecode   # see below

Bytecode: a pip-installed agent has its modules compiled to .pyc at install time, and codecarbon's
site-packages here have theirs. This checkout is an editable install and the dev environment sets
PYTHONDONTWRITEBYTECODE=1, so without care the agent would compile its own sources at every start
(≈ 0.04–0.06 s CPU per start here). By default the agent therefore runs with a .pyc cache
(PYTHONPYCACHEPREFIX under the run's temp dir) warmed by a short run beforehand (against its own
spool; the sink's count is reset); --cold-bytecode measures the compile-every-start case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# CPU ms per call of a real H200 (driver 580): the middle of the measured ranges.
NVML_COST_MS = {"h200": (3.5, 2.15), "none": (0.0, 0.0)}

CODECARBON = """
import sys, time, logging
from codecarbon import OfflineEmissionsTracker
t = OfflineEmissionsTracker(country_iso_code="FRA", measure_power_secs=1, save_to_file=False,
                            log_level="error", tracking_mode="machine")
t.start()
time.sleep(float(sys.argv[1]))
t.stop()
"""


class Sink(BaseHTTPRequestHandler):
    posts = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Sink.posts += 1
        body = b'{"accepted_windows": 1, "duplicate": false}'
        self.send_response(202)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def proc_cpu_s(pid: int) -> float | None:
    """utime+stime of a live process from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_state(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """% of one core between t=5 s (start-up done) and 2 s before the end, per process."""
    t_a, t_b = 5.0, seconds - 2.0
    if t_b - t_a < 5.0:
        return {}
    time.sleep(t_a)
    a = {k: proc_cpu_s(p) for k, p in pids.items()}
    start = time.monotonic()
    time.sleep(t_b - t_a)
    b = {k: proc_cpu_s(p) for k, p in pids.items()}
    span = time.monotonic() - start
    return {k: 100.0 * (b[k] - a[k]) / span for k in pids if a[k] is not None and b[k] is not None}


def measure(popen: subprocess.Popen) -> tuple[float, float, int]:
    """(cpu_s, wall_s, max_rss_kb) of a child, from wait4 (so it counts only that child)."""
    start = time.monotonic()
    _pid, status, ru = os.wait4(popen.pid, 0)
    popen.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime, time.monotonic() - start, ru.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--nvml-cost", choices=sorted(NVML_COST_MS), default="h200")
    parser.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="no warmed .pyc cache for the agent: it compiles its own modules at start (see the docstring)",
    )
    args = parser.parse_args()

    load_before = _loadavg()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="clagent-bench-"))
    gpus = ",\n".join(
        f'  {{model = "H100", workload = "llm_training", job_key = "slurm:{1000 + i // 4}"}}' for i in range(args.gpus)
    )

    energy_ms, process_ms = NVML_COST_MS[args.nvml_cost]

    def write_config(name: str, policy: str = "window") -> Path:
        cfg = work / f"{name}.toml"
        cfg.write_text(
            f'server_url = "http://127.0.0.1:{httpd.server_address[1]}"\ntoken = "bench"\nhostname = "bench-{name}"\n'
            f'tick_s = 1.0\nwindow_s = 10.0\nbackend = "sim"\nspool_dir = "{work / name / "spool"}"\n'
            f'proc_root = "{work / name / "proc"}"\nlog_level = "WARNING"\nread_policy = "{policy}"\n'
            f"sim_energy_call_ms = {energy_ms}\nsim_process_util_call_ms = {process_ms}\n"
            f"sim_gpus = [\n{gpus}\n]\n"
        )
        return cfg

    cfg = write_config("agent")
    cfg_tick = write_config("agent-tick", "tick")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    agent_env = dict(env)
    if not args.cold_bytecode:
        warm_env = {**env, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        warm_env.pop("PYTHONDONTWRITEBYTECODE", None)
        warm_cmd = ["run", "--config", str(write_config("warmup")), "--duration", "1"]
        subprocess.run([sys.executable, "-m", "telemetry.agent.cli", *warm_cmd], env=warm_env, cwd=ROOT, check=True)
        Sink.posts = 0
        agent_env = {**warm_env, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    agent = subprocess.Popen(
        [sys.executable, "-m", "telemetry.agent.cli", "run", "--config", str(cfg), "--duration", str(args.seconds)],
        env=agent_env,
        cwd=ROOT,
    )
    agent_tick = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telemetry.agent.cli",
            "run",
            "--config",
            str(cfg_tick),
            "--duration",
            str(args.seconds),
        ],
        env=agent_env,
        cwd=ROOT,
    )
    cc = subprocess.Popen(
        [sys.executable, "-c", CODECARBON, str(args.seconds)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    steady = steady_state({"agent": agent.pid, "agent_tick": agent_tick.pid, "codecarbon": cc.pid}, args.seconds)
    results = {}
    results["agent"] = measure(agent)
    results["agent_tick"] = measure(agent_tick)
    results["codecarbon"] = measure(cc)
    wall = time.monotonic() - t0
    httpd.shutdown()
    if agent.returncode or agent_tick.returncode or cc.returncode:
        print(
            f"agent rc={agent.returncode} agent(tick) rc={agent_tick.returncode} codecarbon rc={cc.returncode}",
            file=sys.stderr,
        )
        return 1
    calls = {}
    for name in ("agent", "agent-tick"):
        status = json.loads((work / name / "spool" / "status.json").read_text())
        calls[name] = (status.get("library_calls") or {}, status.get("last_seq"))

    print(
        f"host: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, measured {args.seconds:.0f} s "
        f"(all running side by side, {wall:.1f} s wall incl. start-up); load average before/after: "
        f"{load_before} / {_loadavg()}; agent bytecode: {'compiled at start' if args.cold_bytecode else 'warm .pyc'}; "
        f"simulated NVML cost per call: energy {energy_ms} ms, per-process utilisation {process_ms} ms"
    )
    print(f"{'process':<34}{'CPU s':>8}{'% of 1 core':>13}{'steady %':>10}{'peak RSS MB':>13}")
    rows = {}
    for name, label in (
        ("agent", f"agent, window reads ({args.gpus} GPUs)"),
        ("agent_tick", f"agent, tick reads ({args.gpus} GPUs)"),
        ("codecarbon", "codecarbon Offline (FRA, 1s)"),
    ):
        cpu_s, _w, rss_kb = results[name]
        pct = 100.0 * cpu_s / args.seconds
        rows[name] = (cpu_s, pct, rss_kb / 1024.0)
        st = steady.get(name)
        st_text = f"{st:>9.2f}%" if st is not None else f"{'n/a':>10}"
        print(f"{label:<34}{cpu_s:>8.2f}{pct:>12.2f}%{st_text}{rss_kb / 1024.0:>13.1f}")
    a, c, t = rows["agent"], rows["codecarbon"], rows["agent_tick"]
    print(f"ratio agent/codecarbon: CPU {a[0] / c[0]:.2f}x, RSS {a[2] / c[2]:.2f}x")
    print(f"ratio agent window reads / tick reads: CPU {a[0] / t[0]:.2f}x")
    windows_run = {}
    for name in ("agent-tick", "agent"):
        counted, _last_seq = calls[name]
        # Windows closed in the measured run: one per window_s of run time (10 s).
        windows_run[name] = max(1.0, args.seconds / 10.0)
        per = {k: round(v / windows_run[name] / args.gpus, 2) for k, v in counted.items()}
        print(
            f"NVML calls per window per GPU, {name} (whole run / (run s / 10 s), incl. discovery and the "
            f"final window): {json.dumps(per, sort_keys=True)}"
        )
    print(f"agent batches received by the loopback sink: {Sink.posts}")
    print(
        "CPU s / % of 1 core: whole process life incl. interpreter start-up and imports, over the run length;"
        " steady %: from t=5 s to 2 s before the end"
    )
    a_steady = steady.get("agent")
    ok_total = a[1] < 0.5 and a[2] < 60.0
    ok_steady = a_steady is not None and a_steady < 0.5 and a[2] < 60.0
    print(
        f"target (< 0.5 % of one core, < 60 MB RSS): whole run {'met' if ok_total else 'NOT met'}, "
        f"steady state {'met' if ok_steady else 'NOT met'}"
    )
    print(
        json.dumps(
            {
                "agent_cpu_pct": round(a[1], 3),
                "agent_tick_reads_cpu_pct": round(t[1], 3),
                "agent_tick_reads_steady_cpu_pct": None
                if "agent_tick" not in steady
                else round(steady["agent_tick"], 3),
                "nvml_cost": args.nvml_cost,
                "agent_steady_cpu_pct": None if a_steady is None else round(a_steady, 3),
                "agent_rss_mb": round(a[2], 1),
                "codecarbon_cpu_pct": round(c[1], 3),
                "codecarbon_steady_cpu_pct": None if "codecarbon" not in steady else round(steady["codecarbon"], 3),
                "codecarbon_rss_mb": round(c[2], 1),
                "agent_bytecode": "cold" if args.cold_bytecode else "warm",
                "loadavg_before": load_before,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
