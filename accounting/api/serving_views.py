"""``/api/v1/jobs/{id}/serving/`` and ``/api/v1/jobs/by-key/{scheduler_job_id}/serving/``: an
inference service's counters in (POST a scrape of its server's metrics page) and its energy and
carbon per request, per 1k input and output tokens, per hour and per day out (GET)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response

from accounting.api import schema
from accounting.api import serializers as s
from accounting.api.base import ApiView, Scope
from accounting.domain.serving import SERVERS, ServiceEfficiency, UnitRate
from accounting.selectors.serving import ServiceReport, service_report
from accounting.services.serving import serving_counters_record

# A vLLM page with every histogram is ~100 kB; a Triton page of many models more.
MAX_SCRAPE_CHARS = 2_000_000


class ServingScrapeSerializer(s.StrictSerializer):
    server = serializers.ChoiceField(choices=sorted(SERVERS), help_text="The serving engine whose page this is.")
    metrics = serializers.CharField(
        max_length=MAX_SCRAPE_CHARS,
        trim_whitespace=False,
        help_text=(
            "The server's metrics page as scraped (Prometheus text format). It must hold the server's request "
            "counter (and, with several models, `model` must name one): otherwise a 400 naming `metrics` or `model`."
        ),
    )
    at = s.AwareDateTimeField(required=False, help_text="When it was scraped. Default: now.")
    model = serializers.CharField(
        max_length=300, required=False, help_text="The model whose series count (needed when the page has several)."
    )


class ServingCountersSerializer(serializers.Serializer):
    job = serializers.IntegerField(source="job_id")
    at = serializers.DateTimeField()
    server = serializers.CharField()
    requests_total = serializers.FloatField()
    input_tokens_total = serializers.FloatField(allow_null=True)
    output_tokens_total = serializers.FloatField(allow_null=True)


class ServiceReportQuerySerializer(serializers.Serializer):
    start = s.AwareDateTimeField(required=False, help_text="Default: the service's start (widened to the hour).")
    end = s.AwareDateTimeField(
        required=False, help_text="Default: its end, or the last whole hour while it runs (widened to the hour)."
    )
    cluster = serializers.IntegerField(required=False, min_value=1)


class UnitRateSerializer(serializers.Serializer):
    energy_j = serializers.FloatField()
    co2e_g = serializers.FloatField()


def _rate(rate: UnitRate | None) -> dict | None:
    return None if rate is None else {"energy_j": rate.energy_j, "co2e_g": rate.co2e_g}


class ServiceReportSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    scheduler_job_id = serializers.CharField()
    server = serializers.CharField(allow_null=True)
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    period_s = serializers.FloatField()
    counters_from = serializers.DateTimeField(allow_null=True)
    counters_to = serializers.DateTimeField(allow_null=True)
    readings = serializers.IntegerField()
    energy_j = serializers.FloatField()
    co2e_operational_g = serializers.FloatField()
    co2e_embodied_g = serializers.FloatField()
    co2e_g = serializers.FloatField()
    requests = serializers.FloatField(allow_null=True, help_text="Completed requests (null: fewer than two readings).")
    input_tokens = serializers.FloatField(allow_null=True)
    output_tokens = serializers.FloatField(allow_null=True)
    per_request = UnitRateSerializer(allow_null=True)
    per_1k_input_tokens = UnitRateSerializer(allow_null=True)
    per_1k_output_tokens = UnitRateSerializer(allow_null=True)
    per_hour = UnitRateSerializer(allow_null=True)
    per_day = UnitRateSerializer(allow_null=True)


def report_data(report: ServiceReport) -> dict:
    eff: ServiceEfficiency = report.efficiency
    return {
        "job": report.job.pk,
        "scheduler_job_id": report.job.scheduler_job_id,
        "server": report.server,
        "period_start": report.period_start,
        "period_end": report.period_end,
        "period_s": eff.period_s,
        "counters_from": report.counters_from,
        "counters_to": report.counters_to,
        "readings": report.readings,
        "energy_j": eff.energy_j,
        "co2e_operational_g": eff.co2e_operational_g,
        "co2e_embodied_g": eff.co2e_embodied_g,
        "co2e_g": eff.co2e_g,
        "requests": eff.requests,
        "input_tokens": eff.input_tokens,
        "output_tokens": eff.output_tokens,
        "per_request": _rate(eff.per_request),
        "per_1k_input_tokens": _rate(eff.per_1k_input_tokens),
        "per_1k_output_tokens": _rate(eff.per_1k_output_tokens),
        "per_hour": _rate(eff.per_hour),
        "per_day": _rate(eff.per_day),
    }


_DOC = {
    "post": extend_schema(
        summary="Record an inference server's counters (a scrape of its metrics page)",
        description=(
            "Requests, input and output tokens from a vLLM, TGI, trtllm-serve or Triton metrics page "
            "(docs/integrations.md lists the counters). The same `at` again replaces the reading. Scheduler and "
            "admin tokens, and user tokens for services of the user's teams."
        ),
        request=ServingScrapeSerializer,
        responses={
            201: ServingCountersSerializer,
            **schema.ERRORS,
            **schema.NOT_FOUND,
            **schema.BODY_ERRORS,
            (409, schema.PROBLEM): OpenApiResponse(
                s.ProblemSerializer, description="Not an inference job, or counters of another server."
            ),
        },
        examples=[
            OpenApiExample(
                "vLLM scrape",
                value={
                    "server": "vllm",
                    "at": "2026-11-26T11:00:00Z",
                    "metrics": 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 1600.0\n',
                },
                request_only=True,
            )
        ],
        tags=["jobs"],
    ),
    "get": extend_schema(
        summary="A service's energy and carbon per request, per 1k tokens, per hour and per day",
        description=(
            "Over any period (widened to whole hours): the job-hours' energy and carbon divided by the "
            "requests and tokens its server counted (each rate divides the whole footprint by one unit)."
        ),
        parameters=[ServiceReportQuerySerializer],
        responses={200: ServiceReportSerializer, **schema.ERRORS, **schema.NOT_FOUND},
        tags=["jobs"],
    ),
}


class ServingView(ApiView):
    scopes = (Scope.SCHEDULER, Scope.USER, Scope.ADMIN)

    def post(self, request, **kwargs):
        job = self.job_or_404(with_footprint=False, **kwargs)
        body = s.validated(ServingScrapeSerializer, request.data)
        row = serving_counters_record(
            job=job,
            server=body["server"],
            metrics=body["metrics"],
            at=body.get("at") or timezone.now(),
            model=body.get("model"),
        )
        return Response(ServingCountersSerializer(row).data, status=status.HTTP_201_CREATED)

    def get(self, request, **kwargs):
        job = self.job_or_404(with_footprint=False, **kwargs)
        query = s.validated(ServiceReportQuerySerializer, request.query_params.dict())
        report = service_report(job=job, start=query.get("start"), end=query.get("end"), now=timezone.now())
        return Response(ServiceReportSerializer(report_data(report)).data)


def _operations(name: str, parameters: list) -> dict:
    return {m: extend_schema(operation_id=f"{name}_{m}", parameters=parameters) for m in ("get", "post")}


@extend_schema_view(**_operations("job_serving", [schema.JOB_ID_PARAM]))
@extend_schema_view(**_DOC)
class ServingByIdView(ServingView):
    """The service by CarbonLedger job id."""


@extend_schema_view(**_operations("job_serving_by_key", [schema.SCHEDULER_JOB_ID_PARAM, schema.CLUSTER_PARAM]))
@extend_schema_view(**_DOC)
class ServingByKeyView(ServingView):
    """The service by the scheduler's job id (and the cluster, unless the token is a scheduler's)."""
