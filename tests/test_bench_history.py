"""benchmarks.history.seed_history at a tiny scale: exact rows per table, and a month's ledger that
conserves each host-hour's GPU energy like attribution's would."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from benchmarks.history import LEDGER_ROWS_PER_HOST_BATCH, seed_history, table_sizes

pytestmark = pytest.mark.django_db(transaction=False)

NOW = dt.datetime(2026, 3, 10, 12, 34, 56, tzinfo=dt.UTC)


def test_seed_history_writes_exact_rows_per_table():
    seed = seed_history(connection, days=2, gpus=16, now=NOW, batch_windows=30, raw_hours=1)

    assert seed.start == dt.datetime(2026, 3, 8, 12, tzinfo=dt.UTC)
    assert seed.end == dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    assert LEDGER_ROWS_PER_HOST_BATCH == 25  # 8 GPUs x 2 + (2 jobs + fleet) x (host CPU, DRAM, facility)
    assert seed.rows == {
        "accounting_host": 2,
        "accounting_device": 16,
        "accounting_job": 8,  # 2 hosts x 2 days x 2 jobs
        "accounting_joballocation": 28,  # 2 hosts x 2 days x 7 held GPUs
        "telemetry_telemetrybatch": 1152,  # 2 hosts x 48 h x 12 batches of 5 min
        "accounting_ledgerentry": 2 * 48 * 25,  # per host and hour, however many batches
        "accounting_jobhour": 8 * 24,
        "accounting_jobfootprint": 8,
        "accounting_devicehour": 16 * 48,
        "accounting_teamhour": 4 * 48,  # teams 0, 1, 2 and fleet overhead, every hour
        "accounting_teamday": 4 * 3,  # 8 Mar 12:00 .. 10 Mar 12:00 touches 3 dates
        "accounting_batchattribution": 2 * 12,  # the batches whose raw windows are kept (the last hour)
        "telemetry_gpuseries": 16 * 12,  # one row per batch and GPU: the last hour's 360 windows each
        "telemetry_hostwindow": 2 * 360,
    }
    assert set(seed.seconds) >= {"hosts", "batches", "ledger", "records", "jobhour", "gpuseries", "analyze"}
    sizes = table_sizes(connection)
    assert sizes["accounting_ledgerentry"]["rows_estimate"] == 2 * 48 * 25
    assert sizes["telemetry_gpuseries"]["bytes"] > 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_gpuwindow")  # the per-window view over the series
        assert cursor.fetchone()[0] == 16 * 360


def test_seeded_ledger_conserves_each_batch_and_running_jobs_are_the_last_days():
    seed_history(connection, days=2, gpus=16, now=NOW, batch_windows=30, raw_hours=1)
    with connection.cursor() as cursor:
        # GPU energy of each host-hour's ledger entries = its batches' measured GPU energy (7 GPUs at
        # 520 W, 1 at 72 W, 12 batches of 300 s): 12 x 1,113,600 J, for all 96 host-hours.
        cursor.execute(
            "SELECT b.gpu_j, e.gpu_j FROM (SELECT host_id, date_trunc('hour', first_start) AS hour, "
            "SUM(gpu_energy_j) AS gpu_j FROM telemetry_telemetrybatch GROUP BY 1, 2) b "
            "JOIN (SELECT host_id, hour, SUM(energy_j)::float8 AS gpu_j FROM accounting_ledgerentry "
            "WHERE component IN ('gpu_active', 'gpu_idle') GROUP BY 1, 2) e ON e.host_id = b.host_id AND e.hour = b.hour"
        )
        sums = cursor.fetchall()
        # Each kept batch's record holds its own lines: GPU energy 1,113,600 J.
        cursor.execute(
            "SELECT SUM(u.e) FROM accounting_batchattribution r "
            "CROSS JOIN LATERAL unnest(r.components, r.energy_j) AS u(c, e) "
            "WHERE u.c IN ('gpu_active', 'gpu_idle') GROUP BY r.batch_id"
        )
        record_sums = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT status, count(*), count(ended_at) FROM accounting_job GROUP BY status ORDER BY status")
        statuses = cursor.fetchall()
        cursor.execute('SELECT count(*) FROM accounting_joballocation WHERE "end" IS NULL')
        open_allocations = cursor.fetchone()[0]
        # One host-hour's entries, as attribution writes them for the ingest benchmark's ideal shape.
        cursor.execute(
            "SELECT account, component, device_id IS NULL, count(*) FROM accounting_ledgerentry "
            "WHERE (host_id, hour) = (SELECT host_id, min(hour) FROM accounting_ledgerentry GROUP BY host_id "
            "ORDER BY host_id LIMIT 1) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        one_batch = cursor.fetchall()
        cursor.execute("SELECT DISTINCT host_id, batch_id IS NOT NULL FROM telemetry_gpuseries")
        window_hosts = cursor.fetchall()
    assert len(sums) == 96
    assert {round(gpu_j, 6) for gpu_j, _ in sums} == {12 * 1_113_600.0}
    assert all(abs(ledger_j - gpu_j) < 1e-6 for gpu_j, ledger_j in sums)
    assert len(record_sums) == 24 and {round(e, 6) for e in record_sums} == {1_113_600.0}
    assert statuses == [("completed", 4, 4), ("running", 4, 0)]
    assert open_allocations == 14
    assert len(window_hosts) == 2
    assert one_batch == [
        ("fleet_overhead", "facility", True, 1),
        ("fleet_overhead", "gpu_active", False, 1),
        ("fleet_overhead", "gpu_idle", False, 1),
        ("fleet_overhead", "host_cpu", True, 1),
        ("fleet_overhead", "host_dram", True, 1),
        ("job", "facility", True, 2),
        ("job", "gpu_active", False, 7),
        ("job", "gpu_idle", False, 7),
        ("job", "host_cpu", True, 2),
        ("job", "host_dram", True, 2),
    ]


def test_seed_history_refuses_a_fleet_not_in_whole_hosts():
    with pytest.raises(ValueError, match="multiple of 8"):
        seed_history(connection, days=1, gpus=12, now=NOW)
