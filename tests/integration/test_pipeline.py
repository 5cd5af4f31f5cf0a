"""End to end with real processes: HTTP ingest -> PostgreSQL -> Redis -> Celery worker -> ledger.

Includes the failure drills of the ledger issue: a worker SIGKILLed in the middle of
attribution, and Redis going away while batches arrive, both end with the same ledger as an
undisturbed run (every joule once, nothing lost, nothing doubled).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Sum

from accounting.models import ApiToken, JobFootprint, LedgerEntry
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.integration.conftest import wait_for
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _fleet(n_gpus: int = 2):
    host = HostFactory(gpu_slots=8)
    zone = host.cluster.site.zone
    zone.annual_intensity_g_per_kwh = 400.0
    zone.save()
    devices = [DeviceFactory(host=host, index=i) for i in range(n_gpus)]
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=4)
    job = JobFactory(cluster=host.cluster, started_at=start - dt.timedelta(minutes=1))
    for device in devices:
        JobAllocationFactory(job=job, device=device, start=job.started_at)
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    return host, devices, job, start, secret


def _post_batches(
    client, host, devices, start, secret, *, n_batches: int, first_seq: int = 1, windows_per_batch: int = 6
) -> float:
    """Post contiguous 10 s windows; returns the GPU + host joules sent."""
    sent_j = 0.0
    seq = first_seq
    for _ in range(n_batches):
        windows = []
        for _ in range(windows_per_batch):
            w_start = start + dt.timedelta(seconds=10 * (seq - 1))
            gpus = [gpu_entry(uuid_=d.uuid, index=d.index, energy_j=5000.0 + 10 * d.index) for d in devices]
            windows.append(window(seq=seq, start=w_start, gpus=gpus))
            sent_j += sum(g["energy_j"] for g in gpus) + 1200.0
            seq += 1
        response = post_batch(client, secret, batch(hostname=host.hostname, windows=windows))
        assert response.status_code == 202, response.content
    return sent_j


def _all_done() -> bool:
    return not TelemetryBatch.objects.exclude(status="done").exists()


def _it_energy() -> float:
    return LedgerEntry.objects.exclude(component="facility").aggregate(e=Sum("energy_j"))["e"] or 0.0


def test_slice_through_a_real_worker(client, processes):
    host, devices, job, start, secret = _fleet(n_gpus=1)
    processes.worker("w1")
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=devices[0].uuid, index=0, energy_j=6000.0)])],
    )
    assert post_batch(client, secret, payload).status_code == 202
    wait_for(
        lambda: JobFootprint.objects.filter(job=job).exists() and _all_done(),
        timeout_s=60,
        what="the worker to attribute the batch",
    )
    footprint = JobFootprint.objects.get(job=job)
    # 6000 J GPU + 150 J host share (1 of 8 slots) = 6150 J IT; x PUE 1.5 = 9225 J; x 400 g/kWh.
    assert footprint.energy_j == pytest.approx(9225.0, abs=1e-9)
    assert footprint.co2e_operational_g == pytest.approx(1.025, abs=1e-12)


def test_worker_killed_mid_attribution_and_redis_restart_end_with_the_same_ledger(client, processes):
    host, devices, job, start, secret = _fleet(n_gpus=2)
    # Phase 1: Redis is down while batches arrive: they are stored, the nudges are lost.
    processes.redis.stop()
    sent_j = _post_batches(client, host, devices, start, secret, n_batches=10)
    assert TelemetryBatch.objects.filter(status="pending").count() == 10
    processes.redis.start()
    # Phase 2: more batches with a worker that is SIGKILLed while it works.
    worker = processes.worker("victim")
    sent_j += _post_batches(client, host, devices, start, secret, n_batches=30, first_seq=61)
    processes.beat()
    wait_for(
        lambda: TelemetryBatch.objects.filter(status__in=["claimed", "done"]).exists(),
        timeout_s=60,
        interval_s=0.05,
        what="attribution to start",
    )
    processes.kill9(worker)
    # Phase 3: a fresh worker and the sweeper (beat) finish everything, lost messages included.
    processes.worker("rescuer")
    wait_for(_all_done, timeout_s=120, what="all batches attributed after the kill")

    assert _it_energy() == pytest.approx(sent_j, rel=1e-12)
    # Every batch has its entries exactly once: the job holds all GPU energy and 2/8 of host energy.
    gpu_j = LedgerEntry.objects.filter(job=job, component__in=["gpu_active", "gpu_idle"]).aggregate(e=Sum("energy_j"))[
        "e"
    ]
    assert gpu_j == pytest.approx(40 * 6 * (5000.0 + 5010.0), rel=1e-12)
    footprint = JobFootprint.objects.get(job=job)
    undisturbed_job_it_j = 40 * 6 * (5000.0 + 5010.0 + 1200.0 * 2 / 8)
    assert footprint.energy_j == pytest.approx(undisturbed_job_it_j * 1.5, rel=1e-12)
    assert footprint.co2e_operational_g == pytest.approx(undisturbed_job_it_j * 1.5 / 3.6e6 * 400.0, rel=1e-12)
