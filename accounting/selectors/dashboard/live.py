"""The live page: running jobs with what the ledger has attributed to them so far."""

from __future__ import annotations

import datetime as dt
from typing import Any

from accounting.domain.units import kg_from_g as _kg
from accounting.domain.units import kwh_from_j as _kwh
from accounting.models import Job
from accounting.selectors.access import Principal, jobs_visible


def running_job_list(*, scope: Principal, now: dt.datetime, limit: int = 200) -> dict[str, Any]:
    qs = (
        jobs_visible(principal=scope)
        .filter(status=Job.Status.RUNNING)
        .select_related("team", "footprint", "cluster__site")
        .order_by("-started_at", "-id")
    )
    total = qs.count()
    rows: list[dict[str, Any]] = []
    for job in qs[:limit]:
        fp = getattr(job, "footprint", None)
        elapsed_s = max((now - job.started_at).total_seconds(), 0.0)
        covered_s = (fp.last_window_end - job.started_at).total_seconds() if fp and fp.last_window_end else 0.0
        rows.append(
            {
                "id": job.id,
                "scheduler_job_id": job.scheduler_job_id,
                "name": job.name,
                "team": job.team.name,
                "username": job.username,
                "family": job.get_family_display(),
                "kind": job.get_kind_display(),
                "site": job.cluster.site.name,
                "started_at": job.started_at.isoformat(),
                "elapsed_h": round(elapsed_s / 3600, 2),
                "energy_kwh": round(_kwh(fp.energy_j), 3) if fp else 0.0,
                "co2e_kg": round(_kg(fp.co2e_g), 3) if fp else 0.0,
                "avg_power_kw": round(fp.energy_j / covered_s / 1000, 3) if (fp and covered_s > 0) else None,
                "last_window_end": fp.last_window_end.isoformat() if fp and fp.last_window_end else None,
            }
        )
    return {
        "generated_at": now.isoformat(),
        "running": total,
        "shown": len(rows),
        "energy_kwh": round(sum(r["energy_kwh"] for r in rows), 3),
        "co2e_kg": round(sum(r["co2e_kg"] for r in rows), 3),
        "power_kw": round(sum(r["avg_power_kw"] or 0 for r in rows), 3),
        "jobs": rows,
    }
