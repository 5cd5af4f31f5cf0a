"""The hourly ledger (issue 18): one entry per (account, job, host, device, component, hour) however
the agent batched its windows, merged exactly as batches arrive, with each batch's lines kept in its
own record (``BatchAttribution``) so a re-attribution takes away exactly what it added."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.db.models import Sum

from accounting.models import BatchAttribution, DeviceHour, DeviceHourSource, JobFootprint, JobHour, LedgerEntry
from accounting.services.attribution import batch_records_prune, batches_attribute
from accounting.services.work_queue import ledger_mark_dirty
from telemetry.models import TelemetryBatch
from telemetry.partitions import drop_expired_partitions
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.factories import JobAllocationFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db

_FIELDS = (
    "account",
    "job_id",
    "device_id",
    "component",
    "hour",
    "energy_j",
    "held_s",
    "co2e_operational_g",
    "co2e_embodied_g",
    "co2e_low_g",
    "co2e_high_g",
    "measured_energy_j",
    "quality",
    "lines_measured",
    "lines_integrated",
    "lines_interpolated",
    "lines_modelled",
)


def _ledger() -> list[tuple]:
    return list(LedgerEntry.objects.order_by(*_FIELDS[:5]).values_list(*_FIELDS))


def _windows(gpu0, gpu1, start, n=12):
    """n 10 s windows; GPU 0 6000 J (window 5 integrated), GPU 1 3000 J."""
    return [
        window(
            seq=seq,
            start=start + dt.timedelta(seconds=10 * (seq - 1)),
            gpus=[
                gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0, quality="integrated" if seq == 5 else "measured"),
                gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=3000.0),
            ],
        )
        for seq in range(1, n + 1)
    ]


def _post_all(client, host, secret, windows, sizes):
    first = 0
    for size in sizes:
        assert (
            post_batch(client, secret, batch(hostname=host.hostname, windows=windows[first : first + size])).status_code
            == 202
        )
        first += size
    pks = list(TelemetryBatch.objects.order_by("first_seq").values_list("pk", flat=True))
    batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC))
    return pks


@pytest.mark.parametrize("sizes", [(12,), (1,) * 12, (5, 7), (3, 3, 3, 3)])
def test_one_entry_per_key_however_the_windows_were_batched(client, fleet, sizes):  # noqa: F811
    """Twelve windows of one hour in 1, 2, 4 or 12 batches: the same entries. Job on GPU 0, GPU 1
    unallocated (overhead): per account GPU active, GPU idle, host CPU, host DRAM and facility — 10
    entries, no more with 12 batches than with one."""
    host, gpu0, gpu1, job, start, secret = fleet
    pks = _post_all(client, host, secret, _windows(gpu0, gpu1, start), sizes)
    entries = _ledger()
    assert len(entries) == len({row[:5] for row in entries}) == 10
    assert LedgerEntry.objects.filter(job=job, device=gpu0).count() == 2  # gpu_active, gpu_idle
    # Exact values: GPU 0 12 x 6000 J (700 J idle each), the job's entries count 12 lines each.
    active = LedgerEntry.objects.get(job=job, device=gpu0, component="gpu_active")
    assert active.energy_j == pytest.approx(12 * 5300.0, rel=1e-12)
    # One line per batch (a batch's windows of one hour are one line), the batch holding window 5
    # integrated: its line's label.
    assert (active.lines_measured, active.lines_integrated) == (len(sizes) - 1, 1)
    assert active.quality == "integrated"
    assert active.held_s == pytest.approx(120.0, rel=1e-12)
    assert active.measured_energy_j == pytest.approx(11 * 5300.0, rel=1e-12)
    # Every line is in exactly one batch record, and the records sum to the entries.
    records = list(BatchAttribution.objects.filter(batch_id__in=pks))
    assert len(records) == len(pks)
    line_count = sum(len(r.energy_j) for r in records)
    assert line_count == sum(row[13] + row[14] + row[15] + row[16] for row in entries)
    assert math.fsum(e for r in records for e in r.energy_j) == pytest.approx(
        math.fsum(row[5] for row in entries), rel=1e-15
    )
    # Each record holds its batch's raw window sums per (device, hour), written with the record.
    hour = start.replace(minute=0, second=0, microsecond=0)
    raw = {}
    for r in records:
        assert r.raw_device_ids == sorted(r.raw_device_ids) and set(r.raw_hours) == {hour}
        for device_id, window_s, energy_j in zip(r.raw_device_ids, r.raw_window_s, r.raw_energy_j, strict=True):
            total = raw.setdefault(device_id, [0.0, 0.0])
            total[0] += window_s
            total[1] += energy_j
    assert raw == {gpu0.pk: [120.0, 72_000.0], gpu1.pk: [120.0, 36_000.0]}
    # Conservation: IT energy = measured GPU + host energy of every batch.
    it = LedgerEntry.objects.exclude(component="facility").aggregate(e=Sum("energy_j"))["e"]
    batches = TelemetryBatch.objects.aggregate(g=Sum("gpu_energy_j"), h=Sum("host_energy_j"))
    assert it == pytest.approx(batches["g"] + batches["h"], rel=1e-12)
    assert JobFootprint.objects.get(job=job).gpu_energy_j == pytest.approx(72_000.0, rel=1e-12)


def test_reattribution_takes_away_exactly_what_it_added(client, fleet):  # noqa: F811
    """A late allocation moves GPU 1 from overhead to the job and back: the entries return bit for
    bit (numeric sums), the overhead entries of GPU 1 that lost every line are gone, and the job-hour
    follows."""
    host, gpu0, gpu1, job, start, secret = fleet
    pks = _post_all(client, host, secret, _windows(gpu0, gpu1, start), (4, 4, 4))
    before = _ledger()
    before_hour = JobHour.objects.values_list("energy_j", "gpu_energy_j").get(job=job)
    allocation = JobAllocationFactory(job=job, device=gpu1, start=start - dt.timedelta(minutes=1))
    assert ledger_mark_dirty(device_ids=[gpu1.pk], start=allocation.start, end=None) == 3
    batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC))
    assert not LedgerEntry.objects.filter(account="fleet_overhead", device=gpu1).exists()
    assert LedgerEntry.objects.get(job=job, device=gpu1, component="gpu_active").energy_j == pytest.approx(
        12 * (3000.0 - 700.0), rel=1e-12
    )
    assert JobHour.objects.get(job=job).gpu_energy_j == pytest.approx(12 * 9000.0, rel=1e-12)
    allocation.delete()
    assert ledger_mark_dirty(device_ids=[gpu1.pk], start=start - dt.timedelta(minutes=1), end=None) == 3
    batches_attribute(batch_pks=list(reversed(pks)), now=dt.datetime.now(dt.UTC))
    assert _ledger() == before
    assert JobHour.objects.values_list("energy_j", "gpu_energy_j").get(job=job) == before_hour
    # Raw windows are counted once in the device-hour however often their batches were attributed.
    device_hour = DeviceHour.objects.get(device=gpu1)
    assert (device_hour.window_s, device_hour.window_energy_j) == (120.0, 36_000.0)
    assert device_hour.avg_power_w == 300.0
    assert DeviceHourSource.objects.count() == 3


def test_the_ledger_does_not_grow_with_batches(client, fleet):  # noqa: F811
    """Storage: entries per GPU-hour are set by the accounts and components, not by the batching."""
    host, gpu0, gpu1, _job, start, secret = fleet
    _post_all(client, host, secret, _windows(gpu0, gpu1, start, n=30), (1,) * 30)
    # Two accounts (the job, fleet overhead) x (GPU active, GPU idle, host CPU, host DRAM, facility).
    assert LedgerEntry.objects.count() == 10
    assert BatchAttribution.objects.count() == 30


def test_a_batch_past_retention_keeps_its_lines_and_its_record_goes(client, fleet, caplog):  # noqa: F811
    """Raw windows dropped by retention: a later re-attribution (a factor change, an allocation
    moved) must not take the batch's energy out of the ledger; past retention its record is pruned."""
    host, gpu0, gpu1, job, start, secret = fleet
    pks = _post_all(client, host, secret, _windows(gpu0, gpu1, start, n=3), (3,))
    before = _ledger()
    drop_expired_partitions(today=start.date() + dt.timedelta(days=40), retention_days=30)
    TelemetryBatch.objects.filter(pk__in=pks).update(status="pending")
    outcome = batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC))
    assert outcome.attributed == pks
    assert _ledger() == before
    assert TelemetryBatch.objects.get(pk=pks[0]).status == "done"
    assert "past retention" in caplog.text
    assert batch_records_prune(before=start) == 0
    assert batch_records_prune(before=start + dt.timedelta(hours=1)) == 1
    assert not BatchAttribution.objects.exists() and not DeviceHourSource.objects.exists()
    assert _ledger() == before
    assert JobFootprint.objects.get(job=job).gpu_energy_j == pytest.approx(18_000.0, rel=1e-12)


def test_attribution_reads_the_raw_tables_in_their_lock_order(client, fleet):  # noqa: F811
    """docs/reliability.md "Lock order": host windows before GPU series (a partition being created
    locks the parents exclusively in that order; reading them the other way round in one
    transaction could deadlock against it)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    host, gpu0, gpu1, _job, start, secret = fleet
    response = post_batch(client, secret, batch(hostname=host.hostname, windows=_windows(gpu0, gpu1, start, n=3)))
    assert response.status_code == 202
    with CaptureQueriesContext(connection) as ctx:
        batches_attribute(batch_pks=[TelemetryBatch.objects.get().pk], now=dt.datetime.now(dt.UTC))
    raw = [
        table
        for q in ctx.captured_queries
        for table in ("telemetry_hostwindow", "telemetry_gpuseries")
        if f"FROM {table}" in q["sql"]
    ]
    assert raw[0] == "telemetry_hostwindow" and "telemetry_gpuseries" in raw
    assert raw.index("telemetry_gpuseries") > raw.index("telemetry_hostwindow")
