"""The per-request health check of persistent connections (config/postgresql/base.py): no round
trip on a quiet connection, Django's ``SELECT 1`` check (and a reconnect) when the socket says
the server ended the session or sent something."""

from __future__ import annotations

import time

import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper

pytestmark = pytest.mark.django_db


@pytest.fixture
def persistent():
    """A second connection to the test database, persistent and health-checked as in production,
    outside the test's transaction (idle between "requests")."""
    wrapper = connections.create_connection("default")
    wrapper.settings_dict["CONN_MAX_AGE"] = 600
    wrapper.settings_dict["CONN_HEALTH_CHECKS"] = True
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def _full_checks(monkeypatch) -> list[bool]:
    """Record each ``SELECT 1`` check (Django's own ``is_usable``) and its answer."""
    answers: list[bool] = []
    full_check = PostgresDatabaseWrapper.is_usable

    def spy(self) -> bool:
        answers.append(full_check(self))
        return answers[-1]

    monkeypatch.setattr(PostgresDatabaseWrapper, "is_usable", spy)
    return answers


def _request(wrapper) -> int:
    """What a request does with the connection: the end-of-request bookkeeping of the last one,
    then a query (which runs the health check first). Returns the backend's pid."""
    wrapper.close_if_unusable_or_obsolete()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _wait_until_readable(wrapper) -> None:
    deadline = time.monotonic() + 10
    while wrapper._quiet() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_quiet_connection_is_reused_without_a_round_trip(persistent, monkeypatch):
    answers = _full_checks(monkeypatch)
    first = _request(persistent)
    assert [_request(persistent) for _ in range(3)] == [first] * 3
    assert answers == []
    assert persistent.health_check_done is True
    assert persistent.settings_dict["ENGINE"] == "config.postgresql"


def test_a_connection_the_server_ended_is_checked_closed_and_replaced(persistent, monkeypatch):
    answers = _full_checks(monkeypatch)
    first = _request(persistent)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        assert cursor.fetchone() == (True,)
    _wait_until_readable(persistent)
    second = _request(persistent)
    assert answers == [False]  # the SELECT 1 failed: the connection was closed and opened again
    assert second != first
    assert _request(persistent) == second
    assert answers == [False]


def test_a_live_connection_with_a_message_pending_passes_the_full_check(persistent, monkeypatch):
    answers = _full_checks(monkeypatch)
    with persistent.cursor() as cursor:
        cursor.execute("LISTEN config_postgresql_test")
    first = _request(persistent)
    # A notification from another session (autocommit: delivered at once, unlike one sent from
    # the test's own transaction) makes the idle connection's socket readable.
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("NOTIFY config_postgresql_test")
    finally:
        other.close()
    _wait_until_readable(persistent)
    assert _request(persistent) == first
    assert answers == [True]


def test_a_closed_wrapper_is_not_usable(persistent):
    persistent.close()
    assert persistent.connection is None
    assert persistent.is_usable() is False
