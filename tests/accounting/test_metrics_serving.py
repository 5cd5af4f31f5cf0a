# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""GET /metrics: an inference service's server counters (requests, input and output tokens) as
last scraped, beside its energy and carbon counters, so PromQL divides one by the other."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounting import models as m
from accounting.selectors.access import Principal
from accounting.selectors.metrics import ServedTotals, job_totals
from accounting.services.serving import serving_counters_record
from tests import factories as f
from tests.accounting.test_api_serving import _vllm
from tests.accounting.test_api_support import world  # noqa: F401

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
JOB = {"cluster": "hpc-a", "device_model": "unknown", "org": "acme", "site": "paris"}
TRITON = (
    "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes\n"
    "# TYPE nv_inference_request_success counter\n"
    'nv_inference_request_success{model="ensemble",version="1"} 2400\n'
    'nv_inference_request_success{model="preprocessing",version="1"} 2400\n'
)


@pytest.fixture
def services(world):
    vllm = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="svc-7", kind="inference", status="running",
        started_at=T0,
    )  # fmt: skip
    m.JobHour.objects.create(job=vllm, hour=T0, energy_j=36e6, co2e_operational_g=2000.0, co2e_embodied_g=100.0)
    serving_counters_record(
        job=vllm, server="vllm", metrics=_vllm(1600.0, 2.4e6, 6e5), at=T0 + dt.timedelta(minutes=30)
    )
    # the server restarted: its counters count from 0 again (Prometheus reads the drop as a reset)
    serving_counters_record(job=vllm, server="vllm", metrics=_vllm(300.0, 4e5, 1e5), at=T0 + dt.timedelta(minutes=59))
    triton = f.JobFactory(
        cluster=world.cluster_a, team=world.team2, scheduler_job_id="svc-8", kind="inference", status="running",
        started_at=T0,
    )  # fmt: skip
    serving_counters_record(
        job=triton, server="triton", metrics=TRITON, at=T0 + dt.timedelta(minutes=5), model="ensemble"
    )
    f.JobFactory(cluster=world.cluster_a, team=world.team, scheduler_job_id="train-1", status="running", started_at=T0)
    return world


def _served(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("carbonledger_job_served")
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted({**JOB, **labels}.items())))


def test_admin_scrape_has_each_services_last_counters(services):
    text = services.client("admin").get("/metrics").content.decode()
    assert _served(text) == {
        _key("carbonledger_job_served_requests_total", job_id="svc-7", server="vllm", team="recsys"): 300.0,
        _key(
            "carbonledger_job_served_tokens_total", job_id="svc-7", server="vllm", team="recsys", direction="input"
        ): 4e5,
        _key(
            "carbonledger_job_served_tokens_total", job_id="svc-7", server="vllm", team="recsys", direction="output"
        ): 1e5,
        # Triton counts requests only (one model: the ensemble that answers the clients)
        _key("carbonledger_job_served_requests_total", job_id="svc-8", server="triton", team="llm"): 2400.0,
    }
    assert "# TYPE carbonledger_job_served_requests_total counter" in text
    assert "# TYPE carbonledger_job_served_tokens_total counter" in text
    assert (
        'job_id="train-1"' in text
        and 'carbonledger_job_served_requests_total{cluster="hpc-a",device_model="unknown",job_id="train-1"' not in text
    )


def test_user_token_sees_its_teams_services_only(services):
    text = services.client("alice").get("/metrics").content.decode()
    assert {dict(k[1])["job_id"] for k in _served(text)} == {"svc-7"}


def test_job_totals_carry_the_last_reading(services):
    scope = Principal(scope="admin", via_token=True, org_id=services.org.pk, admin_org_ids=frozenset({services.org.pk}))
    totals = {j.job_id: j.served for j in job_totals(principal=scope, now=T0 + dt.timedelta(hours=1), recent_s=3600)}
    assert totals == {
        "svc-7": ServedTotals("vllm", 300.0, 4e5, 1e5),
        "svc-8": ServedTotals("triton", 2400.0, None, None),
        "train-1": None,
    }
