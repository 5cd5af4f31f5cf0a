"""Project-wide security middleware: session lifetimes, default response headers, client address.

Values and the ASVS requirement each one answers are listed in docs/security.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest
from django.http.response import HttpResponseBase

LOGIN_AT = "_cl_login_at"  # epoch seconds of the login, for the absolute lifetime
SEEN_AT = "_cl_seen_at"  # epoch seconds of the last expiry refresh, for the idle timeout


def _now_s() -> float:
    return time.time()


def session_login_record(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """user_logged_in receiver: stamps the (new) session with the login time."""
    session = getattr(request, "session", None)
    if session is not None:
        now = _now_s()
        session[LOGIN_AT] = now
        session[SEEN_AT] = now


class SessionLifetimeMiddleware:
    """Ends a session past SESSION_ABSOLUTE_AGE_S since login or SESSION_COOKIE_AGE since the
    last request, and pushes the idle expiry forward at most every SESSION_REFRESH_S seconds
    (instead of SESSION_SAVE_EVERY_REQUEST: one session write a minute, not one per request).
    A session from before this middleware (no login time) starts its absolute lifetime now."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.user.is_authenticated:
            session = request.session
            now = _now_s()
            login_at = session.get(LOGIN_AT)
            seen_at = session.get(SEEN_AT, now)
            if login_at is None:
                session[LOGIN_AT] = login_at = now
            if now - login_at >= settings.SESSION_ABSOLUTE_AGE_S or now - seen_at >= settings.SESSION_COOKIE_AGE:
                logout(request)  # flushes the session; the view sees an anonymous user
            elif now - seen_at >= settings.SESSION_REFRESH_S or SEEN_AT not in session:
                session[SEEN_AT] = now  # modified: saved with a fresh expiry and cookie
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Permissions-Policy on every response, and ``Cache-Control: no-store`` on every response
    that does not choose its own caching (pages, CSV exports, API data; plotly.js and static
    files set theirs). Nothing user-specific is then kept by a browser or a shared cache."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response


def client_ip(request: HttpRequest) -> str | None:
    """The client address for login throttling: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT
    reverse proxies the address the outermost trusted proxy saw (X-Forwarded-For, read from the
    right so a client cannot choose its own lockout bucket)."""
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR")
