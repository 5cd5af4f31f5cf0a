"""Replay is an offline import of a recorded trace (issue 19): windows carry the trace's times and
the trace's energy, at any ``replay_speed``; the speed only paces the walk against the real clock."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest

from telemetry.agent.agent import Agent
from telemetry.agent.cli import main
from telemetry.agent.config import AgentConfig, ConfigError
from telemetry.agent.energy import trapezoid_j
from telemetry.agent.gpu import NvmlReader
from telemetry.agent.replay import ReplayNvml
from telemetry.agent.sim import SimProcTree
from telemetry.agent.spool import Spool
from tests.agent.conftest import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
N_S = 25  # rows at 00:00:00 … 00:00:25, one a second
COUNTER0_MJ = 5_000_000_000


def r0_power_w(i: int) -> float:
    return 600.0 + 10 * (i % 5)


def r0_counter_mj(i: int) -> int:
    # Not power x 1 s: the counter is the truth, and a window's energy must be its delta, not power.
    return COUNTER0_MJ + sum(600_000 + 10_000 * (k % 5) + 7 for k in range(1, i + 1))


def r1_power_w(i: int) -> float:
    return 100.0 + 20 * (i % 7)


def write_trace(path) -> None:
    """An H100 with the energy counter (one Slurm process) and a counter-less A100, both at 1 s."""
    lines = ["timestamp,gpu_uuid,power_w,energy_mj,util_pct,name,index,power_limit_w,pid,job_key,sm_util_pct"]
    for i in range(N_S + 1):
        ts = f"2026-01-01T00:00:{i:02d}Z"
        lines.append(f"{ts},GPU-r0,{r0_power_w(i)},{r0_counter_mj(i)},90,NVIDIA H100 80GB HBM3,0,700,11,slurm:5,88")
        lines.append(f"{ts},GPU-r1,{r1_power_w(i)},,40,NVIDIA A100-SXM4-80GB,1,400,,,")
    path.write_text("\n".join(lines) + "\n")


def expected_windows() -> list[tuple[str, str, float, int, float]]:
    """(start, end, H100 counter delta J, H100 counter at end, A100 trapezoid J) per 10 s window."""
    out = []
    for a, b in ((0, 10), (10, 20), (20, 25)):
        counter_j = (r0_counter_mj(b) - r0_counter_mj(a)) / 1000.0
        trap_j = trapezoid_j(list(range(a, b + 1)), [r1_power_w(i) for i in range(a, b + 1)])
        out.append(
            (f"2026-01-01T00:00:{a:02d}.000Z", f"2026-01-01T00:00:{b:02d}.000Z", counter_j, r0_counter_mj(b), trap_j)
        )
    return out


class PacedStop(threading.Event):
    """The agent's stop event with waits that advance a manual clock: pacing without sleeping."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock
        self.waited: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waited.append(timeout)
        self.clock.advance(timeout)
        return self.is_set()


def replay_agent(tmp_path, name: str, **kw) -> tuple[Agent, PacedStop]:
    clock = ManualClock()
    config = AgentConfig(
        hostname="replayed-node",
        tick_s=1.0,
        window_s=10.0,
        spool_dir=str(tmp_path / name / "spool"),
        backend="replay",
        replay_file=str(tmp_path / "trace.csv"),
        proc_root=str(tmp_path / name / "proc"),
        **kw,
    ).validate()
    agent = Agent(config, clock=clock)
    agent.stop_event = stop = PacedStop(clock)
    return agent, stop


def spooled(agent: Agent) -> list[dict]:
    """The windows a finished run left in its spool (shutdown closed the agent's handle)."""
    spool = Spool(agent.config.spool_dir)
    try:
        batch = spool.next_batch(1000)
        return [] if batch is None else batch.windows
    finally:
        spool.close()


@pytest.fixture
def agent_events():
    """Events the agent logs (its logger may not propagate: setup_logging turns that off)."""
    events: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("carbonledger.agent")
    logger.addHandler(handler)
    yield events
    logger.removeHandler(handler)


def test_replay_keeps_recorded_times_and_energy_at_every_speed(tmp_path, agent_events):
    write_trace(tmp_path / "trace.csv")
    expected = expected_windows()
    # The figures themselves, so a change to the helpers above cannot hide a change in meaning.
    assert [(e[2], e[4]) for e in expected] == [(6200.07, 1510.0), (6200.07, 1690.0), (3100.035, 720.0)]
    runs = {}
    for speed in (1.0, 10.0, 100.0, 0.0):
        agent, stop = replay_agent(tmp_path, f"speed-{speed}", replay_speed=speed)
        agent.run()
        windows = spooled(agent)
        assert agent_events == ["energy_counter_unsupported"]  # the A100; no counter "reset"
        agent_events.clear()
        # The speed paces the walk: 25 trace seconds take 25 / speed real seconds (0: no waits).
        if speed:
            assert len(stop.waited) == N_S and sum(stop.waited) == pytest.approx(N_S / speed)
        else:
            assert stop.waited == []
        assert [w["seq"] for w in windows] == list(range(windows[0]["seq"], windows[0]["seq"] + 3))
        got = []
        for w in windows:
            h100, a100 = w["gpus"]
            start, end = datetime.fromisoformat(w["start"]), datetime.fromisoformat(w["end"])
            assert start.tzinfo == UTC and end.tzinfo == UTC
            assert (h100["uuid"], h100["quality"], a100["uuid"], a100["quality"]) == (
                "GPU-r0",
                "measured",
                "GPU-r1",
                "integrated",
            )
            assert h100["avg_power_w"] <= 700 and a100["avg_power_w"] <= 400  # nothing impossible
            assert h100["processes"] == [{"pid": 11, "sm_util_pct": 88.0, "job_key": "slurm:5"}]
            assert w["host"] == {
                "cpu_energy_j": 0.0,
                "dram_energy_j": 0.0,
                "wall_energy_j": None,
                "cpu_util_pct": 0.0,
                "quality": "modelled",
            }
            got.append((w["start"], w["end"], h100["energy_j"], h100["counter_mj"], a100["energy_j"]))
        assert got == expected
        assert windows[0]["start"] == "2026-01-01T00:00:00.000Z" and windows[-1]["end"] == "2026-01-01T00:00:25.000Z"
        assert sum(w["gpus"][0]["energy_j"] for w in windows) == pytest.approx(15_500.175, abs=1e-9)
        assert sum(w["gpus"][1]["energy_j"] for w in windows) == 3920.0
        assert [w["gpus"][0]["avg_power_w"] for w in windows] == [620.007, 620.007, 620.007]
        runs[speed] = [{k: v for k, v in w.items() if k != "seq"} for w in windows]
    assert runs[1.0] == runs[10.0] == runs[100.0] == runs[0.0]


def test_replay_duration_stops_at_a_recorded_instant(tmp_path):
    write_trace(tmp_path / "trace.csv")
    agent, stop = replay_agent(tmp_path, "short", replay_speed=2.0)
    agent.run(duration_s=6.0)  # 12 trace seconds: the instant at 00:00:12 is due as time is up
    assert sum(stop.waited) == 6.0
    assert [(w["start"], w["end"], w["gpus"][0]["energy_j"]) for w in spooled(agent)] == [
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:10.000Z", 6200.07),
        ("2026-01-01T00:00:10.000Z", "2026-01-01T00:00:11.000Z", 610.007),
    ]


def test_replay_loop_continues_the_recorded_clock_and_counter(tmp_path):
    write_trace(tmp_path / "trace.csv")
    agent, _stop = replay_agent(tmp_path, "loop", replay_speed=0.0, replay_loop=True)
    replay = agent.replay
    assert replay is not None
    agent.run(should_stop=lambda: replay.trace_time() >= T0 + 60)
    windows = spooled(agent)
    # Lap k is the trace shifted by k x 25 s; its counter continues from the lap before.
    assert [(w["start"][11:19], w["end"][11:19]) for w in windows] == [
        ("00:00:00", "00:00:10"),
        ("00:00:10", "00:00:20"),
        ("00:00:20", "00:00:30"),
        ("00:00:30", "00:00:40"),
        ("00:00:40", "00:00:50"),
        ("00:00:50", "00:01:00"),
    ]
    assert [w["gpus"][0]["energy_j"] for w in windows] == [6200.07] * 6
    assert windows[-1]["gpus"][0]["counter_mj"] == COUNTER0_MJ + 2 * 15_500_175 + 6_200_070
    # Process samples of later laps are later samples, so SM utilisation keeps being reported.
    assert {w["gpus"][0]["processes"][0]["sm_util_pct"] for w in windows} == {88.0}


def test_replay_reader_reads_the_trace_at_its_cursor(tmp_path):
    csv_path = tmp_path / "trace.csv"
    csv_path.write_text(
        "timestamp,gpu_uuid,power_w,energy_mj,util_pct,pid,job_key,sm_util_pct\n"
        "2026-01-01T00:00:00Z,GPU-r0,300,1000000,90,11,slurm:5,88\n"
        "2026-01-01T00:00:01Z,GPU-r0,310,1305000,91,11,slurm:5,89\n"
        "2026-01-01T00:00:00Z,GPU-r1,50,,0,,,\n"
        "2026-01-01T00:00:01.5Z,GPU-r1,70,,10,,,\n"
    )
    nvml = ReplayNvml(csv_path, proc_tree=SimProcTree(tmp_path / "proc"))
    reader = NvmlReader(nvml, clock=nvml.trace_time)
    reader.open()
    assert nvml.advance() == T0
    s0 = reader.sample()
    assert nvml.advance() == T0 + 1.0
    s1 = reader.sample()
    assert [(x.energy_mj, x.power_w, x.mono_s) for x in s0] == [(1000000, 300.0, T0), (None, 50.0, T0)]
    # GPU-r1 has no row at 00:00:01: it holds its latest earlier one.
    assert [(x.energy_mj, x.power_w, x.processes) for x in s1] == [(1305000, 310.0, {11: 89.0}), (None, 50.0, {})]
    assert nvml.next_time() == T0 + 1.5
    nvml.advance()
    assert [(x.energy_mj, x.power_w, x.mono_s) for x in reader.sample()] == [
        (1305000, 310.0, T0 + 1.5),
        (None, 70.0, T0 + 1.5),
    ]
    assert nvml.next_time() is None
    with pytest.raises(IndexError):
        nvml.advance()
    from telemetry.agent.jobs import JobMapper

    assert JobMapper(str(tmp_path / "proc")).resolve(11).job_key == "slurm:5"


def test_replay_speed_must_be_non_negative():
    with pytest.raises(ConfigError, match="replay_speed"):
        AgentConfig(backend="replay", replay_file="t.csv", replay_speed=-1.0).validate()
    with pytest.raises(ConfigError, match="replay_speed"):
        AgentConfig(backend="replay", replay_file="t.csv", replay_speed=float("nan")).validate()


def test_cli_replay_posts_recorded_times_and_exact_energy(tmp_path, ingest_server, monkeypatch):
    monkeypatch.delenv("CARBONLEDGER_CONFIG", raising=False)
    write_trace(tmp_path / "trace.csv")
    for speed in ("100", "0"):
        host = f"replayed-{speed}"
        argv = [
            "run",
            "--backend",
            "replay",
            "--replay-file",
            str(tmp_path / "trace.csv"),
            "--replay-speed",
            speed,
            "--server-url",
            ingest_server.url,
            "--token",
            "tok",
            "--hostname",
            host,
            "--tick-s",
            "1",
            "--window-s",
            "10",
            "--spool-dir",
            str(tmp_path / host / "spool"),
            "--proc-root",
            str(tmp_path / host / "proc"),
        ]
        assert main(argv) == 0
        bodies = [r["body"] for r in ingest_server.requests if r["body"]["hostname"] == host]
        assert bodies and {r["auth"] for r in ingest_server.requests} == {"Bearer tok"}
        # sent_at is the real time of sending; the windows keep the trace's.
        now = datetime.now(UTC)
        assert all(abs((datetime.fromisoformat(b["sent_at"]) - now).total_seconds()) < 60 for b in bodies)
        windows = [w for b in bodies for w in b["windows"]]
        assert [
            (w["start"], w["end"], w["gpus"][0]["energy_j"], w["gpus"][0]["counter_mj"], w["gpus"][1]["energy_j"])
            for w in windows
        ] == expected_windows()
        assert ingest_server.accepted[host] == windows  # every window once, seqs increasing
