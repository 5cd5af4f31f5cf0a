"""What-if API (thin): serializers validate every field, services do the work, the pure engine
computes. Engine input errors become 400s naming the field; nothing here should 500."""

from __future__ import annotations

import math

from django.db.models import Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounting.api.auth import request_token
from accounting.domain.catalog import PRECISIONS
from accounting.domain.whatif.common import FAMILIES, KINDS
from accounting.models import ApiToken, Job, Membership
from accounting.services.whatif import (
    whatif_best_window,
    whatif_device_specs,
    whatif_estimate,
    whatif_fleet_plan,
    whatif_jsonable,
    whatif_project_job,
)


def job_visible_to(request, job: Job) -> bool:
    """Superuser; org admin (Membership with team null, role admin) in the job's org; member of
    the job's team. Tokens: admin scope sees its org, user scope follows its user's rule,
    scheduler scope sees its cluster's jobs, host scope sees no jobs."""
    token = request_token(request)
    if token is not None:
        if token.org_id != job.org_id:
            return False
        if token.scope == ApiToken.Scope.ADMIN:
            return True
        if token.scope == ApiToken.Scope.SCHEDULER:
            return token.cluster_id is not None and token.cluster_id == job.cluster_id
        if token.scope == ApiToken.Scope.USER:
            return token.user_id is not None and _user_sees(token.user, job)
        return False
    user = request.user
    return bool(user and user.is_authenticated) and _user_sees(user, job)


def _user_sees(user, job: Job) -> bool:
    if getattr(user, "is_superuser", False):
        return True
    if not getattr(user, "pk", None):
        return False
    return (
        Membership.objects.filter(user=user)
        .filter(Q(org_id=job.org_id, team__isnull=True, role=Membership.Role.ADMIN) | Q(team_id=job.team_id))
        .exists()
    )


class CanUseWhatIf(IsAuthenticated):
    """Any signed-in user or API token except host (ingest-only) tokens."""

    message = "Host tokens may only ingest telemetry."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        token = request_token(request)
        return token is None or token.scope != ApiToken.Scope.HOST


class FiniteFloat(serializers.FloatField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("must be a finite number")
        return value


def _device_key_field(**kw):
    return serializers.CharField(max_length=64, **kw)


def _check_device(serializer: serializers.Serializer, value: str) -> str:
    specs = serializer.context["specs"]
    if value not in specs:
        raise serializers.ValidationError(f"unknown device {value!r}; known: {', '.join(sorted(specs))}")
    return value


class EmbodiedSerializer(serializers.Serializer):
    embodied_kg = FiniteFloat(min_value=0)
    embodied_low_kg = FiniteFloat(min_value=0, required=False)
    embodied_high_kg = FiniteFloat(min_value=0, required=False)
    lifetime_years = FiniteFloat(min_value=0.1, max_value=30, required=False, default=5.0)
    expected_utilisation = FiniteFloat(min_value=0.01, max_value=1, required=False, default=1.0)

    def validate(self, attrs):
        kg = attrs["embodied_kg"]
        if attrs.get("embodied_low_kg", kg) > kg:
            raise serializers.ValidationError({"embodied_low_kg": "must be <= embodied_kg"})
        if attrs.get("embodied_high_kg", kg) < kg:
            raise serializers.ValidationError({"embodied_high_kg": "must be >= embodied_kg"})
        return attrs


class CarbonFieldsMixin(serializers.Serializer):
    pue = FiniteFloat(min_value=1.0, max_value=5.0)
    intensity_g_per_kwh = FiniteFloat(min_value=0, max_value=5000, required=False)
    zone_code = serializers.CharField(max_length=64, required=False)

    def _check_carbon(self, attrs):
        if attrs.get("intensity_g_per_kwh") is None and not attrs.get("zone_code"):
            raise serializers.ValidationError({"intensity_g_per_kwh": "give intensity_g_per_kwh or zone_code"})


class EstimateRequest(CarbonFieldsMixin):
    device_key = _device_key_field()
    device_count = serializers.IntegerField(min_value=1, max_value=1_000_000)
    hours = FiniteFloat(min_value=1e-6, max_value=1e6, required=False)
    flops = FiniteFloat(min_value=1, max_value=1e30, required=False)
    efficiency = FiniteFloat(min_value=1e-4, max_value=1, required=False)
    precision = serializers.ChoiceField(choices=PRECISIONS, default="bf16")
    avg_power_w = FiniteFloat(min_value=1, max_value=5000, required=False)
    utilisation = FiniteFloat(min_value=0, max_value=1, required=False)
    embodied = EmbodiedSerializer(required=False)
    units = serializers.DictField(child=FiniteFloat(min_value=0), required=False, default=dict)

    def validate_device_key(self, value):
        return _check_device(self, value)

    def validate(self, attrs):
        if ("hours" in attrs) == ("flops" in attrs):
            raise serializers.ValidationError({"hours": "give exactly one of hours or flops"})
        if "efficiency" in attrs and "flops" not in attrs:
            raise serializers.ValidationError({"efficiency": "only used with flops"})
        if ("avg_power_w" in attrs) == ("utilisation" in attrs):
            raise serializers.ValidationError({"avg_power_w": "give exactly one of avg_power_w or utilisation"})
        self._check_carbon(attrs)
        return attrs


class ProjectRequest(serializers.Serializer):
    target_key = _device_key_field()
    target_count = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    target_precision = serializers.ChoiceField(choices=PRECISIONS, required=False)
    target_power_cap_w = FiniteFloat(min_value=1, max_value=5000, required=False)
    target_zone_code = serializers.CharField(max_length=64, required=False)
    target_pue = FiniteFloat(min_value=1.0, max_value=5.0, required=False)

    def validate_target_key(self, value):
        return _check_device(self, value)


class WorkloadSerializer(serializers.Serializer):
    family = serializers.ChoiceField(choices=FAMILIES)
    kind = serializers.ChoiceField(choices=KINDS)
    device_hours_per_year = FiniteFloat(min_value=0, max_value=1e9)
    precision = serializers.ChoiceField(choices=PRECISIONS, default="bf16")
    avg_util = FiniteFloat(min_value=0, max_value=1, required=False)
    avg_power_w = FiniteFloat(min_value=1, max_value=5000, required=False)
    split = serializers.ListField(
        child=FiniteFloat(min_value=0, max_value=1), min_length=3, max_length=3, required=False
    )

    def validate_split(self, value):
        if sum(value) <= 0:
            raise serializers.ValidationError("shares must not all be 0")
        return tuple(value)


class FleetPlanRequest(CarbonFieldsMixin):
    old_key = _device_key_field()
    old_count = serializers.IntegerField(min_value=1, max_value=1_000_000)
    new_key = _device_key_field()
    new_count = serializers.IntegerField(min_value=1, max_value=1_000_000)
    # DRF passes max_length on to the ListSerializer (many=True); the stubs' __init__ omits it.
    workloads = WorkloadSerializer(many=True, allow_empty=False, max_length=200)  # type: ignore[call-arg]
    old_age_years = FiniteFloat(min_value=0, max_value=30, default=0.0)
    old_embodied = EmbodiedSerializer(required=False)
    new_embodied = EmbodiedSerializer(required=False)

    def validate_old_key(self, value):
        return _check_device(self, value)

    def validate_new_key(self, value):
        return _check_device(self, value)

    def validate(self, attrs):
        self._check_carbon(attrs)
        return attrs


class ForecastPoint(serializers.Serializer):
    hour = serializers.DateTimeField()
    intensity_g_per_kwh = FiniteFloat(min_value=0, max_value=5000)


class BestWindowRequest(serializers.Serializer):
    duration_s = FiniteFloat(min_value=1, max_value=30 * 86400)
    earliest_start = serializers.DateTimeField()
    deadline = serializers.DateTimeField()
    forecast = ForecastPoint(many=True, required=False, max_length=24 * 31)  # type: ignore[call-arg]  # as above
    zone_code = serializers.CharField(max_length=64, required=False)
    energy_j = FiniteFloat(min_value=0, max_value=1e18, required=False)
    pue = FiniteFloat(min_value=1.0, max_value=5.0, default=1.0)

    def validate(self, attrs):
        if not attrs.get("forecast") and not attrs.get("zone_code"):
            raise serializers.ValidationError({"forecast": "give forecast points or zone_code"})
        if attrs["deadline"] <= attrs["earliest_start"]:
            raise serializers.ValidationError({"deadline": "must be after earliest_start"})
        return attrs


def _run(fn, **kwargs):
    return Response(whatif_jsonable(fn(**kwargs)))  # an InputError is a 400 naming its field (api/errors.py)


_RESULT = OpenApiResponse(description="Scenario result: inputs, footprint(s), band and assumptions.")
_PROBLEM = OpenApiResponse(description="Problem details naming the offending field(s).")


class EstimateView(APIView):
    permission_classes = [CanUseWhatIf]

    @extend_schema(
        summary="Estimate a planned job from inputs alone",
        request=EstimateRequest,
        responses={200: _RESULT, 400: _PROBLEM},
        examples=[
            OpenApiExample(
                "hours and power",
                request_only=True,
                value={
                    "device_key": "h100-sxm5-80gb",
                    "device_count": 8,
                    "hours": 24,
                    "avg_power_w": 550,
                    "pue": 1.2,
                    "intensity_g_per_kwh": 350,
                    "units": {"tokens": 2.0e10},
                },
            ),
            OpenApiExample(
                "FLOPs and MFU",
                request_only=True,
                value={
                    "device_key": "a100-sxm4-80gb",
                    "device_count": 64,
                    "flops": 8.4e22,
                    "efficiency": 0.4,
                    "utilisation": 0.9,
                    "pue": 1.1,
                    "zone_code": "FR",
                    "embodied": {
                        "embodied_kg": 150,
                        "embodied_low_kg": 100,
                        "embodied_high_kg": 250,
                        "lifetime_years": 5,
                    },
                },
            ),
        ],
    )
    def post(self, request):
        specs = whatif_device_specs()
        s = EstimateRequest(data=request.data, context={"specs": specs})
        s.is_valid(raise_exception=True)
        return _run(whatif_estimate, specs=specs, **s.validated_data)


class ProjectJobView(APIView):
    permission_classes = [CanUseWhatIf]

    @extend_schema(
        summary="Project a measured job onto another device, count, precision or zone",
        request=ProjectRequest,
        responses={200: _RESULT, 400: _PROBLEM, 404: OpenApiResponse(description="No such job visible to you.")},
        examples=[
            OpenApiExample("to H100", request_only=True, value={"target_key": "h100-sxm5-80gb", "target_count": 4})
        ],
    )
    def post(self, request, job_id: int):
        job = get_object_or_404(Job.objects.select_related("cluster__site__zone", "team", "org"), pk=job_id)
        if not job_visible_to(request, job):
            raise NotFound("No such job.")
        specs = whatif_device_specs()
        s = ProjectRequest(data=request.data, context={"specs": specs})
        s.is_valid(raise_exception=True)
        return _run(whatif_project_job, job=job, specs=specs, **s.validated_data)


class FleetPlanView(APIView):
    permission_classes = [CanUseWhatIf]

    @extend_schema(
        summary="Plan a fleet upgrade: yearly energy/carbon before and after, payback, break-even intensity",
        request=FleetPlanRequest,
        responses={200: _RESULT, 400: _PROBLEM},
        examples=[
            OpenApiExample(
                "A100 → H100",
                request_only=True,
                value={
                    "old_key": "a100-sxm4-80gb",
                    "old_count": 64,
                    "new_key": "h100-sxm5-80gb",
                    "new_count": 32,
                    "pue": 1.3,
                    "intensity_g_per_kwh": 400,
                    "old_age_years": 3,
                    "workloads": [
                        {"family": "llm", "kind": "training", "device_hours_per_year": 300000, "avg_util": 0.85}
                    ],
                    "old_embodied": {"embodied_kg": 150, "lifetime_years": 5},
                    "new_embodied": {
                        "embodied_kg": 200,
                        "embodied_low_kg": 150,
                        "embodied_high_kg": 300,
                        "lifetime_years": 5,
                    },
                },
            )
        ],
    )
    def post(self, request):
        specs = whatif_device_specs()
        s = FleetPlanRequest(data=request.data, context={"specs": specs})
        s.is_valid(raise_exception=True)
        return _run(whatif_fleet_plan, specs=specs, **s.validated_data)


class BestWindowView(APIView):
    permission_classes = [CanUseWhatIf]

    @extend_schema(
        summary="Cleanest start window before a deadline",
        request=BestWindowRequest,
        responses={200: _RESULT, 400: _PROBLEM},
        examples=[
            OpenApiExample(
                "given forecast",
                request_only=True,
                value={
                    "duration_s": 7200,
                    "earliest_start": "2026-11-26T10:00:00Z",
                    "deadline": "2026-11-26T16:00:00Z",
                    "energy_j": 3.6e9,
                    "pue": 1.2,
                    "forecast": [
                        {"hour": f"2026-11-26T{h:02d}:00:00Z", "intensity_g_per_kwh": v}
                        for h, v in zip(range(10, 16), (420, 380, 250, 210, 300, 410), strict=True)
                    ],
                },
            )
        ],
    )
    def post(self, request):
        s = BestWindowRequest(data=request.data)
        s.is_valid(raise_exception=True)
        data = dict(s.validated_data)
        if data.get("forecast"):
            data["forecast"] = [(p["hour"], p["intensity_g_per_kwh"]) for p in data["forecast"]]
        return _run(whatif_best_window, **data)
