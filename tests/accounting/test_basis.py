"""Issue 13, ledger basis: operational carbon on the direct intensity, the life-cycle figure
beside it (upstream, Scope 3 cat. 3), the basis recorded on every intensity and ledger row, a
re-import that keeps what it replaced, annual factors labelled, and a basis correction that
rebuilds the ledger and keeps the old totals (exact values)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command

from accounting.factors.codecarbon_data import load_codecarbon_zones
from accounting.factors.csv_import import HourlyRow
from accounting.models import AuditEvent, FactorChange, FootprintRevision, GridZone, JobFootprint, LedgerEntry
from accounting.services.attribution import batches_attribute
from accounting.services.factors import intensity_import, zone_update, zones_load_codecarbon
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db
H = dt.timedelta(hours=1)
# The fleet fixture's job: 6000 J of GPU energy plus its host share and PUE, 9225 J in all.
JOB_ENERGY_KWH = 9225.0 / 3.6e6


def _attribute(client, fleet):  # noqa: F811
    host, gpu0, _gpu1, job, start, secret = fleet
    payload = batch(
        hostname=host.hostname,
        windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0)])],
    )
    post_batch(client, secret, payload)
    batches_attribute(batch_pks=[TelemetryBatch.objects.get().pk], now=dt.datetime.now(dt.UTC))
    return JobFootprint.objects.get(job=job)


def _em_csv(tmp_path, code, start, direct, lca):
    """An Electricity Maps past-hourly export (their column names) for the hours around ``start``."""
    lines = ["Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh (LCA)"]
    lines += [f"{(start + i * H):%Y-%m-%d %H:%M:%S},{code},{direct},{lca}" for i in (-1, 0, 1)]
    path = tmp_path / "em.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_operational_is_direct_and_upstream_is_beside_it(client, fleet, tmp_path):  # noqa: F811
    host, *_rest, start, _secret = fleet
    zone = host.cluster.site.zone
    path = _em_csv(tmp_path, zone.code, start, 200.0, 250.0)
    call_command("import_intensity", path, "--format", "electricitymaps", "--no-progress", stdout=io.StringIO())
    fp = _attribute(client, fleet)
    # 9225 J x 200 g/kWh direct (the old default stored and charged the LCA 250 g/kWh: 0.640625 g).
    assert fp.co2e_operational_g == pytest.approx(JOB_ENERGY_KWH * 200.0, rel=1e-12)
    assert fp.co2e_operational_g == pytest.approx(0.5125, rel=1e-12)
    # Upstream: 9225 J x (250 - 200) g/kWh, a separate figure.
    assert fp.co2e_upstream_g == pytest.approx(0.128125, rel=1e-12)
    assert (fp.direct_basis_energy_j, fp.lifecycle_basis_energy_j, fp.co2_only_energy_j) == (
        pytest.approx(9225.0),
        0.0,
        0.0,
    )
    entries = list(LedgerEntry.objects.filter(job=fp.job))
    assert {(e.intensity_basis, e.intensity_gases) for e in entries} == {("direct", "co2e")}
    assert {(e.factor_versions["intensity_basis"], e.factor_versions["intensity_gases"]) for e in entries} == {
        ("direct", "co2e")
    }


def test_annual_lifecycle_zone_has_no_upstream_figure_and_says_lifecycle(client, fleet):  # noqa: F811
    host, *_ = fleet
    GridZone.objects.filter(pk=host.cluster.site.zone_id).update(annual_basis="lifecycle", annual_gases="co2e")
    fp = _attribute(client, fleet)
    assert fp.co2e_operational_g == pytest.approx(1.025, rel=1e-12)  # 9225 J x 400 g/kWh
    assert (fp.co2e_upstream_g, fp.lifecycle_basis_energy_j, fp.direct_basis_energy_j) == (
        0.0,
        pytest.approx(9225.0),
        0.0,
    )
    assert set(LedgerEntry.objects.values_list("co2e_upstream_g", flat=True)) == {None}


def test_reimport_keeps_the_replaced_hourly_values():
    zone = GridZone.objects.create(code="DE", name="Germany", annual_intensity_g_per_kwh=380.95, source="codecarbon")
    t = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    first = [
        HourlyRow("DE", t, 203.41, lifecycle_g_per_kwh=253.18),
        HourlyRow("DE", t + H, 198.02, lifecycle_g_per_kwh=247.55),
    ]
    intensity_import(rows=first, signal="average", source="electricitymaps", reason="first export")
    revised = [
        HourlyRow("DE", t, 210.0, lifecycle_g_per_kwh=260.0),
        HourlyRow("DE", t + H, 198.02, lifecycle_g_per_kwh=247.55),
    ]
    report = intensity_import(rows=revised, signal="average", source="electricitymaps", reason="revised export")
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    change = FactorChange.objects.get(pk=report.factor_changes[0])
    old = {
        "hour": "2024-01-01T00:00:00+00:00",
        "intensity_g_per_kwh": 203.41,
        "lifecycle_g_per_kwh": 253.18,
        "basis": "direct",
        "gases": "co2e",
        "source": "electricitymaps",
        "is_fallback": False,
        "version": 1,
    }
    assert change.before == {"rows": 1, "hours": [old]}
    assert change.after == {
        "rows": 1,
        "source": "electricitymaps",
        "hours": [{**old, "intensity_g_per_kwh": 210.0, "lifecycle_g_per_kwh": 260.0, "version": 2}],
    }
    assert (change.affects_from, change.affects_to) == (t, t + H)
    event = AuditEvent.objects.filter(object_type="hourly_intensity").order_by("-pk").first()
    assert event is not None and event.before == change.before
    # The first import replaced nothing: no before values to keep.
    assert FactorChange.objects.filter(reason="first export").get().before is None
    assert zone.hourly.get(hour=t).version == 2


def test_basis_correction_rebuilds_the_ledger_and_keeps_the_old_totals(client, fleet):  # noqa: F811
    host, *_ = fleet
    zone = host.cluster.site.zone
    GridZone.objects.filter(pk=zone.pk).update(annual_basis="lifecycle")
    fp = _attribute(client, fleet)
    assert fp.co2e_operational_g == pytest.approx(1.025, rel=1e-12)
    zone.refresh_from_db()
    change = zone_update(
        zone=zone,
        changes={"annual_basis": "direct", "annual_intensity_g_per_kwh": 300.0, "annual_lifecycle_g_per_kwh": 400.0},
        reason="400 g/kWh was the life-cycle figure; direct is 300",
        user=None,
    )
    assert change is not None
    assert change.before == {
        "annual_basis": "lifecycle",
        "annual_intensity_g_per_kwh": 400.0,
        "annual_lifecycle_g_per_kwh": None,
        "version": 1,
    }
    call_command("recompute_ledger")
    fp = JobFootprint.objects.get(job=fp.job)
    # 9225 J x 300 g/kWh direct, and 9225 J x (400 - 300) g/kWh upstream beside it.
    assert fp.co2e_operational_g == pytest.approx(0.76875, rel=1e-12)
    assert fp.co2e_upstream_g == pytest.approx(0.25625, rel=1e-12)
    assert fp.direct_basis_energy_j == pytest.approx(9225.0)
    revision = FootprintRevision.objects.get(job=fp.job)
    assert (revision.co2e_operational_g, revision.factor_change_id) == (pytest.approx(1.025, rel=1e-12), change.pk)
    assert set(LedgerEntry.objects.values_list("intensity_basis", flat=True)) == {"direct"}


def test_codecarbon_zones_carry_their_basis_and_gases():
    zones = {z.code: z for z in load_codecarbon_zones()}
    assert [
        (c, zones[c].basis, zones[c].gases) for c in ("FR", "US-WA", "CA-QC", "CN-BJ", "SE-SE3", "gcp:europe-west1")
    ] == [
        ("FR", "lifecycle", "co2e"),
        ("US-WA", "direct", "co2e"),
        ("CA-QC", "direct", "co2"),
        ("CN-BJ", "direct", "co2"),
        ("SE-SE3", "lifecycle", "co2e"),
        ("gcp:europe-west1", "lifecycle", "co2e"),
    ]
    zones_load_codecarbon(zones=[zones["FR"], zones["CN-BJ"]])
    assert list(
        GridZone.objects.order_by("code").values_list(
            "code", "annual_basis", "annual_gases", "annual_lifecycle_g_per_kwh"
        )
    ) == [
        ("CN-BJ", "direct", "co2", None),
        ("FR", "lifecycle", "co2e", zones["FR"].annual_intensity_g_per_kwh),
    ]
