"""telemetry.queue: the work-queue state of stored batches, as the accounting app uses it (claim,
release, reopen, finish, record attempts, counts), checked on rows rather than through mocks."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from accounting.models import Device, Host
from telemetry import queue
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def _batch(host: Host, n: int, *, status: str = "pending", claimed_at: dt.datetime | None = None, **fields):
    """A stored batch of ``host`` covering [T0 + n min, T0 + n + 1 min), received at its end."""
    start = T0 + n * MINUTE
    values = dict(
        host=host,
        batch_id=uuid.uuid4(),
        received_at=start + MINUTE,
        first_start=start,
        last_end=start + MINUTE,
        first_seq=n,
        last_seq=n,
        gpu_window_count=6,
        host_window_count=6,
        gpu_energy_j=1.0,
        host_energy_j=1.0,
        status=status,
        claimed_at=claimed_at,
    )
    values.update(fields)
    return TelemetryBatch.objects.create(**values)


def _state(*batches: TelemetryBatch) -> list[tuple[str, dt.datetime | None]]:
    rows = dict(TelemetryBatch.objects.filter(pk__in=[b.pk for b in batches]).values_list("pk", "status"))
    claims = dict(TelemetryBatch.objects.filter(pk__in=[b.pk for b in batches]).values_list("pk", "claimed_at"))
    return [(rows[b.pk], claims[b.pk]) for b in batches]


@pytest.fixture
def host():
    return HostFactory()


def test_claim_takes_pending_and_stale_claims_then_the_oldest_others(host):
    wanted = _batch(host, 5)
    stale = _batch(host, 1, status="claimed", claimed_at=T0)
    fresh = _batch(host, 2, status="claimed", claimed_at=T0 + 10 * MINUTE)
    done = _batch(host, 0, status="done")
    older, newer = _batch(host, 3), _batch(host, 4)
    now = T0 + 20 * MINUTE
    claimed = queue.batches_claim(batch_pks=[wanted.pk, fresh.pk], now=now, stale_before=T0 + 5 * MINUTE, extra=2)
    # The wanted one (the fresh claim is someone else's), then the two oldest received claimable.
    assert claimed == sorted([wanted.pk, stale.pk, older.pk])
    assert _state(wanted, stale, fresh, done, older, newer) == [
        ("claimed", now),
        ("claimed", now),
        ("claimed", T0 + 10 * MINUTE),
        ("done", None),
        ("claimed", now),
        ("pending", None),
    ]


def test_release_gives_back_only_the_claims_taken_at_that_instant(host):
    mine = _batch(host, 0, status="claimed", claimed_at=T0)
    other = _batch(host, 1, status="claimed", claimed_at=T0 + MINUTE)
    assert queue.batches_release(claimed_at=T0) == 1
    assert _state(mine, other) == [("pending", None), ("claimed", T0 + MINUTE)]


def test_reopen_puts_back_the_batches_of_the_devices_hosts_in_the_range(host):
    elsewhere = HostFactory(cluster=host.cluster)
    gpu = DeviceFactory(host=host, index=0)
    before = _batch(host, 0, status="done")  # ends at T0 + 1 min: not after start
    inside = _batch(host, 2, status="done")
    claimed = _batch(host, 3, status="claimed", claimed_at=T0)
    excluded = _batch(host, 4, status="done")
    after_end = _batch(host, 9, status="done")
    other_host = _batch(elsewhere, 2, status="done")
    by_query = Device.objects.filter(pk__in=[gpu.pk]).values("host_id").distinct()
    reopened = queue.batches_reopen(
        host_ids=by_query, start=T0 + MINUTE, end=T0 + 8 * MINUTE, exclude_batch_pks=[excluded.pk]
    )
    assert sorted(reopened) == [inside.pk, claimed.pk]
    assert _state(before, inside, claimed, excluded, after_end, other_host) == [
        ("done", None),
        ("pending", None),
        ("pending", None),
        ("done", None),
        ("done", None),
        ("done", None),
    ]
    # Already pending: left as it is (not returned, no nudge for it); no end: everything after start.
    assert sorted(queue.batches_reopen(host_ids=[host.pk], start=T0 + MINUTE, end=None)) == [excluded.pk, after_end.pk]
    assert queue.batches_reopen(host_ids=Device.objects.none().values("host_id"), start=T0, end=None) == []


def test_mark_done_finishes_only_the_batches_still_under_the_claim(host):
    mine = _batch(host, 0, status="claimed", claimed_at=T0)
    reclaimed = _batch(host, 1, status="claimed", claimed_at=T0 + MINUTE)
    reopened = _batch(host, 2, status="pending")
    pks = [mine.pk, reclaimed.pk, reopened.pk]
    assert queue.batches_mark_done(batch_pks=pks, claimed_at=T0) == [mine.pk]
    assert queue.batches_pending(batch_pks=pks) == [reopened.pk]
    mine.refresh_from_db()
    assert (mine.status, mine.attributed_at is not None) == ("done", True)
    # Without a claim instant: every batch still claimed.
    assert queue.batches_mark_done(batch_pks=pks, claimed_at=None) == [reclaimed.pk]


def test_reopen_unclaimed_leaves_a_batch_a_worker_holds(host):
    done, held = _batch(host, 0, status="done"), _batch(host, 1, status="claimed", claimed_at=T0)
    assert queue.batches_reopen_unclaimed(batch_pks=[done.pk, held.pk]) == [done.pk]
    assert _state(done, held) == [("pending", None), ("claimed", T0)]


def test_a_failed_attempt_goes_back_to_pending_until_the_last_one(host):
    b = _batch(host, 0, status="claimed", claimed_at=T0)
    assert queue.batch_record_failure(batch_pk=b.pk, attempts=queue.MAX_ATTEMPTS - 1, error="E" * 3000) == "pending"
    b.refresh_from_db()
    assert (b.status, b.attempts, len(b.error)) == ("pending", 4, queue.ERROR_MAX_CHARS)
    assert queue.batch_record_failure(batch_pk=b.pk, attempts=queue.MAX_ATTEMPTS, error="ValueError('x')") == "failed"
    b.refresh_from_db()
    assert (b.status, b.attempts, b.error) == ("failed", 5, "ValueError('x')")
    queue.batches_record_attempts(attempts_by_pk={b.pk: 6})
    b.refresh_from_db()
    assert (b.attempts, b.error) == (6, "")


def test_counts_overlap_and_last_error_by_host(host):
    elsewhere = HostFactory(cluster=host.cluster)
    _batch(host, 0, status="done")
    _batch(host, 1, status="claimed", claimed_at=T0)
    _batch(host, 2, status="failed", error="first")
    last = _batch(host, 3, status="failed", error="second")
    mine = _batch(host, 4)
    theirs = _batch(elsewhere, 5)
    counts = queue.batches_count(host_ids=Host.objects.filter(pk=host.pk).values("pk"))
    assert counts == queue.QueueCounts(pending=1, claimed=1, done=1, failed=2, last_received_at=mine.received_at)
    assert (counts.total, counts.open) == (5, 2)
    assert queue.batches_count().last_received_at == theirs.received_at
    # Overlapping [T0 + 2 min, T0 + 4 min): batches 2 and 3.
    assert queue.batches_count(since=T0 + 2 * MINUTE, until=T0 + 4 * MINUTE) == queue.QueueCounts(
        pending=0, claimed=0, done=0, failed=2, last_received_at=last.received_at
    )
    assert queue.batch_last_error(host_ids=[host.pk]) == "second"
    assert queue.batch_last_error(host_ids=[elsewhere.pk]) is None
    assert queue.batch_pks_overlapping(host_ids=[host.pk], since=T0 + 3 * MINUTE) == [last.pk, mine.pk]
    assert queue.batch_pks_overlapping(until=T0 + MINUTE) == list(
        TelemetryBatch.objects.filter(first_seq=0).values_list("pk", flat=True)
    )


def test_sweep_candidates_are_old_pending_and_stale_claims_oldest_first(host):
    stale = _batch(host, 0, status="claimed", claimed_at=T0)
    old = _batch(host, 1)
    young = _batch(host, 8)  # received at T0 + 9 min
    _batch(host, 2, status="claimed", claimed_at=T0 + 10 * MINUTE)
    found = queue.batches_sweep_candidates(pending_before=T0 + 5 * MINUTE, stale_before=T0 + MINUTE, limit=10)
    assert found == [stale.pk, old.pk]
    assert young.pk not in found
    assert queue.batches_sweep_candidates(pending_before=T0 + 5 * MINUTE, stale_before=T0 + MINUTE) == [stale.pk]


def test_batches_get_in_id_order_with_the_relations_asked_for(host, django_assert_num_queries):
    second, first = _batch(host, 1), _batch(host, 0)
    with django_assert_num_queries(1):
        got = queue.batches_get(batch_pks=[first.pk, second.pk], select_related=("host__cluster__site",))
        assert [(b.pk, b.host.cluster.site.pk) for b in got] == [
            (second.pk, host.cluster.site.pk),
            (first.pk, host.cluster.site.pk),
        ]
