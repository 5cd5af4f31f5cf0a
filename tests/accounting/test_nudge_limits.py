"""The attribution nudge leaves the time limits to the worker.

Celery's ``send_task`` merges the options of a task registered in the *sending* process into the
message, time limits included, and a worker obeys the message's limits over its own. A web or
test process that imported ``workers.tasks`` (settings: the default 60 s hard limit) made a
worker configured for 4 s wait 60 s on a stuck attribution (tests/integration/test_faults.py
failed in the full run only). The nudge states no limit: ``timelimit`` is ``(None, None)``.
"""

from __future__ import annotations

import pytest
from celery import current_app

from accounting.services.work_queue import batches_nudge


@pytest.fixture
def sent(monkeypatch, settings):
    import workers.tasks  # noqa: F401 - registered in this process, as in the full test run

    settings.CARBONLEDGER_SKIP_NUDGE = False
    messages: list = []
    monkeypatch.setattr(
        current_app.amqp, "send_task_message", lambda producer, name, message, **kw: messages.append((name, message))
    )
    monkeypatch.setattr("accounting.services.work_queue._mark_client", lambda: _AlwaysMarks())
    monkeypatch.setattr("accounting.services.work_queue._mark_seen_until_s", {})
    return messages


class _AlwaysMarks:
    def set(self, *args, **kwargs) -> bool:
        return True

    def pipeline(self, **kwargs) -> _Pipeline:
        return _Pipeline()

    def delete(self, *args) -> int:
        return 1


class _Pipeline:
    """SET NX always sets; PTTL says 10 s left."""

    def __enter__(self) -> _Pipeline:
        self.replies: list = []
        return self

    def __exit__(self, *exc) -> None:
        return None

    def set(self, *args, **kwargs) -> None:
        self.replies.append(True)

    def pttl(self, key) -> None:
        self.replies.append(10_000)

    def execute(self) -> list:
        return self.replies


def test_the_nudge_carries_no_time_limit_even_where_the_task_is_registered(sent):
    task = current_app.tasks["ledger.attribute_batch"]
    assert (task.time_limit, task.soft_time_limit) != (None, None)  # the registered task has limits
    batches_nudge(batch_pks=[7])
    [(name, message)] = sent
    assert name == "ledger.attribute_batch"
    assert list(message.headers["timelimit"]) == [None, None]
    assert message.headers["argsrepr"] == "[7]"
