"""Consistent API errors as RFC 9457 problem details, naming the offending field(s)."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger(__name__)


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


def problem_exception_handler(exc, context):
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    errors = None
    if response.status_code == status.HTTP_400_BAD_REQUEST:
        errors = _flatten(data)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        title = "Invalid request"
    else:
        detail = str(data.get("detail", data)) if isinstance(data, dict) else str(data)
        title = {401: "Not authenticated", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                 409: "Conflict", 413: "Payload too large", 415: "Unsupported media type",
                 429: "Too many requests"}.get(response.status_code, "Error")
    problem = problem_response(status_code=response.status_code, title=title, detail=detail, errors=errors)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem[header] = response[header]
    return problem
