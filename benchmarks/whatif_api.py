"""What-if API latency (a benchmark, not a test).

Creates a throwaway test database (DATABASE_TEST_NAME, default test_cl_whatif_bench), a small
fleet and one measured job, then times the four endpoints through Django's test Client
(full middleware, auth, serializers, service, engine, JSON) and prints p50/p95 per endpoint.
Target: p95 < 50 ms. The pure engine call alone is timed in the same run as the ratio base.

    DATABASE_TEST_NAME=test_cl_whatif_bench .venv/bin/python benchmarks/whatif_api.py --calls 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_TEST_NAME", "test_cl_whatif_bench")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    import django

    django.setup()
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases
    from rest_framework.test import APIClient

    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        from accounting import models as m
        from accounting.domain.whatif import CarbonContext, MeasuredJob, project_hardware
        from tests import factories as f

        org = f.OrganizationFactory()
        zone = f.GridZoneFactory(code="BENCH", annual_intensity_g_per_kwh=350.0)
        site = f.SiteFactory(org=org, zone=zone, pue=1.3)
        cluster = f.ClusterFactory(site=site)
        host = f.HostFactory(cluster=cluster)
        a100 = f.HardwareModelFactory(key="a100-sxm4-80gb", name="A100", idle_power_w=55.0, max_power_w=400.0)
        f.HardwareModelFactory(key="h100-sxm5-80gb")
        team = f.TeamFactory(org=org)
        start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        job = f.JobFactory(
            cluster=cluster,
            team=team,
            started_at=start,
            ended_at=start + dt.timedelta(hours=10),
            units={"tokens": 1e9},
            model_meta={"precision": "bf16", "avg_util": 0.9},
        )
        for _ in range(8):
            f.JobAllocationFactory(job=job, device=f.DeviceFactory(host=host, hardware_model=a100), start=start)
        m.JobFootprint.objects.create(job=job, gpu_energy_j=8 * 300.0 * 36000, device_hours=80.0)
        for i in range(48):
            m.HourlyIntensity.objects.create(
                zone=zone,
                hour=start + dt.timedelta(hours=i),
                is_forecast=True,
                intensity_g_per_kwh=200 + 150 * ((i * 7) % 11) / 10,
                source=m.FactorSource.OPERATOR,
            )
        user = f.UserFactory()
        f.MembershipFactory(user=user, org=org, team=team)
        client = APIClient()
        client.force_login(user)

        calls = {
            "estimate": (
                "/api/v1/estimate/",
                {
                    "device_key": "h100-sxm5-80gb",
                    "device_count": 8,
                    "flops": 1e21,
                    "efficiency": 0.4,
                    "utilisation": 0.9,
                    "pue": 1.2,
                    "zone_code": "BENCH",
                    "units": {"tokens": 1e9},
                },
            ),
            "project": (f"/api/v1/jobs/{job.pk}/project/", {"target_key": "h100-sxm5-80gb"}),
            "fleet-plan": (
                "/api/v1/fleet-plan/",
                {
                    "old_key": "a100-sxm4-80gb",
                    "old_count": 64,
                    "new_key": "h100-sxm5-80gb",
                    "new_count": 32,
                    "pue": 1.3,
                    "intensity_g_per_kwh": 400,
                    "old_age_years": 3,
                    "workloads": [
                        {"family": fam, "kind": kind, "device_hours_per_year": 50000, "avg_util": 0.8}
                        for fam in ("llm", "moe", "recommender")
                        for kind in ("training", "inference")
                    ],
                },
            ),
            "best-window": (
                "/api/v1/best-window/",
                {
                    "duration_s": 4 * 3600,
                    "earliest_start": start.isoformat(),
                    "deadline": (start + dt.timedelta(hours=47)).isoformat(),
                    "zone_code": "BENCH",
                    "energy_j": 3.6e10,
                },
            ),
        }
        print(f"what-if API latency over {args.calls} calls each (Django test Client, session auth, PostgreSQL)")
        print(f"{'endpoint':<12} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        worst_p95 = 0.0
        for name, (url, body) in calls.items():
            for _ in range(5):  # warm caches, connection, URL resolver
                assert client.post(url, body, format="json").status_code == 200, name
            samples = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                resp = client.post(url, body, format="json")
                samples.append((time.perf_counter() - t0) * 1000)
                assert resp.status_code == 200, (name, resp.content[:300])
            p95 = pct(samples, 0.95)
            worst_p95 = max(worst_p95, p95)
            print(f"{name:<12} {statistics.median(samples):8.2f} {p95:8.2f} {max(samples):8.2f}")
        job_in = MeasuredJob(
            device_key="a100-sxm4-80gb",
            device_count=8,
            runtime_s=36000,
            gpu_energy_j=8.64e7,
            family="llm",
            kind="training",
        )
        t0 = time.perf_counter()
        for _ in range(args.calls):
            project_hardware(
                job=job_in, target_key="h100-sxm5-80gb", carbon=CarbonContext(pue=1.3, intensity_g_per_kwh=350)
            )
        engine_ms = (time.perf_counter() - t0) * 1000 / args.calls
        print(
            f"pure engine project_hardware: {engine_ms:.3f} ms per call "
            f"(API p95 / engine = {worst_p95 / engine_ms:.0f}x in this run)"
        )
        print(f"target p95 < 50 ms: {'met' if worst_p95 < 50 else 'NOT met'} (worst p95 {worst_p95:.2f} ms)")
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
