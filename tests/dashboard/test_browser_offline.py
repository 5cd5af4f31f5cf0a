"""Browser walk over every page, the admin and the API docs included, with every request the
browser makes intercepted: none may leave 127.0.0.1 (fonts, logos, scripts: all served locally).

Also checks, as a reader at 1440 px would see them: the jobs table fits its card, the trade-offs
form shows the family the chart shows, a young running job is drawn from raw windows with a
live power chart that refreshes, a finished job's hourly trace zooms to window resolution, and
the Live page's fleet power chart. Screenshots go to artifacts/screenshots/walk-*.png.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounting import models as m
from tests import factories as f
from tests.dashboard.test_browser import CHROMIUM, SHOTS, _wait_figures, browser_page  # noqa: F401 - the fixture
from tests.telemetry.helpers import store_gpu_windows

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent"),
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


_BATCH_IDS = itertools.count(1)


def _windows(device, start: dt.datetime, n: int, power_w: float, step_s: int) -> None:
    step = dt.timedelta(seconds=step_s)
    store_gpu_windows(
        device=device,
        windows=[
            # a visible, deterministic ripple
            (i, start + step * i, start + step * (i + 1), p * step_s, p, 80.0 + i % 15)
            for i, p in ((i, power_w * (0.85 + 0.15 * ((i % 7) / 6))) for i in range(n))
        ],
        batch_id=next(_BATCH_IDS),
    )


def _shot(page, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"walk-{name}.png"), full_page=full_page)


@pytest.mark.django_db(transaction=True)
def test_every_page_loads_from_this_machine_only(live_server, browser_page):  # noqa: F811
    call_command(
        "seed_history", "--org", "demo", "--gpus", "16", "--jobs", "90", "--days", "10", "--seed", "7", "-v", "0"
    )
    org = m.Organization.objects.get(slug="demo")
    f.UserFactory(username="root", is_superuser=True, is_staff=True)
    now = timezone.now()
    # A young running job (25 minutes, 30 s windows on 2 GPUs) for the raw trace and live power.
    finished = (
        m.Job.objects.filter(org=org, status="completed", allocations__isnull=False, footprint__isnull=False)
        .order_by("-ended_at")
        .first()
    )
    devices = list(m.Device.objects.filter(host__cluster=finished.cluster).order_by("host_id", "index")[:2])
    young = m.Job.objects.create(
        org=org,
        cluster=finished.cluster,
        team=finished.team,
        scheduler_job_id="young-1",
        name="llama-8b-sft",
        kind="training",
        family="llm",
        status="running",
        started_at=now - dt.timedelta(minutes=25),
        requested_s=3 * 3600.0,
        units={"tokens": 9.0e8},
        primary_unit="tokens",
        model_meta={"parameters": 8.0e9, "precision": "bf16"},
    )
    for d in devices:
        m.JobAllocation.objects.create(job=young, device=d, start=young.started_at)
        _windows(d, young.started_at, 50, 520.0, 30)
    # Its ledger so far, consistent with the site: operational carbon at about the zone's factor.
    gpu_j = 2 * 520.0 * 1500
    energy_j = gpu_j * 1.2 * young.cluster.site.pue
    op_g = energy_j / 3.6e6 * young.cluster.site.zone.annual_intensity_g_per_kwh * 1.03
    m.JobFootprint.objects.create(
        job=young,
        energy_j=energy_j,
        gpu_energy_j=gpu_j,
        host_energy_j=gpu_j * 0.2,
        facility_energy_j=energy_j - gpu_j * 1.2,
        co2e_operational_g=op_g,
        co2e_embodied_g=8.0,
        co2e_low_g=(op_g + 8.0) * 0.9,
        co2e_high_g=(op_g + 8.0) * 1.1,
        device_hours=2 * 25 / 60,
        measured_fraction=1.0,
        last_window_end=now,
    )
    # Raw windows in the first 40 minutes of a finished job, for the zoom.
    alloc = finished.allocations.select_related("device").first()
    _windows(alloc.device, finished.started_at, 40, 450.0, 60)

    page, base = browser_page, live_server.url
    outside: list[str] = []
    seen: list[str] = []

    def guard(route):
        url = route.request.url
        seen.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            outside.append(url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", guard)

    page.goto(f"{base}/accounts/login/")
    _shot(page, "00-login")
    page.fill("#id_username", "root")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")

    month = finished.ended_at.strftime("%Y-%m")
    pages = [
        ("/", "01-overview"),
        ("/?period=mtd", "01b-overview-mtd"),
        ("/sites/", "03-sites"),
        ("/devices/", "04-devices"),
        ("/jobs/", "05-jobs"),
        (f"/jobs/{finished.pk}/", "06-job-detail"),
        (f"/jobs/{young.pk}/", "06b-job-young-live"),
        ("/live/", "08-live"),
        ("/tradeoffs/", "09-tradeoffs"),
        ("/budgets/", "10-budgets"),
        ("/methodology/", "11-methodology"),
        ("/reports/", "12-reports"),
        (f"/reports/{month}/", "13-report-month"),
        ("/planner/", "14-planner"),
        ("/admin/", "20-admin"),
        ("/admin/accounting/job/", "21-admin-jobs"),
        (f"/admin/accounting/job/{finished.pk}/change/", "22-admin-job"),
        ("/admin/accounting/gridzone/", "23-admin-zones"),
    ]
    for path, name in pages:
        response = page.goto(base + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        if page.locator("[data-figure]").count():
            _wait_figures(page)
        _shot(page, name)

        if path == "/jobs/":
            fits = page.evaluate(
                "() => { const t = document.querySelector('#jobs-table'); const w = t.closest('.table-wrap');"
                " return [t.scrollWidth, w.clientWidth]; }"
            )
            assert fits[0] <= fits[1], f"jobs table {fits[0]} px in a {fits[1]} px card at 1440 px"
        if path in ("/planner/", f"/jobs/{finished.pk}/"):
            # Every select shows its chosen option whole: text + padding + the arrow (24 px) fit.
            clipped = page.evaluate(
                """() => [...document.querySelectorAll('.form-grid select')].filter(s => {
                    const probe = document.createElement('span');
                    probe.style.font = getComputedStyle(s).font; probe.style.position = 'absolute';
                    probe.textContent = s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : '';
                    document.body.appendChild(probe); const w = probe.offsetWidth; probe.remove();
                    const cs = getComputedStyle(s), pad = parseFloat(cs.paddingLeft) + parseFloat(cs.paddingRight);
                    return w + pad + 24 > s.clientWidth; }).map(s => s.options[s.selectedIndex].text)"""
            )
            assert clipped == [], clipped
        if path == "/tradeoffs/":
            assert page.locator("#id_family").input_value() == "llm"
            assert "WebGL is not supported" not in page.locator("[data-figure=fig-tradeoff]").inner_text()
            assert page.locator("[data-figure=fig-tradeoff] .scatterlayer .point").count() > 0
            assert "LLM" in page.locator("main, body").first.inner_text()
        if path == f"/jobs/{young.pk}/":
            assert page.locator("[data-zoom-for=fig-trace]").get_attribute("data-resolution") == "window"
            page.wait_for_function(
                "() => document.getElementById('job-live-updated').textContent.startsWith('Updated')", timeout=15_000
            )
            assert page.locator("#job-live-power").inner_text().endswith("kW")
        if path == f"/jobs/{finished.pk}/":
            t0 = finished.started_at.strftime("%Y-%m-%d %H:%M:%S")
            t1 = (finished.started_at + dt.timedelta(minutes=50)).strftime("%Y-%m-%d %H:%M:%S")
            page.evaluate(
                "([a, b]) => Plotly.relayout(document.querySelector('[data-figure=fig-trace]'), {'xaxis.range': [a, b]})",
                [t0, t1],
            )
            page.wait_for_selector("[data-zoom-for=fig-trace][data-resolution=window]", timeout=15_000)
            page.wait_for_function("() => document.getElementById('trace-note').textContent.startsWith('Raw windows')")
            points = page.evaluate("() => document.querySelector('[data-figure=fig-trace]').data[0].x.length")
            assert points == 40
            titles = page.evaluate(
                "() => document.querySelector('[data-figure=fig-trace]').layout.annotations.map(a => a.text)"
            )
            assert titles == ["<b>Power per GPU (W, per window)</b>", "<b>Utilisation per GPU (%, per window)</b>"]
            _shot(page, "06c-job-detail-zoomed")
        if path == "/live/":
            page.wait_for_function(
                "() => document.getElementById('live-updated').textContent.startsWith('Updated')", timeout=15_000
            )
            ys = page.evaluate("() => document.querySelector('[data-figure=fig-fleet-power]').data[0].y.length")
            assert ys >= 20  # the minutes of the young job's windows

    # The API docs: Swagger UI and ReDoc render from local files.
    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    page.wait_for_load_state("networkidle")
    _shot(page, "30-api-docs", full_page=False)
    page.goto(f"{base}/api/redoc/")
    page.wait_for_selector("text=CarbonLedger API", timeout=30_000)
    page.wait_for_load_state("networkidle")
    _shot(page, "31-api-redoc", full_page=False)

    assert outside == [], outside
    assert any(re.search(r"/assets/redoc-[^/]+\.standalone\.js$", u) for u in seen)
    assert any(u.endswith("/static/dashboard/docs-mark.svg") for u in seen)  # the logo, from here
    assert [e for e in page.errors if "favicon" not in e] == []
