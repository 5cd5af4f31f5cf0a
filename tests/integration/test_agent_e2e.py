"""The agent against the real server (gunicorn + PostgreSQL), with the server killed half way.

Done-when of the agent issue: an outage in the middle of a run loses nothing and duplicates
nothing — the joules the agent measured equal the joules the ledger holds.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection
from django.db.models import Sum

from accounting.models import ApiToken, JobFootprint, LedgerEntry
from accounting.selectors.batch_findings import batch_findings_get
from accounting.services.attribution import batches_attribute
from accounting.tokens import token_create
from telemetry.agent.agent import Agent
from telemetry.agent.config import AgentConfig
from telemetry.agent.sim import FakeNvml, SimHostPower, SimProcTree
from telemetry.agent.spool import Spool
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class MeasuringAgent(Agent):
    """Records what the agent itself measured, window by window, before anything is sent."""

    measured_j = 0.0
    seqs: list[int]

    def close_window(self, end_wall):
        window = super().close_window(end_wall)
        if window is not None:
            self.seqs = [*getattr(self, "seqs", []), window["seq"]]
            self.measured_j += sum(g["energy_j"] for g in window["gpus"])
            self.measured_j += window["host"]["cpu_energy_j"] + window["host"]["dram_energy_j"]
        return window


def test_agent_outage_loses_nothing_and_duplicates_nothing(web_server, tmp_path):
    host = HostFactory(hostname="node-e2e", gpu_slots=2)
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    h100 = DeviceFactory(host=host, index=0, uuid="GPU-e2e-0")
    job = JobFactory(
        cluster=host.cluster, scheduler_job_id="4242", started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    )
    JobAllocationFactory(job=job, device=h100, start=job.started_at)

    config = AgentConfig(
        server_url=web_server.url,
        token=secret,
        hostname="node-e2e",
        tick_s=0.05,
        window_s=0.25,
        spool_dir=str(tmp_path / "spool"),
        backend="sim",
        proc_root=str(tmp_path / "proc"),
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        shutdown_flush_s=15.0,
    )
    nvml = FakeNvml(
        [
            {"model": "H100", "workload": "llm_training", "job_key": "slurm:4242", "uuid": "GPU-e2e-0"},
            {"model": "A100", "workload": "idle", "uuid": "GPU-e2e-1"},
        ],
        hostname=config.hostname,
        proc_tree=SimProcTree(config.proc_root),
    )
    agent = MeasuringAgent(config, nvml=nvml, host_power=SimHostPower(nvml))
    runner = threading.Thread(target=agent.run, kwargs={"duration_s": 6.0}, daemon=True)
    runner.start()
    time.sleep(1.5)
    web_server.stop()  # outage: the agent keeps measuring into its spool
    time.sleep(2.0)
    web_server.start()
    runner.join(timeout=60)
    assert not runner.is_alive()
    reopened = Spool(config.spool_dir, max_windows=config.spool_max_windows)
    assert reopened.stats()["depth_windows"] == 0, "everything was delivered after the outage"
    assert reopened.stats()["dead_letter_batches"] == 0

    with connection.cursor() as cursor:
        cursor.execute("SELECT seq FROM telemetry_hostwindow WHERE host_id = %s ORDER BY seq", [host.pk])
        stored_seqs = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT COALESCE(SUM(energy_j), 0) FROM telemetry_gpuwindow WHERE host_id = %s", [host.pk])
        stored_gpu_j = cursor.fetchone()[0]
    assert stored_seqs == agent.seqs  # every window once, in order
    pks = list(TelemetryBatch.objects.values_list("pk", flat=True))
    batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC))

    ledger_it_j = LedgerEntry.objects.exclude(component="facility").aggregate(e=Sum("energy_j"))["e"]
    gap_j = sum(g["energy_j"] or 0.0 for pk in pks for g in batch_findings_get(batch_pk=pk).gaps)
    unmeasured_j = LedgerEntry.objects.filter(component="host_unmeasured").aggregate(e=Sum("energy_j"))["e"] or 0.0
    assert stored_gpu_j > 0
    # Contiguous windows leave no gaps to fill, so the ledger holds exactly what was measured
    # (plus the host's wall power not explained by its components, reported separately).
    assert gap_j == 0.0
    assert ledger_it_j - unmeasured_j == pytest.approx(agent.measured_j, rel=1e-9)
    assert JobFootprint.objects.get(job=job).gpu_energy_j > 0
