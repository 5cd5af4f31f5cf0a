"""A batch's attribution findings (gaps, diagnostics) are accounting's record (``BatchFindings``):
written by the attribution where there is something to report, replaced by each re-attribution,
removed when a re-attribution finds nothing any more; telemetry's row keeps only the queue state."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from accounting.models import BatchFindings
from accounting.selectors.batch_findings import batch_findings_get
from accounting.services.attribution import batches_attribute
from accounting.services.work_queue import ledger_mark_dirty
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _post_two_gpu_window(client, host, gpu0, gpu1, start, secret) -> int:
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=start,
                gpus=[gpu_entry(uuid_=gpu0.uuid, index=0), gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=700.0)],
            )
        ],
    )
    post_batch(client, secret, payload)
    return TelemetryBatch.objects.get(batch_id=payload["batch_id"]).pk


def test_a_diagnostic_is_kept_and_goes_when_a_re_attribution_no_longer_finds_it(client, fleet):  # noqa: F811
    host, gpu0, gpu1, _job, start, secret = fleet
    host.gpu_slots = 1  # two GPUs report: more than the inventory says the host has
    host.save()
    pk = _post_two_gpu_window(client, host, gpu0, gpu1, start, secret)
    assert batches_attribute(batch_pks=[pk], now=_now()).attributed == [pk]
    findings = batch_findings_get(batch_pk=pk)
    assert findings.gaps == []
    assert [(d["code"], d["message"]) for d in findings.diagnostics] == [
        (
            "host_slots_exceeded",
            "2 GPUs reported windows but the host has 1 GPU slots; host energy shared over 2 slots",
        )
    ]
    assert TelemetryBatch.objects.values_list("attempts", "error", "status").get(pk=pk) == (1, "", "done")

    host.gpu_slots = 8  # the inventory corrected: the batch attributed again finds nothing
    host.save()
    assert ledger_mark_dirty(device_ids=[gpu0.pk], start=start - dt.timedelta(minutes=1), end=None) == 1
    assert batches_attribute(batch_pks=[pk], now=_now()).attributed == [pk]
    assert (batch_findings_get(batch_pk=pk).gaps, batch_findings_get(batch_pk=pk).diagnostics) == ([], [])
    assert not BatchFindings.objects.filter(batch_id=pk).exists()
    assert TelemetryBatch.objects.values_list("attempts", "error", "status").get(pk=pk) == (2, "", "done")


def test_a_batch_with_nothing_to_report_has_no_row_and_reads_empty(client, fleet):  # noqa: F811
    host, gpu0, gpu1, _job, start, secret = fleet
    pk = _post_two_gpu_window(client, host, gpu0, gpu1, start, secret)
    assert batch_findings_get(batch_pk=pk).diagnostics == []  # not attributed yet
    assert batches_attribute(batch_pks=[pk], now=_now()).attributed == [pk]
    assert BatchFindings.objects.count() == 0
    assert (batch_findings_get(batch_pk=pk).gaps, batch_findings_get(batch_pk=pk).diagnostics) == ([], [])


def test_the_batch_row_no_longer_holds_findings():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'telemetry_telemetrybatch' "
            "AND column_name IN ('gaps', 'diagnostics', 'attempts', 'error', 'status')"
        )
        assert sorted(row[0] for row in cursor.fetchall()) == ["attempts", "error", "status"]
