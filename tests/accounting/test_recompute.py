"""A corrected factor rebuilds the affected ledger rows; the old totals stay in the audit trail."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from accounting.models import FactorChange, FootprintRevision, JobFootprint
from accounting.services.attribution import batches_attribute
from accounting.services.factors import zone_update_intensity
from accounting.services.recompute import batches_for_change, site_batches
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.factories import HostFactory
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


def test_site_period_all_and_change_selections_rebuild_exactly_their_batches(client, fleet):  # noqa: F811
    host, gpu0, _gpu1, job, start, secret = fleet
    other_site_host = HostFactory(gpu_slots=8)
    for seq in (1, 2, 3):
        payload = batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=seq,
                    start=start + dt.timedelta(minutes=10 * (seq - 1)),
                    gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)],
                )
            ],
        )
        post_batch(client, secret, payload)
    pks = list(TelemetryBatch.objects.order_by("first_start").values_list("pk", flat=True))
    batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC))
    site = host.cluster.site
    # The second and third batches overlap [start + 10 min, start + 1 h); none is on the other site.
    assert site_batches(site=site, since=start + dt.timedelta(minutes=5), until=start + dt.timedelta(hours=1)) == [
        pks[1],
        pks[2],
    ]
    assert site_batches(site=other_site_host.cluster.site, since=None, until=None) == []
    out = StringIO()
    call_command(
        "recompute_ledger",
        "--site",
        f"{site.org.slug}/{site.slug}",
        "--since",
        (start + dt.timedelta(minutes=5)).isoformat(),
        stdout=out,
    )
    assert out.getvalue().strip().endswith("rebuilt 2 batches")
    out = StringIO()
    call_command("recompute_ledger", "--all", stdout=out)
    assert out.getvalue().strip().endswith("rebuilt 3 batches")
    zone = site.zone
    change = zone_update_intensity(zone=zone, intensity_g_per_kwh=200.0, reason="corrected", user=None)
    assert batches_for_change(change=change) == pks
    # Every rebuild re-attributed the same windows: 3 x 9225 J at half the intensity at the end.
    call_command("recompute_ledger", "--change", str(change.pk), stdout=StringIO())
    assert JobFootprint.objects.get(job=job).co2e_operational_g == pytest.approx(3 * 0.5125)
    assert list(TelemetryBatch.objects.order_by("pk").values_list("status", flat=True)) == ["done"] * 3
