"""Inference services: record the serving engine's counters (requests, input and output tokens)
from a scrape of its metrics page. The rates are read by ``accounting.selectors.serving``."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from accounting.domain.errors import InputError, StateError
from accounting.domain.serving import counter_totals
from accounting.models import Job, ServingCounters


@transaction.atomic
def serving_counters_record(
    *, job: Job, server: str, metrics: str, at: dt.datetime, model: str | None = None
) -> ServingCounters:
    """Store the totals of one scrape of the service's metrics page taken at ``at``; a scrape
    posted again for the same instant replaces the first (retry-safe). A service keeps one
    server: counters of two engines do not continue each other."""
    if job.kind != Job.Kind.INFERENCE:
        raise StateError("Serving counters belong to inference services; this is a training job.")
    if at < job.started_at:
        raise InputError("at", "is before the service started")
    if job.ended_at is not None and at > job.ended_at:
        raise InputError("at", "is after the service ended")
    totals = counter_totals(metrics, server=server, model=model)
    job = Job.objects.select_for_update(no_key=True).get(pk=job.pk)  # one server per service, checked under lock
    other = ServingCounters.objects.filter(job=job).exclude(server=server).values_list("server", flat=True).first()
    if other is not None:
        raise StateError(f"This service's counters come from {other}, not {server}.")
    row, _ = ServingCounters.objects.update_or_create(
        job=job,
        at=at,
        defaults={
            "server": server,
            "requests_total": totals.requests_total,
            "input_tokens_total": totals.input_tokens_total,
            "output_tokens_total": totals.output_tokens_total,
        },
    )
    return row
