"""At most one attribution nudge waits in the broker, and the task it starts drains the queue.

A nudge per stored batch only lengthened the broker's queue: each message became a task that
claimed what its predecessors had already attributed (benchmarks/soak.py, 30 % of capacity:
6,000 messages waiting after 10 minutes). Real processes: the private Redis and a Celery worker.
"""

from __future__ import annotations

import pytest
import redis

from accounting.services.work_queue import NUDGE_MARK_KEY
from telemetry.models import TelemetryBatch
from tests.integration.conftest import wait_for
from tests.integration.test_pipeline import _all_done, _fleet, _it_energy, _post_batches

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_one_nudge_waits_for_many_batches_and_its_task_attributes_them_all(client, processes):
    broker = redis.Redis.from_url(processes.redis.url)
    host, devices, _job, start, secret = _fleet(n_gpus=2)
    # No worker yet: 60 batches stored, one message waiting (the first store's).
    sent_j = _post_batches(client, host, devices, start, secret, n_batches=60, windows_per_batch=1)
    assert TelemetryBatch.objects.filter(status="pending").count() == 60
    assert broker.llen("celery") == 1
    assert broker.get(NUDGE_MARK_KEY) is not None
    # One worker, one task: it drains all 60 in rounds of at most 25 claims.
    processes.worker("nudge-w1")
    wait_for(_all_done, timeout_s=60, what="the one task to attribute every pending batch")
    assert _it_energy() == pytest.approx(sent_j, rel=1e-12)
    wait_for(
        lambda: broker.llen("celery") == 0 and broker.get(NUDGE_MARK_KEY) is None,
        timeout_s=10,
        what="the queue and the mark to be empty",
    )
    # The task took the mark off: the next store nudges again and is attributed.
    sent_j += _post_batches(client, host, devices, start, secret, n_batches=1, first_seq=61, windows_per_batch=1)
    wait_for(_all_done, timeout_s=30, what="a batch stored after the drain")
    assert _it_energy() == pytest.approx(sent_j, rel=1e-12)
