"""Ingest keeps the MIG instance list and what an energy counter covers; a dcgm-exporter MIG
scrape goes through ingest and the mapper to attribution split by measured instance activity."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest
from django.db import connection

from accounting.domain.attribution import attribute
from accounting.domain.types import Allocation, Component, MigInstanceSample
from accounting.mappers import gpu_series_for_batches
from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.dcgm import scrape_parse, windows_from_scrapes
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, stored_counts, window

pytestmark = pytest.mark.django_db(transaction=False)
DATA = Path(__file__).parent / "data"
MIG_GPU = "GPU-8a1c2f3e-0000-4000-8000-00000000a100"
UID_A = "6f1d0c7a-aaaa-4000-8000-000000000001"
UID_B = "6f1d0c7a-bbbb-4000-8000-000000000002"


def _start() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)


@pytest.fixture
def host_setup():
    host = HostFactory(hostname="gpu-node-02")
    device = DeviceFactory(host=host, index=0, uuid=MIG_GPU)
    issued = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host)
    return host, device, issued.secret


def _stored() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT mig_instances, energy_covers, processes FROM telemetry_gpuwindow ORDER BY device_id")
        return [
            tuple(json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v for v in row)
            for row in cursor.fetchall()
        ]


def test_agent_and_exporter_mig_lists_are_kept_normalised(client, host_setup):
    host, device, secret = host_setup
    agent_gpu = gpu_entry(
        uuid_=device.uuid,
        processes=[
            {"pid": 7, "sm_util_pct": None, "job_key": "slurm:1"},
            {"pid": 8, "sm_util_pct": None, "job_key": "slurm:2"},
        ],
        # The agent's shape: uuid, ids, memory, pids (job keys come from the window's processes).
        mig_instances=[
            {"uuid": "MIG-a", "gpu_instance_id": 1, "compute_instance_id": 0, "mem_used_mib": 100.0, "pids": [7]},
            {"uuid": "MIG-b", "gpu_instance_id": 2, "profile": "4g.40gb", "activity": 0.5, "pids": [8, 9]},
        ],
        energy_covers="gpu+cpu+memory",
    )
    exporter_gpu = gpu_entry(
        uuid_="GPU-second",
        index=1,
        processes=[{"pid": None, "sm_util_pct": 81.25, "job_key": "k8s:x"}],
        mig_instances=[{"gpu_instance_id": 1, "profile": "3g.40gb", "activity": 0.8125, "job_keys": ["k8s:x"]}],
    )
    payload = batch(hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=[agent_gpu, exporter_gpu])])
    assert post_batch(client, secret, payload).status_code == 202
    first, second = _stored()
    assert first[0] == [
        {
            "uuid": "MIG-a",
            "gpu_instance_id": 1,
            "compute_instance_id": 0,
            "profile": None,
            "slices": None,
            "activity": None,
            "mem_used_mib": 100.0,
            "job_keys": ["slurm:1"],
        },
        {
            "uuid": "MIG-b",
            "gpu_instance_id": 2,
            "compute_instance_id": None,
            "profile": "4g.40gb",
            "slices": 4,
            "activity": 0.5,
            "mem_used_mib": None,
            "job_keys": ["slurm:2"],
        },
    ]
    assert first[1] == "gpu+cpu+memory"
    assert second[:2] == (
        [
            {
                "uuid": None,
                "gpu_instance_id": 1,
                "compute_instance_id": None,
                "profile": "3g.40gb",
                "slices": 3,
                "activity": 0.8125,
                "mem_used_mib": None,
                "job_keys": ["k8s:x"],
            }
        ],
        "gpu",
    )
    assert second[2] == [{"pid": None, "sm_util_pct": 81.25, "job_key": "k8s:x"}]


@pytest.mark.parametrize(
    ("instance", "field"),
    [
        ({"gpu_instance_id": 1, "activity": 1.5}, "windows[0].gpus[0].mig_instances[0].activity"),
        ({"gpu_instance_id": 1, "slices": 0}, "windows[0].gpus[0].mig_instances[0].slices"),
        ({"gpu_instance_id": -1}, "windows[0].gpus[0].mig_instances[0].gpu_instance_id"),
        ({"job_keys": "k8s:x"}, "windows[0].gpus[0].mig_instances[0].job_keys"),
        ({"pids": ["7"]}, "windows[0].gpus[0].mig_instances[0].pids"),
        ("MIG-a", "windows[0].gpus[0].mig_instances[0]"),
    ],
)
def test_a_bad_mig_instance_is_a_400_naming_it_and_changes_nothing(client, host_setup, instance, field):
    host, device, secret = host_setup
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid, mig_instances=[instance])])],
    )
    response = post_batch(client, secret, payload)
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field
    assert stored_counts() == (0, 0, 0)


def test_an_unknown_counter_scope_is_refused(client, host_setup):
    host, device, secret = host_setup
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid, energy_covers="board")])],
    )
    response = post_batch(client, secret, payload)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "windows[0].gpus[0].energy_covers"
    assert stored_counts() == (0, 0, 0)


def test_dcgm_mig_scrape_through_ingest_is_split_by_measured_instance_activity(client, host_setup):
    """The issue's defect end to end: two pods on two MIG instances of one GPU each get their
    own instance's share (before, one pod was charged the other's activity and one vanished)."""
    host, device, secret = host_setup
    t0 = _start()
    first = scrape_parse(text=(DATA / "dcgm_mig_t0.prom").read_text(), at=t0)
    second = scrape_parse(text=(DATA / "dcgm_mig_t1.prom").read_text(), at=t0 + dt.timedelta(seconds=10))
    wire = windows_from_scrapes(previous=first, current=second, seq=1)
    wire["host"] = {"cpu_energy_j": 0.0, "dram_energy_j": 0.0, "cpu_util_pct": 0.0, "quality": "measured"}
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=[wire])).status_code == 202

    (series,) = gpu_series_for_batches(batch_pks=[TelemetryBatch.objects.get().pk])[TelemetryBatch.objects.get().pk]
    (row,) = series.rows()
    assert row.window.mig_instances == (
        MigInstanceSample(gpu_instance_id=1, slices=3, activity=0.8125, job_keys=frozenset({f"k8s:{UID_A}"})),
        MigInstanceSample(gpu_instance_id=9, slices=1, activity=0.375, job_keys=frozenset({f"k8s:{UID_B}"})),
        MigInstanceSample(gpu_instance_id=10, slices=1, activity=0.0, job_keys=frozenset()),
    )
    since = t0 - dt.timedelta(hours=1)
    allocations = [
        Allocation(
            job_id=1, device_id=device.pk, start=since, end=None, fraction=3 / 7, job_keys=frozenset({f"k8s:{UID_A}"})
        ),
        Allocation(
            job_id=2, device_id=device.pk, start=since, end=None, fraction=1 / 7, job_keys=frozenset({f"k8s:{UID_B}"})
        ),
    ]
    result = attribute(gpu_windows=[row.window], host_windows=[], allocations=allocations, host_gpu_slots=1)
    active = {s.job_id: s.energy_j for s in result.shares if s.component is Component.GPU_ACTIVE}
    idle_j = min(3200.0, row.window.idle_power_w * 10.0)
    active_j = 3200.0 - idle_j
    assert active_j > 0.0
    # Work: 0.8125 x 3 = 2.4375 and 0.375 x 1 = 0.375 (the empty instance: 0).
    assert active[1] == pytest.approx(active_j * 2.4375 / 2.8125, rel=1e-12)
    assert active[2] == pytest.approx(active_j * 0.375 / 2.8125, rel=1e-12)
    assert math.fsum(s.energy_j for s in result.shares) == pytest.approx(3200.0, rel=1e-12)
    assert result.diagnostics == []


def test_modelled_cpu_on_top_of_a_module_counter_is_refused(client, host_setup):
    host, device, secret = host_setup
    gh200 = gpu_entry(uuid_=device.uuid, name="NVIDIA GH200 480GB", energy_covers="gpu+cpu+memory")
    doubled = window(seq=1, start=_start(), gpus=[gh200], cpu_energy_j=2500.0, dram_energy_j=400.0)
    doubled["host"]["quality"] = "modelled"
    response = post_batch(client, secret, batch(hostname=host.hostname, windows=[doubled]))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "windows[0].host.cpu_energy_j"
    assert stored_counts() == (0, 0, 0)
    # What the agent sends for such a host: 0 J of host CPU/DRAM, the module counter holds them.
    ok = window(seq=1, start=_start(), gpus=[gh200], cpu_energy_j=0.0, dram_energy_j=0.0)
    ok["host"]["cpu_dram_in_gpu_modules"] = True
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=[ok])).status_code == 202
    assert _stored()[0][1] == "gpu+cpu+memory"


def test_an_agent_window_of_a_mig_gpu_is_accepted_and_keeps_its_instances(client, host_setup, tmp_path):
    """The agent's own MIG window (simulated H100, GPM activity) goes through the real ingest."""
    from telemetry.agent.gpu import NvmlReader
    from telemetry.agent.sim import FakeNvml, SimProcTree
    from telemetry.agent.window import WindowBuilder

    host, device, secret = host_setup
    now = [1000.0]
    nvml = FakeNvml(
        [
            {
                "model": "H100",
                "uuid": device.uuid,
                "workload": "llm_inference",
                "mig": [{"profile": "3g.40gb", "job_key": "k8s:a"}, {"profile": "1g.10gb"}],
            }
        ],
        clock=lambda: now[0],
        proc_tree=SimProcTree(tmp_path),
    )
    reader = NvmlReader(nvml, clock=lambda: now[0])
    reader.open()
    builder = WindowBuilder()
    start = _start()
    t0 = start.timestamp()
    builder.add_tick(wall_s=t0, gpus=reader.sample(boundary=True), host=None, jobs={})
    for tick in range(1, 11):
        now[0] += 1.0
        builder.add_tick(wall_s=t0 + tick, gpus=reader.sample(boundary=tick == 10), host=None, jobs={})
    wire = builder.close(end_wall_s=t0 + 10)
    assert wire is not None
    (gpu,) = wire["gpus"]
    assert gpu["util_pct"] is not None and gpu["mem_util_pct"] == 0.0  # NVML gives neither under MIG
    # Map the instance's process to its job, as the agent's job mapper would.
    for process in gpu["processes"]:
        process["job_key"] = "k8s:a"
    response = post_batch(client, secret, batch(hostname=host.hostname, windows=[{"seq": 1, **wire}]))
    assert response.status_code == 202, response.content
    batch_pk = TelemetryBatch.objects.get().pk
    (series,) = gpu_series_for_batches(batch_pks=[batch_pk])[batch_pk]
    (row,) = series.rows()
    busy, empty = sorted(row.window.mig_instances, key=lambda m: m.gpu_instance_id)
    assert (busy.slices, busy.job_keys, empty.slices, empty.job_keys, empty.activity) == (
        3,
        frozenset({"k8s:a"}),
        1,
        frozenset(),
        0.0,
    )
    assert busy.activity is not None and 0.0 < busy.activity <= 1.0


def test_dcgm_mig_pods_get_their_instances_joules_in_the_ledger(client):
    """The issue's case at ledger level: two pods on two MIG instances of one H100 (idle 70 W),
    allocations of 3/7 and 1/7 of the GPU, 3,200 J in 10 s. Idle 700 J by slice fraction:
    300 / 100 J, 300 J to the fleet. Active 2,500 J by activity x slices (2.4375 : 0.375)."""
    from accounting.models import LedgerEntry
    from accounting.services.attribution import batches_attribute
    from tests.factories import JobAllocationFactory, JobFactory

    host = HostFactory(hostname="gpu-node-02", gpu_slots=1)
    device = DeviceFactory(host=host, index=0, uuid=MIG_GPU)
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    t0 = _start()
    jobs = {}
    for uid, fraction in ((UID_A, 3 / 7), (UID_B, 1 / 7)):
        jobs[uid] = JobFactory(cluster=host.cluster, scheduler_job_id=uid, started_at=t0 - dt.timedelta(hours=1))
        JobAllocationFactory(job=jobs[uid], device=device, fraction=fraction)
    first = scrape_parse(text=(DATA / "dcgm_mig_t0.prom").read_text(), at=t0)
    second = scrape_parse(text=(DATA / "dcgm_mig_t1.prom").read_text(), at=t0 + dt.timedelta(seconds=10))
    wire = windows_from_scrapes(previous=first, current=second, seq=1)
    wire["host"] = {"cpu_energy_j": 0.0, "dram_energy_j": 0.0, "cpu_util_pct": 0.0, "quality": "measured"}
    payload = batch(hostname=host.hostname, windows=[wire])
    assert post_batch(client, secret, payload).status_code == 202
    pk = TelemetryBatch.objects.get().pk
    assert batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC)).attributed == [pk]

    def energy(job, component: str) -> float:
        rows = LedgerEntry.objects.filter(job=job, device=device, component=component)
        return math.fsum(rows.values_list("energy_j", flat=True))

    a, b = jobs[UID_A], jobs[UID_B]
    assert energy(a, "gpu_idle") == pytest.approx(300.0, rel=1e-12)
    assert energy(b, "gpu_idle") == pytest.approx(100.0, rel=1e-12)
    assert energy(None, "gpu_idle") == pytest.approx(300.0, rel=1e-12)
    assert energy(a, "gpu_active") == pytest.approx(2500.0 * 2.4375 / 2.8125, rel=1e-12)  # 2,166.67 J
    assert energy(b, "gpu_active") == pytest.approx(2500.0 * 0.375 / 2.8125, rel=1e-12)  # 333.33 J
    it_j = math.fsum(
        LedgerEntry.objects.filter(device=device).exclude(component="facility").values_list("energy_j", flat=True)
    )
    assert it_j == pytest.approx(3200.0, rel=1e-12)
