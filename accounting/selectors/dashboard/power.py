"""Live power: the raw GPU windows of a job's devices (a young job's trace, a zoom to window
resolution, the job page's live chart) and the fleet's power per minute (the Live page).

These are the only dashboard reads of raw telemetry, through ``telemetry.traces`` (the SQL over
the series is telemetry's). They stay cheap: a bounded time range (``RAW_RANGE_MAX_S``) on the
partitioned GPU series (one row of arrays per batch, device and day), filtered by device and
``first_start_at`` (the partition key) before the arrays are unnested, capped at ``MAX_WINDOWS``
windows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db.models import Q, QuerySet

from accounting.domain.timebase import from_us, to_us
from accounting.domain.units import J_PER_KWH, S_PER_H
from accounting.models import Device, Job, JobAllocation
from accounting.selectors.access import Principal, jobs_visible
from telemetry.traces import device_windows, fleet_power_per_minute

RAW_RANGE_MAX_S = 6 * S_PER_H  # raw windows are served for at most this span
MAX_WINDOWS = 20_000
YOUNG_JOB_S = 2 * S_PER_H  # under this age a running job's trace is drawn from raw windows
FLEET_MINUTES = 60


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_power_get(
    *,
    scope: Principal,
    job_id: int,
    now: dt.datetime,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Raw windows of the job's devices while it held them, in ``[start, end)`` (default: its
    whole run, at most the last ``RAW_RANGE_MAX_S``), with its energy so far, the current
    power and the projected total at that rate. None when the job is not visible."""
    job = jobs_visible(principal=scope).filter(id=job_id).select_related("footprint").first()
    if job is None:
        return None
    fp = getattr(job, "footprint", None)
    job_end = job.ended_at or now
    hi = min(end or job_end, job_end)
    lo = max(start or job.started_at, job.started_at)
    truncated = False
    if (hi - lo).total_seconds() > RAW_RANGE_MAX_S:
        lo, truncated = hi - dt.timedelta(seconds=RAW_RANGE_MAX_S), True
    held: dict[int, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    labels: dict[int, str] = {}
    for a in (
        JobAllocation.objects.filter(job_id=job.id)
        .select_related("device__host")
        .order_by("device__host__hostname", "device__index", "start")
    ):
        held[a.device_id].append((a.start, a.end or job_end))
        labels[a.device_id] = f"{a.device.host.hostname} GPU{a.device.index}"
    rows: list[tuple[int, int, int, float, float]] = []
    if held and hi > lo:
        rows = device_windows(device_ids=sorted(held), start=lo, end=hi, limit=MAX_WINDOWS + 1)
    if len(rows) > MAX_WINDOWS:
        rows, truncated = rows[:MAX_WINDOWS], True
    held_us = {d: [(to_us(a), to_us(b)) for a, b in spans] for d, spans in held.items()}
    series: dict[int, dict[str, list]] = {d: {"t": [], "power_w": [], "util_pct": []} for d in labels}
    latest: dict[int, tuple[int, float]] = {}
    for device_id, start_us, end_us, power_w, util_pct in rows:
        # Midpoint in whole microseconds, as timedelta halves them (rounding half to even).
        mid_us = start_us + round((end_us - start_us) / 2)
        if not any(a <= mid_us < b for a, b in held_us[device_id]):
            continue  # the device, but while another job held it
        s = series[device_id]
        s["t"].append(from_us(end_us).isoformat())
        s["power_w"].append(power_w)
        s["util_pct"].append(util_pct)
        if device_id not in latest or end_us > latest[device_id][0]:
            latest[device_id] = (end_us, power_w)
    total = _step_sum(series)
    # The job's energy so far is the ledger's (GPU, host, facility); the current draw is the GPUs'
    # latest windows scaled by the same total-to-GPU ratio.
    energy_j = fp.energy_j if fp else 0.0
    ratio = (fp.energy_j / fp.gpu_energy_j) if fp and fp.gpu_energy_j > 0 else 1.0
    gpu_w = sum(p for _, p in latest.values()) if latest else None
    current_kw = gpu_w * ratio / 1000 if gpu_w is not None and job.ended_at is None else None
    projected_kwh: float | None = None
    projection_note = ""
    if job.ended_at is not None:
        projected_kwh, projection_note = energy_j / J_PER_KWH, "finished: the ledger total"
    elif current_kw is None:
        projection_note = "no windows yet"
    elif not job.requested_s:
        projection_note = "no requested run time: no end to project to"
    else:
        remaining_s = max(0.0, job.requested_s - (now - job.started_at).total_seconds())
        projected_kwh = energy_j / J_PER_KWH + current_kw * remaining_s / S_PER_H
        projection_note = f"at {current_kw:.3g} kW for the {remaining_s / S_PER_H:.2f} h left of the requested run time"
    return {
        "job_id": job.id,
        "generated_at": now.isoformat(),
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "truncated": truncated,
        "running": job.ended_at is None,
        "devices": [{"label": labels[d], **series[d]} for d in labels],
        "total": total,
        "energy_so_far_kwh": energy_j / J_PER_KWH,
        "gpu_power_w": gpu_w,
        "current_power_kw": current_kw,
        "projected_total_kwh": projected_kwh,
        "projection_note": projection_note,
        "last_window_end": _iso(from_us(max(t for t, _ in latest.values())) if latest else None),
    }


def _step_sum(series: dict[int, dict[str, list]]) -> dict[str, list]:
    """The job's GPU power over time: at each window end, the sum over its devices of each one's
    latest window (a step function per device), from the time every device has reported."""
    events = sorted((t, d, p) for d, s in series.items() for t, p in zip(s["t"], s["power_w"], strict=True))
    reporting = {d for d, s in series.items() if s["t"]}
    current: dict[int, float] = {}
    out_t: list[str] = []
    out_kw: list[float] = []
    for i, (t, d, p) in enumerate(events):
        current[d] = p
        last_at_t = i + 1 == len(events) or events[i + 1][0] != t
        if last_at_t and len(current) == len(reporting):
            out_t.append(t)
            out_kw.append(sum(current.values()) / 1000)
    return {"t": out_t, "power_kw": out_kw}


def _fleet_devices(scope: Principal) -> QuerySet[Device]:
    """Admins see their organisations' GPUs; members the GPUs their teams' running jobs hold."""
    if scope.is_superuser:
        return Device.objects.all()
    running = jobs_visible(principal=scope).filter(status=Job.Status.RUNNING).values("id")
    held = Q(allocations__job_id__in=running, allocations__end__isnull=True)
    if scope.admin_org_ids:
        held |= Q(host__cluster__site__org_id__in=sorted(scope.admin_org_ids))
    return Device.objects.filter(held)


def fleet_power_get(*, scope: Principal, now: dt.datetime, minutes: int = FLEET_MINUTES) -> dict[str, Any]:
    """GPU power of the visible fleet per whole minute of the last ``minutes`` (the minute in
    progress is left out: its windows have not all arrived): per device, the mean power of its
    windows starting in that minute, summed over the devices reporting. One query."""
    end = now.replace(second=0, microsecond=0)
    start = end - dt.timedelta(minutes=minutes)
    devices, buckets = fleet_power_per_minute(
        devices=_fleet_devices(scope).values("id").distinct(), start=start, end=end
    )
    return {
        "t": [b.isoformat() for b, _, _ in buckets],
        "power_kw": [watts / 1000 for _, watts, _ in buckets],
        "devices_reporting": [n for _, _, n in buckets],
        "devices": devices,
    }
