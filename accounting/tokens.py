"""API tokens: high-entropy secrets stored as a SHA-256 digest, compared in constant time.

A password hash (bcrypt, PBKDF2) per request would cap ingest at a handful of requests per
second (see NOTES.md); a 256-bit random token needs no key stretching.

Lifetime (docs/security.md, "Token lifetime and rotation"): every new token expires, by default
after a time that shrinks with what the token can do (``DEFAULT_LIFETIME``), at most
``MAX_LIFETIME``. Rotation issues the replacement at once and lets the old token live on for an
overlap (24 h by default) so a fleet of agents can switch over; the old one is refused after it.
Tokens issued before expiry existed have ``expires_at`` null and never expire: rotate them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from accounting.models import ApiToken, AuditEvent, Cluster, Device, Host, Organization, TokenHost
from accounting.services.audit import audit_record

TOKEN_PREFIX = "clk_"  # noqa: S105 - a public marker on every token, not a secret


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


Scope = ApiToken.Scope
DAY = dt.timedelta(days=1)
# The more a token can do, the shorter it lives: a host token only posts its own host's
# telemetry, a scheduler token only its cluster's jobs; user and admin tokens read (admin: and
# write) a whole team or organisation and sit on laptops and in CI secrets.
DEFAULT_LIFETIME: dict[str, dt.timedelta] = {
    Scope.HOST: 365 * DAY,
    Scope.SCHEDULER: 365 * DAY,
    Scope.USER: 90 * DAY,
    Scope.ADMIN: 30 * DAY,
}
MAX_LIFETIME = 365 * DAY
DEFAULT_OVERLAP = dt.timedelta(hours=24)
MAX_OVERLAP = 30 * DAY


class TokenExpired(Exception):
    """The secret matched a token that is past its ``expires_at``."""

    def __init__(self, expires_at: dt.datetime) -> None:
        super().__init__(f"token expired at {expires_at.isoformat()}")
        self.expires_at = expires_at


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def _token_state(token: ApiToken) -> dict:
    return {
        "name": token.name,
        "scope": token.scope,
        "prefix": token.prefix,
        "host": token.host_id,
        "cluster": token.cluster_id,
        "user": token.user_id,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
    }


def _lifetime(scope: str, expires_in: dt.timedelta | None) -> dt.timedelta:
    lifetime = DEFAULT_LIFETIME[scope] if expires_in is None else expires_in
    if not dt.timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"a token lives more than 0 and at most {MAX_LIFETIME.days} days")
    return lifetime


def _issue(*, org, name, scope, host, cluster, user, expires_in: dt.timedelta | None, now: dt.datetime) -> IssuedToken:
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
        expires_at=now + _lifetime(scope, expires_in),
    )
    return IssuedToken(token=token, secret=secret)


@transaction.atomic
def token_create(
    *,
    org: Organization,
    name: str,
    scope: str,
    host: Host | None = None,
    cluster: Cluster | None = None,
    user=None,
    expires_in: dt.timedelta | None = None,
    actor=None,
    now: dt.datetime | None = None,
) -> IssuedToken:
    """Issue a token that expires ``expires_in`` from ``now`` (default: ``DEFAULT_LIFETIME`` of
    its scope; at most ``MAX_LIFETIME``)."""
    now = now or timezone.now()
    issued = _issue(
        org=org, name=name, scope=scope, host=host, cluster=cluster, user=user, expires_in=expires_in, now=now
    )
    audit_record(
        action=AuditEvent.Action.TOKEN_CREATE,
        object_type="token",
        object_id=issued.token.pk,
        org=org,
        actor=actor,
        before=None,
        after=_token_state(issued.token),
    )
    return issued


@transaction.atomic
def token_revoke(*, token: ApiToken, actor=None, now: dt.datetime | None = None) -> None:
    if token.revoked_at is None:
        before = _token_state(token)
        token.revoked_at = now or timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            action=AuditEvent.Action.TOKEN_REVOKE,
            object_type="token",
            object_id=token.pk,
            org=token.org_id,
            actor=actor,
            before=before,
            after=_token_state(token),
        )


@transaction.atomic
def token_rotate(
    *,
    token: ApiToken,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
    expires_in: dt.timedelta | None = None,
    actor=None,
    now: dt.datetime | None = None,
) -> IssuedToken:
    """Issue the replacement of ``token`` (same organisation, scope, name and binding) and let
    the old one live ``overlap`` longer (never longer than it would have anyway): both are
    valid during the overlap, the old one is refused from ``now + overlap`` on. ``overlap`` 0
    ends the old token at once (a leaked secret: revoke it instead, which also says why)."""
    if not dt.timedelta(0) <= overlap <= MAX_OVERLAP:
        raise ValueError(f"the overlap is between 0 and {MAX_OVERLAP.days} days")
    now = now or timezone.now()
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    before = _token_state(locked)
    issued = _issue(
        org=locked.org,
        name=locked.name,
        scope=locked.scope,
        host=locked.host,
        cluster=locked.cluster,
        user=locked.user,
        expires_in=expires_in,
        now=now,
    )
    end = now + overlap
    if locked.expires_at is None or end < locked.expires_at:
        locked.expires_at = end
        locked.save(update_fields=["expires_at"])
    token.expires_at = locked.expires_at
    audit_record(
        action=AuditEvent.Action.TOKEN_ROTATE,
        object_type="token",
        object_id=locked.pk,
        org=locked.org_id,
        actor=actor,
        before=before,
        after={
            **_token_state(locked),
            "replaced_by": issued.token.pk,
            "replacement_expires_at": issued.token.expires_at,
        },
    )
    return issued


_token_selects: dict[str, tuple[str, list[str]]] = {}


def _token_select() -> tuple[str, list[str]]:
    """The token lookup's SQL and the attribute names of its token columns (built once per
    process). For a host token the same statement reads its host's name and devices (an agent's
    token: ingest then needs no statement of its own for them); for any other token those columns
    are NULL at the cost of two index probes on NULL."""
    cached = _token_selects.get(connection.alias)
    if cached is None:
        fields = ApiToken._meta.concrete_fields
        qn = connection.ops.quote_name
        columns = ", ".join(f"t.{qn(f.column)}" for f in fields)
        cached = _token_selects[connection.alias] = (
            f"""SELECT {columns}, h.hostname, d.uuids, d.ids
                FROM {ApiToken._meta.db_table} t
                LEFT JOIN {Host._meta.db_table} h ON h.id = t.host_id
                LEFT JOIN LATERAL (
                    SELECT array_agg(uuid), array_agg(id) FROM {Device._meta.db_table} WHERE host_id = t.host_id
                ) d (uuids, ids) ON true
                WHERE t.digest = %s AND t.revoked_at IS NULL LIMIT 1""",
            [f.attname for f in fields],
        )
    return cached


def _find(raw: str, now: dt.datetime | None) -> ApiToken | None:
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    digest = token_digest(raw)
    # A raw query on a cursor: this runs on every API request, and compiling an ORM query (with
    # joins), or even a RawQuerySet's column mapping, costs several times the round trip.
    # Related rows (host, cluster, user) load on first use; most requests read only their ids.
    # No ORDER BY: the digest is unique. Expiry is checked here rather than in SQL so that an
    # expired token gets its own answer (still one query).
    sql, attnames = _token_select()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token = ApiToken.from_db(connection.alias, attnames, row[: len(attnames)])
    if not hmac.compare_digest(token.digest, digest):
        return None
    hostname, uuids, ids = row[len(attnames) :]
    if hostname is not None:
        token.token_host = TokenHost(hostname, dict(zip(uuids or (), ids or (), strict=True)))
    now = now or timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenExpired(token.expires_at)
    _mark_used(token, now)
    return token


# How fresh ``last_used_at`` is kept: written at most once per this long per token, so an agent
# posting every 10 s costs one extra statement every few minutes, not one per request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)


def _mark_used(token: ApiToken, now: dt.datetime) -> None:
    """Record that the token was used (``tokens list`` and the admin show it; an operator finds
    tokens nobody uses any more before they rotate or revoke them). The condition is checked
    again in SQL, so concurrent requests with one token write it once."""
    if token.last_used_at is not None and token.last_used_at > now - LAST_USED_RESOLUTION:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ApiToken._meta.db_table} SET last_used_at = %s "
            "WHERE id = %s AND (last_used_at IS NULL OR last_used_at <= %s)",
            [now, token.pk, now - LAST_USED_RESOLUTION],
        )
    token.last_used_at = now


def token_authenticate(*, raw: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The active token with this secret, ``None`` for an unknown or revoked one; raises
    ``TokenExpired`` for an expired one (the caller holds its secret, so saying so leaks
    nothing). The digest lookup is by unique index; the final comparison is constant-time so a
    timing side channel reveals nothing about near misses."""
    return _find(raw, now)


def token_lookup(*, raw: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The active token with this secret; ``None`` for an unknown, revoked or expired one."""
    try:
        return _find(raw, now)
    except TokenExpired:
        return None
