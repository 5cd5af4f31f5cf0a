# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""Errors DRF does not handle itself (issue 19): problem details, never Django's HTML 500 page.

A database that cannot be reached is a 503 with Retry-After; anything else unexpected is a
logged 500. The shared PostgreSQL is never stopped here: the failure is raised at the cursor,
through Django's own execute_wrapper hook, as a lost server would raise it.
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, connection

from accounting.api.errors import DATABASE_RETRY_AFTER_S
from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.models import HostStream
from tests.accounting.test_api_support import world  # noqa: F401 - fixture
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, stored_counts, window

pytestmark = pytest.mark.django_db

LOST = "server closed the connection unexpectedly"


def _fail_queries(error: Exception, *, matching: str = ""):
    """An execute_wrapper: every query whose SQL contains ``matching`` raises ``error``."""

    def wrapper(execute, sql, params, many, context):
        if matching in sql:
            raise error
        return execute(sql, params, many, context)

    return wrapper


def _assert_503(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_S) == "5"
    assert response.json() == {
        "type": "about:blank",
        "title": "Service unavailable",
        "status": 503,
        "detail": "The database is unavailable; retry later.",
    }


@pytest.fixture
def host_setup():
    host = HostFactory()
    device = DeviceFactory(host=host, index=0)
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    return host, device, secret


def _one_window(host, device) -> dict:
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    return batch(hostname=host.hostname, windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=device.uuid)])])


@pytest.mark.parametrize(
    "error",
    [OperationalError(LOST), InterfaceError("connection already closed"), psycopg.OperationalError(LOST)],
    ids=["django-OperationalError", "django-InterfaceError", "psycopg-OperationalError"],
)
def test_an_api_read_with_the_database_gone_is_a_503_problem(world, settings, error):
    settings.DEBUG = True  # Django would show its HTML debug page
    client = world.client("admin")
    assert client.get("/api/v1/jobs/").status_code == 200
    with connection.execute_wrapper(_fail_queries(error)):
        response = client.get("/api/v1/jobs/")  # the token lookup is the first query
    _assert_503(response)
    with connection.execute_wrapper(_fail_queries(error, matching='FROM "accounting_job"')):
        response = client.get("/api/v1/jobs/")  # authenticated, then the jobs query fails
    _assert_503(response)


def test_ingest_with_the_database_gone_is_a_503_and_stores_nothing(client, host_setup, settings):
    settings.DEBUG = True
    host, device, secret = host_setup
    with connection.execute_wrapper(_fail_queries(OperationalError(LOST))):
        response = post_batch(client, secret, _one_window(host, device))
    _assert_503(response)
    assert stored_counts() == (0, 0, 0)


def test_ingest_losing_the_database_during_copy_is_a_503_and_rolls_back(client, host_setup, settings, monkeypatch):
    """COPY runs on the raw psycopg cursor: its errors arrive unwrapped, as psycopg.OperationalError."""
    settings.DEBUG = True
    host, device, secret = host_setup

    def copy_fails(**kwargs):
        raise psycopg.OperationalError(f"consuming input failed: {LOST}")

    monkeypatch.setattr("telemetry.services.copy_rows", copy_fails)
    response = post_batch(client, secret, _one_window(host, device))
    _assert_503(response)
    assert stored_counts() == (0, 0, 0)
    assert not HostStream.objects.filter(host=host, last_seq__isnull=False).exists()


def test_an_unexpected_error_is_a_logged_500_problem_even_with_debug(client, host_setup, settings, monkeypatch, caplog):
    settings.DEBUG = True
    host, device, secret = host_setup

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("telemetry.api.views.batch_ingest", broken)
    with caplog.at_level(logging.ERROR, logger="accounting.api.errors"):
        response = post_batch(client, secret, _one_window(host, device))
    assert response.status_code == 500, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal server error",
        "status": 500,
        "detail": "An unexpected error occurred; it has been logged.",
    }
    assert "a bug" not in response.content.decode()  # no internals in the answer
    [record] = [r for r in caplog.records if r.name == "accounting.api.errors"]
    assert record.getMessage() == "unhandled error during POST /api/v1/ingest/batches"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert stored_counts() == (0, 0, 0)
