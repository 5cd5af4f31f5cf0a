# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""GET /api/v1/metrics: Prometheus text from a DB-reading collector; admin token (or a setting)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounting import models as m
from telemetry.models import TelemetryBatch
from tests.accounting.test_api_support import world  # noqa: F401

pytestmark = pytest.mark.django_db
METRICS = "/api/v1/metrics"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _batch(host, status, received_at):
    return TelemetryBatch.objects.create(
        host=host,
        batch_id=uuid.uuid4(),
        received_at=received_at,
        first_start=received_at,
        last_end=received_at,
        first_seq=1,
        last_seq=1,
        gpu_window_count=1,
        host_window_count=1,
        gpu_energy_j=1.0,
        host_energy_j=1.0,
        status=status,
    )


def test_metrics_for_admin_token_of_its_org(world):
    site = world.cluster_a.site
    m.TeamDay.objects.create(
        org=world.org,
        team=world.team,
        site=site,
        day=dt.date(2026, 11, 1),
        energy_j=100.0,
        gpu_idle_energy_j=5.0,
        co2e_operational_g=10.0,
        co2e_embodied_g=2.0,
    )
    m.TeamDay.objects.create(
        org=world.org,
        team=None,
        site=site,
        day=dt.date(2026, 11, 2),
        energy_j=50.0,
        co2e_operational_g=4.0,
        co2e_embodied_g=1.0,
    )
    m.TeamDay.objects.create(
        org=world.other_org,
        team=world.other_team,
        site=world.other_cluster.site,
        day=dt.date(2026, 11, 1),
        energy_j=999.0,
        co2e_operational_g=999.0,
    )
    now = timezone.now()
    _batch(world.host_a, "pending", now - dt.timedelta(seconds=30))
    _batch(world.host_a, "pending", now - dt.timedelta(seconds=60))
    _batch(world.host_a, "done", now - dt.timedelta(seconds=90))
    response = world.client("admin").get(METRICS)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = _samples(response.content.decode())
    labels = (("org", "acme"), ("site", "paris"))
    assert samples[("carbonledger_energy_joules", labels)] == 150.0
    assert samples[("carbonledger_gpu_idle_energy_joules", labels)] == 5.0
    assert samples[("carbonledger_co2e_grams", (("kind", "operational"), *labels))] == 14.0
    assert samples[("carbonledger_co2e_grams", (("kind", "embodied"), *labels))] == 3.0
    assert not any(dict(k[1]).get("org") == "globex" for k in samples)
    assert samples[("carbonledger_attribution_queue_batches", (("state", "pending"),))] == 2
    assert samples[("carbonledger_attribution_queue_batches", (("state", "claimed"),))] == 0
    assert 30 <= samples[("carbonledger_ingest_lag_seconds", ())] < 60


def test_metrics_access(world, settings):
    for token in ("sched_a", "alice", "host_a"):
        assert world.client(token).get(METRICS).status_code == 403
    assert APIClient().get(METRICS).status_code == 401
    settings.CARBONLEDGER_METRICS_PUBLIC = True
    open_response = APIClient().get(METRICS)
    assert open_response.status_code == 200
    assert "carbonledger_jobs_running" in open_response.content.decode()
