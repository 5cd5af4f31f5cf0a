"""Shared set-up for the v1 API tests: two organisations, clusters, teams and one token per scope.

Imported by the other ``test_api_*`` modules (``from tests.accounting.test_api_support import ...``);
it holds no tests itself.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounting import models as m
from accounting.tokens import token_create
from tests import factories as f

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@dataclass
class World:
    org: m.Organization
    other_org: m.Organization
    cluster_a: m.Cluster
    cluster_b: m.Cluster
    other_cluster: m.Cluster
    team: m.Team
    team2: m.Team
    other_team: m.Team
    alice: object
    bob: object
    host_a: m.Host
    secrets: dict[str, str] = field(default_factory=dict)

    def client(self, name: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.secrets[name]}")
        return client


def build_world() -> World:
    org = f.OrganizationFactory(slug="acme")
    other_org = f.OrganizationFactory(slug="globex")
    zone = f.GridZoneFactory(code="FR", annual_intensity_g_per_kwh=50.0)
    site = f.SiteFactory(org=org, slug="paris", zone=zone, pue=1.2)
    cluster_a = f.ClusterFactory(site=site, slug="hpc-a")
    cluster_b = f.ClusterFactory(site=site, slug="hpc-b")
    other_site = f.SiteFactory(
        org=other_org, slug="ohio", zone=f.GridZoneFactory(code="US-OH", annual_intensity_g_per_kwh=500.0)
    )
    other_cluster = f.ClusterFactory(site=other_site, slug="hpc-x")
    team = f.TeamFactory(org=org, slug="recsys")
    team2 = f.TeamFactory(org=org, slug="llm")
    other_team = f.TeamFactory(org=other_org, slug="recsys")
    alice = f.UserFactory(username="alice")
    bob = f.UserFactory(username="bob")
    f.MembershipFactory(user=alice, org=org, team=team)
    f.MembershipFactory(user=bob, org=org, team=None, role=m.Membership.Role.ADMIN)
    host_a = f.HostFactory(cluster=cluster_a, hostname="gpu-node-01")
    world = World(org, other_org, cluster_a, cluster_b, other_cluster, team, team2, other_team, alice, bob, host_a)
    issue = {
        "sched_a": dict(org=org, scope="scheduler", cluster=cluster_a),
        "sched_b": dict(org=org, scope="scheduler", cluster=cluster_b),
        "sched_other": dict(org=other_org, scope="scheduler", cluster=other_cluster),
        "host_a": dict(org=org, scope="host", host=host_a),
        "alice": dict(org=org, scope="user", user=alice),
        "bob": dict(org=org, scope="user", user=bob),
        "admin": dict(org=org, scope="admin"),
        "other_admin": dict(org=other_org, scope="admin"),
    }
    for name, kwargs in issue.items():
        world.secrets[name] = token_create(name=name, **kwargs).secret
    # The tokens are in steady use (their last use recorded within accounting.tokens'
    # LAST_USED_RESOLUTION): query counts pinned below are those of any request but a token's first.
    m.ApiToken.objects.update(last_used_at=timezone.now())
    return world


@pytest.fixture
def world(db) -> World:
    return build_world()


class AttributedBatches:
    """Batches already attributed (done) on hosts, one before and one after each instant asked
    for, to see which of them a job change puts back to pending for re-attribution: the effect
    of ``ledger_mark_dirty``, read from the database rather than from a patched call."""

    def __init__(self) -> None:
        self.labels: dict[int, str] = {}

    def add(self, host: m.Host, *, ending: dt.datetime, label: str) -> None:
        from telemetry.models import TelemetryBatch

        batch = TelemetryBatch.objects.create(
            host=host,
            batch_id=uuid.uuid4(),
            received_at=ending,
            first_start=ending - dt.timedelta(minutes=1),
            last_end=ending,
            first_seq=len(self.labels) + 1,
            last_seq=len(self.labels) + 1,
            gpu_window_count=0,
            host_window_count=0,
            gpu_energy_j=0.0,
            host_energy_j=0.0,
            status=TelemetryBatch.Status.DONE,
        )
        self.labels[batch.pk] = label

    def around(self, host: m.Host, instant: dt.datetime) -> None:
        """A batch that ended a minute before ``instant`` and one that ends an hour after it."""
        self.add(host, ending=instant - dt.timedelta(minutes=1), label=f"{host.hostname} before {instant:%H:%M}")
        self.add(host, ending=instant + dt.timedelta(hours=1), label=f"{host.hostname} after {instant:%H:%M}")

    def pending(self) -> set[str]:
        """Labels of the batches put back to pending; they are set done again (the next call
        starts from a clean slate)."""
        from telemetry.models import TelemetryBatch

        batches = TelemetryBatch.objects.filter(pk__in=self.labels, status=TelemetryBatch.Status.PENDING)
        out = {self.labels[pk] for pk in batches.values_list("pk", flat=True)}
        batches.update(status=TelemetryBatch.Status.DONE)
        return out


@pytest.fixture
def attributed() -> AttributedBatches:
    return AttributedBatches()


def register_body(**overrides) -> dict:
    body = {
        "scheduler_job_id": "88123",
        "team": "recsys",
        "user": "alice",
        "name": "dlrm-train",
        "kind": "training",
        "family": "recommender",
        "started_at": T0.isoformat(),
        "requested_s": 14400,
        "model_meta": {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536},
        "allocation": [{"host": "gpu-node-01", "gpus": [0, 1]}],
    }
    body.update(overrides)
    return body


def db_snapshot() -> dict[str, int]:
    return {
        "jobs": m.Job.objects.count(),
        "allocations": m.JobAllocation.objects.count(),
        "hosts": m.Host.objects.count(),
        "devices": m.Device.objects.count(),
        "budgets": m.CarbonBudget.objects.count(),
    }


def problem_fields(response) -> list[str]:
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    return [e["field"] for e in response.json().get("errors", [])]
