"""Prometheus exposition at ``/metrics`` (and its former address ``/api/v1/metrics``).

A custom collector reads the ledger's roll-ups at scrape time (``accounting.selectors.metrics``:
a few aggregate queries), so every replica of the web app exposes the same numbers and nothing
is kept in process memory. Accumulating figures are counters in base units (joules, grams,
seconds; ``_total``), labelled by organisation, site, cluster, team, job, device model and
account; the text format by default, OpenMetrics when the scraper asks for it (``Accept``).

Access is scoped by the bearer token: an admin token sees its organisation (team totals, the
fleet-overhead account, GPUs by model, ingest state, jobs); a user token the totals and jobs of
its teams. With the setting ``CARBONLEDGER_METRICS_PUBLIC = True`` the endpoint is open and
reports every organisation: use that only behind a network boundary that limits who can scrape.

The job label is ``job_id`` (the scheduler's id), not ``job``: Prometheus puts its own ``job``
label (the scrape job) on every series and would rename ours to ``exported_job``.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from rest_framework import permissions
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from accounting.api.permissions import Scope, TokenRateThrottle, request_principal
from accounting.api.serializers import ProblemSerializer
from accounting.selectors.access import Principal
from accounting.selectors.metrics import MetricsSnapshot, metric_families, metrics_snapshot, recent_job_s

PROBLEM = "application/problem+json"
PUBLIC_PRINCIPAL = Principal(scope=Scope.ADMIN, is_superuser=True)
METRIC_SCOPES = (Scope.ADMIN, Scope.USER)


def metrics_public() -> bool:
    return bool(getattr(settings, "CARBONLEDGER_METRICS_PUBLIC", False))


class LedgerCollector(Collector):
    def __init__(self, snapshot: MetricsSnapshot, *, now_ts: float) -> None:
        self.snapshot = snapshot
        self.now_ts = now_ts

    def collect(self) -> Iterator[Metric]:
        return metric_families(self.snapshot, now_ts=self.now_ts)


def metrics_exposition(*, principal: Principal, accept: str) -> tuple[bytes, str]:
    """The scrape's body and content type: OpenMetrics when ``accept`` asks for it, else text 0.0.4."""
    now = timezone.now()
    snapshot = metrics_snapshot(principal=principal, now=now, recent_s=recent_job_s())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(snapshot, now_ts=now.timestamp()))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class PrometheusTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):  # an error's problem details, whatever the client accepts
            return JSONRenderer().render(data)
        return data if isinstance(data, bytes) else str(data).encode("utf-8")


class OpenMetricsRenderer(PrometheusTextRenderer):
    media_type = "application/openmetrics-text"
    format = "openmetrics"


class MetricsPermission(permissions.BasePermission):
    message = "The metrics endpoint needs an admin or a user token."

    def has_permission(self, request, view) -> bool:
        if metrics_public():
            return True
        principal = request_principal(request)
        return principal.via_token and principal.scope in METRIC_SCOPES


class PrometheusMetricsView(APIView):
    permission_classes = [MetricsPermission]
    throttle_classes = [TokenRateThrottle]
    renderer_classes = [JSONRenderer, PrometheusTextRenderer, OpenMetricsRenderer]

    @extend_schema(
        operation_id="metrics",
        summary="Prometheus metrics (energy and carbon counters by team, job, device model; ingest state)",
        description=(
            "Prometheus text exposition format (OpenMetrics with `Accept: application/openmetrics-text`). "
            "An admin token sees its organisation, a user token its teams' totals and jobs; open to all "
            "organisations when the server sets CARBONLEDGER_METRICS_PUBLIC=True. Served at /metrics; "
            "/api/v1/metrics is the same. Metric names and labels: docs/integrations.md."
        ),
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Prometheus text format"),
            (200, "application/openmetrics-text"): OpenApiResponse(OpenApiTypes.STR, description="OpenMetrics"),
            (401, PROBLEM): OpenApiResponse(ProblemSerializer, description="Missing or invalid token."),
            (403, PROBLEM): OpenApiResponse(ProblemSerializer, description="Not an admin or user token."),
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
                    "# HELP carbonledger_energy_joules_total Attributed energy (IT + facility) by account\n"
                    "# TYPE carbonledger_energy_joules_total counter\n"
                    'carbonledger_energy_joules_total{account="job",org="acme",site="paris",team="llm"} 3.6e+06\n'
                ),
                response_only=True,
                media_type="text/plain",
            )
        ],
        tags=["operations"],
    )
    def get(self, request):
        # DRF ignores an empty ?format=; the schema allows only the two formats, so say so.
        if "format" in request.query_params and request.query_params["format"] not in ("prometheus", "openmetrics"):
            raise NotFound("Unknown format: 'prometheus' or 'openmetrics'.")
        accept = request.META.get("HTTP_ACCEPT", "")
        if request.query_params.get("format") == "openmetrics":
            accept = OpenMetricsRenderer.media_type
        principal = request_principal(request)
        if not (principal.via_token and principal.scope in METRIC_SCOPES):
            principal = PUBLIC_PRINCIPAL  # the permission let it in: the endpoint is public
        body, content_type = metrics_exposition(principal=principal, accept=accept)
        return HttpResponse(body, content_type=content_type)


@extend_schema_view(get=extend_schema(exclude=True))
class FormerPathMetricsView(PrometheusMetricsView):
    """``/api/v1/metrics``, the former address: the same exposition, documented once at ``/metrics``."""
