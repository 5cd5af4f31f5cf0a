"""A real Prometheus scrapes a running server's /metrics while an inference service's sidecar
posts its server's counters: the served counters are there with the service's labels, divide the
job's energy in PromQL, and a server restart between two readings is one counter reset to
Prometheus (``resets()``), the rule the API's rates use."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from django.db import connection

from accounting import models as m
from accounting.services.serving import serving_counters_record
from accounting.tokens import token_create
from tests import factories as f
from tests.accounting.test_api_serving import _vllm
from tests.accounting.test_api_support import build_world
from tests.integration.conftest import Processes, WebServer, wait_for
from tests.integration.test_prometheus import Prometheus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
SVC = {"cluster": "hpc-a", "job_id": "svc-7"}


def test_served_counters_in_prometheus(redis_server, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/test.sh runs ensure_prometheus)")
    world = build_world()
    service = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="svc-7", kind="inference", status="running",
        started_at=T0,
    )  # fmt: skip
    m.JobHour.objects.create(
        job=service, hour=T0, energy_j=36e6, gpu_idle_energy_j=6e6, co2e_operational_g=2000.0, co2e_embodied_g=100.0
    )
    serving_counters_record(
        job=service, server="vllm", metrics=_vllm(1600.0, 2.4e6, 6e5), at=T0 + dt.timedelta(minutes=1)
    )
    token = token_create(name="prometheus", org=world.org, scope="admin").secret
    web = WebServer(Processes(redis_server, connection.settings_dict["NAME"]).env())
    web.start()
    prometheus = Prometheus(binary, tmp_path, target=f"127.0.0.1:{web.port}", token=token)
    try:
        try:
            wait_for(prometheus.ready, timeout_s=60, interval_s=0.5, what="three scrapes of /metrics")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; scrape errors: {prometheus.scrape_errors()}") from None
        requests = 'carbonledger_job_served_requests_total{job_id="svc-7"}'
        assert prometheus.query(f"sum by (cluster, job_id, server, team) ({requests})") == {
            (("cluster", "hpc-a"), ("job_id", "svc-7"), ("server", "vllm"), ("team", "recsys")): 1600.0
        }
        tokens = prometheus.query('sum by (direction) (carbonledger_job_served_tokens_total{job_id="svc-7"})')
        assert tokens == {(("direction", "input"),): 2.4e6, (("direction", "output"),): 6e5}
        # energy per request: the job's energy (both accounts) over the requests, joined on the job
        per_request = prometheus.query(
            'sum by (cluster, job_id) (carbonledger_job_energy_joules_total{job_id="svc-7"})'
            f" / sum by (cluster, job_id) ({requests})"
        )
        assert per_request == {tuple(sorted(SVC.items())): 36e6 / 1600}
        # the server restarts: its next reading is lower, one reset to Prometheus
        serving_counters_record(
            job=service, server="vllm", metrics=_vllm(300.0, 4e5, 1e5), at=T0 + dt.timedelta(minutes=2)
        )
        wait_for(
            lambda: prometheus.query(f"sum({requests})") == {(): 300.0},
            timeout_s=30,
            interval_s=0.5,
            what="the reading after the restart scraped",
        )
        assert prometheus.query(f"sum by (cluster, job_id) (resets({requests}[5m]))") == {
            tuple(sorted(SVC.items())): 1.0
        }
    finally:
        prometheus.stop()
        web.stop()
