"""The carbon ledger: attribute stored telemetry batches to accounts, then roll up aggregates.

Work unit: a TelemetryBatch. Attribution of a batch is idempotent: its ledger entries are
deleted and rebuilt in one transaction from the raw windows, allocations and factors, so a
batch attributed twice (retry, duplicate message, recompute) yields identical rows.

States: pending -> claimed -> done. A claim older than ATTRIBUTION_CLAIM_TIMEOUT_S is taken
to be abandoned (worker killed) and may be claimed again; the sweeper re-nudges pending work.
Aggregates (JobFootprint, JobHour, DeviceHour, TeamDay) are recomputed from committed ledger
entries under one advisory lock, so concurrent workers never lose each other's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from accounting.domain.attribution import attribute
from accounting.domain.carbon import carbonize
from accounting.domain.energy import fill_gaps
from accounting.domain.types import METHOD_VERSION, Allocation, GpuWindowIn
from accounting.mappers import (
    allocations_for,
    allocations_within,
    embodied_rates_for,
    gpu_windows_for_batches,
    host_windows_for_batches,
    previous_windows_for_many,
)
from accounting.models import Device, Job
from accounting.selectors.factor_lookup import factor_lookups_for_site
from accounting.services.jobs import allocations_observe
from accounting.services.transactions import retry_on_conflict
from telemetry.models import TelemetryBatch

log = logging.getLogger(__name__)

ROLLUP_LOCK_KEY = 7_214_001  # pg advisory lock id for aggregate rollups
MAX_INTERPOLATE_S = 60.0  # a gap longer than a minute is reported, not invented


@dataclass(frozen=True)
class AttributionOutcome:
    attributed: list[int]
    skipped: list[int]
    failed: list[int]


def batches_claim(*, batch_pks: Iterable[int], now: dt.datetime, extra: int = 0) -> list[int]:
    """Claim the given batches (and up to ``extra`` other pending ones) for attribution."""
    stale_before = now - dt.timedelta(seconds=settings.ATTRIBUTION_CLAIM_TIMEOUT_S)
    claimable = Q(status=TelemetryBatch.Status.PENDING) | Q(
        status=TelemetryBatch.Status.CLAIMED, claimed_at__lt=stale_before
    )
    with transaction.atomic():
        wanted = list(
            TelemetryBatch.objects.select_for_update(skip_locked=True)
            .filter(claimable, pk__in=list(batch_pks))
            .values_list("pk", flat=True)
        )
        if extra > 0:
            wanted += list(
                TelemetryBatch.objects.select_for_update(skip_locked=True)
                .filter(claimable)
                .exclude(pk__in=wanted)
                .order_by("received_at")
                .values_list("pk", flat=True)[:extra]
            )
        if wanted:
            TelemetryBatch.objects.filter(pk__in=wanted).update(status=TelemetryBatch.Status.CLAIMED, claimed_at=now)
    return sorted(wanted)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value


def batches_attribute(*, batch_pks: Iterable[int], now: dt.datetime, extra: int = 0) -> AttributionOutcome:
    """Claim and attribute batches, then roll up the aggregates they touched.

    All claimed batches are attributed together (one query per kind of input, one COPY of the
    ledger entries, one transaction); if that fails, each batch is retried on its own so one
    bad batch fails alone and the others still get through."""
    batch_pks = list(batch_pks)
    claimed = batches_claim(batch_pks=batch_pks, now=now, extra=extra)
    requested = set(batch_pks)
    attributed: list[int] = []
    failed: list[int] = []
    jobs: set[int] = set()
    replaced: set[ReplacedKey] = set()
    batches = list(TelemetryBatch.objects.select_related("host__cluster__site__zone").filter(pk__in=claimed)
                   .order_by("pk"))
    try:
        with transaction.atomic():
            touched_by_batch, replaced = _attribute_many(batches=batches)
    except Exception:
        log.warning("grouped attribution of %d batches failed; attributing one by one", len(batches), exc_info=True)
        touched_by_batch = None
    if touched_by_batch is not None:
        for pk, touched in touched_by_batch.items():
            jobs.update(job_id for job_id, _ in touched if job_id is not None)
            attributed.append(pk)
    else:
        for batch in batches:
            pk = batch.pk
            try:
                with transaction.atomic():
                    touched_one, replaced_one = _attribute_many(batches=[batch])
                touched = touched_one[pk]
                replaced |= replaced_one
            except Exception as exc:
                log.exception("attribution failed batch_pk=%d", pk)
                attempts = batch.attempts + 1
                status = TelemetryBatch.Status.FAILED if attempts >= 5 else TelemetryBatch.Status.PENDING
                TelemetryBatch.objects.filter(pk=pk).update(status=status, attempts=attempts, error=repr(exc)[:2000])
                failed.append(pk)
                continue
            jobs.update(job_id for job_id, _ in touched if job_id is not None)
            attributed.append(pk)
    if attributed:
        jobs.update(key[0] for key in replaced if key[0] is not None)
        aggregates_rollup(batch_pks=attributed, job_ids=sorted(jobs), replaced=replaced, claimed_at=now)
    skipped = sorted(requested - set(claimed))
    return AttributionOutcome(attributed=attributed, skipped=skipped, failed=failed)


def _unmatched_sightings(
    *, items: list, gpu_by_batch: dict, allocations: list[Allocation]
) -> set[tuple[int, int, str]]:
    """(device, cluster, job key) of processes the agent reported that no allocation of that
    device names: candidates for an observed allocation (``allocations_observe``)."""
    held = {(a.device_id, key) for a in allocations for key in a.job_keys}
    out: set[tuple[int, int, str]] = set()
    for batch, *_ in items:
        cluster_id = batch.host.cluster_id
        last = None
        for row in gpu_by_batch[batch.pk]:
            processes = row.window.processes
            if not processes or processes is last:  # the mapper shares one tuple per distinct list
                continue
            last = processes
            device_id = row.window.device_id
            for process in processes:
                key = process.job_key
                if key is not None and (device_id, key) not in held:
                    out.add((device_id, cluster_id, key))
    return out


def _group_by_period(allocations: list) -> dict[tuple[dt.datetime, dt.datetime | None], list[int]]:
    out: dict[tuple[dt.datetime, dt.datetime | None], list[int]] = defaultdict(list)
    for allocation in allocations:
        out[(allocation.start, allocation.end)].append(allocation.device_id)
    return out


_LEDGER_COLUMNS = (
    "batch_id", "account", "job_id", "org_id", "team_id", "site_id", "host_id", "device_id", "component", "hour",
    "energy_j", "held_s", "co2e_operational_g", "co2e_operational_marginal_g", "co2e_embodied_g", "co2e_low_g",
    "co2e_high_g", "intensity_g_per_kwh", "intensity_source", "pue", "quality", "measured_energy_j", "method_version",
    "factor_versions", "computed_at",
)


# Aggregate keys of ledger entries a re-attribution replaced: (job, device, hour, org, team, site).
ReplacedKey = tuple[int | None, int | None, dt.datetime, int, int | None, int]


def _attribute_many(
    *, batches: list[TelemetryBatch]
) -> tuple[dict[int, set[tuple[int | None, int | None]]], set[ReplacedKey]]:
    """Rebuild the ledger entries of these batches (caller holds a transaction): per batch, fill
    gaps, attribute and carbonize in the pure domain; inputs are read once for all batches and
    the entries are written with one COPY. Returns touched (job, device) per batch pk, and the
    aggregate keys of the entries it replaced (a job may have lost every entry of a batch: its
    aggregates must still be rebuilt, see ``aggregates_rollup``)."""
    if not batches:
        return {}, set()
    pks = [b.pk for b in batches]
    # One attribution of a batch at a time: a batch put back to pending while a worker attributes
    # it (a job ended, an allocation moved) can be claimed by another worker at once. Without the
    # lock both deleted the entries they could see and both inserted theirs: the batch counted
    # twice. With it the second waits, then deletes the first one's committed entries (each
    # statement sees what committed before it). Rows in id order, as every batch-row writer.
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM telemetry_telemetrybatch WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                       [pks])
    gpu_by_batch = gpu_windows_for_batches(batch_pks=pks)
    host_by_batch = host_windows_for_batches(batch_pks=pks)
    devices_by_batch = {b.pk: sorted({row.window.device_id for row in gpu_by_batch[b.pk]}) for b in batches}
    previous_by_batch = previous_windows_for_many(
        requests=[(b.pk, devices_by_batch[b.pk], b.first_start) for b in batches])

    # Gap filling per batch and device (pure domain), then each batch's time range.
    prepared = []
    for batch in batches:
        by_device: dict[int, list[GpuWindowIn]] = defaultdict(list)
        counters: dict[int, dict[int, int | None]] = defaultdict(dict)
        for row in gpu_by_batch[batch.pk]:
            by_device[row.window.device_id].append(row.window)
            counters[row.window.device_id][row.window.seq] = row.counter_mj
        previous = previous_by_batch[batch.pk]
        filled: list[GpuWindowIn] = []
        gaps = []
        for device_id in devices_by_batch[batch.pk]:
            result = fill_gaps(
                windows=by_device[device_id], previous=previous.get(device_id), counters=counters[device_id],
                max_interpolate_s=MAX_INTERPOLATE_S,
            )
            filled.extend(result.windows)
            gaps.extend(result.gaps)
        window_start = min([batch.first_start] + [w.start for w in filled])
        prepared.append((batch, filled, gaps, window_start))

    # Factors, allocations and embodied rates: one load per site over the union of the ranges
    # (lookups are per instant, so a wider preload answers every batch exactly as its own would).
    by_site: dict[int, list] = defaultdict(list)
    for item in prepared:
        by_site[item[0].host.cluster.site.pk].append(item)
    lines_by_batch = {}
    for items in by_site.values():
        site = items[0][0].host.cluster.site
        start = min(item[3] for item in items)
        end = max(item[0].last_end for item in items)
        site_devices = sorted({d for item in items for d in devices_by_batch[item[0].pk]})
        lookups = factor_lookups_for_site(site=site, start=start, end=end)
        rates = embodied_rates_for(device_ids=site_devices, site=site)
        site_allocations = allocations_for(device_ids=site_devices, start=start, end=end)
        unmatched = _unmatched_sightings(items=items, gpu_by_batch=gpu_by_batch, allocations=site_allocations)
        if unmatched:
            observed = allocations_observe(sightings=unmatched)
            if observed:
                # Earlier batches of these devices were attributed without the job: rebuild them
                # (not the ones being attributed here, which see the new allocations below).
                for (start_at, end_at), device_ids_of in _group_by_period(observed).items():
                    ledger_mark_dirty(device_ids=device_ids_of, start=start_at, end=end_at, exclude_batch_pks=pks)
                site_allocations = allocations_for(device_ids=site_devices, start=start, end=end)
        for batch, filled, gaps, window_start in items:
            device_ids = devices_by_batch[batch.pk]
            allocations = allocations_within(site_allocations, device_ids=set(device_ids), start=window_start,
                                             end=batch.last_end)
            attribution = attribute(gpu_windows=filled, host_windows=host_by_batch[batch.pk],
                                    allocations=allocations, host_gpu_slots=batch.host.gpu_slots)
            lines = carbonize(
                shares=attribution.shares,
                pue_at=lookups.pue_at,
                intensity_at=lookups.intensity_at,
                embodied_rates={d: rates[d] for d in device_ids if d in rates},
                factor_versions={"method": 1},
            )
            lines_by_batch[batch.pk] = (lines, gaps, attribution.diagnostics)

    job_ids = {ln.job_id for lines, _, _ in lines_by_batch.values() for ln in lines if ln.job_id}
    job_team = dict(Job.objects.filter(pk__in=job_ids).values_list("pk", "team_id"))
    computed_at = dt.datetime.now(dt.UTC)
    touched: dict[int, set[tuple[int | None, int | None]]] = {}
    updates = []
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM accounting_ledgerentry WHERE batch_id = ANY(%s) "
                       "RETURNING job_id, device_id, hour, org_id, team_id, site_id", [pks])
        replaced: set[ReplacedKey] = set(cursor.fetchall())
        with cursor.cursor.copy(f"COPY accounting_ledgerentry ({', '.join(_LEDGER_COLUMNS)}) FROM STDIN") as copy:
            for batch in batches:
                site = batch.host.cluster.site
                lines, gaps, diagnostics = lines_by_batch[batch.pk]
                for line in lines:
                    copy.write_row((
                        batch.pk, line.account.value, line.job_id, site.org_id,
                        job_team.get(line.job_id) if line.job_id else None, site.pk, batch.host_id, line.device_id,
                        line.component.value, line.hour, line.energy_j, line.held_s, line.co2e_operational_g,
                        line.co2e_operational_marginal_g, line.co2e_embodied_g, line.co2e_low_g, line.co2e_high_g,
                        line.intensity_g_per_kwh, line.intensity_source, line.pue, line.quality.value,
                        line.measured_energy_j, METHOD_VERSION, json.dumps(line.factor_versions), computed_at,
                    ))
                touched[batch.pk] = {(line.job_id, line.device_id) for line in lines}
                gaps_json = [
                    {"device_id": g.device_id, "start": g.start.isoformat(), "end": g.end.isoformat(),
                     "duration_s": g.duration_s, "resolution": g.resolution.value, "energy_j": g.energy_j}
                    for g in gaps
                ]
                updates.append((json.dumps(gaps_json), json.dumps([_jsonable(asdict(d)) for d in diagnostics]),
                                batch.attempts + 1, batch.pk))
        cursor.cursor.executemany(
            "UPDATE telemetry_telemetrybatch SET gaps = %s::jsonb, diagnostics = %s::jsonb, attempts = %s, error = '' "
            "WHERE id = %s",
            updates,
        )
    return touched, replaced


@retry_on_conflict
def aggregates_rollup(
    *, batch_pks: list[int], job_ids: list[int], replaced: set[ReplacedKey] | None = None,
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
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _rollup_batches (id bigint PRIMARY KEY) ON COMMIT DELETE ROWS"
        )
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
        # Job-hours first (with those left without entries removed): footprints sum them.
        cursor.execute(_JOB_HOUR_SQL)
        if replaced:
            cursor.execute(_REPLACED_JOB_HOUR_CLEANUP_SQL)
        cursor.execute(_JOB_FOOTPRINT_SQL, [job_ids])
        cursor.execute(_DEVICE_HOUR_SQL)
        cursor.execute(_TEAM_HOUR_SQL)
        if replaced:
            cursor.execute(_REPLACED_TEAM_HOUR_CLEANUP_SQL)
        cursor.execute(_TEAM_DAY_SQL)
        if replaced:
            for statement in _REPLACED_CLEANUP_SQL:
                cursor.execute(statement)
        cursor.execute(_BATCHES_DONE_SQL, {"batches": batch_pks, "claimed_at": claimed_at})


# Batch rows locked in id order, as ledger_mark_dirty locks them (one lock order for batch rows).
# A batch put back to pending meanwhile (an allocation changed) stays pending: it is attributed
# again.
_BATCHES_DONE_SQL = """
WITH locked AS (
    SELECT id FROM telemetry_telemetrybatch
    WHERE id = ANY(%(batches)s) AND status = 'claimed'
      AND (%(claimed_at)s::timestamptz IS NULL OR claimed_at = %(claimed_at)s::timestamptz)
    ORDER BY id FOR NO KEY UPDATE
)
UPDATE telemetry_telemetrybatch b SET status = 'done', attributed_at = clock_timestamp()
FROM locked WHERE b.id = locked.id AND b.status = 'claimed'
"""

# Facility lines have device NULL; GPU energy = active + idle; host = cpu + dram + unmeasured.
_JOB_FOOTPRINT_SQL = f"""
INSERT INTO accounting_jobfootprint AS f (
    job_id, energy_j, gpu_energy_j, gpu_idle_energy_j, host_energy_j, facility_energy_j,
    co2e_operational_g, co2e_embodied_g, co2e_low_g, co2e_high_g, device_hours, measured_fraction,
    is_final, method_version, last_window_end, updated_at)
SELECT j.id,
    COALESCE(SUM(h.energy_j), 0), COALESCE(SUM(h.gpu_energy_j), 0), COALESCE(SUM(h.gpu_idle_energy_j), 0),
    COALESCE(SUM(h.host_energy_j), 0), COALESCE(SUM(h.facility_energy_j), 0),
    COALESCE(SUM(h.co2e_operational_g), 0), COALESCE(SUM(h.co2e_embodied_g), 0),
    COALESCE(SUM(h.co2e_low_g), 0), COALESCE(SUM(h.co2e_high_g), 0),
    COALESCE(SUM(h.held_s), 0) / 3600.0,
    COALESCE(COALESCE(SUM(h.measured_gpu_energy_j), 0) / NULLIF(SUM(h.gpu_energy_j), 0), 0),
    j.status NOT IN ('running', 'pending'), '{METHOD_VERSION}', MAX(h.last_window_end), now()
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
    updated_at = EXCLUDED.updated_at
"""

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
       MAX(b.last_end)
FROM {keys} k
JOIN accounting_ledgerentry e ON e.job_id = k.job_id AND e.hour = k.hour
JOIN telemetry_telemetrybatch b ON b.id = e.batch_id
GROUP BY e.job_id, e.hour
"""
_JOB_HOUR_UPSERT = """
INSERT INTO accounting_jobhour (job_id, hour, energy_j, gpu_energy_j, co2e_operational_g, co2e_embodied_g,
                                intensity_g_per_kwh, gpu_idle_energy_j, host_energy_j, facility_energy_j,
                                co2e_low_g, co2e_high_g, held_s, measured_gpu_energy_j, last_window_end)
{select}
ON CONFLICT (job_id, hour) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_energy_j = EXCLUDED.gpu_energy_j,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g,
    intensity_g_per_kwh = EXCLUDED.intensity_g_per_kwh, gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j,
    host_energy_j = EXCLUDED.host_energy_j, facility_energy_j = EXCLUDED.facility_energy_j,
    co2e_low_g = EXCLUDED.co2e_low_g, co2e_high_g = EXCLUDED.co2e_high_g, held_s = EXCLUDED.held_s,
    measured_gpu_energy_j = EXCLUDED.measured_gpu_energy_j, last_window_end = EXCLUDED.last_window_end
"""

_JOB_HOUR_SQL = _JOB_HOUR_UPSERT.format(select=_JOB_HOUR_SELECT.format(keys="""(
    SELECT e.job_id, e.hour FROM accounting_ledgerentry e
    JOIN _rollup_batches rb ON rb.id = e.batch_id WHERE e.job_id IS NOT NULL
    UNION SELECT r.job_id, r.hour FROM _rollup_replaced r WHERE r.job_id IS NOT NULL
)"""))

_DEVICE_HOUR_SQL = """
WITH keys AS (
    SELECT e.device_id, e.hour FROM accounting_ledgerentry e
    JOIN _rollup_batches rb ON rb.id = e.batch_id WHERE e.device_id IS NOT NULL
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
), raw AS (
    SELECT l.device_id, l.hour,
           SUM(w.util_pct * EXTRACT(EPOCH FROM (w.end_at - w.start_at)))
               / NULLIF(SUM(EXTRACT(EPOCH FROM (w.end_at - w.start_at))), 0) AS avg_util_pct,
           SUM(w.energy_j) / NULLIF(SUM(EXTRACT(EPOCH FROM (w.end_at - w.start_at))), 0) AS avg_power_w
    FROM ledger l JOIN telemetry_gpuwindow w
      ON w.device_id = l.device_id AND w.start_at >= l.hour AND w.start_at < l.hour + interval '1 hour'
    GROUP BY l.device_id, l.hour
)
INSERT INTO accounting_devicehour (device_id, hour, energy_j, idle_energy_j, allocated_s, observed_s,
                                   avg_util_pct, avg_power_w, co2e_operational_g, co2e_embodied_g)
SELECT l.device_id, l.hour, l.energy_j, l.idle_energy_j, l.allocated_s, l.observed_s,
       COALESCE(r.avg_util_pct, 0), COALESCE(r.avg_power_w, 0), l.co2e_operational_g, l.co2e_embodied_g
FROM ledger l LEFT JOIN raw r ON r.device_id = l.device_id AND r.hour = l.hour
ON CONFLICT (device_id, hour) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, idle_energy_j = EXCLUDED.idle_energy_j, allocated_s = EXCLUDED.allocated_s,
    observed_s = EXCLUDED.observed_s, avg_util_pct = EXCLUDED.avg_util_pct, avg_power_w = EXCLUDED.avg_power_w,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g
"""

_TEAM_HOUR_SELECT = """
SELECT e.org_id, e.team_id, e.site_id, e.hour, SUM(e.energy_j),
       COALESCE(SUM(e.energy_j) FILTER (WHERE e.component = 'gpu_idle'), 0),
       SUM(e.co2e_operational_g), SUM(e.co2e_embodied_g)
FROM {keys} k JOIN accounting_ledgerentry e
  ON e.org_id = k.org_id AND e.team_id IS NOT DISTINCT FROM k.team_id AND e.site_id = k.site_id AND e.hour = k.hour
GROUP BY e.org_id, e.team_id, e.site_id, e.hour
"""
_TEAM_HOUR_UPSERT = """
INSERT INTO accounting_teamhour (org_id, team_id, site_id, hour, energy_j, gpu_idle_energy_j,
                                 co2e_operational_g, co2e_embodied_g)
{select}
ON CONFLICT (org_id, team_id, site_id, hour) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g
"""
# (org, team, site, hour) keys the rollup's batches touch, now or before their re-attribution.
_TEAM_HOUR_KEYS = """(
    SELECT e.org_id, e.team_id, e.site_id, e.hour FROM accounting_ledgerentry e
    JOIN _rollup_batches rb ON rb.id = e.batch_id
    UNION SELECT r.org_id, r.team_id, r.site_id, r.hour FROM _rollup_replaced r
)"""
_TEAM_HOUR_SQL = _TEAM_HOUR_UPSERT.format(select=_TEAM_HOUR_SELECT.format(keys=_TEAM_HOUR_KEYS))

# Team-days from their (at most 24) team-hours.
_TEAM_DAY_SQL = f"""
WITH keys AS (
    SELECT DISTINCT k.org_id, k.team_id, k.site_id, (k.hour AT TIME ZONE 'UTC')::date AS day FROM {_TEAM_HOUR_KEYS} k
)
INSERT INTO accounting_teamday (org_id, team_id, site_id, day, energy_j, gpu_idle_energy_j,
                                co2e_operational_g, co2e_embodied_g)
SELECT k.org_id, k.team_id, k.site_id, k.day, SUM(h.energy_j), SUM(h.gpu_idle_energy_j),
       SUM(h.co2e_operational_g), SUM(h.co2e_embodied_g)
FROM keys k JOIN accounting_teamhour h
  ON h.org_id = k.org_id AND h.team_id IS NOT DISTINCT FROM k.team_id AND h.site_id = k.site_id
 AND h.hour >= (k.day::timestamp AT TIME ZONE 'UTC') AND h.hour < ((k.day + 1)::timestamp AT TIME ZONE 'UTC')
GROUP BY k.org_id, k.team_id, k.site_id, k.day
ON CONFLICT (org_id, team_id, site_id, day) DO UPDATE SET
    energy_j = EXCLUDED.energy_j, gpu_idle_energy_j = EXCLUDED.gpu_idle_energy_j,
    co2e_operational_g = EXCLUDED.co2e_operational_g, co2e_embodied_g = EXCLUDED.co2e_embodied_g
"""


def ledger_mark_dirty(*, device_ids: list[int], start: dt.datetime, end: dt.datetime | None,
                      exclude_batch_pks: list[int] | None = None) -> int:
    """Allocations changed for these devices over [start, end): re-attribute the batches there
    (except ``exclude_batch_pks``: batches being attributed by the caller right now).

    Called by the jobs service on register/update/end. The batches go back to pending and a
    nudge is sent on commit; attribution rebuilds their entries, so nothing is counted twice."""
    if not device_ids:
        return 0
    # One statement (no separate host and batch reads): batches already pending are left as
    # they are; the ids of those put back to pending come back for the nudge.
    batch_table = TelemetryBatch._meta.db_table
    # The rows are locked in id order first (as the rollup's "done" update locks them): two
    # writers that lock overlapping sets of batches in scan order can deadlock.
    sql = f"""
        WITH locked AS (
            SELECT id FROM {batch_table}
            WHERE host_id IN (SELECT DISTINCT host_id FROM {Device._meta.db_table} WHERE id = ANY(%(devices)s))
              AND last_end > %(start)s AND status <> %(pending)s
              {"AND first_start < %(end)s" if end is not None else ""}
              AND NOT (id = ANY(%(exclude)s))
            ORDER BY id
            FOR NO KEY UPDATE
        )
        UPDATE {batch_table} b SET status = %(pending)s, claimed_at = NULL
        FROM locked WHERE b.id = locked.id AND b.status <> %(pending)s
        RETURNING b.id
    """
    params: dict[str, Any] = {
        "pending": TelemetryBatch.Status.PENDING.value, "devices": list(device_ids), "start": start, "end": end,
        "exclude": list(exclude_batch_pks or []),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pks = [pk for (pk,) in cursor.fetchall()]
    if not pks:
        return 0
    transaction.on_commit(lambda: batches_nudge(batch_pks=pks))
    return len(pks)


def batches_nudge(*, batch_pks: list[int]) -> None:
    """Send the Celery nudge for stored batches. The message is only a nudge: if the broker is
    down, stop trying (the sweeper finds pending batches); never fail the caller's request."""
    if getattr(settings, "CARBONLEDGER_SKIP_NUDGE", False):
        return
    from workers.tasks import attribute_batch

    for pk in batch_pks:
        try:
            attribute_batch.apply_async(args=[pk], retry=False)
        except Exception as exc:  # broker down: the sweeper will find the pending batches
            log.warning("nudge failed batch_pk=%d error=%s (sweeper will pick it up)", pk, exc)
            return


def job_footprint_finalize(*, job_id: int) -> None:
    """A job ended: recompute its footprint from the ledger and mark it final."""
    # Inside a caller's transaction (job_end) no savepoint is needed: an error aborts it anyway.
    # The lock is taken by its own statement before the rollup, so the rollup's snapshot (READ
    # COMMITTED: one per statement) sees every ledger entry committed before the lock was granted.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_KEY])
        cursor.execute(_JOB_FOOTPRINT_SQL, [[job_id]])


def batches_sweep(*, now: dt.datetime, limit: int = 500) -> list[int]:
    """Find stored work whose nudge was lost (or whose worker died) and return it for re-nudging."""
    stale_before = now - dt.timedelta(seconds=settings.ATTRIBUTION_CLAIM_TIMEOUT_S)
    # Pending batches older than a few seconds: a live nudge would normally have taken them.
    pending_before = now - dt.timedelta(seconds=5)
    return list(
        TelemetryBatch.objects.filter(
            Q(status=TelemetryBatch.Status.PENDING, received_at__lt=pending_before)
            | Q(status=TelemetryBatch.Status.CLAIMED, claimed_at__lt=stale_before)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


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
