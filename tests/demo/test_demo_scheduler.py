"""demo_scheduler: churns only jobs on hosts that stream telemetry, ends running jobs no agent
reports at their last ledger window, and keeps one name suffix."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounting import models as m
from demo.management.commands.demo_scheduler import base_name
from telemetry.models import HostStream, TelemetryBatch
from tests import factories as f

pytestmark = pytest.mark.django_db


def _batch(host, received_at):
    """A stored batch, as ingest leaves it: the batch row and the host's stream moved on."""
    HostStream.objects.update_or_create(host=host, defaults={"last_seq": 1, "last_seen_at": received_at})
    TelemetryBatch.objects.create(
        host=host,
        batch_id=uuid.uuid4(),
        received_at=received_at,
        first_start=received_at - dt.timedelta(seconds=10),
        last_end=received_at,
        first_seq=1,
        last_seq=1,
        gpu_window_count=1,
        host_window_count=0,
        gpu_energy_j=1.0,
        host_energy_j=0.0,
        status=TelemetryBatch.Status.DONE,
    )


def _running(cluster, host, name, sched, started_at, team):
    job = f.JobFactory(
        cluster=cluster, team=team, name=name, scheduler_job_id=sched, status="running", started_at=started_at
    )
    m.JobAllocation.objects.create(job=job, device=f.DeviceFactory(host=host, index=0), start=started_at)
    return job


def test_base_name_drops_every_replacement_suffix():
    assert base_name("bert#2001#2002") == "bert" and base_name("llm-train-000042") == "llm-train-000042"
    assert base_name("a#b") == "a#b"


def test_only_live_jobs_churn_and_stale_ones_end_at_their_last_window():
    now = timezone.now()
    org = f.OrganizationFactory(slug="demo-sched")
    team = f.TeamFactory(org=org)
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org))
    live_host = f.HostFactory(cluster=cluster, hostname="live-1")
    seeded_host = f.HostFactory(cluster=cluster, hostname="seeded-1")
    _batch(live_host, now - dt.timedelta(seconds=30))
    _batch(seeded_host, now - dt.timedelta(hours=5))  # long silent
    live = _running(cluster, live_host, "bert#2001#2002", "L1", now - dt.timedelta(hours=1), team)
    stale = _running(cluster, seeded_host, "llm-train-000042", "S1", now - dt.timedelta(hours=3), team)
    last_window = now - dt.timedelta(hours=2)
    m.JobFootprint.objects.create(job=stale, energy_j=5.0, gpu_energy_j=5.0, last_window_end=last_window)

    call_command(
        "demo_scheduler", "--org", "demo-sched", "--iterations", "1", "--tick-s", "0", "--churn-s", "0", stdout=None
    )

    stale.refresh_from_db()
    assert stale.status == "completed" and stale.ended_at == last_window
    assert not m.JobAllocation.objects.filter(job=stale, end__isnull=True).exists()
    live.refresh_from_db()
    assert live.status != "running"  # the one live job was churned
    [new] = m.Job.objects.filter(org=org, status="running")
    assert new.name == f"bert#{new.scheduler_job_id}"
    assert {a.device.host_id for a in new.allocations.select_related("device")} == {live_host.pk}
