"""A corrected factor rebuilds the affected ledger rows; the old totals stay in the audit trail."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from accounting.models import FactorChange, FootprintRevision, JobFootprint
from accounting.services.attribution import batches_attribute
from accounting.services.factors import zone_update_intensity
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db


def test_zone_correction_recomputes_and_keeps_the_old_totals(client, fleet):  # noqa: F811
    host, gpu0, _gpu1, job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)])],
    )
    post_batch(client, secret, payload)
    batches_attribute(batch_pks=[TelemetryBatch.objects.get().pk], now=dt.datetime.now(dt.UTC))
    assert JobFootprint.objects.get(job=job).co2e_operational_g == pytest.approx(1.025)

    zone = host.cluster.site.zone
    change = zone_update_intensity(zone=zone, intensity_g_per_kwh=200.0, reason="vendor corrected 2024 mix", user=None)
    assert change is not None and change.recompute_status == "pending"
    call_command("recompute_ledger")

    # Same energy, half the intensity: 9225 J / 3.6e6 x 200 g/kWh.
    assert JobFootprint.objects.get(job=job).co2e_operational_g == pytest.approx(0.5125)
    revision = FootprintRevision.objects.get(job=job)
    assert revision.co2e_operational_g == pytest.approx(1.025)
    assert revision.reason == "vendor corrected 2024 mix"
    assert FactorChange.objects.get(pk=change.pk).recompute_status == "done"
    # Idempotent: nothing pending, running again changes nothing.
    call_command("recompute_ledger")
    assert FootprintRevision.objects.filter(job=job).count() == 1
    assert JobFootprint.objects.get(job=job).co2e_operational_g == pytest.approx(0.5125)
