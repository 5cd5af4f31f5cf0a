"""Coalesced nudges (accounting/services/work_queue.py): a process that saw the mark set skips
the Redis round trip for ATTRIBUTION_NUDGE_REUSE_S, and the attribution task claims once more at
least that long after taking the mark, so a store whose nudge was skipped is still claimed by it."""

from __future__ import annotations

import pytest
from celery import current_app

from accounting.services import attribution, work_queue
from accounting.services.attribution import AttributionOutcome
from accounting.services.work_queue import NUDGE_MARK_KEY, batches_nudge, nudge_taken

REUSE_S = 0.25


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now_s += seconds


class FakeBroker:
    """The mark in a dict; every pipeline and delete is logged."""

    def __init__(self) -> None:
        self.mark_left_ms: int | None = None  # None: no mark
        self.calls: list[tuple] = []

    def pipeline(self, **kwargs) -> FakeBroker:
        self.queued: list = []
        return self

    def __enter__(self) -> FakeBroker:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def set(self, key, value, *, nx: bool, ex: int) -> None:
        self.calls.append(("set", key, value, nx, ex))
        if nx and self.mark_left_ms is not None:
            self.queued.append(None)
        else:
            self.mark_left_ms = ex * 1000
            self.queued.append(True)

    def pttl(self, key) -> None:
        self.calls.append(("pttl", key))
        self.queued.append(-2 if self.mark_left_ms is None else self.mark_left_ms)

    def execute(self) -> list:
        return self.queued

    def delete(self, key) -> int:
        self.calls.append(("delete", key))
        gone, self.mark_left_ms = self.mark_left_ms, None
        return 0 if gone is None else 1


@pytest.fixture
def nudges(monkeypatch, settings):
    settings.CARBONLEDGER_SKIP_NUDGE = False
    settings.ATTRIBUTION_NUDGE_REUSE_S = REUSE_S
    clock, broker, sent = Clock(), FakeBroker(), []
    monkeypatch.setattr(work_queue, "time", clock)
    monkeypatch.setattr(work_queue, "_mark_client", lambda: broker)
    monkeypatch.setattr(current_app, "send_task", lambda name, args, **kw: sent.append(args[0]))
    return clock, broker, sent


def test_a_process_that_set_the_mark_skips_redis_for_the_reuse_window(nudges):
    clock, broker, sent = nudges
    batches_nudge(batch_pks=[1])
    assert sent == [1] and len(broker.calls) == 2  # SET NX + PTTL in one round trip
    clock.now_s += 0.249
    batches_nudge(batch_pks=[2])
    assert sent == [1] and len(broker.calls) == 2  # skipped: no Redis call, no message
    clock.now_s += 0.001  # 0.25 s after the first ask: ask again
    batches_nudge(batch_pks=[3])
    assert sent == [1]  # the mark is still there: no second message
    assert broker.calls[2:] == [("set", NUDGE_MARK_KEY, 3, True, 10), ("pttl", NUDGE_MARK_KEY)]


def test_the_skip_never_outlives_the_marks_remaining_lifetime(nudges):
    clock, broker, sent = nudges
    broker.mark_left_ms = 100  # another process's mark, about to expire
    batches_nudge(batch_pks=[1])
    assert sent == []
    clock.now_s += 0.1
    broker.mark_left_ms = None  # expired
    batches_nudge(batch_pks=[2])
    assert sent == [2]  # asked again at 0.1 s (not 0.25 s) and sent


def test_no_skip_once_the_mark_was_seen_gone_and_force_always_asks(nudges):
    _clock, broker, sent = nudges
    batches_nudge(batch_pks=[1])
    broker.delete(NUDGE_MARK_KEY)  # a task took it
    nudge_taken_calls = len(broker.calls)
    batches_nudge(batch_pks=[2], force=True)  # the sweeper: never skipped
    assert sent == [1, 2] and len(broker.calls) == nudge_taken_calls + 2


def test_taking_the_mark_and_a_failed_send_forget_the_mark(nudges, monkeypatch):
    _clock, broker, sent = nudges
    batches_nudge(batch_pks=[1])
    nudge_taken()  # in this process (e.g. a task in the web process)
    batches_nudge(batch_pks=[2])
    assert sent == [1, 2]

    def refuse(name, args, **kw):
        raise ConnectionError("broker gone")

    monkeypatch.setattr(current_app, "send_task", refuse)
    nudge_taken()
    batches_nudge(batch_pks=[3])  # sets the mark, the send fails: mark deleted, nothing remembered
    assert broker.mark_left_ms is None
    monkeypatch.setattr(current_app, "send_task", lambda name, args, **kw: sent.append(args[0]))
    batches_nudge(batch_pks=[4])
    assert sent == [1, 2, 4]


# --- the task side ---------------------------------------------------------------------------


@pytest.fixture
def task_world(monkeypatch, settings):
    import workers.tasks as tasks

    settings.ATTRIBUTION_NUDGE_REUSE_S = REUSE_S
    clock = Clock()
    monkeypatch.setattr(tasks, "time", clock)
    monkeypatch.setattr(work_queue, "nudge_taken", lambda: None)
    rounds: list[tuple[list[int], int, float]] = []
    return tasks, clock, rounds


def _fake_attribute(clock, rounds, pending: list[list[int]], cost_s: float):
    def batches_attribute(*, batch_pks, now, extra, interrupts):
        rounds.append((list(batch_pks), extra, clock.now_s))
        claimed = pending.pop(0) if pending else []
        clock.now_s += cost_s
        return AttributionOutcome(attributed=list(batch_pks) + claimed, skipped=[], failed=[])

    return batches_attribute


def test_the_task_claims_once_more_a_reuse_window_after_taking_the_mark(task_world, monkeypatch):
    tasks, clock, rounds = task_world
    # Round 1 at t=0 finds 2 others (not full); a store that skipped its nudge commits meanwhile
    # and is found by the round at t = 0.25 s.
    monkeypatch.setattr(attribution, "batches_attribute", _fake_attribute(clock, rounds, [[2, 3], [4]], 0.05))
    totals = tasks.attribute_batch.run(1)
    assert [(pks, extra, round(at - 1000.0, 6)) for pks, extra, at in rounds] == [
        ([1], 24, 0.0),
        ([], 25, REUSE_S),
    ]
    assert clock.slept == [0.2]  # 0.25 s after taking the mark, less the 0.05 s of round 1
    assert totals == {"attributed": 4, "skipped": 0, "failed": 0, "rounds": 2}


def test_a_task_already_past_the_window_ends_on_its_first_short_round(task_world, monkeypatch):
    tasks, clock, rounds = task_world
    # Full rounds until t = 0.3 s: the first short round started after the window.
    full = [list(range(10 * i, 10 * i + 25)) for i in range(1, 4)]
    monkeypatch.setattr(attribution, "batches_attribute", _fake_attribute(clock, rounds, [*full, [99]], 0.1))
    totals = tasks.attribute_batch.run(1)
    assert [round(at - 1000.0, 6) for _, _, at in rounds] == [0.0, 0.1, 0.2, 0.3]
    assert clock.slept == []
    assert totals["rounds"] == 4


def test_with_the_window_off_a_short_first_round_ends_the_task(task_world, monkeypatch, settings):
    tasks, clock, rounds = task_world
    settings.ATTRIBUTION_NUDGE_REUSE_S = 0.0
    monkeypatch.setattr(attribution, "batches_attribute", _fake_attribute(clock, rounds, [[2]], 0.05))
    assert tasks.attribute_batch.run(1)["rounds"] == 1
    assert clock.slept == []
