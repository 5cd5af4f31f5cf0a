"""Ingest: store a validated agent batch durably (one transaction), then nudge attribution.

Durable first: the batch row and its raw windows (GPU windows as one row of arrays per device,
``telemetry.models.GpuSeries``; host windows one row each) are committed before the HTTP response.
The Celery message sent on commit is only a nudge; the sweeper finds pending batches whose
message was lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import struct
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
import orjson
import psycopg
from django.db import IntegrityError, connection, transaction
from psycopg.types.json import Jsonb
from psycopg.types.string import BytesBinaryDumper

from accounting.domain.timebase import EPOCH, from_us
from accounting.models import ApiToken
from accounting.services.inventory import (
    IngestInventory,
    ReportedGpu,
    devices_register,
    host_exists,
    ingest_inventory,
)
from accounting.services.work_queue import batches_nudge
from telemetry.models import HostStream, TelemetryBatch
from telemetry.parsing import BatchError, HostRow, ParsedBatch
from telemetry.partitions import ensure_partitions
from telemetry.series import GpuSeries

log = logging.getLogger(__name__)

# (column, PostgreSQL type) of the raw tables, in COPY order. Binary COPY: psycopg's C dumpers
# write floats, integers and timestamps as PostgreSQL's own binary values, which is about half the
# client CPU of text COPY and spares the server from parsing text (docs/performance.md). GPU windows
# go in as one row per (batch, device, UTC day) holding arrays (``telemetry.models.GpuSeries``);
# the arrays are built in PostgreSQL's binary array format by numpy (``_pg_array``) and handed to
# COPY as raw field bytes ("bytea" here: binary COPY sends a field's bytes as they are, and the
# column's own receive function, array_recv, reads them), never one Python object per element.
GPU_SERIES_COPY_COLUMNS = (
    ("batch_id", "int8"),
    ("host_id", "int8"),
    ("device_id", "int8"),
    ("first_start_at", "timestamptz"),
    ("last_end_at", "timestamptz"),
    ("window_count", "int4"),
    ("seq", "bytea"),  # int8[]
    ("start_us", "bytea"),  # int8[]
    ("end_us", "bytea"),  # int8[]
    ("energy_j", "bytea"),  # float8[]
    ("counter_mj", "bytea"),  # int8[], NULL elements
    ("avg_power_w", "bytea"),  # float8[]
    ("max_power_w", "bytea"),  # float8[]
    ("util_pct", "bytea"),  # float8[]
    ("mem_util_pct", "bytea"),  # float8[]
    ("mem_used_mib", "bytea"),  # float8[]
    ("power_limit_w", "bytea"),  # float8[], NULL elements
    ("quality", "bytea"),  # text[]
    ("processes", "jsonb"),
    ("mig_instances", "jsonb"),
    ("energy_covers", "text"),
)
# Host windows (one row each) go in with the batch row's INSERT, as JSON
# (``_batch_insert_and_host_advance``).
HOST_WINDOW_COLUMNS = (
    ("batch_id", "int8"),
    ("host_id", "int8"),
    ("seq", "int8"),
    ("start_at", "timestamptz"),
    ("end_at", "timestamptz"),
    ("cpu_energy_j", "float8"),
    ("dram_energy_j", "float8"),
    ("wall_energy_j", "float8"),
    ("cpu_util_pct", "float8"),
    ("quality", "text"),
)


@dataclass(frozen=True)
class IngestResult:
    batch_pk: int
    batch_id: str
    accepted_windows: int
    duplicate: bool


US_PER_DAY = 86_400 * 1_000_000


def _runs(values: tuple[list[dict[str, Any]], ...], texts: dict[int, str]) -> list[tuple[int, str]]:
    """Run-length form of per-window lists: (first window index, JSON text) at each change, the
    first run at 0. Runs are found by object identity (a parser hands consecutive windows one
    shared list: one C-level count, else numpy over the ids), then runs of equal content merged;
    only runs are encoded (``texts``: JSON text by list id, for the batch), never windows."""
    n = len(values)
    first = values[0]
    if values.count(first) == n:  # identity first: C speed for a shared list
        starts = [0]
    else:
        ids = np.fromiter(map(id, values), dtype=np.uint64, count=n)
        starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist()]
    runs: list[tuple[int, str]] = []
    for start in starts:
        value = values[start]
        text = texts.get(id(value))
        if text is None:
            text = texts[id(value)] = json.dumps(value)
        if not runs or runs[-1][1] != text:
            runs.append((start, text))
    return runs


def _runs_jsonb(runs: list[tuple[int, str]], a: int, b: int) -> Jsonb:
    """The runs covering windows [a, b) as the stored jsonb ``[[index - a, list], ...]``; a leading
    run of ``[]`` is implied, so a GPU that never reports any stores ``[]``."""
    if len(runs) == 1 and runs[0][1] == "[]":
        return _EMPTY
    kept: list[str] = []
    for position, (start, text) in enumerate(runs):
        end = runs[position + 1][0] if position + 1 < len(runs) else b
        if start >= b or end <= a:
            continue
        first = max(start, a) - a
        if first == 0 and text == "[]":
            continue
        kept.append(f"[{first},{text}]")
    return _EMPTY if not kept else Jsonb("[" + ",".join(kept) + "]", dumps=str)


_EMPTY = Jsonb("[]", dumps=str)


# PostgreSQL's binary array format (array_send/array_recv): ndim, has-nulls flag, element type
# oid, then per dimension its length and lower bound; then per element its byte length (-1: NULL)
# and its big-endian value.
_ARRAY_HEAD = struct.Struct(">iiIii")
_INT8_OID, _FLOAT8_OID, _TEXT_OID = 20, 701, 25
_ELEMENTS = np.dtype([("size", ">i4"), ("value", ">i8")])  # an 8-byte value as its raw bits
# The series columns never NULL, in COPY order, with their element type.
_DENSE = (
    ("seq", _INT8_OID),
    ("start_us", _INT8_OID),
    ("end_us", _INT8_OID),
    ("energy_j", _FLOAT8_OID),
    ("avg_power_w", _FLOAT8_OID),
    ("max_power_w", _FLOAT8_OID),
    ("util_pct", _FLOAT8_OID),
    ("mem_util_pct", _FLOAT8_OID),
    ("mem_used_mib", _FLOAT8_OID),
)


def _pg_text_array(values: tuple[str, ...]) -> bytes:
    """A one-dimensional text[] value in binary form. Each distinct string is encoded once (a
    series has one quality, or a few)."""
    n = len(values)
    head = _ARRAY_HEAD.pack(1, 0, _TEXT_OID, n, 1)
    first = values[0]
    if values.count(first) == n:
        raw = first.encode()
        return head + (struct.pack(">i", len(raw)) + raw) * n
    encoded = {value: struct.pack(">i", len(raw)) + raw for value in set(values) for raw in [value.encode()]}
    return head + b"".join(map(encoded.__getitem__, values))


# The array columns of a series row in COPY order: (row of the element matrix, element type oid,
# whether the column has NULL elements); the matrix holds ``_DENSE`` then counter_mj, power_limit_w.
_ARRAY_COLUMNS = (
    *((k, oid, False) for k, (_, oid) in enumerate(_DENSE[:4])),
    (len(_DENSE), _INT8_OID, True),  # counter_mj
    *((k, oid, False) for k, (_, oid) in enumerate(_DENSE) if k >= 4),
    (len(_DENSE) + 1, _FLOAT8_OID, True),  # power_limit_w
)
_ELEMENT_BYTES = _ELEMENTS.itemsize


def gpu_series_rows(*, batch_pk: int, host_id: int, series: list[GpuSeries], device_ids: dict[str, int]) -> list[tuple]:
    """COPY rows (``GPU_SERIES_COPY_COLUMNS``) of a batch's GPU series: one per device and UTC day.

    A series whose windows start on two days is split at midnight (by window start, the partition
    key's day), so each row lands in its day's partition and retention stays exact. All series of
    the batch are laid out at once, by numpy, in PostgreSQL's binary array form (one matrix of
    elements per column, turned into bytes once per column); each row's arrays are then byte
    slices of it, so the Python work is per row (device and day), never per window, and a row
    costs no numpy call unless one of its arrays has NULL elements."""
    live = [s for s in series if len(s)]
    if not live:
        return []
    bounds = np.cumsum([0, *(len(s) for s in live)])
    total = int(bounds[-1])
    start_all = np.concatenate([s.start_us for s in live])
    end_all = np.concatenate([s.end_us for s in live])
    # Rows: cut at each series' start and wherever the UTC day of a window's start changes.
    day = start_all // US_PER_DAY
    if day.min() == day.max():  # the usual batch: every window starts on one day
        lo, hi = bounds[:-1], bounds[1:]
        owner = list(range(len(live)))
    else:
        cuts = np.union1d(bounds, np.flatnonzero(day[1:] != day[:-1]) + 1)
        lo, hi = cuts[:-1], cuts[1:]
        owner = (np.searchsorted(bounds, lo, side="right") - 1).tolist()
    first_start_us = np.minimum.reduceat(start_all, lo).tolist()
    last_end_us = np.maximum.reduceat(end_all, lo).tolist()
    body = np.empty((len(_DENSE) + 2, total), dtype=_ELEMENTS)
    body["size"] = 8
    values = body["value"]
    for k, (name, _) in enumerate(_DENSE):
        values[k] = np.concatenate([getattr(s, name) for s in live]).view(np.int64)
    # The two columns with NULL elements: a NULL element is its size (-1) alone.
    counter_present = np.concatenate([s.has_counter for s in live])
    limit_all = np.concatenate([s.power_limit_w for s in live])
    limit_present = ~np.isnan(limit_all)
    values[-2] = np.concatenate([s.counter_mj for s in live])
    values[-1] = limit_all.view(np.int64)
    body["size"][-2][~counter_present] = -1
    body["size"][-1][~limit_present] = -1
    present_before = {
        len(_DENSE): np.concatenate([[0], np.cumsum(counter_present)]).tolist(),
        len(_DENSE) + 1: np.concatenate([[0], np.cumsum(limit_present)]).tolist(),
    }
    columns = [row.tobytes() for row in body]  # each column's elements, laid out once
    heads: dict[tuple[int, int, int], bytes] = {}

    def array(k: int, oid: int, nullable: bool, g0: int, g1: int) -> bytes | None:
        n = g1 - g0
        nulls = 0
        if nullable:
            present = present_before[k][g1] - present_before[k][g0]
            if present == 0:
                return None
            nulls = int(present < n)
        head = heads.get((oid, n, nulls))
        if head is None:
            head = heads[oid, n, nulls] = _ARRAY_HEAD.pack(1, nulls, oid, n, 1)
        if not nulls:
            return head + columns[k][_ELEMENT_BYTES * g0 : _ELEMENT_BYTES * g1]
        elements = body[k, g0:g1]
        keep = np.ones((n, _ELEMENT_BYTES), dtype=bool)
        keep[elements["size"] < 0, 4:] = False
        return head + elements.view(np.uint8).reshape(n, _ELEMENT_BYTES)[keep].tobytes()

    texts: dict[int, str] = {}
    runs: dict[int, tuple[list[tuple[int, str]], list[tuple[int, str]]]] = {}
    offsets = bounds.tolist()
    rows = []
    for g0, g1, position, first_us, last_us in zip(
        lo.tolist(), hi.tolist(), owner, first_start_us, last_end_us, strict=True
    ):
        s = live[position]
        offset = offsets[position]
        a, b = g0 - offset, g1 - offset
        if position not in runs:
            runs[position] = (_runs(s.processes, texts), _runs(s.mig_instances, texts))
        process_runs, mig_runs = runs[position]
        rows.append(
            (
                batch_pk,
                host_id,
                device_ids[s.uuid],
                from_us(first_us),
                from_us(last_us),
                g1 - g0,
                *[array(k, oid, nullable, g0, g1) for k, oid, nullable in _ARRAY_COLUMNS],
                _pg_text_array(s.quality[a:b]),
                _runs_jsonb(process_runs, a, b),
                _runs_jsonb(mig_runs, a, b),
                s.energy_covers,
            )
        )
    return rows


def series_days(series: list[GpuSeries]) -> set[dt.date]:
    """The UTC days the series' windows start on (their partitions)."""
    if not series:
        return set()
    days = np.unique(np.concatenate([s.start_us // US_PER_DAY for s in series]))
    return {EPOCH.date() + dt.timedelta(days=int(d)) for d in days.tolist()}


def copy_rows(*, cursor: psycopg.Cursor, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> None:
    """Binary COPY of ``rows`` (values in ``columns`` order) into ``table``."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    if any(pg_type == "bytea" for _, pg_type in columns):
        # psycopg's default binary dumper for bytes is a Python subclass (it also takes
        # ``psycopg.Binary`` wrappers) called once per value; its C base class writes bytes the
        # same, with no Python call: ~20 us less per COPY of a batch's series rows.
        cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([pg_type for _, pg_type in columns])
        for row in rows:
            copy.write_row(row)


_STREAM_LOCK_SQL = f"""
    SELECT s.last_seq, s.last_seen_at,
           (SELECT b.id FROM {TelemetryBatch._meta.db_table} b WHERE b.host_id = s.host_id AND b.batch_id = %s LIMIT 1)
    FROM {HostStream._meta.db_table} s
    WHERE s.host_id = %s
    FOR UPDATE OF s
"""
_STREAM_CREATE_SQL = f"INSERT INTO {HostStream._meta.db_table} (host_id) VALUES (%s) ON CONFLICT DO NOTHING"


def _stream_lock(*, host_id: int, batch_id: UUID) -> tuple[int | None, dt.datetime | None, int | None]:
    """Lock the host's stream row (one writer per host at a time: the seq and overlap checks must
    see the last batch) and, in the same round trip, read the id of a stored batch with this
    batch_id (a re-send). Returns (last seq, last window end, the duplicate's id or None).

    A host's first batch creates the row (a concurrent first batch of the same host waits on the
    insert and then finds it)."""
    with connection.cursor() as cursor:
        cursor.execute(_STREAM_LOCK_SQL, [batch_id, host_id])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(_STREAM_CREATE_SQL, [host_id])
            cursor.execute(_STREAM_LOCK_SQL, [batch_id, host_id])
            row = cursor.fetchone()
    return row


def _host_gone() -> BatchError:
    return BatchError(403, "Authorization", "the token's host no longer exists")


def _reported_gpus(batch: ParsedBatch) -> list[ReportedGpu]:
    return [ReportedGpu(s.uuid, s.index, s.name) for s in batch.gpu_series]


def _foreign_device(uuids: tuple[str, ...]) -> BatchError:
    return BatchError(403, "windows.gpus.uuid", f"device {uuids[0]} belongs to another host")


_batch_insert_sql: dict[str, tuple[str, tuple]] = {}
# Values psycopg adapts as they are, exactly as the field would prepare them (exact types: a
# TextChoices member is a str *and* an Enum, which psycopg would write by name).
_PLAIN_TYPES = frozenset({int, float, str, bool, dt.datetime, UUID, type(None)})


def _batch_insert_and_host_advance(
    *, record: TelemetryBatch, last_seq: int, last_seen_at: dt.datetime, host_rows: list[HostRow]
) -> None:
    """INSERT the batch row, move the host stream's last seq and last window end on, and INSERT the
    batch's host windows, in one statement (sets ``record.id``). The columns are the model's own
    (built once per process); a value of a plain type goes to psycopg as it is, any other is
    prepared by its field as ``Model.save`` would (a field's own preparation costs ~10 us each,
    ~20 fields per POST).

    The host windows ride on this statement as one JSON array (orjson writes the ``HostRow``
    dataclasses in C; ``json_to_recordset`` reads each field with its column type's own input
    function, so floats and times arrive exactly) rather than a COPY of their own: a COPY is two
    round trips (the statement, then the data), each of which costs the web process ~0.1 ms of
    CPU and PostgreSQL a statement, while a batch holds one host window per 10 s window (1 at the
    agent's steady state, 6 at its default batching, 30 at its catch-up). One SQL array per
    column would cost more than the COPY beyond a few windows: the client quotes each element in
    Python. docs/performance.md, "Issue 18: the web side of one POST"."""
    cached = _batch_insert_sql.get(connection.alias)
    if cached is None:
        fields = tuple(f for f in TelemetryBatch._meta.concrete_fields if not f.primary_key)
        qn = connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        window_columns = ", ".join(name for name, _ in HOST_WINDOW_COLUMNS)
        # The JSON objects' keys are HostRow's fields, in the table's column order.
        record_type = ", ".join(
            f'"{f.name}" {pg_type}'
            for f, (_, pg_type) in zip(dataclasses.fields(HostRow), HOST_WINDOW_COLUMNS[2:], strict=True)
        )
        sql = f"""
            WITH batch AS (INSERT INTO {qn(TelemetryBatch._meta.db_table)} ({columns}) VALUES ({placeholders})
                           RETURNING id),
                 stream AS (UPDATE {qn(HostStream._meta.db_table)} SET last_seq = %s, last_seen_at = %s
                            WHERE host_id = %s),
                 host_windows AS (INSERT INTO telemetry_hostwindow ({window_columns})
                                  SELECT batch.id, %s, w.* FROM batch, json_to_recordset(%s::json) AS w({record_type}))
            SELECT id FROM batch
        """
        cached = _batch_insert_sql[connection.alias] = (sql, fields)
    sql, fields = cached
    params = []
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = field.pre_save(record, True)
        else:
            value = getattr(record, field.attname)
        params.append(value if type(value) in _PLAIN_TYPES else field.get_db_prep_save(value, connection))
    params += [last_seq, last_seen_at, record.host_id, record.host_id]
    params.append(orjson.dumps(host_rows).decode())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (record.id,) = cursor.fetchone()
    record._state.adding = False
    record._state.db = connection.alias


def batch_ingest(*, token: ApiToken, batch: ParsedBatch, now: dt.datetime) -> IngestResult:
    """Store a parsed batch for the token's host. Raises BatchError (4xx) and changes nothing
    when the batch conflicts with what the host already sent."""
    if token.host_id is None:
        raise BatchError(403, "Authorization", "only host tokens may post telemetry")
    series = batch.gpu_series
    gpu_window_count = sum(len(s) for s in series)
    host_id = token.host_id
    # The host's name and the batch's known devices: accounting's inventory (read with the token,
    # or one query), before the lock (a known device's id never changes); new devices are
    # registered under it, below.
    inventory: IngestInventory = ingest_inventory(token=token, uuids=[s.uuid for s in series])
    hostname = inventory.hostname
    if hostname is None:  # deleted while the token was being checked (a token goes with its host)
        raise _host_gone()
    if batch.hostname != hostname:
        raise BatchError(403, "hostname", f"this token posts only for host {hostname!r}")
    try:
        with transaction.atomic():
            last_seq, last_seen_at, existing_batch_pk = _stream_lock(host_id=host_id, batch_id=batch.batch_id)
            if existing_batch_pk is not None:
                return IngestResult(existing_batch_pk, str(batch.batch_id), gpu_window_count, True)
            if last_seq is not None and batch.first_seq <= last_seq:
                raise BatchError(
                    409,
                    "windows[0].seq",
                    f"seq {batch.first_seq} already ingested for this host (last seq {last_seq})",
                )
            if last_seen_at is not None and batch.first_start < last_seen_at:
                raise BatchError(
                    409,
                    "windows[0].start",
                    f"overlaps telemetry already ingested for this host (up to {last_seen_at.isoformat()})",
                )
            if inventory.foreign:
                raise _foreign_device(inventory.foreign)
            device_ids = inventory.device_ids
            if not inventory.complete(s.uuid for s in series):  # a device to register: under the host's lock
                device_ids, foreign = devices_register(host_id=host_id, hostname=hostname, gpus=_reported_gpus(batch))
                if foreign:
                    raise _foreign_device(foreign)
            ensure_partitions(days={row.start.date() for row in batch.host_rows} | series_days(series))
            gpu_energy_j = math.fsum(s.energy_total_j for s in series)
            host_energy_j = sum(row.cpu_energy_j + row.dram_energy_j for row in batch.host_rows)
            clock_offset_s = (batch.sent_at - now).total_seconds() if batch.sent_at is not None else None
            record = TelemetryBatch(
                host_id=host_id,
                batch_id=batch.batch_id,
                received_at=now,
                sent_at=batch.sent_at,
                clock_offset_s=clock_offset_s,
                agent_version=batch.agent_version,
                first_start=batch.first_start,
                last_end=batch.last_end,
                first_seq=batch.first_seq,
                last_seq=batch.last_seq,
                gpu_window_count=gpu_window_count,
                host_window_count=len(batch.host_rows),
                gpu_energy_j=gpu_energy_j,
                host_energy_j=host_energy_j,
            )
            _batch_insert_and_host_advance(
                record=record, last_seq=batch.last_seq, last_seen_at=batch.last_end, host_rows=batch.host_rows
            )
            with connection.cursor() as cursor:
                copy_rows(
                    cursor=cursor.cursor,  # the psycopg 3 cursor under Django's wrapper
                    table="telemetry_gpuseries",
                    columns=GPU_SERIES_COPY_COLUMNS,
                    rows=gpu_series_rows(batch_pk=record.id, host_id=host_id, series=series, device_ids=device_ids),
                )
            record_pk = record.id
            transaction.on_commit(lambda: batches_nudge(batch_pks=[record_pk]))
    except IntegrityError:
        # The foreign keys to the host are checked at COMMIT (Django declares them deferrable):
        # a host deleted after its token was read (the token goes with it) fails them there.
        if not host_exists(host_id=host_id):
            raise _host_gone() from None
        raise
    if record.clock_skew_flagged:
        log.warning(
            "clock skew host=%s batch=%s offset_s=%.3f (sent_at - received_at; flagged beyond %g s)",
            hostname,
            batch.batch_id,
            clock_offset_s,
            TelemetryBatch.CLOCK_SKEW_FLAG_S,
        )
    log.info(
        "ingest host=%s batch=%s windows=%d gpu_windows=%d",
        hostname,
        batch.batch_id,
        len(batch.host_rows),
        gpu_window_count,
    )
    return IngestResult(record_pk, str(batch.batch_id), gpu_window_count, False)
