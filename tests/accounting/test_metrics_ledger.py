"""/metrics against a ledger made by the real path (ingest -> batches_attribute -> roll-ups):
every joule and gram of the ledger appears once in the exposition, in the account it was
charged to, and a job's counters are its footprint."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Q, Sum
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounting.models import ApiToken, Job, JobFootprint, LedgerEntry
from accounting.services.attribution import batches_attribute
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db
HOURS = 3


def _sum(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, got), v in samples.items() if n == name and labels.items() <= dict(got).items())


def test_exposition_accounts_for_every_joule_of_the_ledger(client):
    host = HostFactory(gpu_slots=4)
    site = host.cluster.site
    gpus = [DeviceFactory(host=host, index=i) for i in range(4)]
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=HOURS + 1)
    job = JobFactory(cluster=host.cluster, started_at=start, status=Job.Status.RUNNING, units={"tokens": 3e6})
    for gpu in gpus[:2]:  # GPUs 2 and 3 stay unallocated: the fleet-overhead account
        JobAllocationFactory(job=job, device=gpu, start=start)
    secret = token_create(org=site.org, name="host", scope=ApiToken.Scope.HOST, host=host).secret
    windows = [
        window(
            seq=h + 1,
            start=start + dt.timedelta(hours=h),
            duration_s=3600.0,
            gpus=[
                gpu_entry(
                    uuid_=g.uuid, index=g.index, energy_j=(600.0 if g.index < 2 else 80.0) * 3600, duration_s=3600.0
                )
                for g in gpus
            ],
            cpu_energy_j=300.0 * 3600,
            dram_energy_j=100.0 * 3600,
        )
        for h in range(HOURS)
    ]
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=windows)).status_code == 202
    pks = list(TelemetryBatch.objects.values_list("pk", flat=True))
    assert batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC)).attributed == pks

    admin = APIClient()
    admin.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(org=site.org, name='m', scope='admin').secret}")
    text = admin.get("/metrics").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    entries = LedgerEntry.objects.all()
    energy = entries.aggregate(e=Sum("energy_j"))["e"]
    carbon = entries.aggregate(c=Sum("co2e_operational_g"))["c"] + entries.aggregate(c=Sum("co2e_embodied_g"))["c"]
    assert energy > 0
    assert _sum(samples, "carbonledger_energy_joules_total") == pytest.approx(energy, rel=1e-12)
    assert _sum(samples, "carbonledger_co2e_grams_total") == pytest.approx(carbon, rel=1e-12)
    overhead = entries.filter(account="fleet_overhead").aggregate(e=Sum("energy_j"))["e"]
    idle_held = entries.filter(account="job", component="gpu_idle").aggregate(e=Sum("energy_j"))["e"]
    assert overhead > 0 and idle_held > 0
    assert _sum(samples, "carbonledger_energy_joules_total", account="fleet_overhead") == pytest.approx(
        overhead, rel=1e-12
    )
    assert _sum(samples, "carbonledger_energy_joules_total", account="idle_allocated") == pytest.approx(
        idle_held, rel=1e-12
    )
    gpu_energy = entries.filter(Q(component="gpu_active") | Q(component="gpu_idle")).aggregate(e=Sum("energy_j"))["e"]
    assert _sum(samples, "carbonledger_gpu_energy_joules_total") == pytest.approx(gpu_energy, rel=1e-12)
    assert _sum(samples, "carbonledger_gpu_allocated_seconds_total") == 2 * HOURS * 3600.0
    assert _sum(samples, "carbonledger_gpu_observed_seconds_total") == 4 * HOURS * 3600.0
    footprint = JobFootprint.objects.get(job=job)
    job_labels = {"job_id": job.scheduler_job_id}
    assert _sum(samples, "carbonledger_job_energy_joules_total", **job_labels) == pytest.approx(
        footprint.energy_j, rel=1e-12
    )
    assert _sum(samples, "carbonledger_job_co2e_grams_total", **job_labels) == pytest.approx(
        footprint.co2e_g, rel=1e-12
    )
    assert _sum(samples, "carbonledger_job_gpu_energy_joules_total", **job_labels, quality="measured") == pytest.approx(
        footprint.gpu_energy_j * footprint.measured_fraction, rel=1e-12
    )
    assert _sum(samples, "carbonledger_job_functional_units_total", **job_labels, unit="tokens") == 3e6
