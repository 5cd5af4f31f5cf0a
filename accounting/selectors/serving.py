"""A service's energy and carbon per request, per 1k input and output tokens, per hour and per
day over a period, from its job-hours and its serving counters (``accounting.domain.serving``).

The ledger's resolution is the hour: a period is widened to whole UTC hours. The counters that
bound it are the last reading at or before its start and the readings after it up to its end,
so with a scrape every minute the units and the energy cover the same hours to within a minute.

The counters' increase is summed in PostgreSQL (``lag()`` over the readings, a drop counted as
a restart from 0), hour by hour: a 30-day period with a scrape a minute is 43,200 readings, too
many to bring into Python for each page or API call. It is the domain's rule
(``accounting.domain.serving.counter_increase``), and tests/accounting/test_serving_selector.py
proves the two equal.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.db import connection
from django.db.models import Sum

from accounting.domain.errors import InputError
from accounting.domain.serving import ServiceEfficiency
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


@dataclass(frozen=True)
class HourCounts:
    """What the server counted in one hour (None: it has no such counter)."""

    requests: float
    input_tokens: float | None
    output_tokens: float | None


# The readings that bound [start, end): the last at or before start (the baseline) and those
# after it up to end.
_BOUNDING = """
    FROM {table}
    WHERE job_id = %(job)s AND at <= %(end)s
      AND at >= coalesce((SELECT max(at) FROM {table} WHERE job_id = %(job)s AND at <= %(start)s), %(start)s)
"""

# Per hour [h, h + 1 h): the increase of each counter over the readings in (h, h + 1 h], each
# reading's step taken from the reading before it, a drop being a restart from 0.
_HOURLY_SQL = """
SELECT date_trunc('hour', r.at - interval '1 microsecond', 'UTC') AS hour,
       sum(CASE WHEN r.requests_total >= r.prev_requests THEN r.requests_total - r.prev_requests
                ELSE r.requests_total END),
       sum(CASE WHEN r.input_tokens_total >= r.prev_input THEN r.input_tokens_total - r.prev_input
                ELSE r.input_tokens_total END),
       sum(CASE WHEN r.output_tokens_total >= r.prev_output THEN r.output_tokens_total - r.prev_output
                ELSE r.output_tokens_total END)
FROM (
    SELECT at, requests_total, input_tokens_total, output_tokens_total,
           lag(requests_total) OVER w AS prev_requests,
           lag(input_tokens_total) OVER w AS prev_input,
           lag(output_tokens_total) OVER w AS prev_output
    {bounding}
    WINDOW w AS (ORDER BY at)
) r
WHERE r.prev_requests IS NOT NULL
GROUP BY 1
ORDER BY 1
"""

_READINGS_SQL = """
SELECT count(*), count(input_tokens_total), count(output_tokens_total), min(at), max(at),
       (SELECT server FROM {table} WHERE job_id = %(job)s AND at <= %(end)s ORDER BY at DESC LIMIT 1)
{bounding}
"""


def _bounding_params(job: Job, start: dt.datetime, end: dt.datetime) -> dict:
    return {"job": job.pk, "start": start, "end": end}


def service_hour_counts(*, job: Job, start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, HourCounts]:
    """What the server counted in each hour of ``[start, end)`` (whole UTC hours) that has a
    reading closing it: from the last reading at or before the hour to the last at or before
    its end. A token counter the server lacks is None."""
    table = connection.ops.quote_name(ServingCounters._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_HOURLY_SQL.format(bounding=_BOUNDING.format(table=table)), _bounding_params(job, start, end))
        rows = cursor.fetchall()
    return {
        hour.astimezone(dt.UTC): HourCounts(
            float(requests), None if inputs is None else float(inputs), None if outputs is None else float(outputs)
        )
        for hour, requests, inputs, outputs in rows
    }


def service_report(
    *, job: Job, start: dt.datetime | None = None, end: dt.datetime | None = None, now: dt.datetime
) -> ServiceReport:
    """The service's rates from ``start`` (default: it started) to ``end`` (default: it ended,
    or the last whole hour while it runs), both widened to whole hours."""
    report, _hours = service_report_by_hour(job=job, start=start, end=end, now=now)
    return report


def service_report_by_hour(
    *, job: Job, start: dt.datetime | None = None, end: dt.datetime | None = None, now: dt.datetime
) -> tuple[ServiceReport, dict[dt.datetime, HourCounts]]:
    """``service_report`` and the hours its units were counted in (the dashboard charts them)."""
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
    table = connection.ops.quote_name(ServingCounters._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            _READINGS_SQL.format(table=table, bounding=_BOUNDING.format(table=table)),
            _bounding_params(job, period_start, period_end),
        )
        readings, with_input, with_output, first_at, last_at, server = cursor.fetchone()
    hours = service_hour_counts(job=job, start=period_start, end=period_end) if readings >= 2 else {}
    counted = sorted(hours.items())

    def total(values: list[float | None], complete: bool) -> float | None:
        # fewer than two readings count nothing; a counter missing from any reading is unknown
        if readings < 2 or not complete:
            return None
        return math.fsum(v for v in values if v is not None)

    efficiency = ServiceEfficiency(
        period_s=(period_end - period_start).total_seconds(),
        energy_j=sums["energy"] or 0.0,
        co2e_operational_g=sums["operational"] or 0.0,
        co2e_embodied_g=sums["embodied"] or 0.0,
        requests=total([c.requests for _h, c in counted], True),
        input_tokens=total([c.input_tokens for _h, c in counted], with_input == readings),
        output_tokens=total([c.output_tokens for _h, c in counted], with_output == readings),
    )
    report = ServiceReport(
        job=job,
        server=server,
        period_start=period_start,
        period_end=period_end,
        counters_from=first_at.astimezone(dt.UTC) if first_at is not None else None,
        counters_to=last_at.astimezone(dt.UTC) if last_at is not None else None,
        readings=readings,
        efficiency=efficiency,
    )
    return report, hours
