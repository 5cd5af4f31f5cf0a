"""The WSGI handler: the agents' ingest endpoint runs through a lean middleware chain.

An agent posts one small batch every 10 s per host, all day, with a bearer token: the cost of the
request itself is most of the cost of such a batch (docs/performance.md, "The cost of one
POST"). Of the project's middleware, that endpoint needs only what shapes every response's
headers and transport; sessions, CSRF, the session user, session lifetimes, messages, static
files and login lockouts concern browsers and the login form (DRF authenticates the token and
sets ``request.user``; DRF views are CSRF-exempt, and the ingest view has no session
authentication). So requests for ``LEAN_PATHS`` go through ``LEAN_MIDDLEWARE``, with the same
security headers as every other API response (tests/config/test_lean_ingest.py compares them),
and every other request through ``settings.MIDDLEWARE`` as before.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import ResolverMatch, URLResolver, get_resolver

# Exact paths (PATH_INFO), not prefixes: a new endpoint does not lose its middleware by accident.
LEAN_PATHS = frozenset({"/api/v1/ingest/batches"})

LEAN_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",  # HTTPS redirect, HSTS, nosniff, referrer policy
    "django.middleware.common.CommonMiddleware",  # disallowed user agents
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.handlers.StaticCspMiddleware",
    "config.security.SecurityHeadersMiddleware",  # Permissions-Policy, Cache-Control: no-store
]


class StaticCspMiddleware:
    """The Content-Security-Policy (and report-only) header that ``csp.middleware.CSPMiddleware``
    sets on a response with no nonce and no per-view policy, built once instead of per request.
    Only for the lean paths, whose views use neither."""

    def __init__(self, get_response) -> None:
        from csp.utils import build_policy

        self.get_response = get_response
        self.headers = {
            name: value
            for name, value, setting in (
                ("Content-Security-Policy", build_policy(), "CONTENT_SECURITY_POLICY"),
                (
                    "Content-Security-Policy-Report-Only",
                    build_policy(report_only=True),
                    "CONTENT_SECURITY_POLICY_REPORT_ONLY",
                ),
            )
            if value and not any(path.startswith(_excluded(setting)) for path in LEAN_PATHS)
        }

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        for name, value in self.headers.items():
            if name not in response:
                response[name] = value
        return response


def _excluded(setting: str) -> tuple[str, ...]:
    return tuple((getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES", None) or ())


class _LeanChain(BaseHandler):
    """A handler whose middleware chain is ``LEAN_MIDDLEWARE``: Django builds a chain from
    ``settings.MIDDLEWARE``, so the setting is swapped while this one is built (once, at start).

    The lean paths are exact and take no arguments, so each one's URL match is resolved once per
    URLconf and reused (Django walks the URLconf's patterns, three levels of includes, on every
    request: ~0.08 ms of the ingest POST)."""

    def __init__(self) -> None:
        super().__init__()
        self._matches: dict[str, tuple[URLResolver, ResolverMatch]] = {}
        saved = settings.MIDDLEWARE
        settings.MIDDLEWARE = LEAN_MIDDLEWARE
        try:
            self.load_middleware()
        finally:
            settings.MIDDLEWARE = saved

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        if hasattr(request, "urlconf"):  # a middleware chose a URLconf for this request
            return super().resolve_request(request)
        resolver = get_resolver()  # a new one whenever ROOT_URLCONF changes
        cached = self._matches.get(request.path_info)
        if cached is not None and cached[0] is resolver:
            match = cached[1]
        else:
            match = resolver.resolve(request.path_info)
            self._matches[request.path_info] = (resolver, match)
        request.resolver_match = match
        return match


class LeanPathsMixin:
    """Serve ``LEAN_PATHS`` through ``LEAN_MIDDLEWARE``; everything else as the base handler does."""

    _lean: _LeanChain | None = None

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async)  # type: ignore[misc]
        self._lean = _LeanChain()

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info in LEAN_PATHS and self._lean is not None:
            return self._lean.get_response(request)
        return super().get_response(request)  # type: ignore[misc]


class LeanPathsWSGIHandler(LeanPathsMixin, WSGIHandler):
    pass
