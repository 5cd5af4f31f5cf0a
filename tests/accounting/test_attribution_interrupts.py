"""A task running out of time stops attribution; it is not a batch's failure (issue 19).

Celery's soft time limit raises inside whatever the worker is running. Before, the per-batch
fallback of ``batches_attribute`` caught it as ``Exception``: the batch was charged an
attempt (after five, marked failed for good) and the task went on past its soft limit.
"""

from __future__ import annotations

import datetime as dt

import pytest

from accounting.models import LedgerEntry
from accounting.services import attribution
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db


class _OutOfTime(Exception):
    """Stands in for celery.exceptions.SoftTimeLimitExceeded (an Exception subclass too)."""


def test_an_interrupt_propagates_and_charges_no_attempt(client, fleet, monkeypatch):  # noqa: F811
    host, gpu0, _gpu1, _job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)])],
    )
    post_batch(client, secret, payload)
    pk = TelemetryBatch.objects.get().pk

    def out_of_time(**kwargs):
        raise _OutOfTime

    monkeypatch.setattr(attribution, "_attribute_many", out_of_time)
    with pytest.raises(_OutOfTime):
        attribution.batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC), interrupts=(_OutOfTime,))
    stored = TelemetryBatch.objects.get(pk=pk)
    assert stored.attempts == 0 and stored.error == ""
    assert not LedgerEntry.objects.exists()


def test_other_errors_still_fail_the_batch_alone(client, fleet, monkeypatch):  # noqa: F811
    host, gpu0, _gpu1, _job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)])],
    )
    post_batch(client, secret, payload)
    pk = TelemetryBatch.objects.get().pk

    def broken(**kwargs):
        raise _OutOfTime("not declared an interrupt here")

    monkeypatch.setattr(attribution, "_attribute_many", broken)
    outcome = attribution.batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC))
    assert outcome.failed == [pk]
    stored = TelemetryBatch.objects.get(pk=pk)
    assert stored.attempts == 1 and stored.status == TelemetryBatch.Status.PENDING
