"""Server time of the live-power reads on raw windows (not a test; run by hand).

    createdb -h 127.0.0.1 -U postgres cl_dash_power
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/cl_dash_power
    .venv/bin/python manage.py migrate
    .venv/bin/python benchmarks/dashboard_power.py        # refuses a database that has its org
    dropdb -h 127.0.0.1 -U postgres cl_dash_power

Creates 64 GPUs on 8 hosts streaming 10 s windows for the last 6 hours (138,240 raw windows, stored
as ingest stores them: one series row per device and 5-minute batch of 30 windows) and an 8-GPU job
holding 8 of them for those 6 hours, then times (median and max of 15 after a warm-up)
``job_power_get`` over the whole run and over the last 30 minutes (the job page's live chart) and
``fleet_power_get`` over the last hour (the Live page), as a superuser.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounting import models as m  # noqa: E402
from accounting.selectors import dashboard as sel  # noqa: E402
from telemetry.partitions import ensure_partitions  # noqa: E402
from tests import factories as f  # noqa: E402

ORG = "bench-power"


def main() -> None:
    if m.Organization.objects.filter(slug=ORG).exists():
        sys.exit(f"organisation {ORG!r} exists: use a fresh database")
    now = timezone.now().replace(microsecond=0)
    org = f.OrganizationFactory(slug=ORG)
    team = f.TeamFactory(org=org)
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org))
    devices = [
        f.DeviceFactory(host=host, index=i)
        for host in [f.HostFactory(cluster=cluster, hostname=f"bench-{h}") for h in range(8)]
        for i in range(8)
    ]
    start = now - dt.timedelta(hours=6)
    job = m.Job.objects.create(
        org=org,
        cluster=cluster,
        team=team,
        scheduler_job_id="bench-1",
        name="bench",
        kind="training",
        family="llm",
        status="running",
        started_at=start,
        requested_s=12 * 3600.0,
    )
    for d in devices[:8]:
        m.JobAllocation.objects.create(job=job, device=d, start=start)
    m.JobFootprint.objects.create(job=job, energy_j=1e9, gpu_energy_j=7e8)
    ensure_partitions(days={start.date(), now.date()})
    with connection.cursor() as cur:
        # As ingest stores them: one series row per device and 5-minute batch (30 windows), each
        # batch's series in one UTC day (a batch crossing midnight is split there).
        cur.execute(
            """
            INSERT INTO telemetry_gpuseries (batch_id, host_id, device_id, first_start_at, last_end_at, window_count,
                seq, start_us, end_us, energy_j, avg_power_w, max_power_w, util_pct, mem_util_pct, mem_used_mib,
                quality)
            SELECT w.b + 1, w.host_id, w.id, min(w.start_at), max(w.start_at) + interval '10 seconds', count(*),
                   array_agg(w.s ORDER BY w.s),
                   array_agg((EXTRACT(EPOCH FROM w.start_at) * 1000000)::bigint ORDER BY w.s),
                   array_agg((EXTRACT(EPOCH FROM w.start_at) * 1000000)::bigint + 10000000 ORDER BY w.s),
                   array_agg(4000::float8 ORDER BY w.s), array_agg((400 + (w.s %% 50))::float8 ORDER BY w.s),
                   array_agg(500::float8 ORDER BY w.s), array_agg(80::float8 ORDER BY w.s),
                   array_agg(0::float8 ORDER BY w.s), array_agg(0::float8 ORDER BY w.s),
                   array_agg('measured'::text ORDER BY w.s)
            FROM (SELECT d.host_id, d.id, s, s / 30 AS b, %s::timestamptz + s * interval '10 seconds' AS start_at
                  FROM accounting_device d CROSS JOIN generate_series(0, 2159) s WHERE d.id = ANY(%s)) w
            GROUP BY w.b, w.host_id, w.id, (w.start_at AT TIME ZONE 'UTC')::date
            """,
            [start, [d.pk for d in devices]],
        )
        cur.execute("ANALYZE telemetry_gpuseries")
    scope = sel.viewer_scope_get(user=f.UserFactory(username="bench-power-root", is_superuser=True, is_staff=True))
    cases = [
        ("job_power_get, whole run (8 GPUs x 6 h)", lambda: sel.job_power_get(scope=scope, job_id=job.pk, now=now)),
        (
            "job_power_get, last 30 min",
            lambda: sel.job_power_get(scope=scope, job_id=job.pk, now=now, start=now - dt.timedelta(minutes=30)),
        ),
        ("fleet_power_get, last hour, 64 GPUs", lambda: sel.fleet_power_get(scope=scope, now=now)),
    ]
    for label, fn in cases:
        out = fn()
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        points = sum(len(d["t"]) for d in out["devices"]) if isinstance(out["devices"], list) else len(out["t"])
        print(f"{label}: p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms, {points} points")


if __name__ == "__main__":
    main()
