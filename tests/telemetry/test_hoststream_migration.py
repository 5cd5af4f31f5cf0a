"""Migrations telemetry/0008 and accounting/0023 move each host's stream state (last seq, last
window end) from accounting's ``Host`` to telemetry's ``HostStream``, on a seeded database, and
back."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.migration_helpers import columns_present, migrate_to, migrate_to_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("accounting", "0022_batch_findings"), ("telemetry", "0007_batch_findings_to_accounting")]
AFTER = [("accounting", "0023_host_stream_to_telemetry")]
SEEN = dt.datetime(2026, 11, 3, 14, 0, 10, 250000, tzinfo=dt.UTC)


def test_stream_state_moves_to_telemetry_and_back():
    apps = migrate_to(BEFORE)
    try:
        from tests.factories import ClusterFactory

        cluster = ClusterFactory()
        Host = apps.get_model("accounting", "Host")
        posted = Host.objects.create(cluster_id=cluster.pk, hostname="posted", last_seq=41, last_seen_at=SEEN)
        silent = Host.objects.create(cluster_id=cluster.pk, hostname="silent")

        apps = migrate_to(AFTER)
        streams = {
            s.host_id: (s.last_seq, s.last_seen_at) for s in apps.get_model("telemetry", "HostStream").objects.all()
        }
        assert streams == {posted.pk: (41, SEEN)}  # a host that never posted has no stream row
        assert columns_present("accounting_host", ("last_seq", "last_seen_at")) == []

        apps = migrate_to(BEFORE)
        back = {h.pk: (h.last_seq, h.last_seen_at) for h in apps.get_model("accounting", "Host").objects.all()}
        assert back == {posted.pk: (41, SEEN), silent.pk: (None, None)}
        assert columns_present("accounting_host", ("last_seq", "last_seen_at")) == ["last_seen_at", "last_seq"]
    finally:
        migrate_to_latest()
