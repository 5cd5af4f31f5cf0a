"""Celery tasks: thin, named, idempotent. The database row is the truth; a message is a nudge."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

log = logging.getLogger(__name__)

# Every task has explicit limits (config/settings.py). The hard limit is the one the claim
# timeout relies on: the prefork pool kills the task's process at it, so no worker attributes a
# batch for longer than ATTRIBUTION_TIME_LIMIT_S (+ ~1 s) after it claimed it.
_ATTRIBUTION_LIMITS = {
    "soft_time_limit": settings.ATTRIBUTION_SOFT_TIME_LIMIT_S,
    "time_limit": settings.ATTRIBUTION_TIME_LIMIT_S,
}
_TASK_LIMITS = {"soft_time_limit": settings.TASK_TIME_LIMIT_S * 0.9, "time_limit": settings.TASK_TIME_LIMIT_S}
_RECOMPUTE_LIMITS = {
    "soft_time_limit": settings.RECOMPUTE_TIME_LIMIT_S * 0.95,
    "time_limit": settings.RECOMPUTE_TIME_LIMIT_S,
}

# How many other pending batches one task claims beside its own: amortises the aggregate
# rollup over many batches under load, and costs nothing when the queue is short.
ATTRIBUTE_EXTRA_BATCHES = 24


@shared_task(
    name="ledger.attribute_batch",
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
    **_ATTRIBUTION_LIMITS,
)
def attribute_batch(self, batch_pk: int) -> dict:
    """Attribute ``batch_pk`` and whatever else is pending, round after round of at most
    1 + ATTRIBUTE_EXTRA_BATCHES claims, until a round finds less than that (the queue is empty)
    or half the soft time limit has passed; then, if work may be left, nudge again. At most one
    nudge waits in the broker (work_queue.batches_nudge), so this task drains the queue. The last
    round starts no earlier than ATTRIBUTION_NUDGE_REUSE_S after the task took the mark (it
    sleeps the rest when the queue empties sooner): stores that skipped their nudge meanwhile."""
    from accounting.services.attribution import batches_attribute
    from accounting.services.work_queue import batches_nudge, batches_release, nudge_taken

    nudge_taken()  # batches stored from now on send a nudge of their own
    # A store may have skipped its nudge up to ATTRIBUTION_NUDGE_REUSE_S after this task took the
    # mark (work_queue, "Coalesced nudges"): the task claims once more no earlier than that.
    last_claim_not_before = time.monotonic() + settings.ATTRIBUTION_NUDGE_REUSE_S
    deadline = time.monotonic() + settings.ATTRIBUTION_SOFT_TIME_LIMIT_S / 2
    totals = {"attributed": 0, "skipped": 0, "failed": 0, "rounds": 0}
    wanted = [batch_pk]
    now = timezone.now()  # the claim's claimed_at: this round's claims are the ones taken at it
    try:
        while True:
            extra = ATTRIBUTE_EXTRA_BATCHES + 1 - len(wanted)
            claim_started = time.monotonic()
            outcome = batches_attribute(batch_pks=wanted, now=now, extra=extra, interrupts=(SoftTimeLimitExceeded,))
            others = set(outcome.attributed) | set(outcome.failed)
            totals["attributed"] += len(outcome.attributed)
            totals["skipped"] += len(outcome.skipped)
            totals["failed"] += len(outcome.failed)
            totals["rounds"] += 1
            if len(others - set(wanted)) < extra:
                # The round found fewer pending batches than it could take: none is left, unless
                # a store skipped its nudge since the round's claim.
                if claim_started >= last_claim_not_before:
                    break
                time.sleep(max(0.0, last_claim_not_before - time.monotonic()))
                wanted, now = [], timezone.now()
                continue
            if time.monotonic() >= deadline:
                batches_nudge(batch_pks=[batch_pk])  # more may be pending: another task goes on
                break
            wanted, now = [], timezone.now()
    except SoftTimeLimitExceeded:
        # Out of time: give the claims back now (pending, for the sweeper) rather than leave them
        # to the claim timeout. Best effort: if this fails too, the hard limit and the timeout hold.
        try:
            released = batches_release(claimed_at=now)
        except Exception:
            log.exception("soft time limit: releasing the claims of batch_pk=%d failed", batch_pk)
        else:
            log.warning("soft time limit batch_pk=%d: released %d claims", batch_pk, released)
        raise
    return totals


@shared_task(name="ledger.sweep", acks_late=True, **_TASK_LIMITS)
def sweep_pending() -> int:
    """Re-nudge stored work whose message was lost (Redis down) or whose worker died."""
    from accounting.services.work_queue import batches_nudge, batches_sweep

    pks = batches_sweep(now=timezone.now())
    if pks:
        # One message: its task claims every pending (and stale) batch, round after round. Forced:
        # it may stand in for a nudge that was lost while its mark was still set.
        batches_nudge(batch_pks=pks, force=True)
        log.info("sweeper re-nudged attribution (oldest stale batch_pk=%d)", pks[0])
    return len(pks)


@shared_task(name="telemetry.maintain_partitions", acks_late=True, **_TASK_LIMITS)
def maintain_partitions() -> list[str]:
    """Create tomorrow's partitions ahead of time; drop raw partitions past retention, and the
    attribution records of the batches they held (those batches can no longer be re-attributed)."""
    import datetime as dt

    from accounting.services.attribution import batch_records_prune
    from telemetry.partitions import drop_expired_partitions, ensure_partitions

    today = timezone.now().date()
    ensure_partitions(days=[today, today + dt.timedelta(days=1)])
    dropped = drop_expired_partitions(today=today, retention_days=settings.TELEMETRY_RETENTION_DAYS)
    cutoff = dt.datetime.combine(today - dt.timedelta(days=settings.TELEMETRY_RETENTION_DAYS), dt.time(), dt.UTC)
    batch_records_prune(before=cutoff)
    return dropped


@shared_task(name="ledger.recompute_factor_changes", acks_late=True, **_RECOMPUTE_LIMITS)
def recompute_factor_changes() -> int:
    """Rebuild the ledger rows affected by pending factor corrections (claimed per change)."""
    from accounting.services.recompute import factor_changes_recompute

    return factor_changes_recompute(now=timezone.now())


@shared_task(
    name="accounting.intensity_fetch_latest",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    max_retries=3,
    **_TASK_LIMITS,
)
def intensity_fetch_latest() -> dict:
    """Hourly: the live provider's intensity per zone in use, with fallback rows marked."""
    from accounting.services.factors import intensity_fetch_latest as fetch

    return fetch(now=timezone.now())


# --- monthly reports (accounting/services/report_delivery.py) -------------------------------


@shared_task(name="reports.tick", acks_late=True, **_TASK_LIMITS)
def reports_tick() -> dict:
    """Beat, every REPORTS_TICK_S: plan the month's reports of each organisation whose send
    moment has passed and whose month is closed, re-nudge deliveries that wait (lost messages,
    retries due), re-check sent months for revisions. One ``reports.deliver`` per report."""
    from django.db import transaction

    from accounting.selectors.report_deliveries import report_deliveries_due
    from accounting.services.report_delivery import report_revisions_check_due, report_runs_due

    now = timezone.now()
    planned = report_runs_due(now=now)
    scopes = sorted(
        set(planned) | set(report_deliveries_due(now=now)), key=lambda s: (s[2], s[0], s[1] is None, s[1] or 0)
    )
    for org_id, team_id, month in scopes:
        transaction.on_commit(
            lambda o=org_id, t=team_id, m=month: report_deliver.delay(o, t, m.isoformat())  # type: ignore[misc]
        )
    revised = report_revisions_check_due(now=now)
    return {
        "planned": len(planned),
        "nudged": len(scopes),
        "revised": sum(len(r[2]) for r in revised),
    }


@shared_task(
    name="reports.deliver",
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
    **_TASK_LIMITS,
)
def report_deliver(self, org_id: int, team_id: int | None, month: str) -> dict:
    """Send one report (a team's, or with ``team_id`` None the organisation roll-up) to its
    recipients whose delivery row is due. Safe to run twice: rows are claimed. Transient SMTP
    failures come back as a retry of this task at the earliest row's backoff (the rows, not
    the task, count the attempts; beat's sweep stands in if the retry message is lost)."""
    import dataclasses
    import datetime as dt

    from accounting.services.report_delivery import report_scope_deliver

    outcome = report_scope_deliver(org_id=org_id, team_id=team_id, month=dt.date.fromisoformat(month))
    if outcome.retry_in_s is not None and self.request.retries < settings.REPORTS_MAX_ATTEMPTS:
        raise self.retry(countdown=outcome.retry_in_s, max_retries=settings.REPORTS_MAX_ATTEMPTS)
    return dataclasses.asdict(outcome)
