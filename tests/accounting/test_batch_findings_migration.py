"""Migrations accounting/0022 and telemetry/0007 move a batch's findings (gaps, diagnostics) from
telemetry's batch row to accounting's ``BatchFindings``, on a seeded database, and back."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.migration_helpers import columns_present, migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("accounting", "0021_merge_fillfactor"), ("telemetry", "0006_gpuseries")]
AFTER = [("telemetry", "0007_batch_findings_to_accounting")]
T0 = dt.datetime(2026, 11, 3, 14, tzinfo=dt.UTC)
GAP = {
    "device_id": 7,
    "start": "2026-11-03T14:00:10+00:00",
    "end": "2026-11-03T14:00:20+00:00",
    "duration_s": 10.0,
    "resolution": "interpolated",
    "energy_j": 5000.0,
}
DIAGNOSTIC = {
    "code": "wall_below_measured",
    "message": "wall energy 900.0 J is below GPU + CPU + DRAM 1200.0 J in host window seq 3",
    "start": "2026-11-03T14:00:20+00:00",
    "end": "2026-11-03T14:00:30+00:00",
    "device_id": None,
    "energy_j": -300.0,
}


def test_findings_move_to_accounting_and_back():
    apps = migrate_to(BEFORE)
    try:
        from tests.factories import HostFactory

        host = HostFactory()
        Batch = apps.get_model("telemetry", "TelemetryBatch")

        def stored(n: int, **findings):
            start = T0 + dt.timedelta(minutes=n)
            return Batch.objects.create(
                host_id=host.pk,
                batch_id=f"00000000-0000-0000-0000-00000000000{n}",
                received_at=start,
                first_start=start,
                last_end=start + dt.timedelta(minutes=1),
                first_seq=n,
                last_seq=n,
                gpu_window_count=1,
                host_window_count=1,
                gpu_energy_j=1.0,
                host_energy_j=1.0,
                status="done",
                attempts=1,
                **findings,
            ).pk

        with_gap = stored(0, gaps=[GAP])
        with_diagnostic = stored(1, diagnostics=[DIAGNOSTIC])
        with_both = stored(2, gaps=[GAP, GAP], diagnostics=[DIAGNOSTIC])
        clean = stored(3)

        apps = migrate_to(AFTER)
        Findings = apps.get_model("accounting", "BatchFindings")
        moved = {f.batch_id: (f.gaps, f.diagnostics) for f in Findings.objects.all()}
        assert moved == {
            with_gap: ([GAP], []),
            with_diagnostic: ([], [DIAGNOSTIC]),
            with_both: ([GAP, GAP], [DIAGNOSTIC]),
        }
        assert columns_present("telemetry_telemetrybatch", ("gaps", "diagnostics")) == []
        assert apps.get_model("telemetry", "TelemetryBatch").objects.count() == 4

        apps = migrate_to(BEFORE)
        back = {b.pk: (b.gaps, b.diagnostics) for b in apps.get_model("telemetry", "TelemetryBatch").objects.all()}
        assert back == {
            with_gap: ([GAP], []),
            with_diagnostic: ([], [DIAGNOSTIC]),
            with_both: ([GAP, GAP], [DIAGNOSTIC]),
            clean: ([], []),
        }
        assert columns_present("telemetry_telemetrybatch", ("gaps", "diagnostics")) == ["diagnostics", "gaps"]
    finally:
        # Back to the latest schema for the tests that follow.
        migrate_to_latest()
