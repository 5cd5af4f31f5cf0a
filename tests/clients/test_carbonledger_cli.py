"""``carbonledger job <id>`` against a live test server, and the Slurm epilog's opt-in summary
written into the job's output file (bash, real curl, the CLI as a separate process)."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accounting import models as m
from accounting.domain.types import METHOD_VERSION
from accounting.services.rollup import job_footprint_finalize
from tests import factories as f
from tests.accounting.test_api_support import T0, build_world

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "clients" / "python" / "carbonledger_cli.py"
sys.path.insert(0, str(ROOT / "clients" / "python"))

from carbonledger_cli import main  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


def _job(world, **overrides) -> m.Job:
    job = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="88123", name="dlrm-train", status="running",
        started_at=T0, units={"tokens": 1.2e9, "samples": 3e6}, primary_unit="tokens", **overrides,
    )  # fmt: skip
    # Two hours of the ledger's roll-up; the footprint is their sum (as the rollup makes it).
    for hour, share in ((0, 0.75), (1, 0.25)):
        m.JobHour.objects.create(
            job=job, hour=T0 + dt.timedelta(hours=hour), energy_j=36e6 * share, gpu_energy_j=28.8e6 * share,
            gpu_idle_energy_j=3.6e6 * share, host_energy_j=3.6e6 * share, facility_energy_j=3.6e6 * share,
            co2e_operational_g=12500.0 * share, co2e_embodied_g=500.0 * share, co2e_low_g=11000.0 * share,
            co2e_high_g=15000.0 * share, held_s=3600.0, measured_gpu_energy_j=26.64e6 * share,
        )  # fmt: skip
    job_footprint_finalize(job_id=job.pk)
    return job


def _summary(url: str, job: m.Job, *, status: str = "running", state: str = "provisional, still accruing") -> str:
    return (
        f'CarbonLedger: job 88123 "dlrm-train" (team recsys, cluster hpc-a, {status})\n'
        "  Energy        10.000 kWh (GPU 8.000 kWh: active 7.000 kWh, idle 1.000 kWh; host 1.000 kWh; "
        "facility 1.000 kWh)\n"
        "  Carbon        13.00 kg CO2e (operational 12.50 kg, embodied 500.0 g; range 11.00 kg to 15.00 kg)\n"
        "  Per samples   12 J, 0.004333 g CO2e (3e+06 samples)\n"
        "  Per tokens    0.03 J, 1.083e-05 g CO2e (1.2e+09 tokens)\n"
        f"  Data quality  92.5 % of GPU energy measured by the energy counter; {state}; method {METHOD_VERSION}\n"
        f"  Dashboard     {url}/jobs/{job.pk}/\n"
    )


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_job_summary_with_a_user_token(live_server):
    world = build_world()
    job = _job(world)
    argv = ["--url", live_server.url, "--token", world.secrets["alice"], "job", "88123", "--cluster"]
    code, out, err = _run([*argv, str(world.cluster_a.pk)])
    assert (code, err) == (0, "")
    assert out == _summary(live_server.url, job)


def test_job_summary_before_any_telemetry_and_without_units(live_server):
    world = build_world()
    job = f.JobFactory(cluster=world.cluster_a, team=world.team, scheduler_job_id="5", name="", started_at=T0)
    code, out, _ = _run(["--url", live_server.url, "--token", world.secrets["sched_a"], "job", "5"])
    assert code == 0
    assert out == (
        f"CarbonLedger: job 5 (team recsys, cluster hpc-a, {job.status})\n"
        "  Energy        0.000 kWh (GPU 0.000 kWh: active 0.000 kWh, idle 0.000 kWh; host 0.000 kWh; facility 0.000 kWh)\n"
        "  Carbon        0.0 g CO2e (operational 0.0 g, embodied 0.0 g; range 0.0 g to 0.0 g)\n"
        "  Per unit      no functional units reported (tokens, samples, queries: see the client's UnitsReporter)\n"
        "  Data quality  no telemetry attributed yet (all zeros); method -\n"
        f"  Dashboard     {live_server.url}/jobs/{job.pk}/\n"
    )


def test_errors_and_usage(live_server, monkeypatch):
    world = build_world()
    _job(world)
    code, out, err = _run(["--url", live_server.url, "--token", world.secrets["other_admin"], "job", "88123"])
    assert (code, out) == (1, "")
    assert err.startswith("carbonledger: HTTP 4")  # another organisation's job: not found
    monkeypatch.delenv("CARBONLEDGER_URL", raising=False)
    monkeypatch.delenv("CARBONLEDGER_TOKEN", raising=False)
    assert _run(["job", "88123"])[0] == 2
    code, _, err = _run(["--url", "http://127.0.0.1:9", "--token", "clk_x", "job", "1"])
    assert code == 1 and err.startswith("carbonledger: cannot reach http://127.0.0.1:9")


def test_the_script_runs_alone_with_the_environment_and_prints_json(live_server, tmp_path):
    world = build_world()
    job = _job(world)
    env = {
        "PATH": os.environ["PATH"],
        "CARBONLEDGER_URL": live_server.url,
        "CARBONLEDGER_TOKEN": world.secrets["sched_a"],
    }
    done = subprocess.run(
        [sys.executable, str(CLI), "job", "88123"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, _summary(live_server.url, job)), done.stderr
    as_json = subprocess.run(
        [sys.executable, str(CLI), "job", "88123", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    import json

    document = json.loads(as_json.stdout)
    assert (document["job"]["id"], document["footprint"]["co2e"]["total_g"]) == (job.pk, 13000.0)


# --- the Slurm epilog -----------------------------------------------------------------------


def _epilog(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "integrations" / "slurm" / "epilog.sh")],
        env={"PATH": os.environ["PATH"], "CARBONLEDGER_ENV_FILE": "/dev/null", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def slurm_env(live_server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    world = build_world()
    job = _job(world)
    env = {
        "CARBONLEDGER_URL": live_server.url,
        "CARBONLEDGER_TOKEN": world.secrets["sched_a"],
        "CARBONLEDGER_CLI": f"{sys.executable} {CLI}",
        "SLURM_JOB_ID": "88123",
        "SLURM_JOB_EXIT_CODE": "0",
        "SLURMD_NODENAME": "gpu-node-01",
        "SLURM_JOB_USER": "root" if os.geteuid() == 0 else os.environ.get("USER", ""),
    }
    return live_server.url, job, env


def test_epilog_appends_the_summary_when_opted_in(slurm_env, tmp_path):
    url, job, env = slurm_env
    out = tmp_path / "slurm-88123.out"
    out.write_text("epoch 3 loss 1.92\n")
    done = _epilog({**env, "CARBONLEDGER_JOB_SUMMARY": "true", "SLURM_JOB_STDOUT": str(out)})
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "epoch 3 loss 1.92\n\n" + _summary(url, job, status="completed", state="final")


def test_epilog_finds_the_output_file_through_scontrol_on_the_first_node_only(slurm_env, tmp_path):
    url, job, env = slurm_env
    out = tmp_path / "slurm-88123.out"
    out.write_text("")
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "show job" ]; then echo "JobId=88123 JobName=dlrm-train"; '
        f'echo "   StdErr={out} StdIn=/dev/null StdOut={out}"; fi\n'
        'if [ "$1 $2" = "show hostnames" ]; then printf "gpu-node-01\\ngpu-node-02\\n"; fi\n'
    )
    scontrol.chmod(0o755)
    base = {**env, "CARBONLEDGER_SCONTROL": str(scontrol), "SLURM_JOB_NODELIST": "gpu-node-[01-02]"}
    base["SLURM_JOB_COMMENT"] = "carbonledger:summary=yes"  # a job opts in without the site default
    second = _epilog({**base, "SLURMD_NODENAME": "gpu-node-02"})
    assert second.returncode == 0 and out.read_text() == ""
    first = _epilog({**base, "SLURMD_NODENAME": "gpu-node-01"})
    assert first.returncode == 0, first.stderr
    assert out.read_text() == "\n" + _summary(url, job, status="completed", state="final")


def test_epilog_writes_nothing_unless_opted_in_or_into_a_link(slurm_env, tmp_path):
    _, _, env = slurm_env
    out = tmp_path / "slurm-88123.out"
    out.write_text("x\n")
    assert _epilog({**env, "SLURM_JOB_STDOUT": str(out)}).returncode == 0  # no opt-in
    opted_out = {**env, "CARBONLEDGER_JOB_SUMMARY": "true", "SLURM_JOB_COMMENT": "carbonledger:summary=no"}
    assert _epilog({**opted_out, "SLURM_JOB_STDOUT": str(out)}).returncode == 0
    assert out.read_text() == "x\n"
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    done = _epilog({**env, "CARBONLEDGER_JOB_SUMMARY": "true", "SLURM_JOB_STDOUT": str(link)})
    assert done.returncode == 0 and target.read_text() == "keep\n"


def test_the_console_scripts_point_at_the_cli():
    import importlib
    import tomllib

    main_project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, function = main_project["project"]["scripts"]["carbonledger"].partition(":")
    entry = getattr(importlib.import_module(module), function)
    assert Path(entry.__code__.co_filename).resolve() == CLI.resolve()
    client = tomllib.loads((ROOT / "packaging" / "client" / "pyproject.toml").read_text())
    assert client["project"]["scripts"] == {"carbonledger": "carbonledger_cli:main"}
    assert client["project"]["dependencies"] == []  # standard library only
    for name in client["tool"]["setuptools"]["py-modules"]:
        assert (ROOT / "clients" / "python" / f"{name}.py").is_file()


# --- inference services -----------------------------------------------------------------------


@pytest.fixture
def vllm_page():
    """A vLLM metrics page served over HTTP, as the sidecar scrapes it."""
    import http.server
    import threading

    body = (ROOT / "tests" / "domain" / "data" / "serving" / "vllm.txt").read_bytes()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


def test_serving_sidecar_pushes_the_servers_counters(live_server, vllm_page):
    world = build_world()
    job = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="svc-7", kind="inference", started_at=T0
    )
    argv = ["--url", live_server.url, "--token", world.secrets["sched_a"], "serving", "svc-7"]
    code, out, err = _run([*argv, "--server", "vllm", "--metrics-url", vllm_page, "--every", "0", "--count", "1"])
    assert (code, err) == (0, "")
    row = m.ServingCounters.objects.get(job=job)
    assert (row.server, row.requests_total, row.input_tokens_total, row.output_tokens_total) == (
        "vllm",
        2000.0,
        2e6,
        5e5,
    )
    assert out == (
        f"carbonledger: vllm counters of svc-7 at {row.at:%Y-%m-%dT%H:%M:%SZ}: 2000 requests, "
        "2000000.0 input tokens, 500000.0 output tokens\n"
    )
    # the inference server is down: reported, exit 1, nothing stored
    code, out, err = _run(
        [*argv, "--server", "vllm", "--metrics-url", "http://127.0.0.1:9/metrics", "--every", "0", "--count", "1"]
    )
    assert (code, out) == (1, "") and err.startswith("carbonledger: push failed:")
    assert m.ServingCounters.objects.filter(job=job).count() == 1


def test_job_summary_of_a_service_has_its_rates(live_server):
    world = build_world()
    job = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="svc-8", name="chat", kind="inference",
        status="completed", started_at=T0, ended_at=T0 + dt.timedelta(hours=2),
    )  # fmt: skip
    for hour, energy in ((0, 20e6), (1, 16e6)):
        m.JobHour.objects.create(
            job=job, hour=T0 + dt.timedelta(hours=hour), energy_j=energy, gpu_energy_j=energy,
            measured_gpu_energy_j=energy, co2e_operational_g=energy / 18e3, co2e_embodied_g=100.0,
        )  # fmt: skip
    job_footprint_finalize(job_id=job.pk)
    for hour, requests, prompt, generation in ((0, 1000.0, 2e6, 5e5), (2, 2200.0, 3.6e6, 9.8e5)):
        m.ServingCounters.objects.create(
            job=job, at=T0 + dt.timedelta(hours=hour), server="vllm", requests_total=requests,
            input_tokens_total=prompt, output_tokens_total=generation,
        )  # fmt: skip
    code, out, _ = _run(["--url", live_server.url, "--token", world.secrets["sched_a"], "job", "svc-8"])
    assert code == 0
    assert out == (
        'CarbonLedger: job svc-8 "chat" (team recsys, cluster hpc-a, completed)\n'
        "  Energy        10.000 kWh (GPU 10.000 kWh: active 10.000 kWh, idle 0.000 kWh; host 0.000 kWh; "
        "facility 0.000 kWh)\n"
        "  Carbon        2,200.0 g CO2e (operational 2,000.0 g, embodied 200.0 g; range 0.0 g to 0.0 g)\n"
        "  Per unit      no functional units reported (tokens, samples, queries: see the client's UnitsReporter)\n"
        "  Service       vllm: 2026-11-26T10:00:00Z to 2026-11-26T12:00:00Z, 2 readings\n"
        "  Per request          3e+04 J, 1.833 g CO2e\n"
        "  Per 1k input tokens  2.25e+04 J, 1.375 g CO2e\n"
        "  Per 1k output tokens 7.5e+04 J, 4.583 g CO2e\n"
        "  Per hour             1.8e+07 J, 1100 g CO2e\n"
        "  Per day              4.32e+08 J, 2.64e+04 g CO2e\n"
        f"  Data quality  100.0 % of GPU energy measured by the energy counter; final; method {METHOD_VERSION}\n"
        f"  Dashboard     {live_server.url}/jobs/{job.pk}/\n"
    )
