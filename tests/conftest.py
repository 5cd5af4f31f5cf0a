"""Shared fixtures. Tests run against real PostgreSQL (DATABASE_URL); there is no SQLite path."""

import pytest
from django.db import connection
from django.test import Client
from django.test.client import ClientHandler

from config.handlers import LeanPathsMixin


class ProductionClientHandler(LeanPathsMixin, ClientHandler):
    """The test client's handler, routing requests as the production WSGI handler does
    (config.wsgi: the ingest path through the lean middleware chain)."""


@pytest.fixture
def client() -> Client:
    """pytest-django's ``client``, with the production handler's middleware routing."""
    test_client = Client()
    test_client.handler = ProductionClientHandler(enforce_csrf_checks=False)
    return test_client


@pytest.fixture(autouse=True)
def _fresh_nudge_memory(monkeypatch):
    """Each test starts without this process's memory of a nudge mark seen in a broker (one
    test's Redis is not the next one's)."""
    monkeypatch.setattr("accounting.services.work_queue._mark_seen_until_s", {})


@pytest.fixture(autouse=True)
def _truncate_raw_windows(request):
    """Django's flush after a transactional test skips unmanaged tables: clear the partitioned raw
    windows ourselves, so no later test sees them (a live server, real workers or
    ``transactional_db`` commit for real)."""
    yield
    if {"transactional_db", "live_server", "processes"} & set(request.fixturenames):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE telemetry_gpuseries, telemetry_hostwindow")
