# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""A Redis outage (the throttles' cache) is a 503 with Retry-After, never a 500 (issue 19).

The cache is pointed at a closed port: the throttle's first cache read fails as it would with
Redis down. Reads, writes and the what-if endpoints alike; nothing is written meanwhile.
"""

from __future__ import annotations

import pytest
import redis.exceptions
from django.test import override_settings

from accounting.api.errors import CACHE_RETRY_AFTER_S, _cache_unavailable
from tests.accounting.test_api_support import db_snapshot, register_body, world  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

CLOSED_PORT_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def _assert_503(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == str(CACHE_RETRY_AFTER_S) == "5"
    assert response.json() == {
        "type": "about:blank",
        "title": "Service unavailable",
        "status": 503,
        "detail": "The rate-limit cache is unavailable; retry later.",
    }


@pytest.mark.parametrize("scope", ["admin", "sched_a", "alice"])
def test_api_requests_with_the_cache_gone_are_503_problems(world, settings, scope):
    settings.DEBUG = True  # Django would show its HTML debug page
    client = world.client(scope)
    assert client.get("/api/v1/jobs/").status_code == 200
    before = db_snapshot()
    with override_settings(CACHES=CLOSED_PORT_CACHE):
        _assert_503(client.get("/api/v1/jobs/"))
        _assert_503(client.post("/api/v1/budgets/check/", {"team": "recsys", "co2e_g": 1.0}, format="json"))
        _assert_503(client.post("/api/v1/best-window/", {}, format="json"))
        if scope == "sched_a":
            _assert_503(client.post("/api/v1/jobs/", register_body(), format="json"))
    assert db_snapshot() == before
    assert client.get("/api/v1/jobs/").status_code == 200  # back once the cache is


def test_metrics_with_the_cache_gone_is_a_503_problem(world):
    with override_settings(CACHES=CLOSED_PORT_CACHE):
        _assert_503(world.client("admin").get("/api/v1/metrics"))


def test_a_wrapped_redis_error_counts_as_the_cache_gone():
    try:
        try:
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        except redis.exceptions.TimeoutError as exc:
            raise RuntimeError("cache backend failed") from exc
    except RuntimeError as wrapped:
        assert _cache_unavailable(wrapped)
    assert not _cache_unavailable(RuntimeError("something else"))
    assert _cache_unavailable(redis.exceptions.ConnectionError("Connection refused"))
