"""Jobs registered without an allocation (Kubernetes pods from the watcher) hold the GPUs the
agent sees their processes on: ``allocations_observe`` via attribution.

Hand-worked numbers are those of test_ledger_slice.py: one 10 s window, H100 idle 70 W, 8-slot
host, PUE 1.5, 400 g/kWh. GPU 0 runs the pod's process (6000 J), GPU 1 idles (700 J):
  job: GPU 6000 J + host 1/8 of (1000 + 200) J = 6150 J IT, x 1.5 = 9225 J
  fleet overhead: 700 J + 875 J + 175 J IT
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Sum

from accounting.models import ApiToken, JobAllocation, JobFootprint, LedgerEntry
from accounting.selectors.batch_findings import batch_findings_get
from accounting.services.attribution import batches_attribute
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db

POD_UID = "6f1c2b9e-8a44-4d1a-9c0e-2f5b7d3e4a10"
POD_PROCESS = [{"pid": 4242, "sm_util_pct": 88.0, "job_key": f"k8s:{POD_UID}"}]


@pytest.fixture
def pod_fleet():
    host = HostFactory(gpu_slots=8)
    host.cluster.site.zone.annual_intensity_g_per_kwh = 400.0
    host.cluster.site.zone.save()
    gpu0 = DeviceFactory(host=host, index=0)
    gpu1 = DeviceFactory(host=host, index=1)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    pod = JobFactory(cluster=host.cluster, scheduler_job_id=POD_UID, started_at=start - dt.timedelta(minutes=5))
    secret = token_create(org=host.cluster.site.org, name="a", scope=ApiToken.Scope.HOST, host=host).secret
    return host, gpu0, gpu1, pod, start, secret


def _post(client, secret, payload) -> int:
    response = post_batch(client, secret, payload)
    assert response.status_code == 202, response.content
    return TelemetryBatch.objects.get(batch_id=payload["batch_id"]).pk


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _entries():
    return list(
        LedgerEntry.objects.order_by("account", "job_id", "host_id", "device_id", "component", "hour").values_list(
            "account", "job_id", "device_id", "component", "hour", "energy_j", "co2e_operational_g"
        )
    )


def _it_energy(**filters) -> float:
    return LedgerEntry.objects.filter(**filters).exclude(component="facility").aggregate(e=Sum("energy_j"))["e"] or 0.0


def test_a_pod_gets_the_gpu_its_process_runs_on_with_exact_joules(client, pod_fleet):
    host, gpu0, gpu1, pod, start, secret = pod_fleet
    pk = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=1,
                    start=start,
                    gpus=[
                        gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, processes=POD_PROCESS),
                        gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=700.0),
                    ],
                )
            ],
        ),
    )
    assert batches_attribute(batch_pks=[pk], now=_now()).attributed == [pk]

    allocation = JobAllocation.objects.get(job=pod)
    assert (allocation.device, allocation.start, allocation.end, allocation.fraction, allocation.source) == (
        gpu0,
        pod.started_at,
        None,
        1.0,
        "observed",
    )
    footprint = JobFootprint.objects.get(job=pod)
    assert footprint.gpu_energy_j == pytest.approx(6000.0, abs=1e-9)
    assert footprint.host_energy_j == pytest.approx(150.0, abs=1e-9)
    assert footprint.energy_j == pytest.approx(9225.0, abs=1e-9)
    assert footprint.co2e_operational_g == pytest.approx(1.025, abs=1e-12)
    assert _it_energy(account="fleet_overhead") == pytest.approx(700.0 + 875.0 + 175.0, abs=1e-9)
    assert _it_energy() == pytest.approx(6000.0 + 700.0 + 1000.0 + 200.0, abs=1e-9)  # conservation


def test_earlier_batches_are_re_attributed_to_the_pod_and_nothing_is_counted_twice(client, pod_fleet):
    host, gpu0, _gpu1, pod, start, secret = pod_fleet
    # The first window arrives before the pod's process is visible (e.g. still loading data).
    first = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=2000.0)])],
        ),
    )
    batches_attribute(batch_pks=[first], now=_now())
    assert _it_energy(job=pod) == 0.0
    second = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=2,
                    start=start + dt.timedelta(seconds=10),
                    gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, processes=POD_PROCESS)],
                )
            ],
        ),
    )
    batches_attribute(batch_pks=[second], now=_now())
    # The observed allocation covers the pod's whole life, so the first batch went back to pending.
    assert TelemetryBatch.objects.get(pk=first).status == "pending"
    assert TelemetryBatch.objects.get(pk=second).status == "done"
    batches_attribute(batch_pks=[first], now=_now())
    assert _it_energy(job=pod, device=gpu0) == pytest.approx(8000.0, abs=1e-9)
    assert _it_energy() == pytest.approx(8000.0 + 2 * 1200.0, abs=1e-9)
    assert JobFootprint.objects.get(job=pod).gpu_energy_j == pytest.approx(8000.0, abs=1e-9)
    assert JobAllocation.objects.filter(job=pod).count() == 1


def test_attributing_again_creates_no_second_allocation_and_the_same_rows(client, pod_fleet):
    host, gpu0, _gpu1, pod, start, secret = pod_fleet
    pk = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=1,
                    start=start,
                    gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, processes=POD_PROCESS)],
                )
            ],
        ),
    )
    batches_attribute(batch_pks=[pk], now=_now())
    rows = _entries()
    TelemetryBatch.objects.filter(pk=pk).update(status="pending")
    batches_attribute(batch_pks=[pk], now=_now())
    assert _entries() == rows
    assert JobAllocation.objects.filter(job=pod).count() == 1


def test_a_job_with_a_scheduler_allocation_is_never_extended_by_observation(client, pod_fleet):
    host, gpu0, gpu1, pod, start, secret = pod_fleet
    JobAllocationFactory(job=pod, device=gpu1, start=pod.started_at)
    pk = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=1,
                    start=start,
                    gpus=[
                        gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, processes=POD_PROCESS),
                        gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=700.0),
                    ],
                )
            ],
        ),
    )
    batches_attribute(batch_pks=[pk], now=_now())
    assert list(JobAllocation.objects.filter(job=pod).values_list("device_id", "source")) == [(gpu1.pk, "scheduler")]
    assert _it_energy(job=pod, device=gpu0) == 0.0
    assert _it_energy(account="fleet_overhead", device=gpu0) == pytest.approx(6000.0, abs=1e-9)


def test_a_key_naming_no_registered_job_stays_fleet_overhead(client, pod_fleet):
    host, gpu0, _gpu1, _pod, start, secret = pod_fleet
    stranger = [{"pid": 7, "sm_util_pct": 50.0, "job_key": "k8s:not-registered"}]
    pk = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, processes=stranger)]
                )
            ],
        ),
    )
    batches_attribute(batch_pks=[pk], now=_now())
    assert not JobAllocation.objects.exists()
    assert _it_energy(account="fleet_overhead", device=gpu0) == pytest.approx(6000.0, abs=1e-9)


def test_a_pod_in_another_cluster_with_the_same_uid_is_not_matched(client, pod_fleet):
    host, gpu0, _gpu1, pod, start, secret = pod_fleet
    elsewhere = JobFactory(scheduler_job_id=POD_UID, started_at=pod.started_at)  # another cluster
    pk = _post(
        client,
        secret,
        batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=1,
                    start=start,
                    gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, processes=POD_PROCESS)],
                )
            ],
        ),
    )
    batches_attribute(batch_pks=[pk], now=_now())
    assert list(JobAllocation.objects.values_list("job_id", flat=True)) == [pod.pk]
    assert not LedgerEntry.objects.filter(job=elsewhere).exists()


def test_two_pods_seen_on_mig_instances_hold_their_slices_not_the_whole_gpu(client):
    """Issue 15 follow-up: two pods registered without an allocation, seen by the agent on a
    3g.40gb and a 1g.10gb instance of one H100 (7 slices, idle 70 W), 3,200 J in 10 s, both
    instances at activity 0.5. Observed allocations of 3/7 and 1/7 (before: 1 and 1, which
    oversubscribed the GPU and split its idle baseline 50/50). Idle 700 J: 300 / 100 J, 300 J to
    the fleet (the 3 unheld slices). Active 2,500 J by activity x slices (1.5 : 0.5): 1,875 /
    625 J. Host (1 slot, 1,000 + 200 J): 3/7, 1/7 and 3/7 to the fleet."""
    host = HostFactory(gpu_slots=1)
    gpu = DeviceFactory(host=host, index=0)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    uid_a, uid_b = "6f1c2b9e-aaaa-4d1a-9c0e-000000000001", "6f1c2b9e-bbbb-4d1a-9c0e-000000000002"
    pods = {
        uid: JobFactory(cluster=host.cluster, scheduler_job_id=uid, started_at=start - dt.timedelta(minutes=5))
        for uid in (uid_a, uid_b)
    }
    secret = token_create(org=host.cluster.site.org, name="a", scope=ApiToken.Scope.HOST, host=host).secret
    gpu_window = gpu_entry(
        uuid_=gpu.uuid,
        energy_j=3200.0,
        processes=[
            {"pid": 7, "sm_util_pct": None, "job_key": f"k8s:{uid_a}"},
            {"pid": 8, "sm_util_pct": None, "job_key": f"k8s:{uid_b}"},
        ],
        # The agent's shape: instances with their pids; job keys come from the processes.
        mig_instances=[
            {"uuid": "MIG-a", "gpu_instance_id": 1, "profile": "3g.40gb", "activity": 0.5, "pids": [7]},
            {"uuid": "MIG-b", "gpu_instance_id": 9, "profile": "1g.10gb", "activity": 0.5, "pids": [8]},
        ],
    )
    pk = _post(client, secret, batch(hostname=host.hostname, windows=[window(seq=1, start=start, gpus=[gpu_window])]))
    assert batches_attribute(batch_pks=[pk], now=_now()).attributed == [pk]

    held = {
        a.job_id: (a.device_id, a.fraction, a.source, a.mig_instance)
        for a in JobAllocation.objects.filter(job__in=pods.values())
    }
    assert held == {
        pods[uid_a].pk: (gpu.pk, 3 / 7, "observed", "observed on MIG GI 1 (3 of 7 slices)"),
        pods[uid_b].pk: (gpu.pk, 1 / 7, "observed", "observed on MIG GI 9 (1 of 7 slices)"),
    }
    a, b = pods[uid_a], pods[uid_b]
    assert _it_energy(job=a, component="gpu_idle") == pytest.approx(300.0, rel=1e-12)
    assert _it_energy(job=b, component="gpu_idle") == pytest.approx(100.0, rel=1e-12)
    assert _it_energy(account="fleet_overhead", component="gpu_idle") == pytest.approx(300.0, rel=1e-12)
    assert _it_energy(job=a, component="gpu_active") == pytest.approx(1875.0, rel=1e-12)
    assert _it_energy(job=b, component="gpu_active") == pytest.approx(625.0, rel=1e-12)
    assert _it_energy(job=a, component="host_cpu") == pytest.approx(1000.0 * 3 / 7, rel=1e-12)
    assert _it_energy(job=b, component="host_dram") == pytest.approx(200.0 / 7, rel=1e-12)
    assert _it_energy(account="fleet_overhead", component="host_cpu") == pytest.approx(1000.0 * 3 / 7, rel=1e-12)
    assert _it_energy() == pytest.approx(3200.0 + 1200.0, rel=1e-12)  # conservation
    held_s = dict(LedgerEntry.objects.filter(component="gpu_active").values_list("job_id", "held_s"))
    assert held_s == {a.pk: pytest.approx(30 / 7), b.pk: pytest.approx(10 / 7), None: pytest.approx(30 / 7)}
    assert batch_findings_get(batch_pk=pk).diagnostics == []  # no oversubscription any more
