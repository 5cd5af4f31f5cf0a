"""DRF authentication by bearer API token (``Authorization: Bearer clk_...``)."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions

from accounting.models import ApiToken
from accounting.tokens import TokenExpired, token_authenticate


class TokenPrincipal:
    """request.user for token-authenticated requests without a human user (host, scheduler)."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.pk = None
        self.id = None
        self.username = f"token:{token.prefix}"

    def __str__(self) -> str:
        return self.username


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0] != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            token = token_authenticate(raw=parts[1])
        except TokenExpired as exc:
            raise exceptions.AuthenticationFailed(f"API token expired at {exc.expires_at:%Y-%m-%dT%H:%M:%SZ}.")
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        user = token.user if token.user is not None else TokenPrincipal(token)
        if isinstance(user, AnonymousUser):  # pragma: no cover - defensive
            raise exceptions.AuthenticationFailed("Token has no principal.")
        return (user, token)

    def authenticate_header(self, request) -> str:
        return self.keyword


def request_token(request) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


# A token this close to its expiry says so on every response it authenticates (docs/security.md,
# "Token lifetimes"): clients and the agent log it, operators rotate before requests start failing.
TOKEN_EXPIRY_WARNING = dt.timedelta(days=14)
EXPIRES_HEADER = "X-Token-Expires-At"
EXPIRY_WARNING_HEADER = "X-Token-Expiry-Warning"


def authenticated_token(request) -> ApiToken | None:
    """The token a request was already authenticated with, without authenticating it: a response
    to a request whose authentication failed (database gone, bad token) must not query again."""
    auth = request.__dict__.get("_auth")
    return auth if isinstance(auth, ApiToken) else None


def token_expiry_headers(token: ApiToken | None, *, now: dt.datetime | None = None) -> dict[str, str]:
    """Headers telling the caller when its token expires, and a warning within the last
    ``TOKEN_EXPIRY_WARNING``; none for a session, an unauthenticated request or a token without
    expiry."""
    if token is None or token.expires_at is None:
        return {}
    now = now or timezone.now()
    headers = {EXPIRES_HEADER: f"{token.expires_at:%Y-%m-%dT%H:%M:%SZ}"}
    left = token.expires_at - now
    if left <= TOKEN_EXPIRY_WARNING:
        days = max(0, left.days)
        headers[EXPIRY_WARNING_HEADER] = (
            f"token {token.prefix} expires in {days} day{'s' if days != 1 else ''}: "
            f"rotate it (manage.py tokens rotate {token.prefix})"
        )
    return headers
