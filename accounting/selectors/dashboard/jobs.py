"""The jobs list page and its CSV export: filtered, sorted, paged jobs with their footprints."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import F, FloatField, QuerySet
from django.db.models.functions import Coalesce

from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.models import Job, JobAllocation
from accounting.selectors.access import Principal, jobs_visible
from accounting.selectors.dashboard.common import unit_rate
from accounting.selectors.job_filters import JobFilters, job_filter_apply

# The one job-filter type (accounting.selectors.job_filters), under the name the dashboard's
# view still uses: team_id, username, device_model, start/end (UTC days, end exclusive), q.
JobListFilters = JobFilters


SORT_FIELDS = {
    "started": "started_at",
    "name": "name",
    "team": "team__name",
    "status": "status",
    "energy": "energy_j",
    "co2e": "co2e_g",
    "gpu_hours": "device_hours",
}


@dataclass(frozen=True)
class JobRow:
    id: int
    scheduler_job_id: str
    name: str
    team: str
    username: str
    family: str
    kind: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_h: float | None
    device_hours: float
    energy_kwh: float
    co2e_kg: float
    co2e_per_unit_g: float | None
    primary_unit: str
    measured_fraction: float | None
    device_models: str = ""
    # co2e_per_unit_g on the readable multiple the job page uses: 0.205 g per "1k tokens"
    co2e_per_scaled_g: float | None = None
    co2e_per_label: str = ""
    co2e_operational_kg: float = 0.0
    co2e_embodied_kg: float = 0.0
    site: str = ""
    zone: str = ""


@dataclass(frozen=True)
class JobPage:
    rows: list[JobRow]
    total: int
    page: int
    num_pages: int
    page_size: int
    sort: str


def _job_list_qs(*, scope: Principal, filters: JobListFilters, sort: str) -> QuerySet[Job]:
    qs = job_filter_apply(jobs=jobs_visible(principal=scope), filters=filters)
    desc = sort.startswith("-")
    key = SORT_FIELDS.get(sort.lstrip("-"), "started_at")
    qs = qs.annotate(
        energy_j=Coalesce(F("footprint__energy_j"), 0.0, output_field=FloatField()),
        co2e_g=Coalesce(
            F("footprint__co2e_operational_g") + F("footprint__co2e_embodied_g"), 0.0, output_field=FloatField()
        ),
        device_hours=Coalesce(F("footprint__device_hours"), 0.0, output_field=FloatField()),
    )
    # Every sort key is NOT NULL (columns, or coalesced annotations): plain ORDER BY lets the
    # (org, started_at) index serve the default "newest first" page.
    return qs.order_by(f"-{key}" if desc else key, "-id" if desc else "id")


_JOB_VALUES = (
    "id",
    "scheduler_job_id",
    "name",
    "team__name",
    "username",
    "family",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "energy_j",
    "co2e_g",
    "device_hours",
    "units",
    "primary_unit",
    "footprint__measured_fraction",
    "footprint__last_window_end",
    "footprint__co2e_operational_g",
    "footprint__co2e_embodied_g",
    "cluster__site__name",
    "cluster__site__zone__code",
)


def _job_row(r: dict[str, Any], models: str = "") -> JobRow:
    end = r["ended_at"] or r["footprint__last_window_end"]
    duration_h = (end - r["started_at"]).total_seconds() / 3600 if end else None
    units = r["units"] or {}
    primary = r["primary_unit"]
    count = units.get(primary) if primary else None
    per_unit = r["co2e_g"] / count if (count and r["co2e_g"]) else None
    scaled, per_label = unit_rate(per_unit, primary) if per_unit else (None, "")
    return JobRow(
        id=r["id"],
        scheduler_job_id=r["scheduler_job_id"],
        name=r["name"],
        team=r["team__name"],
        username=r["username"],
        family=r["family"],
        kind=r["kind"],
        status=r["status"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        duration_h=duration_h,
        device_hours=r["device_hours"],
        energy_kwh=_kwh(r["energy_j"]),
        co2e_kg=_kg(r["co2e_g"]),
        co2e_per_unit_g=per_unit,
        primary_unit=primary,
        measured_fraction=r["footprint__measured_fraction"],
        device_models=models,
        co2e_per_scaled_g=scaled,
        co2e_per_label=per_label,
        co2e_operational_kg=_kg(r["footprint__co2e_operational_g"] or 0.0),
        co2e_embodied_kg=_kg(r["footprint__co2e_embodied_g"] or 0.0),
        site=r["cluster__site__name"],
        zone=r["cluster__site__zone__code"],
    )


def job_list(
    *, scope: Principal, filters: JobListFilters, sort: str = "-started", page: int = 1, page_size: int = 50
) -> JobPage:
    qs = _job_list_qs(scope=scope, filters=filters, sort=sort)
    total = qs.count()
    num_pages = max(1, math.ceil(total / page_size))
    page = min(max(page, 1), num_pages)
    raw = list(qs.values(*_JOB_VALUES)[(page - 1) * page_size : page * page_size])
    models: dict[int, set[str]] = defaultdict(set)
    if raw:
        for job_id, name in (
            JobAllocation.objects.filter(job_id__in=[r["id"] for r in raw])
            .values_list("job_id", "device__hardware_model__name")
            .distinct()
        ):
            models[job_id].add(name or "Unknown model")
    rows = [_job_row(r, ", ".join(sorted(models.get(r["id"], ())))) for r in raw]
    return JobPage(rows=rows, total=total, page=page, num_pages=num_pages, page_size=page_size, sort=sort)


EXPORT_COLUMNS = (
    "id",
    "scheduler_job_id",
    "name",
    "team",
    "username",
    "family",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "duration_h",
    "device_hours",
    "energy_kwh",
    "co2e_kg",
    "co2e_operational_kg",
    "co2e_embodied_kg",
    "site",
    "zone",
    "co2e_per_unit_g",
    "primary_unit",
    "measured_fraction",
)


def job_export_rows(*, scope: Principal, filters: JobListFilters, sort: str = "-started") -> Iterator[list[Any]]:
    """CSV rows (header first) for every job matching the filters, streamed in chunks."""
    yield list(EXPORT_COLUMNS)
    qs = _job_list_qs(scope=scope, filters=filters, sort=sort).values(*_JOB_VALUES)
    for r in qs.iterator(chunk_size=2000):
        row = _job_row(r)
        yield [
            row.id,
            row.scheduler_job_id,
            row.name,
            row.team,
            row.username,
            row.family,
            row.kind,
            row.status,
            row.started_at.isoformat(),
            row.ended_at.isoformat() if row.ended_at else "",
            "" if row.duration_h is None else round(row.duration_h, 4),
            round(row.device_hours, 4),
            round(row.energy_kwh, 6),
            round(row.co2e_kg, 6),
            round(row.co2e_operational_kg, 6),
            round(row.co2e_embodied_kg, 6),
            row.site,
            row.zone,
            "" if row.co2e_per_unit_g is None else f"{row.co2e_per_unit_g:.6g}",
            row.primary_unit,
            "" if row.measured_fraction is None else round(row.measured_fraction, 4),
        ]


def job_user_option_list(*, scope: Principal, team_id: int | None = None) -> list[str]:
    qs = jobs_visible(principal=scope).exclude(username="")
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return list(qs.order_by("username").values_list("username", flat=True).distinct()[:500])
