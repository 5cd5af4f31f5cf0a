"""Live power from the raw windows: a job's windows while it held its GPUs, its energy so far,
current power and projected total; the fleet's power per minute; the JSON endpoints and the
job page of a young job."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from accounting import models as m
from accounting.selectors import dashboard as sel
from tests.telemetry.helpers import store_gpu_windows

from .conftest import KWH, NOW

UTC = dt.UTC
MIN = dt.timedelta(minutes=1)


def _windows(device, start: dt.datetime, n: int, power_w: float, util: float = 90.0, step=MIN) -> None:
    store_gpu_windows(
        device=device,
        windows=[
            (i, start + step * i, start + step * (i + 1), power_w * step.total_seconds(), power_w, util)
            for i in range(n)
        ],
    )


@pytest.fixture
def windows(world):
    d0, d1 = world.devices
    # alpha-live (running since 10:00 on GPU1): 10 one-minute windows at 400 W up to 12:00, and one
    # at 09:00 before the job held the GPU. GPU0 (no running job) draws 80 W from 11:55.
    _windows(d1, NOW - dt.timedelta(minutes=10), 10, 400.0)
    _windows(d1, NOW - dt.timedelta(hours=3), 1, 300.0)
    _windows(d0, NOW - dt.timedelta(minutes=5), 5, 80.0, util=0.0)
    return world


def test_job_power_is_its_windows_while_it_held_the_gpus_with_a_projection(windows):
    job = windows.running
    job.requested_s = 4 * 3600.0
    job.save()
    p = sel.job_power_get(scope=sel.viewer_scope_get(user=windows.member), job_id=job.pk, now=NOW)
    [gpu] = p["devices"]
    assert gpu["label"] == "node-a1 GPU1" and len(gpu["t"]) == 10
    assert gpu["t"][0] == (NOW - dt.timedelta(minutes=9)).isoformat() and gpu["power_w"] == [400.0] * 10
    assert p["total"] == {"t": gpu["t"], "power_kw": [0.4] * 10}
    assert p["energy_so_far_kwh"] == 36.0 and p["gpu_power_w"] == 400.0
    # current = 400 W × (36 kWh total / 25.2 kWh GPU), for the 2 h left of the requested 4 h
    assert p["current_power_kw"] == pytest.approx(0.4 * 36 / 25.2, rel=1e-12)
    assert p["projected_total_kwh"] == pytest.approx(36 + 0.4 * 36 / 25.2 * 2, rel=1e-12)
    assert p["start"] == job.started_at.isoformat() and p["end"] == NOW.isoformat() and not p["truncated"]


def test_job_power_without_requested_time_projects_nothing(windows):
    p = sel.job_power_get(scope=sel.viewer_scope_get(user=windows.member), job_id=windows.running.pk, now=NOW)
    assert p["projected_total_kwh"] is None
    assert p["projection_note"] == "no requested run time: no end to project to"


def test_job_power_range_is_clipped_and_scoped(windows):
    scope = sel.viewer_scope_get(user=windows.member)
    p = sel.job_power_get(scope=scope, job_id=windows.running.pk, now=NOW, start=NOW - dt.timedelta(minutes=3))
    assert len(p["devices"][0]["t"]) == 3
    p = sel.job_power_get(
        scope=scope, job_id=windows.running.pk, now=NOW + dt.timedelta(hours=7), start=NOW - dt.timedelta(days=2)
    )
    assert p["truncated"] and p["start"] == (NOW + dt.timedelta(hours=1)).isoformat()
    outsider = sel.viewer_scope_get(user=windows.outsider)
    assert sel.job_power_get(scope=outsider, job_id=windows.running.pk, now=NOW) is None


def test_fleet_power_per_minute_by_scope(windows):
    admin = sel.fleet_power_get(scope=sel.viewer_scope_get(user=windows.admin), now=NOW + dt.timedelta(seconds=30))
    # 11:50–11:54 GPU1 only (0.4 kW), 11:55–11:59 GPU1 + GPU0 (0.48 kW); the minute in progress left out
    assert admin["t"][0] == (NOW - dt.timedelta(minutes=10)).isoformat() and len(admin["t"]) == 10
    assert admin["power_kw"] == pytest.approx([0.4] * 5 + [0.48] * 5, rel=1e-12)
    assert admin["devices_reporting"] == [1] * 5 + [2] * 5 and admin["devices"] == 2
    member = sel.fleet_power_get(scope=sel.viewer_scope_get(user=windows.member), now=NOW + dt.timedelta(seconds=30))
    assert member["power_kw"] == pytest.approx([0.4] * 10, rel=1e-12) and member["devices"] == 1
    outsider = sel.fleet_power_get(scope=sel.viewer_scope_get(user=windows.outsider), now=NOW)
    assert (outsider["t"], outsider["devices"]) == ([], 0)  # a member of a team with no running job


def test_power_json_endpoint(client, windows, frozen_now):
    client.force_login(windows.member)
    url = f"/jobs/{windows.running.pk}/power.json"
    body = client.get(url, {"start": (NOW - dt.timedelta(minutes=2)).isoformat()}).json()
    assert body["total"]["power_kw"] == [0.4, 0.4]
    bad = client.get(url, {"start": "yesterday"})
    assert bad.status_code == 400 and bad.json()["detail"] == "start: not an ISO 8601 date-time"
    assert client.get(url, {"end": "2026-03-20T12:00"}).json()["detail"] == "end: give a time zone (e.g. Z or +00:00)"
    assert client.get(f"/jobs/{windows.j2.pk}/power.json").status_code == 404  # Beta's job
    client.force_login(windows.outsider)
    assert client.get(url).status_code == 404


def test_live_json_carries_the_fleet_power(client, windows, frozen_now):
    client.force_login(windows.admin)
    data = client.get("/live/data.json").json()
    assert data["fleet_power"]["power_kw"] == pytest.approx([0.4] * 5 + [0.48] * 5, rel=1e-12)
    html = client.get("/live/").content.decode()
    assert 'data-figure="fig-fleet-power"' in html


def _figure(html: str, fid: str) -> dict:
    raw = re.search(rf'<script type="application/json" id="{fid}">(.*?)</script>', html, re.S).group(1)
    return json.loads(raw)


def test_a_young_running_job_shows_raw_windows_and_live_power(client, world, frozen_now):
    d0 = world.devices[0]
    job = m.Job.objects.create(
        org=world.org,
        cluster=world.j1.cluster,
        team=world.t1,
        scheduler_job_id="young",
        name="young",
        kind="training",
        family="llm",
        status="running",
        started_at=NOW - dt.timedelta(minutes=20),
        requested_s=3600.0,
    )
    m.JobAllocation.objects.create(job=job, device=d0, start=job.started_at)
    m.JobFootprint.objects.create(job=job, energy_j=0.2 * KWH, gpu_energy_j=0.1 * KWH)
    _windows(d0, NOW - dt.timedelta(minutes=20), 40, 600.0, step=dt.timedelta(seconds=30))
    client.force_login(world.member)
    html = client.get(f"/jobs/{job.pk}/").content.decode()
    trace = _figure(html, "fig-trace")
    assert (
        trace["layout"]["title"]["text"].endswith(": raw windows") and trace["layout"]["meta"]["resolution"] == "window"
    )
    assert len(trace["data"][0]["x"]) == 40 and trace["data"][0]["y"] == [600.0] * 40
    assert trace["layout"]["xaxis2"]["tickformat"] == "%H:%M"
    live = _figure(html, "fig-job-live")
    assert live["data"][0]["y"] == [0.6] * 40
    assert 'id="job-live-energy">0.2 kWh' in html or 'id="job-live-energy">0.20 kWh' in html
    # 600 W × 2 (total / GPU) = 1.2 kW for the 40 minutes left: 0.2 + 0.8 kWh
    assert "at 1.2 kW for the 0.67 h left of the requested run time" in html
