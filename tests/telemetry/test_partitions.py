"""Raw windows live in daily partitions; retention drops whole days, the ledger stays."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry.partitions import drop_expired_partitions, ensure_partitions, list_partitions

pytestmark = pytest.mark.django_db


def test_partitions_are_created_once_and_expired_days_dropped():
    days = [dt.date(2026, 9, 1), dt.date(2026, 9, 2), dt.date(2026, 11, 20)]
    ensure_partitions(days=days)
    ensure_partitions(days=days)  # idempotent
    names = [name for name, _ in list_partitions()]
    for day in days:
        assert f"telemetry_gpuseries_p{day:%Y%m%d}" in names
        assert f"telemetry_hostwindow_p{day:%Y%m%d}" in names
    dropped = drop_expired_partitions(today=dt.date(2026, 11, 26), retention_days=35)
    # In the raw tables' lock order: every host-window partition before any GPU-series one.
    assert dropped == [
        "telemetry_hostwindow_p20260901",
        "telemetry_hostwindow_p20260902",
        "telemetry_gpuseries_p20260901",
        "telemetry_gpuseries_p20260902",
    ]
    remaining = {day for _, day in list_partitions()}
    assert dt.date(2026, 11, 20) in remaining and dt.date(2026, 9, 1) not in remaining


def test_partitions_are_created_parent_by_parent_in_the_lock_order():
    """docs/reliability.md "Lock order": creating a partition locks its parent exclusively; ingest
    writes host windows before GPU series and attribution reads them in that order, so creation
    takes the parents in that order too (the reverse deadlocked a POST against a creation)."""
    with CaptureQueriesContext(connection) as ctx:
        ensure_partitions(days=[dt.date(2026, 8, 2), dt.date(2026, 8, 1)])
    created = [q["sql"].split()[5] for q in ctx.captured_queries if q["sql"].startswith("CREATE TABLE")]
    assert created == [
        "telemetry_hostwindow_p20260801",
        "telemetry_hostwindow_p20260802",
        "telemetry_gpuseries_p20260801",
        "telemetry_gpuseries_p20260802",
    ]


def test_a_row_lands_in_its_days_partition():
    ensure_partitions(days=[dt.date(2026, 11, 25)])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_hostwindow (batch_id, host_id, seq, start_at, end_at, cpu_energy_j, dram_energy_j,"
            " cpu_util_pct, quality) VALUES (1, 1, 1, '2026-11-25T23:59:55Z', '2026-11-26T00:00:05Z', 1, 1, 1,"
            " 'measured')"
        )
        cursor.execute("SELECT tableoid::regclass::text FROM telemetry_hostwindow")
        assert cursor.fetchone()[0] == "telemetry_hostwindow_p20261125"
