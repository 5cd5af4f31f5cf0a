"""``accounting.selectors.serving``: the counters' increase summed in PostgreSQL equals the
domain's rule (``accounting.domain.serving.service_efficiency`` over the same readings), for
random readings with restarts, gaps and periods that start and end between readings."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from accounting import models as m
from accounting.domain.serving import CounterReading, service_efficiency
from accounting.selectors.serving import service_hour_counts, service_report
from tests import factories as f

pytestmark = pytest.mark.django_db
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)


def _service(*, hours: int = 12) -> m.Job:
    job = f.JobFactory(kind="inference", status="completed", started_at=T0, ended_at=T0 + hours * H)
    for h in range(hours):
        m.JobHour.objects.create(
            job=job, hour=T0 + h * H, energy_j=1e6 * (h + 1), co2e_operational_g=10.0 * (h + 1), co2e_embodied_g=1.0
        )
    return job


def _domain(readings: list[CounterReading], start: dt.datetime, end: dt.datetime):
    """The readings that bound [start, end) and the domain's efficiency over them."""
    before = [r for r in readings if r.at <= start]
    bounding = [*before[-1:], *(r for r in readings if start < r.at <= end)]
    energy = sum(1e6 * (h + 1) for h in range(12) if start <= T0 + h * H < end)
    co2e = sum(10.0 * (h + 1) for h in range(12) if start <= T0 + h * H < end)
    embodied = sum(1.0 for h in range(12) if start <= T0 + h * H < end)
    eff = service_efficiency(
        readings=bounding,
        period_s=(end - start).total_seconds(),
        energy_j=energy,
        co2e_operational_g=co2e,
        co2e_embodied_g=embodied,
    )
    return bounding, eff


@pytest.mark.parametrize("seed", range(12))
def test_sql_increase_equals_the_domain_rule(seed):
    rng = random.Random(seed)
    job = _service()
    tokens = seed % 4 != 3  # every 4th a Triton-like service: no token counters
    at, totals, readings = T0 + dt.timedelta(minutes=rng.randrange(0, 50)), [0.0, 0.0, 0.0], []
    while at <= T0 + 12 * H:
        if rng.random() < 0.05:  # a server restart
            totals = [0.0, 0.0, 0.0]
        step = rng.randrange(0, 500)
        totals = [totals[0] + step, totals[1] + step * rng.randrange(100, 2000), totals[2] + step * 300]
        reading = CounterReading(at, totals[0], totals[1] if tokens else None, totals[2] if tokens else None)
        readings.append(reading)
        m.ServingCounters.objects.create(
            job=job, at=at, server="vllm" if tokens else "triton", requests_total=reading.requests_total,
            input_tokens_total=reading.input_tokens_total, output_tokens_total=reading.output_tokens_total,
        )  # fmt: skip
        # scrapes a few minutes apart, now and then a gap of hours (the sidecar was down)
        at += dt.timedelta(minutes=rng.choice([1, 5, 13, 29, 60, 150]))
    for _ in range(8):
        a, b = sorted(rng.sample(range(0, 12 * 60 + 1), 2))
        start, end = T0 + dt.timedelta(minutes=a), T0 + dt.timedelta(minutes=b)
        report = service_report(job=job, start=start, end=end, now=T0 + 24 * H)
        # the period widens to whole hours; the domain reads the same whole hours
        bounding, eff = _domain(readings, report.period_start, report.period_end)
        assert report.efficiency == eff
        assert report.readings == len(bounding)
        assert (report.counters_from, report.counters_to) == (
            (bounding[0].at, bounding[-1].at) if bounding else (None, None)
        )
        hours = service_hour_counts(job=job, start=report.period_start, end=report.period_end)
        if eff.requests is not None:
            assert sum(c.requests for c in hours.values()) == eff.requests


def test_fewer_than_two_readings_count_nothing():
    job = _service()
    report = service_report(job=job, now=T0)
    assert (report.readings, report.server, report.counters_from, report.efficiency.requests) == (0, None, None, None)
    m.ServingCounters.objects.create(job=job, at=T0 + 2 * H, server="tgi", requests_total=5.0,
                                     input_tokens_total=50.0, output_tokens_total=20.0)  # fmt: skip
    report = service_report(job=job, now=T0)
    assert (report.readings, report.server, report.counters_from, report.efficiency.requests) == (
        1, "tgi", T0 + 2 * H, None,
    )  # fmt: skip
    assert report.efficiency.per_request is None and report.efficiency.per_hour is not None
    assert service_hour_counts(job=job, start=T0, end=T0 + 12 * H) == {}
