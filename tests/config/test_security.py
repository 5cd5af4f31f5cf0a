"""Authentication controls of docs/security.md: login lockout (django-axes), password length,
session idle and absolute lifetimes, and the shared (Redis) cache behind the API throttles."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError

from accounting.api.permissions import TokenRateThrottle
from accounting.tokens import token_create
from config import security
from tests import factories as f

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def _login(client, username: str, password: str, *, url: str = "/accounts/login/", ip: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- lockout -------------------------------------------------------------------------------


def test_lockout_settings_are_the_documented_ones():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == dt.timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


@pytest.mark.django_db
def test_five_failures_lock_out_even_the_right_password_until_the_cool_off(client):
    f.UserFactory(username="ada")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = _login(client, "ada", "wrong-password-123")
        assert response.status_code == 200
        assert "didn't match" in response.content.decode()
    response = _login(client, "ada", "wrong-password-123")
    assert response.status_code == 429

    response = _login(client, "ada", PASSWORD)
    assert response.status_code == 429
    body = response.content.decode()
    assert "Sign-in temporarily locked" in body and "Too many failed sign-in attempts" in body
    assert "0:15:00" in body  # the cool-off, from settings
    assert not _logged_in(client)

    # The same user from another address and another user from this address are not locked.
    assert _login(client, "ada", PASSWORD, ip="10.0.0.2").status_code == 302
    client.logout()
    f.UserFactory(username="ben")
    assert _login(client, "ben", PASSWORD).status_code == 302
    client.logout()

    # Past the cool-off (every attempt moved back by the configured period) the password works.
    attempt = AccessAttempt.objects.get(username="ada", ip_address="10.0.0.1")
    attempt.attempt_time -= settings.AXES_COOLOFF_TIME + dt.timedelta(seconds=1)
    attempt.save(update_fields=["attempt_time"])
    response = _login(client, "ada", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/"
    assert _logged_in(client)
    assert not AccessAttempt.objects.filter(username="ada", ip_address="10.0.0.1").exists()  # reset on success


@pytest.mark.django_db
def test_cool_off_override_unlocks(client, settings):
    settings.AXES_COOLOFF_TIME = dt.timedelta(seconds=30)
    f.UserFactory(username="ada")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "ada", "wrong-password-123")
    assert _login(client, "ada", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=31))
    assert _login(client, "ada", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_admin_login_is_locked_out_too(client):
    f.UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "root", "wrong-password-123", url="/admin/login/")
    response = _login(client, "root", PASSWORD, url="/admin/login/")
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not _logged_in(client)


def test_client_ip_ignores_forwarded_for_unless_proxies_are_trusted(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="1.1.1.1, 2.2.2.2")
    settings.TRUSTED_PROXY_COUNT = 0
    assert security.client_ip(request) == "10.9.9.9"
    settings.TRUSTED_PROXY_COUNT = 1  # the proxy appended the address it saw: the right-most
    assert security.client_ip(request) == "2.2.2.2"
    settings.TRUSTED_PROXY_COUNT = 3  # fewer hops than proxies: not trusted
    assert security.client_ip(request) == "10.9.9.9"


# --- passwords -----------------------------------------------------------------------------


def test_passwords_need_twelve_characters():
    with pytest.raises(ValidationError, match="at least 12 characters"):
        validate_password("Zq7#mLp2vR9")  # 11
    validate_password("Zq7#mLp2vR9x")  # 12


# --- sessions ------------------------------------------------------------------------------


def test_session_lifetimes_are_the_documented_ones():
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_ABSOLUTE_AGE_S == 12 * 3600
    assert settings.SESSION_REFRESH_S == 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is False
    assert settings.SESSION_COOKIE_HTTPONLY is True


@pytest.fixture
def clock(monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(security, "_now_s", lambda: now[0])
    return now


@pytest.mark.django_db
def test_idle_session_ends_after_thirty_minutes(client, clock):
    f.UserFactory(username="ada")
    assert _login(client, "ada", PASSWORD).status_code == 302
    assert client.session[security.LOGIN_AT] == clock[0]
    clock[0] += 29 * 60
    response = client.get("/methodology/")
    assert response.status_code == 200
    # The activity pushed the expiry forward: a fresh cookie with the idle lifetime.
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 1800
    clock[0] += 29 * 60
    assert client.get("/methodology/").status_code == 200  # 58 min after login, 29 idle
    clock[0] += 30 * 60
    response = client.get("/methodology/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not _logged_in(client)


@pytest.mark.django_db
def test_active_session_ends_twelve_hours_after_login(client, clock):
    f.UserFactory(username="ada")
    _login(client, "ada", PASSWORD)
    for _ in range(12 * 60 // 20 - 1):  # a request every 20 minutes, never idle
        clock[0] += 20 * 60
        assert client.get("/methodology/").status_code == 200
    clock[0] += 20 * 60  # 12 h after login
    response = client.get("/methodology/")
    assert response.status_code == 302
    assert not _logged_in(client)


@pytest.mark.django_db
def test_requests_within_a_minute_do_not_rewrite_the_session(client, clock, django_assert_num_queries):
    user = f.UserFactory(username="ada")
    client.force_login(user)  # the login signal stamps the session: no write on the next request
    clock[0] += 30
    with django_assert_num_queries(2):  # the session row and the user row, no UPDATE
        client.get("/accounts/login/")


# --- shared cache for the API throttle -----------------------------------------------------


def test_the_cache_is_redis_in_its_own_database_with_a_per_run_prefix():
    config = settings.CACHES["default"]
    assert config["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert config["LOCATION"] == "redis://127.0.0.1:6379/1"
    assert config["KEY_PREFIX"] == os.environ["CARBONLEDGER_TEST_CACHE_PREFIX"]
    assert str(os.getpid()) in config["KEY_PREFIX"]


@pytest.mark.django_db
def test_throttle_history_is_shared_across_processes(client, monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    org = f.OrganizationFactory(slug="thr", name="Thr")
    issued = token_create(org=org, name="t", scope="admin")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    key = f"throttle_token_t{issued.token.pk}"
    cache.delete(key)
    assert [client.get("/api/v1/jobs/", **headers).status_code for _ in range(4)] == [200, 200, 200, 429]
    # Another process with the same settings reads the same three requests from Redis.
    code = f"import django; django.setup(); from django.core.cache import cache; print(len(cache.get({key!r}) or []))"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "3", result.stderr
    cache.delete(key)
