"""Allocation resolution: which devices a scheduler's allocation names (creating hosts and
placeholder devices the agents have not reported yet), and the allocations observed from
where the agent sees a job's processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Q

from accounting.domain.attribution.mig import mig_gpu_slices, mig_slice_fraction
from accounting.domain.errors import InputError
from accounting.models import Cluster, Device, Host, Job, JobAllocation

log = logging.getLogger(__name__)

PENDING_UUID_PREFIX = "pending:"


@dataclass(frozen=True)
class AllocationSpec:
    """One allocation item as a scheduler names it: a host and GPU indices, or a GPU UUID."""

    host: str | None = None
    gpus: tuple[int, ...] = ()
    gpu_uuid: str | None = None
    fraction: float = 1.0


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
        Host.objects.bulk_create(
            [Host(cluster=cluster, hostname=name) for name in sorted(missing)], ignore_conflicts=True
        )
        hosts.update((h.hostname, h) for h in Host.objects.filter(cluster=cluster, hostname__in=missing))
    return hosts


def _placeholders_resolve(*, wanted: set[tuple[Host, int]]) -> dict[tuple[int, int], Device]:
    """The device at each (host, GPU index), creating a placeholder where there is none, by
    (host id, index).

    Under the hosts' row locks, the lock ingest takes (to its commit) to register a GPU it reports
    for the first time (``accounting.services.inventory.devices_register``): an agent's first
    batch either committed before (its real device is found here and held) or waits and then
    binds the placeholder created here to its NVML uuid. Without the lock a registration could
    read "no device at index 0" while that batch was creating one, and hold a placeholder nobody
    ever reports on: the job ended at 0 J and its energy went to fleet overhead."""
    host_ids = sorted({host.pk for host, _ in wanted})
    # Locked in id order (as every writer of several hosts does), then read again: the device
    # lookup before ran without the locks.
    list(Host.objects.select_for_update(no_key=True).filter(pk__in=host_ids).order_by("pk").values_list("pk"))
    at: dict[tuple[int, int], Device] = {}
    for device in (
        Device.objects.filter(host_id__in=host_ids, index__in={index for _, index in wanted})
        .exclude(uuid__startswith="MIG-")
        .order_by("-id")
    ):
        at[(device.host_id, device.index)] = device  # the oldest row per index wins, as before
    missing = sorted((host.pk, index) for host, index in wanted if (host.pk, index) not in at)
    # No conflict is possible under the locks: a concurrent registration of the same GPUs waited
    # and, reading again, found the placeholders of the one before it.
    created = Device.objects.bulk_create(
        [
            Device(uuid=pending_device_uuid(host_id=host_id, index=index), host_id=host_id, index=index)
            for host_id, index in missing
        ]
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
                raise InputError(f"{where}.gpu_uuid", f"no GPU {spec.gpu_uuid!r} in cluster {cluster.slug!r}")
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


def allocations_observe(*, sightings: dict[tuple[int, int, str], set[tuple[int, int]]]) -> list[JobAllocation]:
    """Allocations for jobs registered without one, from where the agent saw their processes.

    ``sightings`` are (device id, cluster id, process job key) not matched by any allocation,
    each with the MIG instances (GPU instance id, slices) the key ran on. A job of that cluster
    whose scheduler id is the key's (``k8s:<pod uid>`` -> ``<pod uid>``) and that holds no
    scheduler allocation at all gets the device for its whole life ([started_at, ended_at)):
    Kubernetes' device plugin gives a pod its GPUs (or MIG instances) for the pod's life, and the
    API server never says which (integrations/kubernetes). The fraction is the slices of the
    instances it was seen on over the GPU's slices (``mig_slice_fraction``: a 3g instance of an
    H100 is 3/7), 1 where it was not seen on a MIG instance. A job with a scheduler allocation is
    never extended this way (the scheduler is the source of truth), and a key naming no
    registered job stays unallocated (fleet overhead). Concurrent workers are safe: one observed
    allocation per (job, device), inserts ignore conflicts; the first sighting's fraction stays.
    The caller re-attributes the batches the new allocations cover."""
    wanted: dict[tuple[int, str], dict[int, set[tuple[int, int]]]] = {}
    for (device_id, cluster_id, key), instances in sightings.items():
        prefix, sep, ident = key.partition(":")
        if sep and ident and prefix in OBSERVABLE_KEY_PREFIXES:
            wanted.setdefault((cluster_id, ident), {}).setdefault(device_id, set()).update(instances)
    if not wanted:
        return []
    match = Q()
    for cluster_id, ident in wanted:
        match |= Q(cluster_id=cluster_id, scheduler_job_id=ident)
        if ident[:1] == "s":  # a Slurm SLUID the prolog registered (Job.sluids)
            match |= Q(cluster_id=cluster_id, sluids__contains=[ident])
    jobs = (
        Job.objects.filter(match)
        .exclude(allocations__source=JobAllocation.Source.SCHEDULER)
        .only("pk", "cluster_id", "scheduler_job_id", "sluids", "started_at", "ended_at")
        .distinct()
    )
    mig_devices = sorted({d for devices in wanted.values() for d, instances in devices.items() if instances})
    names = {
        pk: reported or model_name or ""
        for pk, reported, model_name in Device.objects.filter(pk__in=mig_devices).values_list(
            "pk", "reported_name", "hardware_model__name"
        )
    }
    candidates = []
    for job in jobs:
        devices: dict[int, set[tuple[int, int]]] = {}
        for ident in (job.scheduler_job_id, *job.sluids):
            for device_id, instances in wanted.get((job.cluster_id, ident), {}).items():
                devices.setdefault(device_id, set()).update(instances)
        if job.ended_at is not None and job.ended_at <= job.started_at:
            continue
        for device_id in sorted(devices):
            instances = devices[device_id]
            fraction, described = 1.0, ""
            if instances:
                name = names.get(device_id, "")
                fraction = mig_slice_fraction(instances=instances, device_name=name)
                described = "observed on MIG GI {} ({} of {} slices)".format(
                    ", ".join(str(gi) for gi in sorted({gi for gi, _ in instances})),
                    sum(slices for _, slices in sorted(set(instances))),
                    mig_gpu_slices(device_name=name),
                )
            candidates.append(
                JobAllocation(
                    job_id=job.pk,
                    device_id=device_id,
                    start=job.started_at,
                    end=job.ended_at,
                    fraction=fraction,
                    mig_instance=described,
                    source=JobAllocation.Source.OBSERVED,
                )
            )
    if not candidates:
        return []
    existing = set(
        JobAllocation.objects.filter(
            job_id__in={a.job_id for a in candidates},
            source=JobAllocation.Source.OBSERVED,
        ).values_list("job_id", "device_id")
    )
    new = [a for a in candidates if (a.job_id, a.device_id) not in existing]
    JobAllocation.objects.bulk_create(new, ignore_conflicts=True)
    for allocation in new:
        log.info(
            "observed allocation job=%d device=%d fraction=%r from %s",
            allocation.job_id,
            allocation.device_id,
            allocation.fraction,
            allocation.start.isoformat(),
        )
    return new
