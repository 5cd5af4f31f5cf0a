"""Ingest while Redis is down or hung (issue 19): the nudge is best-effort and short.

The batch is committed before the nudge is sent, so a lost nudge costs nothing but latency:
the sweeper (beat) finds the pending batch once Redis is back. The POST itself must not wait
on the broker (it used to block ~19 s per request, on the result backend's reconnects).
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings
from django.db import connection

from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory
from tests.integration.conftest import ROOT, Processes, WebServer, _reset_celery_connections, wait_for
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DOWN_BOUND_S = 2.0


class _Poster:
    def __init__(self, client) -> None:
        self.client = client
        self.host = HostFactory()
        self.device = DeviceFactory(host=self.host, index=0)
        self.secret = token_create(
            org=self.host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=self.host
        ).secret
        self.start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
        self.seq = 0

    def post(self) -> float:
        """POST one 10 s window; assert 202; return the seconds the request took."""
        self.seq += 1
        payload = batch(
            hostname=self.host.hostname,
            windows=[
                window(
                    seq=self.seq,
                    start=self.start + dt.timedelta(seconds=10 * self.seq),
                    gpus=[gpu_entry(uuid_=self.device.uuid)],
                )
            ],
        )
        began = time.monotonic()
        response = post_batch(self.client, self.secret, payload)
        elapsed_s = time.monotonic() - began
        assert response.status_code == 202, response.content
        return elapsed_s


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers: a hung Redis."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


def _point_celery_at(url: str) -> None:
    from workers.app import app

    app.conf.broker_url = url
    app.conf.result_backend = url
    _reset_celery_connections(app)


def _beat(processes: Processes, where) -> None:
    """Celery beat with a schedule file of this test's own (Processes.beat shares var/integration)."""
    log = open(where / "beat.log", "w")  # closed with the process
    processes.procs.append(
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(where / "beat-schedule"), "-l", "INFO"],
            cwd=ROOT,
            env=processes.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )


def test_ingest_with_redis_stopped_answers_at_once_and_the_sweeper_attributes_later(client, processes, tmp_path):
    assert settings.CARBONLEDGER_SKIP_NUDGE is False  # the nudge is really sent (and lost)
    poster = _Poster(client)
    up_s = [poster.post() for _ in range(3)]
    processes.redis.stop()
    try:
        down_s = [poster.post() for _ in range(3)]
    finally:
        processes.redis.start()
    print(f"ingest POST with Redis up: {[round(s, 3) for s in up_s]} s; stopped: {[round(s, 3) for s in down_s]} s")
    assert max(down_s) < DOWN_BOUND_S
    assert TelemetryBatch.objects.filter(status="pending").count() == 6  # stored, durable, waiting
    # Redis is back (empty: the three nudges sent while it was up died with it). Only the sweeper
    # can find these batches; a later nudge goes through again.
    processes.worker("faults-w1")
    _beat(processes, tmp_path)
    wait_for(
        lambda: not TelemetryBatch.objects.exclude(status="done").exists(),
        timeout_s=90,
        what="the sweeper to attribute the batches stored while Redis was down",
    )
    poster.post()
    wait_for(
        lambda: not TelemetryBatch.objects.exclude(status="done").exists(),
        timeout_s=30,
        what="the nudge to work again after the restart",
    )


def test_ingest_with_redis_hung_answers_within_the_socket_timeout(client, processes, hung_redis):
    poster = _Poster(client)
    _point_celery_at(hung_redis)
    try:
        hung_s = [poster.post() for _ in range(2)]
    finally:
        _point_celery_at(processes.redis.url)
    socket_timeout_s = settings.CELERY_BROKER_TRANSPORT_OPTIONS["socket_timeout"]
    print(f"ingest POST with Redis hung: {[round(s, 3) for s in hung_s]} s (socket timeout {socket_timeout_s} s)")
    assert max(hung_s) < socket_timeout_s + 1.0
    assert TelemetryBatch.objects.filter(status="pending").count() == 2


def _get(url: str, secret: str) -> int:
    return requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code


def test_persistent_connections_killed_under_gunicorn_are_replaced_not_answered_with_errors(processes):
    """What a PostgreSQL restart does to a web process: its persistent connections die under it.

    Only this test database's other sessions are terminated (gunicorn's), never the server."""
    host = HostFactory()
    secret = token_create(org=host.cluster.site.org, name="reader", scope=ApiToken.Scope.ADMIN).secret
    env = processes.env()
    env["DATABASE_CONN_MAX_AGE"] = "600"
    server = WebServer(env)
    server.start()
    try:
        url = f"{server.url}/api/v1/jobs/"
        assert [_get(url, secret) for _ in range(8)] == [200] * 8  # every gunicorn thread holds a connection
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH others AS MATERIALIZED (SELECT pid FROM pg_stat_activity "
                "  WHERE datname = current_database() AND pid <> pg_backend_pid()) "
                "SELECT array_agg(pid) FROM others WHERE pg_terminate_backend(pid)"
            )
            killed = cursor.fetchone()[0]
            assert killed
            # pg_terminate_backend only signals: wait until the sessions have ended (as after a
            # restart), so what is tested is that an ended connection is replaced before it is used.
            # (One that ends while a request runs is that request's 503 with Retry-After.)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [killed])
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.05)
        assert [_get(url, secret) for _ in range(16)] == [200] * 16
    finally:
        server.stop()
