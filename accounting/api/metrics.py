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

import math
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from rest_framework import permissions
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from accounting.api.permissions import Scope, TokenRateThrottle, request_principal
from accounting.api.serializers import ProblemSerializer
from accounting.selectors.access import Principal
from accounting.selectors.metrics import MetricsSnapshot, metrics_snapshot

PROBLEM = "application/problem+json"
# A job that ended keeps its series this long (seconds), so the last scrapes see its final
# totals; after that it leaves the exposition (the cardinality bound).
DEFAULT_RECENT_JOB_S = 3600.0
PUBLIC_PRINCIPAL = Principal(scope=Scope.ADMIN, is_superuser=True)
METRIC_SCOPES = (Scope.ADMIN, Scope.USER)

TEAM_LABELS = ["org", "site", "team", "account"]
GPU_LABELS = ["org", "site", "cluster", "device_model"]
JOB_LABELS = ["org", "site", "cluster", "team", "job_id", "device_model"]


def metrics_public() -> bool:
    return bool(getattr(settings, "CARBONLEDGER_METRICS_PUBLIC", False))


def recent_job_s() -> float:
    return float(getattr(settings, "CARBONLEDGER_METRICS_RECENT_JOB_S", DEFAULT_RECENT_JOB_S))


def metric_families(snapshot: MetricsSnapshot, *, now_ts: float) -> Iterator[Metric]:
    """The families of one scrape, from what the principal sees (pure: no query here)."""
    energy = CounterMetricFamily(
        "carbonledger_energy_joules",
        "Attributed energy (IT + facility) by account: job (a team's jobs, GPU idle baseline excluded), "
        "idle_allocated (GPU idle baseline of devices a job held), fleet_overhead (unallocated devices, team '')",
        labels=TEAM_LABELS,
    )
    carbon = CounterMetricFamily(
        "carbonledger_co2e_grams",
        "Carbon (gCO2e) by account: job (a team's jobs, including their allocated idle), fleet_overhead; "
        "kind operational (Scope 2, location-based) or embodied",
        labels=[*TEAM_LABELS, "kind"],
    )
    for t in snapshot.teams:
        base = [t.org, t.site, t.team]
        if t.team:
            energy.add_metric([*base, "job"], t.energy_j - t.gpu_idle_energy_j)
            energy.add_metric([*base, "idle_allocated"], t.gpu_idle_energy_j)
            account = "job"
        else:
            energy.add_metric([*base, "fleet_overhead"], t.energy_j)
            account = "fleet_overhead"
        carbon.add_metric([*base, account, "operational"], t.co2e_operational_g)
        carbon.add_metric([*base, account, "embodied"], t.co2e_embodied_g)
    yield energy
    yield carbon

    if snapshot.ingest is not None:  # organisation admins: the fleet by device model
        gpu_energy = CounterMetricFamily(
            "carbonledger_gpu_energy_joules",
            "GPU energy by device model; state active or idle (idle baseline, allocated or not)",
            labels=[*GPU_LABELS, "state"],
        )
        gpu_carbon = CounterMetricFamily(
            "carbonledger_gpu_co2e_grams", "Carbon (gCO2e) of GPU energy and GPU embodied", labels=[*GPU_LABELS, "kind"]
        )
        allocated = CounterMetricFamily(
            "carbonledger_gpu_allocated_seconds", "Device-seconds GPUs were held by jobs", labels=GPU_LABELS
        )
        observed = CounterMetricFamily(
            "carbonledger_gpu_observed_seconds", "Device-seconds GPUs were observed by the agent", labels=GPU_LABELS
        )
        for g in snapshot.gpus:
            base = [g.org, g.site, g.cluster, g.device_model]
            gpu_energy.add_metric([*base, "active"], g.energy_j - g.idle_energy_j)
            gpu_energy.add_metric([*base, "idle"], g.idle_energy_j)
            gpu_carbon.add_metric([*base, "operational"], g.co2e_operational_g)
            gpu_carbon.add_metric([*base, "embodied"], g.co2e_embodied_g)
            allocated.add_metric(base, g.allocated_s)
            observed.add_metric(base, g.observed_s)
        yield from (gpu_energy, gpu_carbon, allocated, observed)

    job_energy = CounterMetricFamily(
        "carbonledger_job_energy_joules",
        "Energy of running and recently ended jobs by account: job (GPU idle baseline excluded) or idle_allocated",
        labels=[*JOB_LABELS, "account"],
    )
    job_carbon = CounterMetricFamily(
        "carbonledger_job_co2e_grams",
        "Carbon (gCO2e) of running and recently ended jobs; kind operational or embodied",
        labels=[*JOB_LABELS, "kind"],
    )
    job_gpu = CounterMetricFamily(
        "carbonledger_job_gpu_energy_joules",
        "GPU energy of running and recently ended jobs; quality measured (energy counter) or estimated "
        "(integrated, interpolated or modelled)",
        labels=[*JOB_LABELS, "quality"],
    )
    job_units = CounterMetricFamily(
        "carbonledger_job_functional_units",
        "Functional units a job reported (tokens, samples, queries, requests)",
        labels=[*JOB_LABELS, "unit"],
    )
    job_running = GaugeMetricFamily(
        "carbonledger_job_running", "1 while the job runs, 0 once it ended", labels=JOB_LABELS
    )
    for j in snapshot.jobs:
        base = [j.org, j.site, j.cluster, j.team, j.job_id, j.device_model]
        job_energy.add_metric([*base, "job"], j.energy_j - j.gpu_idle_energy_j)
        job_energy.add_metric([*base, "idle_allocated"], j.gpu_idle_energy_j)
        job_carbon.add_metric([*base, "operational"], j.co2e_operational_g)
        job_carbon.add_metric([*base, "embodied"], j.co2e_embodied_g)
        job_gpu.add_metric([*base, "measured"], j.measured_gpu_energy_j)
        job_gpu.add_metric([*base, "estimated"], j.gpu_energy_j - j.measured_gpu_energy_j)
        for unit, value in j.units.items():
            job_units.add_metric([*base, unit], value)
        job_running.add_metric(base, 1.0 if j.running else 0.0)
    yield from (job_energy, job_carbon, job_gpu, job_units, job_running)

    ingest = snapshot.ingest
    if ingest is None:
        return
    lag = GaugeMetricFamily(
        "carbonledger_ingest_lag_seconds", "Seconds since the newest telemetry batch was received (NaN when none yet)"
    )
    last = ingest.last_received_at
    lag.add_metric([], now_ts - last.timestamp() if last is not None else math.nan)
    yield lag
    queue = GaugeMetricFamily(
        "carbonledger_attribution_queue_batches", "Telemetry batches by attribution state", labels=["state"]
    )
    queue.add_metric(["pending"], ingest.pending)
    queue.add_metric(["claimed"], ingest.claimed)
    queue.add_metric(["failed"], ingest.failed)
    yield queue
    jobs = GaugeMetricFamily("carbonledger_jobs_running", "Jobs currently running", labels=["org"])
    for org, n in ingest.running_jobs.items():
        jobs.add_metric([org], n)
    yield jobs
    hosts = GaugeMetricFamily(
        "carbonledger_host_last_seen_timestamp_seconds",
        "End of the last telemetry window ingested from the host (Unix time)",
        labels=["org", "site", "cluster", "host"],
    )
    for h in ingest.hosts:
        hosts.add_metric([h.org, h.site, h.cluster, h.host], h.last_seen_at.timestamp())
    yield hosts


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
