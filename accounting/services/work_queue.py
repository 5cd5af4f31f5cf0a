"""The attribution work queue: which stored batches wait to be attributed, who holds them.

Work unit: a ``TelemetryBatch``. States: pending -> claimed -> done. A claim older than
``ATTRIBUTION_CLAIM_TIMEOUT_S`` is taken to be abandoned (worker killed) and may be claimed
again; the sweeper re-nudges pending work. The claim timeout exceeds the attribution task's
hard time limit (checked by the settings): the prefork pool kills a task at that limit, so a
claim that old belongs to no live worker (docs/reliability.md, "Faults survived"). The Celery
message is only a nudge, sent by the task's registered name. Every writer of batch rows locks them in id order
(docs/reliability.md, "Lock order").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from accounting.models import Device
from telemetry.models import TelemetryBatch

log = logging.getLogger(__name__)

ATTRIBUTE_TASK = "ledger.attribute_batch"  # workers/tasks.py registers it under this name


def batches_claim(*, batch_pks: Iterable[int], now: dt.datetime, extra: int = 0) -> list[int]:
    """Claim the given batches (and up to ``extra`` other pending ones) for attribution."""
    stale_before = now - dt.timedelta(seconds=settings.ATTRIBUTION_CLAIM_TIMEOUT_S)
    claimable = Q(status=TelemetryBatch.Status.PENDING) | Q(
        status=TelemetryBatch.Status.CLAIMED, claimed_at__lt=stale_before
    )
    with transaction.atomic():
        wanted = list(
            TelemetryBatch.objects.select_for_update(skip_locked=True)
            .filter(claimable, pk__in=list(batch_pks))
            .values_list("pk", flat=True)
        )
        if extra > 0:
            wanted += list(
                TelemetryBatch.objects.select_for_update(skip_locked=True)
                .filter(claimable)
                .exclude(pk__in=wanted)
                .order_by("received_at")
                .values_list("pk", flat=True)[:extra]
            )
        if wanted:
            TelemetryBatch.objects.filter(pk__in=wanted).update(status=TelemetryBatch.Status.CLAIMED, claimed_at=now)
    return sorted(wanted)


def batches_release(*, claimed_at: dt.datetime) -> int:
    """Give back the claims taken at ``claimed_at`` (a task out of time gives up): they are
    pending again, so the sweeper re-nudges them without waiting for the claim timeout. Only
    batches still under that claim; rows locked in id order, as every batch-row writer."""
    batch_table = TelemetryBatch._meta.db_table
    sql = f"""
        WITH locked AS (
            SELECT id FROM {batch_table} WHERE status = %(claimed)s AND claimed_at = %(claimed_at)s
            ORDER BY id FOR NO KEY UPDATE
        )
        UPDATE {batch_table} b SET status = %(pending)s, claimed_at = NULL
        FROM locked WHERE b.id = locked.id AND b.status = %(claimed)s AND b.claimed_at = %(claimed_at)s
    """
    params: dict[str, Any] = {"claimed": TelemetryBatch.Status.CLAIMED.value, "pending": TelemetryBatch.Status.PENDING.value,
              "claimed_at": claimed_at}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def ledger_mark_dirty(*, device_ids: list[int], start: dt.datetime, end: dt.datetime | None,
                      exclude_batch_pks: list[int] | None = None) -> int:
    """Allocations changed for these devices over [start, end): re-attribute the batches there
    (except ``exclude_batch_pks``: batches being attributed by the caller right now).

    Called by the jobs service on register/update/end. The batches go back to pending and a
    nudge is sent on commit; attribution rebuilds their entries, so nothing is counted twice."""
    if not device_ids:
        return 0
    # One statement (no separate host and batch reads): batches already pending are left as
    # they are; the ids of those put back to pending come back for the nudge.
    batch_table = TelemetryBatch._meta.db_table
    # The rows are locked in id order first (as the rollup's "done" update locks them): two
    # writers that lock overlapping sets of batches in scan order can deadlock.
    sql = f"""
        WITH locked AS (
            SELECT id FROM {batch_table}
            WHERE host_id IN (SELECT DISTINCT host_id FROM {Device._meta.db_table} WHERE id = ANY(%(devices)s))
              AND last_end > %(start)s AND status <> %(pending)s
              {"AND first_start < %(end)s" if end is not None else ""}
              AND NOT (id = ANY(%(exclude)s))
            ORDER BY id
            FOR NO KEY UPDATE
        )
        UPDATE {batch_table} b SET status = %(pending)s, claimed_at = NULL
        FROM locked WHERE b.id = locked.id AND b.status <> %(pending)s
        RETURNING b.id
    """
    params: dict[str, Any] = {
        "pending": TelemetryBatch.Status.PENDING.value, "devices": list(device_ids), "start": start, "end": end,
        "exclude": list(exclude_batch_pks or []),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pks = [pk for (pk,) in cursor.fetchall()]
    if not pks:
        return 0
    transaction.on_commit(lambda: batches_nudge(batch_pks=pks))
    return len(pks)


def batches_nudge(*, batch_pks: list[int]) -> None:
    """Send the Celery nudge for stored batches. The message is only a nudge: if the broker is
    down, stop trying (the sweeper finds pending batches); never fail the caller's request."""
    if getattr(settings, "CARBONLEDGER_SKIP_NUDGE", False):
        return
    for pk in batch_pks:
        try:
            # By the task's registered name: the accounting app never imports the workers.
            current_app.send_task(ATTRIBUTE_TASK, args=[pk], retry=False)
        except Exception as exc:  # broker down: the sweeper will find the pending batches
            log.warning("nudge failed batch_pk=%d error=%s (sweeper will pick it up)", pk, exc)
            return


def batches_sweep(*, now: dt.datetime, limit: int = 500) -> list[int]:
    """Find stored work whose nudge was lost (or whose worker died) and return it for re-nudging."""
    stale_before = now - dt.timedelta(seconds=settings.ATTRIBUTION_CLAIM_TIMEOUT_S)
    # Pending batches older than a few seconds: a live nudge would normally have taken them.
    pending_before = now - dt.timedelta(seconds=5)
    return list(
        TelemetryBatch.objects.filter(
            Q(status=TelemetryBatch.Status.PENDING, received_at__lt=pending_before)
            | Q(status=TelemetryBatch.Status.CLAIMED, claimed_at__lt=stale_before)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
