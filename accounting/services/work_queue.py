"""The attribution work queue: which stored batches wait to be attributed, who holds them.

Work unit: a ``TelemetryBatch``. States: pending -> claimed -> done. The queue's state lives on
telemetry's batch rows and is read and written through ``telemetry.queue`` (its SQL and the one
lock order of batch rows are there); this module holds accounting's side: the policies (claim
timeout, sweep delay), marking batches dirty when allocations change, and the nudges.

A claim older than ``ATTRIBUTION_CLAIM_TIMEOUT_S`` is taken to be abandoned (worker killed) and
may be claimed again; the sweeper re-nudges pending work. The claim timeout exceeds the
attribution task's hard time limit (checked by the settings): the prefork pool kills a task at
that limit, so a claim that old belongs to no live worker (docs/reliability.md, "Faults
survived"). The Celery message is only a nudge, sent by the task's registered name. Every writer
of batch rows locks them in id order (docs/reliability.md, "Lock order").
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

from accounting.models import Device
from telemetry import queue

log = logging.getLogger(__name__)

ATTRIBUTE_TASK = "ledger.attribute_batch"  # workers/tasks.py registers it under this name


def batches_claim(*, batch_pks: Iterable[int], now: dt.datetime, extra: int = 0) -> list[int]:
    """Claim the given batches (and up to ``extra`` other pending ones) for attribution."""
    return queue.batches_claim(batch_pks=batch_pks, now=now, stale_before=_stale_before(now), extra=extra)


def batches_release(*, claimed_at: dt.datetime) -> int:
    """Give back the claims taken at ``claimed_at`` (a task out of time gives up): they are
    pending again, so the sweeper re-nudges them without waiting for the claim timeout. Only
    batches still under that claim."""
    return queue.batches_release(claimed_at=claimed_at)


def ledger_mark_dirty(
    *, device_ids: list[int], start: dt.datetime, end: dt.datetime | None, exclude_batch_pks: list[int] | None = None
) -> int:
    """Allocations changed for these devices over [start, end): re-attribute the batches there
    (except ``exclude_batch_pks``: batches being attributed by the caller right now).

    Called by the jobs service on register/update/end. The batches go back to pending and a
    nudge is sent on commit; attribution rebuilds their entries, so nothing is counted twice."""
    if not device_ids:
        return 0
    # One statement (no separate host and batch reads: the devices' hosts are its subquery);
    # batches already pending are left as they are; the ids of those put back to pending come
    # back for the nudge.
    pks = queue.batches_reopen(
        host_ids=Device.objects.filter(pk__in=list(device_ids)).values("host_id").distinct(),
        start=start,
        end=end,
        exclude_batch_pks=list(exclude_batch_pks or []),
    )
    if not pks:
        return 0
    transaction.on_commit(lambda: batches_nudge(batch_pks=pks))
    return len(pks)


# At most one nudge waits in the broker at a time. The task a nudge starts takes the mark off
# first, then claims pending batches until none is left (workers/tasks.py), so a nudge per stored
# batch only lengthened the queue: the soak test (benchmarks/soak.py) at 30 % of capacity left
# 6,000 waiting messages after 10 minutes, each one a task that claimed what its predecessors had
# already done. The mark lives in the broker's own Redis, beside the message it stands for. It
# expires: a message lost while its mark is set (a worker killed holding it prefetched) delays
# new stores' nudges by NUDGE_MARK_TTL_S at most, and the sweeper's forced nudge finds what is
# pending meanwhile. A mark that expires while its message still waits costs one extra message.
NUDGE_MARK_KEY = "carbonledger:attribution-nudge-queued"
NUDGE_MARK_TTL_S = 10
_mark_clients: dict[str, Any] = {}

# Coalesced nudges. At the agent's default (a small POST per host every 10 s) the Redis round
# trip of the mark was a tenth of a POST's web CPU, and nearly always found the mark set. So a
# process that finds the mark set (or sets it) at time t (taken *before* asking) skips the
# nudges of the stores it commits until t + ATTRIBUTION_NUDGE_REUSE_S (never past the mark's
# remaining lifetime, read in the same round trip). Why no batch waits for the sweeper because
# of it: a skipped store committed before t + R, and the mark existed at t, so the task that took
# the mark off (nudge_taken) did so after t; that task claims once more at least R after it took
# the mark (workers/tasks.py), i.e. after the skipped store committed, and sees it. A mark that
# no task takes (its message lost) is what made stores wait for the sweeper before, too.
_mark_seen_until_s: dict[str, float] = {}  # per broker URL: time.monotonic() until which to skip


def _broker_url() -> str:
    return current_app.conf.broker_url or settings.CELERY_BROKER_URL


def _mark_client() -> Any:
    """A Redis client on the broker (one per URL and process), with the broker's short timeouts."""
    import redis

    url = _broker_url()
    client = _mark_clients.get(url)
    if client is None:
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        client = _mark_clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=options["socket_connect_timeout"], socket_timeout=options["socket_timeout"]
        )
    return client


def batches_nudge(*, batch_pks: list[int], force: bool = False) -> None:
    """Nudge the attribution of stored batches, unless a nudge is already waiting in the broker
    (its task will claim these too). ``force``: send one regardless (the sweeper: its message
    may replace one that was lost).

    Skipped without asking Redis within ATTRIBUTION_NUDGE_REUSE_S of seeing the mark set
    ("Coalesced nudges" above). Only a nudge: if the broker is down, give up at once (the
    sweeper finds pending batches); never fail the caller's request."""
    if getattr(settings, "CARBONLEDGER_SKIP_NUDGE", False) or not batch_pks:
        return
    pk = batch_pks[0]
    url, asked_at_s = _broker_url(), time.monotonic()
    if not force and asked_at_s < _mark_seen_until_s.get(url, 0.0):
        return  # this process saw the mark set less than ATTRIBUTION_NUDGE_REUSE_S ago
    try:
        with _mark_client().pipeline(transaction=False) as pipe:
            pipe.set(NUDGE_MARK_KEY, pk, nx=not force, ex=NUDGE_MARK_TTL_S)
            pipe.pttl(NUDGE_MARK_KEY)
            marked, mark_left_ms = pipe.execute()
    except Exception as exc:  # the broker's Redis is down or hung: the sweeper finds the batches
        log.warning("nudge failed batch_pk=%d error=%s (sweeper will pick it up)", pk, exc)
        return
    if mark_left_ms > 0:  # the mark exists (-2: taken off meanwhile; -1 cannot happen: it has a TTL)
        _mark_seen_until_s[url] = asked_at_s + min(settings.ATTRIBUTION_NUDGE_REUSE_S, mark_left_ms / 1000)
    if not marked:
        return  # a nudge is queued and not taken yet
    try:
        # By the task's registered name: the accounting app never imports the workers. The time
        # limits are the worker's own (its settings): where this process has the task registered,
        # Celery would otherwise stamp this process's limits into the message, and the worker
        # obeys the message's (a web or test process with the default 60 s hard limit made a
        # worker configured for 4 s wait 60 s on a stuck attribution).
        current_app.send_task(ATTRIBUTE_TASK, args=[pk], retry=False, time_limit=None, soft_time_limit=None)
    except Exception as exc:
        log.warning("nudge failed batch_pk=%d error=%s (sweeper will pick it up)", pk, exc)
        _mark_seen_until_s.pop(url, None)
        nudge_taken()


def nudge_taken() -> None:
    """Called by the attribution task before it claims: a batch stored from now on is not
    covered by this task's claims, so the next store sends a nudge again."""
    _mark_seen_until_s.pop(_broker_url(), None)
    try:
        _mark_client().delete(NUDGE_MARK_KEY)
    except Exception as exc:  # the mark expires by itself
        log.warning("could not clear the nudge mark: %s", exc)


def batches_sweep(*, now: dt.datetime, limit: int = 1) -> list[int]:
    """Find stored work whose nudge was lost (or whose worker died) and return it for re-nudging,
    oldest first. One is enough (the default): the task it nudges claims every pending and stale
    batch, round after round, so fetching more ids would only cost the query."""
    # Pending batches older than a few seconds: a live nudge would normally have taken them.
    pending_before = now - dt.timedelta(seconds=5)
    return queue.batches_sweep_candidates(pending_before=pending_before, stale_before=_stale_before(now), limit=limit)


def _stale_before(now: dt.datetime) -> dt.datetime:
    """Claims taken before this instant are abandoned (``ATTRIBUTION_CLAIM_TIMEOUT_S``)."""
    return now - dt.timedelta(seconds=settings.ATTRIBUTION_CLAIM_TIMEOUT_S)
