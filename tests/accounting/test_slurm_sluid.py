"""Slurm 26.05 SLUID keys (issue 15 follow-up): the agent reports ``slurm:<SLUID>`` for a process
in a SLUID-named cgroup, ``slurm:<id>`` for one in a ``job_<id>`` cgroup (CgroupJobIdPaths=yes,
or Slurm before 26.05); the prolog registers the numeric id with the run's SLUID, and the job
answers to both keys through ingest and attribution."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from accounting.api.serializers import JobRegisterSerializer
from accounting.models import ApiToken, Job, JobAllocation, LedgerEntry
from accounting.services.allocations import AllocationSpec
from accounting.services.attribution import batches_attribute
from accounting.services.jobs import job_register
from accounting.tokens import token_create
from telemetry.agent.jobs import JobMapper
from telemetry.models import TelemetryBatch
from tests.agent.test_jobs import proc
from tests.factories import DeviceFactory, HostFactory, TeamFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db(transaction=False)
SLUID = "sEKNKTV3WPV500"  # Slurm's own example (cgroup.conf(5))


def _energy(**filters) -> float:
    return math.fsum(LedgerEntry.objects.filter(**filters).values_list("energy_j", flat=True))


def test_a_shared_gpu_split_by_processes_found_in_both_cgroup_layouts(client, tmp_path: Path):
    """One time-sliced H100 (idle 70 W) held half and half by job 4242 (26.05 node: SLUID cgroup)
    and job 4243 (a node with CgroupJobIdPaths=yes: job_4243). 3,200 J in 10 s: idle 700 J
    split 350 / 350; active 2,500 J by the processes' SM utilisation 75 : 25 = 1,875 / 625 J.
    Without the SLUID the first process would match no job: its 75 % split by fraction, 937.5 /
    1,562.5 J."""
    host = HostFactory(hostname="gpu-node-07", gpu_slots=1)
    gpu = DeviceFactory(host=host, index=0)
    team = TeamFactory(org=host.cluster.site.org)
    t0 = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    common = dict(org=team.org, cluster=host.cluster, team=team, kind="training", started_at=t0)
    half = [AllocationSpec(host=host.hostname, gpus=(0,), fraction=0.5)]
    a = job_register(scheduler_job_id="4242", allocation=half, sluid=SLUID.lower(), **common).job
    b = job_register(scheduler_job_id="4243", allocation=half, **common).job
    assert (a.sluids, b.sluids) == ([SLUID], [])  # stored as Slurm prints it

    # The agent's job mapper on a fake /proc: one process per layout.
    proc(tmp_path, 501, cgroup=f"0::/system.slice/slurmstepd.scope/{SLUID}/step_0/user/task_0\n")
    proc(tmp_path, 502, cgroup="0::/system.slice/slurmstepd.scope/job_4243/step_0/user/task_0\n")
    mapper = JobMapper(str(tmp_path))
    keys = {pid: mapper.resolve(pid).job_key for pid in (501, 502)}
    assert keys == {501: f"slurm:{SLUID}", 502: "slurm:4243"}

    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    processes = [
        {"pid": 501, "sm_util_pct": 75.0, "job_key": keys[501]},
        {"pid": 502, "sm_util_pct": 25.0, "job_key": keys[502]},
    ]
    wire = window(
        seq=1,
        start=t0 + dt.timedelta(minutes=5),
        gpus=[gpu_entry(uuid_=gpu.uuid, energy_j=3200.0, processes=processes)],
        cpu_energy_j=0.0,
        dram_energy_j=0.0,
    )
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=[wire])).status_code == 202
    pk = TelemetryBatch.objects.get().pk
    assert batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC)).attributed == [pk]

    assert _energy(job=a, component="gpu_idle") == pytest.approx(350.0, rel=1e-12)
    assert _energy(job=b, component="gpu_idle") == pytest.approx(350.0, rel=1e-12)
    assert _energy(job=a, component="gpu_active") == pytest.approx(1875.0, rel=1e-12)
    assert _energy(job=b, component="gpu_active") == pytest.approx(625.0, rel=1e-12)
    assert JobAllocation.objects.filter(source="observed").count() == 0  # no guessed allocation


def test_a_requeued_run_adds_its_sluid_once_and_its_gpus_are_re_attributed(client):
    """Processes seen under a SLUID the server did not know yet were nobody's: when the prolog
    of a requeued run brings it, the batches of the job's GPUs go back to attribution."""
    host = HostFactory(hostname="gpu-node-08")
    gpu = DeviceFactory(host=host, index=0)
    team = TeamFactory(org=host.cluster.site.org)
    t0 = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    common = dict(org=team.org, cluster=host.cluster, team=team, kind="training", started_at=t0)
    whole = [AllocationSpec(host=host.hostname, gpus=(0,))]
    job = job_register(scheduler_job_id="5150", allocation=whole, sluid="s5K1KKYAYG5D00", **common).job
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    wire = window(seq=1, start=t0 + dt.timedelta(minutes=1), gpus=[gpu_entry(uuid_=gpu.uuid)])
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=[wire])).status_code == 202
    pk = TelemetryBatch.objects.get().pk
    assert batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC)).attributed == [pk]

    again = job_register(scheduler_job_id="5150", allocation=whole, sluid="s5K1KKYAYG5D00", **common)
    assert again.created is False and Job.objects.get(pk=job.pk).sluids == ["s5K1KKYAYG5D00"]
    assert TelemetryBatch.objects.get(pk=pk).status == "done"  # nothing new: nothing to redo
    job_register(scheduler_job_id="5150", allocation=whole, sluid=SLUID, **common)
    assert Job.objects.get(pk=job.pk).sluids == ["s5K1KKYAYG5D00", SLUID]
    assert TelemetryBatch.objects.get(pk=pk).status == "pending"


@pytest.mark.parametrize(
    "value", ["sEKNKTV3WPV50", "sEKNKTV3WPVU00", "xEKNKTV3WPV500", "4242", "sEKNKTV3WPV5000", "s EKNKTV3WPV50"]
)
def test_a_malformed_sluid_is_refused(value):
    body = {"scheduler_job_id": "4242", "team": "t", "kind": "training", "sluid": value}
    serializer = JobRegisterSerializer(data=body)
    assert not serializer.is_valid()
    assert list(serializer.errors) == ["sluid"]
