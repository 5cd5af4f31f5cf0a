"""Server time per dashboard page on a seeded fleet (not a test; run by hand).

    # once: a database of its own, migrated and seeded (about 5 minutes on 2 cores)
    createdb -h 127.0.0.1 -U postgres cl_dash_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/cl_dash_bench
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py seed_history --org bench --gpus 1000 --jobs 100000 --days 90 --seed 7
    # then
    .venv/bin/python benchmarks/dashboard_pages.py --org bench --requests 20

Every request goes through Django's test Client (URL routing, middleware, session auth,
templates, figure JSON) as an org admin (Membership role=admin, team NULL) of ``--org``.
Server time = wall time of ``Client.get`` (no network, no browser). Each page gets two
warm-up requests, then ``--requests`` timed ones; job detail cycles through that many
different jobs. Prints p50/p95/max, the SQL query count and, for the pages with a target,
p95 ÷ target measured in this run.
"""

from __future__ import annotations

import argparse
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

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accounting.models import DeviceHour, Job, JobHour, Membership, Organization, TeamDay  # noqa: E402

TARGET_P95_MS = {"overview": 300.0, "jobs list": 300.0, "job detail": 300.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--org", default="bench")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    settings.DEBUG = False  # no query log kept per request, as in production

    org = Organization.objects.filter(slug=args.org).first()
    if org is None:
        print(f"organisation {args.org!r} not found: run seed_history first (see the module docstring)")
        return 2
    user, _ = get_user_model().objects.get_or_create(username=f"bench-admin.{org.slug}")
    Membership.objects.get_or_create(user=user, org=org, team=None, defaults={"role": Membership.Role.ADMIN})
    client = Client()
    client.force_login(user)

    n = args.requests
    jobs = Job.objects.filter(org=org)
    print(
        f"dataset: {jobs.count():,} jobs, {DeviceHour.objects.filter(device__host__cluster__site__org=org).count():,} "
        f"device-hours, {JobHour.objects.filter(job__org=org).count():,} job-hours, "
        f"{TeamDay.objects.filter(org=org).count():,} team-days; {connection.vendor} "
        f"{connection.cursor().connection.info.server_version}"
    )
    # Detail pages: a spread of finished multi-GPU jobs of every family, plus running ones.
    detail_ids = list(
        jobs.filter(status="completed", footprint__device_hours__gte=8)
        .order_by("-started_at")
        .values_list("id", flat=True)[:n]
    )
    month = Job.objects.filter(org=org).order_by("-started_at").values_list("started_at", flat=True).first()
    team_id = org.teams.order_by("id").values_list("id", flat=True).first()
    pages: list[tuple[str, list[str]]] = [
        ("overview", ["/"]),
        ("overview 90d by family", ["/?period=90d&group_by=family"]),
        ("overview 30d by device model", ["/?group_by=device_model"]),
        ("overview one team", [f"/?team={team_id}"]),
        ("jobs list", ["/jobs/"]),
        ("jobs list sorted by CO2e", ["/jobs/?sort=-co2e"]),
        ("jobs list filtered", ["/jobs/?family=llm&kind=training&status=completed&device=h100-sxm5-80gb"]),
        ("jobs list page 500", ["/jobs/?page=500"]),
        ("job detail", [f"/jobs/{i}/" for i in detail_ids]),
        ("live JSON", ["/live/data.json"]),
        ("sites 7d", ["/sites/"]),
        ("devices 7d", ["/devices/"]),
        ("trade-offs 90d", ["/tradeoffs/"]),
        ("budgets", ["/budgets/"]),
        ("reports list", ["/reports/"]),
        ("report month", [f"/reports/{month:%Y-%m}/"]),
        ("methodology", ["/methodology/"]),
        ("planner", ["/planner/"]),
    ]
    print(f"\n{'page':32s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'queries':>8s} {'KiB':>7s}  p95/target")
    failed = False
    for name, urls in pages:
        for url in urls[:2]:
            client.get(url)
        times, queries, size = [], 0, 0
        for i in range(n):
            url = urls[i % len(urls)]
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                print(f"{name}: HTTP {response.status_code} for {url}")
                return 1
            times.append(elapsed)
            queries = max(queries, len(ctx.captured_queries))
            size = len(response.content)
        p95 = percentile(times, 0.95)
        target = TARGET_P95_MS.get(name)
        ratio = f"{p95 / target:.2f}" if target else ""
        if target and p95 > target:
            failed = True
            ratio += "  OVER"
        print(
            f"{name:32s} {statistics.median(times):8.1f} {p95:8.1f} {max(times):8.1f} {queries:8d} "
            f"{size / 1024:7.1f}  {ratio}"
        )
    print("\ntargets: p95 < 300 ms for overview, jobs list and job detail:", "MISSED" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
