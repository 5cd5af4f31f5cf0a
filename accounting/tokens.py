"""API tokens: high-entropy secrets stored as a SHA-256 digest, compared in constant time.

A password hash (bcrypt, PBKDF2) per request would cap ingest at a handful of requests per
second (see NOTES.md); a 256-bit random token needs no key stretching.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.utils import timezone

from accounting.models import ApiToken, Cluster, Host, Organization

TOKEN_PREFIX = "clk_"  # noqa: S105 - a public marker on every token, not a secret


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def token_create(
    *,
    org: Organization,
    name: str,
    scope: str,
    host: Host | None = None,
    cluster: Cluster | None = None,
    user=None,
) -> IssuedToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        org=org,
        name=name,
        scope=scope,
        prefix=secret[:12],
        digest=token_digest(secret),
        host=host,
        cluster=cluster,
        user=user,
    )
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def token_rotate(*, token: ApiToken) -> IssuedToken:
    token_revoke(token=token)
    return token_create(
        org=token.org, name=token.name, scope=token.scope, host=token.host, cluster=token.cluster, user=token.user
    )


def token_lookup(*, raw: str) -> ApiToken | None:
    """Find an active token by its secret. The digest lookup is by unique index; the final
    comparison is constant-time so a timing side channel reveals nothing about near misses."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    digest = token_digest(raw)
    # A raw query: this runs on every API request, and compiling an ORM query (with joins)
    # costs several times the round trip. Related rows (host, cluster, user) load on first use;
    # most requests read only their ids. No ORDER BY: the digest is unique.
    active = ApiToken.objects.raw(
        f"SELECT * FROM {ApiToken._meta.db_table} WHERE digest = %s AND revoked_at IS NULL LIMIT 1",
        [digest],
    )
    token = next(iter(active), None)
    if token is None or not hmac.compare_digest(token.digest, digest):
        return None
    return token
