"""Real-GPU check of the agent's NVML path, beside nvidia-smi (run on a machine with a GPU).

    python3 benchmarks/gpu_check.py --out DIR [--duration 45] [--load-from 10 --load-to 30]

Needs only the Python standard library, nvidia-ml-py (``pynvml``) and this repository on
PYTHONPATH. It runs ``carbonledger-agent probe``, then ``carbonledger-agent run --backend nvml``
against a loopback receiver for --duration seconds while ``nvidia-smi`` samples power every
200 ms, puts a GPU load on device 0 between --load-from and --load-to seconds (torch if it is
installed, else a CUDA kernel built with nvcc, else no load), and compares each window's
energy from the NVML counter with nvidia-smi's power integrated over the same window.
Also reports the agent's own CPU time (% of one core over its whole life) and peak RSS.
Writes report.json, agent-windows.json, nvidia-smi.csv and probe.txt into --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CUDA_BURN = r"""
#include <cstdio>
__global__ void burn(float *x, int n, int iters) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float v = x[i]; for (int k = 0; k < iters; ++k) v = v * 1.000001f + 0.5f; x[i] = v; }
}
int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 20.0;
    int n = 1 << 24; float *x; cudaMalloc(&x, n * sizeof(float));
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    double spent = 0; cudaEventRecord(a);
    while (spent < seconds * 1000.0) {
        burn<<<(n + 255) / 256, 256>>>(x, n, 4096);
        cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); spent = ms;
    }
    cudaFree(x); printf("burned %.1f s\n", spent / 1000.0); return 0;
}
"""

TORCH_BURN = """
import sys, time, torch
end = time.time() + float(sys.argv[1])
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
print("burned with torch")
"""


class Receiver:
    """Loopback stand-in for the ingest endpoint: accepts every batch, keeps the windows."""

    def __init__(self) -> None:
        self.windows: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw)
                outer.windows.extend(body["windows"])
                reply = json.dumps(
                    {"batch_id": body["batch_id"], "accepted_windows": len(body["windows"]), "duplicate": False}
                ).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def start_load(seconds: float, workdir: Path) -> tuple[subprocess.Popen | None, str]:
    try:
        subprocess.run(
            [sys.executable, "-c", "import torch; assert torch.cuda.is_available()"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return subprocess.Popen([sys.executable, "-c", TORCH_BURN, str(seconds)]), "torch bf16 matmul 8192^2"
    except (subprocess.SubprocessError, OSError):
        pass
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc:
        source = workdir / "burn.cu"
        source.write_text(CUDA_BURN)
        built = subprocess.run(
            [nvcc, "-O2", "-o", str(workdir / "burn"), str(source)], capture_output=True, text=True, timeout=240
        )
        if built.returncode == 0:
            return subprocess.Popen([str(workdir / "burn"), str(seconds)]), "CUDA FMA kernel (nvcc)"
        return None, f"nvcc failed: {built.stderr[-300:]}"
    return None, "no torch and no nvcc: idle only"


def integrate(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    inside = [(t, p) for t, p in samples if start <= t <= end]
    if len(inside) < 2:
        return None
    energy = 0.0
    for (t0, p0), (t1, p1) in itertools.pairwise(inside):
        energy += (t1 - t0) * (p0 + p1) / 2
    # Scale to the full window length (sampling starts/ends up to 200 ms inside it).
    return energy * (end - start) / (inside[-1][0] - inside[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--duration", type=float, default=45.0)
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--load-from", type=float, default=10.0)
    parser.add_argument("--load-to", type=float, default=30.0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    agent = [sys.executable, "-m", "telemetry.agent.cli"]

    probe = subprocess.run([*agent, "probe"], capture_output=True, text=True, env=env, timeout=60)
    (out / "probe.txt").write_text(probe.stdout + probe.stderr)
    smi_q = subprocess.run(["nvidia-smi", "-q", "-d", "POWER"], capture_output=True, text=True, timeout=60)
    (out / "nvidia-smi-q-power.txt").write_text(smi_q.stdout + smi_q.stderr)
    print(probe.stdout[-2000:], probe.stderr[-1000:])

    receiver = Receiver()
    workdir = Path(tempfile.mkdtemp())
    smi_csv = out / "nvidia-smi.csv"
    smi = subprocess.Popen(
        [
            "nvidia-smi",
            "--query-gpu=timestamp,index,power.draw,utilization.gpu",
            "--format=csv,noheader,nounits",
            "-lms",
            "200",
            "-i",
            "0",
        ],
        stdout=smi_csv.open("w"),
        stderr=subprocess.DEVNULL,
    )
    t0 = time.time()
    run = subprocess.Popen(
        [
            *agent,
            "run",
            "--backend",
            "nvml",
            "--server-url",
            receiver.url,
            "--token",
            "gpu-check",
            "--hostname",
            "gpu-check",
            "--tick-s",
            "1",
            "--window-s",
            str(args.window_s),
            "--spool-dir",
            str(workdir / "spool"),
            "--duration",
            str(args.duration),
        ],
        env=env,
        stdout=(out / "agent.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    time.sleep(args.load_from)
    load, load_kind = start_load(args.load_to - args.load_from, workdir)
    # wait4 rather than wait: the agent's own CPU time and peak RSS come with its exit status.
    _, status, usage = os.wait4(run.pid, 0)
    run.returncode = os.waitstatus_to_exitcode(status)
    agent_cpu_s = usage.ru_utime + usage.ru_stime
    if load is not None:
        load.wait(timeout=120)
    smi.terminate()
    smi.wait(timeout=10)
    time.sleep(1)

    samples: list[tuple[float, float]] = []
    for line in smi_csv.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            stamp = dt.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=dt.UTC).timestamp()
            samples.append((stamp, float(parts[2])))
        except (ValueError, IndexError):
            continue
    rows = []
    for window in receiver.windows:
        start = dt.datetime.fromisoformat(window["start"].replace("Z", "+00:00")).timestamp()
        end = dt.datetime.fromisoformat(window["end"].replace("Z", "+00:00")).timestamp()
        gpu = next((g for g in window["gpus"] if g["index"] == 0), None)
        if gpu is None:
            continue
        smi_j = integrate(samples, start, end)
        rows.append(
            {
                "seq": window["seq"],
                "start": window["start"],
                "duration_s": round(end - start, 3),
                "agent_energy_j": round(gpu["energy_j"], 3),
                "agent_quality": gpu["quality"],
                "agent_avg_power_w": round(gpu["avg_power_w"], 2),
                "agent_util_pct": gpu["util_pct"],
                "nvidia_smi_energy_j": None if smi_j is None else round(smi_j, 3),
                "ratio": None if not smi_j else round(gpu["energy_j"] / smi_j, 4),
            }
        )
    report = {
        "gpu": (probe.stdout.splitlines() or ["?"])[0],
        "load": load_kind,
        "wall_s": round(time.time() - t0, 1),
        "windows": rows,
        "agent_exit_code": run.returncode,
        # Whole life (start-up, NVML init, every tick, shutdown) over --duration, GPU load included.
        "agent_cpu_s": round(agent_cpu_s, 3),
        "agent_cpu_pct_of_one_core": round(100 * agent_cpu_s / args.duration, 3),
        "agent_max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "agent_total_j": round(sum(r["agent_energy_j"] for r in rows), 1),
        "nvidia_smi_total_j": round(sum(r["nvidia_smi_energy_j"] or 0 for r in rows), 1),
    }
    (out / "agent-windows.json").write_text(json.dumps(receiver.windows, indent=1))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"load: {load_kind}")
    print(f"{'seq':>12} {'dur_s':>6} {'agent_J':>10} {'smi_J':>10} {'ratio':>7} {'avg_W':>7} {'util':>5} quality")
    for r in rows:
        print(
            f"{r['seq']:>12} {r['duration_s']:>6} {r['agent_energy_j']:>10} {r['nvidia_smi_energy_j']!s:>10} "
            f"{r['ratio']!s:>7} {r['agent_avg_power_w']:>7} {r['agent_util_pct']!s:>5} {r['agent_quality']}"
        )
    print(f"total agent {report['agent_total_j']} J, nvidia-smi {report['nvidia_smi_total_j']} J")
    print(
        f"agent CPU {report['agent_cpu_s']} s over {args.duration:g} s = {report['agent_cpu_pct_of_one_core']} % "
        f"of one core, peak RSS {report['agent_max_rss_mb']} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
