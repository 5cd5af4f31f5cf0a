"""Attribution: turn stored telemetry batches into ledger entries through the pure domain.

Attribution of a batch is idempotent: its lines are computed from the raw windows, allocations and
factors and merged into the hourly ledger in one transaction, in place of the lines its previous
attribution merged (its ``BatchAttribution`` record), with exact sums: a batch attributed twice
(retry, duplicate message, recompute) leaves identical rows (docs/method.md §4). The claim is the work queue's
(``work_queue``), the aggregates the rollup's (``rollup``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from django.db import connection, transaction

from accounting.domain.attribution.columnar import GpuColumns, attribute_columns
from accounting.domain.carbon import carbonize
from accounting.domain.energy import fill_gaps, gapless
from accounting.domain.timebase import from_us, to_us
from accounting.domain.types import METHOD_VERSION, Allocation, GpuWindowIn
from accounting.mappers import (
    DeviceSeries,
    allocations_by_device,
    allocations_for,
    allocations_within,
    embodied_rates_for,
    gpu_series_for_batches,
    host_windows_for_batches,
    previous_windows_for_many,
)
from accounting.selectors.attribution_inputs import job_teams
from accounting.selectors.factor_lookup import factor_lookups_for_site
from accounting.services.allocations import allocations_observe
from accounting.services.rollup import ReplacedKey, aggregates_rollup
from accounting.services.work_queue import batches_claim, ledger_mark_dirty
from telemetry.models import TelemetryBatch
from telemetry.queue import batch_record_failure, batches_get, batches_lock, batches_record_attempts

log = logging.getLogger(__name__)

MAX_INTERPOLATE_S = 60.0  # a gap longer than a minute is reported, not invented
_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class AttributionOutcome:
    attributed: list[int]
    skipped: list[int]
    failed: list[int]


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


def batches_attribute(
    *,
    batch_pks: Iterable[int],
    now: dt.datetime,
    extra: int = 0,
    interrupts: tuple[type[BaseException], ...] = (),
) -> AttributionOutcome:
    """Claim and attribute batches, then roll up the aggregates they touched.

    All claimed batches are attributed together (one query per kind of input, one COPY of the
    ledger entries, one transaction); if that fails, each batch is retried on its own so one
    bad batch fails alone and the others still get through.

    ``interrupts``: exception types that stop the work instead of counting as a batch's failure
    (the worker passes Celery's soft time limit; accounting does not import Celery). They
    propagate at once: no batch is charged an attempt for the task running out of time."""
    batch_pks = list(batch_pks)
    claimed = batches_claim(batch_pks=batch_pks, now=now, extra=extra)
    requested = set(batch_pks)
    attributed: list[int] = []
    failed: list[int] = []
    jobs: set[int] = set()
    replaced: set[ReplacedKey] = set()
    batches = batches_get(batch_pks=claimed, select_related=("host__cluster__site__zone",))
    try:
        with transaction.atomic():
            touched_by_batch, replaced = _attribute_many(batches=batches)
    except interrupts:
        raise
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
            except interrupts:
                raise
            except Exception as exc:
                log.exception("attribution failed batch_pk=%d", pk)
                batch_record_failure(batch_pk=pk, attempts=batch.attempts + 1, error=repr(exc))
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
    *, items: list, series_by_batch: dict[int, list[DeviceSeries]], allocations: list[Allocation]
) -> dict[tuple[int, int, str], set[tuple[int, int]]]:
    """(device, cluster, job key) of processes the agent reported that no allocation of that
    device names: candidates for an observed allocation (``allocations_observe``), each with the
    MIG instances (GPU instance id, slices) the key ran on (empty: not seen on a MIG instance)."""
    held = {(a.device_id, key) for a in allocations for key in a.job_keys}
    out: dict[tuple[int, int, str], set[tuple[int, int]]] = {}
    for batch, *_ in items:
        cluster_id = batch.host.cluster_id
        for device_series in series_by_batch[batch.pk]:
            device_id = device_series.columns.device_id
            for _, processes, instances in device_series.columns.runs:
                if not processes and not instances:
                    continue
                keys = {p.job_key for p in processes if p.job_key is not None}
                keys.update(key for instance in instances for key in instance.job_keys)
                for key in keys:
                    if (device_id, key) in held:
                        continue
                    seen = out.setdefault((device_id, cluster_id, key), set())
                    seen.update((i.gpu_instance_id, i.slices) for i in instances if key in i.job_keys)
    return out


def _group_by_period(allocations: list) -> dict[tuple[dt.datetime, dt.datetime | None], list[int]]:
    out: dict[tuple[dt.datetime, dt.datetime | None], list[int]] = defaultdict(list)
    for allocation in allocations:
        out[(allocation.start, allocation.end)].append(allocation.device_id)
    return out


# Columns of the temporary table the ledger merge reads: the batch lines being added (sign +1,
# every column) and the lines of the batches' previous attribution being taken away (sign -1,
# keys and sums only). See ``_merge_lines``.
_LINE_KEY = ("account", "job_id", "org_id", "team_id", "site_id", "host_id", "device_id", "component", "hour")
_LINE_SUMS = (
    "energy_j",
    "held_s",
    "co2e_operational_g",
    "co2e_operational_marginal_g",
    "co2e_embodied_g",
    "co2e_low_g",
    "co2e_high_g",
    "co2e_upstream_g",
    "measured_energy_j",
)
_LINE_COLUMNS = (
    ("batch_id", "bigint"),
    ("sign", "integer"),
    ("account", "text"),
    ("job_id", "bigint"),
    ("org_id", "bigint"),
    ("team_id", "bigint"),
    ("site_id", "bigint"),
    ("host_id", "bigint"),
    ("device_id", "bigint"),
    ("component", "text"),
    ("hour", "timestamptz"),
    *((name, "float8") for name in _LINE_SUMS),
    ("quality", "text"),
    ("intensity_g_per_kwh", "float8"),
    ("intensity_source", "text"),
    ("intensity_basis", "text"),
    ("intensity_gases", "text"),
    ("pue", "float8"),
    ("energy_covers", "text"),
    ("factor_versions", "jsonb"),
    ("last_end", "timestamptz"),
)


def _attribute_many(
    *, batches: list[TelemetryBatch]
) -> tuple[dict[int, set[tuple[int | None, int | None]]], set[ReplacedKey]]:
    """Re-attribute these batches (caller holds a transaction): per batch, fill gaps, attribute and
    carbonize in the pure domain; inputs are read once for all batches, the lines written with one
    COPY and merged into the ledger (``_merge_lines``). Returns touched (job, device) per batch pk, and the
    aggregate keys of the entries it replaced (a job may have lost every entry of a batch: its
    aggregates must still be rebuilt, see ``aggregates_rollup``)."""
    if not batches:
        return {}, set()
    pks = [b.pk for b in batches]
    # One attribution of a batch at a time: a batch put back to pending while a worker attributes
    # it (a job ended, an allocation moved) can be claimed by another worker at once. Without the
    # lock both deleted the entries they could see and both inserted theirs: the batch counted
    # twice. With it the second waits, then takes away the lines of the first one's committed
    # record (each statement sees what committed before it). Rows in id order, as every
    # batch-row writer.
    batches_lock(batch_pks=pks)
    # The raw tables in their lock order (docs/reliability.md, "Lock order"): host windows, then
    # GPU series (a partition being created locks its parent exclusively, in that order).
    host_by_batch = host_windows_for_batches(batch_pks=pks)
    series_by_batch = gpu_series_for_batches(batch_pks=pks)
    # A batch whose raw windows retention has dropped cannot be attributed again: what it merged
    # into the ledger stays as it is (re-attributing it from nothing would take its energy away).
    expired = [
        b
        for b in batches
        if len(host_by_batch[b.pk]) < b.host_window_count
        or sum(len(s.columns) for s in series_by_batch[b.pk]) < b.gpu_window_count
    ]
    if expired:
        log.warning(
            "not re-attributed: raw windows past retention batch_pks=%s (their ledger lines are kept)",
            [b.pk for b in expired],
        )
        gone = {b.pk for b in expired}
        batches = [b for b in batches if b.pk not in gone]
        pks = [b.pk for b in batches]
    devices_by_batch = {b.pk: [s.columns.device_id for s in series_by_batch[b.pk]] for b in batches}
    previous_by_batch = previous_windows_for_many(
        requests=[(b.pk, devices_by_batch[b.pk], b.first_start) for b in batches]
    )

    # Gap filling per batch and device (pure domain): a device whose windows follow each other
    # (and its previous window) without a hole stays columnar; the others are filled window by
    # window. Then each batch's time range.
    prepared = []
    for batch in batches:
        previous = previous_by_batch[batch.pk]
        columnar: list[GpuColumns] = []
        filled: list[GpuWindowIn] = []
        gaps = []
        for device_series in series_by_batch[batch.pk]:
            columns = device_series.columns
            before = previous.get(columns.device_id)
            if gapless(
                starts=columns.start_us,
                ends=columns.end_us,
                previous_end=None if before is None else to_us(before.end),
            ):
                columnar.append(columns)
                continue
            rows = device_series.rows()
            result = fill_gaps(
                windows=[row.window for row in rows],
                previous=before,
                counters={row.window.seq: row.counter_mj for row in rows},
                max_interpolate_s=MAX_INTERPOLATE_S,
            )
            filled.extend(result.windows)
            gaps.extend(result.gaps)
        window_start = min([batch.first_start] + [w.start for w in filled])
        prepared.append((batch, columnar, filled, gaps, window_start))

    # Factors, allocations and embodied rates: one load per site over the union of the ranges
    # (lookups are per instant, so a wider preload answers every batch exactly as its own would).
    by_site: dict[int, list] = defaultdict(list)
    for item in prepared:
        by_site[item[0].host.cluster.site.pk].append(item)
    lines_by_batch = {}
    for items in by_site.values():
        site = items[0][0].host.cluster.site
        start = min(item[4] for item in items)
        end = max(item[0].last_end for item in items)
        site_devices = sorted({d for item in items for d in devices_by_batch[item[0].pk]})
        lookups = factor_lookups_for_site(site=site, start=start, end=end)
        rates = embodied_rates_for(device_ids=site_devices, site=site)
        site_allocations = allocations_for(device_ids=site_devices, start=start, end=end)
        unmatched = _unmatched_sightings(items=items, series_by_batch=series_by_batch, allocations=site_allocations)
        if unmatched:
            observed = allocations_observe(sightings=unmatched)
            if observed:
                # Earlier batches of these devices were attributed without the job: rebuild them
                # (not the ones being attributed here, which see the new allocations below).
                for (start_at, end_at), device_ids_of in _group_by_period(observed).items():
                    ledger_mark_dirty(device_ids=device_ids_of, start=start_at, end=end_at, exclude_batch_pks=pks)
                site_allocations = allocations_for(device_ids=site_devices, start=start, end=end)
        site_allocations_by_device = allocations_by_device(site_allocations)
        for batch, columnar, filled, gaps, window_start in items:
            device_ids = devices_by_batch[batch.pk]
            allocations = allocations_within(
                site_allocations_by_device, device_ids=device_ids, start=window_start, end=batch.last_end
            )
            attribution = attribute_columns(
                gpu_columns=columnar,
                gpu_windows=filled,
                host_windows=host_by_batch[batch.pk],
                allocations=allocations,
                host_gpu_slots=batch.host.gpu_slots,
            )
            lines = carbonize(
                shares=attribution.shares,
                pue_at=lookups.pue_at,
                intensity_at=lookups.intensity_at,
                embodied_rates={d: rates[d] for d in device_ids if d in rates},
                factor_versions={"method": 1},
            )
            lines_by_batch[batch.pk] = (lines, gaps, attribution.diagnostics)

    job_ids = {ln.job_id for lines, _, _ in lines_by_batch.values() for ln in lines if ln.job_id}
    job_team = job_teams(job_ids=job_ids)
    touched: dict[int, set[tuple[int | None, int | None]]] = {}
    updates = []
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _ledger_lines ({', '.join(f'{n} {t}' for n, t in _LINE_COLUMNS)}) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE _ledger_lines")
        # Lines share a few distinct factor version maps (one per hour and rate): each is written
        # as JSON once.
        versions_json: dict[tuple, str] = {}
        with cursor.cursor.copy(f"COPY _ledger_lines ({', '.join(n for n, _ in _LINE_COLUMNS)}) FROM STDIN") as copy:
            for batch in batches:
                site = batch.host.cluster.site
                batch_pk, host_id, last_end = batch.pk, batch.host_id, batch.last_end
                org_id, site_pk = site.org_id, site.pk
                lines, gaps, diagnostics = lines_by_batch[batch_pk]
                for line in lines:
                    versions_key = tuple(line.factor_versions.items())
                    versions = versions_json.get(versions_key)
                    if versions is None:
                        versions = versions_json[versions_key] = json.dumps(line.factor_versions)
                    copy.write_row(
                        (
                            batch_pk,
                            1,
                            line.account.value,
                            line.job_id,
                            org_id,
                            job_team.get(line.job_id) if line.job_id else None,
                            site_pk,
                            host_id,
                            line.device_id,
                            line.component.value,
                            line.hour,
                            line.energy_j,
                            line.held_s,
                            line.co2e_operational_g,
                            line.co2e_operational_marginal_g,
                            line.co2e_embodied_g,
                            line.co2e_low_g,
                            line.co2e_high_g,
                            line.co2e_upstream_g,
                            line.measured_energy_j,
                            line.quality.value,
                            line.intensity_g_per_kwh,
                            line.intensity_source,
                            line.intensity_basis,
                            line.intensity_gases,
                            line.pue,
                            line.energy_covers,
                            versions,
                            last_end,
                        )
                    )
                touched[batch_pk] = {(line.job_id, line.device_id) for line in lines}
                gaps_json = [
                    {
                        "device_id": g.device_id,
                        "start": g.start.isoformat(),
                        "end": g.end.isoformat(),
                        "duration_s": g.duration_s,
                        "resolution": g.resolution.value,
                        "energy_j": g.energy_j,
                    }
                    for g in gaps
                ]
                updates.append(
                    (
                        json.dumps(gaps_json) if gaps_json else "[]",
                        json.dumps([_jsonable(asdict(d)) for d in diagnostics]) if diagnostics else "[]",
                        batch.attempts + 1,
                        batch_pk,
                    )
                )
        replaced = _merge_lines(
            cursor=cursor,
            batch_pks=pks,
            raw_sums={batch.pk: _raw_window_sums(series_by_batch[batch.pk]) for batch in batches},
        )
        _findings_store(cursor=cursor, updates=updates)
    batches_record_attempts(attempts_by_pk={pk: attempts for _, _, attempts, pk in updates})
    for batch in expired:
        touched[batch.pk] = set()
    return touched, replaced


# The previous attribution's lines of the batches being attributed, taken away (sign -1).
_OLD_LINES_SQL = f"""
INSERT INTO _ledger_lines (batch_id, sign, {", ".join(_LINE_KEY)}, {", ".join(_LINE_SUMS)}, quality)
SELECT r.batch_id, -1, u.account, u.job_id, r.org_id, u.team_id, r.site_id, r.host_id, u.device_id, u.component,
       u.hour, {", ".join(f"u.{name}" for name in _LINE_SUMS)}, u.quality
FROM accounting_batchattribution r
CROSS JOIN LATERAL unnest(r.accounts, r.job_ids, r.team_ids, r.device_ids, r.components, r.hours,
                          {", ".join(f"r.{name}" for name in _LINE_SUMS)}, r.qualities)
     AS u(account, job_id, team_id, device_id, component, hour, {", ".join(_LINE_SUMS)}, quality)
WHERE r.batch_id = ANY(%s)
"""

# Nullable sums (marginal, upstream) stay NULL while no line knows them.
_NULLABLE_SUMS = ("co2e_operational_marginal_g", "co2e_upstream_g")


def _merged_sum(name: str) -> str:
    if name in _NULLABLE_SUMS:
        return (
            f"{name} = CASE WHEN e.{name} IS NULL AND EXCLUDED.{name} IS NULL THEN NULL "
            f"ELSE COALESCE(e.{name}, 0) + COALESCE(EXCLUDED.{name}, 0) END"
        )
    return f"{name} = e.{name} + EXCLUDED.{name}"


_QUALITY_COUNTS = ("measured", "integrated", "interpolated", "modelled")
# The factors of an entry are its hour's; a key that only lost lines keeps the ones it has
# (method_version '' marks "no line added").
_HOUR_FACTORS = (
    "intensity_g_per_kwh",
    "intensity_source",
    "intensity_basis",
    "intensity_gases",
    "pue",
    "energy_covers",
    "method_version",
    "factor_versions",
)
_NEW = "FILTER (WHERE l.sign = 1)"
# The worst quality of a key's lines (the quality of a new entry; a merged one recounts).
_WORST_NEW = (
    "CASE "
    + " ".join(
        f"WHEN COUNT(*) FILTER (WHERE l.sign = 1 AND l.quality = '{q}') > 0 THEN '{q}'"
        for q in reversed(_QUALITY_COUNTS[1:])
    )
    + " ELSE 'measured' END"
)

_FACTORS_SET = ", ".join(
    f"{name} = CASE WHEN EXCLUDED.method_version = '' THEN e.{name} ELSE EXCLUDED.{name} END" for name in _HOUR_FACTORS
)

# One row per ledger key: the exact (numeric) sum of the lines added minus those taken away, added
# to the entry. Rows in key order, so two workers merging overlapping keys lock them in the same
# order (no deadlock); each waits for the other's row and adds to what it committed.
_MERGE_SQL = f"""
INSERT INTO accounting_ledgerentry AS e (
    {", ".join(_LINE_KEY)}, {", ".join(_LINE_SUMS)}, {", ".join(f"lines_{q}" for q in _QUALITY_COUNTS)},
    quality, {", ".join(_HOUR_FACTORS)}, last_window_end, computed_at)
SELECT {", ".join(f"l.{k}" for k in _LINE_KEY)},
       {", ".join(f"SUM(l.sign * l.{name}::numeric)" for name in _LINE_SUMS)},
       {", ".join(f"COALESCE(SUM(l.sign) FILTER (WHERE l.quality = '{q}'), 0)" for q in _QUALITY_COUNTS)},
       {_WORST_NEW},
       COALESCE((array_agg(l.intensity_g_per_kwh ORDER BY l.batch_id DESC) {_NEW})[1], 0),
       COALESCE((array_agg(l.intensity_source ORDER BY l.batch_id DESC) {_NEW})[1], ''),
       COALESCE((array_agg(l.intensity_basis ORDER BY l.batch_id DESC) {_NEW})[1], ''),
       COALESCE((array_agg(l.intensity_gases ORDER BY l.batch_id DESC) {_NEW})[1], ''),
       COALESCE((array_agg(l.pue ORDER BY l.batch_id DESC) {_NEW})[1], 1),
       COALESCE((array_agg(l.energy_covers ORDER BY l.batch_id DESC) {_NEW})[1], ''),
       CASE WHEN COUNT(*) {_NEW} > 0 THEN %(method)s ELSE '' END,
       COALESCE((array_agg(l.factor_versions ORDER BY l.batch_id DESC) {_NEW})[1], '{{}}'::jsonb),
       MAX(l.last_end) {_NEW},
       clock_timestamp()
FROM _ledger_lines l
GROUP BY {", ".join(f"l.{k}" for k in _LINE_KEY)}
ORDER BY l.account, l.job_id NULLS FIRST, l.host_id, l.device_id NULLS FIRST, l.component, l.hour
ON CONFLICT (account, job_id, host_id, device_id, component, hour) DO UPDATE SET
    {", ".join(_merged_sum(name) for name in _LINE_SUMS)},
    {", ".join(f"lines_{q} = e.lines_{q} + EXCLUDED.lines_{q}" for q in _QUALITY_COUNTS)},
    quality = CASE WHEN e.lines_modelled + EXCLUDED.lines_modelled > 0 THEN 'modelled'
                   WHEN e.lines_interpolated + EXCLUDED.lines_interpolated > 0 THEN 'interpolated'
                   WHEN e.lines_integrated + EXCLUDED.lines_integrated > 0 THEN 'integrated'
                   ELSE 'measured' END,
    {_FACTORS_SET},
    last_window_end = GREATEST(e.last_window_end, EXCLUDED.last_window_end),
    computed_at = EXCLUDED.computed_at
RETURNING e.id, {" + ".join(f"e.lines_{q}" for q in _QUALITY_COUNTS)}
"""

# The new record of each batch (its lines, in the order they were written) with its raw window
# sums (``_raw_window_sums``), which come per batch as array literals (``_record_raw_params``):
# one statement writes each record once.
_RAW_COLUMNS = (
    ("raw_device_ids", "bigint[]"),
    ("raw_hours", "timestamptz[]"),
    ("raw_window_s", "float8[]"),
    ("raw_util_pct_s", "float8[]"),
    ("raw_energy_j", "float8[]"),
)
_RECORD_SQL = f"""
INSERT INTO accounting_batchattribution (
    batch_id, org_id, site_id, host_id, last_end, attributed_at, method_version,
    accounts, job_ids, team_ids, device_ids, components, hours, {", ".join(_LINE_SUMS)}, qualities,
    {", ".join(name for name, _ in _RAW_COLUMNS)})
SELECT g.*, {", ".join(f"COALESCE(r.{name}::{kind}, '{{}}')" for name, kind in _RAW_COLUMNS)}
FROM (
    SELECT l.batch_id, MIN(l.org_id), MIN(l.site_id), MIN(l.host_id), MAX(l.last_end), clock_timestamp(),
           %(method)s, array_agg(l.account ORDER BY l.ctid), array_agg(l.job_id ORDER BY l.ctid),
           array_agg(l.team_id ORDER BY l.ctid), array_agg(l.device_id ORDER BY l.ctid),
           array_agg(l.component ORDER BY l.ctid), array_agg(l.hour ORDER BY l.ctid),
           {", ".join(f"array_agg(l.{name} ORDER BY l.ctid)" for name in _LINE_SUMS)},
           array_agg(l.quality ORDER BY l.ctid)
    FROM _ledger_lines l WHERE l.sign = 1
    GROUP BY l.batch_id
) g
LEFT JOIN unnest(%(raw_batch_ids)s::bigint[], {", ".join(f"%({name})s::text[]" for name, _ in _RAW_COLUMNS)})
    AS r(batch_id, {", ".join(name for name, _ in _RAW_COLUMNS)}) ON r.batch_id = g.batch_id
"""


def _array_literal(values: list, item) -> str:
    """A PostgreSQL array literal (floats by ``repr``: the shortest text that reads back as the
    same double)."""
    return "{" + ",".join(map(item, values)) + "}"


def _record_raw_params(raw_sums: dict[int, tuple]) -> dict[str, list]:
    """The batches' raw window sums as ``_RECORD_SQL``'s parameters: per column, one array
    literal per batch."""
    params: dict[str, list] = {"raw_batch_ids": list(raw_sums)}
    items = (str, lambda hour: f'"{hour.isoformat()}"', repr, repr, repr)
    for index, ((name, _), item) in enumerate(zip(_RAW_COLUMNS, items, strict=True)):
        params[name] = [_array_literal(sums[index], item) for sums in raw_sums.values()]
    return params


def _raw_window_sums(
    series: list[DeviceSeries],
) -> tuple[list[int], list[dt.datetime], list[float], list[float], list[float]]:
    """A batch's raw GPU windows summed per (device, hour of the window's start): seconds observed,
    utilisation x seconds and energy, as the record's parallel arrays (sorted by device, hour).
    Each sum adds its windows in order, from 0.0."""
    sums: dict[tuple[int, int], list[float]] = {}
    for device_series in series:
        columns = device_series.columns
        device_id = columns.device_id
        for start, end, util, energy in zip(
            columns.start_us, columns.end_us, columns.util_pct, columns.energy_j, strict=True
        ):
            duration_s = (end - start) / 1e6
            key = (device_id, start - start % _HOUR_US)
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = [0.0, 0.0, 0.0]
            acc[0] += duration_s
            acc[1] += util * duration_s
            acc[2] += energy
    keys = sorted(sums)
    return (
        [device_id for device_id, _ in keys],
        [from_us(hour) for _, hour in keys],
        [sums[k][0] for k in keys],
        [sums[k][1] for k in keys],
        [sums[k][2] for k in keys],
    )


def _merge_lines(*, cursor, batch_pks: list[int], raw_sums: dict[int, tuple]) -> set[ReplacedKey]:
    """Merge the new lines in ``_ledger_lines`` into the ledger in place of the batches' previous
    ones, and replace their records (with each batch's raw window sums, ``raw_sums``). Returns
    the aggregate keys of the lines taken away."""
    cursor.execute(_OLD_LINES_SQL, [batch_pks])
    cursor.execute(
        "SELECT DISTINCT job_id, device_id, hour, org_id, team_id, site_id FROM _ledger_lines WHERE sign = -1"
    )
    replaced: set[ReplacedKey] = set(cursor.fetchall())
    cursor.execute(_MERGE_SQL, {"method": METHOD_VERSION})
    emptied = [pk for pk, lines in cursor.fetchall() if lines == 0]
    if emptied:
        cursor.execute("DELETE FROM accounting_ledgerentry WHERE id = ANY(%s)", [emptied])
    cursor.execute("DELETE FROM accounting_batchattribution WHERE batch_id = ANY(%s)", [batch_pks])
    cursor.execute(_RECORD_SQL, {"method": METHOD_VERSION, **_record_raw_params(raw_sums)})
    return replaced


def batch_records_prune(*, before: dt.datetime) -> int:
    """Delete the attribution records of batches that ended before ``before`` (the raw-window
    retention cut-off): with their windows gone they can never be attributed again, and the
    ledger entries they merged into stay. Returns how many were deleted."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM accounting_devicehoursource s USING accounting_batchattribution r "
            "WHERE s.batch_id = r.batch_id AND r.last_end < %s",
            [before],
        )
        cursor.execute("DELETE FROM accounting_batchattribution WHERE last_end < %s", [before])
        deleted = cursor.rowcount
    if deleted:
        log.info("retention deleted=%d batch attribution records before=%s", deleted, before.isoformat())
    return deleted


def _findings_store(*, cursor, updates: list[tuple[str, str, int, int]]) -> None:
    """Keep each attributed batch's gaps and diagnostics (``BatchFindings``; ``updates``: gaps
    JSON, diagnostics JSON, attempt count, batch pk). A row only where there is something to
    report: a batch without any loses the row of an earlier attribution, which exists only for a
    batch attributed before (an attempt count above 1), so a first attribution costs no statement."""
    found = [(pk, gaps, diagnostics) for gaps, diagnostics, _, pk in updates if gaps != "[]" or diagnostics != "[]"]
    if found:
        cursor.cursor.executemany(
            "INSERT INTO accounting_batchfindings (batch_id, gaps, diagnostics) VALUES (%s, %s::jsonb, %s::jsonb) "
            "ON CONFLICT (batch_id) DO UPDATE SET gaps = EXCLUDED.gaps, diagnostics = EXCLUDED.diagnostics",
            found,
        )
    cleared = [pk for gaps, diagnostics, attempts, pk in updates if gaps == diagnostics == "[]" and attempts > 1]
    if cleared:
        cursor.execute("DELETE FROM accounting_batchfindings WHERE batch_id = ANY(%s)", [cleared])
