"""Aggregates of the ledger: job-hours, job footprints, device-hours, team-hours and team-days.

Recomputed from committed ledger entries under one advisory lock, so concurrent workers never
lose each other's rows and the last rollup to run is always complete. A job's end finalises
its footprint under the same lock.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction

from accounting.domain.types import METHOD_VERSION
from accounting.services.transactions import retry_on_conflict
from accounting.services.work_queue import batches_nudge
from telemetry.queue import batches_mark_done, batches_pending

ROLLUP_LOCK_KEY = 7_214_001  # pg advisory lock id for aggregate rollups

# Aggregate keys of ledger entries a re-attribution replaced: (job, device, hour, org, team, site).
ReplacedKey = tuple[int | None, int | None, dt.datetime, int, int | None, int]


@retry_on_conflict
def aggregates_rollup(
    *,
    batch_pks: list[int],
    job_ids: list[int],
    replaced: set[ReplacedKey] | None = None,
    claimed_at: dt.datetime | None = None,
) -> None:
    """Recompute the aggregates touched by these batches from committed ledger entries, then
    mark the batches done. Serialised by an advisory lock: each rollup sees every entry
    committed before it, so the last one to run is always complete.

    ``replaced`` are the keys of entries the attribution deleted (re-attribution after an
    allocation change or a factor correction): those aggregates are recomputed too, and removed
    where no entry is left, so a job that lost every entry of a batch does not keep its old
    totals. ``claimed_at``: mark done only the batches still under this claim (a batch put back
    to pending and claimed by another worker meanwhile is that worker's to finish)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_KEY])
        # Which (device, hour), (job, hour) and (org, team, site, day) keys the batches touch.
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS _rollup_batches (id bigint PRIMARY KEY) ON COMMIT DELETE ROWS")
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _rollup_replaced (job_id bigint, device_id bigint, hour timestamptz, "
            "org_id bigint, team_id bigint, site_id bigint) ON COMMIT DELETE ROWS"
        )
        cursor.execute("INSERT INTO _rollup_batches SELECT unnest(%s::bigint[]) ON CONFLICT DO NOTHING", [batch_pks])
        if replaced:
            columns = list(zip(*sorted(replaced, key=repr), strict=True))
            cursor.execute(
                "INSERT INTO _rollup_replaced SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], "
                "%s::bigint[], %s::bigint[], %s::bigint[])",
                [list(column) for column in columns],
            )
        # Statistics for the planner: unanalysed, a temporary table is assumed to hold ~2,000 rows,
        # and the rollup's joins became sequential scans of the ledger and of the batch records,
        # a cost that grew with history (benchmarks/ingest.py --history-days: 11-13 s a statement).
        cursor.execute("ANALYZE _rollup_batches, _rollup_replaced")
        # Job-hours first (with those left without entries removed): footprints sum them.
        cursor.execute(_JOB_HOUR_SQL)
        if replaced:
            cursor.execute(_REPLACED_JOB_HOUR_CLEANUP_SQL)
        cursor.execute(_JOB_FOOTPRINT_SQL, [job_ids])
        cursor.execute(_DEVICE_HOUR_RAW_SQL)
        cursor.execute(_DEVICE_HOUR_SQL)
        cursor.execute(_TEAM_HOUR_SQL)
        if replaced:
            cursor.execute(_REPLACED_TEAM_HOUR_CLEANUP_SQL)
        cursor.execute(_TEAM_DAY_SQL)
        if replaced:
            for statement in _REPLACED_CLEANUP_SQL:
                cursor.execute(statement)
        # Done: only this claim's batches; one put back to pending meanwhile stays pending.
        done = set(batches_mark_done(batch_pks=batch_pks, claimed_at=claimed_at))
        if len(done) < len(set(batch_pks)):
            # Put back to pending while this attribution held their rows (a job ended, an
            # allocation moved): a claim running meanwhile skipped them (SKIP LOCKED), and the
            # nudge of that change may have gone to it. Nudge again once these locks are gone.
            again = batches_pending(batch_pks=sorted(set(batch_pks) - done))
            if again:
                transaction.on_commit(lambda: batches_nudge(batch_pks=again))


def job_footprint_finalize(*, job_id: int) -> None:
    """A job ended: recompute its footprint from the ledger and mark it final."""
    # Inside a caller's transaction (job_end) no savepoint is needed: an error aborts it anyway.
    # The lock is taken by its own statement before the rollup, so the rollup's snapshot (READ
    # COMMITTED: one per statement) sees every ledger entry committed before the lock was granted.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_KEY])
        cursor.execute(_JOB_FOOTPRINT_SQL, [[job_id]])


# Energy by the basis of its operational intensity (a total over mixed bases says so), CO2-only
# energy, and the upstream (Scope 3 cat. 3) carbon where the life-cycle figure is known.
_BASIS_SUMS = """
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.intensity_basis = 'direct'), 0),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.intensity_basis = 'lifecycle'), 0),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.intensity_gases = 'co2'), 0),
       COALESCE(SUM(e.co2e_upstream_g), 0)"""
_BASIS_SET = """
    direct_basis_energy_j = EXCLUDED.direct_basis_energy_j,
    lifecycle_basis_energy_j = EXCLUDED.lifecycle_basis_energy_j,
    co2_only_energy_j = EXCLUDED.co2_only_energy_j, co2e_upstream_g = EXCLUDED.co2e_upstream_g"""

# GPU energy by what the device's readings covered (the entries' energy_covers; "" on entries from
# before it was recorded counts in none).
_COVERS_COLUMNS = "covers_gpu_energy_j, covers_gpu_memory_energy_j, covers_gpu_cpu_memory_energy_j"
_COVERS_SUMS = """
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.energy_covers = 'gpu'), 0),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.energy_covers = 'gpu+memory'), 0),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.energy_covers = 'gpu+cpu+memory'), 0)"""
_COVERS_SET = """
    covers_gpu_energy_j = EXCLUDED.covers_gpu_energy_j,
    covers_gpu_memory_energy_j = EXCLUDED.covers_gpu_memory_energy_j,
    covers_gpu_cpu_memory_energy_j = EXCLUDED.covers_gpu_cpu_memory_energy_j"""

# Facility lines have device NULL; GPU energy = active + idle; host = cpu + dram + unmeasured.
_JOB_FOOTPRINT_SQL = f"""
INSERT INTO accounting_jobfootprint AS f (
    job_id, energy_j, gpu_energy_j, gpu_idle_energy_j, host_energy_j, facility_energy_j,
    co2e_operational_g, co2e_embodied_g, co2e_low_g, co2e_high_g, device_hours, measured_fraction,
    is_final, method_version, last_window_end, updated_at,
    direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g, {_COVERS_COLUMNS})
SELECT j.id,
    COALESCE(SUM(h.energy_j), 0), COALESCE(SUM(h.gpu_energy_j), 0), COALESCE(SUM(h.gpu_idle_energy_j), 0),
    COALESCE(SUM(h.host_energy_j), 0), COALESCE(SUM(h.facility_energy_j), 0),
    COALESCE(SUM(h.co2e_operational_g), 0), COALESCE(SUM(h.co2e_embodied_g), 0),
    COALESCE(SUM(h.co2e_low_g), 0), COALESCE(SUM(h.co2e_high_g), 0),
    COALESCE(SUM(h.held_s), 0) / 3600.0,
    COALESCE(COALESCE(SUM(h.measured_gpu_energy_j), 0) / NULLIF(SUM(h.gpu_energy_j), 0), 0),
    j.status NOT IN ('running', 'pending'), '{METHOD_VERSION}', MAX(h.last_window_end), now(),
    COALESCE(SUM(h.direct_basis_energy_j), 0), COALESCE(SUM(h.lifecycle_basis_energy_j), 0),
    COALESCE(SUM(h.co2_only_energy_j), 0), COALESCE(SUM(h.co2e_upstream_g), 0),
    COALESCE(SUM(h.covers_gpu_energy_j), 0), COALESCE(SUM(h.covers_gpu_memory_energy_j), 0),
    COALESCE(SUM(h.covers_gpu_cpu_memory_energy_j), 0)
FROM accounting_job j LEFT JOIN accounting_jobhour h ON h.job_id = j.id
WHERE j.id = ANY(%s)
GROUP BY j.id
ON CONFLICT (job_id) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_energy_j = EXCLUDED.gpu_energy_j,
    gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j, host_energy_j = EXCLUDED.host_energy_j,
    facility_energy_j = EXCLUDED.facility_energy_j, co2e_operational_g = EXCLUDED.co2e_operational_g,
    co2e_embodied_g = EXCLUDED.co2e_embodied_g, co2e_low_g = EXCLUDED.co2e_low_g,
    co2e_high_g = EXCLUDED.co2e_high_g, device_hours = EXCLUDED.device_hours,
    measured_fraction = COALESCE(EXCLUDED.measured_fraction, 0), is_final = EXCLUDED.is_final,
    method_version = EXCLUDED.method_version, last_window_end = EXCLUDED.last_window_end,
    updated_at = EXCLUDED.updated_at,{_BASIS_SET},{_COVERS_SET}
"""

# The lines of the rollup's batches, from their attribution records (``BatchAttribution``): the
# keys this rollup must bring up to date (the ledger itself is keyed per hour, not per batch).
_BATCH_LINES = """accounting_batchattribution b JOIN _rollup_batches rb ON rb.id = b.batch_id
    CROSS JOIN LATERAL unnest(b.job_ids, b.team_ids, b.device_ids, b.hours) AS u(job_id, team_id, device_id, hour)"""

# Every sum of a job's footprint, per (job, hour), from that hour's ledger entries (facility
# lines have device NULL; GPU energy = active + idle; host = cpu + dram + unmeasured; measured GPU
# energy = the entries' measured_energy_j, from their measured windows; the energy of entries
# labelled measured depended on how windows were batched, issue 19). The job footprint then sums
# the job's hours: bounded by the job's length in hours, where summing its ledger entries grew
# with every batch it ever had.
_JOB_HOUR_SELECT = """
SELECT e.job_id, e.hour, SUM(e.energy_j),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.component IN ('gpu_active', 'gpu_idle')), 0),
       SUM(e.co2e_operational_g), SUM(e.co2e_embodied_g),
       COALESCE(SUM(e.intensity_g_per_kwh * e.energy_j) / NULLIF(SUM(e.energy_j), 0), MAX(e.intensity_g_per_kwh)),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.component = 'gpu_idle'), 0),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.component IN ('host_cpu', 'host_dram', 'host_unmeasured')), 0),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.component = 'facility'), 0),
       SUM(e.co2e_low_g), SUM(e.co2e_high_g), SUM(e.held_s),
       COALESCE(SUM(e.measured_energy_j) FILTER (WHERE e.component IN ('gpu_active', 'gpu_idle')), 0),
       MAX(e.last_window_end),{basis_sums},{covers_sums}
FROM {keys} k
JOIN accounting_ledgerentry e ON e.job_id = k.job_id AND e.hour = k.hour
GROUP BY e.job_id, e.hour
"""

_JOB_HOUR_UPSERT = """
INSERT INTO accounting_jobhour (job_id, hour, energy_j, gpu_energy_j, co2e_operational_g, co2e_embodied_g,
                                intensity_g_per_kwh, gpu_idle_energy_j, host_energy_j, facility_energy_j,
                                co2e_low_g, co2e_high_g, held_s, measured_gpu_energy_j, last_window_end,
                                direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g,
                                {covers_columns})
{select}
ON CONFLICT (job_id, hour) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_energy_j = EXCLUDED.gpu_energy_j,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g,
    intensity_g_per_kwh = EXCLUDED.intensity_g_per_kwh, gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j,
    host_energy_j = EXCLUDED.host_energy_j, facility_energy_j = EXCLUDED.facility_energy_j,
    co2e_low_g = EXCLUDED.co2e_low_g, co2e_high_g = EXCLUDED.co2e_high_g, held_s = EXCLUDED.held_s,
    measured_gpu_energy_j = EXCLUDED.measured_gpu_energy_j, last_window_end = EXCLUDED.last_window_end,{basis_set},
    {covers_set}
"""

_JOB_HOUR_SQL = _JOB_HOUR_UPSERT.format(
    basis_set=_BASIS_SET,
    covers_columns=_COVERS_COLUMNS,
    covers_set=_COVERS_SET.strip(),
    select=_JOB_HOUR_SELECT.format(
        basis_sums=_BASIS_SUMS,
        covers_sums=_COVERS_SUMS,
        keys=f"""(
    SELECT u.job_id, u.hour FROM {_BATCH_LINES} WHERE u.job_id IS NOT NULL
    UNION SELECT r.job_id, r.hour FROM _rollup_replaced r WHERE r.job_id IS NOT NULL
)""",
    ),
)

# The raw-window sums of the rollup's batches not yet counted (``DeviceHourSource`` says which are),
# added to their device-hours exactly once: raw windows do not change when a batch is re-attributed.
_DEVICE_HOUR_RAW_SQL = """
WITH fresh AS (
    INSERT INTO accounting_devicehoursource (batch_id)
    SELECT b.batch_id FROM accounting_batchattribution b JOIN _rollup_batches rb ON rb.id = b.batch_id
    ON CONFLICT DO NOTHING RETURNING batch_id
), raw AS (
    SELECT u.device_id, u.hour, SUM(u.s::numeric) AS s, SUM(u.us::numeric) AS us, SUM(u.e::numeric) AS e
    FROM accounting_batchattribution b JOIN fresh f ON f.batch_id = b.batch_id
    CROSS JOIN LATERAL unnest(b.raw_device_ids, b.raw_hours, b.raw_window_s, b.raw_util_pct_s, b.raw_energy_j)
         AS u(device_id, hour, s, us, e)
    GROUP BY u.device_id, u.hour
)
INSERT INTO accounting_devicehour AS d (device_id, hour, energy_j, idle_energy_j, allocated_s, observed_s,
                                        avg_util_pct, avg_power_w, co2e_operational_g, co2e_embodied_g,
                                        window_s, util_pct_s, window_energy_j)
SELECT device_id, hour, 0, 0, 0, 0, 0, 0, 0, 0, s, us, e FROM raw ORDER BY device_id, hour
ON CONFLICT (device_id, hour) DO UPDATE SET
    window_s = d.window_s + EXCLUDED.window_s, util_pct_s = d.util_pct_s + EXCLUDED.util_pct_s,
    window_energy_j = d.window_energy_j + EXCLUDED.window_energy_j
"""

# Device-hours from their (few) ledger entries; utilisation and power from the raw sums above.
_DEVICE_HOUR_SQL = f"""
WITH keys AS (
    SELECT u.device_id, u.hour FROM {_BATCH_LINES} WHERE u.device_id IS NOT NULL
    UNION SELECT r.device_id, r.hour FROM _rollup_replaced r WHERE r.device_id IS NOT NULL
), ledger AS (
    SELECT k.device_id, k.hour,
           COALESCE(SUM(e.energy_j) FILTER (WHERE e.component IN ('gpu_active', 'gpu_idle')), 0) AS energy_j,
           COALESCE(SUM(e.energy_j) FILTER (WHERE e.component = 'gpu_idle'), 0) AS idle_energy_j,
           COALESCE(SUM(e.held_s) FILTER (WHERE e.account = 'job'), 0) AS allocated_s,
           COALESCE(SUM(e.held_s), 0) AS observed_s,
           COALESCE(SUM(e.co2e_operational_g), 0) AS co2e_operational_g,
           COALESCE(SUM(e.co2e_embodied_g), 0) AS co2e_embodied_g
    FROM keys k JOIN accounting_ledgerentry e ON e.device_id = k.device_id AND e.hour = k.hour
    GROUP BY k.device_id, k.hour
)
INSERT INTO accounting_devicehour AS d (device_id, hour, energy_j, idle_energy_j, allocated_s, observed_s,
                                        avg_util_pct, avg_power_w, co2e_operational_g, co2e_embodied_g)
SELECT l.device_id, l.hour, l.energy_j, l.idle_energy_j, l.allocated_s, l.observed_s, 0, 0,
       l.co2e_operational_g, l.co2e_embodied_g
FROM ledger l ORDER BY l.device_id, l.hour
ON CONFLICT (device_id, hour) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, idle_energy_j = EXCLUDED.idle_energy_j, allocated_s = EXCLUDED.allocated_s,
    observed_s = EXCLUDED.observed_s,
    avg_util_pct = COALESCE(d.util_pct_s / NULLIF(d.window_s, 0), 0),
    avg_power_w = COALESCE(d.window_energy_j / NULLIF(d.window_s, 0), 0),
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g
"""

# Each key's entries are summed in a LATERAL subquery found through the (org_id, hour) index: a
# join let the planner, misjudging how few keys there are, merge-join on site and read every
# entry of the site (30 days x 1,024 GPUs of history: 1.1 s a rollup; benchmarks/attribution_profile.py
# --history-days 30). Keys without entries give no row (``n > 0``), as the join did.
_TEAM_HOUR_SELECT = """
SELECT k.org_id, k.team_id, k.site_id, k.hour, s.*
FROM (SELECT DISTINCT * FROM {keys} keys) k
CROSS JOIN LATERAL (
    SELECT SUM(e.energy_j), COALESCE(SUM(e.energy_j) FILTER (WHERE e.component = 'gpu_idle'), 0),
           SUM(e.co2e_operational_g), SUM(e.co2e_embodied_g),{basis_sums}
    FROM accounting_ledgerentry e
    WHERE e.org_id = k.org_id AND e.hour = k.hour AND e.site_id = k.site_id AND e.team_id IS NOT DISTINCT FROM k.team_id
    HAVING COUNT(*) > 0
) s
"""

_TEAM_HOUR_UPSERT = """
INSERT INTO accounting_teamhour (org_id, team_id, site_id, hour, energy_j, gpu_idle_energy_j,
                                 co2e_operational_g, co2e_embodied_g,
                                 direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g)
{select}
ON CONFLICT (org_id, team_id, site_id, hour) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g,{basis_set}
"""

# (org, team, site, hour) keys the rollup's batches touch, now or before their re-attribution.
_TEAM_HOUR_KEYS = f"""(
    SELECT b.org_id, u.team_id, b.site_id, u.hour FROM {_BATCH_LINES}
    UNION SELECT r.org_id, r.team_id, r.site_id, r.hour FROM _rollup_replaced r
)"""

_TEAM_HOUR_SQL = _TEAM_HOUR_UPSERT.format(
    basis_set=_BASIS_SET, select=_TEAM_HOUR_SELECT.format(keys=_TEAM_HOUR_KEYS, basis_sums=_BASIS_SUMS)
)

# Team-days from their (at most 24) team-hours.
_TEAM_DAY_SQL = f"""
WITH keys AS (
    SELECT DISTINCT k.org_id, k.team_id, k.site_id, (k.hour AT TIME ZONE 'UTC')::date AS day FROM {_TEAM_HOUR_KEYS} k
)
INSERT INTO accounting_teamday (org_id, team_id, site_id, day, energy_j, gpu_idle_energy_j,
                                co2e_operational_g, co2e_embodied_g,
                                direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g)
SELECT k.org_id, k.team_id, k.site_id, k.day, SUM(h.energy_j), SUM(h.gpu_idle_energy_j),
       SUM(h.co2e_operational_g), SUM(h.co2e_embodied_g),
       SUM(h.direct_basis_energy_j), SUM(h.lifecycle_basis_energy_j), SUM(h.co2_only_energy_j), SUM(h.co2e_upstream_g)
FROM keys k JOIN accounting_teamhour h
  ON h.org_id = k.org_id AND h.team_id IS NOT DISTINCT FROM k.team_id AND h.site_id = k.site_id
 AND h.hour >= (k.day::timestamp AT TIME ZONE 'UTC') AND h.hour < ((k.day + 1)::timestamp AT TIME ZONE 'UTC')
GROUP BY k.org_id, k.team_id, k.site_id, k.day
ON CONFLICT (org_id, team_id, site_id, day) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g,{_BASIS_SET}
"""

# Aggregates of replaced keys with no ledger entry left (the upserts above only write keys that
# still have entries).
_REPLACED_JOB_HOUR_CLEANUP_SQL = """
    DELETE FROM accounting_jobhour a USING _rollup_replaced r
    WHERE a.job_id = r.job_id AND a.hour = r.hour
      AND NOT EXISTS (SELECT 1 FROM accounting_ledgerentry e WHERE e.job_id = r.job_id AND e.hour = r.hour)
"""

_REPLACED_TEAM_HOUR_CLEANUP_SQL = """
    DELETE FROM accounting_teamhour a USING _rollup_replaced r
    WHERE a.org_id = r.org_id AND a.team_id IS NOT DISTINCT FROM r.team_id AND a.site_id = r.site_id
      AND a.hour = r.hour
      AND NOT EXISTS (
        SELECT 1 FROM accounting_ledgerentry e
        WHERE e.org_id = r.org_id AND e.team_id IS NOT DISTINCT FROM r.team_id AND e.site_id = r.site_id
          AND e.hour = r.hour)
"""

_REPLACED_CLEANUP_SQL = (
    """
    DELETE FROM accounting_devicehour a USING _rollup_replaced r
    WHERE a.device_id = r.device_id AND a.hour = r.hour
      AND NOT EXISTS (SELECT 1 FROM accounting_ledgerentry e WHERE e.device_id = r.device_id AND e.hour = r.hour)
    """,
    """
    DELETE FROM accounting_teamday a USING _rollup_replaced r
    WHERE a.org_id = r.org_id AND a.team_id IS NOT DISTINCT FROM r.team_id AND a.site_id = r.site_id
      AND a.day = (r.hour AT TIME ZONE 'UTC')::date
      AND NOT EXISTS (
        SELECT 1 FROM accounting_teamhour h
        WHERE h.org_id = r.org_id AND h.team_id IS NOT DISTINCT FROM r.team_id AND h.site_id = r.site_id
          AND h.hour >= (a.day::timestamp AT TIME ZONE 'UTC')
          AND h.hour < ((a.day + 1)::timestamp AT TIME ZONE 'UTC'))
    """,
)
