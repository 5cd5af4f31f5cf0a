"""Liveness/readiness probe for load balancers and container health checks."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def healthz(request):
    checks: dict[str, str] = {}
    status = 200
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: the probe must answer
        checks["database"] = f"error: {exc.__class__.__name__}"
        status = 503
    try:
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1).ping()
        checks["broker"] = "ok"
    except Exception as exc:  # the broker may be down: ingest still stores batches durably
        checks["broker"] = f"degraded: {exc.__class__.__name__}"
    return JsonResponse({"status": "ok" if status == 200 else "error", "checks": checks}, status=status)
