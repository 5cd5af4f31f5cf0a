"""Server time of the job page's service card (not a test; run by hand).

    createdb -h 127.0.0.1 -U postgres cl_serving_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/cl_serving_bench
    .venv/bin/python manage.py migrate
    .venv/bin/python benchmarks/serving_rates.py        # refuses a database that has its org
    dropdb -h 127.0.0.1 -U postgres cl_serving_bench

Creates an inference service that has run for 90 days with a scrape of its server's counters
every minute (129,600 readings, a restart every 10 days) and a ledger row per hour (2,160), then
times (median and max of 15 after a warm-up) ``service_rates_get`` (the card's rates and its
hourly series) and ``service_rates_figure`` for each period of the card, as a superuser.
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
from dashboard import figures  # noqa: E402
from tests import factories as f  # noqa: E402

ORG = "bench-serving"
DAYS = 90


def main() -> None:
    if m.Organization.objects.filter(slug=ORG).exists():
        sys.exit(f"organisation {ORG!r} exists: use a fresh database")
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = now - dt.timedelta(days=DAYS)
    org = f.OrganizationFactory(slug=ORG)
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org))
    job = f.JobFactory(
        cluster=cluster, team=f.TeamFactory(org=org), scheduler_job_id="bench-svc", kind="inference",
        status="running", started_at=start,
    )  # fmt: skip
    with connection.cursor() as cur:
        # a reading a minute; the counters restart every 10 days (minute % 14400 counts from 0)
        cur.execute(
            """
            INSERT INTO accounting_servingcounters (job_id, at, server, requests_total, input_tokens_total,
                output_tokens_total, received_at)
            SELECT %s, %s + s * interval '1 minute', 'vllm', (s %% 14400) * 60.0, (s %% 14400) * 72000.0,
                   (s %% 14400) * 18000.0, now()
            FROM generate_series(0, %s) s
            """,
            [job.pk, start, DAYS * 1440],
        )
        cur.execute(
            """
            INSERT INTO accounting_jobhour (job_id, hour, energy_j, gpu_energy_j, gpu_idle_energy_j, host_energy_j,
                facility_energy_j, measured_gpu_energy_j, co2e_operational_g, co2e_embodied_g, intensity_g_per_kwh,
                direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j, co2e_low_g, co2e_high_g,
                held_s, co2e_upstream_g)
            SELECT %s, %s + h * interval '1 hour', 3.6e7 + (h %% 24) * 1e6, 2.7e7, 4e6, 3e6, 6e6, 2.7e7,
                   4000 + (h %% 24) * 100, 96, 400, 3.6e7 + (h %% 24) * 1e6, 0, 0, 3700, 4500, 28800, 0
            FROM generate_series(0, %s) h
            """,
            [job.pk, start, DAYS * 24 - 1],
        )
        cur.execute("ANALYZE accounting_servingcounters")
        cur.execute("ANALYZE accounting_jobhour")
    scope = sel.viewer_scope_get(user=f.UserFactory(username="bench-serving-root", is_superuser=True, is_staff=True))
    for period in ("24h", "7d", "30d", "life"):

        def card(period: str = period) -> tuple:
            rates = sel.service_rates_get(scope=scope, job_id=job.pk, period=period, now=now)
            assert rates is not None
            return rates, figures.service_rates_figure(hours=rates.hours, basis_label=rates.basis_label)

        rates, fig = card()
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            card()
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"service card, {period}: p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms, "
            f"{len(rates.hours.hour)} hourly points, {rates.report.readings} readings, "
            f"figure {len(fig or '') // 1024} kB"
        )


if __name__ == "__main__":
    main()
