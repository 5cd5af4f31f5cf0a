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
    parser.add_argument("--batch-sizes", default="1,30,120")
    parser.add_argument("--write-batches", type=int, default=64, help="batches timed per layout (0: none)")
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
        if args.write_batches:
            _time_writes(conn, n_batches=args.write_batches, windows_per_gpu=30)
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def _time_writes(conn: psycopg.Connection, *, n_batches: int, windows_per_gpu: int) -> None:
    """Client CPU and wall time of writing the same batches (one host's 8 GPUs x ``windows_per_gpu``
    windows each) one transaction per batch: as one row per window (the ingest's COPY before
    0006) and as series (``gpu_series_rows`` + the same ``copy_rows``), alternating batch by batch."""
    import json
    import time

    from psycopg.types.json import Jsonb

    from benchmarks.ingest import RAW_ROWS_COLUMNS
    from telemetry.parsing import GpuRow
    from telemetry.series import series_from_rows
    from telemetry.services import GPU_SERIES_COPY_COLUMNS, copy_rows, gpu_series_rows

    old_columns = RAW_ROWS_COLUMNS  # the per-window table's columns, as the ingest benchmark copies them
    names = ", ".join(name for name, _ in old_columns if name not in ("processes", "mig_instances"))
    conn.execute("CREATE TABLE gpuwindow_copy (LIKE telemetry_gpuwindow INCLUDING ALL)")
    conn.execute("TRUNCATE telemetry_gpuseries")
    conn.autocommit = False
    batches = []
    for b in range(n_batches):
        # Host b % 8's GPUs, windows [w0, w0 + n): read back as the parser's rows.
        host, w0 = b % 8, (b // 8) * windows_per_gpu
        raw = conn.execute(
            f"SELECT {names}, processes::text FROM telemetry_gpuwindow WHERE host_id = %s AND seq >= %s "
            "AND seq < %s ORDER BY seq, device_id",
            [host, w0, w0 + windows_per_gpu],
        ).fetchall()
        procs_by_device: dict[int, list] = {}
        rows = [
            GpuRow(
                uuid=str(r[2]), index=r[2] % 8, name="", seq=r[3], start=r[4], end=r[5], energy_j=r[6],
                counter_mj=r[7], avg_power_w=r[8], max_power_w=r[9], util_pct=r[10], mem_util_pct=r[11],
                mem_used_mib=r[12], power_limit_w=r[13], quality=r[14],
                processes=procs_by_device.setdefault(r[2], json.loads(r[16])),
            )
            for r in raw
        ]  # fmt: skip
        batches.append((b + 1, host, rows, series_from_rows(rows), {str(r[2]): r[2] for r in raw}))
    conn.commit()
    cache: dict[tuple, Jsonb] = {}
    no_mig = Jsonb("[]", dumps=str)

    def old_write(pk, host, rows, _series, _ids):
        def procs(p):
            key = tuple((x["pid"], x["sm_util_pct"], x["job_key"]) for x in p)
            if key not in cache:
                cache[key] = Jsonb(json.dumps(p), dumps=str)
            return cache[key]

        with conn.cursor() as cur:
            copy_rows(
                cursor=cur,
                table="gpuwindow_copy",
                columns=old_columns,
                rows=[
                    (pk, host, int(r.uuid), r.seq, r.start, r.end, r.energy_j, r.counter_mj, r.avg_power_w,
                     r.max_power_w, r.util_pct, r.mem_util_pct, r.mem_used_mib, r.power_limit_w, r.quality,
                     procs(r.processes), no_mig, r.energy_covers)
                    for r in rows
                ],
            )  # fmt: skip
        conn.commit()

    def new_write(pk, host, _rows, series, ids):
        with conn.cursor() as cur:
            copy_rows(
                cursor=cur,
                table="telemetry_gpuseries",
                columns=GPU_SERIES_COPY_COLUMNS,
                rows=gpu_series_rows(batch_pk=pk, host_id=host, series=series, device_ids=ids),
            )
        conn.commit()

    totals = {"per-window rows": [0.0, 0.0], "series": [0.0, 0.0]}
    for batch in batches:
        for label, fn in (("per-window rows", old_write), ("series", new_write)):
            c0, w0 = time.process_time(), time.perf_counter()
            fn(*batch)
            totals[label][0] += time.process_time() - c0
            totals[label][1] += time.perf_counter() - w0
    windows = sum(len(b[2]) for b in batches)
    print(f"write {n_batches} batches of 8 GPUs x {windows_per_gpu} windows, one transaction each ({windows} windows):")
    for label, (cpu_s, wall_s) in totals.items():
        cpu_us, wall_us = cpu_s / windows * 1e6, wall_s / windows * 1e6
        print(f"  {label}: client CPU {cpu_us:.2f} us/window, wall {wall_us:.2f} us/window")
    conn.autocommit = True


if __name__ == "__main__":
    main()
