from __future__ import annotations

import random
import threading
import time

import pytest

from telemetry.agent.sender import Sender
from telemetry.agent.spool import Spool
from tests.agent.conftest import IngestServer


def window(i: int) -> dict:
    return {
        "start": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
        "end": f"2026-01-01T00:{(i + 1) // 60:02d}:{(i + 1) % 60:02d}.000Z",
        "host": {
            "cpu_energy_j": 1.0,
            "dram_energy_j": 0.5,
            "wall_energy_j": None,
            "cpu_util_pct": 3.0,
            "quality": "modelled",
        },
        "gpus": [],
    }


def make(tmp_path, url: str, **kw) -> tuple[Spool, Sender]:
    spool = Spool(tmp_path / "spool", initial_seq=1)
    sender = Sender(
        spool,
        server_url=url,
        token="tok-1",
        hostname="node-a",
        max_batch_windows=kw.pop("max_batch", 3),
        timeout_s=2.0,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        rng=random.Random(1),
        **kw,
    )
    return spool, sender


def test_batches_in_order_with_auth_and_gzip(tmp_path, ingest_server):
    spool, sender = make(tmp_path, ingest_server.url)
    for i in range(7):
        spool.add_window(window(i))
    assert sender.drain(threading.Event()) is True
    reqs = ingest_server.requests
    assert [r["path"] for r in reqs] == ["/api/v1/ingest/batches"] * 3
    assert {r["auth"] for r in reqs} == {"Bearer tok-1"}
    assert [[w["seq"] for w in r["body"]["windows"]] for r in reqs] == [[1, 2, 3], [4, 5, 6], [7]]
    assert len({r["body"]["batch_id"] for r in reqs}) == 3
    assert reqs[0]["body"]["agent_version"] == "0.1.0" and reqs[0]["body"]["hostname"] == "node-a"
    assert spool.stats()["depth_windows"] == 0 and spool.stats()["last_sent_seq"] == 7
    spool.close()


def test_retry_on_5xx_429_408_and_lost_response_is_not_double_counted(tmp_path, ingest_server):
    spool, sender = make(tmp_path, ingest_server.url)
    for i in range(4):
        spool.add_window(window(i))
    ingest_server.script = [503, 429, "accept_then_503", 408]
    assert sender.drain(threading.Event()) is True
    # Request 3 was committed but its answer lost; request 4 (408) retried; request 5 was answered
    # "duplicate" for the same batch_id; then the second batch went through.
    ids = [r["body"]["batch_id"] for r in ingest_server.requests]
    assert len(ids) == 6 and len(set(ids[:5])) == 1 and ids[5] != ids[0]
    assert [w["seq"] for w in ingest_server.accepted["node-a"]] == [1, 2, 3, 4]
    assert spool.stats()["depth_windows"] == 0
    spool.close()


def test_4xx_dead_letters_and_moves_on(tmp_path, ingest_server, caplog):
    spool, sender = make(tmp_path, ingest_server.url)
    for i in range(6):
        spool.add_window(window(i))
    ingest_server.script = [422]
    with caplog.at_level("ERROR", logger="carbonledger.agent.sender"):
        sender.drain(threading.Event())
    assert "event=batch_dead_lettered" in caplog.text or "batch_dead_lettered" in caplog.text
    assert [w["seq"] for w in ingest_server.accepted["node-a"]] == [4, 5, 6]
    (dl,) = spool.dead_letters()
    assert (dl["status"], dl["first_seq"], dl["last_seq"]) == (422, 1, 3)
    assert "windows[0].gpus[0].energy_j: forced 422" in dl["problem"]
    assert len(ingest_server.requests) == 2  # no retry of the rejected batch
    spool.close()


def test_auth_failure_keeps_batches_for_retry(tmp_path, ingest_server):
    spool, sender = make(tmp_path, ingest_server.url)
    spool.add_window(window(0))
    ingest_server.script = [401, 401]
    sender.drain(threading.Event())
    assert spool.dead_letters() == []
    assert [w["seq"] for w in ingest_server.accepted["node-a"]] == [1]
    spool.close()


def test_backoff_is_exponential_with_jitter_and_capped(tmp_path):
    spool = Spool(tmp_path, initial_seq=1)
    s = Sender(
        spool,
        server_url="http://127.0.0.1:9",
        token="t",
        hostname="h",
        backoff_base_s=1.0,
        backoff_max_s=60.0,
        rng=random.Random(0),
    )
    delays = []
    for failures in range(9):
        s.failures = failures
        delays.append(s.backoff_s())
    for failures, d in enumerate(delays):
        ceiling = min(60.0, 2.0**failures)
        assert ceiling * 0.5 <= d <= ceiling
    s.failures = 0
    assert s.backoff_s(retry_after_s=30.0) == 30.0
    spool.close()


def test_outage_in_the_middle_nothing_lost_nothing_duplicated(tmp_path):
    server = IngestServer()
    port = server.port
    spool, sender = make(tmp_path, server.url, max_batch=2)
    stop = threading.Event()
    t = threading.Thread(target=sender.run, args=(stop,), kwargs={"idle_wait_s": 0.02}, daemon=True)
    t.start()
    try:
        for i in range(5):
            spool.add_window(window(i))
            sender.wake.set()
        deadline = time.monotonic() + 5
        while len(server.accepted.get("node-a", [])) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()  # outage
        for i in range(5, 15):
            spool.add_window(window(i))
            sender.wake.set()
        time.sleep(0.3)
        assert spool.stats()["depth_windows"] == 10  # all kept while the server is down
        server = IngestServer(port, share=server)  # back, same database
        deadline = time.monotonic() + 5
        while spool.stats()["depth_windows"] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(5)
        server.stop()
    assert [w["seq"] for w in server.accepted["node-a"]] == list(range(1, 16))
    assert spool.stats()["depth_windows"] == 0
    spool.close()


@pytest.mark.parametrize("status", [400, 404, 409, 413])
def test_other_4xx_are_permanent(tmp_path, ingest_server, status):
    spool, sender = make(tmp_path, ingest_server.url)
    spool.add_window(window(0))
    ingest_server.script = [status]
    sender.drain(threading.Event())
    assert [d["status"] for d in spool.dead_letters()] == [status]
    spool.close()


def test_batch_interval_holds_windows_until_due_and_shutdown_flushes(tmp_path, ingest_server):
    now = [1000.0]
    spool, sender = make(tmp_path, ingest_server.url, max_batch=5, batch_interval_s=60.0, clock=lambda: now[0])
    seqs = lambda: [[w["seq"] for w in r["body"]["windows"]] for r in ingest_server.requests]  # noqa: E731
    spool.add_window(window(0))
    assert sender.drain(threading.Event()) is False  # held: the first window starts the clock
    now[0] += 30
    spool.add_window(window(1))
    sender.drain(threading.Event())
    assert seqs() == []
    now[0] += 30  # the first window has waited 60 s
    spool.add_window(window(2))
    assert sender.drain(threading.Event()) is True
    assert seqs() == [[1, 2, 3]]
    # A full batch goes at once, whatever the clock says.
    for i in range(3, 8):
        spool.add_window(window(i))
    sender.drain(threading.Event())
    assert seqs() == [[1, 2, 3], [4, 5, 6, 7, 8]]
    # Held windows go out on shutdown.
    spool.add_window(window(8))
    sender.drain(threading.Event())
    assert len(seqs()) == 2
    sender.drain(threading.Event(), deadline=time.monotonic() + 5, flush=True)
    assert seqs()[-1] == [9]
    assert spool.stats()["depth_windows"] == 0
    spool.close()


def test_a_batch_formed_before_a_failure_is_retried_without_waiting_for_the_interval(tmp_path, ingest_server):
    now = [0.0]
    spool, sender = make(tmp_path, ingest_server.url, max_batch=2, batch_interval_s=60.0, clock=lambda: now[0])
    ingest_server.script = [503]
    spool.add_window(window(0))
    spool.add_window(window(1))
    sender.drain(threading.Event())  # full batch: sent, 503, retried after the backoff, accepted
    reqs = ingest_server.requests
    assert len(reqs) == 2 and reqs[0]["body"]["batch_id"] == reqs[1]["body"]["batch_id"]
    assert [w["seq"] for w in ingest_server.accepted["node-a"]] == [1, 2]
    assert spool.stats()["depth_windows"] == 0
    spool.close()


def test_batches_go_as_wire_format_2_by_default_and_as_v1_when_configured(tmp_path, ingest_server):
    spool, sender = make(tmp_path / "v2", ingest_server.url)
    for i in range(2):
        spool.add_window(window(i))
    assert sender.drain(threading.Event()) is True
    raw = ingest_server.requests[-1]["raw"]
    assert raw["format"] == 2 and "windows" in raw and raw["gpus"] == []
    assert raw["windows"] == {"seq": [1, 2], "start_us": [1767225600000000, 1767225601000000],
                              "end_us": [1767225601000000, 1767225602000000]}  # fmt: skip
    assert raw["host"] == {
        "cpu_energy_j": [1.0, 1.0],
        "dram_energy_j": [0.5, 0.5],
        "cpu_util_pct": [3.0, 3.0],
        "quality": ["modelled", "modelled"],
    }  # wall_energy_j null in every window: omitted
    spool.close()
    spool, sender = make(tmp_path / "v1", ingest_server.url, wire_format="v1")
    spool.add_window(window(5))
    assert sender.drain(threading.Event()) is True
    raw = ingest_server.requests[-1]["raw"]
    assert "format" not in raw and [w["seq"] for w in raw["windows"]] == [1]
    spool.close()
    with pytest.raises(ValueError, match="wire_format: must be one of v2, v1, got 'v3'"):
        make(tmp_path / "v3", ingest_server.url, wire_format="v3")


def test_the_wire_format_and_batching_defaults_and_their_validation():
    from telemetry.agent.config import ConfigError, load_config

    config = load_config(env={})
    assert (config.wire_format, config.batch_interval_s, config.max_batch_windows) == ("v2", 60.0, 30)
    assert load_config(env={"CARBONLEDGER_WIRE_FORMAT": "v1"}).wire_format == "v1"
    with pytest.raises(ConfigError, match="wire_format: must be one of v2, v1, got 'msgpack'"):
        load_config(env={"CARBONLEDGER_WIRE_FORMAT": "msgpack"})
