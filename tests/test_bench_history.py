"""benchmarks.history.seed_history at a tiny scale: exact rows per table, and a month's ledger that
conserves each batch's GPU energy like attribution's would."""

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
        "accounting_ledgerentry": 1152 * 25,
        "accounting_jobhour": 8 * 24,
        "accounting_jobfootprint": 8,
        "accounting_devicehour": 16 * 48,
        "accounting_teamhour": 4 * 48,  # teams 0, 1, 2 and fleet overhead, every hour
        "accounting_teamday": 4 * 3,  # 8 Mar 12:00 .. 10 Mar 12:00 touches 3 dates
        "telemetry_gpuwindow": 16 * 360,  # the last hour only
        "telemetry_hostwindow": 2 * 360,
    }
    assert set(seed.seconds) >= {"hosts", "batches", "ledger", "jobhour", "gpuwindow", "analyze"}
    sizes = table_sizes(connection)
    assert sizes["accounting_ledgerentry"]["rows_estimate"] == 1152 * 25
    assert sizes["telemetry_gpuwindow"]["bytes"] > 0


def test_seeded_ledger_conserves_each_batch_and_running_jobs_are_the_last_days():
    seed_history(connection, days=2, gpus=16, now=NOW, batch_windows=30, raw_hours=1)
    with connection.cursor() as cursor:
        # GPU energy of each batch's ledger lines = the batch's measured GPU energy (7 GPUs at
        # 520 W, 1 at 72 W, 300 s): 1,113,600 J, for all 1152 batches.
        cursor.execute(
            "SELECT b.gpu_energy_j, SUM(e.energy_j) FROM telemetry_telemetrybatch b "
            "JOIN accounting_ledgerentry e ON e.batch_id = b.id AND e.component IN ('gpu_active', 'gpu_idle') "
            "GROUP BY b.id, b.gpu_energy_j"
        )
        sums = cursor.fetchall()
        cursor.execute("SELECT status, count(*), count(ended_at) FROM accounting_job GROUP BY status ORDER BY status")
        statuses = cursor.fetchall()
        cursor.execute('SELECT count(*) FROM accounting_joballocation WHERE "end" IS NULL')
        open_allocations = cursor.fetchone()[0]
        # One batch's lines, as attribution wrote them for the ingest benchmark's ideal shape.
        cursor.execute(
            "SELECT account, component, device_id IS NULL, count(*) FROM accounting_ledgerentry "
            "WHERE batch_id = (SELECT min(batch_id) FROM accounting_ledgerentry) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        one_batch = cursor.fetchall()
        cursor.execute("SELECT DISTINCT host_id, batch_id IS NOT NULL FROM telemetry_gpuwindow")
        window_hosts = cursor.fetchall()
    assert len(sums) == 1152
    assert {round(gpu_j, 6) for gpu_j, _ in sums} == {1_113_600.0}
    assert all(abs(ledger_j - gpu_j) < 1e-6 for gpu_j, ledger_j in sums)
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
