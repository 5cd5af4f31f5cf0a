"""Storage bytes per raw GPU window: the per-window table (migrations 0002 + 0005) against the columnar
series (migration 0006) holding the same windows (not a test; run by hand).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/<any migrated database>
    .venv/bin/python benchmarks/raw_store_size.py [--gpus 64] [--hours 2]

In a scratch schema (dropped afterwards): one day's partition of each table; ``--gpus`` GPUs of 8 per
host streaming 10 s windows for ``--hours`` with realistic values (an NVML counter, varying power,
utilisation and memory, a power limit, one process per GPU, no MIG). The series are built from the
per-window rows with migration 0006's own move (one row per batch, device and day) for several batch
sizes (windows per device per POST: 1 is the agent's default of one POST per window). Prints
``pg_total_relation_size`` (heap, TOAST, indexes) of each partition per window, after VACUUM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402

SCHEMA = "bench_store_size"
DAY = "2026-03-01"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--batch-sizes", default="1,30,90")
    args = parser.parse_args()
    old = importlib.import_module("telemetry.migrations.0002_partitioned_windows")
    mig5 = importlib.import_module("telemetry.migrations.0005_gpuwindow_mig_instances_energy_covers")
    new = importlib.import_module("telemetry.migrations.0006_gpuseries")
    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname={db['NAME']}"
    windows = int(args.hours * 360)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"SET search_path TO {SCHEMA}")
        conn.execute(old.CREATE + mig5.ADD)
        conn.execute(
            f"CREATE TABLE telemetry_gpuwindow_p1 PARTITION OF telemetry_gpuwindow "
            f"FOR VALUES FROM ('{DAY}T00:00Z') TO ('{DAY}T00:00Z'::timestamptz + interval '1 day')"
        )
        conn.execute(
            """
            INSERT INTO telemetry_gpuwindow (batch_id, host_id, device_id, seq, start_at, end_at, energy_j,
                counter_mj, avg_power_w, max_power_w, util_pct, mem_util_pct, mem_used_mib, power_limit_w, quality,
                processes)
            SELECT s, g / 8, g, s, %(day)s::timestamptz + s * interval '10 seconds',
                   %(day)s::timestamptz + (s + 1) * interval '10 seconds',
                   10 * p, 123456789000 + g::bigint * 1000000000 + s::bigint * (4000000 + (s %% 37) * 10),
                   p, p + 35.5, 60 + (s * 7 + g) %% 40, 30 + (s * 3) %% 50, 40000 + (s * 13 + g) %% 4000,
                   700, 'measured',
                   jsonb_build_array(jsonb_build_object('pid', 4000 + g, 'sm_util_pct', 87.5,
                                                        'job_key', 'slurm:' || (1000 + g / 8)))
            FROM generate_series(0, %(gpus)s - 1) g CROSS JOIN generate_series(0, %(windows)s - 1) s
            CROSS JOIN LATERAL (SELECT 400 + 150 * sin(s / 20.0 + g) + (s %% 13) * 0.37 AS p) x
            """,
            {"day": f"{DAY}T00:00Z", "gpus": args.gpus, "windows": windows},
        )
        conn.execute("VACUUM ANALYZE telemetry_gpuwindow_p1")
        total = conn.execute("SELECT count(*) FROM telemetry_gpuwindow").fetchone()[0]
        size = conn.execute("SELECT pg_total_relation_size('telemetry_gpuwindow_p1')").fetchone()[0]
        print(f"{total} GPU windows ({args.gpus} GPUs x {windows} windows of 10 s)")
        print(f"per-window table: {size} bytes, {size / total:.1f} bytes per window")
        # The move as migration 0006 runs it, with batch ids regrouped to N windows per device per POST.
        move = new.MOVE.split("DROP TABLE telemetry_gpuwindow")[0]
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            conn.execute("DROP TABLE IF EXISTS telemetry_gpuseries")
            conn.execute(new.CREATE)
            conn.execute(
                f"CREATE TABLE telemetry_gpuseries_p1 PARTITION OF telemetry_gpuseries "
                f"FOR VALUES FROM ('{DAY}T00:00Z') TO ('{DAY}T00:00Z'::timestamptz + interval '1 day')"
            )
            conn.execute(f"UPDATE telemetry_gpuwindow SET batch_id = seq / {batch_size}")
            conn.execute(move)
            conn.execute("VACUUM ANALYZE telemetry_gpuseries_p1")
            rows, stored = conn.execute("SELECT count(*), sum(window_count) FROM telemetry_gpuseries_p1").fetchone()
            assert stored == total, (stored, total)
            size = conn.execute("SELECT pg_total_relation_size('telemetry_gpuseries_p1')").fetchone()[0]
            print(
                f"series, {batch_size} windows per device per batch: {rows} rows, {size} bytes, "
                f"{size / total:.1f} bytes per window"
            )
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
