# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""The jobs API's hot paths (register, end, footprint): pinned query counts, and the fast
paths that must answer exactly as the general ones (validation, rendering, allocation)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from accounting import models as m
from accounting.api import serializers as s
from accounting.selectors.jobs import job_footprint_get
from tests import factories as f
from tests.accounting.test_api_support import (  # noqa: F401 - fixtures
    T0,
    attributed,
    db_snapshot,
    register_body,
    world,
)

JOBS = "/api/v1/jobs/"


def _register(world, token="sched_a", **overrides):  # noqa: S107 - a fixture name
    return world.client(token).post(JOBS, register_body(**overrides), format="json")


def _sql(ctx) -> str:
    return "\n".join(q["sql"][:160] for q in ctx.captured_queries)


@pytest.fixture
def gpus(world):
    """Reported GPUs 0-3 on gpu-node-01 and gpu-node-02 of cluster A."""
    node2 = f.HostFactory(cluster=world.cluster_a, hostname="gpu-node-02")
    return {
        (host.hostname, index): f.DeviceFactory(host=host, index=index, uuid=f"GPU-{host.hostname}-{index}")
        for host in (world.host_a, node2)
        for index in range(4)
    }


# --- query counts (the test transaction turns BEGIN/COMMIT into SAVEPOINT/RELEASE) -----------


@pytest.mark.django_db
def test_register_on_reported_gpus_takes_six_queries(world, gpus):
    client = world.client("sched_a")
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(
            JOBS,
            register_body(allocation=[{"host": "gpu-node-01", "gpus": [0, 1]}, {"host": "gpu-node-02", "gpus": [2]}]),
            format="json",
        )
    assert response.status_code == 201, response.json()
    # token; team/user/cluster; SAVEPOINT; job + devices + allocations; mark dirty; RELEASE
    assert len(ctx.captured_queries) == 6, _sql(ctx)


@pytest.mark.django_db
def test_register_on_new_host_creates_placeholders_in_fourteen_queries(world):
    client = world.client("sched_a")
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(JOBS, register_body(allocation=[{"host": "gpu-node-09", "gpus": [0, 1]}]), format="json")
    assert response.status_code == 201, response.json()
    # token; team/user/cluster; SAVEPOINT; job (+ no device found); devices; hosts; new host;
    # host read back; host lock (ingest's, so an agent's first batch cannot slip in between);
    # devices read again under it; placeholders; allocations; mark dirty; RELEASE
    assert len(ctx.captured_queries) == 14, _sql(ctx)


@pytest.mark.django_db
def test_reregister_without_new_gpus_takes_nine_queries(world, gpus):
    client = world.client("sched_a")
    assert client.post(JOBS, register_body(), format="json").status_code == 201
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(JOBS, register_body(), format="json")
    assert response.status_code == 200
    # token; team/user/cluster; SAVEPOINT; insert (conflict); lock; devices; held; RELEASE;
    # allocations shown
    assert len(ctx.captured_queries) == 9, _sql(ctx)


@pytest.mark.django_db
def test_end_takes_eight_queries(world, gpus):
    client = world.client("sched_a")
    assert client.post(JOBS, register_body(), format="json").status_code == 201
    with CaptureQueriesContext(connection) as ctx:
        response = client.post(
            f"{JOBS}by-key/88123/end/", {"exit_state": "completed", "ended_at": "2026-11-26T12:00:00Z"}, format="json"
        )
    assert response.status_code == 200, response.json()
    # token; SAVEPOINT; visible job FOR NO KEY UPDATE; end; rollup lock; footprint; mark dirty
    # (after the rollup lock: the worker's rollup takes them in that order); RELEASE
    assert len(ctx.captured_queries) == 8, _sql(ctx)


@pytest.mark.django_db
def test_footprint_takes_two_queries(world, gpus):
    job_id = _register(world).json()["id"]
    for token, url in (("sched_a", f"{JOBS}{job_id}/footprint/"), ("admin", f"{JOBS}by-key/88123/footprint/")):
        client = world.client(token)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, {"cluster": world.cluster_a.pk} if token == "admin" else {})
        assert response.status_code == 200, response.json()
        assert len(ctx.captured_queries) == 2, _sql(ctx)  # token; job with team, cluster, footprint


# --- register's one-statement path allocates as the general path does ------------------------


@pytest.mark.django_db
def test_register_response_lists_allocations_as_a_read_back_does(world, gpus, attributed):
    for host in (world.host_a, gpus["gpu-node-02", 0].host, f.HostFactory(cluster=world.cluster_a)):
        attributed.around(host, T0)
    response = _register(
        world,
        allocation=[{"host": "gpu-node-02", "gpus": [3, 0]}, {"host": "gpu-node-01", "gpus": [2], "fraction": 0.5}],
    )
    assert response.status_code == 201, response.json()
    shown = response.json()["allocations"]
    assert shown == world.client("sched_a").get(f"{JOBS}{response.json()['id']}/").json()["allocations"]
    assert [(a["host"], a["gpu_index"], a["gpu_uuid"], a["fraction"]) for a in shown] == [
        ("gpu-node-01", 2, "GPU-gpu-node-01-2", 0.5),
        ("gpu-node-02", 0, "GPU-gpu-node-02-0", 1.0),
        ("gpu-node-02", 3, "GPU-gpu-node-02-3", 1.0),
    ]
    job = m.Job.objects.get(pk=response.json()["id"])
    assert sorted(job.allocations.values_list("device_id", "start", "end", "fraction", "mig_instance")) == sorted(
        [
            (gpus["gpu-node-02", 3].pk, T0, None, 1.0, ""),
            (gpus["gpu-node-02", 0].pk, T0, None, 1.0, ""),
            (gpus["gpu-node-01", 2].pk, T0, None, 0.5, ""),
        ]
    )
    # Telemetry of the held GPUs' hosts since the job's start is attributed again; of no other host.
    assert attributed.pending() == {"gpu-node-01 after 10:00", "gpu-node-02 after 10:00"}


@pytest.mark.django_db
def test_register_takes_the_oldest_device_at_an_index_and_never_a_mig_slice(world):
    f.DeviceFactory(host=world.host_a, index=0, uuid="MIG-aaaa/1/0")
    oldest = f.DeviceFactory(host=world.host_a, index=0, uuid="GPU-old")
    f.DeviceFactory(host=world.host_a, index=0, uuid="GPU-new")
    response = _register(world, allocation=[{"host": "gpu-node-01", "gpus": [0]}])
    assert [a["gpu_uuid"] for a in response.json()["allocations"]] == ["GPU-old"]
    assert list(m.JobAllocation.objects.values_list("device_id", flat=True)) == [oldest.pk]


@pytest.mark.django_db
def test_register_with_one_unreported_gpu_adds_its_placeholder(world, gpus):
    response = _register(world, allocation=[{"host": "gpu-node-01", "gpus": [0, 7]}])
    assert response.status_code == 201, response.json()
    assert [a["gpu_uuid"] for a in response.json()["allocations"]] == [
        "GPU-gpu-node-01-0",
        f.pending_uuid("gpu-node-01", 7),
    ]
    assert m.JobAllocation.objects.count() == 2


@pytest.mark.django_db
def test_register_naming_a_gpu_twice_holds_it_once(world, gpus):
    response = _register(
        world,
        allocation=[{"host": "gpu-node-01", "gpus": [0, 1]}, {"host": "gpu-node-01", "gpus": [1], "fraction": 0.5}],
    )
    assert response.status_code == 201, response.json()
    held = dict(m.JobAllocation.objects.values_list("device_id", "fraction"))
    assert held == {gpus["gpu-node-01", 0].pk: 1.0, gpus["gpu-node-01", 1].pk: 0.5}


@pytest.mark.django_db
def test_reregister_on_reported_gpus_adds_only_new_ones(world, gpus, attributed):
    attributed.around(world.host_a, T0)
    first = _register(world)
    assert attributed.pending() == {"gpu-node-01 after 10:00"}
    again = _register(world, allocation=[{"host": "gpu-node-01", "gpus": [1, 2]}])
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert [a["gpu_index"] for a in again.json()["allocations"]] == [0, 1, 2]
    assert m.JobAllocation.objects.count() == 3
    assert attributed.pending() == {"gpu-node-01 after 10:00"}  # GPU 2 is new: its telemetry is re-attributed
    assert _register(world, allocation=[{"host": "gpu-node-01", "gpus": [2]}]).status_code == 200
    assert attributed.pending() == set()  # nothing new, nothing re-attributed


@pytest.mark.django_db
def test_register_in_another_cluster_never_takes_this_clusters_gpus(world, gpus):
    before = db_snapshot()
    response = _register(world, token="sched_b", allocation=[{"host": "gpu-node-01", "gpus": [5]}])
    assert response.status_code == 201
    assert response.json()["allocations"][0]["gpu_uuid"] == f.pending_uuid("gpu-node-01", 5, cluster=world.cluster_b)
    assert m.Host.objects.get(hostname="gpu-node-01", cluster=world.cluster_b)
    assert db_snapshot()["jobs"] == before["jobs"] + 1


# --- reused serializers answer as fresh ones ---------------------------------------------------


def _fresh(serializer_class, data):
    serializer = serializer_class(data=data)
    try:
        serializer.is_valid(raise_exception=True)
    except serializers.ValidationError as exc:
        return "invalid", exc.detail
    return "valid", serializer.validated_data


def _reused(serializer_class, data):
    try:
        return "valid", s.validated(serializer_class, data)
    except serializers.ValidationError as exc:
        return "invalid", exc.detail


def _maybe(values):
    """A value from ``values``, or the key left out."""
    return st.sampled_from([*values, "<missing>"])


def _present(body: dict) -> dict:
    return {k: v for k, v in body.items() if v != "<missing>"}


# Valid values and invalid ones (among them values DRF alone would coerce, "12", 88123, "0.25",
# ["2"]: the API takes JSON types as the schema states them, issue 19).
ALLOCATION_ITEM_VALUES = {
    "host": (["gpu-node-01", "gpu-node-02"], ["bad host!", "", None, 3]),
    "gpus": ([[0, 1], [3], [7, 0]], [[0, 0], [-1], [], [1024], None, "0", ["2"]]),
    "fraction": ([1, 0.5], [0, 1.5, "nan", None, "0.25"]),
}
REGISTER_VALUES = {
    "scheduler_job_id": (["88123", "pod-3f6c.1:a+b@c"], ["has space", " 88123 ", "", None, "x" * 201, 88123]),
    "cluster": ([1, 2], [0, None, 2**63, True, "2"]),
    "team": (["recsys", "llm-2"], ["bad slug!", "x" * 51, None, 5]),
    "user": (["alice", "bob@example.org"], ["bad user", "", None]),
    "name": (["dlrm", "", "  padded  ", "Zürich run"], ["x" * 301, None, "nul\x00"]),
    "kind": (["training", "inference"], ["pretraining", None, 1]),
    "family": (["llm", "recommender", "other"], ["x", None]),
    "started_at": (
        ["2026-11-26T10:00:00Z", "2026-11-26T12:00:00+02:00", "2026-11-26T10:00:00.123456Z"],
        ["2026-11-26T10:00:00", "1900-01-01T00:00:00Z", "null", "", 5, None],
    ),
    "requested_s": ([14400, 1.5, 0], ["nan", -1, 1e10, True, None, "12"]),
    "power_cap_w": ([300, 1], [0, "inf", None]),
    "model_meta": (
        [{"parameters": 7e9, "precision": "bf16"}, {}, {"framework": "torch 2.5", "batch_size": 8}],
        [{"precision": "fp128"}, {"batch_size": 0}, "x", None, {"batch_size": "8"}],
    ),
}
REQUIRED = {"scheduler_job_id", "team", "kind"}


def _items(*, valid_only: bool):
    def values(name):
        valid, invalid = ALLOCATION_ITEM_VALUES[name]
        return st.sampled_from(valid) if valid_only else _maybe([*valid, *invalid])

    by_host = st.fixed_dictionaries(
        {"host": values("host"), "gpus": values("gpus")}, optional={"fraction": values("fraction")}
    )
    by_uuid = st.fixed_dictionaries({"gpu_uuid": st.just("GPU-aaaa-0000")}, optional={"fraction": values("fraction")})
    if valid_only:
        return st.one_of(by_host, by_uuid)
    return st.one_of(
        by_host,
        by_uuid,
        st.fixed_dictionaries(
            {
                "host": values("host"),
                "gpus": values("gpus"),
                "gpu_uuid": _maybe(["GPU-aaaa-0000", "nope", None]),
                "fraction": values("fraction"),
            }
        ),
    ).map(_present)


def _register_bodies(*, valid_only: bool):
    fields = {}
    for name, (valid, invalid) in REGISTER_VALUES.items():
        if valid_only:
            fields[name] = st.sampled_from(valid) if name in REQUIRED else _maybe(valid)
        else:
            fields[name] = _maybe([*valid, *invalid])
    fields["allocation"] = st.one_of(
        st.lists(_items(valid_only=valid_only), max_size=3),
        st.just("<missing>") if valid_only else st.sampled_from(["<missing>", "x", None, {}]),
    )
    return st.fixed_dictionaries(fields).map(_present)


@settings(max_examples=300, deadline=None)
@given(body=_register_bodies(valid_only=True))
def test_reused_register_validation_accepts_as_a_fresh_serializer(body):
    outcome = _reused(s.JobRegisterSerializer, body)
    assert outcome[0] == "valid", outcome
    assert outcome == _fresh(s.JobRegisterSerializer, body)


@settings(max_examples=300, deadline=None)
@given(body=_register_bodies(valid_only=False))
def test_reused_register_validation_answers_as_a_fresh_serializer(body):
    assert _reused(s.JobRegisterSerializer, body) == _fresh(s.JobRegisterSerializer, body)


@settings(max_examples=100, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {
            "exit_state": _maybe(["completed", "failed", "running", None, 3]),
            "ended_at": _maybe(["2026-11-26T12:00:00Z", "yesterday", "2026-11-26T12:00:00", None]),
        }
    ).map(_present)
)
def test_reused_end_validation_answers_as_a_fresh_serializer(body):
    assert _reused(s.JobEndSerializer, body) == _fresh(s.JobEndSerializer, body)


@settings(max_examples=100, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {
            "units": _maybe(
                [{"tokens": 1e9}, {"Bad Key": 1}, {"tokens": -1}, {}, {f"u{i}": 1 for i in range(21)}, None]
            ),
            "allocation": st.one_of(st.lists(_items(valid_only=False), max_size=2), st.just("<missing>")),
            "effective_at": _maybe(["2026-11-26T11:00:00Z", "soon"]),
            "quality_value": _maybe([0.8, "inf"]),
        }
    ).map(_present)
)
def test_reused_update_validation_answers_as_a_fresh_serializer(body):
    assert _reused(s.JobUpdateSerializer, body) == _fresh(s.JobUpdateSerializer, body)


@pytest.mark.django_db
def test_reused_footprint_rendering_answers_as_a_fresh_serializer(world):
    job_id = _register(world).json()["id"]
    job = m.Job.objects.select_related("footprint").get(pk=job_id)
    assert s.represented(s.JobFootprintSerializer, job_footprint_get(job=job)) == (
        s.JobFootprintSerializer(job_footprint_get(job=job)).data
    )
    job.units, job.primary_unit = {"tokens": 1.2e9, "steps": 10}, "tokens"
    job.save()
    m.JobFootprint.objects.create(
        job=job,
        energy_j=3.6e7,
        gpu_energy_j=3e7,
        gpu_idle_energy_j=1e6,
        co2e_operational_g=500.0,
        co2e_embodied_g=40.0,
        co2e_low_g=450.0,
        co2e_high_g=600.0,
        is_final=True,
        method_version="2026.11-1",
        last_window_end=T0 + dt.timedelta(hours=1),
    )
    job = m.Job.objects.select_related("footprint").get(pk=job_id)
    rendered = s.represented(s.JobFootprintSerializer, job_footprint_get(job=job))
    assert rendered == s.JobFootprintSerializer(job_footprint_get(job=job)).data
    assert rendered["last_window_end"] == "2026-11-26T11:00:00Z"
    assert rendered == world.client("sched_a").get(f"{JOBS}{job_id}/footprint/").json()
