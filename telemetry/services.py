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

from django.db import connection, transaction

from accounting.domain.catalog import lookup_by_name
from accounting.models import ApiToken, Device, HardwareModel, Host
from accounting.services.ledger import batches_nudge
from telemetry.models import TelemetryBatch
from telemetry.parsing import BatchError, ParsedBatch
from telemetry.partitions import ensure_partitions

log = logging.getLogger(__name__)

GPU_COLUMNS = (
    "batch_id", "host_id", "device_id", "seq", "start_at", "end_at", "energy_j", "counter_mj", "avg_power_w",
    "max_power_w", "util_pct", "mem_util_pct", "mem_used_mib", "power_limit_w", "quality", "processes",
)
HOST_COLUMNS = (
    "batch_id", "host_id", "seq", "start_at", "end_at", "cpu_energy_j", "dram_energy_j", "wall_energy_j",
    "cpu_util_pct", "quality",
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

    A device the scheduler named before the agent saw it exists as ``pending:<host>:<index>``;
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
        placeholder = Device.objects.filter(host=host, uuid=f"pending:{host.hostname}:{index}").first()
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
            log.info("device registered host=%s uuid=%s index=%d model=%s", host.hostname, uuid, index,
                     hardware.key if hardware else "unknown")
    return known


def _processes_json(processes: list[dict], cache: dict[tuple, str]) -> str:
    """json.dumps of a window's process list, memoised: a GPU reports the same processes
    window after window, and the parser always builds {pid, sm_util_pct, job_key} dicts."""
    if not processes:
        return "[]"
    key = tuple((p["pid"], p["sm_util_pct"], p["job_key"]) for p in processes)
    text = cache.get(key)
    if text is None:
        text = cache[key] = json.dumps(processes)
    return text


def _copy_rows(*, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    if not rows:
        return
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def batch_ingest(*, token: ApiToken, batch: ParsedBatch, now: dt.datetime) -> IngestResult:
    """Store a parsed batch for the token's host. Raises BatchError (4xx) and changes nothing
    when the batch conflicts with what the host already sent."""
    host = token.host
    if host is None:
        raise BatchError(403, "Authorization", "only host tokens may post telemetry")
    if batch.hostname != host.hostname:
        raise BatchError(403, "hostname", f"this token posts only for host {host.hostname!r}")
    with transaction.atomic():
        # One writer per host at a time: seq/overlap checks below must see the last batch.
        host = Host.objects.select_for_update().get(pk=host.pk)
        existing = TelemetryBatch.objects.filter(host=host, batch_id=batch.batch_id).only("id").first()
        if existing is not None:
            return IngestResult(existing.id, str(batch.batch_id), len(batch.gpu_rows), True)
        if host.last_seq is not None and batch.first_seq <= host.last_seq:
            raise BatchError(409, "windows[0].seq",
                             f"seq {batch.first_seq} already ingested for this host (last seq {host.last_seq})")
        if host.last_seen_at is not None and batch.first_start < host.last_seen_at:
            raise BatchError(409, "windows[0].start",
                             "overlaps telemetry already ingested for this host "
                             f"(up to {host.last_seen_at.isoformat()})")
        device_ids = _resolve_devices(host=host, batch=batch)
        days = {row.start.date() for row in batch.host_rows}
        ensure_partitions(days=days)
        gpu_energy_j = sum(row.energy_j for row in batch.gpu_rows)
        host_energy_j = sum(row.cpu_energy_j + row.dram_energy_j for row in batch.host_rows)
        record = TelemetryBatch.objects.create(
            host=host,
            batch_id=batch.batch_id,
            received_at=now,
            sent_at=batch.sent_at,
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
        processes_cache: dict[tuple, str] = {}
        _copy_rows(
            table="telemetry_gpuwindow",
            columns=GPU_COLUMNS,
            rows=[
                (record.id, host.id, device_ids[r.uuid], r.seq, r.start, r.end, r.energy_j, r.counter_mj,
                 r.avg_power_w, r.max_power_w, r.util_pct, r.mem_util_pct, r.mem_used_mib, r.power_limit_w,
                 r.quality, _processes_json(r.processes, processes_cache))
                for r in batch.gpu_rows
            ],
        )
        _copy_rows(
            table="telemetry_hostwindow",
            columns=HOST_COLUMNS,
            rows=[
                (record.id, host.id, r.seq, r.start, r.end, r.cpu_energy_j, r.dram_energy_j, r.wall_energy_j,
                 r.cpu_util_pct, r.quality)
                for r in batch.host_rows
            ],
        )
        Host.objects.filter(pk=host.pk).update(last_seq=batch.last_seq, last_seen_at=batch.last_end)
        record_pk = record.id
        transaction.on_commit(lambda: batches_nudge(batch_pks=[record_pk]))
    log.info("ingest host=%s batch=%s windows=%d gpu_windows=%d", host.hostname, batch.batch_id,
             len(batch.host_rows), len(batch.gpu_rows))
    return IngestResult(record_pk, str(batch.batch_id), len(batch.gpu_rows), False)
