"""Migration 0006 moves every raw GPU window of the per-window table into the columnar series (one row
per batch, device and UTC day) and leaves a view of the old name and columns that reads them back
exactly; its reverse restores the per-window table."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounting.domain.timebase import to_us
from telemetry import partitions

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("telemetry", "0005_gpuwindow_mig_instances_energy_covers")
AFTER = ("telemetry", "0006_gpuseries")
UTC = dt.UTC
MIDNIGHT = dt.datetime(2026, 3, 2, tzinfo=UTC)
P1 = [{"pid": 7, "sm_util_pct": 40.0, "job_key": "slurm:1"}]
P2 = [{"pid": 7, "sm_util_pct": 55.5, "job_key": "slurm:1"}, {"pid": 9, "sm_util_pct": None, "job_key": None}]
MIG = [
    {
        "uuid": None,
        "gpu_instance_id": 1,
        "compute_instance_id": 0,
        "profile": "3g.40gb",
        "slices": 3,
        "activity": 0.25,
        "mem_used_mib": None,
        "job_keys": ["slurm:1"],
    }
]
COLUMNS = (
    "batch_id, host_id, device_id, seq, start_at, end_at, energy_j, counter_mj, avg_power_w, max_power_w, util_pct, "
    "mem_util_pct, mem_used_mib, power_limit_w, quality, processes, mig_instances, energy_covers"
)


def _window(
    batch, device, seq, start, *, seconds=10.0, counter=None, limit=700.0, quality="measured", procs=(), mig=()
):
    end = start + dt.timedelta(seconds=seconds)
    energy_j = 123.456789 * seq + 0.1
    return (
        batch,
        5,
        device,
        seq,
        start,
        end,
        energy_j,
        counter,
        energy_j / seconds,
        energy_j / seconds + 1.5,
        float(seq % 100),
        12.5,
        40_000.0 + seq,
        limit,
        quality,
        list(procs),
        list(mig),
        "gpu+cpu+memory" if device == 12 else "gpu",
    )


def _seed() -> list[tuple]:
    """Windows on two days: batch 1 crosses midnight (device 11: counters, then none; device 12: a
    module's energy, MIG, no power limit), batch 2 the next day with processes changing and back."""
    t0 = MIDNIGHT - dt.timedelta(seconds=25, microseconds=-123_457)
    rows = []
    for i in range(6):
        start = t0 + dt.timedelta(seconds=10 * i)
        rows.append(_window(1, 11, 100 + i, start, counter=(10**12 + i * 7_001 if i < 3 else None)))
        rows.append(_window(1, 12, 100 + i, start, limit=None, mig=MIG if i in (1, 2, 4) else (), quality="integrated"))
    t1 = MIDNIGHT + dt.timedelta(hours=3)
    procs = [P1, P1, P2, P2, P1, [], P1]
    for i, p in enumerate(procs):
        rows.append(_window(2, 11, 200 + i, t1 + dt.timedelta(seconds=10 * i), counter=5 * i, procs=p))
    return rows


def _view_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM telemetry_gpuwindow ORDER BY device_id, start_at, seq")
        return [
            tuple(json.loads(v) if i in (15, 16) and isinstance(v, str) else v for i, v in enumerate(row))
            for row in cursor.fetchall()
        ]


@pytest.fixture
def at_0005():
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    partitions._known.clear()  # the reverse dropped the series partitions this process created
    yield
    # Back to the latest schema (going back to 0005 also unapplied what depends on 0006 in
    # accounting, and what depends on that in telemetry).
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    partitions._known.clear()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry_gpuseries")


def test_every_window_moves_to_the_series_and_reads_back_exactly_through_the_view(at_0005):
    seeded = _seed()
    with connection.cursor() as cursor:
        for day in (MIDNIGHT - dt.timedelta(days=1), MIDNIGHT):
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS telemetry_gpuwindow_p{day:%Y%m%d} PARTITION OF telemetry_gpuwindow "
                "FOR VALUES FROM (%s) TO (%s)",
                [day, day + dt.timedelta(days=1)],
            )
        for row in seeded:
            cursor.execute(
                f"INSERT INTO telemetry_gpuwindow ({COLUMNS}) VALUES ({', '.join(['%s'] * 18)})",
                [json.dumps(v) if isinstance(v, list) else v for v in row],
            )
    assert _view_rows() == sorted(seeded, key=lambda r: (r[2], r[4], r[3]))  # the table, before

    executor = MigrationExecutor(connection)
    executor.migrate([AFTER])

    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'telemetry_gpuwindow'")
        assert cursor.fetchone() == ("v",)
        cursor.execute(
            "SELECT tableoid::regclass::text, batch_id, device_id, first_start_at, last_end_at, window_count, seq, "
            "counter_mj, power_limit_w, quality, processes, mig_instances, energy_covers "
            "FROM telemetry_gpuseries ORDER BY batch_id, device_id, first_start_at"
        )
        series = [(*r[:10], json.loads(r[10]), json.loads(r[11]), r[12]) for r in cursor.fetchall()]
    t0 = MIDNIGHT - dt.timedelta(seconds=25, microseconds=-123_457)
    t1 = MIDNIGHT + dt.timedelta(hours=3)
    s = dt.timedelta(seconds=10)
    assert series == [
        # Batch 1 splits at midnight by window start: 3 windows before, 3 after.
        ("telemetry_gpuseries_p20260301", 1, 11, t0, t0 + 3 * s, 3, [100, 101, 102],
         [10**12, 10**12 + 7_001, 10**12 + 14_002], [700.0] * 3, ["measured"] * 3, [], [], "gpu"),
        ("telemetry_gpuseries_p20260302", 1, 11, t0 + 3 * s, t0 + 6 * s, 3, [103, 104, 105],
         None, [700.0] * 3, ["measured"] * 3, [], [], "gpu"),
        ("telemetry_gpuseries_p20260301", 1, 12, t0, t0 + 3 * s, 3, [100, 101, 102],
         None, None, ["integrated"] * 3, [], [[1, MIG]], "gpu+cpu+memory"),
        ("telemetry_gpuseries_p20260302", 1, 12, t0 + 3 * s, t0 + 6 * s, 3, [103, 104, 105],
         None, None, ["integrated"] * 3, [], [[1, MIG], [2, []]], "gpu+cpu+memory"),
        ("telemetry_gpuseries_p20260302", 2, 11, t1, t1 + 7 * s, 7, [200, 201, 202, 203, 204, 205, 206],
         [0, 5, 10, 15, 20, 25, 30], [700.0] * 7, ["measured"] * 7,
         [[0, P1], [2, P2], [4, P1], [5, []], [6, P1]], [], "gpu"),
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT start_us[1], end_us[3] FROM telemetry_gpuseries WHERE batch_id = 1 AND device_id = 11")
        assert cursor.fetchone() == (to_us(t0), to_us(t0 + 3 * s))
    # Every window, every column, exactly as it was.
    assert _view_rows() == sorted(seeded, key=lambda r: (r[2], r[4], r[3]))

    # The reverse restores the per-window table with the same rows.
    MigrationExecutor(connection).migrate([BEFORE])
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'telemetry_gpuwindow'")
        assert cursor.fetchone() == ("p",)
    assert _view_rows() == sorted(seeded, key=lambda r: (r[2], r[4], r[3]))
