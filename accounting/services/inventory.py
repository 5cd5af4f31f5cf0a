"""The host and device inventory as ingest sees it: a host's name and the ids of the GPUs a batch
names, registering the ones the agent reports for the first time.

Telemetry's ingest (``telemetry.services.batch_ingest``) calls these two functions and never reads
or writes ``accounting_host`` or ``accounting_device`` itself; telemetry keeps its own per-host
stream state (``telemetry.models.HostStream``). docs/architecture.md, "Who owns which table".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection

from accounting.domain.catalog import lookup_by_name
from accounting.models import ApiToken, Device, HardwareModel, Host, TokenHost
from accounting.services.allocations import pending_device_uuid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportedGpu:
    """A GPU as a batch names it: NVML uuid, index on the host, and NVML name."""

    uuid: str
    index: int
    name: str


@dataclass(frozen=True)
class IngestInventory:
    """What ingest needs to know of a host before storing its batch.

    ``hostname`` is None when the host does not exist. ``device_ids`` maps the uuids that are
    already this host's devices to their ids; ``foreign`` lists uuids known to be another host's
    (the batch is refused); the others are new or another host's, which ``devices_register``
    tells apart under the host's lock."""

    hostname: str | None
    device_ids: dict[str, int]
    foreign: tuple[str, ...]

    def complete(self, uuids: Iterable[str]) -> bool:
        """Whether every uuid is already a device of this host."""
        return all(uuid in self.device_ids for uuid in uuids)


_INVENTORY_SQL = f"""
    SELECT h.hostname, d.uuids, d.ids, d.host_ids
    FROM (SELECT %s::bigint AS id) wanted
    LEFT JOIN {Host._meta.db_table} h ON h.id = wanted.id
    CROSS JOIN LATERAL (
        SELECT array_agg(uuid), array_agg(id), array_agg(host_id) FROM {Device._meta.db_table} WHERE uuid = ANY(%s)
    ) d (uuids, ids, host_ids)
"""


def ingest_inventory(*, token: ApiToken, uuids: list[str]) -> IngestInventory:
    """The token's host's name and the batch's known devices, without a lock: a device id never
    changes once its uuid is known, so a batch whose devices are all known needs nothing more.
    New ones are registered by ``devices_register``, under the host's lock.

    A token from the API's lookup (``accounting.tokens``) carries its host's name and devices,
    read in the lookup's statement: no query here. Otherwise one query, which also tells a device
    of another host from a new one."""
    host_id = token.host_id
    assert host_id is not None, "a host token"
    loaded: TokenHost | None = getattr(token, "token_host", None)
    if loaded is not None:
        hosts = loaded.device_ids
        return IngestInventory(loaded.hostname, {u: hosts[u] for u in uuids if u in hosts}, ())
    with connection.cursor() as cursor:
        cursor.execute(_INVENTORY_SQL, [host_id, uuids])
        hostname, found_uuids, found_ids, found_hosts = cursor.fetchone()
    device_ids: dict[str, int] = {}
    foreign: list[str] = []
    for uuid, device_id, owner in zip(found_uuids or (), found_ids or (), found_hosts or (), strict=True):
        if owner == host_id:
            device_ids[uuid] = device_id
        else:
            foreign.append(uuid)
    return IngestInventory(hostname, device_ids, tuple(foreign))


def host_exists(*, host_id: int) -> bool:
    """Whether the host is still there (ingest asks when its batch failed a foreign key)."""
    return Host.objects.filter(pk=host_id).exists()


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


def devices_register(*, host_id: int, hostname: str, gpus: list[ReportedGpu]) -> tuple[dict[str, int], tuple[str, ...]]:
    """Ids of the reported GPUs, registering the host's unknown ones; returns ({uuid: device id},
    uuids of another host's devices). With a foreign uuid nothing is registered. ``hostname``
    names the host in the log line of each registration.

    Runs in the caller's transaction, under the host's row lock (``FOR NO KEY UPDATE``), the lock
    a scheduler's registration takes to create placeholders
    (``accounting.services.allocations._placeholders_resolve``): a device the scheduler named
    before the agent saw it exists as ``pending:<host id>:<index>`` and takes the real uuid here,
    so its allocations keep pointing at it; the devices are read again under the lock, so a
    placeholder committed just before is found, never duplicated."""
    list(Host.objects.select_for_update(no_key=True).filter(pk=host_id).values_list("pk"))
    seen: dict[str, ReportedGpu] = {}
    for gpu in gpus:
        seen.setdefault(gpu.uuid, gpu)
    rows = list(Device.objects.filter(uuid__in=list(seen)).values_list("uuid", "id", "host_id"))
    foreign = tuple(uuid for uuid, _, owner in rows if owner != host_id)
    if foreign:
        return {}, foreign
    known = {uuid: device_id for uuid, device_id, _ in rows}
    for uuid, gpu in seen.items():
        if uuid in known:
            continue
        placeholder = Device.objects.filter(
            host_id=host_id, uuid=pending_device_uuid(host_id=host_id, index=gpu.index)
        ).first()
        hardware = _hardware_for(gpu.name)
        if placeholder is not None:
            placeholder.uuid = uuid
            placeholder.reported_name = gpu.name
            placeholder.hardware_model = placeholder.hardware_model or hardware
            placeholder.save(update_fields=["uuid", "reported_name", "hardware_model"])
            known[uuid] = placeholder.id
        else:
            device = Device.objects.create(
                host_id=host_id, uuid=uuid, index=gpu.index, reported_name=gpu.name, hardware_model=hardware
            )
            known[uuid] = device.id
            log.info(
                "device registered host=%s uuid=%s index=%d model=%s",
                hostname,
                uuid,
                gpu.index,
                hardware.key if hardware else "unknown",
            )
    return known, ()
