"""Celery tasks: thin, named, idempotent. The database row is the truth; a message is a nudge."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

log = logging.getLogger(__name__)

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
)
def attribute_batch(self, batch_pk: int) -> dict:
    from accounting.services.attribution import batches_attribute

    outcome = batches_attribute(batch_pks=[batch_pk], now=timezone.now(), extra=ATTRIBUTE_EXTRA_BATCHES)
    return {"attributed": len(outcome.attributed), "skipped": len(outcome.skipped), "failed": len(outcome.failed)}


@shared_task(name="ledger.sweep", acks_late=True)
def sweep_pending() -> int:
    """Re-nudge stored work whose message was lost (Redis down) or whose worker died."""
    from accounting.services.work_queue import batches_sweep

    pks = batches_sweep(now=timezone.now())
    for pk in pks:
        attribute_batch.apply_async(args=[pk])
    if pks:
        log.info("sweeper re-queued=%d batches", len(pks))
    return len(pks)


@shared_task(name="telemetry.maintain_partitions", acks_late=True)
def maintain_partitions() -> list[str]:
    """Create tomorrow's partitions ahead of time; drop raw partitions past retention."""
    import datetime as dt

    from telemetry.partitions import drop_expired_partitions, ensure_partitions

    today = timezone.now().date()
    ensure_partitions(days=[today, today + dt.timedelta(days=1)])
    return drop_expired_partitions(today=today, retention_days=settings.TELEMETRY_RETENTION_DAYS)


@shared_task(name="ledger.recompute_factor_changes", acks_late=True)
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
)
def intensity_fetch_latest() -> dict:
    """Hourly: the live provider's intensity per zone in use, with fallback rows marked."""
    from accounting.services.factors import intensity_fetch_latest as fetch

    return fetch(now=timezone.now())
