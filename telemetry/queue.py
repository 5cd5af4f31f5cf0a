"""The attribution work queue's state on the stored batches: what other apps may do with it.

A stored ``TelemetryBatch`` is the unit of attribution work, and its queue columns are
telemetry's: ``status`` (pending -> claimed -> done, or failed after ``MAX_ATTEMPTS``),
``claimed_at``, ``attempts``, ``error`` and ``attributed_at``. The accounting app, the queue's
consumer, claims, releases, reopens, locks and finishes batches only through these functions
and never names telemetry's tables itself, so the queue's SQL and its lock order live in one
place (the import contract in pyproject.toml and tests/domain/test_import_contract.py keep it so).

Policies stay with the caller and come in as instants: the claim timeout (``stale_before``: a
claim older than it belongs to no live worker, docs/reliability.md "Faults survived") and how
long a pending batch waits before the sweeper takes it up (``pending_before``).

Every writer of several batch rows locks them in id order (docs/reliability.md, "Lock order"):
``batches_update_in_lock_order`` is that order, and every write here but the single-row failure
record goes through it or locks the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Count, Max, Q, QuerySet

from telemetry.models import TelemetryBatch

# Attempts (successful or not) after which a batch whose attribution keeps failing is left
# ``failed`` for an operator instead of being retried.
MAX_ATTEMPTS = 5
# Longest error text kept on a failed batch (a repr of the exception; tracebacks go to the log).
ERROR_MAX_CHARS = 2000

_TABLE = TelemetryBatch._meta.db_table
_PENDING = TelemetryBatch.Status.PENDING.value
_CLAIMED = TelemetryBatch.Status.CLAIMED.value
_DONE = TelemetryBatch.Status.DONE.value
_FAILED = TelemetryBatch.Status.FAILED.value

# Host ids: a list, or a query selecting one column of host ids. A query becomes a subquery of
# the same statement (one round trip, the caller's tables never named here).
HostIds = QuerySet[Any] | Sequence[int]


def batches_claim(
    *, batch_pks: Iterable[int], now: dt.datetime, stale_before: dt.datetime, extra: int = 0
) -> list[int]:
    """Claim the given batches (and up to ``extra`` other claimable ones, oldest received first)
    with ``claimed_at = now``. Claimable: pending, or claimed before ``stale_before``. Rows another
    transaction holds are skipped (``SKIP LOCKED``), not waited for. Returns the claimed ids sorted."""
    # One statement: the batches asked for, then up to ``extra`` others (never one asked for:
    # those not locked by the first part are locked elsewhere or not claimable), each skipping
    # rows another transaction holds; then the claim of them all.
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "asked": "{" + ",".join(str(int(pk)) for pk in batch_pks) + "}",
                "extra": max(extra, 0),
                "pending": _PENDING,
                "claimed": _CLAIMED,
                "stale_before": stale_before,
                "now": now,
            },
        )
        return sorted(pk for (pk,) in cursor.fetchall())


_CLAIMABLE = "(status = %(pending)s OR (status = %(claimed)s AND claimed_at < %(stale_before)s))"
_CLAIM_SQL = f"""
WITH asked AS (
    SELECT id FROM {_TABLE} WHERE id = ANY(%(asked)s::bigint[]) AND {_CLAIMABLE} FOR UPDATE SKIP LOCKED
), more AS (
    SELECT id FROM {_TABLE} WHERE {_CLAIMABLE} AND NOT id = ANY(%(asked)s::bigint[])
    ORDER BY received_at LIMIT %(extra)s FOR UPDATE SKIP LOCKED
)
UPDATE {_TABLE} b SET status = %(claimed)s, claimed_at = %(now)s
FROM (SELECT id FROM asked UNION ALL SELECT id FROM more) wanted WHERE b.id = wanted.id
RETURNING b.id
"""


def batches_update_in_lock_order(*, where: str, assign: str, params: Sequence[Any]) -> list[int]:
    """``UPDATE`` the batch rows matching ``where`` (SQL over the batch table's columns, ``%s``
    placeholders for ``params`` in order: first those of ``where``, then those of ``assign``)
    with ``assign`` after locking them in id order: the one lock order of batch rows, which every
    writer of several batches follows (two writers locking overlapping sets in scan order can
    deadlock; docs/reliability.md, "Lock order"). Returns the ids updated.

    The lock re-evaluates ``where`` on a row another transaction changed meanwhile (READ
    COMMITTED), so only rows that still match are locked and updated."""
    sql = f"""
        WITH locked AS (SELECT id FROM {_TABLE} WHERE {where} ORDER BY id FOR NO KEY UPDATE)
        UPDATE {_TABLE} b SET {assign} FROM locked WHERE b.id = locked.id RETURNING b.id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return [pk for (pk,) in cursor.fetchall()]


def batches_release(*, claimed_at: dt.datetime) -> int:
    """Give back the claims taken at ``claimed_at``: those batches still under that claim are
    pending again. Returns how many."""
    with transaction.atomic():
        return len(
            batches_update_in_lock_order(
                where="status = %s AND claimed_at = %s",
                assign="status = %s, claimed_at = NULL",
                params=[_CLAIMED, claimed_at, _PENDING],
            )
        )


def batches_reopen(
    *,
    host_ids: HostIds,
    start: dt.datetime,
    end: dt.datetime | None,
    exclude_batch_pks: Sequence[int] = (),
) -> list[int]:
    """Put back to pending (claim cleared) the batches of these hosts that end after ``start``
    and, with ``end``, start before it, except ``exclude_batch_pks`` and those already pending.
    One statement. Returns the ids put back."""
    try:
        hosts_sql, hosts_params = _host_ids_sql(host_ids)
    except EmptyResultSet:  # a query that can select nothing
        return []
    return batches_update_in_lock_order(
        where=f"""host_id IN ({hosts_sql})
              AND last_end > %s AND status <> %s
              {"AND first_start < %s" if end is not None else ""}
              AND NOT (id = ANY(%s))""",
        assign="status = %s, claimed_at = NULL",
        params=[
            *hosts_params,
            start,
            _PENDING,
            *([end] if end is not None else []),
            list(exclude_batch_pks),
            _PENDING,
        ],
    )


def batches_reopen_unclaimed(*, batch_pks: Sequence[int]) -> list[int]:
    """Put these batches back to pending (claim cleared) unless a worker holds them now (a
    claimed batch is attributed again by its claim's end anyway). Returns the ids put back."""
    return batches_update_in_lock_order(
        where="id = ANY(%s) AND status <> %s",
        assign="status = %s, claimed_at = NULL",
        params=[list(batch_pks), _CLAIMED, _PENDING],
    )


def batches_mark_done(*, batch_pks: Sequence[int], claimed_at: dt.datetime | None) -> list[int]:
    """Mark done (``attributed_at`` the statement's clock) the batches still claimed, and with
    ``claimed_at`` only those still under that claim: one put back to pending, or claimed by
    another worker meanwhile, is not this caller's to finish. Returns the ids marked."""
    return batches_update_in_lock_order(
        where="id = ANY(%s) AND status = %s AND (%s::timestamptz IS NULL OR claimed_at = %s::timestamptz)",
        assign="status = %s, attributed_at = clock_timestamp()",
        params=[list(batch_pks), _CLAIMED, claimed_at, claimed_at, _DONE],
    )


def batches_pending(*, batch_pks: Sequence[int]) -> list[int]:
    """Which of these batches are pending now, in id order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {_TABLE} WHERE id = ANY(%s) AND status = %s ORDER BY id", [list(batch_pks), _PENDING]
        )
        return [pk for (pk,) in cursor.fetchall()]


def batches_lock(*, batch_pks: Sequence[int]) -> None:
    """Lock these batch rows (``FOR NO KEY UPDATE``) in id order until the caller's transaction
    ends: one attribution of a batch at a time (a second waits, then sees what the first committed)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_TABLE} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [list(batch_pks)])


def batches_get(*, batch_pks: Iterable[int], select_related: Sequence[str] = ()) -> list[TelemetryBatch]:
    """The batches, in id order, with the relations the caller reads (``select_related``) loaded
    in the same query."""
    return list(TelemetryBatch.objects.select_related(*select_related).filter(pk__in=list(batch_pks)).order_by("pk"))


def batches_record_attempts(*, attempts_by_pk: Mapping[int, int]) -> None:
    """An attribution of these batches succeeded (inside the caller's transaction): store each
    one's attempt count and clear its error."""
    if not attempts_by_pk:
        return
    # One statement for all (the rows are already locked by ``batches_lock``, in id order).
    pks = ",".join(str(int(pk)) for pk in attempts_by_pk)
    attempts = ",".join(str(int(n)) for n in attempts_by_pk.values())
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} t SET attempts = u.attempts, error = '' "
            "FROM unnest(%s::bigint[], %s::integer[]) AS u(id, attempts) WHERE t.id = u.id",
            ["{" + pks + "}", "{" + attempts + "}"],
        )


def batch_record_failure(*, batch_pk: int, attempts: int, error: str) -> str:
    """An attribution of this batch failed, its ``attempts``-th attempt: back to pending for a
    retry, or ``failed`` for good from ``MAX_ATTEMPTS`` on, with the error kept. Returns the status."""
    status = _FAILED if attempts >= MAX_ATTEMPTS else _PENDING
    TelemetryBatch.objects.filter(pk=batch_pk).update(status=status, attempts=attempts, error=error[:ERROR_MAX_CHARS])
    return status


def batches_sweep_candidates(*, pending_before: dt.datetime, stale_before: dt.datetime, limit: int = 1) -> list[int]:
    """Batches pending since before ``pending_before`` or claimed before ``stale_before``,
    oldest received first, at most ``limit``."""
    return list(
        TelemetryBatch.objects.filter(
            Q(status=_PENDING, received_at__lt=pending_before) | Q(status=_CLAIMED, claimed_at__lt=stale_before)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


def batch_pks_overlapping(
    *, host_ids: HostIds | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> list[int]:
    """Ids of the batches (of these hosts; None: every host) whose windows end after ``since``
    and start before ``until`` (None: unbounded), in id order."""
    return list(_batches(host_ids=host_ids, since=since, until=until).order_by("pk").values_list("pk", flat=True))


@dataclass(frozen=True)
class QueueCounts:
    """Stored batches by queue state, and when the newest was received (None: none yet)."""

    pending: int
    claimed: int
    done: int
    failed: int
    last_received_at: dt.datetime | None

    @property
    def total(self) -> int:
        return self.pending + self.claimed + self.done + self.failed

    @property
    def open(self) -> int:
        """Not attributed yet, and not given up on: waiting or being attributed."""
        return self.pending + self.claimed


def batches_count(
    *, host_ids: HostIds | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> QueueCounts:
    """Counts by state of the batches (of these hosts; None: every host) overlapping
    [``since``, ``until``) (None: unbounded). One query."""
    row = _batches(host_ids=host_ids, since=since, until=until).aggregate(
        last_received=Max("received_at"),
        pending=Count("pk", filter=Q(status=_PENDING)),
        claimed=Count("pk", filter=Q(status=_CLAIMED)),
        done=Count("pk", filter=Q(status=_DONE)),
        failed=Count("pk", filter=Q(status=_FAILED)),
    )
    return QueueCounts(
        pending=row["pending"],
        claimed=row["claimed"],
        done=row["done"],
        failed=row["failed"],
        last_received_at=row["last_received"],
    )


def batch_last_error(*, host_ids: HostIds) -> str | None:
    """The error of the most recently received failed batch of these hosts (None: none failed)."""
    return (
        _batches(host_ids=host_ids, since=None, until=None)
        .filter(status=_FAILED)
        .order_by("-received_at")
        .values_list("error", flat=True)
        .first()
    )


def _batches(*, host_ids: HostIds | None, since: dt.datetime | None, until: dt.datetime | None) -> QuerySet:
    batches = TelemetryBatch.objects.all()
    if host_ids is not None:
        batches = batches.filter(host_id__in=host_ids)
    if since is not None:
        batches = batches.filter(last_end__gt=since)
    if until is not None:
        batches = batches.filter(first_start__lt=until)
    return batches


def _host_ids_sql(host_ids: HostIds) -> tuple[str, Sequence[Any]]:
    """``host_ids`` as SQL selecting them (raises EmptyResultSet for a query that selects nothing)."""
    if isinstance(host_ids, QuerySet):
        return host_ids.query.sql_with_params()
    return "SELECT unnest(%s::bigint[])", [list(host_ids)]
