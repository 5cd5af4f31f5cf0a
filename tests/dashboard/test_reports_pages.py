"""The dashboard's report pages: a month's page with its download links (the API's files, a
session being a read principal there) and the preview of the mailed report, framed by the page,
scoped by the viewer's principal; and the preview looked at in headless Chromium."""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.accounting.report_world import report_world

from .test_browser import ARGS, CHROMIUM, SHOTS

PAGE = "/reports/2026-10/"
PREVIEW = "/reports/2026-10/preview.html"


@pytest.fixture
def w(db):
    return report_world()


def _login(client, user):
    client.force_login(user)
    return client


def test_month_page_links_the_files_and_frames_the_preview(client, w):
    page = _login(client, w.member).get(PAGE)
    assert page.status_code == 200
    assert [name for name, _, _ in page.context["files"]] == ["HTML", "PDF", "CSV", "Parquet"]
    assert [url for _, url, _ in page.context["files"]] == [
        "/api/v1/reports/2026-10/report.html",
        "/api/v1/reports/2026-10/report.pdf",
        "/api/v1/reports/2026-10/jobs.csv",
        "/api/v1/reports/2026-10/ledger.parquet",
    ]
    assert page.context["preview_url"] == PREVIEW
    assert b'<iframe id="report-preview" src="/reports/2026-10/preview.html"' in page.content
    narrowed = client.get(PAGE, {"team": w.alpha.pk})
    assert narrowed.context["files"][1][1] == "/api/v1/reports/2026-10/report.pdf?team=alpha"
    assert narrowed.context["preview_url"] == f"{PREVIEW}?team={w.alpha.pk}"
    # The links work with the dashboard session, scoped to the viewer.
    pdf = client.get(narrowed.context["files"][1][1])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    table = pq.read_table(io.BytesIO(b"".join(client.get(page.context["files"][3][1]).streaming_content)))
    assert set(table.column("team").to_pylist()) == {"alpha"}
    csv_text = client.get(page.context["files"][2][1]).content.decode()
    assert "llm-pretrain" in csv_text and "recsys-train" not in csv_text and "gamma-secret" not in csv_text


def test_preview_is_the_mailed_report_scoped_and_frameable_by_the_page_only(client, w):
    response = _login(client, w.member).get(PREVIEW)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Carbon and energy report — October 2026" in body and "All your teams" in body
    assert "llm-pretrain" in body and "recsys-train" not in body and "gamma-secret" not in body
    assert body.count("data:image/png;base64,") == 2 and "<script" not in body
    assert f'href="http://testserver{PAGE}"' in body
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in response["Content-Security-Policy"]
    assert client.get(PAGE)["X-Frame-Options"] == "DENY"  # every other page stays unframeable
    team = client.get(PREVIEW, {"team": w.alpha.pk}).content.decode()
    assert "<h1>Carbon and energy report — October 2026</h1>" in team and "Alpha · 1 October 2026" in team
    admin = _login(client, w.admin).get(PREVIEW).content.decode()
    assert "Organisation roll-up" in admin and "recsys-train" in admin and "gamma-secret" not in admin


def test_refused_requests(client, w):
    _login(client, w.member)
    assert client.get(PREVIEW, {"team": w.beta.pk}).status_code == 404
    assert client.get(PAGE, {"team": w.beta.pk}).status_code == 404
    assert client.get("/reports/2026-13/preview.html").status_code == 404
    future = (dt.date.today().replace(day=1) + dt.timedelta(days=40)).replace(day=1)
    assert client.get(f"/reports/{future:%Y-%m}/preview.html").status_code == 404
    later = client.get(f"/reports/{future:%Y-%m}/")
    assert later.status_code == 200 and later.context["files"] == [] and b"has not begun" in later.content
    _login(client, w.outsider)
    assert client.get(PREVIEW, {"team": w.alpha.pk}).status_code == 404
    client.logout()
    assert client.get(PREVIEW).status_code == 302


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)")
@pytest.mark.django_db(transaction=True)
def test_preview_renders_in_chromium(live_server, monkeypatch):
    """The month page in Chromium: the framed report renders (charts loaded, no console error:
    a blocked frame, image or style would be one). Screenshots to artifacts/screenshots/."""
    from django.conf import settings

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", 0)
    from playwright.sync_api import sync_playwright

    w = report_world()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", w.admin.username)
        page.fill("#id_password", "correct-horse-battery")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}{PAGE}")
        frame = page.frame_locator("#report-preview")
        assert frame.locator("h1").inner_text() == "Carbon and energy report — October 2026"
        images = frame.locator("img")
        assert images.count() == 2
        assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 300") for i in range(2))
        assert frame.locator(".rec").count() == 3
        page.screenshot(path=str(SHOTS / "20-report-month-preview.png"), full_page=True)
        if os.environ.get("CARBONLEDGER_DOC_SHOTS"):  # docs/img/report-*.png are made this way
            preview = browser.new_page(viewport={"width": 820, "height": 1100})
            preview.context.add_cookies(page.context.cookies())
            preview.goto(f"{live_server.url}{PREVIEW}")
            preview.screenshot(path=os.environ["CARBONLEDGER_DOC_SHOTS"] + "/report-email-top.png")
        browser.close()
    assert errors == []


def test_month_page_change_follows_the_comparison_rule_of_the_report(client, w):
    from accounting import models as m

    page = _login(client, w.admin).get(PAGE)
    totals = page.context["data"]["totals"]
    prev_kg = 30 * 0.6  # September: every day 600 g (report_world)
    assert totals["prev_co2e_kg"] == pytest.approx(prev_kg)
    assert totals["co2e_change_pct"] == pytest.approx((totals["co2e_kg"] - prev_kg) / prev_kg * 100)
    assert totals["co2e_change_reason"] is None
    # Three stray days of September: no percentage, the reason instead (as in the mailed report).
    m.TeamDay.objects.filter(day__month=9, day__day__gt=3).delete()
    page = client.get(PAGE)
    totals = page.context["data"]["totals"]
    assert totals["co2e_change_pct"] is None
    assert totals["co2e_change_reason"] == "no comparable data (previous period mostly empty)"
    assert b"no comparable data (previous period mostly empty) vs previous month" in page.content
