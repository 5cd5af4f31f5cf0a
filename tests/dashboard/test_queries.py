"""No N+1: every page runs a fixed number of queries however many jobs, teams and devices exist."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from accounting import models as m
from tests import factories as f

from .conftest import KWH

UTC = dt.UTC

# (url name, max queries incl. session + user lookups)
# The overview's statement card (accounting.selectors.disclosure.disclosure_period) adds 2
# queries, and 7 per site with energy in the period (this world has no hourly roll-up rows).
PAGES = [
    ("/?period=7d", 10),
    ("/?period=7d&group_by=family", 11),
    ("/?period=7d&group_by=device_model", 11),
    ("/sites/?period=7d", 8),
    ("/devices/?period=7d", 6),
    ("/jobs/", 8),
    ("/jobs/?sort=-co2e&device=h100-sxm5-80gb", 8),
    ("/live/", 6),  # + the fleet power (one query)
    ("/live/data.json", 6),
    ("/tradeoffs/?period=7d", 6),
    ("/planner/", 8),
    ("/budgets/", 6),
    ("/methodology/", 12),
    (
        "/reports/",
        8,
    ),  # + the user's report subscriptions: address, memberships, opt-outs by link/page and by organisation
    ("/reports/2026-03/", 10),  # + the previous period's days with data (comparison coverage)
]


@pytest.fixture
def bigger_world(world):
    """40 more jobs over 4 more teams, 8 more devices, budgets and device-hours."""
    cluster = world.j1.cluster
    host = f.HostFactory(cluster=cluster, hostname="node-a2")
    devices = [f.DeviceFactory(host=host, index=i) for i in range(8)]
    teams = [f.TeamFactory(org=world.org, name=f"Team {i}", slug=f"team-x{i}") for i in range(4)]
    start = dt.datetime(2026, 3, 17, 0, 0, tzinfo=UTC)
    for i in range(40):
        job = m.Job.objects.create(
            org=world.org,
            cluster=cluster,
            team=teams[i % 4],
            scheduler_job_id=f"x{i}",
            name=f"x-{i}",
            kind="inference" if i % 2 else "training",
            family=["llm", "moe", "recommender", "other"][i % 4],
            status=["completed", "failed", "running", "preempted"][i % 4],
            started_at=start + dt.timedelta(hours=i),
            ended_at=None if i % 4 == 2 else start + dt.timedelta(hours=i + 2),
            units={"tokens": 1e6 * (i + 1)},
            primary_unit="tokens",
            username=f"u{i % 5}",
        )
        m.JobFootprint.objects.create(
            job=job,
            energy_j=(i + 1) * KWH,
            co2e_operational_g=100.0 * (i + 1),
            co2e_embodied_g=5.0,
            device_hours=2,
            last_window_end=start + dt.timedelta(hours=i + 2),
        )
        for d in devices[i % 8 : i % 8 + 2]:
            m.JobAllocation.objects.create(job=job, device=d, start=job.started_at, end=job.ended_at)
        m.JobHour.objects.create(job=job, hour=job.started_at, energy_j=KWH, co2e_operational_g=100.0)
        for t in teams:
            m.TeamDay.objects.get_or_create(
                org=world.org,
                team=t,
                site=world.site,
                day=job.started_at.date(),
                defaults={"energy_j": KWH, "co2e_operational_g": 10.0},
            )
    for t in teams:
        m.CarbonBudget.objects.create(
            team=t, period_start=dt.date(2026, 3, 1), period_end=dt.date(2026, 4, 1), co2e_budget_g=5000
        )
    for d in devices:
        for h in range(24):
            m.DeviceHour.objects.create(
                device=d,
                hour=start + dt.timedelta(hours=h),
                observed_s=3600,
                allocated_s=1800,
                avg_util_pct=40,
                avg_power_w=300,
                energy_j=300 * 3600,
            )
    return world


@pytest.mark.parametrize(("url", "max_queries"), PAGES)
def test_page_query_count_is_bounded(client, bigger_world, frozen_now, django_assert_max_num_queries, url, max_queries):
    client.force_login(bigger_world.admin)
    with django_assert_max_num_queries(max_queries):
        response = client.get(url)
    assert response.status_code == 200


def test_job_detail_query_count(client, bigger_world, frozen_now, django_assert_max_num_queries):
    client.force_login(bigger_world.admin)
    job = m.Job.objects.get(scheduler_job_id="x5")
    # 9 for the page, 6 for its dual Scope 2 and water card (job hours, the site's instruments,
    # its hourly energy, residual mixes, its WUE series, grid water).
    with django_assert_max_num_queries(15):
        assert client.get(reverse("dashboard:job-detail", args=[job.pk])).status_code == 200


def test_csv_export_query_count(client, bigger_world, frozen_now, django_assert_max_num_queries):
    client.force_login(bigger_world.admin)
    with django_assert_max_num_queries(6):
        response = client.get(reverse("dashboard:jobs-export"))
        rows = b"".join(response.streaming_content).decode().strip().splitlines()
    assert len(rows) == 1 + 43
