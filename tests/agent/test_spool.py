from __future__ import annotations

import logging
import os
import uuid

from telemetry.agent.ids import random_uuid4, uuid4_text
from telemetry.agent.spool import Spool


def window(i: int) -> dict:
    return {
        "start": f"2026-01-01T00:00:{i:02d}.000Z",
        "end": f"2026-01-01T00:00:{i + 1:02d}.000Z",
        "host": {"cpu_energy_j": float(i)},
        "gpus": [],
    }


def test_spool_survives_restart_with_batches_seq_and_ids(tmp_path):
    s = Spool(tmp_path, initial_seq=1)
    assert [s.add_window(window(i)) for i in range(5)] == [1, 2, 3, 4, 5]
    batch = s.next_batch(3)
    assert (batch.first_seq, batch.last_seq) == (1, 3)
    s.record_attempt(batch)
    s.close()

    s2 = Spool(tmp_path, initial_seq=1)  # initial_seq only applies to a new spool
    again = s2.next_batch(3)
    # Same batch, same batch_id: a retry after a restart is recognisable as a duplicate.
    assert (again.batch_id, again.first_seq, again.last_seq, again.attempts) == (batch.batch_id, 1, 3, 1)
    assert [w["seq"] for w in again.windows] == [1, 2, 3]
    assert again.windows[2] == {"seq": 3, **window(2)}
    s2.ack(again, sent_at=123.5)
    assert s2.add_window(window(5)) == 6
    nxt = s2.next_batch(10)
    assert [w["seq"] for w in nxt.windows] == [4, 5, 6]
    assert s2.stats() == {
        "pending_windows": 0,
        "unsent_batches": 1,
        "depth_windows": 3,
        "dead_letter_batches": 0,
        "dropped_windows": 0,
        "next_seq": 7,
        "last_sent_seq": 3,
        "last_send_at": 123.5,
    }
    s2.close()


def test_spool_evicts_oldest_loudly_and_counts(tmp_path, caplog):
    s = Spool(tmp_path, max_windows=4, initial_seq=10)
    for i in range(3):
        s.add_window(window(i))
    b = s.next_batch(2)  # seqs 10, 11 in a batch; 12 pending
    assert (b.first_seq, b.last_seq) == (10, 11)
    with caplog.at_level(logging.ERROR, logger="carbonledger.agent.spool"):
        s.add_window(window(3))  # 4 windows: at the bound
        s.add_window(window(4))  # 5: the oldest batch (2 windows) goes
    assert "spool_full_dropped_oldest" in caplog.text
    st = s.stats()
    assert (st["dropped_windows"], st["depth_windows"], st["unsent_batches"]) == (2, 3, 0)
    assert [w["seq"] for w in s.next_batch(10).windows] == [12, 13, 14]
    s.close()


def test_spool_seed_is_clock_based_when_new(tmp_path):
    import time

    before = int(time.time())
    s = Spool(tmp_path)
    seq = s.add_window(window(0))
    assert before <= seq <= int(time.time())
    s.close()


def test_dead_letter_keeps_problem(tmp_path):
    s = Spool(tmp_path, initial_seq=1)
    s.add_window(window(0))
    b = s.next_batch(5)
    s.dead_letter(b, status=422, problem='{"detail": "windows[0].end"}')
    assert s.next_batch(5) is None
    (dl,) = s.dead_letters()
    assert (dl["batch_id"], dl["status"], dl["problem"], dl["first_seq"]) == (
        b.batch_id,
        422,
        '{"detail": "windows[0].end"}',
        1,
    )
    assert s.stats()["dead_letter_batches"] == 1
    s.close()


def test_uuid4_text_matches_the_uuid_module():
    for raw in (bytes(16), b"\xff" * 16, *(os.urandom(16) for _ in range(200))):
        assert uuid4_text(raw) == str(uuid.UUID(bytes=raw, version=4))
    batch_id = random_uuid4()
    assert uuid.UUID(batch_id).version == 4 and str(uuid.UUID(batch_id)) == batch_id
