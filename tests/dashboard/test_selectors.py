"""Exact values from the dashboard selectors (scope, overview, job detail, Pareto, budgets, sites)."""

from __future__ import annotations

import datetime as dt

import pytest

from accounting import models as m
from accounting.selectors import dashboard as sel
from accounting.selectors import fleet
from accounting.selectors.budgets import budget_status

from .conftest import KWH, NOW

UTC = dt.UTC
WEEK = sel.Period(start=dt.date(2026, 3, 14), end=dt.date(2026, 3, 21))


def test_viewer_scope_kinds(world):
    member = sel.viewer_scope_get(user=world.member)
    assert (member.team_ids, member.admin_org_ids, member.is_admin) == (frozenset({world.t1.pk}), frozenset(), False)
    admin = sel.viewer_scope_get(user=world.admin)
    assert (admin.admin_org_ids, admin.is_admin) == (frozenset({world.org.pk}), True)
    assert sel.viewer_scope_get(user=world.superuser).is_superuser


def test_period_helpers():
    assert WEEK.days == 7 and WEEK.last_day == dt.date(2026, 3, 20)
    assert WEEK.previous() == sel.Period(start=dt.date(2026, 3, 7), end=dt.date(2026, 3, 14))


def test_overview_series_and_top_jobs(world):
    data = sel.overview_get(scope=sel.viewer_scope_get(user=world.admin), period=WEEK)
    alpha = next(g for g in data.groups if g.name == "Alpha")
    assert alpha.energy_kwh == [0, 0, 0, 0, pytest.approx(1000.0), 0, 0]
    assert alpha.co2e_operational_kg[4] == pytest.approx(400.0) and alpha.co2e_embodied_kg[4] == pytest.approx(10.0)
    assert [j["name"] for j in data.top_jobs] == ["alpha-train", "beta-failed", "alpha-live"]
    assert data.top_jobs[0]["co2e_kg"] == pytest.approx(410.0)
    assert data.lost_by_status == [
        {
            "status": "failed",
            "label": "Failed",
            "jobs": 1,
            "energy_kwh": pytest.approx(500.0),
            "co2e_kg": pytest.approx(205.0),
        }
    ]
    assert data.energy_split_kwh == {
        "Jobs: GPU idle baseline": pytest.approx(150.0),
        "Jobs: active, host and facility": pytest.approx(1350.0),
        "Fleet overhead (unallocated)": pytest.approx(300.0),
    }


@pytest.mark.parametrize("group_by", ["family", "device_model", "site"])
def test_overview_other_groupings(world, group_by):
    data = sel.overview_get(scope=sel.viewer_scope_get(user=world.admin), period=WEEK, group_by=group_by)
    totals = {g.name: round(sum(g.energy_kwh), 6) for g in data.groups}
    expected = {
        # JobHour rows in the week (alpha-train 1000, beta-failed 500, alpha-live 36) + overhead from TeamDay.
        "family": {"LLM": 1036.0, "Recommender": 500.0, "Fleet overhead (unallocated)": 300.0},
        "device_model": {"NVIDIA H100 SXM5 80GB": 1536.0, "Fleet overhead (unallocated)": 300.0},
        "site": {"Site A": 1800.0},
    }[group_by]
    assert totals == expected


def test_job_detail_values(world):
    d = sel.job_detail_get(scope=sel.viewer_scope_get(user=world.member), job_id=world.j1.pk)
    assert d["breakdown_energy_kwh"] == {
        "GPU active": pytest.approx(600.0),
        "GPU idle baseline": pytest.approx(100.0),
        "Host (CPU, DRAM)": pytest.approx(100.0),
        "Facility (PUE)": pytest.approx(200.0),
    }
    assert d["breakdown_co2e_kg"] == {"Operational": 400.0, "Embodied": 10.0}
    assert (d["co2e_low_kg"], d["co2e_high_kg"]) == (pytest.approx(369.0), pytest.approx(451.0))
    [eff] = d["efficiency"]
    assert (eff.per_label, eff.co2e_g_per, eff.energy_wh_per) == ("1k tokens", pytest.approx(0.205), pytest.approx(0.5))
    assert d["quality_label"] == "Measured" and d["gpu_count"] == 2 and d["duration_h"] == 4.0
    assert len(d["hours"]["hour"]) == 4
    assert sel.job_detail_get(scope=sel.viewer_scope_get(user=world.member), job_id=world.j2.pk) is None


def test_job_detail_device_traces_cover_the_allocation(world):
    start = world.j1.started_at
    for i, dev in enumerate(world.devices):
        for h in range(-1, 5):
            m.DeviceHour.objects.create(
                device=dev,
                hour=start + dt.timedelta(hours=h),
                energy_j=1,
                observed_s=3600,
                allocated_s=3600,
                avg_util_pct=50 + i,
                avg_power_w=400 + h,
            )
    d = sel.job_detail_get(scope=sel.viewer_scope_get(user=world.member), job_id=world.j1.pk)
    first = d["device_traces"][0]
    assert first["label"] == "node-a1 GPU0"
    assert first["power_w"] == [400.0, 401.0, 402.0, 403.0]  # the 4 hours of the allocation only
    assert d["device_traces"][1]["util_pct"] == [51.0] * 4


def test_quality_labels():
    assert [sel.quality_label(x) for x in (None, 1.0, 0.95, 0.6, 0.1)] == [
        "No ledger yet",
        "Measured",
        "Measured",
        "Partly modelled",
        "Modelled",
    ]


def test_pareto_front_higher_x_lower_y():
    pts = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (2.0, 3.0), (3.0, 4.0), (0.5, 2.0), (3.0, 3.0)]
    assert sel.pareto_front(pts) == [0, 1, 2, 6]  # duplicates share the front
    assert sel.pareto_front(pts, x_higher_is_better=False) == [5, 0]
    assert sel.pareto_front([(1.0, 5.0), (4.0, 1.0)]) == [1]
    assert sel.pareto_front([]) == []


def test_tradeoffs_front_and_units(world):
    cluster = world.j1.cluster
    base = dt.datetime(2026, 3, 15, 0, 0, tzinfo=UTC)
    specs = [("fast-dirty", 1.0, 100.0, 1e9), ("slow-clean", 4.0, 10.0, 1e9), ("dominated", 4.0, 100.0, 1e9)]
    for i, (name, hours, co2_g, tokens) in enumerate(specs):
        job = m.Job.objects.create(
            org=world.org,
            cluster=cluster,
            team=world.t1,
            scheduler_job_id=f"t{i}",
            name=name,
            kind="training",
            family="moe",
            status="completed",
            started_at=base,
            ended_at=base + dt.timedelta(hours=hours),
            units={"tokens": tokens},
            primary_unit="tokens",
        )
        m.JobFootprint.objects.create(job=job, co2e_operational_g=co2_g, co2e_embodied_g=0)
    data = sel.tradeoff_point_list(
        scope=sel.viewer_scope_get(user=world.member), period=WEEK, family="moe", kind="training"
    )
    assert data.unit == "tokens" and data.total == 3
    assert [p.name for p in data.front] == ["slow-clean", "fast-dirty"]
    assert data.front[1].x == pytest.approx(1e9 / 3600) and data.front[1].co2e_g_per_unit == pytest.approx(1e-7)


def test_budget_rows_match_the_budget_service_rule(world):
    budget = m.CarbonBudget.objects.create(
        team=world.t1, period_start=dt.date(2026, 3, 1), period_end=dt.date(2026, 4, 1), co2e_budget_g=1_000_000
    )
    rows = sel.team_budget_list(scope=sel.viewer_scope_get(user=world.member), now=NOW)
    [row] = rows
    ref = budget_status(budget=budget, as_of=NOW)
    assert row.spent_kg == pytest.approx(ref.spent_g / 1000) == pytest.approx(738.0)
    assert row.forecast_kg == pytest.approx(ref.forecast_g / 1000) == pytest.approx(738.0 * 31 / 19.5)
    assert row.status == "at_risk" and row.used_fraction == pytest.approx(0.738)
    assert row.run_rate_kg_per_day == pytest.approx(738.0 / 19.5)
    assert row.cumulative_kg[10] == pytest.approx(328.0) and row.cumulative_kg[-1] == pytest.approx(738.0)
    assert len(row.days) == 20  # 1–20 March, today included
    admin_rows = sel.team_budget_list(scope=sel.viewer_scope_get(user=world.admin), now=NOW)
    assert [(r.team, r.status) for r in admin_rows] == [("Alpha", "at_risk"), ("Beta", "no_budget")]


def test_site_shifting_savings_are_exact(world):
    """Two hours of load at a site on one day; the day's cleanest hour is 100 g/kWh."""
    zone = world.site.zone
    day = dt.datetime(2026, 3, 16, tzinfo=UTC)
    curve = [300.0] * 24
    curve[3] = 100.0
    curve[4] = 200.0
    for h, v in enumerate(curve):
        m.HourlyIntensity.objects.create(
            zone=zone, hour=day + dt.timedelta(hours=h), intensity_g_per_kwh=v, source="operator"
        )
    job = m.Job.objects.create(
        org=world.org,
        cluster=world.j1.cluster,
        team=world.t2,
        scheduler_job_id="s1",
        kind="training",
        family="llm",
        status="completed",
        started_at=day + dt.timedelta(hours=10),
        ended_at=day + dt.timedelta(hours=12),
    )
    m.JobHour.objects.create(job=job, hour=day + dt.timedelta(hours=10), energy_j=30 * KWH)
    m.JobHour.objects.create(job=job, hour=day + dt.timedelta(hours=11), energy_j=10 * KWH)
    data = fleet.site_overview_get(
        scope=sel.viewer_scope_get(user=world.admin),
        period=sel.Period(start=dt.date(2026, 3, 16), end=dt.date(2026, 3, 17)),
        team_id=world.t2.pk,
    )
    [site] = [s for s in data.sites if s.name == "Site A"]
    # As run: 40 kWh at 300 g = 12 kg. Re-ordered: 30 kWh at 100 g + 10 kWh at 200 g = 5 kg.
    assert data.actual_job_co2e_kg == pytest.approx(12.0)
    assert site.timeshift_saving_kg == pytest.approx(7.0)
    assert data.heatmap_kwh[0][10] == pytest.approx(30.0) and data.heatmap_kwh[0][11] == pytest.approx(10.0)
    assert data.cleanest_site == "Site A" and site.placeshift_saving_kg == pytest.approx(0.0)


def test_device_overview_idle_allocated_hours(world):
    start = dt.datetime(2026, 3, 16, tzinfo=UTC)
    d0, d1 = world.devices
    rows = [(d0, 0, 3600, 80.0, 500.0), (d0, 1, 3600, 2.0, 80.0), (d0, 2, 0, 0.0, 70.0), (d1, 0, 1800, 1.0, 75.0)]
    for dev, h, alloc, util, power in rows:
        m.DeviceHour.objects.create(
            device=dev,
            hour=start + dt.timedelta(hours=h),
            observed_s=3600,
            allocated_s=alloc,
            avg_util_pct=util,
            avg_power_w=power,
            energy_j=power * 3600,
            co2e_embodied_g=4.0,
        )
    data = fleet.device_overview_get(
        scope=sel.viewer_scope_get(user=world.admin),
        period=sel.Period(start=dt.date(2026, 3, 16), end=dt.date(2026, 3, 17)),
        now=NOW,
    )
    [model] = data.models
    assert (model.devices, model.observed_h, model.allocated_h, model.idle_allocated_h) == (2, 4.0, 2.5, 1.5)
    assert model.avg_util_pct == pytest.approx((80 + 2 + 0 + 1) / 4)
    assert model.avg_power_w == pytest.approx((500 + 80 + 70 + 75) / 4)
    assert model.embodied_charged_kg == pytest.approx(0.016)
    [emb] = data.embodied
    # Julian year (8766 h) like the ledger and docs/method.md; this asserted the selector's old
    # 8760 h copy (issue 12 step 5: one amortisation rule, accounting.domain.embodied).
    assert emb.charge_g_per_h == pytest.approx(150_000 / (5 * 8766 * 0.8))


def _teamday(world, day, kwh, co2e_kg):
    m.TeamDay.objects.create(
        org=world.org,
        team=world.t1,
        site=world.site,
        day=day,
        energy_j=kwh * KWH,
        co2e_operational_g=co2e_kg * 1000,
        co2e_embodied_g=0,
    )


def test_overview_change_withheld_when_the_previous_period_is_mostly_empty(world, client):
    data = sel.overview_get(scope=sel.viewer_scope_get(user=world.admin), period=WEEK)
    k = data.kpis
    assert k.previous_period == sel.Period(start=dt.date(2026, 3, 7), end=dt.date(2026, 3, 14))
    assert k.previous_coverage == pytest.approx(1 / 7)
    assert (k.energy_change_pct, k.co2e_change_pct) == (None, None)
    assert k.change_reason == "no comparable data (previous period mostly empty)"
    client.force_login(world.admin)
    html = client.get("/?period=custom&start=2026-03-14&end=2026-03-20").content.decode()
    assert html.count("no comparable data (previous period mostly empty)") == 2
    assert "% vs previous period" not in html


def test_overview_change_reported_when_the_previous_period_is_covered(world):
    # 3 more days of Alpha in the previous week: 4 of 7 days carry data.
    for i, kwh in enumerate((100, 50, 50)):
        _teamday(world, dt.date(2026, 3, 8 + i), kwh, kwh * 0.4)
    k = sel.overview_get(scope=sel.viewer_scope_get(user=world.admin), period=WEEK).kpis
    assert k.previous_coverage == pytest.approx(4 / 7)
    # 1800 kWh now vs 800 + 200 = 1000 kWh before; 738 kg vs 328 + 80 = 408 kg
    assert k.energy_change_pct == pytest.approx(80.0, rel=1e-12)
    assert k.co2e_change_pct == pytest.approx((738 - 408) / 408 * 100, rel=1e-12)
    assert k.change_reason is None and k.partial is False


def test_month_to_date_is_partial_and_compared_like_for_like(world):
    # 1–3 March (3 days so far) against 1–3 February, not the whole of February.
    mtd = sel.Period(start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 4))
    assert mtd.is_partial_month and mtd.comparison() == sel.Period(start=dt.date(2026, 2, 1), end=dt.date(2026, 2, 4))
    assert not sel.Period(start=dt.date(2026, 2, 1), end=dt.date(2026, 3, 1)).is_partial_month
    for d, kwh in ((1, 10), (2, 10), (3, 10)):
        _teamday(world, dt.date(2026, 3, d), kwh, 4)
    for d, kwh in ((1, 20), (2, 20), (3, 20), (10, 500), (20, 500)):
        _teamday(world, dt.date(2026, 2, d), kwh, 8)
    k = sel.overview_get(scope=sel.viewer_scope_get(user=world.admin), period=mtd).kpis
    assert k.partial is True and k.previous_coverage == 1.0
    assert k.energy_change_pct == pytest.approx(-50.0, rel=1e-12)
    assert k.co2e_change_pct == pytest.approx(-50.0, rel=1e-12)


def test_month_to_date_page_says_partial(world, client, frozen_now):
    client.force_login(world.admin)
    html = client.get("/?period=mtd").content.decode()
    assert 'id="partial-badge"' in html and "(the same days of the previous month)" in html


def test_overview_names_the_fleet_overhead_for_people(world, client, frozen_now):
    client.force_login(world.admin)
    html = client.get("/?period=7d").content.decode()
    assert "team NULL" not in html and "energy of GPUs no job held (idle, powered on)" in html
