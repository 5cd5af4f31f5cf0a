"""What-if API (thin): serializers validate every field against its physical bound
(``accounting.domain.bounds``), services do the work, the pure engine computes. The views are
``ApiView``s: scope permissions, the per-token rate limit and problem-details errors as every
other v1 endpoint, and a job is projected only when the request's principal sees it (else 404).
Engine input errors become 400s naming the field; nothing here should 500."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework.response import Response

from accounting.api import schema
from accounting.api.base import ApiView
from accounting.api.permissions import READ_SCOPES
from accounting.api.whatif_serializers import BestWindowRequest, EstimateRequest, FleetPlanRequest, ProjectRequest
from accounting.services.whatif import (
    whatif_best_window,
    whatif_device_specs,
    whatif_estimate,
    whatif_fleet_plan,
    whatif_jsonable,
    whatif_project_job,
)


def _run(fn, **kwargs):
    return Response(whatif_jsonable(fn(**kwargs)))  # an InputError is a 400 naming its field (api/errors.py)


class WhatIfView(ApiView):
    # Any principal that reads (scheduler, user, admin tokens; a signed-in user); host tokens
    # only ingest. (A comment, not a docstring: drf-spectacular would show it as every
    # operation's description.)
    scopes = READ_SCOPES


@extend_schema_view(**schema.WHATIF_ESTIMATE_SCHEMA)
class EstimateView(WhatIfView):
    def post(self, request):
        specs = whatif_device_specs()
        s = EstimateRequest(data=request.data, context={"specs": specs})
        s.is_valid(raise_exception=True)
        return _run(whatif_estimate, specs=specs, **s.validated_data)


@extend_schema_view(**schema.WHATIF_PROJECT_SCHEMA)
class ProjectJobView(WhatIfView):
    def post(self, request, job_id: int):
        job = self.job_or_404(job_id=job_id, with_footprint=True)
        specs = whatif_device_specs()
        s = ProjectRequest(data=request.data, context={"specs": specs})
        s.is_valid(raise_exception=True)
        return _run(whatif_project_job, job=job, specs=specs, **s.validated_data)


@extend_schema_view(**schema.WHATIF_FLEET_PLAN_SCHEMA)
class FleetPlanView(WhatIfView):
    def post(self, request):
        specs = whatif_device_specs()
        s = FleetPlanRequest(data=request.data, context={"specs": specs})
        s.is_valid(raise_exception=True)
        return _run(whatif_fleet_plan, specs=specs, **s.validated_data)


@extend_schema_view(**schema.WHATIF_BEST_WINDOW_SCHEMA)
class BestWindowView(WhatIfView):
    def post(self, request):
        s = BestWindowRequest(data=request.data)
        s.is_valid(raise_exception=True)
        data = dict(s.validated_data)
        if data.get("forecast"):
            data["forecast"] = [(p["hour"], p["intensity_g_per_kwh"]) for p in data["forecast"]]
        return _run(whatif_best_window, **data)
