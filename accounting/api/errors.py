"""Consistent API errors as RFC 9457 problem details, naming the offending field(s)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import redis.exceptions
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from accounting.domain.errors import InputError, StateError

log = logging.getLogger(__name__)

# A PostgreSQL restart or failover takes seconds; the agent keeps its batch spooled meanwhile.
DATABASE_RETRY_AFTER_S = 5
# Django wraps errors of its own cursors; ingest's COPY runs on the raw psycopg cursor.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, psycopg.OperationalError)
# The throttle counters live in the Redis cache (settings.CACHES); Django's RedisCache lets
# redis-py's errors through. A restart of Redis takes about as long as one of PostgreSQL.
CACHE_RETRY_AFTER_S = 5
CACHE_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _cache_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was raised from, a Redis connection or timeout error (a cache
    backend may wrap it)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, CACHE_UNAVAILABLE):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                path = f"{prefix}[{key}]"  # DRF keys list-item errors by index
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                path = prefix or "body"
            errors.extend(_flatten(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            errors.extend({"field": prefix or "body", "message": str(item)} for item in detail)
        else:
            for index, item in enumerate(detail):
                if item in ({}, []):
                    continue
                errors.extend(_flatten(item, f"{prefix}[{index}]"))
    else:
        errors.append({"field": prefix or "body", "message": str(detail)})
    return errors


def problem_response(
    *, status_code: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status_code, "detail": detail}
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code, content_type="application/problem+json")


def _unavailable(exc: Exception, *, where: str, what: str, detail: str, retry_after_s: int) -> Response:
    """503 with Retry-After: a dependency is down, the request may succeed later unchanged."""
    log.warning("%s unavailable during %s: %s: %s", what, where, type(exc).__name__, exc)
    problem = problem_response(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        title="Service unavailable",
        detail=f"{detail} is unavailable; retry later.",
    )
    problem["Retry-After"] = str(retry_after_s)
    return problem


def _unhandled_problem(exc: Exception, context) -> Response:
    """What DRF leaves to Django's 500 page (HTML, and a debug page with DEBUG=True) as problem
    details: 503 with Retry-After when the database or the cache (Redis: the throttles' counters)
    is unreachable, else a logged 500."""
    set_rollback()
    request = context.get("request")
    where = f"{request.method} {request.path}" if request is not None else "?"
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return _unavailable(
            exc, where=where, what="database", detail="The database", retry_after_s=DATABASE_RETRY_AFTER_S
        )
    if _cache_unavailable(exc):
        return _unavailable(
            exc, where=where, what="cache", detail="The rate-limit cache", retry_after_s=CACHE_RETRY_AFTER_S
        )
    log.error("unhandled error during %s", where, exc_info=exc)
    return problem_response(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        title="Internal server error",
        detail="An unexpected error occurred; it has been logged.",
    )


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource's state does not allow this change."
    default_code = "conflict"


def problem_exception_handler(exc, context):
    # The one place a rule's errors become HTTP: input it cannot work with is a 400 naming the
    # field, a state that forbids the change a 409 (services and the domain raise these).
    if isinstance(exc, InputError):
        exc = serializers.ValidationError({exc.field: [exc.message]})
    elif isinstance(exc, StateError):
        exc = Conflict(str(exc))
    response = exception_handler(exc, context)
    if response is None:
        return _unhandled_problem(exc, context)
    data = response.data
    errors = None
    if response.status_code == status.HTTP_400_BAD_REQUEST:
        errors = _flatten(data)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        title = "Invalid request"
    else:
        detail = str(data.get("detail", data)) if isinstance(data, dict) else str(data)
        title = {
            401: "Not authenticated",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            409: "Conflict",
            413: "Payload too large",
            415: "Unsupported media type",
            429: "Too many requests",
            503: "Service unavailable",
        }.get(response.status_code, "Error")
    problem = problem_response(status_code=response.status_code, title=title, detail=detail, errors=errors)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem[header] = response[header]
    return problem
