"""Migrations 0017-0019 turn a per-batch ledger into the hourly one (issue 18), on a seeded database:
each batch's rows become its record, the rows of one key and hour one entry with exact sums."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from tests.migration_helpers import migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

# Telemetry as it was then too (its batch rows still held the attribution's findings, which
# telemetry/0007 moved to accounting: going back to 0016 unapplies that).
BEFORE = [("accounting", "0016_reports_optout"), ("telemetry", "0006_gpuseries")]
AFTER = [("accounting", "0019_hourly_ledger_key")]
HOUR = dt.datetime(2026, 11, 3, 14, tzinfo=dt.UTC)


def test_per_batch_rows_become_hourly_entries_and_batch_records():
    apps = migrate_to(BEFORE)
    try:
        from tests.factories import DeviceFactory, HostFactory, JobFactory

        host = HostFactory()
        device = DeviceFactory(host=host, index=0)
        job = JobFactory(cluster=host.cluster)
        site = host.cluster.site
        Batch = apps.get_model("telemetry", "TelemetryBatch")
        Entry = apps.get_model("accounting", "LedgerEntry")
        batches = []
        for n in range(3):
            start = HOUR + dt.timedelta(minutes=10 * n)
            batches.append(
                Batch.objects.create(
                    host_id=host.pk,
                    batch_id=f"00000000-0000-0000-0000-00000000000{n}",
                    received_at=start,
                    first_start=start,
                    last_end=start + dt.timedelta(minutes=10),
                    first_seq=n,
                    last_seq=n,
                    gpu_window_count=1,
                    host_window_count=1,
                    gpu_energy_j=0.1,
                    host_energy_j=0.0,
                    status="done",
                )
            )
        common = dict(
            org_id=site.org_id,
            site_id=site.pk,
            host_id=host.pk,
            hour=HOUR,
            co2e_operational_marginal_g=None,
            intensity_g_per_kwh=400.0,
            intensity_source="zone annual",
            pue=1.5,
            method_version="2026.12-1",
            factor_versions={"method": 1},
        )
        # The job's GPU entry in three batches (0.1 J each: 0.1 + 0.1 + 0.1 is not 0.3 in floats),
        # the second integrated; an overhead entry in the last batch only.
        for n, b in enumerate(batches):
            Entry.objects.create(
                batch_id=b.pk,
                account="job",
                job_id=job.pk,
                team_id=job.team_id,
                device_id=device.pk,
                component="gpu_active",
                energy_j=0.1,
                held_s=600.0,
                co2e_operational_g=0.01,
                co2e_embodied_g=0.002,
                co2e_low_g=0.009,
                co2e_high_g=0.011,
                co2e_upstream_g=None,
                quality="integrated" if n == 1 else "measured",
                measured_energy_j=0.0 if n == 1 else 0.1,
                energy_covers="gpu",
                **common,
            )
        Entry.objects.create(
            batch_id=batches[2].pk,
            account="fleet_overhead",
            job_id=None,
            team_id=None,
            device_id=None,
            component="host_cpu",
            energy_j=50.0,
            held_s=0.0,
            co2e_operational_g=5.0,
            co2e_embodied_g=0.0,
            co2e_low_g=4.0,
            co2e_high_g=6.0,
            co2e_upstream_g=1.25,
            quality="modelled",
            measured_energy_j=0.0,
            **common,
        )

        apps = migrate_to(AFTER)
        Entry = apps.get_model("accounting", "LedgerEntry")
        Record = apps.get_model("accounting", "BatchAttribution")
        rows = {(e.account, e.component): e for e in Entry.objects.all()}
        assert set(rows) == {("job", "gpu_active"), ("fleet_overhead", "host_cpu")}
        gpu = rows["job", "gpu_active"]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT energy_j::text, measured_energy_j::text FROM accounting_ledgerentry WHERE account = 'job'"
            )
            assert cursor.fetchone() == ("0.3", "0.2")  # exact decimal sums
        assert (gpu.lines_measured, gpu.lines_integrated, gpu.lines_interpolated, gpu.lines_modelled) == (2, 1, 0, 0)
        assert gpu.quality == "integrated"
        assert gpu.last_window_end == HOUR + dt.timedelta(minutes=30)
        assert gpu.co2e_upstream_g is None
        cpu = rows["fleet_overhead", "host_cpu"]
        assert (cpu.lines_modelled, cpu.quality, cpu.co2e_upstream_g) == (1, "modelled", 1.25)
        records = {r.batch_id: r for r in Record.objects.all()}
        assert set(records) == {b.pk for b in batches}
        last = records[batches[2].pk]
        assert last.accounts == ["job", "fleet_overhead"]
        assert last.energy_j == [0.1, 50.0]
        assert last.qualities == ["measured", "modelled"]
        assert last.job_ids == [job.pk, None]
        assert (last.org_id, last.site_id, last.host_id) == (site.org_id, site.pk, host.pk)
    finally:
        # Back to the latest schema for the tests that follow (not just 0019).
        migrate_to_latest()
        from accounting.models import LedgerEntry

        LedgerEntry.objects.all().delete()
