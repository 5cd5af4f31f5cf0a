"""Existing per-batch ledger rows become the hourly ledger (issue 18).

1. Each batch's rows become its ``BatchAttribution`` record (its lines, as arrays).
2. The rows of one (account, job, host, device, component, hour) are merged into one: sums added
   exactly (numeric), lines counted by quality, the factors of the hour's latest row, the end of
   the latest batch. Migration 0019 then drops the batch column and makes the key unique.
"""

from django.db import migrations

_KEY = "account, job_id, org_id, team_id, site_id, host_id, device_id, component, hour"

_RECORDS = """
INSERT INTO accounting_batchattribution (
    batch_id, org_id, site_id, host_id, last_end, attributed_at, method_version,
    accounts, job_ids, team_ids, device_ids, components, hours, energy_j, held_s, co2e_operational_g,
    co2e_operational_marginal_g, co2e_embodied_g, co2e_low_g, co2e_high_g, co2e_upstream_g, measured_energy_j,
    qualities)
SELECT e.batch_id, MIN(e.org_id), MIN(e.site_id), MIN(e.host_id), MAX(b.last_end), MAX(e.computed_at),
       MAX(e.method_version),
       array_agg(e.account ORDER BY e.id), array_agg(e.job_id ORDER BY e.id), array_agg(e.team_id ORDER BY e.id),
       array_agg(e.device_id ORDER BY e.id), array_agg(e.component ORDER BY e.id), array_agg(e.hour ORDER BY e.id),
       array_agg(e.energy_j::float8 ORDER BY e.id), array_agg(e.held_s::float8 ORDER BY e.id),
       array_agg(e.co2e_operational_g::float8 ORDER BY e.id),
       array_agg(e.co2e_operational_marginal_g::float8 ORDER BY e.id),
       array_agg(e.co2e_embodied_g::float8 ORDER BY e.id), array_agg(e.co2e_low_g::float8 ORDER BY e.id),
       array_agg(e.co2e_high_g::float8 ORDER BY e.id), array_agg(e.co2e_upstream_g::float8 ORDER BY e.id),
       array_agg(e.measured_energy_j::float8 ORDER BY e.id), array_agg(e.quality ORDER BY e.id)
FROM accounting_ledgerentry e JOIN telemetry_telemetrybatch b ON b.id = e.batch_id
GROUP BY e.batch_id
"""

_EKEY = ", ".join(f"e.{k.strip()}" for k in _KEY.split(","))

_MERGE = f"""
CREATE TEMP TABLE _hourly_ledger ON COMMIT DROP AS
SELECT {_EKEY},
       SUM(e.energy_j) AS energy_j, SUM(e.held_s) AS held_s, SUM(e.co2e_operational_g) AS co2e_operational_g,
       SUM(e.co2e_operational_marginal_g) AS co2e_operational_marginal_g, SUM(e.co2e_embodied_g) AS co2e_embodied_g,
       SUM(e.co2e_low_g) AS co2e_low_g, SUM(e.co2e_high_g) AS co2e_high_g, SUM(e.co2e_upstream_g) AS co2e_upstream_g,
       SUM(e.measured_energy_j) AS measured_energy_j,
       COUNT(*) FILTER (WHERE e.quality = 'measured') AS lines_measured,
       COUNT(*) FILTER (WHERE e.quality = 'integrated') AS lines_integrated,
       COUNT(*) FILTER (WHERE e.quality = 'interpolated') AS lines_interpolated,
       COUNT(*) FILTER (WHERE e.quality = 'modelled') AS lines_modelled,
       (array_agg(e.intensity_g_per_kwh ORDER BY e.id DESC))[1] AS intensity_g_per_kwh,
       (array_agg(e.intensity_source ORDER BY e.id DESC))[1] AS intensity_source,
       (array_agg(e.intensity_basis ORDER BY e.id DESC))[1] AS intensity_basis,
       (array_agg(e.intensity_gases ORDER BY e.id DESC))[1] AS intensity_gases,
       (array_agg(e.pue ORDER BY e.id DESC))[1] AS pue,
       (array_agg(e.energy_covers ORDER BY e.id DESC))[1] AS energy_covers,
       (array_agg(e.method_version ORDER BY e.id DESC))[1] AS method_version,
       (array_agg(e.factor_versions ORDER BY e.id DESC))[1] AS factor_versions,
       MAX(e.computed_at) AS computed_at,
       MAX(b.last_end) AS last_window_end
FROM accounting_ledgerentry e JOIN telemetry_telemetrybatch b ON b.id = e.batch_id
GROUP BY {_EKEY};

DELETE FROM accounting_ledgerentry;

INSERT INTO accounting_ledgerentry (
    {_KEY}, energy_j, held_s, co2e_operational_g, co2e_operational_marginal_g, co2e_embodied_g, co2e_low_g,
    co2e_high_g, co2e_upstream_g, measured_energy_j, lines_measured, lines_integrated, lines_interpolated,
    lines_modelled, quality, intensity_g_per_kwh, intensity_source, intensity_basis, intensity_gases, pue,
    energy_covers, method_version, factor_versions, computed_at, last_window_end, batch_id)
SELECT {_KEY}, energy_j, held_s, co2e_operational_g, co2e_operational_marginal_g, co2e_embodied_g, co2e_low_g,
       co2e_high_g, co2e_upstream_g, measured_energy_j, lines_measured, lines_integrated, lines_interpolated,
       lines_modelled,
       CASE WHEN lines_modelled > 0 THEN 'modelled' WHEN lines_interpolated > 0 THEN 'interpolated'
            WHEN lines_integrated > 0 THEN 'integrated' ELSE 'measured' END,
       intensity_g_per_kwh, intensity_source, intensity_basis, intensity_gases, pue, energy_covers, method_version,
       factor_versions, computed_at, last_window_end, NULL
FROM _hourly_ledger
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0017_hourly_ledger"),
    ]

    operations = [
        # Deferred foreign-key checks fire per statement: migration 0019 alters the table next.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        migrations.RunSQL(_RECORDS, migrations.RunSQL.noop),
        migrations.RunSQL(_MERGE, migrations.RunSQL.noop),
    ]
