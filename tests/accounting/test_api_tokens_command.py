"""The ``tokens`` management command: create/rotate/revoke/list; the secret is printed once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounting.models import ApiToken, Host
from accounting.tokens import token_digest, token_lookup
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
    run("create", "--org", "acme", "--scope", "host", "--cluster", str(cluster.pk), "--host", "gpu-node-07",
        "--name", "agent")
    assert ApiToken.objects.get().host == Host.objects.get(cluster=cluster, hostname="gpu-node-07")


def test_rotate_and_revoke(fleet):
    output = run("create", "--org", "acme", "--scope", "user", "--user", "alice", "--name", "laptop")
    old_secret = output.strip().splitlines()[-1]
    old = ApiToken.objects.get()
    rotated = run("rotate", old.prefix)
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
    ],
)
def test_bad_arguments_create_nothing(fleet, args):
    with pytest.raises(CommandError):
        run(*args)
    assert ApiToken.objects.count() == 0
