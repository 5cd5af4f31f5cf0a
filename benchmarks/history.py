"""History for the growth benchmark: N days of a GPU fleet's telemetry, ledger and aggregates.

``seed_history`` writes, with set-based SQL (INSERT ... SELECT over generate_series, then
ANALYZE), what a database holds after a fleet of ``gpus`` GPUs (8 per host) ran ``days`` days:

  * the fleet in its own organisation: hosts, devices, one site, cluster, zone, hardware model;
  * jobs: per host and day two jobs of one day (GPUs 0-3 and 4-6; GPU 7 idle, fleet overhead),
    completed except the last day's, still running; one allocation per job and GPU;
  * telemetry batches of ``batch_windows`` 10 s windows, all attributed (``done``);
  * ledger entries in the hourly shape (issue 18; ``_LEDGER_LINES``: one row per account x job x host
    x device x component x hour, whatever the batching; host and facility lines per account and job,
    without a device: 25 per host and hour), and the attribution records (``BatchAttribution``) of
    the batches whose raw windows are still kept;
  * aggregates: job-hours, job footprints, device-hours, team-hours, team-days;
  * raw windows (GPU and host) for the last ``raw_hours`` only: older raw partitions are dropped
    after the retention period, and only the last windows are read by attribution.

Every piece of knowledge of the ledger's shape is in ``_LEDGER_LINES``, ``_LEDGER_SQL`` and
``_RECORDS_SQL``.

The ledger's secondary indexes are dropped before its insert and built after it. FK triggers are
skipped while seeding (``session_replication_role = replica``, superuser only):
the rows are built consistent by construction, and a per-row FK check would make a month of a
10k-GPU fleet take hours. The energies are constants per component (realistic magnitudes, an
H100 at ~520 W busy); the benchmark measures the cost of rows, not their values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

GPUS_PER_HOST = 8
WINDOW_S = 10
BUSY_POWER_W = 520.0  # a busy GPU
IDLE_POWER_W = 72.0  # an unallocated GPU
IDLE_BASELINE_W = 70.0  # the hardware model's idle power
HOST_CPU_W = 240.0  # per host; each GPU slot carries 1/8
HOST_DRAM_W = 40.0
PUE = 1.3
INTENSITY_G_PER_KWH = 400.0
EMBODIED_G_PER_S = 150_000.0 / (5 * 365 * 86_400 * 0.8)  # 150 kg over 5 years at 80 %
METHOD_VERSION = "2026.12-1"
SLOTS = ((0, 1, 2, 3), (4, 5, 6))  # GPUs of a host's two jobs; the rest are idle
TABLES = (
    "accounting_host",
    "accounting_device",
    "accounting_job",
    "accounting_joballocation",
    "telemetry_telemetrybatch",
    "accounting_ledgerentry",
    "accounting_jobhour",
    "accounting_jobfootprint",
    "accounting_devicehour",
    "accounting_teamhour",
    "accounting_teamday",
    "accounting_batchattribution",
    "telemetry_gpuseries",
    "telemetry_hostwindow",
)


@dataclasses.dataclass
class HistorySeed:
    """What ``seed_history`` wrote: rows per table, seconds per step, the span it covers."""

    start: dt.datetime
    end: dt.datetime
    rows: dict[str, int]
    seconds: dict[str, float]

    @property
    def total_s(self) -> float:
        return round(sum(self.seconds.values()), 1)


def _slot_of(gpu: int) -> int | None:
    for slot, gpus in enumerate(SLOTS):
        if gpu in gpus:
            return slot
    return None


def _ledger_lines() -> list[tuple[int | None, int | None, str, str, float, float]]:
    """Today's ledger shape for one batch of one host in one hour, as attribution writes it for
    the ingest benchmark's ideal shape (checked against its database: 25 rows per batch and hour):
    (gpu index or None, job slot or None for fleet overhead, account, component, mean power W over
    the batch, held share). Per GPU: active (above the idle baseline) and idle baseline lines; per
    account and job (no device): host CPU and DRAM (its GPUs' share of the host, slots / 8) and
    facility ((PUE - 1) x its IT energy)."""
    lines: list[tuple[int | None, int | None, str, str, float, float]] = []
    it_w: dict[int | None, float] = {}
    gpus_of: dict[int | None, int] = {}
    for gpu in range(GPUS_PER_HOST):
        slot = _slot_of(gpu)
        account = "job" if slot is not None else "fleet_overhead"
        active_w = (BUSY_POWER_W if slot is not None else IDLE_POWER_W) - IDLE_BASELINE_W
        for component, power_w, held in (("gpu_active", active_w, 1.0), ("gpu_idle", IDLE_BASELINE_W, 0.0)):
            lines.append((gpu, slot, account, component, power_w, held))
            it_w[slot] = it_w.get(slot, 0.0) + power_w
        gpus_of[slot] = gpus_of.get(slot, 0) + 1
    for slot, n_gpus in gpus_of.items():
        account = "job" if slot is not None else "fleet_overhead"
        for component, host_w in (("host_cpu", HOST_CPU_W), ("host_dram", HOST_DRAM_W)):
            power_w = host_w * n_gpus / GPUS_PER_HOST
            lines.append((None, slot, account, component, power_w, 0.0))
            it_w[slot] += power_w
        lines.append((None, slot, account, "facility", (PUE - 1) * it_w[slot], 0.0))
    return lines


_LEDGER_LINES = _ledger_lines()
LEDGER_ROWS_PER_HOST_BATCH = len(_LEDGER_LINES)

# One entry per host-hour x line (the hourly ledger): the sums of the hour's batches, one line each.
_LEDGER_SQL = """
INSERT INTO accounting_ledgerentry (
    account, job_id, org_id, team_id, site_id, host_id, device_id, component, hour, energy_j, held_s,
    co2e_operational_g, co2e_operational_marginal_g, co2e_embodied_g, co2e_low_g, co2e_high_g,
    intensity_g_per_kwh, intensity_source, intensity_basis, intensity_gases, co2e_upstream_g, pue, quality,
    measured_energy_j, lines_measured, lines_integrated, lines_interpolated, lines_modelled, last_window_end,
    energy_covers, method_version, factor_versions, computed_at)
SELECT l.account, j.job_id, %(org)s, j.team_id, %(site)s, b.host_id, d.id, l.component,
       b.hour, l.power_w * b.span_s, l.held * b.span_s,
       l.power_w * b.span_s / 3.6e6 * %(intensity)s, NULL,
       l.held * b.span_s * %(embodied_g_per_s)s,
       0.9 * l.power_w * b.span_s / 3.6e6 * %(intensity)s, 1.1 * l.power_w * b.span_s / 3.6e6 * %(intensity)s,
       %(intensity)s, 'annual:HIST', 'lifecycle', 'co2e', NULL, %(pue)s, 'measured',
       l.power_w * b.span_s, b.n, 0, 0, 0, b.last_end, CASE WHEN l.gpu IS NULL THEN '' ELSE 'gpu' END, %(method)s,
       '{"method": 1}'::jsonb, b.last_end
FROM (SELECT bb.host_id, date_trunc('hour', bb.first_start) AS hour, count(*) AS n, max(bb.last_end) AS last_end,
             SUM(EXTRACT(EPOCH FROM bb.last_end - bb.first_start)) AS span_s
      FROM telemetry_telemetrybatch bb JOIN _hist_hosts h ON h.host_id = bb.host_id
      GROUP BY bb.host_id, date_trunc('hour', bb.first_start)) b
CROSS JOIN (SELECT * FROM unnest(%(l_gpu)s::int[], %(l_slot)s::int[], %(l_account)s::text[],
                                 %(l_component)s::text[], %(l_power)s::float8[], %(l_held)s::float8[])
            AS t(gpu, slot, account, component, power_w, held)) l
LEFT JOIN _hist_devices d ON d.host_id = b.host_id AND d.idx = l.gpu
LEFT JOIN _hist_jobs j ON j.host_id = b.host_id AND j.slot = l.slot
     AND j.day = floor(extract(epoch FROM b.hour - %(start)s) / 86400)::int
"""

# The attribution records of the batches whose raw windows are kept (a record lives as long as
# its raw windows): the batch's lines as arrays; their raw sums count as already in the
# device-hours (``accounting_devicehoursource``).
_RECORDS_SQL = """
INSERT INTO accounting_batchattribution (
    batch_id, org_id, site_id, host_id, last_end, attributed_at, method_version, accounts, job_ids, team_ids,
    device_ids, components, hours, energy_j, held_s, co2e_operational_g, co2e_operational_marginal_g,
    co2e_embodied_g, co2e_low_g, co2e_high_g, co2e_upstream_g, measured_energy_j, qualities,
    raw_device_ids, raw_hours, raw_window_s, raw_util_pct_s, raw_energy_j)
SELECT b.id, %(org)s, %(site)s, b.host_id, b.last_end, b.attributed_at, %(method)s,
       array_agg(l.account ORDER BY l.ord), array_agg(j.job_id ORDER BY l.ord), array_agg(j.team_id ORDER BY l.ord),
       array_agg(d.id ORDER BY l.ord), array_agg(l.component ORDER BY l.ord),
       array_agg(date_trunc('hour', b.first_start) ORDER BY l.ord),
       array_agg(l.power_w * %(batch_s)s ORDER BY l.ord), array_agg(l.held * %(batch_s)s ORDER BY l.ord),
       array_agg(l.power_w * %(batch_s)s / 3.6e6 * %(intensity)s ORDER BY l.ord),
       array_agg(NULL::float8 ORDER BY l.ord), array_agg(l.held * %(batch_s)s * %(embodied_g_per_s)s ORDER BY l.ord),
       array_agg(0.9 * l.power_w * %(batch_s)s / 3.6e6 * %(intensity)s ORDER BY l.ord),
       array_agg(1.1 * l.power_w * %(batch_s)s / 3.6e6 * %(intensity)s ORDER BY l.ord),
       array_agg(NULL::float8 ORDER BY l.ord), array_agg(l.power_w * %(batch_s)s ORDER BY l.ord),
       array_agg('measured'::text ORDER BY l.ord), '{}', '{}', '{}', '{}', '{}'
FROM telemetry_telemetrybatch b
JOIN _hist_hosts h ON h.host_id = b.host_id
CROSS JOIN (SELECT * FROM unnest(%(l_gpu)s::int[], %(l_slot)s::int[], %(l_account)s::text[],
                                 %(l_component)s::text[], %(l_power)s::float8[], %(l_held)s::float8[])
                          WITH ORDINALITY AS t(gpu, slot, account, component, power_w, held, ord)) l
LEFT JOIN _hist_devices d ON d.host_id = b.host_id AND d.idx = l.gpu
LEFT JOIN _hist_jobs j ON j.host_id = b.host_id AND j.slot = l.slot
     AND j.day = floor(extract(epoch FROM b.first_start - %(start)s) / 86400)::int
WHERE b.first_start >= %(raw_start)s
GROUP BY b.id
"""


def _exec(cursor, sql: str, params: dict[str, Any] | None = None) -> None:
    cursor.execute(sql, params or {})


def seed_history(
    conn, *, days: int, gpus: int, now: dt.datetime, batch_windows: int = 30, raw_hours: int = 24
) -> HistorySeed:
    """Seed ``days`` days before ``now`` (truncated to the hour) of a ``gpus``-GPU fleet (a
    multiple of 8) into the database of ``conn`` (a DB-API connection: Django's ``connection``
    or psycopg's); the caller commits. Returns rows per table and seconds per step."""
    if gpus <= 0 or gpus % GPUS_PER_HOST:
        raise ValueError(f"gpus must be a positive multiple of {GPUS_PER_HOST}, got {gpus}")
    if days <= 0 or not 0 <= raw_hours <= days * 24:
        raise ValueError(f"days must be > 0 and raw_hours within the history, got days={days} raw_hours={raw_hours}")
    if (3600 // WINDOW_S) % batch_windows:
        raise ValueError(f"batch_windows must divide {3600 // WINDOW_S} (a batch stays within one hour)")
    end = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=days)
    hosts = gpus // GPUS_PER_HOST
    batch_s = batch_windows * WINDOW_S
    batches_per_host = days * 86_400 // batch_s
    seconds: dict[str, float] = {}
    p: dict[str, Any] = {
        "start": start,
        "end": end,
        "days": days,
        "hosts": hosts,
        "gpus_per_host": GPUS_PER_HOST,
        "batch_s": batch_s,
        "bw": batch_windows,
        "nb": batches_per_host,
        "intensity": INTENSITY_G_PER_KWH,
        "pue": PUE,
        "embodied_g_per_s": EMBODIED_G_PER_S,
        "method": METHOD_VERSION,
        "raw_start": end - dt.timedelta(hours=raw_hours),
    }

    def step(name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        _exec(cursor, sql, {**p, **(params or {})})
        seconds[name] = seconds.get(name, 0.0) + round(time.perf_counter() - t0, 2)

    with conn.cursor() as cursor:
        _exec(cursor, "SET session_replication_role = replica")
        _exec(cursor, "SET maintenance_work_mem = '512MB'")
        try:
            _seed_fleet(cursor, p, step)
            _seed_telemetry(cursor, p, step)
            _seed_aggregates(cursor, p, step)
            _seed_raw(cursor, p, step, raw_hours=raw_hours)
        finally:
            _exec(cursor, "RESET session_replication_role")
            _exec(cursor, "RESET maintenance_work_mem")
        t0 = time.perf_counter()
        for table in TABLES:
            _exec(cursor, f"ANALYZE {table}")
        seconds["analyze"] = round(time.perf_counter() - t0, 2)
        rows = {}
        for table, where in (
            ("accounting_host", "cluster_id = %(cluster)s"),
            ("accounting_device", "host_id IN (SELECT host_id FROM _hist_hosts)"),
            ("accounting_job", "cluster_id = %(cluster)s"),
            ("accounting_joballocation", "job_id IN (SELECT job_id FROM _hist_jobs)"),
            ("telemetry_telemetrybatch", "host_id IN (SELECT host_id FROM _hist_hosts)"),
            ("accounting_ledgerentry", "org_id = %(org)s"),
            ("accounting_jobhour", "job_id IN (SELECT job_id FROM _hist_jobs)"),
            ("accounting_jobfootprint", "job_id IN (SELECT job_id FROM _hist_jobs)"),
            ("accounting_devicehour", "device_id IN (SELECT id FROM _hist_devices)"),
            ("accounting_teamhour", "org_id = %(org)s"),
            ("accounting_teamday", "org_id = %(org)s"),
            ("accounting_batchattribution", "org_id = %(org)s"),
            ("telemetry_gpuseries", "host_id IN (SELECT host_id FROM _hist_hosts)"),
            ("telemetry_hostwindow", "host_id IN (SELECT host_id FROM _hist_hosts)"),
        ):
            _exec(cursor, f"SELECT count(*) FROM {table} WHERE {where}", p)
            rows[table] = cursor.fetchone()[0]
        for temp in ("_hist_hosts", "_hist_devices", "_hist_jobs"):
            _exec(cursor, f"DROP TABLE {temp}")
    return HistorySeed(start=start, end=end, rows=rows, seconds=seconds)


def _one(cursor, sql: str, params: dict[str, Any]) -> int:
    cursor.execute(sql, params)
    return cursor.fetchone()[0]


def _seed_fleet(cursor, p: dict[str, Any], step) -> None:
    """Organisation, teams, zone, hardware model, site, cluster; hosts, devices, jobs, allocations."""
    p["org"] = _one(
        cursor,
        "INSERT INTO accounting_organization (name, slug, overhead_policy, created_at) "
        "VALUES ('History fleet', 'history', 'separate', %(start)s) RETURNING id",
        p,
    )
    _exec(
        cursor,
        "INSERT INTO accounting_team (org_id, name, slug, report_email) "
        "SELECT %(org)s, 'History team ' || t, 'history-' || t, '' FROM generate_series(0, 7) t",
        p,
    )
    p["zone"] = _one(
        cursor,
        "INSERT INTO accounting_gridzone (code, name, annual_intensity_g_per_kwh, annual_basis, annual_gases, "
        "source, source_detail, vintage, version, updated_at) VALUES ('HIST', 'History zone', %(intensity)s, "
        "'lifecycle', 'co2e', 'operator', '', '2024', 1, %(start)s) RETURNING id",
        p,
    )
    p["hw"] = _one(
        cursor,
        "INSERT INTO accounting_hardwaremodel (key, name, vendor, kind, match_names, idle_power_w, max_power_w, "
        "peak_flops, memory_gb, embodied_kg, embodied_low_kg, embodied_high_kg, embodied_kind, embodied_source, "
        "lifetime_years, expected_utilisation, sources, version, updated_at) VALUES ('history-h100', "
        "'NVIDIA H100 (history)', 'NVIDIA', 'gpu', '[]', 70, 700, '{}', 80, 150, 100, 200, 'estimate', "
        "'history fixture', 5, 0.8, '{}', 1, %(start)s) RETURNING id",
        p,
    )
    p["site"] = _one(
        cursor,
        "INSERT INTO accounting_site (org_id, name, slug, zone_id, pue, pue_source, pue_version, "
        "hardware_overrides) VALUES (%(org)s, 'History site', 'history', %(zone)s, %(pue)s, 'operator estimate', "
        "1, '{}') RETURNING id",
        p,
    )
    p["cluster"] = _one(
        cursor,
        "INSERT INTO accounting_cluster (site_id, name, slug, scheduler) "
        "VALUES (%(site)s, 'History cluster', 'history', 'slurm') RETURNING id",
        p,
    )
    step(
        "hosts",
        "INSERT INTO accounting_host (cluster_id, hostname, cpu_model, dram_gb, ssd_gb, gpu_slots) "
        "SELECT %(cluster)s, 'hist-gpu-' || lpad(h::text, 6, '0'), '', 1024, 8000, %(gpus_per_host)s "
        "FROM generate_series(0, %(hosts)s - 1) h",
    )
    _exec(
        cursor,
        "CREATE TEMP TABLE _hist_hosts AS SELECT id AS host_id, substr(hostname, 10)::int AS h "
        "FROM accounting_host WHERE cluster_id = %(cluster)s",
        p,
    )
    _exec(cursor, "ANALYZE _hist_hosts")
    _exec(
        cursor,
        "INSERT INTO telemetry_hoststream (host_id, last_seen_at, last_seq) "
        "SELECT host_id, %(end)s, %(nb)s * %(bw)s FROM _hist_hosts",
        p,
    )
    step(
        "devices",
        "INSERT INTO accounting_device (host_id, uuid, index, reported_name, hardware_model_id, first_seen_at) "
        "SELECT hh.host_id, 'GPU-hist-' || hh.h || '-' || g, g, 'NVIDIA H100 80GB HBM3', %(hw)s, %(start)s "
        "FROM _hist_hosts hh CROSS JOIN generate_series(0, %(gpus_per_host)s - 1) g",
    )
    _exec(
        cursor,
        "CREATE TEMP TABLE _hist_devices AS SELECT d.id, d.host_id, d.index AS idx FROM accounting_device d "
        "JOIN _hist_hosts hh ON hh.host_id = d.host_id",
    )
    _exec(cursor, "ANALYZE _hist_devices")
    # Two jobs per host and day; the last day's are still running.
    step(
        "jobs",
        "INSERT INTO accounting_job (org_id, cluster_id, scheduler_job_id, name, team_id, username, kind, family, "
        "status, started_at, ended_at, model_meta, units, primary_unit, quality_metric, created_at, updated_at) "
        "SELECT %(org)s, %(cluster)s, 'h' || hh.h || '-d' || d || '-s' || s, 'history-' || s, "
        "(SELECT id FROM accounting_team WHERE org_id = %(org)s AND slug = 'history-' || mod(hh.h + s, 8)), '', "
        "CASE s WHEN 0 THEN 'training' ELSE 'inference' END, 'llm', "
        "CASE WHEN d = %(days)s - 1 THEN 'running' ELSE 'completed' END, "
        "%(start)s + d * interval '1 day', "
        "CASE WHEN d = %(days)s - 1 THEN NULL ELSE %(start)s + (d + 1) * interval '1 day' END, "
        "'{}', '{}', '', '', %(start)s + d * interval '1 day', %(end)s "
        "FROM _hist_hosts hh CROSS JOIN generate_series(0, %(days)s - 1) d CROSS JOIN generate_series(0, 1) s",
    )
    _exec(
        cursor,
        "CREATE TEMP TABLE _hist_jobs AS SELECT j.id AS job_id, j.team_id, hh.host_id, "
        "split_part(split_part(j.scheduler_job_id, '-d', 2), '-s', 1)::int AS day, "
        "split_part(j.scheduler_job_id, '-s', 2)::int AS slot, j.started_at, j.ended_at "
        "FROM accounting_job j JOIN _hist_hosts hh "
        "ON hh.h = split_part(substr(j.scheduler_job_id, 2), '-d', 1)::int WHERE j.cluster_id = %(cluster)s",
        p,
    )
    # Without statistics the planner takes the temp tables for empty and nests loops over them.
    _exec(cursor, "ANALYZE _hist_jobs")
    slot_of_gpu = [_slot_of(g) for g in range(GPUS_PER_HOST)]
    step(
        "allocations",
        'INSERT INTO accounting_joballocation (job_id, device_id, start, "end", fraction, mig_instance, source) '
        "SELECT j.job_id, d.id, j.started_at, j.ended_at, 1.0, '', 'scheduler' "
        "FROM _hist_jobs j JOIN _hist_devices d ON d.host_id = j.host_id "
        "JOIN unnest(%(slot_of_gpu)s::int[]) WITH ORDINALITY AS m(slot, pos) ON m.pos - 1 = d.idx AND m.slot = j.slot",
        {"slot_of_gpu": slot_of_gpu},
    )


def _seed_telemetry(cursor, p: dict[str, Any], step) -> None:
    """Attributed batches of every host, then their ledger entries."""
    batch_gpu_j = p["batch_s"] * (len(SLOTS[0]) + len(SLOTS[1])) * BUSY_POWER_W
    batch_gpu_j += p["batch_s"] * (GPUS_PER_HOST - len(SLOTS[0]) - len(SLOTS[1])) * IDLE_POWER_W
    step(
        "batches",
        "INSERT INTO telemetry_telemetrybatch (host_id, batch_id, received_at, sent_at, clock_offset_s, "
        "agent_version, first_start, last_end, first_seq, last_seq, gpu_window_count, host_window_count, "
        "gpu_energy_j, host_energy_j, status, claimed_at, attempts, attributed_at, error) "
        "SELECT hh.host_id, md5(hh.h || ':' || k)::uuid, t.e + interval '1 s', t.e, -1.0, 'history', "
        "t.s, t.e, k * %(bw)s + 1, (k + 1) * %(bw)s, %(bw)s * %(gpus_per_host)s, %(bw)s, %(gpu_j)s, "
        "%(host_j)s, 'done', t.e + interval '1 s', 1, t.e + interval '2 s', '' "
        "FROM _hist_hosts hh CROSS JOIN generate_series(0, %(nb)s - 1) k "
        "CROSS JOIN LATERAL (SELECT %(start)s + k * %(batch_s)s * interval '1 s' AS s, "
        "%(start)s + (k + 1) * %(batch_s)s * interval '1 s' AS e) t ORDER BY k, hh.h",
        {"gpu_j": batch_gpu_j, "host_j": p["batch_s"] * (HOST_CPU_W + HOST_DRAM_W)},
    )
    lines = _LEDGER_LINES
    # The ledger's secondary indexes are built once after the insert (sorted, ~3x faster than
    # maintaining them row by row); the result is the same table and indexes.
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'accounting_ledgerentry' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'accounting_ledgerentry'::regclass)"
    )
    indexes = cursor.fetchall()
    for name, _ in indexes:
        _exec(cursor, f'DROP INDEX "{name}"')
    line_params = {
        "l_gpu": [line[0] for line in lines],
        "l_slot": [line[1] for line in lines],
        "l_account": [line[2] for line in lines],
        "l_component": [line[3] for line in lines],
        "l_power": [float(line[4]) for line in lines],
        "l_held": [float(line[5]) for line in lines],
    }
    step("ledger", _LEDGER_SQL, line_params)
    for _, definition in indexes:
        step("ledger_indexes", definition)
    step("records", _RECORDS_SQL, line_params)
    step(
        "records_sources",
        "INSERT INTO accounting_devicehoursource (batch_id) SELECT b.id FROM telemetry_telemetrybatch b "
        "JOIN _hist_hosts h ON h.host_id = b.host_id WHERE b.first_start >= %(raw_start)s",
    )


def _seed_aggregates(cursor, p: dict[str, Any], step) -> None:
    """Job-hours and footprints, device-hours, team-hours and team-days of the same fleet."""
    it_w = {
        slot: sum(line[4] for line in _LEDGER_LINES if line[1] == slot and line[3] != "facility") for slot in (0, 1)
    }
    gpu_w = {
        slot: sum(line[4] for line in _LEDGER_LINES if line[1] == slot and line[3] in ("gpu_active", "gpu_idle"))
        for slot in (0, 1)
    }
    kwh = "(%(it_w)s::float8[])[j.slot + 1] * %(pue)s * 3600 / 3.6e6"
    step(
        "jobhour",
        "INSERT INTO accounting_jobhour (job_id, hour, energy_j, gpu_energy_j, co2e_operational_g, "
        "co2e_embodied_g, intensity_g_per_kwh, gpu_idle_energy_j, host_energy_j, facility_energy_j, co2e_low_g, "
        "co2e_high_g, held_s, measured_gpu_energy_j, last_window_end, direct_basis_energy_j, "
        "lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g, covers_gpu_energy_j, "
        "covers_gpu_memory_energy_j, covers_gpu_cpu_memory_energy_j) "
        "SELECT j.job_id, hr, (%(it_w)s::float8[])[j.slot + 1] * %(pue)s * 3600, "
        "(%(gpu_w)s::float8[])[j.slot + 1] * 3600, " + kwh + " * %(intensity)s, "
        "(%(n_gpus)s::int[])[j.slot + 1] * 3600 * %(embodied_g_per_s)s, %(intensity)s, "
        "(%(n_gpus)s::int[])[j.slot + 1] * %(idle_w)s * 3600, "
        "((%(it_w)s::float8[])[j.slot + 1] - (%(gpu_w)s::float8[])[j.slot + 1]) * 3600, "
        "(%(it_w)s::float8[])[j.slot + 1] * (%(pue)s - 1) * 3600, 0.9 * " + kwh + " * %(intensity)s, "
        "1.1 * " + kwh + " * %(intensity)s, (%(n_gpus)s::int[])[j.slot + 1] * 3600, "
        "(%(gpu_w)s::float8[])[j.slot + 1] * 3600, hr + interval '1 hour', 0, "
        "(%(it_w)s::float8[])[j.slot + 1] * %(pue)s * 3600, 0, 0, (%(gpu_w)s::float8[])[j.slot + 1] * 3600, 0, 0 "
        "FROM _hist_jobs j CROSS JOIN LATERAL generate_series(j.started_at, "
        "COALESCE(j.ended_at, %(end)s) - interval '1 hour', interval '1 hour') hr ORDER BY hr, j.job_id",
        {
            "it_w": [it_w[0], it_w[1]],
            "gpu_w": [gpu_w[0], gpu_w[1]],
            "n_gpus": [len(SLOTS[0]), len(SLOTS[1])],
            "idle_w": IDLE_BASELINE_W,
        },
    )
    step(
        "jobfootprint",
        "INSERT INTO accounting_jobfootprint (job_id, energy_j, gpu_energy_j, gpu_idle_energy_j, host_energy_j, "
        "facility_energy_j, co2e_operational_g, co2e_embodied_g, co2e_low_g, co2e_high_g, "
        "direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g, device_hours, "
        "measured_fraction, covers_gpu_energy_j, covers_gpu_memory_energy_j, covers_gpu_cpu_memory_energy_j, "
        "is_final, method_version, last_window_end, updated_at) "
        "SELECT h.job_id, SUM(h.energy_j), SUM(h.gpu_energy_j), SUM(h.gpu_idle_energy_j), SUM(h.host_energy_j), "
        "SUM(h.facility_energy_j), SUM(h.co2e_operational_g), SUM(h.co2e_embodied_g), SUM(h.co2e_low_g), "
        "SUM(h.co2e_high_g), 0, SUM(h.lifecycle_basis_energy_j), 0, 0, SUM(h.held_s) / 3600.0, 1.0, "
        "SUM(h.covers_gpu_energy_j), 0, 0, bool_and(j.ended_at IS NOT NULL), %(method)s, MAX(h.last_window_end), "
        "%(end)s FROM accounting_jobhour h JOIN _hist_jobs j ON j.job_id = h.job_id GROUP BY h.job_id",
    )
    step(
        "devicehour",
        "INSERT INTO accounting_devicehour (device_id, hour, energy_j, idle_energy_j, allocated_s, observed_s, "
        "avg_util_pct, avg_power_w, co2e_operational_g, co2e_embodied_g) "
        "SELECT d.id, hr, p.w * 3600, %(idle_w)s * 3600, CASE WHEN p.busy THEN 3600 ELSE 0 END, 3600, "
        "CASE WHEN p.busy THEN 93 ELSE 0 END, p.w, p.w * %(pue)s / 1000 * %(intensity)s, "
        "CASE WHEN p.busy THEN 3600 * %(embodied_g_per_s)s ELSE 0 END "
        "FROM generate_series(%(start)s, %(end)s - interval '1 hour', interval '1 hour') hr "
        "CROSS JOIN _hist_devices d "
        "JOIN unnest(%(busy)s::bool[]) WITH ORDINALITY AS m(busy, pos) ON m.pos - 1 = d.idx "
        "CROSS JOIN LATERAL (SELECT m.busy, CASE WHEN m.busy THEN %(busy_w)s ELSE %(idle_gpu_w)s END AS w) p "
        "ORDER BY hr, d.id",
        {
            "idle_w": IDLE_BASELINE_W,
            "busy": [_slot_of(g) is not None for g in range(GPUS_PER_HOST)],
            "busy_w": BUSY_POWER_W,
            "idle_gpu_w": IDLE_POWER_W,
        },
    )
    # Team-hours: each team (and fleet overhead, team NULL) that had a job in the hour, summed
    # from the job-hours; fleet overhead: the idle GPUs' lines.
    fleet_w = sum(line[4] for line in _LEDGER_LINES if line[1] is None and line[3] != "facility")
    team_cols = (
        "org_id, team_id, site_id, energy_j, gpu_idle_energy_j, co2e_operational_g, co2e_embodied_g, "
        "direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_upstream_g"
    )
    step(
        "teamhour",
        f"INSERT INTO accounting_teamhour ({team_cols}, hour) "
        "SELECT %(org)s, j.team_id, %(site)s, SUM(h.energy_j), SUM(h.gpu_idle_energy_j), "
        "SUM(h.co2e_operational_g), SUM(h.co2e_embodied_g), 0, SUM(h.energy_j), 0, 0, h.hour "
        "FROM accounting_jobhour h JOIN _hist_jobs j ON j.job_id = h.job_id GROUP BY j.team_id, h.hour "
        "UNION ALL SELECT %(org)s, NULL, %(site)s, %(fleet_j)s * %(hosts)s, %(idle_w)s * 3600 * %(hosts)s, "
        "%(fleet_j)s * %(hosts)s / 3.6e6 * %(intensity)s, 0, 0, %(fleet_j)s * %(hosts)s, 0, 0, hr "
        "FROM generate_series(%(start)s, %(end)s - interval '1 hour', interval '1 hour') hr",
        {"fleet_j": fleet_w * PUE * 3600, "idle_w": IDLE_BASELINE_W},
    )
    step(
        "teamday",
        f"INSERT INTO accounting_teamday ({team_cols}, day) "
        "SELECT org_id, team_id, site_id, SUM(energy_j), SUM(gpu_idle_energy_j), SUM(co2e_operational_g), "
        "SUM(co2e_embodied_g), 0, SUM(lifecycle_basis_energy_j), 0, 0, (hour AT TIME ZONE 'UTC')::date "
        "FROM accounting_teamhour WHERE org_id = %(org)s GROUP BY org_id, team_id, site_id, 12",
    )


def _seed_raw(cursor, p: dict[str, Any], step, *, raw_hours: int) -> None:
    """GPU and host windows of the last ``raw_hours``, in the batches that carried them."""
    if raw_hours == 0:
        return
    day = p["raw_start"].date()
    while day < p["end"].date() or (day == p["end"].date() and p["end"].time() != dt.time()):
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        for parent in ("telemetry_gpuseries", "telemetry_hostwindow"):
            _exec(
                cursor,
                f"CREATE TABLE IF NOT EXISTS {parent}_p{day:%Y%m%d} PARTITION OF {parent} "
                "FOR VALUES FROM (%(a)s) TO (%(b)s)",
                {"a": start, "b": start + dt.timedelta(days=1)},
            )
        day += dt.timedelta(days=1)
    # Windows seq n (1-based from the history's start) of the batches that end after raw_start.
    windows = (
        "FROM telemetry_telemetrybatch b JOIN _hist_hosts hh ON hh.host_id = b.host_id "
        "CROSS JOIN LATERAL generate_series(b.first_seq, b.last_seq) n "
        "CROSS JOIN LATERAL (SELECT %(start)s + (n - 1) * interval '10 s' AS s) w "
    )
    recent = " WHERE b.first_start >= %(raw_start)s"
    step(
        "gpuseries",
        "INSERT INTO telemetry_gpuseries (batch_id, host_id, device_id, first_start_at, last_end_at, window_count, "
        "seq, start_us, end_us, energy_j, counter_mj, avg_power_w, max_power_w, util_pct, mem_util_pct, "
        "mem_used_mib, power_limit_w, quality, processes, mig_instances, energy_covers) "
        "SELECT b.id, b.host_id, d.id, b.first_start, b.last_end, count(*), array_agg(n ORDER BY n), "
        "array_agg((extract(epoch FROM w.s) * 1000000)::bigint ORDER BY n), "
        "array_agg((extract(epoch FROM w.s) * 1000000)::bigint + 10000000 ORDER BY n), "
        "array_agg(p.w * 10 ORDER BY n), array_agg(10000000000 + n * (p.w * 10000)::bigint ORDER BY n), "
        "array_agg(p.w ORDER BY n), array_agg(p.w + 30 ORDER BY n), "
        "array_agg(CASE WHEN p.busy THEN 93.0 ELSE 0.0 END ORDER BY n), array_agg(55.0::float8 ORDER BY n), "
        "array_agg(70000.0::float8 ORDER BY n), array_agg(700.0::float8 ORDER BY n), "
        "array_agg('measured'::text ORDER BY n), "
        "CASE WHEN bool_or(p.busy) THEN jsonb_build_array(jsonb_build_array(0, jsonb_build_array("
        "jsonb_build_object('pid', 4000 + d.idx, 'sm_util_pct', 90.0, 'job_key', 'slurm:' || "
        "min(j.scheduler_job_id))))) ELSE '[]'::jsonb END, '[]', 'gpu' "
        + windows
        + " JOIN _hist_devices d ON d.host_id = b.host_id "
        "JOIN unnest(%(slot_of_gpu)s::int[]) WITH ORDINALITY AS m(slot, pos) ON m.pos - 1 = d.idx "
        "LEFT JOIN _hist_jobs hj ON hj.host_id = b.host_id AND hj.slot = m.slot "
        "AND hj.day = floor(extract(epoch FROM b.first_start - %(start)s) / 86400)::int "
        "LEFT JOIN accounting_job j ON j.id = hj.job_id "
        "CROSS JOIN LATERAL (SELECT m.slot IS NOT NULL AS busy, "
        "CASE WHEN m.slot IS NOT NULL THEN %(busy_w)s ELSE %(idle_gpu_w)s END AS w) p"
        + recent
        + " GROUP BY b.id, b.host_id, d.id, d.idx, b.first_start, b.last_end",
        {
            "slot_of_gpu": [_slot_of(g) for g in range(GPUS_PER_HOST)],
            "busy_w": BUSY_POWER_W,
            "idle_gpu_w": IDLE_POWER_W,
        },
    )
    step(
        "hostwindow",
        "INSERT INTO telemetry_hostwindow (batch_id, host_id, seq, start_at, end_at, cpu_energy_j, "
        "dram_energy_j, wall_energy_j, cpu_util_pct, quality) "
        "SELECT b.id, b.host_id, n, w.s, w.s + interval '10 s', %(cpu_j)s, %(dram_j)s, NULL, 35, 'measured' "
        + windows
        + recent,
        {"cpu_j": HOST_CPU_W * WINDOW_S, "dram_j": HOST_DRAM_W * WINDOW_S},
    )


def table_sizes(conn, tables: tuple[str, ...] = TABLES) -> dict[str, dict[str, int]]:
    """Rows (estimate from the statistics) and bytes (table + indexes + TOAST, partitions summed)."""
    out = {}
    with conn.cursor() as cursor:
        for table in tables:
            cursor.execute(
                "SELECT COALESCE(SUM(c.reltuples), 0)::bigint, COALESCE(SUM(pg_total_relation_size(c.oid)), 0) "
                "FROM pg_class c WHERE c.oid = %(t)s::regclass OR c.oid IN "
                "(SELECT inhrelid FROM pg_inherits WHERE inhparent = %(t)s::regclass)",
                {"t": table},
            )
            est_rows, size = cursor.fetchone()
            out[table] = {"rows_estimate": max(int(est_rows), 0), "bytes": int(size)}
    return out
