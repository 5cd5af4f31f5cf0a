# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""Footprint endpoint: live/final totals from JobFootprint, energy breakdown, per-unit efficiency."""

from __future__ import annotations

import pytest

from accounting import models as m
from tests.accounting.test_api_support import problem_fields, register_body, world  # noqa: F401

pytestmark = pytest.mark.django_db


def _job(world, **overrides):
    response = world.client("sched_a").post("/api/v1/jobs/", register_body(**overrides), format="json")
    return m.Job.objects.get(pk=response.json()["id"])


def test_footprint_before_any_attribution_is_zero_and_not_final(world):
    job = _job(world)
    body = world.client("alice").get(f"/api/v1/jobs/{job.pk}/footprint/").json()
    assert body["has_ledger"] is False
    assert body["is_final"] is False
    assert body["energy"]["total_j"] == 0.0
    assert body["co2e"] == {"operational_g": 0.0, "embodied_g": 0.0, "total_g": 0.0, "low_g": 0.0, "high_g": 0.0}
    assert body["efficiency"] == []
    assert body["sci_g_per_unit"] is None


def test_footprint_breakdown_band_and_efficiency(world):
    job = _job(world)
    job.units = {"samples": 5.0e8, "steps": 1000}
    job.primary_unit = "samples"
    job.save()
    m.JobFootprint.objects.create(
        job=job,
        energy_j=61.2e6,
        gpu_energy_j=36e6,
        gpu_idle_energy_j=3.6e6,
        host_energy_j=4.8e6,
        facility_energy_j=20.4e6,
        co2e_operational_g=1020.0,
        co2e_embodied_g=60.0,
        co2e_low_g=930.0,
        co2e_high_g=1260.0,
        device_hours=8.0,
        measured_fraction=0.75,
        is_final=True,
        method_version="2026.11-1",
    )
    body = world.client("sched_a").get("/api/v1/jobs/by-key/88123/footprint/").json()
    assert body["is_final"] is True and body["has_ledger"] is True
    assert body["method_version"] == "2026.11-1"
    assert body["energy"] == {
        "total_j": 61.2e6,
        "total_kwh": 17.0,
        "gpu_j": 36e6,
        "gpu_active_j": 32.4e6,
        "gpu_idle_j": 3.6e6,
        "host_j": 4.8e6,
        "facility_j": 20.4e6,
    }
    assert body["co2e"] == {
        "operational_g": 1020.0,
        "embodied_g": 60.0,
        "total_g": 1080.0,
        "low_g": 930.0,
        "high_g": 1260.0,
    }
    assert (body["device_hours"], body["measured_fraction"]) == (8.0, 0.75)
    assert body["efficiency"] == [
        {"unit": "samples", "count": 5.0e8, "energy_j_per_unit": 61.2e6 / 5.0e8, "co2e_g_per_unit": 1080.0 / 5.0e8},
        {"unit": "steps", "count": 1000.0, "energy_j_per_unit": 61.2e6 / 1000, "co2e_g_per_unit": 1.08},
    ]
    assert body["sci_g_per_unit"] == 1080.0 / 5.0e8


def test_footprint_isolation(world):
    job = _job(world, team="llm")
    assert world.client("alice").get(f"/api/v1/jobs/{job.pk}/footprint/").status_code == 404
    assert world.client("sched_b").get(f"/api/v1/jobs/{job.pk}/footprint/").status_code == 404
    assert world.client("bob").get(f"/api/v1/jobs/{job.pk}/footprint/").status_code == 200
    assert world.client("host_a").get(f"/api/v1/jobs/{job.pk}/footprint/").status_code == 403
    assert problem_fields(world.client("admin").get("/api/v1/jobs/by-key/88123/footprint/", {"cluster": "x"})) == [
        "cluster"
    ]
