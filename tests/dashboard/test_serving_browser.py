"""The job page of an inference service in Chromium: a week of a vLLM service (a daily load
cycle, a server restart, an hour it was down) shows its rates per request and per 1k tokens
for the chosen period and their hourly chart; switching the period reloads the card. The
screenshot of the card is docs/img/dashboard-service-rates.png (copied from artifacts/)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from accounting import models as m
from accounting.selectors import dashboard as sel
from tests import factories as f
from tests.dashboard.test_browser import CHROMIUM, SHOTS, _wait_figures, browser_page  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")]
UTC = dt.UTC
START = dt.datetime(2026, 11, 20, tzinfo=UTC)
DAYS = 7
# Requests per hour of the day (UTC): a night trough, a working-day peak.
LOAD = [900, 700, 600, 600, 700, 1000, 1600, 2500, 3600, 4600, 5200, 5500,
        5400, 5300, 5200, 5000, 4600, 4000, 3300, 2700, 2200, 1800, 1400, 1100]  # fmt: skip
DOWN_HOUR = 3 * 24 + 4  # the server was down for an hour: no requests, GPUs idle
RESTART_AT = START + dt.timedelta(days=4, hours=12, minutes=15)  # counters restart from 0


def seed_week_of_service() -> tuple[m.Job, object]:
    org = f.OrganizationFactory()
    zone = f.GridZoneFactory(code="ZZ-SERVE", annual_intensity_g_per_kwh=300.0)
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org, zone=zone, pue=1.2))
    team = f.TeamFactory(org=org, name="Inference")
    job = f.JobFactory(
        cluster=cluster, team=team, scheduler_job_id="svc-llama-70b", name="llama-70b-chat", kind="inference",
        family="llm", status=m.Job.Status.COMPLETED, started_at=START, ended_at=START + dt.timedelta(days=DAYS),
    )  # fmt: skip
    totals = [0.0, 0.0, 0.0]  # the server's counters (requests, input, output)
    energy_sum = co2_sum = 0.0
    m.ServingCounters.objects.create(
        job=job, at=START, server="vllm", requests_total=0.0, input_tokens_total=0.0, output_tokens_total=0.0
    )
    for h in range(DAYS * 24):
        hour = START + dt.timedelta(hours=h)
        requests = 0 if h == DOWN_HOUR else LOAD[h % 24]
        # prompts are longer in the working day (document chat), answers a steady ~300 tokens
        prompt_len = 1500 if 8 <= h % 24 < 18 else 900
        power_w = 2400.0 + 1.1 * requests  # 8 GPUs' idle baseline + load, with host and facility
        energy_j = power_w * 3600
        intensity = 300.0 + 120.0 * ((h % 24) in range(17, 22)) - 80.0 * ((h % 24) in range(10, 15))
        operational_g, embodied_g = energy_j / 3.6e6 * intensity, 96.0
        energy_sum, co2_sum = energy_sum + energy_j, co2_sum + operational_g + embodied_g
        m.JobHour.objects.create(
            job=job, hour=hour, energy_j=energy_j, gpu_energy_j=energy_j * 0.75, co2e_operational_g=operational_g,
            co2e_embodied_g=embodied_g, intensity_g_per_kwh=intensity, direct_basis_energy_j=energy_j,
        )  # fmt: skip
        for quarter in range(1, 5):  # a scrape every 15 minutes
            at = hour + dt.timedelta(minutes=15 * quarter)
            if at == RESTART_AT:
                totals = [0.0, 0.0, 0.0]
            totals = [totals[0] + requests / 4, totals[1] + requests * prompt_len / 4, totals[2] + requests * 300 / 4]
            m.ServingCounters.objects.create(
                job=job, at=at, server="vllm", requests_total=totals[0], input_tokens_total=totals[1],
                output_tokens_total=totals[2],
            )  # fmt: skip
    m.JobFootprint.objects.create(
        job=job, energy_j=energy_sum, gpu_energy_j=energy_sum * 0.75, co2e_operational_g=co2_sum - 96.0 * DAYS * 24,
        co2e_embodied_g=96.0 * DAYS * 24, co2e_low_g=co2_sum * 0.9, co2e_high_g=co2_sum * 1.1,
        device_hours=8.0 * DAYS * 24, measured_fraction=1.0, is_final=True, method_version="test-1",
        direct_basis_energy_j=energy_sum,
    )  # fmt: skip
    user = f.UserFactory(username="serving-user")
    f.MembershipFactory(user=user, org=org, team=team)
    return job, user


def _cells(page, key: str) -> list[str]:
    return page.locator(f"#service-{key} td").all_inner_texts()


@pytest.mark.django_db(transaction=True)
def test_service_card_and_hourly_chart(live_server, browser_page):  # noqa: F811
    job, user = seed_week_of_service()
    page, base = browser_page, live_server.url
    page.goto(f"{base}/accounts/login/?next=/jobs/{job.pk}/")
    page.fill("#id_username", "serving-user")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf".*/jobs/{job.pk}/$"))
    _wait_figures(page)

    scope = sel.viewer_scope_get(user=user)
    week = sel.service_rates_get(scope=scope, job_id=job.pk, period="7d", now=START + dt.timedelta(days=30))
    assert page.locator("#service-periods [aria-current]").inner_text() == "Last 7 days"
    eff = week.report.efficiency
    # 7 days x the daily load, less the hour the server was down (its 700 requests)
    assert eff.requests == 7 * sum(LOAD) - 700
    assert page.locator("#service-requests").inner_text() == f"{eff.requests:,.0f}"
    for row in week.rows:
        assert _cells(page, row.key) == [
            row.label,
            f"{row.energy:.4g} {row.energy_unit}",
            f"{row.co2e:.4g} {row.co2e_unit}",
        ]
    assert (
        page.locator("#service-basis")
        .inner_text()
        .startswith("Carbon: operational, Scope 2 location-based (direct intensity), + embodied.")
    )
    traces = page.evaluate(
        "() => document.querySelector('[data-figure=fig-service-rates]').data.map(t => [t.name, t.y.length])"
    )
    assert traces == [
        [name, 168] for name in ("per request", "per 1k input tokens", "per 1k output tokens") for _ in "xy"
    ]
    gaps = page.evaluate(
        "() => document.querySelector('[data-figure=fig-service-rates]').data[0].y"
        ".map((v, i) => v === null ? i : -1).filter(i => i >= 0)"
    )
    assert gaps == [DOWN_HOUR]  # the hour it served nothing: a gap, not a spike
    page.locator("#service").screenshot(path=str(SHOTS / "serving-job-rates-7d.png"))

    page.click("#service-periods >> text=Last 24 h")
    page.wait_for_url(re.compile(r".*service_period=24h#service$"))
    _wait_figures(page)
    day = sel.service_rates_get(scope=scope, job_id=job.pk, period="24h", now=START + dt.timedelta(days=30))
    assert page.locator("#service-periods [aria-current]").inner_text() == "Last 24 h"
    assert day.report.efficiency.requests == sum(LOAD)
    assert _cells(page, "per_request")[1:] == [f"{day.rows[0].energy_wh:.4g} Wh", f"{day.rows[0].co2e_g:.4g} gCO2e"]
    assert page.evaluate("() => document.querySelector('[data-figure=fig-service-rates]').data[0].y.length") == 24
    page.locator("#service").screenshot(path=str(SHOTS / "serving-job-rates-24h.png"))
    page.screenshot(path=str(SHOTS / "serving-job-page.png"), full_page=True)
    assert page.errors == []
