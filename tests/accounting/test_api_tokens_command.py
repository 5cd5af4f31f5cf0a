"""The ``tokens`` management command: create/rotate/revoke/list; the secret is printed once."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounting.models import ApiToken, AuditEvent, Host
from accounting.tokens import (
    DEFAULT_LIFETIME,
    LAST_USED_RESOLUTION,
    TokenExpired,
    _mark_used,
    token_authenticate,
    token_create,
    token_digest,
    token_lookup,
    token_rotate,
)
from tests import factories as f

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("tokens", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def fleet():
    org = f.OrganizationFactory(slug="acme")
    cluster = f.ClusterFactory(site=f.SiteFactory(org=org, slug="paris"), slug="hpc-a")
    f.UserFactory(username="alice")
    return org, cluster


def test_create_prints_secret_once_and_stores_digest(fleet):
    _org, cluster = fleet
    output = run("create", "--org", "acme", "--scope", "scheduler", "--cluster", "paris/hpc-a", "--name", "slurm")
    secret = output.strip().splitlines()[-1]
    assert secret.startswith("clk_")
    token = ApiToken.objects.get()
    assert (token.scope, token.cluster, token.name) == ("scheduler", cluster, "slurm")
    assert token.digest == token_digest(secret) and secret not in token.digest
    assert token_lookup(raw=secret) == token
    listing = run("list", "--org", "acme")
    assert token.prefix in listing and secret not in listing


def test_host_token_creates_the_host(fleet):
    _org, cluster = fleet
    run(
        "create",
        "--org",
        "acme",
        "--scope",
        "host",
        "--cluster",
        str(cluster.pk),
        "--host",
        "gpu-node-07",
        "--name",
        "agent",
    )
    assert ApiToken.objects.get().host == Host.objects.get(cluster=cluster, hostname="gpu-node-07")


def test_rotate_and_revoke(fleet):
    output = run("create", "--org", "acme", "--scope", "user", "--user", "alice", "--name", "laptop")
    old_secret = output.strip().splitlines()[-1]
    old = ApiToken.objects.get()
    rotated = run("rotate", old.prefix, "--overlap-hours", "0")
    new_secret = rotated.strip().splitlines()[-1]
    assert new_secret != old_secret
    assert token_lookup(raw=old_secret) is None
    new = token_lookup(raw=new_secret)
    assert (new.scope, new.user.username, new.name) == ("user", "alice", "laptop")
    run("revoke", str(new.pk))
    assert token_lookup(raw=new_secret) is None
    assert "[revoked]" in run("list", "--all")
    assert "laptop" not in run("list")


@pytest.mark.parametrize(
    "args",
    [
        ("create", "--org", "nope", "--scope", "admin", "--name", "x"),
        ("create", "--org", "acme", "--scope", "scheduler", "--name", "x"),
        ("create", "--org", "acme", "--scope", "host", "--cluster", "paris/hpc-a", "--name", "x"),
        ("create", "--org", "acme", "--scope", "user", "--name", "x"),
        ("create", "--org", "acme", "--scope", "user", "--user", "ghost", "--name", "x"),
        ("create", "--org", "acme", "--scope", "scheduler", "--cluster", "paris/none", "--name", "x"),
        ("rotate", "999"),
        ("create", "--org", "acme", "--scope", "admin", "--name", "x", "--expires-in-days", "0"),
        ("create", "--org", "acme", "--scope", "admin", "--name", "x", "--expires-in-days", "366"),
        ("create", "--org", "acme", "--scope", "admin", "--name", "x", "--expires-in-days", "1.5"),
    ],
)
def test_bad_arguments_create_nothing(fleet, args):
    with pytest.raises(CommandError):
        run(*args)
    assert ApiToken.objects.count() == 0
    assert AuditEvent.objects.count() == 0


# --- lifetime and rotation ---------------------------------------------------------------

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
US = dt.timedelta(microseconds=1)


def _admin_token(org, *, now=T0, **kwargs):
    return token_create(org=org, name="ci", scope="admin", now=now, **kwargs)


@pytest.mark.parametrize(("scope", "days"), [("host", 365), ("scheduler", 365), ("user", 90), ("admin", 30)])
def test_default_lifetime_by_scope(fleet, scope, days):
    org, cluster = fleet
    binding = {
        "host": {"host": f.HostFactory(cluster=cluster)},
        "scheduler": {"cluster": cluster},
        "user": {"user": f.UserFactory(username="bob")},
        "admin": {},
    }[scope]
    issued = token_create(org=org, name="t", scope=scope, now=T0, **binding)
    assert DEFAULT_LIFETIME[scope] == dt.timedelta(days=days)
    assert ApiToken.objects.get(pk=issued.token.pk).expires_at == T0 + dt.timedelta(days=days)


def test_valid_before_expiry_refused_from_it(fleet):
    org, _cluster = fleet
    issued = _admin_token(org, expires_in=dt.timedelta(days=7))
    end = dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC)
    assert ApiToken.objects.get().expires_at == end
    assert token_lookup(raw=issued.secret, now=end - US) == issued.token
    assert token_lookup(raw=issued.secret, now=end) is None
    with pytest.raises(TokenExpired) as exc:
        token_authenticate(raw=issued.secret, now=end)
    assert exc.value.expires_at == end


@pytest.mark.parametrize("days", [0, 366, -1])
def test_lifetime_out_of_bounds_is_refused(fleet, days):
    org, _cluster = fleet
    with pytest.raises(ValueError, match="at most 365 days"):
        _admin_token(org, expires_in=dt.timedelta(days=days))
    assert ApiToken.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_rotation_overlap_both_valid_then_only_the_new_one(fleet):
    org, _cluster = fleet
    old = _admin_token(org)
    at = T0 + dt.timedelta(days=10)
    new = token_rotate(token=old.token, overlap=dt.timedelta(hours=6), now=at)
    overlap_end = dt.datetime(2026, 3, 11, 18, 0, tzinfo=dt.UTC)
    assert ApiToken.objects.get(pk=old.token.pk).expires_at == overlap_end
    assert ApiToken.objects.get(pk=new.token.pk).expires_at == at + dt.timedelta(days=30)
    assert (new.token.name, new.token.scope, new.token.org) == ("ci", "admin", org)
    assert token_lookup(raw=old.secret, now=overlap_end - US) == old.token
    assert token_lookup(raw=new.secret, now=overlap_end - US) == new.token
    assert token_lookup(raw=old.secret, now=overlap_end) is None
    assert token_lookup(raw=new.secret, now=overlap_end) == new.token


def test_rotation_default_overlap_is_24_hours_and_never_extends_a_token(fleet):
    org, _cluster = fleet
    first = _admin_token(org)
    token_rotate(token=first.token, now=T0)
    assert ApiToken.objects.get(pk=first.token.pk).expires_at == dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    short = _admin_token(org, expires_in=dt.timedelta(hours=1))
    token_rotate(token=short.token, overlap=dt.timedelta(hours=24), now=T0)
    assert ApiToken.objects.get(pk=short.token.pk).expires_at == T0 + dt.timedelta(hours=1)


def test_a_token_from_before_expiry_never_expires_until_rotated(fleet):
    org, _cluster = fleet
    legacy = _admin_token(org)
    ApiToken.objects.filter(pk=legacy.token.pk).update(expires_at=None)
    far = dt.datetime(2036, 1, 1, tzinfo=dt.UTC)
    assert token_lookup(raw=legacy.secret, now=far) is not None
    token_rotate(token=ApiToken.objects.get(pk=legacy.token.pk), now=T0)
    assert ApiToken.objects.get(pk=legacy.token.pk).expires_at == T0 + dt.timedelta(hours=24)


def test_lookup_is_still_one_query(fleet, django_assert_num_queries):
    org, _cluster = fleet
    issued = _admin_token(org)
    with django_assert_num_queries(2):  # the first use also records last_used_at
        assert token_lookup(raw=issued.secret, now=T0) is not None
    with django_assert_num_queries(1):  # within LAST_USED_RESOLUTION: the lookup alone
        assert token_lookup(raw=issued.secret, now=T0 + LAST_USED_RESOLUTION - US) is not None
    with django_assert_num_queries(1), pytest.raises(TokenExpired):
        token_authenticate(raw=issued.secret, now=T0 + dt.timedelta(days=30))


def test_last_used_is_recorded_at_most_once_per_resolution_and_listed(fleet):
    org, _cluster = fleet
    issued = _admin_token(org)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at is None
    assert "never" in run("list", "--all")
    token_lookup(raw=issued.secret, now=T0)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == T0
    token_lookup(raw=issued.secret, now=T0 + dt.timedelta(minutes=4, seconds=59))  # too soon: kept
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == T0
    later = T0 + dt.timedelta(minutes=5)
    token_lookup(raw=issued.secret, now=later)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == later
    assert f"{later:%Y-%m-%dT%H:%M:%SZ}" in run("list", "--all")
    # A stale copy of the token (another request read it before the write) does not write again.
    stale = ApiToken.objects.get(pk=issued.token.pk)
    stale.last_used_at = T0
    _mark_used(stale, later + dt.timedelta(seconds=1))
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == later


def test_api_answers_401_problem_details_for_an_expired_token(fleet, client):
    org, _cluster = fleet
    issued = token_create(org=org, name="ci", scope="admin")
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    response = client.get("/api/v1/budgets/", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "API token expired at 2026-01-02T03:04:05Z."
    unknown = client.get("/api/v1/budgets/", HTTP_AUTHORIZATION="Bearer clk_unknown")
    assert (unknown.status_code, unknown.json()["detail"]) == (401, "Invalid or revoked API token.")


def test_api_accepts_old_and_new_token_during_the_overlap(fleet, client):
    org, _cluster = fleet
    old = token_create(org=org, name="ci", scope="admin")
    new = token_rotate(token=old.token)
    for secret in (old.secret, new.secret):
        assert client.get("/api/v1/budgets/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    ApiToken.objects.filter(pk=old.token.pk).update(expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert client.get("/api/v1/budgets/", HTTP_AUTHORIZATION=f"Bearer {old.secret}").status_code == 401
    assert client.get("/api/v1/budgets/", HTTP_AUTHORIZATION=f"Bearer {new.secret}").status_code == 200


def test_command_expiry_and_overlap_options(fleet):
    output = run("create", "--org", "acme", "--scope", "admin", "--name", "ci", "--expires-in-days", "14")
    token = ApiToken.objects.get()
    assert token.expires_at - token.created_at == pytest.approx(dt.timedelta(days=14), abs=dt.timedelta(seconds=5))
    assert f"expires {token.expires_at:%Y-%m-%dT%H:%M:%SZ}" in output
    old_secret = output.strip().splitlines()[-1]
    rotated = run("rotate", str(token.pk), "--overlap-hours", "2", "--expires-in-days", "7")
    token.refresh_from_db()
    new = ApiToken.objects.exclude(pk=token.pk).get()
    assert token.expires_at - new.created_at == pytest.approx(dt.timedelta(hours=2), abs=dt.timedelta(seconds=5))
    assert new.expires_at - new.created_at == pytest.approx(dt.timedelta(days=7), abs=dt.timedelta(seconds=5))
    assert f"stays valid until {token.expires_at:%Y-%m-%dT%H:%M:%SZ}" in rotated
    assert token_lookup(raw=old_secret) == token  # inside the overlap
    listing = run("list", "--org", "acme")
    assert token.prefix in listing and new.prefix in listing
    ApiToken.objects.filter(pk=token.pk).update(expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert token.prefix not in run("list", "--org", "acme")
    assert "[expired]" in run("list", "--all")
    with pytest.raises(CommandError, match="expired at 2026-01-01T00:00:00Z"):
        run("rotate", str(token.pk))
    with pytest.raises(CommandError, match="hours from 0 to 720"):
        run("rotate", str(new.pk), "--overlap-hours", "-1")
    assert ApiToken.objects.count() == 2
    assert list(AuditEvent.objects.order_by("pk").values_list("action", "actor_label")) == [
        ("token.create", "manage.py tokens"),
        ("token.rotate", "manage.py tokens"),
    ]


def test_responses_say_when_the_token_expires_and_warn_in_the_last_two_weeks(fleet, client):
    """Every response a token authenticates carries its expiry; within 14 days a warning names
    the rotation command (issue 19: no warning before expiry)."""
    org, cluster = fleet
    now = dt.datetime.now(dt.UTC)
    far = token_create(org=org, name="far", scope="scheduler", cluster=cluster, expires_in=dt.timedelta(days=100))
    near = token_create(
        org=org, name="near", scope="scheduler", cluster=cluster, expires_in=dt.timedelta(days=3, hours=1)
    )
    r = client.get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Bearer {far.secret}")
    assert r.status_code == 200
    assert r["X-Token-Expires-At"] == f"{far.token.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    assert "X-Token-Expiry-Warning" not in r
    r = client.get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Bearer {near.secret}")
    assert r["X-Token-Expiry-Warning"] == (
        f"token {near.token.prefix} expires in 3 days: rotate it (manage.py tokens rotate {near.token.prefix})"
    )
    # The ingest endpoint (host tokens: the agent) says so too, even on a refused body.
    host = token_create(
        org=org, name="h", scope="host", host=f.HostFactory(cluster=cluster), expires_in=dt.timedelta(days=1)
    )
    r = client.post(
        "/api/v1/ingest/batches", data=b"{", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {host.secret}"
    )
    assert r.status_code == 400
    assert r["X-Token-Expiry-Warning"].startswith(f"token {host.token.prefix} expires in 0 days")
    # A session (no token) gets neither header.
    assert "X-Token-Expires-At" not in client.get("/healthz")
    listing = run("list", "--org", "acme", "--expiring-within", "14")
    assert near.token.prefix in listing and host.token.prefix in listing and far.token.prefix not in listing
    assert now < near.token.expires_at
