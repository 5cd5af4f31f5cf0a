"""Job lifecycle writes for schedulers: register (idempotent), update, end, functional units.

Allocation periods are the attribution input: every time one is created, moved or closed,
the telemetry already attributed for the affected devices from that instant on is marked
dirty so the ledger is rebuilt (``work_queue.ledger_mark_dirty``); ending a job also
finalises its footprint (``rollup.job_footprint_finalize``). Which devices an allocation names
is ``allocations``' rule.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router, transaction
from django.db.models import ForeignKey
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

from accounting.domain.errors import InputError, StateError
from accounting.models import Cluster, Device, Host, Job, JobAllocation, Organization, Team
from accounting.selectors.jobs import model_from_row
from accounting.services.allocations import AllocationSpec, allocation_devices_resolve
from accounting.services.rollup import job_footprint_finalize
from accounting.services.work_queue import ledger_mark_dirty

log = logging.getLogger(__name__)

ENDED_STATUSES = (Job.Status.COMPLETED, Job.Status.FAILED, Job.Status.PREEMPTED, Job.Status.CANCELLED)


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


def _mark_dirty(*, device_ids: list[int], start: dt.datetime) -> None:
    if device_ids:
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
        hosts=Host._meta.db_table,
        devices=Device._meta.db_table,
        allocations=JobAllocation._meta.db_table,
        allocation_columns=", ".join(allocation_columns),
        allocation_values=", ".join(allocation_values),
    )
    params = [
        *job_params,
        [host for host, _, _ in items],
        [index for _, index, _ in items],
        [fraction for _, _, fraction in items],
        list(range(len(items))),
        cluster.pk,
        "MIG-%",
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
        device.host = model_from_row(Host, db=db, values=list(columns[len(device_fields) :]))
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
    sluid: str = "",
) -> JobRegistration:
    """Register a job start, idempotent on (cluster, scheduler_job_id).

    Re-registering returns the existing job unchanged except that devices it does not hold
    yet are added: a multi-node Slurm job runs its prolog on every node, each naming its own
    GPUs, so the union is the job's allocation. An ended job is returned as it is.

    ``sluid``: the Slurm 26.05 SLUID of this run (stored as Slurm prints it, ``s`` + upper
    case); the job answers to ``slurm:<SLUID>`` as to ``slurm:<scheduler_job_id>``. A new one
    on re-registration (a requeued run) is added, and the job's devices re-attributed from its
    start: processes seen under it before were nobody's.
    """
    sluid = f"s{sluid[1:].upper()}" if sluid else ""
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
        sluids=[sluid] if sluid else [],
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
        if sluid and sluid not in job.sluids:
            job.sluids = [*job.sluids, sluid]
            job.save(update_fields=["sluids", "updated_at"])
            held_now = job.allocations.filter(end__isnull=True).values_list("device_id", flat=True)
            _mark_dirty(device_ids=list(held_now), start=job.started_at)
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
        raise StateError(f"job {job.scheduler_job_id} has ended; its allocation can no longer change")
    if effective_at < job.started_at:
        raise InputError("effective_at", "must not be before the job's started_at")
    open_allocations = {a.device_id: a for a in job.allocations.filter(end__isnull=True)}
    latest_start = max((a.start for a in open_allocations.values()), default=job.started_at)
    if effective_at < latest_start:
        raise InputError("effective_at", "must not be before the start of the job's current allocation")
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
    added = [
        (device, fraction) for device_id, (device, fraction) in desired.items() if device_id not in open_allocations
    ]
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
        allocations=JobAllocation._meta.db_table,
        jobs=Job._meta.db_table,
        devices=Device._meta.db_table,
        hosts=Host._meta.db_table,
        allocation_columns=", ".join(f'a."{c}"' for c in columns),
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
        uuid, index_, host_id, hostname = rest[len(columns) :]
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
        raise InputError("ended_at", "must not be before the job's started_at")
    touched, allocations = _job_end_write(job=job, status=status, ended=ended)

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


def job_end(*, job: Job, status: str, ended_at: dt.datetime | None = None, locked: bool = False) -> tuple[Job, bool]:
    """End a job: close its allocations at ``ended_at`` and finalise its footprint.

    Idempotent: ending an ended job changes nothing (the first end wins) and returns
    ``(job, False)``. ``locked``: the caller has read ``job`` with ``SELECT ... FOR UPDATE``
    in its current transaction (no second read; errors then abort that transaction). The
    ended job comes back with its allocations, as they are now, loaded."""
    if status not in ENDED_STATUSES:
        raise InputError("exit_state", f"must be one of {', '.join(ENDED_STATUSES)}")
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
        raise InputError("mode", "must be 'set' or 'add'")
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
