"""API latency benchmark (not a test): job register/end, footprint query, estimate and advice.

    DATABASE_TEST_NAME=bench_cl_api .venv/bin/python benchmarks/api_latency.py [--n 300]

Creates a throwaway database (dropped at the end), a fleet of 64 hosts x 8 GPUs and 2,000
existing jobs with footprints, then times each operation in-process through Django's full
request stack (URL routing, token authentication, throttling, serializers, services,
PostgreSQL) with DRF's test client: no network or WSGI server in the figures. Prints p50/p95/
max per operation, whether p95 meets its target (job register/end and footprint query
< 20 ms, estimate < 50 ms), and the SQL statements of one more request of each operation
(BEGIN and COMMIT included), counted outside the timed requests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Production settings (DEBUG off: no query log); only what a throwaway run needs.
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "x" * 48)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DATABASE_TEST_NAME", "bench_cl_api")
os.environ.setdefault("LOG_LEVEL", "ERROR")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

UTC = dt.UTC
TARGETS_MS = {"job register": 20.0, "job end": 20.0, "footprint query": 20.0, "estimate": 50.0, "advice": None}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _fleet():
    from accounting import models as m
    from accounting.tokens import token_create
    from tests import factories as f

    org = f.OrganizationFactory(slug="bench")
    zone = f.GridZoneFactory(code="FR", annual_intensity_g_per_kwh=56.0)
    site = f.SiteFactory(org=org, slug="paris", zone=zone, pue=1.2)
    cluster = f.ClusterFactory(site=site, slug="hpc-a")
    team = f.TeamFactory(org=org, slug="recsys")
    f.HardwareModelFactory()
    start = dt.datetime(2026, 11, 26, tzinfo=UTC)
    m.HourlyIntensity.objects.bulk_create(
        m.HourlyIntensity(
            zone=zone,
            hour=start + dt.timedelta(hours=h),
            intensity_g_per_kwh=40 + (h * 7) % 50,
            is_forecast=True,
            source=m.FactorSource.OPERATOR,
        )
        for h in range(72)
    )
    hosts = m.Host.objects.bulk_create(m.Host(cluster=cluster, hostname=f"gpu-node-{i:03d}") for i in range(64))
    m.Device.objects.bulk_create(m.Device(host=h, index=i, uuid=f"GPU-{h.pk:04d}-{i}") for h in hosts for i in range(8))
    jobs = m.Job.objects.bulk_create(
        m.Job(
            org=org,
            cluster=cluster,
            team=team,
            scheduler_job_id=f"old-{i}",
            kind="training",
            family="llm",
            status="completed",
            started_at=start - dt.timedelta(hours=i),
            ended_at=start - dt.timedelta(hours=i - 1),
            units={"tokens": 1e9},
        )
        for i in range(2000)
    )
    m.JobFootprint.objects.bulk_create(
        m.JobFootprint(
            job=j,
            energy_j=3.6e7,
            gpu_energy_j=3e7,
            co2e_operational_g=500.0,
            co2e_embodied_g=40.0,
            co2e_low_g=450.0,
            co2e_high_g=600.0,
            is_final=True,
            method_version="2026.11-1",
        )
        for j in jobs
    )
    secret = token_create(org=org, name="bench", scope="scheduler", cluster=cluster).secret
    admin = token_create(org=org, name="bench-admin", scope="admin").secret
    return cluster, jobs, secret, admin


def _time(label: str, n: int, call, results: dict, statements: dict) -> None:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        response = call(i)
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status_code >= 300:
            results[label] = f"failed: HTTP {response.status_code} {response.content[:200]!r}"
            return
        samples.append(elapsed)
    results[label] = samples
    with CaptureQueriesContext(connection) as queries:  # request n: not timed (query logging costs)
        call(n)
    statements[label] = len(queries.captured_queries)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="requests per operation")
    args = parser.parse_args()
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        _cluster, jobs, secret, _admin = _fleet()
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        t0 = dt.datetime(2026, 11, 26, 10, tzinfo=UTC)
        for warm in range(20):  # connection, URL resolver and serializer caches
            client.get(f"/api/v1/jobs/{jobs[warm].pk}/footprint/")

        def register(i):
            host, gpus = divmod(i % 256, 4)
            return client.post(
                "/api/v1/jobs/",
                {
                    "scheduler_job_id": f"bench-{i}",
                    "team": "recsys",
                    "user": "alice",
                    "kind": "training",
                    "family": "llm",
                    "started_at": t0.isoformat(),
                    "model_meta": {"parameters": 7e9, "precision": "bf16"},
                    "allocation": [{"host": f"gpu-node-{host:03d}", "gpus": [2 * gpus % 8, (2 * gpus + 1) % 8]}],
                },
                format="json",
            )

        def end(i):
            return client.post(
                f"/api/v1/jobs/by-key/bench-{i}/end/",
                {"exit_state": "completed", "ended_at": (t0 + dt.timedelta(hours=2)).isoformat()},
                format="json",
            )

        def footprint(i):
            return client.get(f"/api/v1/jobs/{jobs[i % len(jobs)].pk}/footprint/")

        def estimate(i):
            return client.post(
                "/api/v1/estimate/",
                {
                    "device_key": "h100-sxm5-80gb",
                    "device_count": 8,
                    "hours": 1 + i % 24,
                    "utilisation": 0.8,
                    "pue": 1.2,
                    "zone_code": "FR",
                },
                format="json",
            )

        def advice(i):
            return client.post(
                "/api/v1/advice/",
                {
                    "hardware_model": "h100-sxm5-80gb",
                    "gpu_count": 8,
                    "hours": 1 + i % 12,
                    "earliest_start": t0.isoformat(),
                    "deadline": (t0 + dt.timedelta(hours=48)).isoformat(),
                },
                format="json",
            )

        results: dict[str, object] = {}
        statements: dict[str, int] = {}
        _time("job register", args.n, register, results, statements)
        _time("job end", args.n, end, results, statements)
        _time("footprint query", args.n, footprint, results, statements)
        _time("estimate", args.n, estimate, results, statements)
        _time("advice", args.n, advice, results, statements)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(f"API latency, in-process, {args.n} requests per operation, PostgreSQL {connection.pg_version // 10000}")
    print(f"{'operation':<16} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'SQL':>4}  target p95")
    ok = True
    for label, samples in results.items():
        target = TARGETS_MS[label]
        if isinstance(samples, str):
            print(f"{label:<16} {samples}")
            ok = False
            continue
        p50, p95 = statistics.median(samples), _percentile(samples, 0.95)
        verdict = "-" if target is None else (f"< {target:.0f} ms " + ("ok" if p95 < target else "MISSED"))
        ok = ok and (target is None or p95 < target)
        print(f"{label:<16} {p50:8.2f} {p95:8.2f} {max(samples):8.2f} {statements[label]:4d}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
