"""Issue 18's comparisons of the ingest benchmark, two runs side by side (a benchmark, not a test).

Each mode runs ``benchmarks/ingest.py`` twice, one after the other on the same machine, and
prints both runs' figures in two columns, each beside the raw binary COPY reference measured in
the same run:

  growth  empty database vs one holding ``--history-days`` of history for ``--history-gpus``
          GPUs (default 30 days x 10,000 GPUs; benchmarks.history): no cost may grow with
          history (target: CPU us per GPU window within 10 %).
  shape   ideal shape (2 fixed jobs per host, 30-window POSTs) vs ``--shape realistic`` (job
          churn through the jobs API, a shared GPU, a MIG GPU, the hour before the run ingested
          first, the agent's default batching of 6 windows per POST), 128 hosts = 1,024 GPUs.
  scale   1 web process + 1 worker vs 2 + 2 on the same box: CPU per GPU window per process.

Any other option is passed to both runs (``--seconds 20``, ``--hosts 64``, ...). Results:
``var/bench/shapes-<mode>-a.json`` and ``-b.json`` and the table on stdout.

    .venv/bin/python benchmarks/ingest_shapes.py growth --history-days 3 --history-gpus 2048
    .venv/bin/python benchmarks/ingest_shapes.py shape
    .venv/bin/python benchmarks/ingest_shapes.py scale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
INGEST = ROOT / "benchmarks" / "ingest.py"
GROWTH_TARGET = 0.10  # CPU per GPU window with history within 10 % of the empty database's


def _runs(mode: str, args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    if mode == "growth":
        history = [
            "--history-days",
            str(args.history_days),
            "--history-gpus",
            str(args.history_gpus),
            "--history-raw-hours",
            str(args.history_raw_hours),
        ]
        return [("empty", []), (f"history {args.history_days} d x {args.history_gpus} GPUs", history)]
    if mode == "shape":
        # The realistic shape's small POSTs go far slower: a smaller pool puts the churn points within phase 1.
        # The pool must still outlast phase 1 and feed phase 2 (3,000 ran dry in session 6 at 4,080/s):
        # --realistic-max-rate wants about twice the shape's measured rate (docs/performance.md).
        return [("ideal", []), ("realistic", ["--shape", "realistic", "--max-rate", str(args.realistic_max_rate)])]
    return [
        ("1 web + 1 worker", ["--web-workers", "1", "--celery-workers", "1"]),
        ("2 web + 2 workers", ["--web-workers", "2", "--celery-workers", "2"]),
    ]


def _process_spread(phase1: dict, role: str) -> str:
    """CPU us per GPU window of each busy process of a role (its share of the work)."""
    values = [v for k, v in phase1.get("cpu_us_per_gpu_window_by_process", {}).items() if k.startswith(role + ":")]
    if not values:
        return "-"
    return " + ".join(f"{v:g}" for v in sorted(values, reverse=True))


def _pair(a, b, spec: str) -> str:
    return " / ".join("n/a" if v is None else format(v, spec) for v in (a, b))


def _rows(result: dict) -> list[tuple[str, str]]:
    p1, raw, p2 = result["phase1"], result["raw_copy"], result["phase2"]
    layers = p1.get("cpu_us_per_gpu_window", {})
    history = result.get("history") or {}

    def fmt(value, spec: str = ",.0f") -> str:
        return "n/a" if value is None else format(value, spec)

    rows = [
        ("GPU windows per POST", str(result["gpu_windows_per_batch"])),
        ("GPU windows in phase 1", fmt(p1["gpu_windows"])),
        ("ingested (HTTP 202) GPU-windows/s", fmt(p1["ingest_gpu_windows_per_s"])),
        ("attributed end to end GPU-windows/s", fmt(p1["attributed_gpu_windows_per_s"])),
        ("raw binary COPY rows/s (same run)", fmt(raw["rows_per_s"])),
        ("ingest / raw COPY", fmt(result["ratio_ingest_to_raw_copy"], ".3f")),
        ("attributed / raw COPY", fmt(result["ratio_attributed_to_raw_copy"], ".3f")),
        ("CPU us per GPU window, total", fmt(p1.get("cpu_us_per_gpu_window_total"), ".1f")),
    ]
    rows += [(f"  of which {role}", fmt(layers.get(role), ".1f")) for role in ("web", "worker", "postgres", "redis")]
    rows += [
        ("  per web process", _process_spread(p1, "web")),
        ("  per worker process", _process_spread(p1, "worker")),
        ("WAL bytes per GPU window (net)", fmt(p1.get("wal_bytes_per_gpu_window_net_of_background"), ",.1f")),
        ("WAL bytes per GPU window (gross)", fmt(p1.get("wal_bytes_per_gpu_window"), ",.1f")),
        ("WAL bytes per row, raw COPY (net)", fmt(raw.get("wal_bytes_per_row_net_of_background"), ",.1f")),
        ("background WAL B/s (other databases)", fmt(p1.get("background_wal_bytes_per_s"))),
        (
            "POST latency p50 / p99 ms",
            f"{fmt(p1['post_latency_p50_ms'], '.1f')} / {fmt(p1['post_latency_p99_ms'], '.1f')}",
        ),
        (
            "freshness p50 / p99 s (half rate)",
            f"{fmt(p2['freshness_p50_s'], '.2f')} / {fmt(p2['freshness_p99_s'], '.2f')}",
        ),
        ("errors phase 1 / 2", f"{p1['errors']} / {p2['errors']}"),
    ]
    if "churn_api_statuses" in p1:
        rows.append(("churn API calls (end, register)", str(sorted(set(map(tuple, p1["churn_api_statuses"]))))))
    if history:
        rows += [
            ("history seeding s", fmt(history["seed_s"], ".1f")),
            ("history database GB", fmt(history["database_bytes"] / 1e9, ".2f")),
        ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("growth", "shape", "scale"))
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--history-gpus", type=int, default=10_000)
    parser.add_argument("--history-raw-hours", type=int, default=24)
    parser.add_argument(
        "--realistic-max-rate",
        type=float,
        default=8_000.0,
        help="GPU windows/s the realistic run's pool is sized for (about twice its measured rate)",
    )
    args, passthrough = parser.parse_known_args()

    VAR.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (label, extra) in enumerate(_runs(args.mode, args)):
        out = VAR / f"shapes-{args.mode}-{'ab'[i]}.json"
        argv = [sys.executable, str(INGEST), *passthrough, *extra, "--out", str(out)]
        print(f"=== {label}: {' '.join(argv[1:])}", flush=True)
        subprocess.run(argv, cwd=ROOT, check=True)
        results.append((label, json.loads(out.read_text())))

    (label_a, a), (label_b, b) = results
    rows_a, rows_b = _rows(a), dict(_rows(b))
    print(f"\nCarbonLedger ingest, {args.mode}: {label_a} vs {label_b} ({a['date']} .. {b['date']})")
    print(f"  {'':<40} {label_a:>22} {label_b:>28}")
    for name, value in rows_a:
        print(f"  {name:<40} {value:>22} {rows_b.get(name, '-'):>28}")
    for name, value in rows_b.items():
        if name not in dict(rows_a):
            print(f"  {name:<40} {'-':>22} {value:>28}")
    us_a = a["phase1"].get("cpu_us_per_gpu_window_total")
    us_b = b["phase1"].get("cpu_us_per_gpu_window_total")
    if us_a and us_b:
        change = us_b / us_a - 1
        verdict = ""
        if args.mode == "growth":
            verdict = "within target" if abs(change) <= GROWTH_TARGET else "OUTSIDE the 10 % target"
        print(f"\n  CPU us per GPU window, {label_b} vs {label_a}: {change:+.1%} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
