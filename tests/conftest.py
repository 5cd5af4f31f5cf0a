"""Shared fixtures. Tests run against real PostgreSQL (DATABASE_URL); there is no SQLite path."""

import pytest


@pytest.fixture(autouse=True)
def _fresh_nudge_memory(monkeypatch):
    """Each test starts without this process's memory of a nudge mark seen in a broker (one
    test's Redis is not the next one's)."""
    monkeypatch.setattr("accounting.services.work_queue._mark_seen_until_s", {})
