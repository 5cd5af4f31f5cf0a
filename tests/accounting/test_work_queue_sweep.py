"""The sweeper asks for the oldest stale batch only: one nudge drains the queue (issue 19)."""

from __future__ import annotations

import datetime as dt

import pytest

from accounting.services.work_queue import batches_sweep
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db


def test_sweep_returns_the_oldest_pending_batch_alone(client, fleet):  # noqa: F811
    host, gpu0, _gpu1, _job, start, secret = fleet
    for seq in (1, 2, 3):
        payload = batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=seq,
                    start=start + dt.timedelta(seconds=10 * (seq - 1)),
                    gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=1000.0)],
                )
            ],
        )
        post_batch(client, secret, payload)
    pks = list(TelemetryBatch.objects.order_by("received_at").values_list("pk", flat=True))
    assert len(pks) == 3
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert batches_sweep(now=later) == [pks[0]]
    assert batches_sweep(now=later, limit=10) == pks
    # Nothing is stale yet a moment after storing: a live nudge would still take them.
    assert batches_sweep(now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)) == []
