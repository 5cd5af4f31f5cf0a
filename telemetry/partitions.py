"""Daily range partitions of the raw tables (GPU series on ``first_start_at``, host windows on
``start_at``): created on demand, dropped after retention. A GPU series never spans two days (ingest
splits it at UTC midnight), so dropping a day's partition drops exactly that day's windows."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re

from django.db import connection, transaction

log = logging.getLogger(__name__)

PARENTS = ("telemetry_gpuseries", "telemetry_hostwindow")
_NAME = re.compile(r"^(telemetry_(?:gpuseries|hostwindow))_p(\d{8})$")
# Partitions known to exist in this process (creation is idempotent; this only saves a query).
_known: set[str] = set()


def partition_name(parent: str, day: dt.date) -> str:
    return f"{parent}_p{day:%Y%m%d}"


def ensure_partitions(*, days: set[dt.date] | list[dt.date]) -> None:
    with connection.cursor() as cursor:
        for day in sorted(set(days)):
            for parent in PARENTS:
                name = partition_name(parent, day)
                if name in _known:
                    continue
                start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
                end = start + dt.timedelta(days=1)
                # Concurrent creators race; the advisory lock makes creation serial per name.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {parent} "  # name is built from a date, not input
                    "FOR VALUES FROM (%s) TO (%s)",
                    [start.isoformat(), end.isoformat()],
                )
                # Remember only once committed: a rolled-back transaction takes the partition with it.
                transaction.on_commit(functools.partial(_known.add, name))


def list_partitions() -> list[tuple[str, dt.date]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)",
            [list(PARENTS)],
        )
        out = []
        for (relname,) in cursor.fetchall():
            match = _NAME.match(relname)
            if match:
                out.append((relname, dt.datetime.strptime(match.group(2), "%Y%m%d").date()))
        return sorted(out, key=lambda item: (item[1], item[0]))


def drop_expired_partitions(*, today: dt.date, retention_days: int) -> list[str]:
    """Drop raw partitions whose whole day is older than the retention period.

    Ledger rows and aggregates do not reference raw windows, so they are kept."""
    cutoff = today - dt.timedelta(days=retention_days)
    dropped = []
    with connection.cursor() as cursor:
        for name, day in list_partitions():
            if day < cutoff:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                _known.discard(name)
                dropped.append(name)
    if dropped:
        log.info("retention dropped=%d partitions cutoff=%s", len(dropped), cutoff)
    return dropped
