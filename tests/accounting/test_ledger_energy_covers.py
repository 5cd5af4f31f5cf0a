"""The ledger says which components a GPU's energy reading covers (issue 15): a Grace Hopper
module counter (GPU + CPU + memory) and a plain H100 counter (GPU alone) through ingest,
attribution and the rollup to ledger entries, the job footprint API and the job page."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from accounting.api.serializers import JobFootprintSerializer, represented
from accounting.models import ApiToken, Job, LedgerEntry
from accounting.selectors.jobs import job_footprint_get
from accounting.services.attribution import batches_attribute
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db(transaction=False)
GH200 = "GPU-6c0e9d2a-0000-4000-8000-0000000000a0"
H100 = "GPU-6c0e9d2a-0000-4000-8000-0000000000a1"


def test_a_module_counter_and_a_gpu_counter_are_told_apart_from_ingest_to_the_footprint(client):
    """GH200 (device 0): 6,000 J from its module counter, then 5,000 J of integrated power (the
    counter did not answer) in the same hour: its entries say gpu+cpu+memory (the widest in the
    hour). H100 (device 1): 2 x 4,000 J, gpu. Host: 0 J in the first window (the module holds
    the CPU), 500 + 100 J modelled in the second. Catalog idle 70 W: 700 J idle per window."""
    host = HostFactory(hostname="gh-node-01", gpu_slots=2)
    gh200 = DeviceFactory(host=host, index=0, uuid=GH200)
    h100 = DeviceFactory(host=host, index=1, uuid=H100)
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    t0 = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    job = JobFactory(cluster=host.cluster, scheduler_job_id="4242", started_at=t0 - dt.timedelta(hours=1))
    for device in (gh200, h100):
        JobAllocationFactory(job=job, device=device)
    module = window(
        seq=1,
        start=t0,
        gpus=[
            gpu_entry(uuid_=GH200, name="NVIDIA GH200 480GB", energy_j=6000.0, energy_covers="gpu+cpu+memory"),
            gpu_entry(uuid_=H100, index=1, energy_j=4000.0),
        ],
        cpu_energy_j=0.0,
        dram_energy_j=0.0,
    )
    module["host"]["cpu_dram_in_gpu_modules"] = True
    fallback = window(
        seq=2,
        start=t0 + dt.timedelta(seconds=10),
        gpus=[
            gpu_entry(uuid_=GH200, name="NVIDIA GH200 480GB", energy_j=5000.0, quality="integrated"),
            gpu_entry(uuid_=H100, index=1, energy_j=4000.0),
        ],
        cpu_energy_j=500.0,
        dram_energy_j=100.0,
        host_quality="modelled",
    )
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=[module, fallback])).status_code == 202
    pk = TelemetryBatch.objects.get().pk
    assert batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC)).attributed == [pk]

    rows = sorted(
        LedgerEntry.objects.values_list("component", "device_id", "energy_j", "quality", "energy_covers"),
        key=lambda r: (r[0], r[1] or 0),
    )
    facility = [r for r in rows if r[0] == "facility"]
    assert [r for r in rows if r[0] != "facility"] == [
        ("gpu_active", gh200.pk, 9600.0, "integrated", "gpu+cpu+memory"),
        ("gpu_active", h100.pk, 6600.0, "measured", "gpu"),
        ("gpu_idle", gh200.pk, 1400.0, "integrated", "gpu+cpu+memory"),
        ("gpu_idle", h100.pk, 1400.0, "measured", "gpu"),
        ("host_cpu", None, 500.0, "modelled", ""),
        ("host_dram", None, 100.0, "modelled", ""),
    ]
    assert facility and {r[4] for r in facility} == {""}

    job = Job.objects.select_related("footprint").get(pk=job.pk)
    assert (
        job.footprint.covers_gpu_energy_j,
        job.footprint.covers_gpu_memory_energy_j,
        job.footprint.covers_gpu_cpu_memory_energy_j,
    ) == (8000.0, 0.0, 11000.0)
    body = represented(JobFootprintSerializer, job_footprint_get(job=job))
    assert body["energy"]["gpu_j"] == 19000.0
    assert body["energy_covers"] == {
        "gpu_j": 8000.0,
        "gpu_memory_j": 0.0,
        "gpu_cpu_memory_j": 11000.0,
        "unrecorded_j": 0.0,
    }

    # Attributed again: the same rows (the batch's entries are rebuilt whole).
    TelemetryBatch.objects.filter(pk=pk).update(status="pending")
    assert batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC)).attributed == [pk]
    again = sorted(
        LedgerEntry.objects.values_list("component", "device_id", "energy_j", "quality", "energy_covers"),
        key=lambda r: (r[0], r[1] or 0),
    )
    assert again == rows
    assert math.fsum(r[2] for r in rows if r[0] != "facility") == 19600.0


def test_a_footprint_from_entries_written_before_coverage_was_recorded_says_so():
    job = JobFactory()
    from accounting.models import JobFootprint

    JobFootprint.objects.create(job=job, gpu_energy_j=1000.0, covers_gpu_energy_j=250.0)
    job = Job.objects.select_related("footprint").get(pk=job.pk)
    body = represented(JobFootprintSerializer, job_footprint_get(job=job))
    assert body["energy_covers"] == {
        "gpu_j": 250.0,
        "gpu_memory_j": 0.0,
        "gpu_cpu_memory_j": 0.0,
        "unrecorded_j": 750.0,
    }


def test_the_new_columns_keep_a_database_default_for_inserts_that_predate_them():
    """Raw inserts written before migration 0014 (and the previous release's code during a
    rolling deploy) name none of its columns: the database fills them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, column_default FROM information_schema.columns "
            "WHERE table_name IN ('accounting_ledgerentry', 'accounting_jobhour', 'accounting_jobfootprint', "
            "'accounting_job') AND (column_name LIKE 'covers_%%' OR column_name IN ('energy_covers', 'sluids')) "
            "ORDER BY table_name, column_name"
        )
        defaults = cursor.fetchall()
    assert defaults == [
        ("accounting_job", "sluids", "'[]'::jsonb"),
        ("accounting_jobfootprint", "covers_gpu_cpu_memory_energy_j", "0.0"),
        ("accounting_jobfootprint", "covers_gpu_energy_j", "0.0"),
        ("accounting_jobfootprint", "covers_gpu_memory_energy_j", "0.0"),
        ("accounting_jobhour", "covers_gpu_cpu_memory_energy_j", "0.0"),
        ("accounting_jobhour", "covers_gpu_energy_j", "0.0"),
        ("accounting_jobhour", "covers_gpu_memory_energy_j", "0.0"),
        ("accounting_ledgerentry", "energy_covers", "''::character varying"),
    ]
