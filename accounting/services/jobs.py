"""Job lifecycle writes for schedulers: register (idempotent), update, end, functional units.

Allocation periods are the attribution input: every time one is created, moved or closed,
the telemetry already attributed for the affected devices from that instant on is marked
dirty so the ledger is rebuilt (``ledger_mark_dirty``); ending a job also finalises its
footprint (``job_footprint_finalize``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounting.models import Cluster, Device, Host, Job, JobAllocation, Organization, Team

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


def pending_device_uuid(*, hostname: str, index: int) -> str:
    return f"{PENDING_UUID_PREFIX}{hostname}:{index}"


def _devices_for_indices(*, host: Host, indices: tuple[int, ...], field_name: str) -> list[Device]:
    """The devices at ``indices`` on ``host``; placeholders for those the agent has not reported."""
    found: dict[int, Device] = {}
    for device in (
        Device.objects.filter(host=host, index__in=indices).exclude(uuid__startswith="MIG-").order_by("-id")
    ):
        found[device.index] = device  # the oldest row per index wins (ordered newest first)
    devices = []
    for index in indices:
        known = found.get(index)
        if known is not None:
            devices.append(known)
            continue
        device, _ = Device.objects.get_or_create(
            uuid=pending_device_uuid(hostname=host.hostname, index=index), defaults={"host": host, "index": index}
        )
        if device.host_id != host.pk:
            # The placeholder uuid embeds only the hostname: the same name in two clusters collides.
            raise JobInputError(field_name, f"host {host.hostname!r} has a pending GPU {index} in another cluster")
        devices.append(device)
    return devices


def allocation_devices_resolve(
    *, cluster: Cluster, allocation: list[AllocationSpec], field_prefix: str = "allocation"
) -> list[tuple[Device, float]]:
    """Devices (with the held fraction) named by an allocation, creating hosts and placeholders."""
    resolved: dict[int, tuple[Device, float]] = {}
    for position, spec in enumerate(allocation):
        where = f"{field_prefix}[{position}]"
        if spec.gpu_uuid:
            device = Device.objects.select_related("host").filter(uuid=spec.gpu_uuid).first()
            if device is None or device.host.cluster_id != cluster.pk:
                raise JobInputError(f"{where}.gpu_uuid", f"no GPU {spec.gpu_uuid!r} in cluster {cluster.slug!r}")
            resolved[device.pk] = (device, spec.fraction)
            continue
        assert spec.host is not None
        host, _ = Host.objects.get_or_create(cluster=cluster, hostname=spec.host)
        for device in _devices_for_indices(host=host, indices=spec.gpus, field_name=f"{where}.gpus"):
            resolved[device.pk] = (device, spec.fraction)
    return list(resolved.values())


def _mark_dirty(*, device_ids: list[int], start: dt.datetime) -> None:
    if not device_ids:
        return
    from accounting.services.ledger import ledger_mark_dirty

    ledger_mark_dirty(device_ids=sorted(set(device_ids)), start=start, end=None)


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
    job, created = Job.objects.get_or_create(
        cluster=cluster,
        scheduler_job_id=scheduler_job_id,
        defaults={
            "org": org,
            "team": team,
            "kind": kind,
            "family": family,
            "name": name,
            "user": user,
            "username": username or (user.get_username() if user is not None else ""),
            "started_at": started,
            "requested_s": requested_s,
            "model_meta": model_meta or {},
            "power_cap_w": power_cap_w,
            "status": Job.Status.RUNNING,
        },
    )
    if not created:
        # Concurrent prologs of one job serialise here, so allocations are never duplicated
        # (a job just inserted is already locked by this transaction).
        job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in ENDED_STATUSES or not allocation:
        return JobRegistration(job=job, created=created)
    devices = allocation_devices_resolve(cluster=cluster, allocation=allocation)
    held = set() if created else set(job.allocations.filter(end__isnull=True).values_list("device_id", flat=True))
    new = [(device, fraction) for device, fraction in devices if device.pk not in held]
    JobAllocation.objects.bulk_create(
        [JobAllocation(job=job, device=device, start=job.started_at, fraction=fraction) for device, fraction in new]
    )
    added = [device.pk for device, _ in new]
    _mark_dirty(device_ids=added, start=job.started_at)
    return JobRegistration(job=job, created=created, added_device_ids=added)


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
    job = Job.objects.select_for_update().get(pk=job.pk)
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


@transaction.atomic
def job_end(*, job: Job, status: str, ended_at: dt.datetime | None = None) -> tuple[Job, bool]:
    """End a job: close its allocations at ``ended_at`` and finalise its footprint.

    Idempotent: ending an ended job changes nothing (the first end wins) and returns
    ``(job, False)``."""
    if status not in ENDED_STATUSES:
        raise JobInputError("exit_state", f"must be one of {', '.join(ENDED_STATUSES)}")
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in ENDED_STATUSES:
        return job, False
    ended = ended_at or timezone.now()
    if ended < job.started_at:
        raise JobInputError("ended_at", "must not be before the job's started_at")
    # Held past the end (open, or closed later by an update): clip to ended_at, or drop when
    # held only from ended_at on. Both re-attribute from ended_at.
    past_end = list(
        job.allocations.filter(Q(end__isnull=True) | Q(end__gt=ended)).values_list("pk", "device_id", "start")
    )
    never_held = [pk for pk, _, start in past_end if start >= ended]
    clipped = [pk for pk, _, start in past_end if start < ended]
    if never_held:
        JobAllocation.objects.filter(pk__in=never_held).delete()
    if clipped:
        JobAllocation.objects.filter(pk__in=clipped).update(end=ended)
    touched = [device_id for _, device_id, _ in past_end]
    job.status = status
    job.ended_at = ended
    job.save(update_fields=["status", "ended_at", "updated_at"])
    _mark_dirty(device_ids=touched, start=ended)
    from accounting.services.ledger import job_footprint_finalize

    job_footprint_finalize(job_id=job.pk)
    return job, True


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
    job = Job.objects.select_for_update().get(pk=job.pk)
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
