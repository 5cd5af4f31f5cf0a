"""Migrations telemetry/0008 and accounting/0023 move each host's stream state (last seq, last
window end) from accounting's ``Host`` to telemetry's ``HostStream``, on a seeded database, and
back."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("accounting", "0022_batch_findings"), ("telemetry", "0007_batch_findings_to_accounting")]
AFTER = [("accounting", "0023_host_stream_to_telemetry")]
SEEN = dt.datetime(2026, 11, 3, 14, 0, 10, 250000, tzinfo=dt.UTC)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _host_columns() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounting_host' "
            "AND column_name IN ('last_seq', 'last_seen_at') ORDER BY column_name"
        )
        return [row[0] for row in cursor.fetchall()]


def test_stream_state_moves_to_telemetry_and_back():
    apps = _migrate(BEFORE)
    try:
        from tests.factories import ClusterFactory

        cluster = ClusterFactory()
        Host = apps.get_model("accounting", "Host")
        posted = Host.objects.create(cluster_id=cluster.pk, hostname="posted", last_seq=41, last_seen_at=SEEN)
        silent = Host.objects.create(cluster_id=cluster.pk, hostname="silent")

        apps = _migrate(AFTER)
        streams = {
            s.host_id: (s.last_seq, s.last_seen_at) for s in apps.get_model("telemetry", "HostStream").objects.all()
        }
        assert streams == {posted.pk: (41, SEEN)}  # a host that never posted has no stream row
        assert _host_columns() == []

        apps = _migrate(BEFORE)
        back = {h.pk: (h.last_seq, h.last_seen_at) for h in apps.get_model("accounting", "Host").objects.all()}
        assert back == {posted.pk: (41, SEEN), silent.pk: (None, None)}
        assert _host_columns() == ["last_seen_at", "last_seq"]
    finally:
        executor = MigrationExecutor(connection)
        _migrate(executor.loader.graph.leaf_nodes())
