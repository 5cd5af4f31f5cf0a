"""Prometheus ``/api/v1/metrics``: ledger totals, ingest lag and queue depth, read from the DB.

A custom collector queries PostgreSQL at scrape time (a handful of aggregate queries), so
every replica of the web app exposes the same numbers and nothing is kept in process memory.

Access: an admin token (scoped to its organisation) by default. With the setting
``CARBONLEDGER_METRICS_PUBLIC = True`` the endpoint is open and reports every organisation:
use that only behind a network boundary that limits who can scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, F, Max, Q, Sum
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from rest_framework import permissions
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from accounting.api.auth import request_token
from accounting.api.permissions import Scope, TokenRateThrottle
from accounting.api.serializers import ProblemSerializer
from accounting.models import Job, TeamDay
from telemetry.models import TelemetryBatch

PROBLEM = "application/problem+json"


def metrics_public() -> bool:
    return bool(getattr(settings, "CARBONLEDGER_METRICS_PUBLIC", False))


class LedgerCollector(Collector):
    """Reads the ledger roll-ups and the ingest queue; ``org_id`` None = all organisations."""

    def __init__(self, *, org_id: int | None) -> None:
        self.org_id = org_id

    def collect(self) -> Iterator[GaugeMetricFamily]:
        org_filter = Q() if self.org_id is None else Q(org_id=self.org_id)
        days = (
            TeamDay.objects.filter(org_filter)
            .values("org__slug", "site__slug")
            .annotate(
                energy=Sum("energy_j"),
                idle=Sum("gpu_idle_energy_j"),
                operational=Sum("co2e_operational_g"),
                embodied=Sum("co2e_embodied_g"),
            )
            .order_by("org__slug", "site__slug")
        )
        energy = GaugeMetricFamily(
            "carbonledger_energy_joules", "Attributed energy (IT + facility) in the ledger", labels=["org", "site"]
        )
        idle = GaugeMetricFamily(
            "carbonledger_gpu_idle_energy_joules", "GPU idle energy in the ledger", labels=["org", "site"]
        )
        carbon = GaugeMetricFamily(
            "carbonledger_co2e_grams", "Carbon in the ledger (gCO2e)", labels=["org", "site", "kind"]
        )
        for row in days:
            labels = [row["org__slug"], row["site__slug"]]
            energy.add_metric(labels, row["energy"] or 0.0)
            idle.add_metric(labels, row["idle"] or 0.0)
            carbon.add_metric([*labels, "operational"], row["operational"] or 0.0)
            carbon.add_metric([*labels, "embodied"], row["embodied"] or 0.0)
        yield energy
        yield idle
        yield carbon

        batch_filter = Q() if self.org_id is None else Q(host__cluster__site__org_id=self.org_id)
        batches = TelemetryBatch.objects.filter(batch_filter).aggregate(
            last_received=Max("received_at"),
            pending=Count("pk", filter=Q(status=TelemetryBatch.Status.PENDING)),
            claimed=Count("pk", filter=Q(status=TelemetryBatch.Status.CLAIMED)),
            failed=Count("pk", filter=Q(status=TelemetryBatch.Status.FAILED)),
        )
        lag = GaugeMetricFamily(
            "carbonledger_ingest_lag_seconds",
            "Seconds since the newest telemetry batch was received (NaN when none yet)",
        )
        last = batches["last_received"]
        lag.add_metric([], (timezone.now() - last).total_seconds() if last is not None else float("nan"))
        yield lag
        queue = GaugeMetricFamily(
            "carbonledger_attribution_queue_batches", "Telemetry batches by attribution state", labels=["state"]
        )
        for state in ("pending", "claimed", "failed"):
            queue.add_metric([state], batches[state])
        yield queue

        jobs = GaugeMetricFamily("carbonledger_jobs_running", "Jobs currently running", labels=["org"])
        job_filter = Q(status=Job.Status.RUNNING) & (Q() if self.org_id is None else Q(org_id=self.org_id))
        for row in Job.objects.filter(job_filter).values(org_slug=F("org__slug")).annotate(n=Count("pk")).order_by():
            jobs.add_metric([row["org_slug"]], row["n"])
        yield jobs


def metrics_text(*, org_id: int | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(org_id=org_id))
    return generate_latest(registry)


class PrometheusTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):  # an error's problem details, whatever the client accepts
            return JSONRenderer().render(data)
        return data if isinstance(data, bytes) else str(data).encode("utf-8")


class MetricsPermission(permissions.BasePermission):
    message = "The metrics endpoint needs an admin token."

    def has_permission(self, request, view) -> bool:
        if metrics_public():
            return True
        token = request_token(request)
        return token is not None and token.scope == Scope.ADMIN


class PrometheusMetricsView(APIView):
    permission_classes = [MetricsPermission]
    throttle_classes = [TokenRateThrottle]
    renderer_classes = [JSONRenderer, PrometheusTextRenderer]

    @extend_schema(
        operation_id="metrics",
        summary="Prometheus metrics (energy, carbon, ingest lag, attribution queue depth)",
        description=(
            "Prometheus text exposition format. Needs an admin token (metrics of its organisation) unless "
            "the server sets CARBONLEDGER_METRICS_PUBLIC=True (then open, all organisations)."
        ),
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Prometheus text format"),
            (401, PROBLEM): OpenApiResponse(ProblemSerializer, description="Missing or invalid token."),
            (403, PROBLEM): OpenApiResponse(ProblemSerializer, description="Not an admin token."),
            (404, PROBLEM): OpenApiResponse(ProblemSerializer, description="Unknown `format`."),
            (429, PROBLEM): OpenApiResponse(ProblemSerializer, description="Rate limit of this token exceeded."),
            (503, PROBLEM): OpenApiResponse(
                ProblemSerializer, description="The database or the rate-limit cache is unavailable; retry later."
            ),
        },
        examples=[
            OpenApiExample(
                "Scrape",
                value=(
                    "# HELP carbonledger_ingest_lag_seconds Seconds since the newest telemetry batch was received\n"
                    "# TYPE carbonledger_ingest_lag_seconds gauge\ncarbonledger_ingest_lag_seconds 4.2\n"
                ),
                response_only=True,
                media_type="text/plain",
            )
        ],
        tags=["operations"],
    )
    def get(self, request):
        # DRF ignores an empty ?format=; the schema allows only "prometheus", so say so.
        if "format" in request.query_params and request.query_params["format"] != "prometheus":
            raise NotFound("Unknown format: the only format is 'prometheus'.")
        token = request_token(request)
        org_id = token.org_id if token is not None and token.scope == Scope.ADMIN else None
        if org_id is None and not metrics_public():  # pragma: no cover - the permission already refused
            org_id = -1
        return HttpResponse(metrics_text(org_id=org_id), content_type=CONTENT_TYPE_LATEST)
