"""Job lifecycle writes for schedulers: register (idempotent), update, end, functional units.

Allocation periods are the attribution input: every time one is created, moved or closed,
the telemetry already attributed for the affected devices from that instant on is marked
dirty so the ledger is rebuilt (``ledger_mark_dirty``); ending a job also finalises its
footprint (``job_footprint_finalize``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router, transaction
from django.db.models import ForeignKey, Q
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

from accounting.models import Cluster, Device, Host, Job, JobAllocation, Organization, Team
from accounting.selectors.jobs import model_from_row

log = logging.getLogger(__name__)

PENDING_UUID_PREFIX = "pending:"
ENDED_STATUSES = (Job.Status.COMPLETED, Job.Status.FAILED, Job.Status.PREEMPTED, Job.Status.CANCELLED)


class JobInputError(ValueError):
    """Input that is well-formed but wrong for the current data, naming the offending field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


class JobStateError(Exception):
    """The job's state forbids the change (e.g. moving the allocation of an ended job)."""


@dataclass(frozen=True)
class AllocationSpec:
    """One allocation item as a scheduler names it: a host and GPU indices, or a GPU UUID."""

    host: str | None = None
    gpus: tuple[int, ...] = ()
    gpu_uuid: str | None = None
    fraction: float = 1.0


@dataclass(frozen=True)
class JobRegistration:
    job: Job
    created: bool
    added_device_ids: list[int] = field(default_factory=list)
    # The allocations this registration created (for a new job: all it holds), devices loaded.
    allocations: list[JobAllocation] = field(default_factory=list)
    # True when ``allocations`` are in the API's order (start, hostname, GPU index) as the
    # database sorted them (hostnames compare under its collation, not Python's).
    allocations_sorted: bool = False


def pending_device_uuid(*, host_id: int, index: int) -> str:
    """The uuid of a placeholder for GPU ``index`` of a host whose agent has not reported it yet
    (the agent's first batch gives it the real NVML uuid). Keyed by the host's id: hostnames
    repeat across clusters, and a long one would not fit the uuid column."""
    return f"{PENDING_UUID_PREFIX}{host_id}:{index}"


def _hosts_resolve(*, cluster: Cluster, hostnames: set[str], known: dict[str, Host]) -> dict[str, Host]:
    """Hosts of ``cluster`` by name, creating the missing ones (concurrent registrations of the
    same new host are safe: the insert ignores conflicts and the rows are read back)."""
    hosts = dict(known)
    missing = hostnames - hosts.keys()
    if missing:
        hosts.update((h.hostname, h) for h in Host.objects.filter(cluster=cluster, hostname__in=missing))
        missing -= hosts.keys()
    if missing:
        Host.objects.bulk_create([Host(cluster=cluster, hostname=name) for name in sorted(missing)],
                                 ignore_conflicts=True)
        hosts.update((h.hostname, h) for h in Host.objects.filter(cluster=cluster, hostname__in=missing))
    return hosts


def _placeholders_resolve(*, wanted: set[tuple[Host, int]]) -> dict[tuple[int, int], Device]:
    """The device at each (host, GPU index), creating a placeholder where there is none, by
    (host id, index).

    Under the hosts' row locks, the lock ingest takes on a host for its whole batch
    (``telemetry.services.batch_ingest``): an agent's first batch either committed before (its
    real device is found here and held) or waits and then binds the placeholder created here to
    its NVML uuid. Without the lock a registration could read "no device at index 0" while that
    batch was creating one, and hold a placeholder nobody ever reports on: the job ended at 0 J
    and its energy went to fleet overhead."""
    host_ids = sorted({host.pk for host, _ in wanted})
    # Locked in id order (as every writer of several hosts does), then read again: the device
    # lookup before ran without the locks.
    list(Host.objects.select_for_update(no_key=True).filter(pk__in=host_ids).order_by("pk").values_list("pk"))
    at: dict[tuple[int, int], Device] = {}
    for device in (
        Device.objects.filter(host_id__in=host_ids, index__in={index for _, index in wanted})
        .exclude(uuid__startswith="MIG-").order_by("-id")
    ):
        at[(device.host_id, device.index)] = device  # the oldest row per index wins, as before
    missing = sorted((host.pk, index) for host, index in wanted if (host.pk, index) not in at)
    # No conflict is possible under the locks: a concurrent registration of the same GPUs waited
    # and, reading again, found the placeholders of the one before it.
    created = Device.objects.bulk_create(
        [Device(uuid=pending_device_uuid(host_id=host_id, index=index), host_id=host_id, index=index)
         for host_id, index in missing]
    )
    at.update(((device.host_id, device.index), device) for device in created)
    return {key: at[key] for key in ((host.pk, index) for host, index in wanted)}


def allocation_devices_resolve(
    *, cluster: Cluster, allocation: list[AllocationSpec], field_prefix: str = "allocation"
) -> list[tuple[Device, float]]:
    """Devices (with the held fraction) named by an allocation, creating hosts and placeholders.

    Resolves the whole allocation in a few queries (not per item): GPUs named by uuid, then the
    devices at the named host indices; hosts and placeholder devices (``pending:<host id>:<index>``)
    the agents have not reported yet are created. Errors name the first offending item."""
    by_uuid: dict[str, Device] = {}
    uuids = {spec.gpu_uuid for spec in allocation if spec.gpu_uuid}
    if uuids:
        by_uuid = {d.uuid: d for d in Device.objects.select_related("host").filter(uuid__in=uuids)}
    named = [spec for spec in allocation if not spec.gpu_uuid]
    at_index: dict[tuple[str, int], Device] = {}
    hosts: dict[str, Host] = {}
    if named:
        hostnames = {spec.host for spec in named if spec.host is not None}
        indices = {index for spec in named for index in spec.gpus}
        for device in (
            Device.objects.select_related("host")
            .filter(host__cluster=cluster, host__hostname__in=hostnames, index__in=indices)
            .exclude(uuid__startswith="MIG-")
            .order_by("-id")
        ):
            hosts[device.host.hostname] = device.host
            at_index[(device.host.hostname, device.index)] = device  # the oldest row per index wins
        unresolved = {(spec.host, index) for spec in named for index in spec.gpus if spec.host is not None} - set(
            at_index
        )
        if not hostnames <= hosts.keys():  # hosts without a device at a named index (or new ones)
            hosts = _hosts_resolve(cluster=cluster, hostnames=hostnames, known=hosts)
        if unresolved:
            placeholders = _placeholders_resolve(wanted={(hosts[name], index) for name, index in unresolved})
            for name, index in unresolved:
                at_index[(name, index)] = placeholders[(hosts[name].pk, index)]
    resolved: dict[int, tuple[Device, float]] = {}
    for position, spec in enumerate(allocation):
        where = f"{field_prefix}[{position}]"
        if spec.gpu_uuid:
            known = by_uuid.get(spec.gpu_uuid)
            if known is None or known.host.cluster_id != cluster.pk:
                raise JobInputError(f"{where}.gpu_uuid", f"no GPU {spec.gpu_uuid!r} in cluster {cluster.slug!r}")
            resolved[known.pk] = (known, spec.fraction)
            continue
        assert spec.host is not None
        for index in spec.gpus:
            device = at_index[(spec.host, index)]
            device.host = hosts[spec.host]
            resolved[device.pk] = (device, spec.fraction)
    return list(resolved.values())


# Process job keys the agent reports (telemetry/agent/jobs.py) -> the job's scheduler id.
OBSERVABLE_KEY_PREFIXES = frozenset({"slurm", "k8s", "env"})


def allocations_observe(*, sightings: set[tuple[int, int, str]]) -> list[JobAllocation]:
    """Allocations for jobs registered without one, from where the agent saw their processes.

    ``sightings`` are (device id, cluster id, process job key) not matched by any allocation.
    A job of that cluster whose scheduler id is the key's (``k8s:<pod uid>`` -> ``<pod uid>``)
    and that holds no scheduler allocation at all gets the device for its whole life
    ([started_at, ended_at), fraction 1): Kubernetes' device plugin gives a pod its GPUs for
    the pod's life, and the API server never says which (integrations/kubernetes). A job with a
    scheduler allocation is never extended this way (the scheduler is the source of truth), and
    a key naming no registered job stays unallocated (fleet overhead). Concurrent workers are
    safe: one observed allocation per (job, device), inserts ignore conflicts. The caller
    re-attributes the batches the new allocations cover."""
    wanted: dict[tuple[int, str], set[int]] = {}
    for device_id, cluster_id, key in sightings:
        prefix, sep, ident = key.partition(":")
        if sep and ident and prefix in OBSERVABLE_KEY_PREFIXES:
            wanted.setdefault((cluster_id, ident), set()).add(device_id)
    if not wanted:
        return []
    match = Q()
    for cluster_id, ident in wanted:
        match |= Q(cluster_id=cluster_id, scheduler_job_id=ident)
    jobs = (Job.objects.filter(match)
            .exclude(allocations__source=JobAllocation.Source.SCHEDULER)
            .only("pk", "cluster_id", "scheduler_job_id", "started_at", "ended_at"))
    candidates = [
        JobAllocation(job_id=job.pk, device_id=device_id, start=job.started_at, end=job.ended_at,
                      source=JobAllocation.Source.OBSERVED)
        for job in jobs
        for device_id in sorted(wanted[(job.cluster_id, job.scheduler_job_id)])
        if job.ended_at is None or job.ended_at > job.started_at
    ]
    if not candidates:
        return []
    existing = set(JobAllocation.objects.filter(
        job_id__in={a.job_id for a in candidates}, source=JobAllocation.Source.OBSERVED,
    ).values_list("job_id", "device_id"))
    new = [a for a in candidates if (a.job_id, a.device_id) not in existing]
    JobAllocation.objects.bulk_create(new, ignore_conflicts=True)
    for allocation in new:
        log.info("observed allocation job=%d device=%d from %s", allocation.job_id, allocation.device_id,
                 allocation.start.isoformat())
    return new


def _mark_dirty(*, device_ids: list[int], start: dt.datetime) -> None:
    if not device_ids:
        return
    from accounting.services.ledger import ledger_mark_dirty

    ledger_mark_dirty(device_ids=sorted(set(device_ids)), start=start, end=None)


def _job_insert_sql(*, job: Job, db: str) -> tuple[str, tuple]:
    """``INSERT INTO job ... ON CONFLICT DO NOTHING RETURNING id`` for ``job`` (field values
    prepared as ``save()`` would: auto_now timestamps set, JSON adapted)."""
    query = InsertQuery(Job, on_conflict=OnConflict.IGNORE)
    query.insert_values([f for f in Job._meta.concrete_fields if not f.generated and not f.primary_key], [job])
    compiler = query.get_compiler(using=db)
    compiler.returning_fields = [Job._meta.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, tuple(params)


def _job_insert_unless_exists(job: Job) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: one round trip, no savepoint.

    True (and ``job.pk`` set) when the row was inserted; False when a job with the same
    (cluster, scheduler_job_id) exists (a concurrent insert of the same key is waited for)."""
    db = router.db_for_write(Job)
    sql, params = _job_insert_sql(job=job, db=db)
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    job.pk = row[0]
    job._state.adding = False
    job._state.db = db
    return True


def _host_index_items(allocation: list[AllocationSpec]) -> list[tuple[str, int, float]] | None:
    """(hostname, GPU index, fraction) per GPU named, when every item names a host and GPU
    indices and no GPU is named twice; else None (gpu_uuid items take the general path)."""
    items: list[tuple[str, int, float]] = []
    for spec in allocation:
        if spec.gpu_uuid or spec.host is None:
            return None
        items.extend((spec.host, index, spec.fraction) for index in spec.gpus)
    if len({(host, index) for host, index, _ in items}) != len(items):
        return None
    return items


_REGISTER_SQL = """
WITH new_job AS (
    {job_insert}
), wanted AS (
    SELECT * FROM unnest(%s::varchar[], %s::integer[], %s::double precision[], %s::integer[])
        AS w(hostname, gpu_index, fraction, position)
), found AS (
    -- Per named GPU the oldest device row at that index of the host (MIG slices excluded).
    SELECT DISTINCT ON (w.position) w.position, w.fraction, {device_columns}, {host_columns}
    FROM wanted w
    JOIN {hosts} h ON h.cluster_id = %s AND h.hostname = w.hostname
    JOIN {devices} d ON d.host_id = h.id AND d.index = w.gpu_index AND NOT (d.uuid LIKE %s)
    ORDER BY w.position, d.id
), inserted AS (
    INSERT INTO {allocations} ({allocation_columns})
    SELECT {allocation_values} FROM new_job, found
    WHERE (SELECT count(*) FROM found) = %s
    RETURNING id, device_id
)
SELECT new_job.id, inserted.id, found.*
FROM new_job LEFT JOIN (inserted JOIN found ON found.d_id = inserted.device_id) ON true
ORDER BY found.h_hostname, found.d_index
"""


def _job_insert_with_allocations(
    *, job: Job, cluster: Cluster, items: list[tuple[str, int, float]]
) -> tuple[bool, list[JobAllocation] | None, list[int]]:
    """Insert the job unless it exists and, when every named GPU is a known device of the
    cluster, its allocations from ``job.started_at``: one statement (job insert, device
    lookup and allocation insert were three round trips and two ORM compilations).

    Returns (created, allocations in the API's order or None when nothing was allocated,
    device ids in the order named). ``created`` and None: some GPU needs a new host or a
    placeholder device; the caller allocates through the general path."""
    db = router.db_for_write(Job)
    connection = connections[db]
    job_sql, job_params = _job_insert_sql(job=job, db=db)
    device_fields, host_fields = Device._meta.concrete_fields, Host._meta.concrete_fields
    allocation_columns, allocation_values, allocation_params = [], [], []
    for concrete in JobAllocation._meta.concrete_fields:
        if concrete.primary_key:
            continue
        allocation_columns.append(connection.ops.quote_name(concrete.column))
        if concrete.name == "job":
            allocation_values.append("new_job.id")
        elif concrete.name == "device":
            allocation_values.append("found.d_id")
        elif concrete.name == "fraction":
            allocation_values.append("found.fraction")
        else:  # start: the job's start; anything else its model default, as bulk_create would store
            value = job.started_at if concrete.name == "start" else concrete.get_default()
            allocation_values.append("%s")
            allocation_params.append(concrete.get_db_prep_save(value, connection))
    sql = _REGISTER_SQL.format(
        job_insert=job_sql,
        device_columns=", ".join(f'd."{f.column}" AS "d_{f.column}"' for f in device_fields),
        host_columns=", ".join(f'h."{f.column}" AS "h_{f.column}"' for f in host_fields),
        hosts=Host._meta.db_table, devices=Device._meta.db_table, allocations=JobAllocation._meta.db_table,
        allocation_columns=", ".join(allocation_columns), allocation_values=", ".join(allocation_values),
    )
    params = [
        *job_params,
        [host for host, _, _ in items], [index for _, index, _ in items], [fraction for _, _, fraction in items],
        list(range(len(items))),
        cluster.pk, "MIG-%",
        *allocation_params,
        len(items),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return False, None, []
    job.pk = rows[0][0]
    job._state.adding = False
    job._state.db = db
    if rows[0][1] is None:
        return True, None, []
    allocations = []
    named: list[tuple[int, int]] = []
    for _job_id, allocation_id, position, fraction, *columns in rows:
        device = model_from_row(Device, db=db, values=list(columns[: len(device_fields)]))
        device.host = model_from_row(Host, db=db, values=list(columns[len(device_fields):]))
        allocation = JobAllocation(job=job, device=device, start=job.started_at, fraction=fraction)
        allocation.pk = allocation_id
        allocation._state.adding = False
        allocation._state.db = db
        allocations.append(allocation)
        named.append((position, device.pk))
    return True, allocations, [device_id for _, device_id in sorted(named)]


@transaction.atomic
def job_register(
    *,
    org: Organization,
    cluster: Cluster,
    scheduler_job_id: str,
    team: Team,
    kind: str,
    family: str = Job.Family.OTHER,
    name: str = "",
    user=None,
    username: str = "",
    started_at: dt.datetime | None = None,
    requested_s: float | None = None,
    model_meta: dict[str, Any] | None = None,
    power_cap_w: float | None = None,
    allocation: list[AllocationSpec] | None = None,
) -> JobRegistration:
    """Register a job start, idempotent on (cluster, scheduler_job_id).

    Re-registering returns the existing job unchanged except that devices it does not hold
    yet are added: a multi-node Slurm job runs its prolog on every node, each naming its own
    GPUs, so the union is the job's allocation. An ended job is returned as it is.
    """
    started = started_at or timezone.now()
    job = Job(
        org=org,
        cluster=cluster,
        scheduler_job_id=scheduler_job_id,
        team=team,
        kind=kind,
        family=family,
        name=name,
        user=user,
        username=username or (user.get_username() if user is not None else ""),
        started_at=started,
        requested_s=requested_s,
        model_meta=model_meta or {},
        power_cap_w=power_cap_w,
        status=Job.Status.RUNNING,
    )
    items = _host_index_items(allocation) if allocation else None
    if items:
        created, allocations, added = _job_insert_with_allocations(job=job, cluster=cluster, items=items)
        if allocations is not None:  # a new job, allocated
            _mark_dirty(device_ids=added, start=job.started_at)
            return JobRegistration(
                job=job, created=True, added_device_ids=added, allocations=allocations, allocations_sorted=True
            )
    else:
        created = _job_insert_unless_exists(job)
    if not created:
        # Concurrent prologs of one job serialise here, so allocations are never duplicated
        # (a job just inserted is already locked by this transaction).
        job = (
            Job.objects.select_for_update(of=("self",), no_key=True)
            .select_related("team", "cluster")
            .get(cluster=cluster, scheduler_job_id=scheduler_job_id)
        )
    if job.status in ENDED_STATUSES or not allocation:
        return JobRegistration(job=job, created=created)
    devices = allocation_devices_resolve(cluster=cluster, allocation=allocation)
    held = set() if created else set(job.allocations.filter(end__isnull=True).values_list("device_id", flat=True))
    new = [(device, fraction) for device, fraction in devices if device.pk not in held]
    allocations = JobAllocation.objects.bulk_create(
        [JobAllocation(job=job, device=device, start=job.started_at, fraction=fraction) for device, fraction in new]
    )
    added = [device.pk for device, _ in new]
    _mark_dirty(device_ids=added, start=job.started_at)
    return JobRegistration(job=job, created=created, added_device_ids=added, allocations=allocations)


@transaction.atomic
def job_update(
    *,
    job: Job,
    allocation: list[AllocationSpec] | None = None,
    effective_at: dt.datetime | None = None,
    name: str | None = None,
    requested_s: float | None = None,
    model_meta: dict[str, Any] | None = None,
    power_cap_w: float | None = None,
    units: dict[str, float] | None = None,
    primary_unit: str | None = None,
    quality_metric: str | None = None,
    quality_value: float | None = None,
) -> Job:
    """Change a job's metadata, functional units or allocation.

    ``allocation`` is the complete set the job holds from ``effective_at`` (default now) on:
    devices no longer named are released at that instant, new ones are held from it.
    ``model_meta`` and ``units`` merge key by key into what is stored.
    """
    job = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
    if allocation is not None:
        _allocation_replace(job=job, allocation=allocation, effective_at=effective_at or timezone.now())
    if name is not None:
        job.name = name
    if requested_s is not None:
        job.requested_s = requested_s
    if model_meta:
        job.model_meta = {**job.model_meta, **model_meta}
    if power_cap_w is not None:
        job.power_cap_w = power_cap_w
    if units:
        job.units = {**job.units, **units}
    if primary_unit is not None:
        job.primary_unit = primary_unit
    if quality_metric is not None:
        job.quality_metric = quality_metric
    if quality_value is not None:
        job.quality_value = quality_value
    job.save()
    return job


def _allocation_replace(*, job: Job, allocation: list[AllocationSpec], effective_at: dt.datetime) -> None:
    if job.status in ENDED_STATUSES:
        raise JobStateError(f"job {job.scheduler_job_id} has ended; its allocation can no longer change")
    if effective_at < job.started_at:
        raise JobInputError("effective_at", "must not be before the job's started_at")
    open_allocations = {a.device_id: a for a in job.allocations.filter(end__isnull=True)}
    latest_start = max((a.start for a in open_allocations.values()), default=job.started_at)
    if effective_at < latest_start:
        raise JobInputError("effective_at", "must not be before the start of the job's current allocation")
    desired = dict(
        (device.pk, (device, fraction))
        for device, fraction in allocation_devices_resolve(cluster=job.cluster, allocation=allocation)
    )
    released = [a for device_id, a in open_allocations.items() if device_id not in desired]
    for held in released:
        if held.start >= effective_at:
            held.delete()  # held for no time at all
        else:
            held.end = effective_at
            held.save(update_fields=["end"])
    added = [(device, fraction) for device_id, (device, fraction) in desired.items()
             if device_id not in open_allocations]
    JobAllocation.objects.bulk_create(
        [JobAllocation(job=job, device=device, start=effective_at, fraction=fraction) for device, fraction in added]
    )
    _mark_dirty(device_ids=[a.device_id for a in released] + [d.pk for d, _ in added], start=effective_at)


def _job_lock(job: Job) -> Job:
    """The job's row, re-read under a row lock (``SELECT ... FOR NO KEY UPDATE``). Its team and cluster
    are taken over from ``job`` when loaded there (they are never changed by a job update)."""
    locked = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
    for name in ("team", "cluster"):
        related = Job._meta.get_field(name)
        assert isinstance(related, ForeignKey)
        if related.is_cached(job) and getattr(locked, f"{name}_id") == getattr(job, f"{name}_id"):
            related.set_cached_value(locked, related.get_cached_value(job))
    return locked


_JOB_END_SQL = """
WITH past_end AS (
    SELECT id, device_id, start FROM {allocations}
    WHERE job_id = %(job)s AND ("end" IS NULL OR "end" > %(ended)s)
), never_held AS (
    DELETE FROM {allocations} a USING past_end p WHERE a.id = p.id AND p.start >= %(ended)s
), clipped AS (
    UPDATE {allocations} a SET "end" = %(ended)s FROM past_end p WHERE a.id = p.id AND p.start < %(ended)s
), ended_job AS (
    UPDATE {jobs} SET status = %(status)s, ended_at = %(ended)s, updated_at = %(now)s WHERE id = %(job)s
)
SELECT a.device_id, p.id IS NOT NULL, p.start >= %(ended)s,
       {allocation_columns}, d.uuid, d.index, d.host_id, h.hostname
FROM {allocations} a
JOIN {devices} d ON d.id = a.device_id
JOIN {hosts} h ON h.id = d.host_id
LEFT JOIN past_end p ON p.id = a.id
WHERE a.job_id = %(job)s
ORDER BY a.start, h.hostname, d.index
"""


def _job_end_write(*, job: Job, status: str, ended: dt.datetime) -> tuple[list[int], list[JobAllocation]]:
    """Store the end in one statement: allocations held past ``ended`` (open, or closed later
    by an update) are clipped to it, or dropped when held only from ``ended`` on, and the
    job's status, ended_at and updated_at are set (on ``job`` too). Returns the devices of the
    allocations clipped or dropped, and the job's allocations as they are now (devices with
    uuid, index and hostname loaded), in the order the API shows them."""
    columns = [f.attname for f in JobAllocation._meta.concrete_fields]
    sql = _JOB_END_SQL.format(
        allocations=JobAllocation._meta.db_table, jobs=Job._meta.db_table, devices=Device._meta.db_table,
        hosts=Host._meta.db_table, allocation_columns=", ".join(f'a."{c}"' for c in columns),
    )
    now = timezone.now()
    db = router.db_for_write(Job)
    touched: list[int] = []
    allocations: list[JobAllocation] = []
    with connections[db].cursor() as cursor:
        cursor.execute(sql, {"job": job.pk, "ended": ended, "status": status, "now": now})
        rows = cursor.fetchall()
    for device_id, held_past, dropped, *rest in rows:
        if held_past:
            touched.append(device_id)
            if dropped:
                continue
        allocation = model_from_row(JobAllocation, db=db, values=list(rest[: len(columns)]))
        if held_past:
            allocation.end = ended
        uuid, index_, host_id, hostname = rest[len(columns):]
        # field names in the model's order
        device = Device.from_db(db, ["id", "host_id", "uuid", "index"], [device_id, host_id, uuid, index_])
        device.host = Host.from_db(db, ["id", "hostname"], [host_id, hostname])
        allocation.device = device
        allocations.append(allocation)
    job.status, job.ended_at, job.updated_at = status, ended, now
    return touched, allocations


@transaction.atomic(savepoint=False)
def _job_end_locked(*, job: Job, status: str, ended_at: dt.datetime | None) -> tuple[Job, bool]:
    if job.status in ENDED_STATUSES:
        return job, False
    ended = ended_at or timezone.now()
    if ended < job.started_at:
        raise JobInputError("ended_at", "must not be before the job's started_at")
    touched, allocations = _job_end_write(job=job, status=status, ended=ended)
    from accounting.services.ledger import job_footprint_finalize

    # Lock order (docs/reliability.md): the rollup lock before any batch row, as the worker's
    # rollup takes them. Marking batches dirty first and then waiting for the rollup lock
    # deadlocked against a rollup that held it and waited for those batch rows. The footprint
    # does not depend on the batches being marked: their re-attribution rolls it up again.
    job_footprint_finalize(job_id=job.pk)
    _mark_dirty(device_ids=touched, start=ended)
    # As prefetch_related_objects stores a list (the API shows them without reading them back).
    shown = job.allocations.all()
    shown._result_cache = allocations
    shown._prefetch_done = True  # type: ignore[attr-defined]
    job.__dict__.setdefault("_prefetched_objects_cache", {})["allocations"] = shown
    return job, True


def job_end(
    *, job: Job, status: str, ended_at: dt.datetime | None = None, locked: bool = False
) -> tuple[Job, bool]:
    """End a job: close its allocations at ``ended_at`` and finalise its footprint.

    Idempotent: ending an ended job changes nothing (the first end wins) and returns
    ``(job, False)``. ``locked``: the caller has read ``job`` with ``SELECT ... FOR UPDATE``
    in its current transaction (no second read; errors then abort that transaction). The
    ended job comes back with its allocations, as they are now, loaded."""
    if status not in ENDED_STATUSES:
        raise JobInputError("exit_state", f"must be one of {', '.join(ENDED_STATUSES)}")
    if locked:
        if not transaction.get_connection(router.db_for_write(Job)).in_atomic_block:
            raise RuntimeError("job_end(locked=True) needs the caller's transaction that holds the row lock")
        return _job_end_locked(job=job, status=status, ended_at=ended_at)
    with transaction.atomic():
        return _job_end_locked(job=_job_lock(job), status=status, ended_at=ended_at)


@transaction.atomic
def job_units_report(
    *,
    job: Job,
    units: dict[str, float],
    mode: str = "set",
    primary_unit: str | None = None,
    quality_metric: str | None = None,
    quality_value: float | None = None,
) -> Job:
    """Record functional units reported by the job itself.

    ``mode="set"`` stores cumulative totals (safe to retry: a repeated report changes
    nothing); ``mode="add"`` adds increments under a row lock so concurrent reports of a
    multi-process job are not lost."""
    if mode not in ("set", "add"):
        raise JobInputError("mode", "must be 'set' or 'add'")
    job = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
    merged = dict(job.units)
    for unit, count in units.items():
        merged[unit] = (float(merged.get(unit, 0.0)) + count) if mode == "add" else count
    job.units = merged
    if primary_unit is not None:
        job.primary_unit = primary_unit
    elif not job.primary_unit and len(merged) == 1:
        job.primary_unit = next(iter(merged))
    if quality_metric is not None:
        job.quality_metric = quality_metric
    if quality_value is not None:
        job.quality_value = quality_value
    job.save(update_fields=["units", "primary_unit", "quality_metric", "quality_value", "updated_at"])
    return job
