# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""POST/GET /api/v1/jobs/…/serving/: an inference service's counters from its server's metrics
page, and its energy and carbon per request, per 1k tokens, per hour and per day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from accounting import models as m
from tests import factories as f
from tests.accounting.test_api_support import T0, world  # noqa: F401

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parents[1] / "domain" / "data" / "serving"
BY_KEY = "/api/v1/jobs/by-key/svc-1/serving/"


def _vllm(requests: float, prompt: float, generation: float) -> str:
    """A vLLM (v1 engine) page in its own format: two engines, finish reasons, a histogram."""
    model = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
    return (
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
        "# TYPE vllm:prompt_tokens_total counter\n"
        f'vllm:prompt_tokens_total{{engine="0",{model}}} {prompt * 0.75}\n'
        f'vllm:prompt_tokens_total{{engine="1",{model}}} {prompt * 0.25}\n'
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
        "# TYPE vllm:generation_tokens_total counter\n"
        f'vllm:generation_tokens_total{{engine="0",{model}}} {generation}\n'
        "# HELP vllm:request_success_total Count of successfully processed requests.\n"
        "# TYPE vllm:request_success_total counter\n"
        f'vllm:request_success_total{{engine="0",finished_reason="stop",{model}}} {requests - 10}\n'
        f'vllm:request_success_total{{engine="0",finished_reason="length",{model}}} 10.0\n'
        "# HELP vllm:iteration_tokens_total Histogram of number of tokens per engine_step.\n"
        "# TYPE vllm:iteration_tokens_total histogram\n"
        f'vllm:iteration_tokens_total_sum{{engine="0",{model}}} {prompt + generation}\n'
    )


@pytest.fixture
def service(world):
    job = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="svc-1", kind="inference", family="llm",
        status="running", started_at=T0,
    )  # fmt: skip
    for hour, energy, operational in ((0, 20e6, 1200.0), (1, 16e6, 1000.0)):
        m.JobHour.objects.create(
            job=job, hour=T0 + dt.timedelta(hours=hour), energy_j=energy, co2e_operational_g=operational,
            co2e_embodied_g=100.0,
        )  # fmt: skip
    return job


def _post(world, token, body):
    return world.client(token).post(BY_KEY, body, format="json")


def test_scrapes_in_and_rates_out(world, service):
    readings = [(0, 1000.0, 2e6, 5e5), (1, 1600.0, 2.8e6, 7e5), (2, 2200.0, 3.6e6, 9.8e5)]
    for hour, requests, prompt, generation in readings:
        at = T0 + dt.timedelta(hours=hour)
        response = _post(
            world, "sched_a", {"server": "vllm", "metrics": _vllm(requests, prompt, generation), "at": at.isoformat()}
        )
        assert response.status_code == 201, response.json()
        assert response.json() == {
            "job": service.pk, "at": at.isoformat().replace("+00:00", "Z"), "server": "vllm",
            "requests_total": requests, "input_tokens_total": prompt, "output_tokens_total": generation,
        }  # fmt: skip
    # the same instant again replaces the reading (a retried push)
    assert _post(world, "sched_a", {"server": "vllm", "metrics": _vllm(2200.0, 3.6e6, 9.8e5), "at": (T0 + dt.timedelta(hours=2)).isoformat()}).status_code == 201  # fmt: skip
    assert m.ServingCounters.objects.filter(job=service).count() == 3
    response = world.client("sched_a").get(BY_KEY, {"start": "2026-11-26T10:20:00Z", "end": "2026-11-26T11:40:00Z"})
    assert response.status_code == 200
    assert response.json() == {
        "job": service.pk,
        "scheduler_job_id": "svc-1",
        "server": "vllm",
        "period_start": "2026-11-26T10:00:00Z",
        "period_end": "2026-11-26T12:00:00Z",
        "period_s": 7200.0,
        "counters_from": "2026-11-26T10:00:00Z",
        "counters_to": "2026-11-26T12:00:00Z",
        "readings": 3,
        "energy_j": 36e6,
        "co2e_operational_g": 2200.0,
        "co2e_embodied_g": 200.0,
        "co2e_g": 2400.0,
        "requests": 1200.0,
        "input_tokens": 1.6e6,
        "output_tokens": 4.8e5,
        "per_request": {"energy_j": 30000.0, "co2e_g": 2.0},
        "per_1k_input_tokens": {"energy_j": 22500.0, "co2e_g": 1.5},
        "per_1k_output_tokens": {"energy_j": 75000.0, "co2e_g": 5.0},
        "per_hour": {"energy_j": 18e6, "co2e_g": 1200.0},
        "per_day": {"energy_j": 432e6, "co2e_g": 28800.0},
    }
    # one hour only: the 11:00 reading bounds it from below, the 12:00 one from above
    one_hour = world.client("sched_a").get(BY_KEY, {"start": "2026-11-26T11:00:00Z", "end": "2026-11-26T12:00:00Z"})
    assert (one_hour.json()["requests"], one_hour.json()["energy_j"], one_hour.json()["per_request"]) == (
        600.0, 16e6, {"energy_j": 16e6 / 600, "co2e_g": 1100.0 / 600},
    )  # fmt: skip
    # an ended service: the default period is its life
    service.ended_at = T0 + dt.timedelta(hours=1, minutes=30)
    service.status = "completed"
    service.save()
    whole = world.client("alice").get(BY_KEY, {"cluster": world.cluster_a.pk}).json()
    assert (whole["period_start"], whole["period_end"], whole["per_day"]) == (
        "2026-11-26T10:00:00Z", "2026-11-26T12:00:00Z", {"energy_j": 432e6, "co2e_g": 28800.0},
    )  # fmt: skip


def test_each_server_format(world):
    cases = [
        ("tgi", None, {"requests_total": 1311.0, "input_tokens_total": 851234.0, "output_tokens_total": 290455.0}),
        ("trtllm", None, {"requests_total": 900.0, "input_tokens_total": 1.8e6, "output_tokens_total": 450000.0}),
        ("triton", "ensemble", {"requests_total": 2400.0, "input_tokens_total": None, "output_tokens_total": None}),
        ("vllm", None, {"requests_total": 2000.0, "input_tokens_total": 2e6, "output_tokens_total": 5e5}),
    ]
    for server, model, expected in cases:
        job = f.JobFactory(cluster=world.cluster_a, team=world.team, scheduler_job_id=f"svc-{server}", kind="inference", started_at=T0)  # fmt: skip
        body = {"server": server, "metrics": (DATA / f"{server}.txt").read_text(), "at": "2026-11-26T11:00:00Z"}
        if model:
            body["model"] = model
        response = world.client("admin").post(f"/api/v1/jobs/{job.pk}/serving/", body, format="json")
        assert response.status_code == 201, (server, response.json())
        assert {k: response.json()[k] for k in expected} == expected, server


def test_a_rejected_scrape_changes_nothing(world, service):
    training = f.JobFactory(cluster=world.cluster_a, team=world.team, scheduler_job_id="train-1", kind="training", started_at=T0)  # fmt: skip
    vllm = {"server": "vllm", "metrics": _vllm(10.0, 1.0, 1.0), "at": "2026-11-26T11:00:00Z"}
    cases = [
        (f"/api/v1/jobs/{training.pk}/serving/", "admin", vllm, 409, None),
        (BY_KEY, "sched_a", {**vllm, "metrics": (DATA / "tgi.txt").read_text()}, 400, "metrics"),
        (BY_KEY, "sched_a", {**vllm, "server": "sglang"}, 400, "server"),
        (BY_KEY, "sched_a", {**vllm, "at": "2026-11-26T09:00:00Z"}, 400, "at"),
        (BY_KEY, "sched_a", {**vllm, "at": "2026-11-26T11:00:00"}, 400, "at"),
        (BY_KEY, "sched_a", {**vllm, "metrics": 'vllm:request_success_total{model_name="m"} x\n'}, 400, "metrics"),
        (BY_KEY, "sched_a", {"server": "triton", "metrics": (DATA / "triton.txt").read_text()}, 400, "model"),
        (f"/api/v1/jobs/{service.pk}/serving/", "other_admin", vllm, 404, None),
        (f"/api/v1/jobs/{service.pk}/serving/", "host_a", vllm, 403, None),
    ]
    for path, token, body, code, field in cases:
        response = world.client(token).post(path, body, format="json")
        assert response.status_code == code, (path, token, body.get("server"), response.json())
        if field:
            assert [e["field"] for e in response.json()["errors"]] == [field]
    assert m.ServingCounters.objects.count() == 0
    assert world.client("sched_a").post(BY_KEY, vllm, format="json").status_code == 201
    tgi = {"server": "tgi", "metrics": (DATA / "tgi.txt").read_text(), "at": "2026-11-26T11:30:00Z"}
    switched = world.client("sched_a").post(BY_KEY, tgi, format="json")
    assert switched.status_code == 409
    assert list(m.ServingCounters.objects.values_list("server", flat=True)) == ["vllm"]


def test_report_errors_and_visibility(world, service):
    assert world.client("sched_a").get(BY_KEY, {"start": "2026-11-26T12:00:00Z", "end": "2026-11-26T12:00:00Z"}).status_code == 400  # fmt: skip
    empty = world.client("sched_a").get(BY_KEY, {"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T11:00:00Z"}).json()  # fmt: skip
    assert (empty["readings"], empty["requests"], empty["per_request"], empty["per_hour"]) == (
        0, None, None, {"energy_j": 20e6, "co2e_g": 1300.0},
    )  # fmt: skip
    other = f.JobFactory(cluster=world.cluster_a, team=world.team2, scheduler_job_id="svc-llm", kind="inference", started_at=T0)  # fmt: skip
    assert world.client("alice").get(f"/api/v1/jobs/{other.pk}/serving/").status_code == 404
    assert world.client("other_admin").get(f"/api/v1/jobs/{service.pk}/serving/").status_code == 404
