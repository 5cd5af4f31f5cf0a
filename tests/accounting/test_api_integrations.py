"""The shipped integrations against a live server: Slurm prolog/epilog (bash + real curl) and
the stdlib Python client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accounting import models as m
from tests import factories as f
from tests.accounting.test_api_support import build_world

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python"))

from carbonledger_client import CarbonLedgerClient, CarbonLedgerError, UnitsReporter  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _slurm(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "integrations" / "slurm" / script)],
        env={"PATH": os.environ["PATH"], "CARBONLEDGER_ENV_FILE": "/dev/null", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_slurm_prolog_registers_each_node_and_epilog_ends(live_server, transactional_db):
    world = build_world()
    base = {
        "CARBONLEDGER_URL": live_server.url,
        "CARBONLEDGER_TOKEN": world.secrets["sched_a"],
        "SLURM_JOB_ID": "777",
        "SLURM_JOB_USER": "alice",
        "SLURM_JOB_NAME": 'sft "v2"',
        "SLURM_JOB_ACCOUNT": "physics",
        "CARBONLEDGER_TEAM_MAP": "physics=recsys",
        "SLURM_JOB_COMMENT": "carbonledger:kind=inference,family=llm",
    }
    first = _slurm("prolog.sh", {**base, "SLURMD_NODENAME": "gpu-node-01", "SLURM_JOB_GPUS": "0-1"})
    assert first.returncode == 0, first.stderr
    second = _slurm("prolog.sh", {**base, "SLURMD_NODENAME": "gpu-node-02", "CUDA_VISIBLE_DEVICES": "2,3"})
    assert second.returncode == 0, second.stderr
    _slurm("prolog.sh", {**base, "SLURMD_NODENAME": "gpu-node-02", "CUDA_VISIBLE_DEVICES": "2,3"})  # retried
    job = m.Job.objects.get(scheduler_job_id="777")
    assert (job.cluster, job.team.slug, job.username, job.name, job.kind, job.family) == (
        world.cluster_a,
        "recsys",
        "alice",
        'sft "v2"',
        "inference",
        "llm",
    )
    assert sorted(job.allocations.values_list("device__uuid", flat=True)) == [
        f.pending_uuid("gpu-node-01", 0),
        f.pending_uuid("gpu-node-01", 1),
        f.pending_uuid("gpu-node-02", 2),
        f.pending_uuid("gpu-node-02", 3),
    ]
    end = _slurm("epilog.sh", {**base, "SLURM_JOB_EXIT_CODE": "1"})
    assert end.returncode == 0, end.stderr
    job.refresh_from_db()
    assert job.status == "failed" and job.ended_at is not None
    assert not job.allocations.filter(end__isnull=True).exists()


def test_slurm_prolog_sends_the_runs_sluid_and_a_requeued_run_adds_its_own(live_server, transactional_db):
    """Slurm 26.05 names the job's cgroup v2 directory with its SLUID (SLURM_JOB_SLUID in the
    prolog's environment since 25.11): the prolog sends it beside SLURM_JOB_ID."""
    world = build_world()
    base = {
        "CARBONLEDGER_URL": live_server.url,
        "CARBONLEDGER_TOKEN": world.secrets["sched_a"],
        "SLURM_JOB_ID": "778",
        "SLURM_JOB_ACCOUNT": "recsys",
        "SLURMD_NODENAME": "gpu-node-01",
        "SLURM_JOB_GPUS": "0",
    }
    for node in ("gpu-node-01", "gpu-node-02"):  # every node of the run sends the same SLUID
        done = _slurm("prolog.sh", {**base, "SLURMD_NODENAME": node, "SLURM_JOB_SLUID": "sEKNKTV3WPV500"})
        assert done.returncode == 0, done.stderr
    job = m.Job.objects.get(scheduler_job_id="778")
    assert job.sluids == ["sEKNKTV3WPV500"]
    # Requeued: a new run, a new SLUID, the same job id; a malformed value is not sent.
    assert _slurm("prolog.sh", {**base, "SLURM_JOB_SLUID": "s5K1KKYAYG5D00"}).returncode == 0
    assert _slurm("prolog.sh", {**base, "SLURM_JOB_SLUID": "s5K1KKYAYG5D0U"}).returncode == 0
    job.refresh_from_db()
    assert job.sluids == ["sEKNKTV3WPV500", "s5K1KKYAYG5D00"]
    # Before 25.11 (or on a site that sets nothing): registered by SLURM_JOB_ID alone.
    assert _slurm("prolog.sh", {**base, "SLURM_JOB_ID": "779"}).returncode == 0
    assert m.Job.objects.get(scheduler_job_id="779").sluids == []


def test_slurm_prolog_never_fails_the_job(live_server, transactional_db):
    world = build_world()
    bad = _slurm(
        "prolog.sh",
        {
            "CARBONLEDGER_URL": live_server.url,
            "CARBONLEDGER_TOKEN": world.secrets["host_a"],
            "SLURM_JOB_ID": "1",
            "SLURM_JOB_ACCOUNT": "recsys",
        },
    )
    assert bad.returncode == 0
    unreachable = _slurm(
        "epilog.sh",
        {
            "CARBONLEDGER_URL": "http://127.0.0.1:9",
            "CARBONLEDGER_TOKEN": "clk_x",
            "SLURM_JOB_ID": "1",
            "CARBONLEDGER_TIMEOUT_S": "1",
        },
    )
    assert unreachable.returncode == 0
    assert m.Job.objects.count() == 0


def test_python_client_units_footprint_and_errors(live_server, transactional_db):
    world = build_world()
    scheduler = CarbonLedgerClient(live_server.url, token=world.secrets["sched_a"])
    job = scheduler.register_job(
        scheduler_job_id="4242",
        team="recsys",
        kind="training",
        family="llm",
        allocation=[{"host": "gpu-node-01", "gpus": [0]}],
    )
    alice = CarbonLedgerClient(live_server.url, token=world.secrets["alice"], cluster=world.cluster_a.pk)
    ticks = iter(range(0, 1000, 30))
    reporter = UnitsReporter(alice, scheduler_job_id="4242", unit="tokens", every_s=60, clock=lambda: next(ticks))
    for _ in range(5):
        reporter.add(1000)
    # Clock ticks 30 s per call: due after the 2nd and the 4th add (cumulative totals).
    assert m.Job.objects.get(pk=job["id"]).units == {"tokens": 4000.0}
    assert reporter.close(quality_metric="val_loss", quality_value=2.5) is True
    stored = m.Job.objects.get(pk=job["id"])
    assert (stored.units, stored.primary_unit, stored.quality_metric, stored.quality_value) == (
        {"tokens": 5000.0},
        "tokens",
        "val_loss",
        2.5,
    )
    footprint = alice.footprint(scheduler_job_id="4242")
    assert (footprint["job"], footprint["is_final"], footprint["primary_unit"]) == (job["id"], False, "tokens")
    assert [j["id"] for j in alice.jobs(team="recsys")["results"]] == [job["id"]]
    with pytest.raises(CarbonLedgerError) as error:
        scheduler.register_job(scheduler_job_id="bad id", team="recsys", kind="training")
    assert (error.value.status, error.value.fields) == (400, ["scheduler_job_id"])
    with pytest.raises(CarbonLedgerError) as forbidden:
        alice.register_job(scheduler_job_id="1", team="recsys", kind="training")
    assert forbidden.value.status == 403
    check = scheduler.budget_check(team="recsys", co2e_g=10.0)
    assert check["decision"] == "ok"


def _watcher():
    sys.path.insert(0, str(ROOT / "integrations" / "kubernetes"))
    import carbonledger_k8s_watcher

    return carbonledger_k8s_watcher


POD = {
    "metadata": {
        "uid": "3f6c1f0e-7d4a-4a55-9b7e-1c2d3e4f5a6b",
        "name": "sft-0",
        "namespace": "ml",
        "labels": {"carbonledger.io/team": "llm", "carbonledger.io/family": "llm"},
    },
    "spec": {
        "nodeName": "gpu-node-01",
        "containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}, {"resources": {}}],
    },
    "status": {"phase": "Running", "startTime": "2026-11-26T10:00:00Z"},
}


def test_kubernetes_pod_mapping():
    watcher = _watcher()
    assert watcher.pod_registration(POD) == {
        "scheduler_job_id": "3f6c1f0e-7d4a-4a55-9b7e-1c2d3e4f5a6b",
        "team": "llm",
        "name": "ml/sft-0",
        "kind": "training",
        "family": "llm",
        "started_at": "2026-11-26T10:00:00Z",
    }
    assert watcher.pod_gpu_count(POD) == 2
    assert watcher.pod_registration({**POD, "metadata": {**POD["metadata"], "labels": {}}}) is None
    assert watcher.pod_registration({**POD, "status": {"phase": "Pending"}}) is None
    assert watcher.pod_exit_state(POD, deleted=False) is None
    assert watcher.pod_exit_state(POD, deleted=True) == "cancelled"
    assert watcher.pod_exit_state({**POD, "status": {"phase": "Succeeded"}}, deleted=True) == "completed"
    assert watcher.pod_exit_state({**POD, "status": {"phase": "Failed"}}, deleted=False) == "failed"
    preempted = {
        "phase": "Failed",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
    }
    assert watcher.pod_exit_state({**POD, "status": preempted}, deleted=False) == "preempted"
