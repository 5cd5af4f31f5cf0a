"""Ingest: store a validated agent batch durably (one transaction), then nudge attribution.

Durable first: the batch row and its raw windows are committed before the HTTP response.
The Celery message sent on commit is only a nudge; the sweeper finds pending batches whose
message was lost.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from uuid import UUID

import psycopg
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from accounting.domain.catalog import lookup_by_name
from accounting.models import ApiToken, Device, HardwareModel, Host
from accounting.services.allocations import pending_device_uuid
from accounting.services.work_queue import batches_nudge
from telemetry.models import TelemetryBatch
from telemetry.parsing import BatchError, ParsedBatch
from telemetry.partitions import ensure_partitions

log = logging.getLogger(__name__)

# (column, PostgreSQL type) of the raw-window tables, in COPY order. Binary COPY: psycopg's C
# dumpers write floats, integers and timestamps as PostgreSQL's own binary values, which is about
# half the client CPU of text COPY and spares the server from parsing text (docs/performance.md).
GPU_COPY_COLUMNS = (
    ("batch_id", "int8"),
    ("host_id", "int8"),
    ("device_id", "int8"),
    ("seq", "int8"),
    ("start_at", "timestamptz"),
    ("end_at", "timestamptz"),
    ("energy_j", "float8"),
    ("counter_mj", "int8"),
    ("avg_power_w", "float8"),
    ("max_power_w", "float8"),
    ("util_pct", "float8"),
    ("mem_util_pct", "float8"),
    ("mem_used_mib", "float8"),
    ("power_limit_w", "float8"),
    ("quality", "text"),
    ("processes", "jsonb"),
    ("mig_instances", "jsonb"),
    ("energy_covers", "text"),
)
HOST_COPY_COLUMNS = (
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


def _hardware_for(name: str) -> HardwareModel | None:
    """The catalog model for an NVML device name, or None: never a guess.

    The domain catalog normalises vendor spellings (``lookup_by_name``); models an operator
    added in the admin match by an exact (case-insensitive) entry of their ``match_names``.
    A device left unmatched is charged no embodied carbon and is flagged on the devices page."""
    if not name:
        return None
    spec = lookup_by_name(name)
    if spec is not None:
        return HardwareModel.objects.filter(key=spec.key).first()
    wanted = name.strip().casefold()
    for hw in HardwareModel.objects.filter(kind=HardwareModel.Kind.GPU).only("id", "key", "match_names"):
        if any(pattern.strip().casefold() == wanted for pattern in hw.match_names or []):
            return hw
    return None


def _resolve_devices(*, host: Host, batch: ParsedBatch) -> dict[str, int]:
    """Map the batch's GPU UUIDs to device ids, registering unknown devices of this host.

    A device the scheduler named before the agent saw it exists as ``pending:<host id>:<index>``;
    it takes the real UUID here so its allocations keep pointing at it."""
    seen: dict[str, tuple[int, str]] = {}
    for row in batch.gpu_rows:
        seen.setdefault(row.uuid, (row.index, row.name))
    # One query: ids of the known devices, and whether any of them belongs to another host.
    rows = list(Device.objects.filter(uuid__in=list(seen)).values_list("uuid", "id", "host_id"))
    for uuid, _, host_id in rows:
        if host_id != host.pk:
            raise BatchError(403, "windows.gpus.uuid", f"device {uuid} belongs to another host")
    known = {uuid: device_id for uuid, device_id, _ in rows}
    for uuid, (index, name) in seen.items():
        if uuid in known:
            continue
        placeholder = Device.objects.filter(host=host, uuid=pending_device_uuid(host_id=host.pk, index=index)).first()
        hardware = _hardware_for(name)
        if placeholder is not None:
            placeholder.uuid = uuid
            placeholder.reported_name = name
            placeholder.hardware_model = placeholder.hardware_model or hardware
            placeholder.save(update_fields=["uuid", "reported_name", "hardware_model"])
            known[uuid] = placeholder.id
        else:
            device = Device.objects.create(
                host=host, uuid=uuid, index=index, reported_name=name, hardware_model=hardware
            )
            known[uuid] = device.id
            log.info(
                "device registered host=%s uuid=%s index=%d model=%s",
                host.hostname,
                uuid,
                index,
                hardware.key if hardware else "unknown",
            )
    return known


def _processes_jsonb(processes: list[dict], cache: dict[tuple, Jsonb]) -> Jsonb:
    """A window's process list as a jsonb COPY value, memoised: a GPU reports the same processes
    window after window, and the parser always builds {pid, sm_util_pct, job_key} dicts. The
    JSON text is encoded once per distinct list (``dumps=str`` then passes it through)."""
    key = tuple((p["pid"], p["sm_util_pct"], p["job_key"]) for p in processes)
    value = cache.get(key)
    if value is None:
        value = cache[key] = Jsonb(json.dumps(processes), dumps=str)
    return value


_NO_MIG = Jsonb("[]", dumps=str)


def copy_rows(*, cursor: psycopg.Cursor, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> None:
    """Binary COPY of ``rows`` (values in ``columns`` order) into ``table``."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([pg_type for _, pg_type in columns])
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True)
class LockedHost:
    """What ingest reads of the host row it locks."""

    id: int
    hostname: str
    last_seq: int | None
    last_seen_at: dt.datetime | None


_HOST_LOCK_SQL = f"""
    SELECT h.hostname, h.last_seq, h.last_seen_at,
           (SELECT b.id FROM {TelemetryBatch._meta.db_table} b WHERE b.host_id = h.id AND b.batch_id = %s LIMIT 1),
           d.uuids, d.ids, d.host_ids
    FROM {Host._meta.db_table} h
    CROSS JOIN LATERAL (
        SELECT array_agg(uuid), array_agg(id), array_agg(host_id) FROM {Device._meta.db_table} WHERE uuid = ANY(%s)
    ) d (uuids, ids, host_ids)
    WHERE h.id = %s
    FOR UPDATE OF h
"""


def _host_lock(*, host_id: int, batch: ParsedBatch) -> tuple[LockedHost, int | None, dict[str, int] | None]:
    """Lock the token's host row (one writer per host at a time: the seq/overlap checks must see
    the last batch) and, in the same round trip, read the id of a stored batch with this
    batch_id (a re-send) and the ids of the batch's devices.

    Returns the host, the duplicate's id or None, and {uuid: device id} when every device of the
    batch is already this host's, else None: then ``_resolve_devices`` registers the new ones
    after the lock, reading the devices again under it (a scheduler's placeholder created by a
    transaction that held the lock until just now is invisible to this statement's snapshot)."""
    uuids = list({row.uuid: None for row in batch.gpu_rows})
    with connection.cursor() as cursor:
        cursor.execute(_HOST_LOCK_SQL, [batch.batch_id, uuids, host_id])
        row = cursor.fetchone()
    if row is None:
        raise Host.DoesNotExist(f"host {host_id} of the token does not exist")
    hostname, last_seq, last_seen_at, existing_pk, found_uuids, found_ids, found_hosts = row
    host = LockedHost(host_id, hostname, last_seq, last_seen_at)
    devices: dict[str, int] | None = None
    if len(found_uuids or ()) == len(uuids) and all(h == host_id for h in found_hosts or ()):
        devices = dict(zip(found_uuids or (), found_ids or (), strict=True))
    return host, existing_pk, devices


_batch_insert_sql: dict[str, tuple[str, tuple]] = {}
# Values psycopg adapts as they are, exactly as the field would prepare them (exact types: a
# TextChoices member is a str *and* an Enum, which psycopg would write by name).
_PLAIN_TYPES = frozenset({int, float, str, bool, dt.datetime, UUID, type(None)})


def _batch_insert_and_host_advance(*, record: TelemetryBatch, last_seq: int, last_seen_at: dt.datetime) -> None:
    """INSERT the batch row and move the host's last seq and last window end on, in one
    statement (sets ``record.id``). The columns are the model's own (built once per process);
    a value of a plain type goes to psycopg as it is, any other is prepared by its field as
    ``Model.save`` would (a field's own preparation costs ~10 us each, ~20 fields per POST)."""
    cached = _batch_insert_sql.get(connection.alias)
    if cached is None:
        fields = tuple(f for f in TelemetryBatch._meta.concrete_fields if not f.primary_key)
        qn = connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f"""
            WITH batch AS (INSERT INTO {qn(TelemetryBatch._meta.db_table)} ({columns}) VALUES ({placeholders})
                           RETURNING id),
                 host AS (UPDATE {qn(Host._meta.db_table)} SET last_seq = %s, last_seen_at = %s WHERE id = %s)
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
    params += [last_seq, last_seen_at, record.host_id]
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
    with transaction.atomic():
        host, existing_batch_pk, known_devices = _host_lock(host_id=token.host_id, batch=batch)
        if batch.hostname != host.hostname:
            raise BatchError(403, "hostname", f"this token posts only for host {host.hostname!r}")
        if existing_batch_pk is not None:
            return IngestResult(existing_batch_pk, str(batch.batch_id), len(batch.gpu_rows), True)
        if host.last_seq is not None and batch.first_seq <= host.last_seq:
            raise BatchError(
                409,
                "windows[0].seq",
                f"seq {batch.first_seq} already ingested for this host (last seq {host.last_seq})",
            )
        if host.last_seen_at is not None and batch.first_start < host.last_seen_at:
            raise BatchError(
                409,
                "windows[0].start",
                f"overlaps telemetry already ingested for this host (up to {host.last_seen_at.isoformat()})",
            )
        device_ids = known_devices
        if device_ids is None:  # a device to register (or one of another host): under the lock
            device_ids = _resolve_devices(host=Host.objects.get(pk=host.id), batch=batch)
        days = {row.start.date() for row in batch.host_rows}
        ensure_partitions(days=days)
        gpu_energy_j = sum(row.energy_j for row in batch.gpu_rows)
        host_energy_j = sum(row.cpu_energy_j + row.dram_energy_j for row in batch.host_rows)
        clock_offset_s = (batch.sent_at - now).total_seconds() if batch.sent_at is not None else None
        record = TelemetryBatch(
            host_id=host.id,
            batch_id=batch.batch_id,
            received_at=now,
            sent_at=batch.sent_at,
            clock_offset_s=clock_offset_s,
            agent_version=batch.agent_version,
            first_start=batch.first_start,
            last_end=batch.last_end,
            first_seq=batch.first_seq,
            last_seq=batch.last_seq,
            gpu_window_count=len(batch.gpu_rows),
            host_window_count=len(batch.host_rows),
            gpu_energy_j=gpu_energy_j,
            host_energy_j=host_energy_j,
        )
        _batch_insert_and_host_advance(record=record, last_seq=batch.last_seq, last_seen_at=batch.last_end)
        processes_cache: dict[tuple, Jsonb] = {}
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
            copy_rows(
                cursor=raw,
                table="telemetry_gpuwindow",
                columns=GPU_COPY_COLUMNS,
                rows=[
                    (
                        record.id,
                        host.id,
                        device_ids[r.uuid],
                        r.seq,
                        r.start,
                        r.end,
                        r.energy_j,
                        r.counter_mj,
                        r.avg_power_w,
                        r.max_power_w,
                        r.util_pct,
                        r.mem_util_pct,
                        r.mem_used_mib,
                        r.power_limit_w,
                        r.quality,
                        _processes_jsonb(r.processes, processes_cache),
                        _NO_MIG if not r.mig_instances else Jsonb(json.dumps(r.mig_instances), dumps=str),
                        r.energy_covers,
                    )
                    for r in batch.gpu_rows
                ],
            )
            copy_rows(
                cursor=raw,
                table="telemetry_hostwindow",
                columns=HOST_COPY_COLUMNS,
                rows=[
                    (
                        record.id,
                        host.id,
                        r.seq,
                        r.start,
                        r.end,
                        r.cpu_energy_j,
                        r.dram_energy_j,
                        r.wall_energy_j,
                        r.cpu_util_pct,
                        r.quality,
                    )
                    for r in batch.host_rows
                ],
            )
        record_pk = record.id
        transaction.on_commit(lambda: batches_nudge(batch_pks=[record_pk]))
    if record.clock_skew_flagged:
        log.warning(
            "clock skew host=%s batch=%s offset_s=%.3f (sent_at - received_at; flagged beyond %g s)",
            host.hostname,
            batch.batch_id,
            clock_offset_s,
            TelemetryBatch.CLOCK_SKEW_FLAG_S,
        )
    log.info(
        "ingest host=%s batch=%s windows=%d gpu_windows=%d",
        host.hostname,
        batch.batch_id,
        len(batch.host_rows),
        len(batch.gpu_rows),
    )
    return IngestResult(record_pk, str(batch.batch_id), len(batch.gpu_rows), False)
