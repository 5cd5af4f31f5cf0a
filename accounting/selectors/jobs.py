"""Reads of jobs and their footprints, always through a visibility queryset.

Every API read starts from ``job_visible_queryset``: a token never sees a row outside its
scope, and a lookup outside it is a 404 (not a 403) so ids of other tenants leak nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router
from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects

from accounting.models import ApiToken, Cluster, Job, JobAllocation, JobFootprint, Membership, Team

MAX_DB_INT = 2**63 - 1


def _membership_filter(*, user, org_id: int | None, prefix: str) -> Q:
    """Q over objects with ``<prefix>org`` / ``<prefix>team`` visible to ``user``'s memberships."""
    memberships = Membership.objects.filter(user=user)
    if org_id is not None:
        memberships = memberships.filter(org_id=org_id)
    admin_orgs = list(
        memberships.filter(role=Membership.Role.ADMIN, team__isnull=True).values_list("org_id", flat=True)
    )
    team_ids = list(memberships.filter(team__isnull=False).values_list("team_id", flat=True))
    return Q(**{f"{prefix}org_id__in": admin_orgs}) | Q(**{f"{prefix}team_id__in": team_ids})


def job_visible_queryset(*, token: ApiToken | None, user) -> QuerySet[Job]:
    jobs = Job.objects.all()
    if token is None:
        if user is None or not user.is_authenticated:
            return jobs.none()
        if user.is_superuser:
            return jobs
        return jobs.filter(_membership_filter(user=user, org_id=None, prefix=""))
    if token.scope == ApiToken.Scope.ADMIN:
        return jobs.filter(org_id=token.org_id)
    if token.scope == ApiToken.Scope.SCHEDULER and token.cluster_id is not None:
        return jobs.filter(cluster_id=token.cluster_id, org_id=token.org_id)
    if token.scope == ApiToken.Scope.USER and token.user_id is not None:
        return jobs.filter(org_id=token.org_id).filter(
            _membership_filter(user=token.user, org_id=token.org_id, prefix="")
        )
    return jobs.none()


def team_visible_queryset(*, token: ApiToken | None, user) -> QuerySet[Team]:
    """Teams a principal may read (budgets) or check a job against.

    Schedulers submit jobs for any team of their organisation, so they see all its teams."""
    teams = Team.objects.all()
    if token is None:
        if user is None or not user.is_authenticated:
            return teams.none()
        if user.is_superuser:
            return teams
        memberships = Membership.objects.filter(user=user)
        admin_orgs = memberships.filter(role=Membership.Role.ADMIN, team__isnull=True).values_list("org_id")
        return teams.filter(Q(org_id__in=admin_orgs) | Q(id__in=memberships.values_list("team_id")))
    if token.scope in (ApiToken.Scope.ADMIN, ApiToken.Scope.SCHEDULER):
        return teams.filter(org_id=token.org_id)
    if token.scope == ApiToken.Scope.USER and token.user_id is not None:
        memberships = Membership.objects.filter(user_id=token.user_id, org_id=token.org_id)
        if memberships.filter(role=Membership.Role.ADMIN, team__isnull=True).exists():
            return teams.filter(org_id=token.org_id)
        return teams.filter(id__in=memberships.values_list("team_id"))
    return teams.none()


def cluster_visible_queryset(*, token: ApiToken | None, user) -> QuerySet[Cluster]:
    clusters = Cluster.objects.select_related("site", "site__zone")
    if token is None:
        if user is None or not user.is_authenticated:
            return clusters.none()
        if user.is_superuser:
            return clusters
        return clusters.filter(site__org_id__in=Membership.objects.filter(user=user).values_list("org_id"))
    if token.scope == ApiToken.Scope.HOST:
        return clusters.none()
    return clusters.filter(site__org_id=token.org_id)


@dataclass(frozen=True)
class JobFilters:
    team: str | None = None
    status: str | None = None
    family: str | None = None
    kind: str | None = None
    user: str | None = None
    cluster: int | None = None
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None


def job_list(*, visible: QuerySet[Job], filters: JobFilters) -> QuerySet[Job]:
    jobs = visible
    if filters.team:
        jobs = jobs.filter(team__slug=filters.team)
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.family:
        jobs = jobs.filter(family=filters.family)
    if filters.kind:
        jobs = jobs.filter(kind=filters.kind)
    if filters.user:
        jobs = jobs.filter(Q(username=filters.user) | Q(user__username=filters.user))
    if filters.cluster is not None:
        jobs = jobs.filter(cluster_id=filters.cluster)
    if filters.started_after is not None:
        jobs = jobs.filter(started_at__gte=filters.started_after)
    if filters.started_before is not None:
        jobs = jobs.filter(started_at__lt=filters.started_before)
    return job_with_relations(jobs=jobs).order_by("-started_at", "-id")


def job_with_relations(*, jobs: QuerySet[Job]) -> QuerySet[Job]:
    allocations = Prefetch("allocations", queryset=_allocations_shown())
    return jobs.select_related("team", "cluster").prefetch_related(allocations)


def job_with_allocations(*, job: Job, allocations: list[JobAllocation] | None = None) -> Job:
    """The job with its allocations (devices, hosts) loaded in one query, as shown by the API.

    ``allocations``: the job's complete allocation list when the caller holds it already (a
    job it has just created, devices and hosts loaded); it is shown without reading it back
    when its order is unambiguous (one host, distinct start and index), else read back."""
    job = Job.objects.select_related("team", "cluster").get(pk=job.pk) if (
        "team" not in job._state.fields_cache or "cluster" not in job._state.fields_cache
    ) else job
    if hasattr(job, "_prefetched_objects_cache"):
        job._prefetched_objects_cache.pop("allocations", None)
    ordered = _in_shown_order(allocations) if allocations is not None else None
    if ordered is not None:
        # As prefetch_related_objects stores a prefetched list: a queryset with its result cache set.
        shown = job.allocations.all()
        shown._result_cache = ordered
        shown._prefetch_done = True  # type: ignore[attr-defined]
        job.__dict__.setdefault("_prefetched_objects_cache", {})["allocations"] = shown
        return job
    prefetch_related_objects([job], Prefetch("allocations", queryset=_allocations_shown()))
    return job


def _in_shown_order(allocations: list[JobAllocation]) -> list[JobAllocation] | None:
    """``allocations`` in ``_allocations_shown`` order when Python can sort them exactly as
    PostgreSQL would (hostnames compare under the database collation: only one host)."""
    if len({a.device.host_id for a in allocations}) > 1:
        return None
    keys = [(a.start, a.device.index) for a in allocations]
    if len(set(keys)) != len(keys):
        return None
    return sorted(allocations, key=lambda a: (a.start, a.device.index))


def _allocations_shown() -> QuerySet[JobAllocation]:
    return JobAllocation.objects.select_related("device__host").order_by(
        "start", "device__host__hostname", "device__index"
    )


def job_get_visible(*, visible: QuerySet[Job], job_id: int | None = None, scheduler_job_id: str | None = None,
                    cluster_id: int | None = None, with_footprint: bool = True) -> Job | None:
    """One visible job by internal id, or by the scheduler's id within a cluster (one query:
    its team, cluster and, unless not wanted, footprint come joined; allocations are loaded
    when shown)."""
    jobs = visible.select_related("team", "cluster", *(("footprint",) if with_footprint else ()))
    if job_id is not None:
        if not 0 < job_id <= MAX_DB_INT:
            return None
        return jobs.filter(pk=job_id).first()
    if scheduler_job_id is None or cluster_id is None or not 0 < cluster_id <= MAX_DB_INT:
        return None
    return jobs.filter(cluster_id=cluster_id, scheduler_job_id=scheduler_job_id).first()


def _columns(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def job_get_for_update(*, token: ApiToken | None, user, job_id: int | None = None,
                       scheduler_job_id: str | None = None, cluster_id: int | None = None) -> Job | None:
    """``job_get_visible`` for a write: the visible job read with ``SELECT ... FOR UPDATE`` (of
    the job's row only; call it inside a transaction), its team and cluster joined.

    Admin and scheduler tokens (the writers) take one raw query with the same visibility as
    ``job_visible_queryset``; any other principal goes through that queryset."""
    if job_id is not None and not 0 < job_id <= MAX_DB_INT:
        return None
    if job_id is None and (scheduler_job_id is None or cluster_id is None or not 0 < cluster_id <= MAX_DB_INT):
        return None
    if token is None or token.scope not in (ApiToken.Scope.ADMIN, ApiToken.Scope.SCHEDULER):
        jobs = job_visible_queryset(token=token, user=user).select_for_update(of=("self",))
        jobs = jobs.select_related("team", "cluster")
        if job_id is not None:
            return jobs.filter(pk=job_id).first()
        assert cluster_id is not None
        return jobs.filter(cluster_id=cluster_id, scheduler_job_id=scheduler_job_id).first()
    if token.scope == ApiToken.Scope.SCHEDULER and token.cluster_id is None:
        return None
    where = ["j.org_id = %s"]
    params: list[Any] = [token.org_id]
    if token.scope == ApiToken.Scope.SCHEDULER:
        where.append("j.cluster_id = %s")
        params.append(token.cluster_id)
    if job_id is not None:
        where.append("j.id = %s")
        params.append(job_id)
    else:
        where.append("j.cluster_id = %s AND j.scheduler_job_id = %s")
        params += [cluster_id, scheduler_job_id]
    job_cols, team_cols, cluster_cols = _columns(Job), _columns(Team), _columns(Cluster)
    select = ", ".join(
        [f'j."{c}"' for c in job_cols] + [f't."{c}"' for c in team_cols] + [f'c."{c}"' for c in cluster_cols]
    )
    db = router.db_for_write(Job)
    sql = (
        f"SELECT {select} FROM {Job._meta.db_table} j "
        f"JOIN {Team._meta.db_table} t ON t.id = j.team_id JOIN {Cluster._meta.db_table} c ON c.id = j.cluster_id "
        f"WHERE {' AND '.join(where)} LIMIT 1 FOR UPDATE OF j"
    )
    connection = connections[db]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, concrete in enumerate(Job._meta.concrete_fields):  # e.g. JSON decoding
        col = concrete.get_col(Job._meta.db_table)
        for func in connection.ops.get_db_converters(col) + col.get_db_converters(connection):
            values[index] = func(values[index], col, connection)
    job = Job.from_db(db, job_cols, values[: len(job_cols)])
    job.team = Team.from_db(db, team_cols, values[len(job_cols): len(job_cols) + len(team_cols)])
    job.cluster = Cluster.from_db(db, cluster_cols, values[len(job_cols) + len(team_cols):])
    return job


@dataclass(frozen=True)
class UnitEfficiency:
    unit: str
    count: float
    energy_j_per_unit: float
    co2e_g_per_unit: float


@dataclass(frozen=True)
class JobFootprintView:
    """A job's footprint as the API shows it (live or final), with per-unit efficiency."""

    job: Job
    has_ledger: bool
    is_final: bool
    method_version: str
    energy_j: float
    gpu_energy_j: float
    gpu_idle_energy_j: float
    host_energy_j: float
    facility_energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float
    co2e_low_g: float
    co2e_high_g: float
    device_hours: float
    measured_fraction: float
    last_window_end: dt.datetime | None
    updated_at: dt.datetime | None
    efficiency: list[UnitEfficiency] = field(default_factory=list)
    sci_g_per_unit: float | None = None

    @property
    def co2e_g(self) -> float:
        return self.co2e_operational_g + self.co2e_embodied_g

    @property
    def gpu_active_energy_j(self) -> float:
        return max(self.gpu_energy_j - self.gpu_idle_energy_j, 0.0)


def job_footprint_get(*, job: Job) -> JobFootprintView:
    """The job's JobFootprint (zeros while the first telemetry is not attributed yet)."""
    try:
        fp: JobFootprint | None = job.footprint
    except JobFootprint.DoesNotExist:
        fp = None
    values: dict[str, Any] = {
        name: (getattr(fp, name) if fp is not None else 0.0)
        for name in (
            "energy_j", "gpu_energy_j", "gpu_idle_energy_j", "host_energy_j", "facility_energy_j",
            "co2e_operational_g", "co2e_embodied_g", "co2e_low_g", "co2e_high_g", "device_hours",
            "measured_fraction",
        )
    }
    co2e_g = values["co2e_operational_g"] + values["co2e_embodied_g"]
    efficiency: list[UnitEfficiency] = []
    for unit, count in sorted((job.units or {}).items()):
        if isinstance(count, (int, float)) and not isinstance(count, bool) and count > 0:
            efficiency.append(
                UnitEfficiency(
                    unit=unit,
                    count=float(count),
                    energy_j_per_unit=values["energy_j"] / count,
                    co2e_g_per_unit=co2e_g / count,
                )
            )
    sci = next((e.co2e_g_per_unit for e in efficiency if e.unit == job.primary_unit), None)
    return JobFootprintView(
        job=job,
        has_ledger=fp is not None,
        is_final=bool(fp is not None and fp.is_final),
        method_version=fp.method_version if fp is not None else "",
        last_window_end=fp.last_window_end if fp is not None else None,
        updated_at=fp.updated_at if fp is not None else None,
        efficiency=efficiency,
        sci_g_per_unit=sci,
        **values,
    )
