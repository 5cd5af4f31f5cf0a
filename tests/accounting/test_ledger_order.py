"""Idempotency across batches: any order, any repetition, the same ledger rows (bit for bit: the
entries' sums are exact, issue 18)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from accounting.models import BatchAttribution, LedgerEntry
from accounting.services.attribution import batches_attribute
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db


def _ledger():
    fields = (
        "account",
        "job_id",
        "device_id",
        "component",
        "hour",
        "energy_j",
        "held_s",
        "co2e_operational_g",
        "co2e_embodied_g",
        "quality",
        "measured_energy_j",
    )
    return list(LedgerEntry.objects.order_by(*fields[:5]).values_list(*fields))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_in_any_order_and_repeated_give_identical_rows(client, fleet, seed):  # noqa: F811
    host, gpu0, gpu1, _job, start, secret = fleet
    rng = random.Random(seed)
    seq = 1
    for n in range(6):
        windows = []
        for _ in range(3):
            w_start = start + dt.timedelta(seconds=10 * (seq - 1) + (15 if n >= 3 else 0))  # one 15 s gap
            windows.append(
                window(
                    seq=seq,
                    start=w_start,
                    gpus=[
                        gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=rng.uniform(1000, 6000)),
                        gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=rng.uniform(300, 800)),
                    ],
                )
            )
            seq += 1
        assert post_batch(client, secret, batch(hostname=host.hostname, windows=windows)).status_code == 202
    pks = list(TelemetryBatch.objects.order_by("pk").values_list("pk", flat=True))
    now = dt.datetime.now(dt.UTC)
    for pk in pks:
        batches_attribute(batch_pks=[pk], now=now)
    reference = _ledger()
    for _ in range(2):
        shuffled = pks[:]
        rng.shuffle(shuffled)
        TelemetryBatch.objects.update(status="pending")
        for pk in shuffled + shuffled[:2]:  # and some twice
            TelemetryBatch.objects.filter(pk=pk).update(status="pending")
            batches_attribute(batch_pks=[pk], now=now)
        assert _ledger() == reference


def test_a_broken_batch_fails_alone_and_is_retried_then_marked_failed(client, fleet):  # noqa: F811
    host, gpu0, _gpu1, _job, start, secret = fleet
    for seq in (1, 2):
        payload = batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=seq,
                    start=start + dt.timedelta(seconds=10 * (seq - 1)),
                    gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)],
                )
            ],
        )
        assert post_batch(client, secret, payload).status_code == 202
    good, bad = TelemetryBatch.objects.order_by("pk").values_list("pk", flat=True)
    # Corrupt the second batch's stored row the way only a bug could: the mapper must refuse it.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE telemetry_hostwindow SET quality = 'bogus' WHERE batch_id = %s", [bad])
    now = dt.datetime.now(dt.UTC)
    outcome = batches_attribute(batch_pks=[good, bad], now=now)
    assert outcome.attributed == [good] and outcome.failed == [bad]
    failed = TelemetryBatch.objects.get(pk=bad)
    assert (failed.status, failed.attempts) == ("pending", 1)
    assert "bogus" in failed.error
    assert not BatchAttribution.objects.filter(batch_id=bad).exists()
    for _attempt in range(2, 6):
        batches_attribute(batch_pks=[bad], now=now)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("failed", 5)
    assert TelemetryBatch.objects.get(pk=good).status == "done"
