"""import_sacct: parsing of sacct -P output, steps skipped, idempotent, rejected lines reported."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from accounting import models as m
from accounting.management.commands.import_sacct import expand_hostlist, parse_elapsed_s, parse_tres, tres_gpus
from tests import factories as f

pytestmark = pytest.mark.django_db
UTC = dt.UTC

SACCT = """\
JobID|JobName|User|Account|State|Start|End|Elapsed|AllocTRES|ConsumedEnergyRaw|NodeList
88123|dlrm-train|alice|recsys|COMPLETED|2026-11-26T10:00:00|2026-11-26T14:00:00|04:00:00|billing=16,cpu=16,gres/gpu=8,mem=64G,node=1|123456789|gpu-node-01
88123.batch|batch||recsys|COMPLETED|2026-11-26T10:00:00|2026-11-26T14:00:00|04:00:00|cpu=16,gres/gpu=8,mem=64G,node=1|123000000|gpu-node-01
88123.extern|extern||recsys|COMPLETED|2026-11-26T10:00:00|2026-11-26T14:00:00|04:00:00|billing=16,cpu=16,gres/gpu=8,mem=64G,node=1|0|gpu-node-01
88124|llm-sft|bob|llm|CANCELLED by 1001|2026-11-26T11:00:00|2026-11-26T11:30:00|00:30:00|cpu=32,gres/gpu:h100=4,gres/gpu:a100=4,node=2|0|gpu-node-[02-03]
88124.0|python|bob|llm|CANCELLED|2026-11-26T11:00:00|2026-11-26T11:30:00|00:30:00|cpu=32,gres/gpu=8,node=2||gpu-node-[02-03]
88125_3|sweep|alice|recsys|RUNNING|2026-11-26T12:00:00|Unknown|1-01:00:00|cpu=8,gres/gpu=1,node=1||gpu-node-04
88126|queued|alice|recsys|PENDING|Unknown|Unknown|00:00:00|billing=1||None assigned
88127|bad-state|alice|recsys|EXPLODED|2026-11-26T12:00:00|2026-11-26T13:00:00|01:00:00|cpu=1|0|gpu-node-01
88128|no-team|carol|physics|COMPLETED|2026-11-26T12:00:00|2026-11-26T13:00:00|01:00:00|cpu=1|0|gpu-node-01
88129|short-line|alice|recsys|COMPLETED
88130|backwards|alice|recsys|FAILED|2026-11-26T12:00:00|2026-11-26T11:00:00|01:00:00|cpu=1|0|gpu-node-01
"""


@pytest.fixture
def cluster():
    org = f.OrganizationFactory(slug="acme")
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org, slug="paris"), slug="hpc-a")
    f.TeamFactory(org=org, slug="recsys")
    f.TeamFactory(org=org, slug="llm-team")
    host = f.HostFactory(cluster=cluster, hostname="gpu-node-01")
    for index in range(8):
        f.DeviceFactory(host=host, index=index, uuid=f"GPU-node01-{index}")
    return cluster


def run(tmp_path, text=SACCT, *args) -> str:
    path = tmp_path / "sacct.txt"
    path.write_text(text)
    out = StringIO()
    call_command("import_sacct", str(path), "--cluster", "paris/hpc-a", "--team-map", "llm=llm-team", *args, stdout=out)
    return out.getvalue()


def test_parsers():
    assert expand_hostlist("gpu-node-[01-03,07],cpu1") == [
        "gpu-node-01",
        "gpu-node-02",
        "gpu-node-03",
        "gpu-node-07",
        "cpu1",
    ]
    assert expand_hostlist("n[8-10]") == ["n8", "n9", "n10"]
    assert parse_elapsed_s("1-02:03:04") == 93784.0
    assert parse_elapsed_s("03:04") == 184.0
    assert tres_gpus(parse_tres("cpu=32,gres/gpu:h100=4,gres/gpu:a100=4,node=2")) == 8
    assert tres_gpus(parse_tres("billing=16,gres/gpu=8,gres/gpu:a100=8")) == 8
    assert tres_gpus(parse_tres("cpu=1")) == 0


def test_import_report_jobs_and_idempotency(tmp_path, cluster):
    output = run(tmp_path)
    assert output.splitlines()[0] == (
        "imported 3 new job(s), 0 already known, 2 ended; skipped 3 step line(s) and 1 pending job(s); "
        "rejected 4 line(s)"
    )
    assert "line 9: unknown State 'EXPLODED'" in output
    assert "line 10: no team for account 'physics'" in output
    assert "line 11: expected 11 fields, got 5" in output
    assert "line 12: End before Start" in output

    done = m.Job.objects.get(scheduler_job_id="88123")
    assert (done.status, done.started_at, done.ended_at, done.username, done.team.slug) == (
        "completed",
        dt.datetime(2026, 11, 26, 10, tzinfo=UTC),
        dt.datetime(2026, 11, 26, 14, tzinfo=UTC),
        "alice",
        "recsys",
    )
    assert done.model_meta["slurm"] == {
        "gpus": 8,
        "nodes": ["gpu-node-01"],
        "elapsed_s": 14400.0,
        "consumed_energy_j": 123456789.0,
        "state": "COMPLETED",
        "alloc_tres": {"billing": "16", "cpu": "16", "gres/gpu": "8", "mem": "64G", "node": "1"},
    }
    # Whole node (8 of the 8 reported GPUs): allocated, closed at the end.
    assert sorted(done.allocations.values_list("device__index", "end")) == [
        (i, dt.datetime(2026, 11, 26, 14, tzinfo=UTC)) for i in range(8)
    ]
    cancelled = m.Job.objects.get(scheduler_job_id="88124")
    assert (cancelled.status, cancelled.team.slug, cancelled.model_meta["slurm"]["consumed_energy_j"]) == (
        "cancelled",
        "llm-team",
        None,
    )
    assert cancelled.allocations.count() == 0  # nodes the agent has not reported: counts only
    running = m.Job.objects.get(scheduler_job_id="88125_3")
    assert (running.status, running.ended_at) == ("running", None)

    again = run(tmp_path)
    assert again.splitlines()[0].startswith("imported 0 new job(s), 3 already known, 0 ended;")
    assert m.Job.objects.count() == 3
    assert m.JobAllocation.objects.count() == 8


def test_timezone_and_default_team(tmp_path, cluster):
    text = "88200|x|carol|physics|COMPLETED|2026-07-01T12:00:00|2026-07-01T13:00:00|01:00:00|gres/gpu=0|0|n1\n"
    output = run(tmp_path, text, "--timezone", "Europe/Paris", "--default-team", "recsys")
    assert "imported 1 new job(s)" in output
    job = m.Job.objects.get()
    assert (job.started_at, job.team.slug) == (dt.datetime(2026, 7, 1, 10, tzinfo=UTC), "recsys")
