"""Monthly report content: a seeded month (tests/accounting/report_world.py, built through
ingest and attribution) with exact totals equal to the ledger's (TeamDay, JobFootprint, ledger
entries), comparisons, recommendations' figures from the what-if engine, and team scoping."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math

import pytest
from django.db.models import Sum

from accounting import models as m
from accounting.domain.comparison import NO_PREVIOUS_DATA
from accounting.reports.charts import CID_ENERGY, CID_FAMILY, report_charts
from accounting.reports.recommendations import report_recommendations
from accounting.reports.render import report_html, report_pdf, report_text
from accounting.selectors.access import principal_for
from accounting.selectors.reports import month_jobs_csv_rows, month_report, month_report_fingerprint

from .report_world import CPU_W, DRAM_W, HISTORY_CO2E_G_PER_DAY, KWH, MONTH, TODAY, report_world

pytestmark = pytest.mark.django_db

# Hand arithmetic of the seeded month (report_world's docstring): IT energy in Wh.
JOBS_GPU_ACTIVE_WH = (600 - 70) * 4 * 8 + (400 - 70) * 2 * 3  # pretrain 6 h + 2 h; recsys 3 h
JOBS_GPU_IDLE_WH = 70 * 4 * 8 + 70 * 2 * 6 + 70 * 2 * 3  # pretrain, serving, recsys
JOBS_HOST_WH = 3 * 600 + 3 * 450 + 2 * 300  # host 600 W by GPUs held (8/8, 6/8, 4/8)
OVERHEAD_IT_WH = 70 * 2 * 3 + 150 * 3 + 70 * 4 * 2 + 300 * 2
ORG_IT_WH = JOBS_GPU_ACTIVE_WH + JOBS_GPU_IDLE_WH + JOBS_HOST_WH + OVERHEAD_IT_WH
PUE, INTENSITY = 1.4, 500.0


@pytest.fixture
def w():
    return report_world()


def _org(w, **kw):
    return month_report(scope=principal_for(user=w.admin), month=MONTH, team_id=None, today=TODAY, **kw)


def _alpha(w, **kw):
    return month_report(scope=principal_for(user=w.member), month=MONTH, team_id=w.alpha.pk, today=TODAY, **kw)


def _teamday(*, end: dt.date = dt.date(2026, 11, 1), **filters) -> dict:
    return m.TeamDay.objects.filter(day__gte=MONTH, day__lt=end, **filters).aggregate(
        e=Sum("energy_j"), op=Sum("co2e_operational_g"), emb=Sum("co2e_embodied_g"), idle=Sum("gpu_idle_energy_j")
    )


def test_org_totals_equal_the_ledger_and_the_hand_arithmetic(w):
    r = _org(w)
    ledger = _teamday(org=w.org)
    assert r.totals.energy_j == ledger["e"]
    assert r.totals.co2e_operational_g == ledger["op"]
    assert r.totals.co2e_embodied_g == ledger["emb"]
    assert r.totals.energy_j == pytest.approx(ORG_IT_WH * PUE * 3600, rel=1e-12)  # 39.508 kWh
    assert r.totals.co2e_operational_g == pytest.approx(ORG_IT_WH * PUE / 1000 * INTENSITY, rel=1e-12)  # 19754 g
    entries = m.LedgerEntry.objects.filter(org=w.org).aggregate(e=Sum("energy_j"), op=Sum("co2e_operational_g"))
    assert r.totals.energy_j == pytest.approx(entries["e"], rel=1e-12)
    overhead = _teamday(org=w.org, team__isnull=True)
    assert r.overhead.energy_j == overhead["e"] == pytest.approx(OVERHEAD_IT_WH * PUE * 3600, rel=1e-12)
    assert [t.label for t in r.by_team] == ["Alpha", "Beta", "Fleet overhead (unallocated)"]
    assert math.fsum(t.energy_j for t in r.by_team) == pytest.approx(r.totals.energy_j, rel=1e-12)
    assert [(s.site, s.zone, s.pue) for s in r.by_site] == [("Site A", "ZZ-COAL", 1.4)]
    assert r.by_site[0].intensity_g_per_kwh == pytest.approx(500.0, rel=1e-12)
    assert r.overhead_policy == "separate" and all(t.overhead_co2e_g == 0.0 for t in r.by_team)


def test_energy_split_and_job_breakdowns_equal_the_job_footprints(w):
    r = _org(w)
    fps = m.JobFootprint.objects.filter(job__org=w.org).aggregate(
        gpu=Sum("gpu_energy_j"), idle=Sum("gpu_idle_energy_j"), host=Sum("host_energy_j"), fac=Sum("facility_energy_j")
    )
    s = r.energy_split
    assert s.gpu_active_j + s.gpu_idle_j == fps["gpu"] and s.gpu_idle_j == fps["idle"]
    assert (s.host_j, s.facility_j) == (fps["host"], fps["fac"])
    assert s.gpu_active_j == pytest.approx(JOBS_GPU_ACTIVE_WH * 3600, rel=1e-12)  # 18.94 kWh
    assert s.gpu_idle_j == pytest.approx(JOBS_GPU_IDLE_WH * 3600, rel=1e-12)  # 3.5 kWh
    assert s.host_j == pytest.approx(JOBS_HOST_WH * 3600, rel=1e-12)  # 3.75 kWh
    assert s.facility_j == pytest.approx((PUE - 1) * (JOBS_GPU_ACTIVE_WH + JOBS_GPU_IDLE_WH + JOBS_HOST_WH) * 3600)
    assert r.jobs_count == 4
    assert r.idle_allocated_share == pytest.approx(JOBS_GPU_IDLE_WH / (JOBS_GPU_ACTIVE_WH + JOBS_GPU_IDLE_WH))
    assert (r.lost_jobs, r.lost_energy_j) == (1, m.JobFootprint.objects.get(job=w.recsys).energy_j)
    assert [(f.label, f.jobs) for f in r.by_family] == [("LLM", 3), ("Recommender", 1)]
    assert [(d.label, d.jobs) for d in r.by_device_model] == [("NVIDIA H100 SXM5 80GB", 4)]
    assert [j.name for j in r.top_jobs] == ["llm-pretrain", "llm-pretrain", "recsys-train", "chat-serving"]
    top = r.top_jobs[0]
    fp = m.JobFootprint.objects.get(job=w.pretrain)
    assert (top.energy_j, top.co2e_g) == (fp.energy_j, fp.co2e_operational_g + fp.co2e_embodied_g)
    # One job per unit first (the worst of each), then the rest; never compared across units.
    assert [(j.name, j.unit_label) for j in r.least_efficient] == [
        ("chat-serving", "query"),
        ("recsys-train", "sample"),
        ("llm-pretrain", "1k tokens"),
        ("llm-pretrain", "1k tokens"),
    ]
    assert r.least_efficient[2].co2e_per_shown_unit_g == pytest.approx(top.co2e_g / 4e9 * 1000)


def test_period_statement_quality_factors_and_band(w):
    r = _org(w)
    assert dict(r.quality.energy_shares) == pytest.approx(
        {"measured": 1.0, "integrated": 0.0, "interpolated": 0.0, "modelled": 0.0}, abs=1e-12
    )
    entries = m.LedgerEntry.objects.filter(org=w.org).aggregate(lo=Sum("co2e_low_g"), hi=Sum("co2e_high_g"))
    assert r.quality.co2e_low_g == pytest.approx(entries["lo"], rel=1e-12)
    assert r.quality.co2e_high_g == pytest.approx(entries["hi"], rel=1e-12)
    assert r.quality.co2e_low_g < r.totals.co2e_g < r.quality.co2e_high_g
    assert len(r.factors) == 1
    f = r.factors[0]
    assert f.energy_j == pytest.approx(r.totals.energy_j, rel=1e-12)
    assert f.co2e_operational_g == pytest.approx(19754.0, rel=1e-12)
    assert (f.source, f.basis, f.gases, f.versions) == ("annual:operator:2024", "lifecycle", "co2e", ("1",))
    assert r.method_versions and r.embodied_versions
    d = r.disclosure
    assert d is not None and d.location_based_g == pytest.approx(r.totals.co2e_operational_g, rel=1e-12)
    assert d.energy_kwh == pytest.approx(r.totals.energy_j / KWH, rel=1e-12)
    html = report_html(r, for_email=False)
    text = report_text(r)
    # No instruments, no residual mix, no WUE, no grid water: the slots say so.
    assert html.count("not configured") == 3 and "Scope 2, market-based" in html
    assert "Scope 2 market-based:                  not configured" in text
    assert "Water on site (WUE):                   not configured" in text
    assert "Measured: 100.0 %" in text and "Modelled: 0.0 %" in text
    assert "annual:operator:2024 v1 (life-cycle (incl. upstream), CO₂e (CO₂, CH₄, N₂O)): 39.508 kWh" in text


def test_comparisons_previous_month_last_year_and_a_partial_month(w):
    r = _org(w)
    prev = 30 * HISTORY_CO2E_G_PER_DAY
    assert (r.vs_previous.period_start, r.vs_previous.period_end) == (dt.date(2026, 9, 1), dt.date(2026, 10, 1))
    assert r.vs_previous.coverage == 1.0 and r.vs_previous.co2e_g == prev
    assert r.vs_previous.change.change_pct == pytest.approx((r.totals.co2e_g - prev) / prev * 100)
    assert r.vs_last_year.change.change_pct is None and r.vs_last_year.change.reason == NO_PREVIOUS_DATA
    assert "no comparable data (same month last year)" in report_text(r)
    # On 10 October the month is partial: 1-10 Oct against 1-10 Sep, day for day.
    partial = month_report(scope=principal_for(user=w.admin), month=MONTH, team_id=None, today=dt.date(2026, 10, 10))
    assert partial.partial and partial.period_end == dt.date(2026, 10, 11)
    assert (partial.vs_previous.period_start, partial.vs_previous.period_end) == (
        dt.date(2026, 9, 1),
        dt.date(2026, 9, 11),
    )
    assert partial.vs_previous.co2e_g == 10 * HISTORY_CO2E_G_PER_DAY
    assert partial.totals.energy_j == _teamday(org=w.org, end=dt.date(2026, 10, 11))["e"]
    assert "month to date" in report_html(partial, for_email=True)


def test_recommendations_are_the_what_if_engines_figures(w):
    r = _alpha(w)
    recs = report_recommendations(r)
    assert [x.kind for x in recs] == ["zone_move", "power_cap", "consolidate_idle"]
    zone, cap, idle = recs
    gpu_kwh = 4 * 0.6 * (6 + 2)  # both runs of llm-pretrain, each projected on its own
    # A projection starts from the job's ledger footprint, so the move carries its host share too:
    # 4 of host a1's 8 slots x (CPU + DRAM) W over the 8 h.
    host_kwh = (CPU_W + DRAM_W) / 1000 * 4 / 8 * (6 + 2)
    assert zone.saving_co2e_g == pytest.approx((gpu_kwh + host_kwh) * (1.4 * 500 - 1.1 * 40), rel=1e-9)  # 14.2 kg
    assert "Site B (ZZ-HYDRO)" in zone.title and zone.job_id == w.pretrain.pk
    ratio = 490 / 600
    slow = 0.7 * ratio**-0.5 + 0.15 * ratio**-0.05 + 0.15
    saved_kwh = 4 * (600 - 490 * slow) * (6 + 2) / 1000
    assert cap.saving_co2e_g == pytest.approx(saved_kwh * PUE * INTENSITY, rel=1e-9)
    assert cap.saving_energy_j == pytest.approx(saved_kwh * PUE * KWH, rel=1e-9)
    assert f"runs about {(slow - 1) * 100:.0f} % longer" in cap.figure
    # chat-serving: 2 GPUs x 6 h at their 70 W idle baseline.
    assert r.idle_allocations.device_h == pytest.approx(12.0)
    assert idle.saving_co2e_g == pytest.approx(12 * 0.070 * PUE * INTENSITY, rel=1e-9)  # 588 g
    assert all(x.assumptions for x in recs)
    text = report_text(r)
    assert text.index("1. Run “llm-pretrain” at Site B") < text.index("2. Cap the GPUs") < text.index("3. Release")
    assert report_recommendations(r) is recs  # computed once per report


def test_team_report_is_scoped_to_the_team(w):
    r = _alpha(w)
    ledger = _teamday(team=w.alpha)
    assert (r.totals.energy_j, r.totals.co2e_operational_g) == (ledger["e"], ledger["op"])
    jobs = m.JobFootprint.objects.filter(job__team=w.alpha).aggregate(e=Sum("energy_j"))
    assert r.totals.energy_j == pytest.approx(jobs["e"], rel=1e-12)
    assert r.overhead is None and r.overhead_share is None
    assert {j.name for j in r.top_jobs} == {"llm-pretrain", "chat-serving"}
    rows = list(month_jobs_csv_rows(r))
    names = [row[rows[0].index("name")] for row in rows[1:]] if "name" in rows[0] else [str(x) for x in rows[1:]]
    for body in (report_html(r, for_email=True), report_text(r), "\n".join(",".join(map(str, x)) for x in rows)):
        assert "recsys-train" not in body and "gamma-secret" not in body and "Beta" not in body
    assert len(rows) == 1 + 3 and all("llm-pretrain" in n or "chat-serving" in n for n in names)
    with pytest.raises(m.Team.DoesNotExist):
        month_report(scope=principal_for(user=w.outsider), month=MONTH, team_id=w.alpha.pk, today=TODAY)
    org = _org(w)
    assert "gamma-secret" not in report_text(org) and "Gamma" not in report_html(org, for_email=False)


def test_pro_rata_policy_shows_each_teams_share_of_the_overhead_apart(w):
    m.Organization.objects.filter(pk=w.org.pk).update(overhead_policy="pro_rata")
    org = _org(w)
    alpha, beta = _teamday(team=w.alpha), _teamday(team=w.beta)
    overhead = _teamday(org=w.org, team__isnull=True)
    share = alpha["e"] / (alpha["e"] + beta["e"])
    assert org.by_team[0].overhead_energy_j == pytest.approx(overhead["e"] * share, rel=1e-12)
    assert math.fsum(t.overhead_energy_j for t in org.by_team) == pytest.approx(overhead["e"], rel=1e-12)
    team = _alpha(w)
    assert team.overhead_share.energy_j == pytest.approx(overhead["e"] * share, rel=1e-12)
    assert team.totals.energy_j == alpha["e"]  # the share is shown apart, never added
    assert "pro rata to energy" in report_text(team)


def test_forms_mail_html_has_cid_images_and_no_script_page_html_inlines_them_pdf(w):
    r = _alpha(w)
    mail = report_html(r, for_email=True, dashboard_url="https://cl.example/reports/2026-10/?team=1")
    assert f'src="cid:{CID_ENERGY}"' in mail and f'src="cid:{CID_FAMILY}"' in mail
    assert "<script" not in mail.lower() and "data:image" not in mail
    assert 'href="https://cl.example/reports/2026-10/?team=1"' in mail
    page = report_html(r, for_email=False)
    assert page.count("data:image/png;base64,") == 2
    charts = report_charts(r)
    assert set(charts) == {CID_ENERGY, CID_FAMILY} and all(png.startswith(b"\x89PNG") for png in charts.values())
    pdf = report_pdf(r)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 20_000
    assert "Dashboard: https://x.example/m" in report_text(r, dashboard_url="https://x.example/m")


def test_fingerprint_is_stable_and_changes_with_the_ledger(w):
    a, b = _alpha(w), _alpha(w)
    assert month_report_fingerprint(a) == month_report_fingerprint(b)
    day = m.TeamDay.objects.filter(team=w.alpha, day__gte=MONTH).first()
    day.co2e_operational_g += 1.0
    day.save()
    assert month_report_fingerprint(_alpha(w)) != month_report_fingerprint(a)


def test_csv_rows_have_the_dashboard_export_columns(w):
    from accounting.selectors.dashboard.jobs import job_export_rows
    from accounting.selectors.job_filters import JobFilters

    r = _org(w)
    rows = list(month_jobs_csv_rows(r))
    header = next(iter(job_export_rows(scope=principal_for(user=w.admin), filters=JobFilters())))
    assert rows[0] == header and len(rows) == 1 + 4
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    assert "gamma-secret" not in buf.getvalue()


def test_a_period_known_from_daily_aggregates_only_says_what_is_not_available(w):
    # History imported as TeamDay/JobFootprint only (no ledger entries, no hourly aggregates):
    # the totals stand, the ledger-entry and hourly figures are "not available", never 0.
    m.LedgerEntry.objects.all().delete()
    m.TeamHour.objects.all().delete()
    r = _org(w)
    assert r.totals.energy_j == _teamday(org=w.org)["e"] and r.quality.energy_shares == () and r.factors == ()
    text = report_text(r)
    assert "Uncertainty band:                      not available" in text
    assert "Scope 2 market-based:                  not available" in text
    assert "not available (daily aggregates only, no ledger entries)" in text and "Likely range" not in text
    html = report_html(r, for_email=True)
    assert html.count(">not available<") == 4 and "not configured" not in html


def test_life_cycle_intensities_say_the_upstream_part_is_inside_scope_2(w):
    r = _org(w)
    assert r.disclosure.location_basis.label == "life-cycle"
    assert "Upstream of electricity (Scope 3.3):   included in Scope 2 (life-cycle factors)" in report_text(r)


def test_an_empty_month_renders_in_every_form(w):
    r = month_report(scope=principal_for(user=w.member), month=dt.date(2026, 8, 1), team_id=w.alpha.pk, today=TODAY)
    assert r.totals.energy_j == 0.0 and r.jobs_count == 0 and r.top_jobs == ()
    assert r.vs_previous.change.reason == NO_PREVIOUS_DATA and report_recommendations(r) == ()
    text = report_text(r)
    assert "No jobs." in text and "no energy recorded" in text
    assert "No change the what-if engine can compute would save carbon this month." in text
    assert report_pdf(r).startswith(b"%PDF-") and "not available" not in report_html(r, for_email=True)


def test_start_window_when_the_jobs_site_is_already_the_cleanest(w):
    # Site B's grid made dirtier: Site A is the cleanest, so the job moves in time, not place,
    # within a day, on Site A's zone hourly series (5-6 Oct: 500 g/kWh, 100 from 12:00 to 18:00).
    m.GridZone.objects.filter(code="ZZ-HYDRO").update(annual_intensity_g_per_kwh=900.0)
    zone = m.GridZone.objects.get(code="ZZ-COAL")
    start = dt.datetime(2026, 10, 4, 23, tzinfo=dt.UTC)
    m.HourlyIntensity.objects.bulk_create(
        m.HourlyIntensity(
            zone=zone,
            hour=start + dt.timedelta(hours=h),
            intensity_g_per_kwh=100.0 if 13 <= h < 19 else 500.0,
            source="operator",
        )
        for h in range(40)
    )
    recs = report_recommendations(_alpha(w))
    assert [x.kind for x in recs] == ["start_window", "power_cap", "consolidate_idle"]
    window = recs[0]
    first_run = m.JobFootprint.objects.get(job=w.pretrain)
    # Only the 5 Oct run has a series around it (the 12 Oct rerun is left out, and said so).
    assert window.saving_co2e_g == pytest.approx(first_run.energy_j / KWH * (500.0 - 100.0), rel=1e-9)
    assert window.title.startswith("Start “llm-pretrain” at 12:00 UTC instead of 00:00 UTC")
    assert "1 of the 2 runs have an hourly grid series to choose from; the others are left out" in window.assumptions


def test_an_upgrade_that_would_not_pay_back_is_left_out(w):
    from accounting.reports.recommendations import _upgrade

    r = _alpha(w)
    upgrade = _upgrade(r, w.site_a)
    # The month's jobs on 4 + 2 H100s over 744 h (mostly idle) moved to B200s: more idle power.
    assert upgrade.kind == "upgrade" and "6 NVIDIA H100 SXM5 80GB GPUs" in upgrade.title
    assert "NVIDIA B200" in upgrade.title and upgrade.payback_years is None
    assert upgrade.saving_co2e_g < 0
    assert "upgrade" not in [x.kind for x in report_recommendations(r)]


def test_a_reports_parts_draw_each_chart_once_and_the_pdf_uses_those_pngs(w, monkeypatch):
    """Rendering the e-mail's parts draws each chart in one matplotlib pass (no measuring
    pass for a tight bounding box) and the PDF embeds the very PNGs of the inline parts."""
    import matplotlib.figure

    from accounting.reports import message as msg_mod
    from accounting.reports import render as render_mod

    draws = []
    real_draw = matplotlib.figure.Figure.draw
    monkeypatch.setattr(
        matplotlib.figure.Figure, "draw", lambda fig, renderer: draws.append(fig) or real_draw(fig, renderer)
    )
    pdf_charts = []
    real_pdf = render_mod.report_pdf
    monkeypatch.setattr(
        msg_mod, "report_pdf", lambda report, **kw: pdf_charts.append(kw["charts"]) or real_pdf(report, **kw)
    )
    r = _alpha(w)
    parts = msg_mod.report_parts_build(report=r, dashboard_url="https://x.example/m")
    assert len(draws) == 2  # two charts, one pass each
    assert pdf_charts == [dict(parts.images)]
    assert parts.pdf_bytes.startswith(b"%PDF-")
    assert msg_mod.UNSUBSCRIBE_SLOT in parts.html and msg_mod.UNSUBSCRIBE_SLOT in parts.text
