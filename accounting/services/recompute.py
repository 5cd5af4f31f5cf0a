"""Recompute the ledger after a factor correction: idempotent, resumable, audited.

A FactorChange names what changed (zone, hourly intensity, PUE, site, hardware) and the
period it affects. Recompute snapshots the affected jobs' totals into FootprintRevision (the
old numbers stay visible), puts the affected batches back to pending, and re-attributes them
— from the raw windows while they are retained. Interrupted half way, the batches not yet
done are still pending: running it again (or the sweeper) finishes the job.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import QuerySet

from accounting.models import (
    BatchAttribution,
    Device,
    FactorChange,
    FootprintRevision,
    Host,
    JobFootprint,
    Site,
)
from accounting.services.attribution import batches_attribute
from telemetry.queue import batch_pks_overlapping, batches_reopen_unclaimed

log = logging.getLogger(__name__)


def _hosts_for_change(change: FactorChange) -> QuerySet[Host] | None:
    """Hosts whose ledger rows used the changed factor (None: every host)."""
    key = change.factor_key
    if change.factor_type in ("zone", "hourly_intensity"):
        code = key.split("/")[0]
        return Host.objects.filter(cluster__site__zone__code=code)
    if change.factor_type in ("pue", "site"):
        org_id, _, rest = key.partition("/")
        slug = rest.split("@")[0]
        return Host.objects.filter(cluster__site__org_id=int(org_id), cluster__site__slug=slug)
    if change.factor_type == "hardware":
        host_ids = Device.objects.filter(hardware_model__key=key).values_list("host_id", flat=True)
        return Host.objects.filter(pk__in=host_ids)
    return None


def batches_for_change(*, change: FactorChange) -> list[int]:
    """Ids of the batches whose ledger lines used the changed factor over its period, in id order."""
    hosts = _hosts_for_change(change)
    return batch_pks_overlapping(
        host_ids=hosts.values("pk") if hosts is not None else None,
        since=change.affects_from,
        until=change.affects_to,
    )


def ledger_recompute(
    *,
    batch_pks: list[int],
    reason: str,
    now: dt.datetime,
    factor_change: FactorChange | None = None,
    chunk: int = 50,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-attribute the batches ``batch_pks``; returns how many were rebuilt. Jobs' previous
    totals are kept as FootprintRevision rows (once per recompute, before the first batch changes)."""
    pks = sorted(batch_pks)
    if not pks:
        return 0
    job_ids = {
        job_id
        for ids in BatchAttribution.objects.filter(batch_id__in=pks).values_list("job_ids", flat=True)
        for job_id in ids
        if job_id is not None
    }
    with transaction.atomic():
        FootprintRevision.objects.bulk_create(
            [
                FootprintRevision(
                    job_id=fp.job_id,
                    reason=reason,
                    factor_change=factor_change,
                    energy_j=fp.energy_j,
                    co2e_operational_g=fp.co2e_operational_g,
                    co2e_embodied_g=fp.co2e_embodied_g,
                    method_version=fp.method_version,
                )
                for fp in JobFootprint.objects.filter(job_id__in=job_ids)
            ]
        )
        batches_reopen_unclaimed(batch_pks=pks)
    done = 0
    for start in range(0, len(pks), chunk):
        part = pks[start : start + chunk]
        outcome = batches_attribute(batch_pks=part, now=now)
        done += len(outcome.attributed)
        if progress is not None:
            progress(len(part))
    log.info("recompute reason=%r batches=%d rebuilt=%d jobs=%d", reason, len(pks), done, len(job_ids))
    return done


def factor_changes_recompute(*, now: dt.datetime, progress: Callable[[int], None] | None = None) -> int:
    """Process every pending FactorChange (called by beat and by the recompute command)."""
    total = 0
    for change in FactorChange.objects.filter(recompute_status="pending").order_by("changed_at"):
        claimed = FactorChange.objects.filter(pk=change.pk, recompute_status="pending").update(
            recompute_status="running"
        )
        if not claimed:
            continue
        total += ledger_recompute(
            batch_pks=batches_for_change(change=change),
            reason=change.reason,
            now=now,
            factor_change=change,
            progress=progress,
        )
        FactorChange.objects.filter(pk=change.pk).update(recompute_status="done")
    return total


def site_batches(*, site: Site, since: dt.datetime | None, until: dt.datetime | None) -> list[int]:
    """Ids of the site's batches overlapping [``since``, ``until``) (None: unbounded), in id order."""
    return batch_pks_overlapping(
        host_ids=Host.objects.filter(cluster__site=site).values("pk"), since=since, until=until
    )
