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

# In the raw tables' lock order (docs/reliability.md, "Lock order"): the host windows' table,
# then the GPU series'. Creating or dropping a partition locks its parent exclusively, so it must
# take the parents in the order ingest writes them (the batch INSERT carries the host windows,
# the COPY of GPU series follows) and attribution reads them; the other order deadlocked a POST
# with a concurrent partition creation.
PARENTS = ("telemetry_hostwindow", "telemetry_gpuseries")
_NAME = re.compile(r"^(telemetry_(?:gpuseries|hostwindow))_p(\d{8})$")
# Partitions known to exist in this process (creation is idempotent; this only saves a query).
_known: set[str] = set()


def partition_name(parent: str, day: dt.date) -> str:
    return f"{parent}_p{day:%Y%m%d}"


def ensure_partitions(*, days: set[dt.date] | list[dt.date]) -> None:
    with connection.cursor() as cursor:
        # Parent by parent (the lock order), each parent's days in order.
        for parent in PARENTS:
            for day in sorted(set(days)):
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


def _parent_rank(name: str) -> int:
    """A partition's parent's place in ``PARENTS`` (the lock order)."""
    return next(rank for rank, parent in enumerate(PARENTS) if name.startswith(parent + "_p"))


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
        for name, day in sorted(list_partitions(), key=lambda item: (_parent_rank(item[0]), item[1])):
            if day < cutoff:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                _known.discard(name)
                dropped.append(name)
    if dropped:
        log.info("retention dropped=%d partitions cutoff=%s", len(dropped), cutoff)
    return dropped
