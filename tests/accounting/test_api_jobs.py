# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""Jobs API: register (idempotent), update, end, units, detail, list; scopes and isolation."""

from __future__ import annotations

import datetime as dt

import pytest

from accounting import models as m
from tests import factories as f
from tests.accounting.test_api_support import (  # noqa: F401 - fixtures
    T0,
    attributed,
    db_snapshot,
    problem_fields,
    register_body,
    world,
)

pytestmark = pytest.mark.django_db
JOBS = "/api/v1/jobs/"


def register(world, token="sched_a", **overrides):  # noqa: S107 - a fixture name
    return world.client(token).post(JOBS, register_body(**overrides), format="json")


# --- register ------------------------------------------------------------------------------


def test_register_creates_job_host_and_placeholder_devices(world, attributed):
    attributed.around(world.host_a, T0)
    attributed.around(f.HostFactory(cluster=world.cluster_b, hostname="gpu-node-02"), T0)  # same name, other cluster
    response = register(
        world, allocation=[{"host": "gpu-node-01", "gpus": [0, 1]}, {"host": "gpu-node-02", "gpus": [3]}]
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    job = m.Job.objects.get(pk=body["id"])
    assert (job.cluster, job.team, job.org, job.username, job.user) == (
        world.cluster_a,
        world.team,
        world.org,
        "alice",
        world.alice,
    )
    assert (job.kind, job.family, job.status, job.started_at, job.requested_s) == (
        "training",
        "recommender",
        "running",
        T0,
        14400.0,
    )
    assert job.model_meta == {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536}
    assert sorted((a["host"], a["gpu_index"], a["gpu_uuid"], a["pending_device"]) for a in body["allocations"]) == [
        ("gpu-node-01", 0, f.pending_uuid("gpu-node-01", 0), True),
        ("gpu-node-01", 1, f.pending_uuid("gpu-node-01", 1), True),
        ("gpu-node-02", 3, f.pending_uuid("gpu-node-02", 3, cluster=world.cluster_a), True),
    ]
    node2 = m.Host.objects.get(hostname="gpu-node-02", cluster=world.cluster_a)
    assert node2.cluster == world.cluster_a
    assert all(a.start == T0 and a.end is None for a in job.allocations.all())
    assert attributed.pending() == {"gpu-node-01 after 10:00"}  # the new host has no telemetry yet


def test_register_uses_reported_device_and_gpu_uuid(world):
    reported = f.DeviceFactory(host=world.host_a, index=0, uuid="GPU-aaaa-0000")
    other = f.DeviceFactory(host=world.host_a, index=5, uuid="GPU-bbbb-0005")
    response = register(
        world, allocation=[{"host": "gpu-node-01", "gpus": [0]}, {"gpu_uuid": "GPU-bbbb-0005", "fraction": 0.5}]
    )
    assert response.status_code == 201, response.json()
    held = {a.device_id: a.fraction for a in m.JobAllocation.objects.filter(job_id=response.json()["id"])}
    assert held == {reported.pk: 1.0, other.pk: 0.5}
    assert m.Device.objects.filter(uuid__startswith="pending:").count() == 0


def test_reregistration_is_idempotent_and_unions_nodes(world, attributed):
    attributed.around(world.host_a, T0)
    first = register(world)
    assert attributed.pending() == {"gpu-node-01 after 10:00"}
    again = register(world)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert m.Job.objects.count() == 1
    assert m.JobAllocation.objects.count() == 2
    assert attributed.pending() == set()  # nothing new, nothing re-attributed
    # The prolog of the job's second node names its own GPUs: they are added, once.
    second_node = register(world, allocation=[{"host": "gpu-node-02", "gpus": [0, 1]}])
    assert second_node.status_code == 200
    assert m.JobAllocation.objects.count() == 4
    assert len(second_node.json()["allocations"]) == 4
    register(world, allocation=[{"host": "gpu-node-02", "gpus": [0, 1]}])
    assert m.JobAllocation.objects.count() == 4


def test_admin_registers_with_explicit_cluster(world):
    assert problem_fields(register(world, token="admin")) == ["cluster"]
    response = register(world, token="admin", cluster=world.cluster_b.pk)
    assert response.status_code == 201
    assert response.json()["cluster"] == world.cluster_b.pk
    foreign = register(world, token="admin", cluster=world.other_cluster.pk, scheduler_job_id="9")
    assert problem_fields(foreign) == ["cluster"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": None}, "kind"),
        ({"kind": "pretraining"}, "kind"),
        ({"team": "nope"}, "team"),
        ({"scheduler_job_id": "has space"}, "scheduler_job_id"),
        ({"started_at": "2026-11-26T10:00:00"}, "started_at"),
        ({"started_at": "1900-01-01T00:00:00Z"}, "started_at"),
        ({"requested_s": "nan"}, "requested_s"),
        ({"model_meta": {"precision": "fp128"}}, "model_meta.precision"),
        ({"allocation": [{"host": "gpu-node-01"}]}, "allocation[0].gpus"),
        ({"allocation": [{"host": "gpu-node-01", "gpus": [0, 0]}]}, "allocation[0].gpus"),
        ({"allocation": [{"host": "gpu-node-01", "gpus": [-1]}]}, "allocation[0].gpus[0]"),
        ({"allocation": [{"host": "bad host!", "gpus": [0]}]}, "allocation[0].host"),
        ({"allocation": [{"gpu_uuid": "GPU-unknown"}]}, "allocation[0].gpu_uuid"),
        ({"allocation": [{"host": "gpu-node-01", "gpus": [0], "fraction": 0}]}, "allocation[0].fraction"),
        ({"allocation": [{"host": "gpu-node-01", "gpus": [0]}, {"gpu_uuid": "GPU-unknown"}]}, "allocation[1].gpu_uuid"),
    ],
)
def test_register_validation_names_field_and_changes_nothing(world, overrides, field):
    before = db_snapshot()
    body = register_body(**overrides)
    body = {k: v for k, v in body.items() if v is not None}
    response = world.client("sched_a").post(JOBS, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in problem_fields(response), response.json()
    assert response.json()["title"] == "Invalid request"
    assert db_snapshot() == before


def test_register_gpu_uuid_of_another_cluster_is_rejected(world):
    f.DeviceFactory(host=f.HostFactory(cluster=world.cluster_b), uuid="GPU-in-b")
    before = db_snapshot()
    response = register(world, allocation=[{"gpu_uuid": "GPU-in-b"}])
    assert problem_fields(response) == ["allocation[0].gpu_uuid"]
    assert db_snapshot() == before


def test_register_scopes(world):
    before = db_snapshot()
    assert register(world, token="host_a").status_code == 403
    assert register(world, token="alice").status_code == 403
    assert register(world, token="bob").status_code == 403
    # A scheduler token may not name another cluster.
    response = register(world, token="sched_a", cluster=world.cluster_b.pk)
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/problem+json")
    assert db_snapshot() == before
    anonymous = world.client("admin")
    anonymous.credentials()
    assert anonymous.post(JOBS, register_body(), format="json").status_code == 401
    revoked = world.client("admin")
    revoked.credentials(HTTP_AUTHORIZATION="Bearer clk_not-a-token")
    assert revoked.get(JOBS).status_code == 401


def test_same_scheduler_id_in_two_clusters_are_two_jobs(world):
    a = register(world, token="sched_a")
    b = register(world, token="sched_b", allocation=[{"host": "gpu-node-01", "gpus": [5]}])
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    # The same hostname in cluster B is a different host.
    assert m.Host.objects.filter(hostname="gpu-node-01").count() == 2


def test_same_hostname_in_two_clusters_gets_two_placeholders(world):
    a = register(world, token="sched_a")
    b = register(world, token="sched_b", allocation=[{"host": "gpu-node-01", "gpus": [0]}])
    assert a.status_code == b.status_code == 201, b.json()
    uuid_a = next(x["gpu_uuid"] for x in a.json()["allocations"] if (x["host"], x["gpu_index"]) == ("gpu-node-01", 0))
    uuid_b = b.json()["allocations"][0]["gpu_uuid"]
    assert uuid_a == f.pending_uuid("gpu-node-01", 0, cluster=world.cluster_a)
    assert uuid_b == f.pending_uuid("gpu-node-01", 0, cluster=world.cluster_b)
    assert uuid_a != uuid_b
    assert m.Device.objects.get(uuid=uuid_b).host.cluster == world.cluster_b


def test_a_hostname_longer_than_the_uuid_column_still_gets_a_placeholder(world):
    long_name = "n" * 60 + ".gpu.example-datacenter-with-a-long-domain.internal"
    response = register(world, allocation=[{"host": long_name, "gpus": [7]}])
    assert response.status_code == 201, response.json()
    assert response.json()["allocations"][0]["gpu_uuid"] == f.pending_uuid(long_name, 7)


# --- update --------------------------------------------------------------------------------


def test_update_allocation_releases_and_adds_at_effective_time(world, attributed):
    job_id = register(world).json()["id"]
    t1 = T0 + dt.timedelta(hours=1)
    for host in (
        world.host_a,
        f.HostFactory(cluster=world.cluster_a, hostname="gpu-node-02"),
        f.HostFactory(cluster=world.cluster_a, hostname="gpu-node-03"),
    ):
        attributed.around(host, t1)
    response = world.client("sched_a").patch(
        f"{JOBS}{job_id}/",
        {
            "allocation": [{"host": "gpu-node-01", "gpus": [1]}, {"host": "gpu-node-02", "gpus": [0]}],
            "effective_at": t1.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    rows = sorted(
        (a.device.uuid, a.start, a.end) for a in m.JobAllocation.objects.filter(job_id=job_id).select_related("device")
    )
    assert rows == sorted(
        [
            (f.pending_uuid("gpu-node-01", 0), T0, t1),
            (f.pending_uuid("gpu-node-01", 1), T0, None),
            (f.pending_uuid("gpu-node-02", 0), t1, None),
        ]
    )
    # Released on node 01 and added on node 02 at t1: their telemetry from t1 on is re-attributed.
    assert attributed.pending() == {"gpu-node-01 after 11:00", "gpu-node-02 after 11:00"}


def test_update_units_quality_and_meta_merge(world):
    job_id = register(world).json()["id"]
    client = world.client("sched_a")
    response = client.patch(
        f"{JOBS}{job_id}/",
        {
            "units": {"samples": 5e8},
            "primary_unit": "samples",
            "quality_metric": "auc",
            "quality_value": 0.8,
            "model_meta": {"sequence_length": 512},
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    job = m.Job.objects.get(pk=job_id)
    assert job.units == {"samples": 5e8}
    assert (job.primary_unit, job.quality_metric, job.quality_value) == ("samples", "auc", 0.8)
    assert job.model_meta == {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536, "sequence_length": 512}
    assert m.JobAllocation.objects.filter(job_id=job_id, end__isnull=True).count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"effective_at": "2026-11-26T11:00:00Z"}, "effective_at"),
        (
            {"allocation": [{"host": "gpu-node-01", "gpus": [0]}], "effective_at": "2026-11-26T09:00:00Z"},
            "effective_at",
        ),
        ({"units": {"Bad Key": 1}}, "units.Bad Key"),
        ({"units": {"tokens": -1}}, "units.tokens"),
        ({"quality_value": "inf"}, "quality_value"),
    ],
)
def test_update_validation(world, body, field):
    job_id = register(world).json()["id"]
    before = db_snapshot()
    job_before = m.Job.objects.values().get(pk=job_id)
    response = world.client("sched_a").patch(f"{JOBS}{job_id}/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in problem_fields(response)
    assert db_snapshot() == before
    assert m.Job.objects.values().get(pk=job_id) == job_before


def test_update_of_ended_job_allocation_conflicts(world):
    job_id = register(world).json()["id"]
    world.client("sched_a").post(
        f"{JOBS}{job_id}/end/",
        {"exit_state": "completed", "ended_at": (T0 + dt.timedelta(hours=2)).isoformat()},
        format="json",
    )
    response = world.client("sched_a").patch(
        f"{JOBS}{job_id}/", {"allocation": [{"host": "gpu-node-01", "gpus": [0]}]}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["title"] == "Conflict"


def test_update_and_end_isolation_between_clusters(world):
    job_id = register(world).json()["id"]
    before = db_snapshot()
    other = world.client("sched_b")
    assert other.get(f"{JOBS}{job_id}/").status_code == 404
    assert other.patch(f"{JOBS}{job_id}/", {"name": "x"}, format="json").status_code == 404
    assert other.post(f"{JOBS}{job_id}/end/", {"exit_state": "failed"}, format="json").status_code == 404
    assert other.get(f"{JOBS}by-key/88123/", {"cluster": world.cluster_a.pk}).status_code == 404
    assert world.client("other_admin").get(f"{JOBS}{job_id}/").status_code == 404
    assert world.client("alice").patch(f"{JOBS}{job_id}/", {"name": "x"}, format="json").status_code == 403
    assert world.client("host_a").get(f"{JOBS}{job_id}/").status_code == 403
    assert db_snapshot() == before
    assert m.Job.objects.get(pk=job_id).status == "running"


# --- end -----------------------------------------------------------------------------------


def test_end_closes_allocations_finalises_and_is_idempotent(world, attributed):
    job_id = register(world).json()["id"]
    t_end = T0 + dt.timedelta(hours=3)
    attributed.around(world.host_a, t_end)
    client = world.client("sched_a")
    response = client.post(
        f"{JOBS}by-key/88123/end/", {"exit_state": "preempted", "ended_at": t_end.isoformat()}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["ended_at"]) == ("preempted", "2026-11-26T13:00:00Z")
    assert set(m.JobAllocation.objects.filter(job_id=job_id).values_list("end", flat=True)) == {t_end}
    assert attributed.pending() == {"gpu-node-01 after 13:00"}
    finalised = m.JobFootprint.objects.get(job_id=job_id)
    assert finalised.is_final is True
    again = client.post(f"{JOBS}{job_id}/end/", {"exit_state": "completed"}, format="json")
    assert again.status_code == 200
    assert again.json()["status"] == "preempted"  # the first end wins
    assert attributed.pending() == set()
    assert m.JobFootprint.objects.get(job_id=job_id).updated_at == finalised.updated_at  # not finalised again
    # Re-registering an ended job returns it and adds nothing.
    assert register(world, allocation=[{"host": "gpu-node-03", "gpus": [0]}]).status_code == 200
    assert m.JobAllocation.objects.filter(job_id=job_id).count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"exit_state": "running"}, "exit_state"),
        ({}, "exit_state"),
        ({"exit_state": "completed", "ended_at": "2026-11-26T09:59:59Z"}, "ended_at"),
        ({"exit_state": "completed", "ended_at": "yesterday"}, "ended_at"),
    ],
)
def test_end_validation(world, body, field):
    job_id = register(world).json()["id"]
    before = db_snapshot()
    response = world.client("sched_a").post(f"{JOBS}{job_id}/end/", body, format="json")
    assert response.status_code == 400
    assert problem_fields(response) == [field]
    assert db_snapshot() == before
    assert m.Job.objects.get(pk=job_id).status == "running"
    assert not m.JobAllocation.objects.filter(job_id=job_id, end__isnull=False).exists()


def test_by_key_needs_cluster_for_admin(world):
    job_id = register(world).json()["id"]
    admin = world.client("admin")
    assert problem_fields(admin.get(f"{JOBS}by-key/88123/")) == ["cluster"]
    assert admin.get(f"{JOBS}by-key/88123/", {"cluster": world.cluster_a.pk}).json()["id"] == job_id
    assert admin.get(f"{JOBS}by-key/88123/", {"cluster": world.cluster_b.pk}).status_code == 404


# --- units ---------------------------------------------------------------------------------


def test_units_set_and_add_from_user_token(world):
    job_id = register(world).json()["id"]
    alice = world.client("alice")
    response = alice.post(f"{JOBS}{job_id}/units/", {"units": {"tokens": 1000}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["units"] == {"tokens": 1000.0}
    assert response.json()["primary_unit"] == "tokens"
    alice.post(f"{JOBS}{job_id}/units/", {"units": {"tokens": 1000}}, format="json")  # retry: same total
    alice.post(f"{JOBS}{job_id}/units/", {"units": {"tokens": 500, "steps": 2}, "mode": "add"}, format="json")
    assert m.Job.objects.get(pk=job_id).units == {"tokens": 1500.0, "steps": 2.0}


def test_units_outside_user_teams_is_not_found(world):
    job_id = register(world, team="llm").json()["id"]
    response = world.client("alice").post(f"{JOBS}{job_id}/units/", {"units": {"tokens": 1}}, format="json")
    assert response.status_code == 404
    assert m.Job.objects.get(pk=job_id).units == {}
    assert problem_fields(world.client("sched_a").post(f"{JOBS}{job_id}/units/", {"units": {}}, format="json")) == [
        "units"
    ]


# --- read ----------------------------------------------------------------------------------


def test_user_tokens_see_only_their_teams(world):
    recsys = register(world, scheduler_job_id="1").json()["id"]
    llm = register(world, scheduler_job_id="2", team="llm").json()["id"]
    other = f.JobFactory(cluster=world.other_cluster, team=world.other_team)
    ids = lambda token: sorted(j["id"] for j in world.client(token).get(JOBS).json()["results"])  # noqa: E731
    assert ids("alice") == [recsys]
    assert ids("bob") == sorted([recsys, llm])  # org admin membership
    assert ids("admin") == sorted([recsys, llm])
    assert ids("sched_a") == sorted([recsys, llm])
    assert ids("sched_b") == []
    assert ids("other_admin") == [other.pk]
    assert world.client("alice").get(f"{JOBS}{llm}/").status_code == 404
    assert world.client("host_a").get(JOBS).status_code == 403


def test_list_filters_and_pagination(world):
    for i in range(5):
        register(
            world,
            scheduler_job_id=str(100 + i),
            started_at=(T0 + dt.timedelta(hours=i)).isoformat(),
            family="llm" if i % 2 else "recommender",
            team="llm" if i == 4 else "recsys",
            user=f"u{i}",
        )
    client = world.client("admin")
    page = client.get(JOBS, {"limit": 2, "offset": 1}).json()
    assert page["count"] == 5
    assert [j["scheduler_job_id"] for j in page["results"]] == ["103", "102"]
    assert {j["scheduler_job_id"] for j in client.get(JOBS, {"family": "llm"}).json()["results"]} == {"101", "103"}
    assert [j["scheduler_job_id"] for j in client.get(JOBS, {"team": "llm"}).json()["results"]] == ["104"]
    assert [j["scheduler_job_id"] for j in client.get(JOBS, {"user": "u2"}).json()["results"]] == ["102"]
    window = {"started_after": "2026-11-26T11:00:00Z", "started_before": "2026-11-26T13:00:00Z"}
    assert [j["scheduler_job_id"] for j in client.get(JOBS, window).json()["results"]] == ["102", "101"]
    assert client.get(JOBS, {"status": "running", "kind": "training"}).json()["count"] == 5
    assert client.get(JOBS, {"cluster": world.cluster_b.pk}).json()["count"] == 0
    assert client.get(JOBS, {"limit": 10**30, "offset": 10**30}).status_code == 200
    assert problem_fields(client.get(JOBS, {"status": "sleeping"})) == ["status"]
    assert problem_fields(client.get(JOBS, {"started_after": "tomorrow"})) == ["started_after"]


def test_huge_ids_are_not_found(world):
    client = world.client("admin")
    assert client.get(f"{JOBS}{10**30}/").status_code == 404
    assert client.get(f"{JOBS}{10**30}/footprint/").status_code == 404
