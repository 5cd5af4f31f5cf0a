"""Browser walk through the dashboard with Playwright driving Debian's Chromium.

Logs in through the form, visits every page, changes filters, opens a job, runs the what-if
panel against the real what-if API (a projection, and a start-window request that the API
rejects, to see the inline error), runs the fleet planner, watches the live page refresh, and
fails on any console error (a Content-Security-Policy violation is one). Screenshots go to
artifacts/screenshots/ (gitignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import call_command

from accounting import models as m
from tests import factories as f

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]


@pytest.fixture
def browser_page(monkeypatch):
    from django.conf import settings

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop here
    # The live server's thread must not keep its connection open past the test (test DB teardown).
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", 0)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        yield page
        browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _wait_figures(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-figure]')].every(el => el.classList.contains('js-plotly-plot'))",
        timeout=20_000,
    )


@pytest.mark.django_db(transaction=True)
def test_walk_every_page(live_server, browser_page):
    call_command(
        "seed_history", "--org", "demo", "--gpus", "24", "--jobs", "160", "--days", "14", "--seed", "5", "-v", "0"
    )
    org = m.Organization.objects.get(slug="demo")
    admin = f.UserFactory(username="ada")
    f.MembershipFactory(user=admin, org=org, team=None, role=m.Membership.Role.ADMIN)
    page, base = browser_page, live_server.url

    page.goto(f"{base}/")
    assert "/accounts/login/" in page.url
    _shot(page, "00-login")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    _wait_figures(page)
    assert page.locator("#kpi-energy .value").inner_text().endswith("Wh")
    assert page.locator("#top-jobs tbody tr").count() == 10
    _shot(page, "01-overview")

    page.select_option("#id_period", "7d")
    page.select_option("#id_group_by", "family")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*group_by=family.*"))
    _wait_figures(page)
    legend = page.locator("[data-figure=fig-energy] .legendtext").evaluate_all("els => els.map(e => e.textContent)")
    assert "Fleet overhead (unallocated)" in legend
    _shot(page, "02-overview-7d-by-family")

    for path, name in (
        ("/sites/", "03-sites"),
        ("/devices/", "04-devices"),
        ("/budgets/", "10-budgets"),
        ("/methodology/", "11-methodology"),
        ("/reports/", "12-reports"),
    ):
        response = page.goto(base + path)
        # Served under the strict policy; a blocked script or style would be a console error.
        assert "script-src 'self'" in [d.strip() for d in response.headers["content-security-policy"].split(";")]
        _wait_figures(page)
        _shot(page, name)
    assert page.locator("#months-table tbody tr").count() >= 1
    page.locator("#months-table a").first.click()
    _wait_figures(page)
    assert page.locator("#report-co2e .value").inner_text().endswith("CO2e")
    _shot(page, "13-report-month")

    page.goto(f"{base}/jobs/")
    page.select_option("#id_family", "llm")
    page.select_option("#id_kind", "training")
    page.click("#job-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*family=llm.*"))
    page.click("#jobs-table th a:has-text('CO2e')")
    page.wait_for_url(re.compile(r".*sort=-co2e.*"))
    rows = page.locator("#jobs-table tbody tr")
    assert rows.count() > 0
    assert all("llm · training" in t for t in page.locator("#jobs-table tbody tr td.workload").all_inner_texts())
    _shot(page, "05-jobs-llm-by-co2e")
    with page.expect_download() as download:
        page.click("#export-csv")
    assert download.value.suggested_filename.startswith("carbonledger-jobs-")

    page.locator("#jobs-table tbody tr a").first.click()
    page.wait_for_url(re.compile(r".*/jobs/\d+/$"))
    _wait_figures(page)
    assert "band" in page.locator("#uncertainty").inner_text()
    page.select_option("#whatif-project select[name=target_key]", "h100-sxm5-80gb")
    page.select_option("#whatif-project select[name=target_zone_code]", "FR")
    page.click("#whatif-project button[type=submit]")
    page.wait_for_selector("#whatif-project-result table", timeout=20_000)
    result = page.locator("#whatif-project-result").inner_text()
    assert "PROJECTED" in result.upper() and "Speed-up" in result and "Assumptions" in result
    _shot(page, "06-job-detail-whatif")
    # The API rejects a deadline before the earliest start: the panel shows the problem inline.
    page.fill("#whatif-window input[name=deadline]", "2020-01-01T00:00")
    page.click("#whatif-window button[type=submit]")
    page.wait_for_selector("#whatif-window-result .alert.error", timeout=20_000)
    assert "deadline" in page.locator("#whatif-window-result .alert.error").inner_text()
    page.errors[:] = [e for e in page.errors if "status of 400" not in e]  # the expected rejected request
    _shot(page, "07-job-detail-whatif-error")

    page.goto(f"{base}/live/")
    page.wait_for_function("() => document.getElementById('live-updated').textContent.startsWith('Updated')")
    first = page.locator("#live-updated").inner_text()
    page.wait_for_function(f"() => document.getElementById('live-updated').textContent !== {first!r}", timeout=15_000)
    _shot(page, "08-live")

    page.goto(f"{base}/tradeoffs/")
    _wait_figures(page)
    page.select_option("#id_colour", "zone")
    page.select_option("#id_x", "quality")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*colour=zone.*"))
    _wait_figures(page)
    _shot(page, "09-tradeoffs")

    page.goto(f"{base}/planner/")
    page.select_option("#fleet-plan select[data-field=old_key]", "a100-sxm4-80gb")
    page.click("#fleet-plan button[type=submit]")
    page.wait_for_selector("#payback-chart.js-plotly-plot", timeout=20_000)
    assert "Carbon payback" in page.locator("#plan-result").inner_text()
    _shot(page, "14-planner")

    assert page.errors == []
