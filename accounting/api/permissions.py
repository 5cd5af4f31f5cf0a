"""Token scopes, object visibility checks and per-token throttling for the v1 API.

Scope rules (one table, enforced here by scope and by ``accounting.selectors.access`` by row):

========== ================================================================================
host       ingest only (its own host); every endpoint of this module answers 403
scheduler  jobs of its one cluster: register, update, end, read; advice; budget check
user       read jobs, footprints and budgets of the teams the user belongs to (an org-admin
           membership sees the whole org); report functional units on those jobs; advice;
           budget check for those teams
admin      the whole organisation: everything above, plus the metrics endpoint
========== ================================================================================

A browser session (the dashboard, no token) counts as ``user`` scope across the user's
memberships.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import permissions, throttling

from accounting.api.auth import request_token
from accounting.models import ApiToken
from accounting.selectors.access import SESSION_SCOPE, Principal, principal_for

Scope = ApiToken.Scope

__all__ = ["SESSION_SCOPE", "Principal", "request_principal", "request_scope"]


def request_principal(request) -> Principal:
    """The request's principal (``accounting.selectors.access``), built once per request from
    its token or else its session user."""
    principal = getattr(request, "_carbonledger_principal", None)
    if principal is None:
        user = getattr(request, "user", None)
        principal = principal_for(token=request_token(request), user=user)
        request._carbonledger_principal = principal
    return principal


def request_scope(request) -> str | None:
    """The effective scope of a request: the token's scope, ``user`` for a session, else None."""
    return request_principal(request).scope


class ScopePermission(permissions.BasePermission):
    """Allows a request when its scope is in the view's ``scopes`` (or ``scopes_by_method``)."""

    message = "This token's scope does not allow this operation."

    def has_permission(self, request, view) -> bool:
        scope = request_scope(request)
        if scope is None:
            return False
        by_method: dict[str, tuple[str, ...]] = getattr(view, "scopes_by_method", {})
        allowed = by_method.get(request.method, getattr(view, "scopes", ()))
        return scope in allowed


READ_SCOPES = (Scope.SCHEDULER, Scope.USER, Scope.ADMIN)
WRITE_SCOPES = (Scope.SCHEDULER, Scope.ADMIN)
ADMIN_SCOPES = (Scope.ADMIN,)


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Rate limit keyed by API token (each token its own bucket), falling back to the user or
    the client address. Rate: ``DEFAULT_THROTTLE_RATES["token"]``, else the ``user`` rate."""

    scope = "token"

    def get_rate(self) -> str | None:
        rates = self.THROTTLE_RATES
        return rates.get("token") or rates.get("user")

    def get_cache_key(self, request, view) -> str | None:
        token = request_token(request)
        if token is not None:
            ident = f"t{token.pk}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"u{request.user.pk}"
        else:
            ident = f"a{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents bearer API tokens in the OpenAPI schema (``Authorization: Bearer clk_...``)."""

    target_class = "accounting.api.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "API token (`clk_...`). Scopes: host, scheduler, user, admin.",
        }
