"""The job page's service card: an inference service's energy and carbon per request, per 1k
input and output tokens, per hour and per day over a chosen period, and its hourly chart.

The seeded service (``service``) ran 09:00–12:00 on the world's day (NOW is 12:00, it still
runs) with these ledger hours and counter readings (a vLLM restart at 10:30):

    hour   energy_j  operational_g  embodied_g | reading  requests  input   output
    09:00  20e6      1200           100        | 09:00    0         0       0
    10:00  16e6      1000           100        | 09:30    300       4e5     1e5
    11:00  18e6       900           100        | 10:00    1000      1e6     2.5e5
                                               | 10:30    200       1.5e5   5e4   (restart)
                                               | 11:00    800       8e5     2e5
                                               | 12:00    1400      1.7e6   3.5e5

so the hours served 1000 / 800 / 600 requests, 1e6 / 8e5 / 9e5 input and 2.5e5 / 2e5 / 1.5e5
output tokens: 2400 requests, 2.7e6 input and 6e5 output tokens over 54e6 J and 3400 gCO2e.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from accounting import models as m
from accounting.selectors import dashboard as sel
from accounting.selectors.dashboard.serving import service_period_bounds
from accounting.selectors.serving import HourCounts, service_hour_counts, service_report
from dashboard import figures
from tests import factories as f
from tests.dashboard.conftest import NOW

pytestmark = pytest.mark.django_db
UTC = dt.UTC
START = NOW - dt.timedelta(hours=3)  # 09:00
LEDGER = ((0, 20e6, 1200.0), (1, 16e6, 1000.0), (2, 18e6, 900.0))
READINGS = (
    (0, 0.0, 0.0, 0.0),
    (30, 300.0, 4e5, 1e5),
    (60, 1000.0, 1e6, 2.5e5),
    (90, 200.0, 1.5e5, 5e4),
    (120, 800.0, 8e5, 2e5),
    (180, 1400.0, 1.7e6, 3.5e5),
)


def seed_service(world, *, sched: str = "svc-1", server: str = "vllm") -> m.Job:
    """The service of the module docstring, on the world's cluster, for team Alpha."""
    job = f.JobFactory(
        cluster=world.j1.cluster, team=world.t1, scheduler_job_id=sched, name=f"{sched}-llama", kind="inference",
        family="llm", status="running", started_at=START, username="ana",
    )  # fmt: skip
    m.JobFootprint.objects.create(
        job=job, energy_j=54e6, gpu_energy_j=40e6, gpu_idle_energy_j=5e6, host_energy_j=4e6,
        facility_energy_j=10e6, co2e_operational_g=3100.0, co2e_embodied_g=300.0, co2e_low_g=3060.0,
        co2e_high_g=3740.0, device_hours=3.0, measured_fraction=1.0, is_final=False, method_version="test-1",
        last_window_end=NOW, direct_basis_energy_j=54e6,
    )  # fmt: skip
    for hour, energy_j, operational_g in LEDGER:
        m.JobHour.objects.create(
            job=job, hour=START + dt.timedelta(hours=hour), energy_j=energy_j, gpu_energy_j=energy_j * 0.7,
            co2e_operational_g=operational_g, co2e_embodied_g=100.0, intensity_g_per_kwh=250.0,
            direct_basis_energy_j=energy_j,
        )  # fmt: skip
    for minute, requests, inputs, outputs in READINGS:
        m.ServingCounters.objects.create(
            job=job, at=START + dt.timedelta(minutes=minute), server=server, requests_total=requests,
            input_tokens_total=None if server == "triton" else inputs,
            output_tokens_total=None if server == "triton" else outputs,
        )  # fmt: skip
    return job


@pytest.fixture
def service(world):
    return seed_service(world)


def exact(expected):
    """Equal to the last bits a different order of the same float operations may change."""
    if isinstance(expected, list):
        return [None if v is None else pytest.approx(v, rel=1e-12) for v in expected]
    return pytest.approx(expected, rel=1e-12)


def _member(world):
    return sel.viewer_scope_get(user=world.member)


HOURS = [START + dt.timedelta(hours=h) for h in range(3)]


def test_whole_life_rates_and_hourly_points(world, service):
    rates = sel.service_rates_get(scope=_member(world), job_id=service.pk, period="life", now=NOW)
    assert rates is not None
    assert (rates.period, rates.period_label) == ("life", "Whole life")
    assert rates.periods == [
        ("24h", "Last 24 h"),
        ("7d", "Last 7 days"),
        ("30d", "Last 30 days"),
        ("life", "Whole life"),
    ]
    report = rates.report
    assert (report.period_start, report.period_end, report.readings, report.server) == (START, NOW, 6, "vllm")
    eff = report.efficiency
    assert (eff.requests, eff.input_tokens, eff.output_tokens, eff.energy_j, eff.co2e_g) == (
        2400.0, 2.7e6, 6e5, 54e6, 3400.0,
    )  # fmt: skip
    assert (rates.period_h, rates.energy_kwh, rates.co2e_kg) == (3.0, 15.0, 3.4)
    assert [(r.key, r.label) for r in rates.rows] == [
        ("per_request", "per request"), ("per_1k_input_tokens", "per 1k input tokens"),
        ("per_1k_output_tokens", "per 1k output tokens"), ("per_hour", "per hour"), ("per_day", "per day"),
    ]  # fmt: skip
    assert [r.energy_wh for r in rates.rows] == exact([22500.0 / 3600, 20000.0 / 3600, 25.0, 5000.0, 120000.0])
    assert [r.co2e_g for r in rates.rows] == exact([3400.0 / 2400, 3400.0 / 2700, 3400.0 / 600, 3400.0 / 3, 27200.0])
    assert [(r.energy_unit, r.co2e_unit) for r in rates.rows] == [("Wh", "gCO2e")] * 3 + [("kWh", "kgCO2e")] * 2
    assert [r.energy for r in rates.rows] == exact([22500.0 / 3600, 20000.0 / 3600, 25.0, 5.0, 120.0])
    assert [r.co2e for r in rates.rows] == exact([3400.0 / 2400, 3400.0 / 2700, 3400.0 / 600, 3400.0 / 3000, 27.2])
    assert rates.basis_label == "operational, Scope 2 location-based (direct intensity), + embodied"
    h = rates.hours
    assert h.hour == HOURS
    assert h.requests == [1000.0, 800.0, 600.0]  # the restart at 10:30 counts 200 from 0
    assert h.input_tokens == [1e6, 8e5, 9e5]
    assert h.output_tokens == [2.5e5, 2e5, 1.5e5]
    assert sum(h.requests) == eff.requests and sum(h.input_tokens) == eff.input_tokens
    assert h.energy_j == [20e6, 16e6, 18e6] and h.co2e_g == [1300.0, 1100.0, 1000.0]
    assert h.energy_wh_per_request == exact([20e6 / 3600 / 1000, 16e6 / 3600 / 800, 18e6 / 3600 / 600])
    assert h.co2e_g_per_request == exact([1.3, 1.375, 1000.0 / 600])
    assert h.energy_wh_per_1k_input_tokens == exact(
        [20e6 / 3600 * 1000 / 1e6, 16e6 / 3600 * 1000 / 8e5, 18e6 / 3600 * 1000 / 9e5]
    )
    assert h.co2e_g_per_1k_input_tokens == exact([1.3, 1.375, 1000.0 * 1000 / 9e5])
    assert h.energy_wh_per_1k_output_tokens == exact([80000.0 / 3600, 80000.0 / 3600, 120000.0 / 3600])
    assert h.co2e_g_per_1k_output_tokens == exact([5.2, 5.5, 1000.0 * 1000 / 1.5e5])


def test_the_card_reads_what_the_api_reads(world, service):
    """Same period, same figures as GET /api/v1/jobs/{id}/serving/ (service_report)."""
    rates = sel.service_rates_get(scope=_member(world), job_id=service.pk, period="7d", now=NOW)
    api = service_report(job=service, now=NOW)
    assert rates.report == api


def test_an_hour_counts_from_the_last_reading_at_or_before_it(world, service):
    """A period starting at 10:00 takes the 10:00 reading as its baseline (the restart at 10:30
    then counts 200 from 0); the hours add up to the period's totals."""
    counts = service_hour_counts(job=service, start=HOURS[1], end=NOW)
    assert counts == {HOURS[1]: HourCounts(800.0, 8e5, 2e5), HOURS[2]: HourCounts(600.0, 9e5, 1.5e5)}
    report = service_report(job=service, start=HOURS[1], end=NOW, now=NOW)
    assert (report.efficiency.requests, report.efficiency.input_tokens) == (1400.0, 1.7e6)
    # the hours after the last reading (12:00) have nothing closing them: no count
    assert service_hour_counts(job=service, start=HOURS[2], end=NOW + dt.timedelta(hours=2)) == {
        HOURS[2]: HourCounts(600.0, 9e5, 1.5e5)
    }


def test_period_bounds_end_with_the_service_and_start_no_earlier_than_it(world, service):
    assert service_period_bounds(job=service, period="24h", now=NOW + dt.timedelta(minutes=59)) == (START, NOW)
    service.started_at = dt.datetime(2026, 2, 1, 7, 30, tzinfo=UTC)
    service.ended_at = dt.datetime(2026, 3, 10, 10, 20, tzinfo=UTC)
    end = dt.datetime(2026, 3, 10, 11, tzinfo=UTC)
    assert service_period_bounds(job=service, period="24h", now=NOW) == (end - dt.timedelta(hours=24), end)
    assert service_period_bounds(job=service, period="7d", now=NOW) == (end - dt.timedelta(days=7), end)
    assert service_period_bounds(job=service, period="30d", now=NOW) == (end - dt.timedelta(days=30), end)
    assert service_period_bounds(job=service, period="life", now=NOW) == (dt.datetime(2026, 2, 1, 7, tzinfo=UTC), end)


def test_hours_without_ledger_or_units_have_no_rate(world, service):
    """An hour the ledger has not closed, or one that served nothing, is a gap, not 0 or ∞."""
    m.JobHour.objects.filter(job=service, hour=HOURS[2]).delete()
    m.ServingCounters.objects.filter(job=service, at__gt=HOURS[1]).delete()
    m.ServingCounters.objects.create(job=service, at=NOW, server="vllm", requests_total=1000.0,
                                     input_tokens_total=1e6, output_tokens_total=2.5e5)  # fmt: skip
    h = sel.service_rates_get(scope=_member(world), job_id=service.pk, period="life", now=NOW).hours
    assert h.hour == HOURS
    assert h.requests == [1000.0, None, 0.0]  # no reading closes 10:00–11:00: it is not counted
    assert h.energy_j == [20e6, 16e6, None]
    assert h.co2e_g_per_request == exact([1.3, None, None])


def test_triton_service_has_per_request_rates_only(client, world, frozen_now):
    job = seed_service(world, sched="svc-triton", server="triton")
    rates = sel.service_rates_get(scope=_member(world), job_id=job.pk, period="life", now=NOW)
    assert [(r.key, r.co2e_g) for r in rates.rows] == [
        ("per_request", 3400.0 / 2400), ("per_1k_input_tokens", None), ("per_1k_output_tokens", None),
        ("per_hour", 3400.0 / 3), ("per_day", 27200.0),
    ]  # fmt: skip
    assert rates.hours.co2e_g_per_1k_input_tokens == [None, None, None]
    fig = json.loads(figures.service_rates_figure(hours=rates.hours, basis_label=rates.basis_label))
    assert [(t["name"], t["yaxis"]) for t in fig["data"]] == [("per request", "y"), ("per request", "y2")]
    client.force_login(world.member)
    html = client.get(f"/jobs/{job.pk}/?service_period=life").content.decode()
    assert _row(html, "per_request") == ["per request", "6.25 Wh", "1.417 gCO2e"]
    assert _row(html, "per_1k_input_tokens") == ["per 1k input tokens", "—", "—"]
    assert re.search(r'id="service-input-tokens">—<', html)


def test_no_card_without_counters_a_young_service_or_an_invisible_job(world, service):
    assert sel.service_rates_get(scope=_member(world), job_id=world.j1.pk, period="7d", now=NOW) is None
    outsider = sel.viewer_scope_get(user=world.outsider)
    assert sel.service_rates_get(scope=outsider, job_id=service.pk, period="7d", now=NOW) is None
    young = sel.service_rates_get(
        scope=_member(world), job_id=service.pk, period="7d", now=START + dt.timedelta(minutes=50)
    )
    assert (young.report, young.rows, young.hours.hour, young.period) == (None, [], [], "7d")
    assert sel.service_rates_get(scope=_member(world), job_id=service.pk, period="1y", now=NOW).period == "7d"


def test_figure_has_both_rates_per_unit_with_units_and_basis(world, service):
    rates = sel.service_rates_get(scope=_member(world), job_id=service.pk, period="life", now=NOW)
    fig = json.loads(figures.service_rates_figure(hours=rates.hours, basis_label=rates.basis_label))
    assert [(t["name"], t["yaxis"], t.get("showlegend", True)) for t in fig["data"]] == [
        ("per request", "y", True), ("per request", "y2", False),
        ("per 1k input tokens", "y", True), ("per 1k input tokens", "y2", False),
        ("per 1k output tokens", "y", True), ("per 1k output tokens", "y2", False),
    ]  # fmt: skip
    centres = [(h + dt.timedelta(minutes=30)).isoformat() for h in HOURS]
    assert all(t["x"] == centres for t in fig["data"])
    assert fig["data"][0]["y"] == [1.3, 1.375, 1.666667]
    assert fig["data"][0]["customdata"] == [1000, 800, 600]
    assert fig["data"][5]["y"] == [22.222222, 22.222222, 33.333333]
    assert [a["text"] for a in fig["layout"]["annotations"]] == [
        "<b>Carbon per unit (gCO2e; operational, Scope 2 location-based (direct intensity), + embodied)</b>",
        "<b>Energy per unit (Wh; GPU, host and facility)</b>",
    ]
    assert (fig["layout"]["yaxis"]["title"]["text"], fig["layout"]["yaxis2"]["title"]["text"]) == (
        "gCO2e per unit", "Wh per unit",
    )  # fmt: skip
    assert fig["layout"]["xaxis2"]["range"] == [HOURS[0].isoformat(), NOW.isoformat()]


def _row(html: str, key: str) -> list[str]:
    row = re.search(rf'<tr id="service-{key}">(.*?)</tr>', html, re.S)
    assert row, key
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def test_job_page_shows_the_card_for_the_chosen_period(client, world, service, frozen_now):
    client.force_login(world.member)
    html = client.get(f"/jobs/{service.pk}/?service_period=life").content.decode()
    assert _row(html, "per_request") == ["per request", "6.25 Wh", "1.417 gCO2e"]
    assert _row(html, "per_1k_input_tokens") == ["per 1k input tokens", "5.556 Wh", "1.259 gCO2e"]
    assert _row(html, "per_1k_output_tokens") == ["per 1k output tokens", "25 Wh", "5.667 gCO2e"]
    assert _row(html, "per_hour") == ["per hour", "5 kWh", "1.133 kgCO2e"]
    assert _row(html, "per_day") == ["per day", "120 kWh", "27.2 kgCO2e"]
    assert re.search(r'id="service-requests">2,400<', html)
    assert re.search(r'id="service-input-tokens">2,700,000<', html)
    assert re.search(r'id="service-footprint">15.0 kWh · 3.40 kgCO2e<', html)
    assert "Whole life: 2026-03-20 09:00 – 2026-03-20 12:00 UTC (3 h, whole hours)" in html
    assert "vllm counters, 6 readings from 2026-03-20 09:00 to 2026-03-20 12:00" in html
    assert "Carbon: operational, Scope 2 location-based (direct intensity), + embodied." in html
    assert re.search(r'<a class="btn" href="\?service_period=life#service" aria-current="true">Whole life</a>', html)
    assert re.search(r'<a class="btn secondary" href="\?service_period=24h#service">Last 24 h</a>', html)
    assert 'data-figure="fig-service-rates"' in html
    fig = json.loads(
        re.search(r'<script type="application/json" id="fig-service-rates">(.*?)</script>', html, re.S).group(1)
    )
    assert fig["data"][0]["y"] == [1.3, 1.375, 1.666667]
    # the default period (7 days) holds the whole 3-hour life; an unknown period reads as it
    for query in ("", "?service_period=1y"):
        page = client.get(f"/jobs/{service.pk}/{query}").content.decode()
        assert re.search(r'<a class="btn" href="\?service_period=7d#service" aria-current="true">', page)
        assert _row(page, "per_request") == ["per request", "6.25 Wh", "1.417 gCO2e"]


def test_job_page_of_a_training_job_or_a_young_service(client, world, service, frozen_now, monkeypatch):
    client.force_login(world.member)
    assert 'id="service"' not in client.get(f"/jobs/{world.j1.pk}/").content.decode()
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: START + dt.timedelta(minutes=50))
    html = client.get(f"/jobs/{service.pk}/").content.decode()
    assert "The service has not run a whole hour yet" in html and 'id="service-rates"' not in html


def test_the_card_costs_five_queries_and_other_jobs_none(client, world, service, frozen_now):
    """The visible service with counters, the period's ledger sums, its readings, its hourly
    counts and its ledger hours; an inference job without counters asks nothing more."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(world.member)
    with CaptureQueriesContext(connection) as serving:
        client.get(f"/jobs/{service.pk}/")
    m.ServingCounters.objects.filter(job=service).delete()
    with CaptureQueriesContext(connection) as bare:
        assert 'id="service"' not in client.get(f"/jobs/{service.pk}/").content.decode()
    card = [q["sql"] for q in serving.captured_queries if "servingcounters" in q["sql"].lower()]
    assert len(serving.captured_queries) - len(bare.captured_queries) == 5, card
