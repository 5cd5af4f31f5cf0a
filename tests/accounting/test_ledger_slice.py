"""The first slice with exact numbers: batch -> stored -> attributed -> footprint and aggregates.

Hand-worked case (one 10 s window, H100 idle 70 W, 8-slot host, job holds GPU 0 only,
PUE 1.5, zone 400 g/kWh):
  GPU 6000 J = idle 70 W x 10 s = 700 J + active 5300 J          -> job
  host CPU 1000 J, DRAM 200 J: job holds 1 of 8 slots -> 125 + 25 -> job; 875 + 175 -> overhead
  job IT energy 6150 J; facility (1.5 - 1) x 6150 = 3075 J; total 9225 J
  operational 9225 J / 3.6e6 J/kWh x 400 g/kWh = 1.025 g
  embodied 150 kg x 1000 / (5 y x 365.25 d x 86400 s x 0.8) x 10 s = 0.011883...
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Sum

from accounting.models import ApiToken, DeviceHour, JobFootprint, JobHour, LedgerEntry, TeamDay
from accounting.selectors.batch_findings import batch_findings_get
from accounting.services.attribution import batches_attribute
from accounting.services.work_queue import ledger_mark_dirty
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db

EMBODIED_10S_G = 150_000.0 / (5 * 365.25 * 86400 * 0.8) * 10


@pytest.fixture
def fleet():
    host = HostFactory(gpu_slots=8)
    host.cluster.site.zone.annual_intensity_g_per_kwh = 400.0
    host.cluster.site.zone.save()
    gpu0 = DeviceFactory(host=host, index=0)
    gpu1 = DeviceFactory(host=host, index=1)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    job = JobFactory(cluster=host.cluster, started_at=start - dt.timedelta(minutes=5))
    JobAllocationFactory(job=job, device=gpu0, start=job.started_at)
    secret = token_create(org=host.cluster.site.org, name="a", scope=ApiToken.Scope.HOST, host=host).secret
    return host, gpu0, gpu1, job, start, secret


def _entries():
    fields = (
        "account",
        "job_id",
        "device_id",
        "component",
        "hour",
        "energy_j",
        "co2e_operational_g",
        "co2e_embodied_g",
        "quality",
        "measured_energy_j",
    )
    return list(
        LedgerEntry.objects.order_by("account", "job_id", "device_id", "component", "hour").values_list(*fields)
    )


def _now():
    return dt.datetime.now(dt.UTC)


def test_slice_exact_joules_and_grams(client, fleet):
    host, gpu0, gpu1, job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=start,
                gpus=[
                    gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0),
                    gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=700.0),
                ],
            )
        ],
    )
    assert post_batch(client, secret, payload).status_code == 202
    pk = TelemetryBatch.objects.get().pk
    outcome = batches_attribute(batch_pks=[pk], now=_now())
    assert outcome.attributed == [pk]

    fp = JobFootprint.objects.get(job=job)
    assert fp.gpu_energy_j == pytest.approx(6000.0, abs=1e-9)
    assert fp.gpu_idle_energy_j == pytest.approx(700.0, abs=1e-9)
    assert fp.host_energy_j == pytest.approx(150.0, abs=1e-9)
    assert fp.facility_energy_j == pytest.approx(3075.0, abs=1e-9)
    assert fp.energy_j == pytest.approx(9225.0, abs=1e-9)
    assert fp.co2e_operational_g == pytest.approx(1.025, abs=1e-12)
    assert fp.co2e_embodied_g == pytest.approx(EMBODIED_10S_G, rel=1e-12)
    assert fp.device_hours == pytest.approx(10 / 3600, rel=1e-12)
    assert fp.measured_fraction == 1.0
    assert fp.is_final is False

    # Conservation: every measured joule (both GPUs + host) lands on exactly one account.
    it = LedgerEntry.objects.exclude(component="facility").aggregate(e=Sum("energy_j"))["e"]
    assert it == pytest.approx(6000.0 + 700.0 + 1000.0 + 200.0, abs=1e-9)
    overhead = LedgerEntry.objects.filter(account="fleet_overhead").exclude(component="facility")
    assert overhead.aggregate(e=Sum("energy_j"))["e"] == pytest.approx(700.0 + 875.0 + 175.0, abs=1e-9)

    hour = JobHour.objects.get(job=job)
    assert hour.energy_j == pytest.approx(9225.0)
    assert hour.intensity_g_per_kwh == pytest.approx(400.0)
    dh = DeviceHour.objects.get(device=gpu0)
    assert dh.energy_j == pytest.approx(6000.0)
    assert dh.allocated_s == pytest.approx(10.0)
    assert dh.avg_power_w == pytest.approx(600.0)
    team_day = TeamDay.objects.get(team=job.team)
    assert team_day.energy_j == pytest.approx(9225.0)
    assert TelemetryBatch.objects.get().status == "done"

    # The same footprint appears in the API and on the dashboard (checked in their own tests).


def test_attributing_twice_changes_nothing(client, fleet):
    host, gpu0, _gpu1, job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)])],
    )
    post_batch(client, secret, payload)
    pk = TelemetryBatch.objects.get().pk
    batches_attribute(batch_pks=[pk], now=_now())
    snapshot = _entries()
    footprint = JobFootprint.objects.values().get(job=job)
    # A duplicate message for a done batch is skipped; a forced re-attribution rebuilds the same rows.
    assert batches_attribute(batch_pks=[pk], now=_now()).skipped == [pk]
    TelemetryBatch.objects.filter(pk=pk).update(status="pending")
    batches_attribute(batch_pks=[pk], now=_now())
    again = _entries()
    assert again == snapshot
    footprint2 = JobFootprint.objects.values().get(job=job)
    footprint.pop("updated_at"), footprint2.pop("updated_at")
    assert footprint2 == footprint


def test_late_allocation_reattributes_overhead_to_the_job(client, fleet):
    host, gpu0, gpu1, job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=start,
                gpus=[
                    gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0),
                    gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=3000.0),
                ],
            )
        ],
    )
    post_batch(client, secret, payload)
    pk = TelemetryBatch.objects.get().pk
    batches_attribute(batch_pks=[pk], now=_now())
    assert not LedgerEntry.objects.filter(job=job, device=gpu1).exists()
    JobAllocationFactory(job=job, device=gpu1, start=start - dt.timedelta(minutes=1))
    assert ledger_mark_dirty(device_ids=[gpu1.pk], start=start - dt.timedelta(minutes=1), end=None) == 1
    batches_attribute(batch_pks=[pk], now=_now())
    gpu1_energy = LedgerEntry.objects.filter(job=job, device=gpu1).aggregate(e=Sum("energy_j"))["e"]
    assert gpu1_energy == pytest.approx(3000.0)
    # Host share now covers 2 of 8 slots.
    host_energy = LedgerEntry.objects.filter(job=job, component__in=["host_cpu", "host_dram"]).aggregate(
        e=Sum("energy_j")
    )["e"]
    assert host_energy == pytest.approx(1200.0 * 2 / 8)


def test_gap_between_batches_is_interpolated_and_reported(client, fleet):
    host, gpu0, _gpu1, _job, start, secret = fleet
    first = batch(
        hostname=host.hostname, windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, energy_j=6000.0)])]
    )
    second = batch(
        hostname=host.hostname,
        windows=[
            window(seq=3, start=start + dt.timedelta(seconds=20), gpus=[gpu_entry(uuid_=gpu0.uuid, energy_j=4000.0)])
        ],
    )
    post_batch(client, secret, first)
    post_batch(client, secret, second)
    pks = list(TelemetryBatch.objects.order_by("first_seq").values_list("pk", flat=True))
    batches_attribute(batch_pks=pks, now=_now())
    later = batch_findings_get(batch_pk=pks[1])
    assert later.gaps == [
        {
            "device_id": gpu0.pk,
            "start": (start + dt.timedelta(seconds=10)).isoformat(),
            "end": (start + dt.timedelta(seconds=20)).isoformat(),
            "duration_s": 10.0,
            "resolution": "interpolated",
            "energy_j": 5000.0,
        }
    ]
    gpu_total = LedgerEntry.objects.filter(device=gpu0).aggregate(e=Sum("energy_j"))["e"]
    assert gpu_total == pytest.approx(6000.0 + 5000.0 + 4000.0)
    interpolated = LedgerEntry.objects.filter(device=gpu0, quality="interpolated").count()
    assert interpolated >= 1


def test_a_job_that_loses_every_entry_of_a_batch_loses_its_aggregates_too(client, fleet):
    """Re-attribution after the job's allocation is cut back before the batch: the job has no
    ledger entry left there, so its footprint, job-hours and team-days must say so (they were
    once left with the old totals)."""
    host, gpu0, _gpu1, job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)])],
    )
    assert post_batch(client, secret, payload).status_code == 202
    pk = TelemetryBatch.objects.get().pk
    batches_attribute(batch_pks=[pk], now=_now())
    assert JobFootprint.objects.get(job=job).energy_j == pytest.approx(9225.0, abs=1e-9)

    allocation = job.allocations.get()
    allocation.end = start - dt.timedelta(minutes=1)
    allocation.save()
    assert ledger_mark_dirty(device_ids=[gpu0.pk], start=allocation.end, end=None) == 1
    batches_attribute(batch_pks=[pk], now=_now())

    assert not LedgerEntry.objects.filter(job=job).exists()
    fp = JobFootprint.objects.get(job=job)
    assert (fp.energy_j, fp.gpu_energy_j, fp.co2e_operational_g, fp.co2e_embodied_g) == (0.0, 0.0, 0.0, 0.0)
    assert not JobHour.objects.filter(job=job).exists()
    assert not TeamDay.objects.filter(team=job.team).exists()
    overhead_day = TeamDay.objects.get(team=None)
    assert overhead_day.energy_j == pytest.approx((6000.0 + 1000.0 + 200.0) * 1.5, abs=1e-9)
    device_hour = DeviceHour.objects.get(device=gpu0)
    assert (device_hour.energy_j, device_hour.allocated_s) == (pytest.approx(6000.0), 0.0)


@pytest.mark.parametrize(("batch_sizes", "label_based"), [((10,), 0.0), ((1,) * 10, 0.0), ((2, 8), 0.0)])
def test_measured_fraction_does_not_depend_on_batching(client, fleet, batch_sizes, label_based):
    """Issue 19. Ten 10 s windows of 6000 J on GPU 0 (the job's), one of them (seq 6) integrated
    after a counter reset: 54,000 of 60,000 J GPU energy measured = 0.9, however the agent cut the
    windows into batches. Counting the energy of entries *labelled* measured (worst window of the
    entry) gave 0.0 as one batch, 0.9 as ten, 0.2 as 2 + 8 while the ledger had a row per batch; with
    one row per (job, device, component, hour) (issue 18) the entry holds all ten windows however
    they were batched, and its label is their worst (integrated) every time."""
    host, gpu0, _gpu1, job, start, secret = fleet
    windows = [
        window(
            seq=seq,
            start=start + dt.timedelta(seconds=10 * (seq - 1)),
            gpus=[
                gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, quality="integrated" if seq == 6 else "measured")
            ],
        )
        for seq in range(1, 11)
    ]
    first = 0
    for size in batch_sizes:
        payload = batch(hostname=host.hostname, windows=windows[first : first + size])
        assert post_batch(client, secret, payload).status_code == 202
        first += size
    pks = list(TelemetryBatch.objects.order_by("first_seq").values_list("pk", flat=True))
    assert len(pks) == len(batch_sizes)
    outcome = batches_attribute(batch_pks=pks, now=_now())
    assert outcome.attributed == pks

    gpu_entries = LedgerEntry.objects.filter(job=job, component__in=["gpu_active", "gpu_idle"])
    sums = gpu_entries.aggregate(energy=Sum("energy_j"), measured=Sum("measured_energy_j"))
    assert sums == {"energy": pytest.approx(60_000.0, abs=1e-9), "measured": pytest.approx(54_000.0, abs=1e-9)}
    labelled = gpu_entries.filter(quality="measured").aggregate(e=Sum("energy_j"))["e"] or 0.0
    assert labelled / sums["energy"] == pytest.approx(label_based, abs=1e-12)
    assert JobHour.objects.get(job=job).measured_gpu_energy_j == pytest.approx(54_000.0, abs=1e-9)
    fp = JobFootprint.objects.get(job=job)
    assert fp.gpu_energy_j == pytest.approx(60_000.0, abs=1e-9)
    assert fp.measured_fraction == pytest.approx(0.9, abs=1e-15)
