"""A service's energy and carbon per request, per 1k input and output tokens, per hour and per
day over a period, from its job-hours and its serving counters (``accounting.domain.serving``).

The ledger's resolution is the hour: a period is widened to whole UTC hours. The counters that
bound it are the last reading at or before its start and the readings after it up to its end,
so with a scrape every minute the units and the energy cover the same hours to within a minute.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Sum

from accounting.domain.errors import InputError
from accounting.domain.serving import CounterReading, ServiceEfficiency, service_efficiency
from accounting.models import Job, JobHour, ServingCounters

HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class ServiceReport:
    job: Job
    server: str | None
    period_start: dt.datetime
    period_end: dt.datetime
    counters_from: dt.datetime | None
    counters_to: dt.datetime | None
    readings: int
    efficiency: ServiceEfficiency


def _floor_hour(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: dt.datetime) -> dt.datetime:
    floor = _floor_hour(at)
    return floor if floor == at else floor + HOUR


def service_report(
    *, job: Job, start: dt.datetime | None = None, end: dt.datetime | None = None, now: dt.datetime
) -> ServiceReport:
    """The service's rates from ``start`` (default: it started) to ``end`` (default: it ended,
    or the last whole hour while it runs), both widened to whole hours."""
    period_start = _floor_hour(start or job.started_at)
    if end is not None:
        period_end = _ceil_hour(end)
    elif job.ended_at is not None:
        period_end = _ceil_hour(job.ended_at)
    else:
        period_end = _floor_hour(now)
    if period_end <= period_start:
        raise InputError("end", "the period holds no whole hour after its start")
    sums = JobHour.objects.filter(job=job, hour__gte=period_start, hour__lt=period_end).aggregate(
        energy=Sum("energy_j"), operational=Sum("co2e_operational_g"), embodied=Sum("co2e_embodied_g")
    )
    baseline = ServingCounters.objects.filter(job=job, at__lte=period_start).order_by("-at").first()
    rows = [
        *([baseline] if baseline is not None else []),
        *ServingCounters.objects.filter(job=job, at__gt=period_start, at__lte=period_end).order_by("at"),
    ]
    readings = [CounterReading(r.at, r.requests_total, r.input_tokens_total, r.output_tokens_total) for r in rows]
    efficiency = service_efficiency(
        readings=readings,
        period_s=(period_end - period_start).total_seconds(),
        energy_j=sums["energy"] or 0.0,
        co2e_operational_g=sums["operational"] or 0.0,
        co2e_embodied_g=sums["embodied"] or 0.0,
    )
    return ServiceReport(
        job=job,
        server=rows[-1].server if rows else None,
        period_start=period_start,
        period_end=period_end,
        counters_from=rows[0].at if rows else None,
        counters_to=rows[-1].at if rows else None,
        readings=len(rows),
        efficiency=efficiency,
    )
