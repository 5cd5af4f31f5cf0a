"""A small, exact world for the dashboard tests: two organisations, three teams, one site each,
jobs with footprints and hourly rows, TeamDay rows (incl. the fleet-overhead account) and the
four kinds of viewer (member, org admin, superuser, outsider)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from accounting import models as m
from tests import factories as f

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
KWH = 3.6e6


@dataclass
class World:
    org: m.Organization
    other_org: m.Organization
    t1: m.Team
    t2: m.Team
    t3: m.Team
    site: m.Site
    other_site: m.Site
    devices: list
    j1: m.Job
    j2: m.Job
    j3: m.Job
    running: m.Job
    member: object
    admin: object
    superuser: object
    outsider: object


def _job(
    cluster,
    team,
    *,
    sched: str,
    name: str,
    status: str,
    start: dt.datetime,
    hours: float,
    kwh: float,
    op_g: float,
    emb_g: float,
    family: str = "llm",
    kind: str = "training",
    units=None,
    primary="",
    devices=(),
    measured: float = 1.0,
    username: str = "ana",
) -> m.Job:
    end = None if status == "running" else start + dt.timedelta(hours=hours)
    job = f.JobFactory(
        cluster=cluster,
        team=team,
        scheduler_job_id=sched,
        name=name,
        status=status,
        started_at=start,
        ended_at=end,
        family=family,
        kind=kind,
        units=units or {},
        primary_unit=primary,
        username=username,
    )
    m.JobFootprint.objects.create(
        job=job,
        energy_j=kwh * KWH,
        gpu_energy_j=kwh * KWH * 0.7,
        gpu_idle_energy_j=kwh * KWH * 0.1,
        host_energy_j=kwh * KWH * 0.1,
        facility_energy_j=kwh * KWH * 0.2,
        co2e_operational_g=op_g,
        co2e_embodied_g=emb_g,
        co2e_low_g=(op_g + emb_g) * 0.9,
        co2e_high_g=(op_g + emb_g) * 1.1,
        device_hours=hours * max(len(devices), 1),
        measured_fraction=measured,
        is_final=status != "running",
        method_version="test-1",
        last_window_end=start + dt.timedelta(hours=hours),
    )
    for d in devices:
        m.JobAllocation.objects.create(job=job, device=d, start=start, end=end)
    for h in range(int(hours)):
        m.JobHour.objects.create(
            job=job,
            hour=start + dt.timedelta(hours=h),
            energy_j=kwh * KWH / hours,
            gpu_energy_j=kwh * KWH * 0.7 / hours,
            co2e_operational_g=op_g / hours,
            co2e_embodied_g=emb_g / hours,
            intensity_g_per_kwh=400.0,
        )
    return job


@pytest.fixture
def world(db) -> World:
    org = f.OrganizationFactory(slug="acme", name="Acme")
    other = f.OrganizationFactory(slug="globex", name="Globex")
    t1 = f.TeamFactory(org=org, name="Alpha", slug="alpha")
    t2 = f.TeamFactory(org=org, name="Beta", slug="beta")
    t3 = f.TeamFactory(org=other, name="Gamma", slug="gamma")
    zone = f.GridZoneFactory(code="ZZ-TEST", annual_intensity_g_per_kwh=400.0)
    site = f.SiteFactory(org=org, name="Site A", slug="site-a", zone=zone, pue=1.5)
    other_site = f.SiteFactory(org=other, name="Site G", slug="site-g", zone=zone, pue=1.2)
    cluster = f.ClusterFactory(site=site, slug="ca")
    other_cluster = f.ClusterFactory(site=other_site, slug="cg")
    host = f.HostFactory(cluster=cluster, hostname="node-a1")
    other_host = f.HostFactory(cluster=other_cluster, hostname="node-g1")
    devices = [f.DeviceFactory(host=host, index=i) for i in range(2)]
    other_dev = f.DeviceFactory(host=other_host, index=0)
    d0 = dt.datetime(2026, 3, 18, 8, 0, tzinfo=UTC)
    j1 = _job(
        cluster,
        t1,
        sched="1001",
        name="alpha-train",
        status="completed",
        start=d0,
        hours=4,
        kwh=1000,
        op_g=400_000,
        emb_g=10_000,
        units={"tokens": 2_000_000_000},
        primary="tokens",
        devices=devices,
        username="ana",
    )
    j2 = _job(
        cluster,
        t2,
        sched="1002",
        name="beta-failed",
        status="failed",
        start=d0,
        hours=2,
        kwh=500,
        op_g=200_000,
        emb_g=5_000,
        family="recommender",
        devices=devices[:1],
        username="ben",
        measured=0.4,
    )
    j3 = _job(
        other_cluster,
        t3,
        sched="2001",
        name="gamma-secret",
        status="completed",
        start=d0,
        hours=2,
        kwh=800,
        op_g=320_000,
        emb_g=8_000,
        devices=[other_dev],
        username="gus",
    )
    running = _job(
        cluster,
        t1,
        sched="1003",
        name="alpha-live",
        status="running",
        start=NOW - dt.timedelta(hours=2),
        hours=2,
        kwh=36,
        op_g=14_400,
        emb_g=200,
        devices=devices[1:],
        username="ana",
    )
    day = d0.date()
    rows = [
        (org, t1, site, 1000, 100, 400_000, 10_000),
        (org, t2, site, 500, 50, 200_000, 5_000),
        (org, None, site, 300, 300, 120_000, 3_000),  # fleet overhead
        (other, t3, other_site, 800, 80, 320_000, 8_000),
        (other, None, other_site, 100, 100, 40_000, 1_000),
    ]
    for o, team, s, kwh, idle, op, emb in rows:
        m.TeamDay.objects.create(
            org=o,
            team=team,
            site=s,
            day=day,
            energy_j=kwh * KWH,
            gpu_idle_energy_j=idle * KWH,
            co2e_operational_g=op,
            co2e_embodied_g=emb,
        )
    # The previous period (7 days earlier) for the change KPI.
    m.TeamDay.objects.create(
        org=org,
        team=t1,
        site=site,
        day=day - dt.timedelta(days=7),
        energy_j=800 * KWH,
        gpu_idle_energy_j=0,
        co2e_operational_g=320_000,
        co2e_embodied_g=8_000,
    )
    member = f.UserFactory(username="member")
    f.MembershipFactory(user=member, org=org, team=t1, role=m.Membership.Role.MEMBER)
    admin = f.UserFactory(username="orgadmin")
    f.MembershipFactory(user=admin, org=org, team=None, role=m.Membership.Role.ADMIN)
    su = f.UserFactory(username="root", is_superuser=True, is_staff=True)
    outsider = f.UserFactory(username="outsider")
    f.MembershipFactory(user=outsider, org=other, team=t3, role=m.Membership.Role.MEMBER)
    return World(org, other, t1, t2, t3, site, other_site, devices, j1, j2, j3, running, member, admin, su, outsider)


@pytest.fixture
def frozen_now(monkeypatch):
    """Pin django.utils.timezone.now for the views (selectors take time as an argument)."""
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW
