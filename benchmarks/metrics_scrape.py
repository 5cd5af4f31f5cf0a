"""/metrics scrape cost against fleet-sized roll-ups (a benchmark, not a test).

    DATABASE_TEST_NAME=bench_cl_metrics .venv/bin/python benchmarks/metrics_scrape.py [--gpus 1024] [--days 30]

Creates a throwaway database (dropped at the end) holding the roll-ups a scrape reads: a fleet of
--gpus GPUs (8 per host, two device models) with one DeviceHour per GPU and hour over --days days
(in time order, as written, then vacuumed),
20 teams x 2 sites of TeamDays over a year, 400 running jobs with 48 JobHours each, 20,000 ended
jobs with 4 JobHours each. Then times GET /metrics through Django's request stack (token
authentication, the collector, the text encoder) with an admin token (the whole organisation)
and with a user token (one team), and prints p50/p95, the response size, the number of series and
SQL statements, and the time of each of the scrape's queries alone (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "x" * 48)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DATABASE_TEST_NAME", "bench_cl_metrics")
os.environ.setdefault("LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 7, 12, tzinfo=UTC)


def _fleet(*, gpus: int, days: int) -> tuple[str, str]:
    from accounting import models as m
    from accounting.tokens import token_create
    from tests import factories as f

    org = f.OrganizationFactory(slug="bench")
    zone = f.GridZoneFactory(code="FR", annual_intensity_g_per_kwh=56.0)
    sites = [f.SiteFactory(org=org, slug=f"site-{i}", zone=zone, pue=1.2) for i in range(2)]
    clusters = [f.ClusterFactory(site=site, slug=f"hpc-{i}") for i, site in enumerate(sites)]
    teams = [f.TeamFactory(org=org, slug=f"team-{i:02d}") for i in range(20)]
    models = [f.HardwareModelFactory(), f.HardwareModelFactory(key="a100-sxm4-80gb", name="A100")]
    hosts = m.Host.objects.bulk_create(
        m.Host(cluster=clusters[i % 2], hostname=f"gpu-node-{i:04d}") for i in range(gpus // 8)
    )
    m.Device.objects.bulk_create(
        m.Device(host=h, index=i, uuid=f"GPU-{h.pk:05d}-{i}", hardware_model=models[h.pk % 2])
        for h in hosts
        for i in range(8)
    )
    start = NOW - dt.timedelta(days=days)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO accounting_devicehour (device_id, hour, energy_j, idle_energy_j, allocated_s, observed_s,
                                               avg_util_pct, avg_power_w, co2e_operational_g, co2e_embodied_g)
            SELECT d.id, h, 1.8e6, 2e5, 3000, 3600, 70, 500, 28, 3
            FROM accounting_device d, generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour',
                                                      interval '1 hour') h
            ORDER BY h, d.id
            """,
            [start, NOW],
        )
        cursor.execute(
            """
            INSERT INTO accounting_teamday (org_id, team_id, site_id, day, energy_j, gpu_idle_energy_j,
                co2e_operational_g, co2e_embodied_g, direct_basis_energy_j, lifecycle_basis_energy_j,
                co2_only_energy_j, co2e_upstream_g)
            SELECT %s, t.id, s.id, d::date, 5e9, 5e8, 7e4, 8e3, 5e9, 0, 0, 0
            FROM accounting_team t, accounting_site s,
                 generate_series(%s::date - 365, %s::date, interval '1 day') d
            WHERE t.org_id = %s AND s.org_id = %s
            """,
            [org.pk, NOW.date(), NOW.date(), org.pk, org.pk],
        )
    jobs = m.Job.objects.bulk_create(
        m.Job(
            org=org,
            cluster=clusters[i % 2],
            team=teams[i % 20],
            scheduler_job_id=f"job-{i}",
            kind="training",
            family="llm",
            status="running" if i < 400 else "completed",
            started_at=NOW - dt.timedelta(hours=48 if i < 400 else 1000 + i),
            ended_at=None if i < 400 else NOW - dt.timedelta(hours=996 + i),
            units={"tokens": 1e9 + i},
        )
        for i in range(20_400)
    )
    devices = list(m.Device.objects.order_by("pk").values_list("pk", flat=True))
    m.JobAllocation.objects.bulk_create(
        m.JobAllocation(job=j, device_id=devices[(2 * n + k) % len(devices)], start=j.started_at)
        for n, j in enumerate(jobs[:400])
        for k in range(2)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO accounting_jobhour (job_id, hour, energy_j, gpu_energy_j, co2e_operational_g, co2e_embodied_g,
                intensity_g_per_kwh, gpu_idle_energy_j, host_energy_j, facility_energy_j, co2e_low_g, co2e_high_g,
                held_s, measured_gpu_energy_j, direct_basis_energy_j, lifecycle_basis_energy_j, co2_only_energy_j,
                co2e_upstream_g)
            SELECT j.id, date_trunc('hour', j.started_at) + n * interval '1 hour', 3.6e6, 3e6, 56, 6, 56, 3e5, 3e5,
                   7e5, 50, 70, 7200, 2.9e6, 3.6e6, 0, 0, 0
            FROM accounting_job j, generate_series(0, CASE WHEN j.status = 'running' THEN 47 ELSE 3 END) n
            WHERE j.org_id = %s
            """,
            [org.pk],
        )
    with connection.cursor() as cursor:
        # Steady state: autovacuum has summarised the BRIN ranges of the hours (new rows of a
        # bulk load are unsummarised, and a BRIN scan then reads the whole table).
        cursor.execute("VACUUM ANALYZE")
    alice = f.UserFactory(username="alice")
    f.MembershipFactory(user=alice, org=org, team=teams[0])
    admin = token_create(org=org, name="bench-admin", scope="admin").secret
    user = token_create(org=org, name="bench-user", scope="user", user=alice).secret
    return admin, user


def _explain(statements: list[str]) -> list[tuple[float, str]]:
    """Execution time (ms) of each SELECT of a scrape, alone, with what it reads."""
    out = []
    with connection.cursor() as cursor:
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0]
            plan = plan[0] if isinstance(plan, list) else __import__("json").loads(plan)[0]
            tables = sorted(set(re.findall(r"accounting_(\w+)|telemetry_(\w+)", sql)) - {("", "")})
            names = ",".join(sorted({a or b for a, b in tables}))
            out.append((plan["Execution Time"], names))
    return out


def _scrapes(client: APIClient, n: int) -> tuple[list[float], bytes, int, list[tuple[float, str]]]:
    samples = []
    body = b""
    for _ in range(n):
        started = time.perf_counter()
        response = client.get("/metrics")
        samples.append((time.perf_counter() - started) * 1000.0)
        assert response.status_code == 200, response.content[:200]
        body = response.content
    with CaptureQueriesContext(connection) as queries:
        client.get("/metrics")
    statements = [q["sql"] for q in queries.captured_queries]
    return samples, body, len(statements), _explain(statements)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", type=int, default=1024)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--n", type=int, default=20, help="scrapes per token")
    parser.add_argument("--keep", action="store_true", help="keep the database (to explain queries by hand)")
    args = parser.parse_args()
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    rows: dict[str, int] = {}
    results = {}
    try:
        built = time.perf_counter()
        admin, user = _fleet(gpus=args.gpus, days=args.days)
        built = time.perf_counter() - built
        with connection.cursor() as cursor:
            for table in ("devicehour", "teamday", "jobhour", "job"):
                cursor.execute(f"SELECT count(*) FROM accounting_{table}")
                rows[table] = cursor.fetchone()[0]
        for label, secret in (("admin token", admin), ("user token", user)):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
            client.get("/metrics")  # warm caches
            results[label] = _scrapes(client, args.n)
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    print(f"/metrics scrape, in-process, {args.n} scrapes per token; fleet built in {built:.1f} s")
    print("rows: " + ", ".join(f"{table} {count:,}" for table, count in rows.items()))
    print(f"{'caller':<12} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'series':>7} {'kB':>6} {'SQL':>4}")
    for label, (samples, body, statements, _plans) in results.items():
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        p95 = sorted(samples)[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        print(
            f"{label:<12} {statistics.median(samples):8.1f} {p95:8.1f} {max(samples):8.1f} {series:7d} "
            f"{len(body) / 1024:6.0f} {statements:4d}"
        )
    for label, (*_rest, plans) in results.items():
        print(f"{label}: " + "; ".join(f"{ms:.1f} ms {names}" for ms, names in plans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
