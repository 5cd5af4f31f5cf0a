from __future__ import annotations

import itertools
import json
import threading
import time

import pynvml
import pytest

from telemetry.agent.agent import Agent
from telemetry.agent.cli import main
from telemetry.agent.config import AgentConfig, ConfigError, load_config
from telemetry.agent.fleet import FleetError, parse_fleet, rotate_job_key, run_fleet
from telemetry.agent.gpu import NvmlReader
from telemetry.agent.sim import FakeNvml, SimHostPower, SimProcTree
from tests.agent.conftest import IngestServer


def agent_config(tmp_path, url: str, **kw) -> AgentConfig:
    return AgentConfig(
        server_url=url,
        token="tok",
        hostname="node-e2e",
        tick_s=0.05,
        window_s=0.2,
        spool_dir=str(tmp_path / "spool"),
        backend="sim",
        proc_root=str(tmp_path / "proc"),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        shutdown_flush_s=2.0,
        **kw,
    )


def make_agent(tmp_path, url: str) -> Agent:
    cfg = agent_config(tmp_path, url)
    nvml = FakeNvml(
        [{"model": "H100", "workload": "llm_training", "job_key": "slurm:4242"}, {"model": "A100", "workload": "idle"}],
        hostname=cfg.hostname,
        proc_tree=SimProcTree(cfg.proc_root),
    )
    return Agent(cfg, nvml=nvml, host_power=SimHostPower(nvml))


def test_agent_outage_and_restart_deliver_every_window_once(tmp_path):
    server = IngestServer()
    port = server.port
    agent = make_agent(tmp_path, server.url)
    t = threading.Thread(target=agent.run, kwargs={"duration_s": 0.5}, daemon=True)
    t.start()
    time.sleep(0.25)
    server.stop()  # outage while the agent keeps measuring
    t.join(10)
    first_run = agent.windows_closed
    assert first_run >= 2

    # Restart: the spool still holds what the outage kept back; the server is back.
    server = IngestServer(port, share=server)
    agent2 = make_agent(tmp_path, server.url)
    agent2.run(duration_s=0.45)
    server.stop()
    got = server.accepted["node-e2e"]
    seqs = [w["seq"] for w in got]
    assert seqs == list(range(seqs[0], seqs[0] + first_run + agent2.windows_closed))
    for a, b in itertools.pairwise(got):
        if b["seq"] == a["seq"] + 1 and a["end"] == b["start"]:
            continue
        assert b["start"] > a["end"]  # only the restart leaves a gap; never an overlap
    w = got[1]
    h100, a100 = w["gpus"]
    assert h100["name"] == "NVIDIA H100 80GB HBM3" and h100["quality"] == "measured"
    assert [p["job_key"] for p in h100["processes"]] == ["slurm:4242"]
    assert a100["processes"] == [] and a100["power_limit_w"] == 400.0
    assert w["host"]["quality"] == "modelled" and w["host"]["wall_energy_j"] > 0
    # Within one run, window energies add up to the counter's advance (conservation).
    run1 = got[:first_run]
    total = sum(x["gpus"][0]["energy_j"] for x in run1[1:])
    assert abs(total - (run1[-1]["gpus"][0]["counter_mj"] - run1[0]["gpus"][0]["counter_mj"]) / 1000.0) < 0.01


def test_fleet_runs_several_hosts_with_own_identity(tmp_path, ingest_server):
    doc = {
        "server_url": ingest_server.url,
        "window_s": 0.2,
        "tick_s": 0.05,
        "seed": 3,
        "hosts": [
            {
                "hostname": "gpu-a",
                "token": "tok-a",
                "gpus": [
                    {"model": "H100", "workload": "llm_training", "job_key": "slurm:1001"},
                    {"model": "H100", "workload": "llm_training", "job_key": "slurm:1001"},
                ],
                "schedule": {
                    "events": [
                        {
                            "at_s": 0.3,
                            "gpus": [1],
                            "workload": "moe_inference",
                            "job_key": "k8s:1f0c3c8e-5b7a-4d59-9a0e-2f6d8c1b7a42",
                        }
                    ]
                },
            },
            {
                "hostname": "gpu-b",
                "token": "tok-b",
                "gpus": [{"model": "V100", "workload": "recsys_inference", "job_key": "env:ranker"}],
                "rotate_jobs_s": 0.3,
            },
        ],
    }
    from telemetry.agent import fleet as fleet_mod

    spec = parse_fleet(doc)
    fl = fleet_mod.Fleet(spec, tmp_path, min_tick_s=0.01)
    fl.start(duration_s=0.8)
    fl.join(10)
    assert {r["auth"] for r in ingest_server.requests} == {"Bearer tok-a", "Bearer tok-b"}
    a, b = ingest_server.accepted["gpu-a"], ingest_server.accepted["gpu-b"]
    keys_a1 = [p["job_key"] for w in a for p in w["gpus"][1]["processes"]]
    assert keys_a1[0] == "slurm:1001" and keys_a1[-1] == "k8s:1f0c3c8e-5b7a-4d59-9a0e-2f6d8c1b7a42"
    keys_b = {p["job_key"] for w in b for p in w["gpus"][0]["processes"]}
    assert keys_b >= {"env:ranker", "env:ranker-1"}
    assert b[0]["gpus"][0]["name"] == "Tesla V100-SXM2-32GB"
    assert a[0]["gpus"][0]["uuid"] != b[0]["gpus"][0]["uuid"]


def test_fleet_validation_and_rotation():
    with pytest.raises(FleetError, match=r"hosts\[0\].gpus\[0\].model"):
        parse_fleet({"hosts": [{"hostname": "x", "gpus": [{"model": "TPU"}]}]})
    with pytest.raises(FleetError, match="unknown key"):
        parse_fleet({"hosts": [{"hostname": "x", "gpus": [], "colour": 1}]})
    assert rotate_job_key("slurm:1001", 2) == "slurm:3001"
    assert rotate_job_key("env:x", 1) == "env:x-1"
    assert rotate_job_key("k8s:abc", 1).startswith("k8s:") and rotate_job_key("k8s:abc", 1) != "k8s:abc"


def test_mig_instances_and_processes(clock, tmp_path):
    nvml = FakeNvml(
        [
            {
                "model": "A100",
                "workload": "llm_inference",
                "mig": [{"profile": "3g.40gb", "job_key": "slurm:1"}, {"profile": "4g.40gb", "job_key": "slurm:2"}],
            }
        ],
        clock=clock,
        proc_tree=SimProcTree(tmp_path),
    )
    reader = NvmlReader(nvml, clock=clock)
    reader.open()
    assert reader.devices[0].mig_enabled is True
    clock.advance(1.0)
    (s,) = reader.sample()
    assert s.util_pct is None  # NVML reports no device utilisation with MIG on
    assert [len(m.pids) for m in s.mig] == [1, 1]
    assert sorted(s.processes) == sorted(p for m in s.mig for p in m.pids)


def test_config_file_env_and_flags(tmp_path):
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\nserver_url = "https://ingest.example"\ntick_s = 0.5\nwindow_s = 10\nhostname = "n1"\n')
    cfg = load_config(
        f,
        env={"CARBONLEDGER_TOKEN": "secret", "CARBONLEDGER_WINDOW_S": "30"},
        overrides={"hostname": "n2", "tick_s": None},
    )
    assert (cfg.server_url, cfg.token, cfg.tick_s, cfg.window_s, cfg.hostname) == (
        "https://ingest.example",
        "secret",
        0.5,
        30.0,
        "n2",
    )
    with pytest.raises(ConfigError, match="tick_s"):
        load_config(None, env={"CARBONLEDGER_TICK_S": "0.05"})
    with pytest.raises(ConfigError, match="unknown key 'tik_s'"):
        f.write_text("tik_s = 1\n")
        load_config(f, env={})
    with pytest.raises(ConfigError, match="backend"):
        load_config(None, env={"CARBONLEDGER_BACKEND": "rocm"})


def test_probe_without_nvml_exits_2_with_message(tmp_path, capsys):
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        pynvml.nvmlInit()  # this machine has no GPU driver: the real library path is exercised
    rc = main(["probe", "--spool-dir", str(tmp_path)])
    assert rc == 2
    assert "NVML is not available (NVML Shared Library Not Found)" in capsys.readouterr().err


def test_probe_sim_and_status(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CARBONLEDGER_CONFIG", raising=False)
    assert main(["probe", "--backend", "sim", "--interval", "0.2", "--spool-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3" and out["gpus"][0]["energy_source"] == "counter"
    assert (
        main(
            [
                "run",
                "--backend",
                "sim",
                "--tick-s",
                "0.1",
                "--window-s",
                "0.2",
                "--duration",
                "0.5",
                "--spool-dir",
                str(tmp_path),
                "--proc-root",
                str(tmp_path / "proc"),
                "--hostname",
                "h1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["status", "--json", "--spool-dir", str(tmp_path), "--hostname", "h1"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["depth_windows"] >= 2 and st["dropped_windows"] == 0 and st["last_send_at"] is None
    assert st["agent"]["gpus"][0]["energy_counter"] is True


def test_run_fleet_entry_point(tmp_path, ingest_server):
    doc = {
        "server_url": ingest_server.url,
        "window_s": 1,
        "tick_s": 0.1,
        "hosts": [{"hostname": "solo", "token": "t", "gpus": [{"model": "L4", "workload": "idle"}]}],
    }
    stop = threading.Event()
    threading.Timer(1.3, stop.set).start()
    fleet = run_fleet(doc, tmp_path, stop=stop)
    assert fleet.hosts[0].agent.windows_closed >= 1
    assert len(ingest_server.accepted["solo"]) == fleet.hosts[0].agent.windows_closed
