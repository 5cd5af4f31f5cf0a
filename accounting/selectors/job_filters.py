"""The one job-filter type, shared by the API's job list and the dashboard's job list/export.

Parsing stays with each caller (the API's ``JobListQuerySerializer``, the dashboard's
``JobFilterForm``); both build a :class:`JobFilters` and :func:`job_filter_apply` turns it
into a queryset filter. Empty values ("" or None) filter nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import InitVar, dataclass

from django.db.models import Q, QuerySet

from accounting.models import Job, JobAllocation


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


@dataclass(frozen=True)
class JobFilters:
    team: str | None = None  # team slug (API)
    team_id: int | None = None  # (dashboard)
    status: str | None = None
    family: str | None = None
    kind: str | None = None
    user: str | None = None  # the scheduler's username or the account's username (API)
    username: str | None = None  # the scheduler's username only (dashboard)
    cluster: int | None = None
    device_model: str | None = None  # HardwareModel.key of any device the job was allocated
    started_after: dt.datetime | None = None  # started_at >= this
    started_before: dt.datetime | None = None  # started_at < this
    q: str | None = None  # name contains (case-insensitive), or the exact scheduler job id
    # The dashboard's form gives UTC days: ``start`` is the first, ``end`` the exclusive last.
    start: InitVar[dt.date | None] = None
    end: InitVar[dt.date | None] = None

    def __post_init__(self, start: dt.date | None, end: dt.date | None) -> None:
        if start is not None:
            if self.started_after is not None:
                raise ValueError("give start or started_after, not both")
            object.__setattr__(self, "started_after", _day_start(start))
        if end is not None:
            if self.started_before is not None:
                raise ValueError("give end or started_before, not both")
            object.__setattr__(self, "started_before", _day_start(end))


def job_filter_apply(*, jobs: QuerySet[Job], filters: JobFilters) -> QuerySet[Job]:
    f = filters
    if f.team:
        jobs = jobs.filter(team__slug=f.team)
    if f.team_id is not None:
        jobs = jobs.filter(team_id=f.team_id)
    if f.status:
        jobs = jobs.filter(status=f.status)
    if f.family:
        jobs = jobs.filter(family=f.family)
    if f.kind:
        jobs = jobs.filter(kind=f.kind)
    if f.user:
        jobs = jobs.filter(Q(username=f.user) | Q(user__username=f.user))
    if f.username:
        jobs = jobs.filter(username=f.username)
    if f.cluster is not None:
        jobs = jobs.filter(cluster_id=f.cluster)
    if f.device_model:
        jobs = jobs.filter(
            id__in=JobAllocation.objects.filter(device__hardware_model__key=f.device_model).values("job_id")
        )
    if f.started_after is not None:
        jobs = jobs.filter(started_at__gte=f.started_after)
    if f.started_before is not None:
        jobs = jobs.filter(started_at__lt=f.started_before)
    if f.q:
        jobs = jobs.filter(Q(name__icontains=f.q) | Q(scheduler_job_id=f.q))
    return jobs
