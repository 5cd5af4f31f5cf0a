"""Reads of jobs and their footprints, always through the principal's visibility rule.

Every read starts from ``accounting.selectors.access`` (``jobs_visible`` or, for one job,
``job_get`` with the same rule as SQL): a principal never sees a row outside its scope, and a
lookup outside it is a 404 (not a 403) so ids of other tenants leak nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.db.models import Model, Prefetch, QuerySet, prefetch_related_objects

from accounting.models import ApiToken, Cluster, Job, JobAllocation, JobFootprint, Organization, Team
from accounting.selectors.access import Principal, jobs_visible
from accounting.selectors.job_filters import JobFilters, job_filter_apply

MAX_DB_INT = 2**63 - 1
ModelT = TypeVar("ModelT", bound=Model)


def job_list(*, visible: QuerySet[Job], filters: JobFilters) -> QuerySet[Job]:
    jobs = job_filter_apply(jobs=visible, filters=filters)
    return job_with_relations(jobs=jobs).order_by("-started_at", "-id")


def job_with_relations(*, jobs: QuerySet[Job]) -> QuerySet[Job]:
    allocations = Prefetch("allocations", queryset=_allocations_shown())
    return jobs.select_related("team", "cluster").prefetch_related(allocations)


def job_with_allocations(
    *, job: Job, allocations: list[JobAllocation] | None = None, allocations_sorted: bool = False
) -> Job:
    """The job with its allocations (devices, hosts) loaded in one query, as shown by the API.

    ``allocations``: the job's complete allocation list when the caller holds it already (a
    job it has just created, devices and hosts loaded); it is shown without reading it back
    when ``allocations_sorted`` (the database returned it in the shown order) or its order is
    unambiguous in Python (one host, distinct start and index), else read back."""
    job = (
        Job.objects.select_related("team", "cluster").get(pk=job.pk)
        if ("team" not in job._state.fields_cache or "cluster" not in job._state.fields_cache)
        else job
    )
    if hasattr(job, "_prefetched_objects_cache"):
        job._prefetched_objects_cache.pop("allocations", None)
    if allocations is None:
        ordered = None
    else:
        ordered = list(allocations) if allocations_sorted else _in_shown_order(allocations)
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


def job_get_visible(
    *,
    visible: QuerySet[Job],
    job_id: int | None = None,
    scheduler_job_id: str | None = None,
    cluster_id: int | None = None,
    with_footprint: bool = True,
) -> Job | None:
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


_CONVERTERS: dict[tuple[type[Model], str], list[tuple[int, Any, list]]] = {}


def model_from_row(model: type[ModelT], *, db: str, values: list) -> ModelT:
    """An instance of ``model`` from a raw row of all its concrete columns in field order,
    with the conversions the ORM applies to them (e.g. JSON decoding). For hot paths whose
    one raw query joins several tables; the converters are looked up once per model."""
    connection = connections[db]
    key = (model, connection.alias)
    converters = _CONVERTERS.get(key)
    if converters is None:
        converters = []
        for index, concrete in enumerate(model._meta.concrete_fields):
            col = concrete.get_col(model._meta.db_table)
            funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if funcs:
                converters.append((index, col, funcs))
        _CONVERTERS[key] = converters
    for index, col, funcs in converters:
        for func in funcs:
            values[index] = func(values[index], col, connection)
    return model.from_db(db, _columns(model), values)


def team_user_cluster_get(
    *, org_id: int, team_slug: str, username: str, cluster_id: int | None
) -> tuple[Team | None, Any, Cluster | None]:
    """The team (with its organisation) of ``org_id`` named ``team_slug``, the user named
    ``username`` and the cluster ``cluster_id``, each ``None`` when missing: one raw query
    (three ORM lookups cost several times its round trip on every registration)."""
    user_model = get_user_model()
    models: list[tuple[type[Model], str]] = [(Team, "t"), (Organization, "o"), (user_model, "u"), (Cluster, "c")]
    columns = {model: _columns(model) for model, _ in models}
    select = ", ".join(f'{alias}."{f.column}"' for model, alias in models for f in model._meta.concrete_fields)
    sql = (
        f"SELECT {select} FROM (SELECT 1) one "
        f"LEFT JOIN {Team._meta.db_table} t ON t.org_id = %s AND t.slug = %s "
        f"LEFT JOIN {Organization._meta.db_table} o ON o.id = t.org_id "
        f"LEFT JOIN {user_model._meta.db_table} u ON u.{user_model.USERNAME_FIELD} = %s "
        f"LEFT JOIN {Cluster._meta.db_table} c ON c.id = %s"
    )
    db = router.db_for_read(Team)
    with connections[db].cursor() as cursor:
        cursor.execute(sql, [org_id, team_slug, username or None, cluster_id])
        row = list(cursor.fetchone())
    found: dict[type[Model], Any] = {}
    offset = 0
    for model, _alias in models:
        values = row[offset : offset + len(columns[model])]
        offset += len(columns[model])
        found[model] = None if values[0] is None else model_from_row(model, db=db, values=values)  # [0]: the pk
    team = found[Team]
    if team is not None:
        team.org = found[Organization]
    return team, found[user_model], found[Cluster]


def job_get(
    *,
    principal: Principal,
    job_id: int | None = None,
    scheduler_job_id: str | None = None,
    cluster_id: int | None = None,
    with_footprint: bool = True,
    for_update: bool = False,
) -> Job | None:
    """``job_get_visible`` over ``jobs_visible(principal=principal)``: the visible job, its
    team, cluster and (``with_footprint``) footprint joined. ``for_update``: read with
    ``SELECT ... FOR UPDATE`` of the job's row only (call it inside a transaction).

    Admin and scheduler tokens (the writers, and most readers) take one raw query whose WHERE
    is the principal's rule as SQL (``Principal.jobs_where_sql``): building the ORM query cost
    more than running it. Any other principal goes through the queryset."""
    if job_id is not None and not 0 < job_id <= MAX_DB_INT:
        return None
    if job_id is None and (scheduler_job_id is None or cluster_id is None or not 0 < cluster_id <= MAX_DB_INT):
        return None
    if not (principal.via_token and principal.scope in (ApiToken.Scope.ADMIN, ApiToken.Scope.SCHEDULER)):
        jobs = jobs_visible(principal=principal)
        if for_update:
            jobs = jobs.select_for_update(of=("self",), no_key=True)
        return job_get_visible(
            visible=jobs,
            job_id=job_id,
            scheduler_job_id=scheduler_job_id,
            cluster_id=cluster_id,
            with_footprint=with_footprint,
        )
    visible_sql, params = principal.jobs_where_sql("j")
    where = [visible_sql]
    if job_id is not None:
        where.append("j.id = %s")
        params.append(job_id)
    else:
        where.append("j.cluster_id = %s AND j.scheduler_job_id = %s")
        params += [cluster_id, scheduler_job_id]
    joined: list[tuple[type[Model], str]] = [(Job, "j"), (Team, "t"), (Cluster, "c")]
    if with_footprint:
        joined.append((JobFootprint, "f"))
    select = ", ".join(f'{alias}."{f.column}"' for model, alias in joined for f in model._meta.concrete_fields)
    footprint_join = f"LEFT JOIN {JobFootprint._meta.db_table} f ON f.job_id = j.id " if with_footprint else ""
    db = router.db_for_write(Job) if for_update else router.db_for_read(Job)
    sql = (
        f"SELECT {select} FROM {Job._meta.db_table} j "
        f"JOIN {Team._meta.db_table} t ON t.id = j.team_id JOIN {Cluster._meta.db_table} c ON c.id = j.cluster_id "
        f"{footprint_join}WHERE {' AND '.join(where)} LIMIT 1{' FOR NO KEY UPDATE OF j' if for_update else ''}"
    )
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    found: dict[type[Model], Any] = {}
    offset = 0
    for model, _alias in joined:
        width = len(model._meta.concrete_fields)
        values = list(row[offset : offset + width])
        offset += width
        found[model] = None if values[0] is None else model_from_row(model, db=db, values=values)  # [0]: the pk
    job = found[Job]
    job.team, job.cluster = found[Team], found[Cluster]
    if with_footprint:  # cached as select_related("footprint") does, a missing one included
        footprint = found[JobFootprint]
        Job.footprint.related.set_cached_value(job, footprint)
        if footprint is not None:
            JobFootprint._meta.get_field("job").set_cached_value(footprint, job)
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
    # GPU energy by what its readings covered (docs/method.md §2): the GPU alone, with its memory,
    # a superchip module with its CPU and memory.
    covers_gpu_energy_j: float = 0.0
    covers_gpu_memory_energy_j: float = 0.0
    covers_gpu_cpu_memory_energy_j: float = 0.0
    efficiency: list[UnitEfficiency] = field(default_factory=list)
    sci_g_per_unit: float | None = None
    scope2: Any = None  # accounting.selectors.disclosure.JobMarketWater, on request

    @property
    def co2e_g(self) -> float:
        return self.co2e_operational_g + self.co2e_embodied_g

    @property
    def gpu_active_energy_j(self) -> float:
        return max(self.gpu_energy_j - self.gpu_idle_energy_j, 0.0)

    @property
    def covers_unrecorded_energy_j(self) -> float:
        """GPU energy of ledger entries written before their coverage was recorded."""
        recorded = self.covers_gpu_energy_j + self.covers_gpu_memory_energy_j + self.covers_gpu_cpu_memory_energy_j
        return max(self.gpu_energy_j - recorded, 0.0)


def job_footprint_get(*, job: Job) -> JobFootprintView:
    """The job's JobFootprint (zeros while the first telemetry is not attributed yet)."""
    try:
        fp: JobFootprint | None = job.footprint
    except JobFootprint.DoesNotExist:
        fp = None
    values: dict[str, Any] = {
        name: (getattr(fp, name) if fp is not None else 0.0)
        for name in (
            "energy_j",
            "gpu_energy_j",
            "gpu_idle_energy_j",
            "host_energy_j",
            "facility_energy_j",
            "co2e_operational_g",
            "co2e_embodied_g",
            "co2e_low_g",
            "co2e_high_g",
            "device_hours",
            "measured_fraction",
            "covers_gpu_energy_j",
            "covers_gpu_memory_energy_j",
            "covers_gpu_cpu_memory_energy_j",
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
