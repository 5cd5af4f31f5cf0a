"""v1 API for job schedulers and integrations: jobs, footprints, budgets, advice.

Views are thin: validate with a serializer, resolve what the token may touch, call a
service or selector, shape the answer. Scope rules live in ``accounting.api.permissions``.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounting.api import serializers as s
from accounting.api.auth import request_token
from accounting.api.permissions import (
    ADMIN_SCOPES,
    READ_SCOPES,
    WRITE_SCOPES,
    Scope,
    ScopePermission,
    TokenRateThrottle,
)
from accounting.models import ApiToken, Cluster, Job, JobAllocation, Team
from accounting.selectors.budgets import (
    budget_check,
    budget_status,
    budget_visible_queryset,
)
from accounting.selectors.jobs import (
    MAX_DB_INT,
    JobFilters,
    cluster_visible_queryset,
    job_footprint_get,
    job_get,
    job_list,
    job_visible_queryset,
    job_with_allocations,
    team_user_cluster_get,
    team_visible_queryset,
)
from accounting.services.advice import advice_for_job
from accounting.services.budgets import budget_set
from accounting.services.jobs import job_end, job_register, job_units_report, job_update
from accounting.services.transactions import retry_on_conflict


class CappedLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffset with bounds: an unbounded limit/offset would overflow PostgreSQL's bigint."""

    max_limit = 500
    max_offset = 10**9

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), self.max_offset)


def field_error(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: [message]})


def _is_index(key) -> bool:
    return isinstance(key, int) or (isinstance(key, str) and key.isdigit())


def bracket_indices(detail):
    """Name list items as ``allocation[0].gpus`` rather than ``allocation.0.gpus``: DRF reports
    errors of list items as a dict keyed by index."""
    if isinstance(detail, dict):
        out = {}
        for key, value in detail.items():
            value = bracket_indices(value)
            if isinstance(value, dict) and value and all(_is_index(k) for k in value):
                for index, item in value.items():
                    out[f"{key}[{index}]"] = item
            else:
                out[key] = value
        return out
    if isinstance(detail, list):
        return [bracket_indices(item) for item in detail]
    return detail


PROBLEM = "application/problem+json"
ERRORS = {
    (400, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="Invalid request; `errors` names each field."),
    (401, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="Missing, invalid or revoked token."),
    (403, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="The token's scope does not allow this."),
    (429, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="Rate limit of this token exceeded."),
}
NOT_FOUND = {(404, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="No such job visible to this token.")}
CONFLICT = {(409, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="The job has ended.")}
CLUSTER_PARAM = OpenApiParameter(
    "cluster", OpenApiTypes.INT, OpenApiParameter.QUERY, required=False,
    description="Cluster id of the job. Implied by a scheduler token; required for user and admin tokens.",
)
SCHEDULER_JOB_ID_PARAM = OpenApiParameter(
    "scheduler_job_id", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=s.SCHEDULER_JOB_ID_PATTERN,
    description="The scheduler's job id (e.g. Slurm job id, Kubernetes pod uid).",
)
JOB_ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="CarbonLedger job id.")

EXAMPLE_ALLOCATION_OUT = [
    {"host": "gpu-node-01", "gpu_index": 0, "gpu_uuid": "GPU-5c3c6e2e-0000-4000-8000-000000000001",
     "pending_device": False, "fraction": 1.0, "start": "2026-11-26T10:00:00Z", "end": None},
    {"host": "gpu-node-01", "gpu_index": 1, "gpu_uuid": "pending:17:1",
     "pending_device": True, "fraction": 1.0, "start": "2026-11-26T10:00:00Z", "end": None},
]
EXAMPLE_JOB = {
    "id": 4211, "scheduler_job_id": "88123", "cluster": 1, "cluster_slug": "hpc-a", "team": "recsys",
    "user": "alice", "name": "dlrm-train", "kind": "training", "family": "recommender", "status": "running",
    "started_at": "2026-11-26T10:00:00Z", "ended_at": None, "requested_s": 14400.0, "power_cap_w": None,
    "model_meta": {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536}, "units": {},
    "primary_unit": "", "quality_metric": "", "quality_value": None, "allocations": EXAMPLE_ALLOCATION_OUT,
    "created_at": "2026-11-26T10:00:01Z", "updated_at": "2026-11-26T10:00:01Z",
}
EXAMPLE_REGISTER = {
    "scheduler_job_id": "88123", "team": "recsys", "user": "alice", "name": "dlrm-train", "kind": "training",
    "family": "recommender", "started_at": "2026-11-26T10:00:00Z", "requested_s": 14400,
    "model_meta": {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536},
    "allocation": [{"host": "gpu-node-01", "gpus": [0, 1]}],
}
EXAMPLE_FOOTPRINT = {
    "job": 4211, "scheduler_job_id": "88123", "status": "completed", "is_final": True, "has_ledger": True,
    "method_version": "2026.11-1",
    "energy": {"total_j": 61200000.0, "total_kwh": 17.0, "gpu_j": 36000000.0, "gpu_active_j": 32400000.0,
               "gpu_idle_j": 3600000.0, "host_j": 4800000.0, "facility_j": 20400000.0},
    "co2e": {"operational_g": 1020.0, "embodied_g": 61.5, "total_g": 1081.5, "low_g": 930.0, "high_g": 1260.0},
    "device_hours": 8.0, "measured_fraction": 1.0,
    "efficiency": [{"unit": "samples", "count": 5.0e8, "energy_j_per_unit": 0.1224, "co2e_g_per_unit": 2.163e-06}],
    "primary_unit": "samples", "sci_g_per_unit": 2.163e-06,
    "last_window_end": "2026-11-26T14:00:00Z", "updated_at": "2026-11-26T14:00:40Z",
}
EXAMPLE_VALIDATION = {
    "type": "about:blank", "title": "Invalid request", "status": 400,
    "detail": "allocation[0].gpus: This field is required with host.",
    "errors": [{"field": "allocation[0].gpus", "message": "This field is required with host."}],
}


class ApiView(APIView):
    permission_classes = [ScopePermission]
    throttle_classes = [TokenRateThrottle]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    scopes: tuple[str, ...] = READ_SCOPES
    scopes_by_method: dict[str, tuple[str, ...]] = {}

    def handle_exception(self, exc):
        if isinstance(exc, serializers.ValidationError):
            exc.detail = bracket_indices(exc.detail)
        return super().handle_exception(exc)

    def token(self) -> ApiToken | None:
        return request_token(self.request)

    def visible_jobs(self) -> QuerySet[Job]:
        return job_visible_queryset(token=self.token(), user=self.request.user)

    def job_or_404(self, *, with_footprint: bool = True, for_update: bool = False, **kwargs) -> Job:
        """The visible job named by the URL, else 404. ``for_update``: read with a row lock
        (call it inside a transaction), without its footprint."""
        lookup: dict = {}
        if "pk" in kwargs:
            lookup["job_id"] = kwargs["pk"]
        else:
            cluster_id = s.validated(s.ClusterQuerySerializer, self.request.query_params.dict()).get("cluster")
            token = self.token()
            if token is not None and token.scope == Scope.SCHEDULER:
                if cluster_id is not None and cluster_id != token.cluster_id:
                    raise exceptions.NotFound("No such job in this token's cluster.")
                cluster_id = token.cluster_id
            elif cluster_id is None:
                raise field_error("cluster", "Required unless the token is a scheduler token.")
            lookup.update(scheduler_job_id=kwargs["scheduler_job_id"], cluster_id=cluster_id)
        job = job_get(token=self.token(), user=self.request.user, for_update=for_update,
                      with_footprint=with_footprint and not for_update, **lookup)
        if job is None:
            raise exceptions.NotFound("No such job visible to this token.")
        return job

    def job_response(
        self, job: Job, *, code: int = status.HTTP_200_OK, allocations: list[JobAllocation] | None = None,
        allocations_sorted: bool = False,
    ) -> Response:
        job = job_with_allocations(job=job, allocations=allocations, allocations_sorted=allocations_sorted)
        return Response(s.JobSerializer(job).data, status=code)

    def org_id(self) -> int:
        token = self.token()
        assert token is not None  # write scopes are token-only
        return token.org_id


# --- jobs ----------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        operation_id="jobs_list",
        summary="List jobs visible to the token",
        description="Filters combine with AND. Newest first. Paginated with `limit`/`offset`.",
        parameters=[s.JobListQuerySerializer],
        responses={200: s.JobSerializer(many=True), **ERRORS},
        examples=[OpenApiExample("A page of jobs", value=EXAMPLE_JOB, response_only=True)],
        tags=["jobs"],
    ),
    post=extend_schema(
        operation_id="jobs_register",
        summary="Register a job start (idempotent on the scheduler's job id)",
        description=(
            "Creates the job (201) or returns the existing one (200). Re-registering adds only devices the "
            "job does not hold yet (a multi-node job's prolog registers once per node), never duplicates. "
            "Unknown hosts/GPU indices get a Host and a placeholder device `pending:<host id>:<index>` that the "
            "ingest service replaces when the agent reports it. Scheduler and admin tokens only."
        ),
        request=s.JobRegisterSerializer,
        responses={201: s.JobSerializer, 200: s.JobSerializer, **ERRORS},
        examples=[
            OpenApiExample("Slurm job on two GPUs of one node", value=EXAMPLE_REGISTER, request_only=True),
            OpenApiExample(
                "By GPU UUID (Kubernetes)",
                value={"scheduler_job_id": "3f6c1f0e-7d4a-4a55-9b7e-1c2d3e4f5a6b", "team": "llm", "kind": "inference",
                       "family": "llm", "allocation": [{"gpu_uuid": "GPU-5c3c6e2e-0000-4000-8000-000000000001"}]},
                request_only=True,
            ),
            OpenApiExample("Registered", value=EXAMPLE_JOB, response_only=True, status_codes=["201", "200"]),
            OpenApiExample("Field error", value=EXAMPLE_VALIDATION, response_only=True, status_codes=["400"]),
        ],
        tags=["jobs"],
    ),
)
class JobCollectionView(ApiView):
    scopes_by_method = {"GET": READ_SCOPES, "POST": WRITE_SCOPES}
    pagination_class = CappedLimitOffsetPagination

    def get(self, request):
        query = s.validated(s.JobListQuerySerializer, request.query_params.dict())
        jobs = job_list(visible=self.visible_jobs(), filters=JobFilters(**query))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(s.JobSerializer(page, many=True).data)

    @retry_on_conflict
    def post(self, request):
        data = s.validated(s.JobRegisterSerializer, request.data)
        token = self.token()
        assert token is not None
        username = data.get("user", "")
        if token.scope == Scope.SCHEDULER:
            self._cluster(token=token, cluster_id=data.get("cluster"))  # 403 on another cluster
        else:
            cluster = self._cluster(token=token, cluster_id=data.get("cluster"))
        team, user, token_cluster = team_user_cluster_get(
            org_id=token.org_id, team_slug=data["team"], username=username,
            cluster_id=token.cluster_id if token.scope == Scope.SCHEDULER else None,
        )
        if token.scope == Scope.SCHEDULER:
            assert token_cluster is not None  # a database constraint of scheduler tokens
            cluster = token_cluster
        if team is None:
            raise field_error("team", f"No team {data['team']!r} in this organisation.")
        assert cluster is not None
        registration = job_register(
            org=team.org,  # the token's organisation (the team is looked up in it)
            cluster=cluster,
            scheduler_job_id=data["scheduler_job_id"],
            team=team,
            kind=data["kind"],
            family=data["family"],
            name=data["name"],
            user=user,
            username=username,
            started_at=data.get("started_at"),
            requested_s=data.get("requested_s"),
            model_meta=data.get("model_meta"),
            power_cap_w=data.get("power_cap_w"),
            allocation=[s.AllocationItemSerializer.to_spec(item) for item in data.get("allocation", [])],
        )
        if registration.created:  # a new job holds exactly the allocations just created
            return self.job_response(
                registration.job, code=status.HTTP_201_CREATED, allocations=registration.allocations,
                allocations_sorted=registration.allocations_sorted,
            )
        return self.job_response(registration.job)

    @staticmethod
    def _cluster(*, token: ApiToken, cluster_id: int | None) -> Cluster | None:
        """The cluster to register in (``None`` for a scheduler token: its own, loaded with the
        team); 403/400 when the token may not register there."""
        if token.scope == Scope.SCHEDULER:
            if cluster_id is not None and cluster_id != token.cluster_id:
                raise exceptions.PermissionDenied("A scheduler token registers jobs of its own cluster only.")
            return None
        if cluster_id is None:
            raise field_error("cluster", "Required for admin tokens.")
        cluster = Cluster.objects.filter(pk=cluster_id, site__org_id=token.org_id).first()
        if cluster is None:
            raise field_error("cluster", f"No cluster {cluster_id} in this organisation.")
        return cluster


JOB_DETAIL_SCHEMA = {
    "get": extend_schema(
        summary="Get a job (with its allocations)",
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("A running job", value=EXAMPLE_JOB, response_only=True)],
        tags=["jobs"],
    ),
    "patch": extend_schema(
        summary="Update a job: allocation change, functional units, quality metric, metadata",
        description=(
            "`allocation` is the complete set held from `effective_at` (default now): devices no longer named are "
            "released then, new ones held from then; telemetry already attributed for the affected devices is "
            "re-attributed. `units` and `model_meta` merge key by key. Scheduler and admin tokens only."
        ),
        request=s.JobUpdateSerializer,
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND, **CONFLICT},
        examples=[
            OpenApiExample(
                "Grow to a second node",
                value={"allocation": [{"host": "gpu-node-01", "gpus": [0, 1]}, {"host": "gpu-node-02", "gpus": [0, 1]}],
                       "effective_at": "2026-11-26T11:00:00Z"},
                request_only=True,
            ),
            OpenApiExample(
                "Units and quality",
                value={"units": {"samples": 5.0e8}, "primary_unit": "samples", "quality_metric": "auc",
                       "quality_value": 0.803},
                request_only=True,
            ),
            OpenApiExample("Updated", value=EXAMPLE_JOB, response_only=True),
        ],
        tags=["jobs"],
    ),
}


class JobDetailView(ApiView):
    scopes_by_method = {"GET": READ_SCOPES, "PATCH": WRITE_SCOPES}

    def get(self, request, **kwargs):
        return self.job_response(self.job_or_404(**kwargs))

    @retry_on_conflict
    def patch(self, request, **kwargs):
        job = self.job_or_404(**kwargs)
        data = dict(s.validated(s.JobUpdateSerializer, request.data))
        allocation = data.pop("allocation", None)
        job = job_update(
            job=job,
            allocation=(
                [s.AllocationItemSerializer.to_spec(i) for i in allocation] if allocation is not None else None
            ),
            **data,
        )
        return self.job_response(job)


JOB_END_SCHEMA = {
    "post": extend_schema(
        summary="End a job (idempotent: the first end wins)",
        description=(
            "Closes the job's allocations at `ended_at` (default now), re-attributes telemetry after it and "
            "finalises the footprint. Ending an ended job returns it unchanged with 200. Scheduler and admin "
            "tokens only."
        ),
        request=s.JobEndSerializer,
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND},
        examples=[
            OpenApiExample("Completed", value={"exit_state": "completed", "ended_at": "2026-11-26T14:00:00Z"},
                           request_only=True),
            OpenApiExample("Ended", value={**EXAMPLE_JOB, "status": "completed", "ended_at": "2026-11-26T14:00:00Z"},
                           response_only=True),
        ],
        tags=["jobs"],
    )
}


class JobEndView(ApiView):
    scopes = WRITE_SCOPES

    @retry_on_conflict
    def post(self, request, **kwargs):
        with transaction.atomic():
            # The visibility check and the row lock are one query; job_end does not re-read.
            job = self.job_or_404(for_update=True, **kwargs)
            body = s.validated(s.JobEndSerializer, request.data)
            job, changed = job_end(
                job=job, status=body["exit_state"], ended_at=body.get("ended_at"), locked=True,
            )
        if changed:  # job_end loaded the allocations as they are now
            return Response(s.JobSerializer(job).data)
        return self.job_response(job)


JOB_FOOTPRINT_SCHEMA = {
    "get": extend_schema(
        summary="A job's footprint (live while running, final after the end)",
        description=(
            "From the job's ledger totals: energy breakdown, operational and embodied carbon with a low/high band, "
            "per-unit efficiency (energy and gCO2e per reported functional unit; SCI for the primary unit), the "
            "method version and whether the numbers are final. All zeros with `has_ledger: false` until the first "
            "telemetry is attributed."
        ),
        responses={200: s.JobFootprintSerializer, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Final footprint", value=EXAMPLE_FOOTPRINT, response_only=True)],
        tags=["jobs"],
    )
}


class JobFootprintView(ApiView):
    scopes = READ_SCOPES

    def get(self, request, **kwargs):
        job = self.job_or_404(**kwargs)
        return Response(s.represented(s.JobFootprintSerializer, job_footprint_get(job=job)))


JOB_UNITS_SCHEMA = {
    "post": extend_schema(
        summary="Report functional units (from the training/inference loop)",
        description=(
            "`mode: set` stores cumulative totals (retry-safe, recommended); `mode: add` adds increments. "
            "Scheduler and admin tokens, and user tokens for jobs of the user's teams."
        ),
        request=s.JobUnitsSerializer,
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND},
        examples=[
            OpenApiExample("Tokens so far", value={"units": {"tokens": 1.2e9}, "mode": "set", "primary_unit": "tokens"},
                           request_only=True),
            OpenApiExample(
                "Job with units",
                value={**EXAMPLE_JOB, "units": {"tokens": 1.2e9}, "primary_unit": "tokens"},
                response_only=True,
            ),
        ],
        tags=["jobs"],
    )
}


class JobUnitsView(ApiView):
    scopes = (Scope.SCHEDULER, Scope.USER, Scope.ADMIN)

    @retry_on_conflict
    def post(self, request, **kwargs):
        job = self.job_or_404(**kwargs)
        body = s.validated(s.JobUnitsSerializer, request.data)
        job = job_units_report(job=job, **body)
        return self.job_response(job)


def _by_id(view: type[ApiView], schema: dict, name: str) -> type[ApiView]:
    by_id = extend_schema_view(**schema)(type(f"{view.__name__}ById", (view,), {}))
    return extend_schema_view(
        **{method: extend_schema(operation_id=f"{name}_{method}", parameters=[JOB_ID_PARAM]) for method in schema}
    )(by_id)


def _by_key(view: type[ApiView], schema: dict, name: str) -> type[ApiView]:
    by_key = extend_schema_view(**schema)(type(f"{view.__name__}ByKey", (view,), {}))
    return extend_schema_view(
        **{
            method: extend_schema(
                operation_id=f"{name}_by_key_{method}", parameters=[SCHEDULER_JOB_ID_PARAM, CLUSTER_PARAM]
            )
            for method in schema
        }
    )(by_key)


JobDetailByIdView = _by_id(JobDetailView, JOB_DETAIL_SCHEMA, "job")
JobDetailByKeyView = _by_key(JobDetailView, JOB_DETAIL_SCHEMA, "job")
JobEndByIdView = _by_id(JobEndView, JOB_END_SCHEMA, "job_end")
JobEndByKeyView = _by_key(JobEndView, JOB_END_SCHEMA, "job_end")
JobFootprintByIdView = _by_id(JobFootprintView, JOB_FOOTPRINT_SCHEMA, "job_footprint")
JobFootprintByKeyView = _by_key(JobFootprintView, JOB_FOOTPRINT_SCHEMA, "job_footprint")
JobUnitsByIdView = _by_id(JobUnitsView, JOB_UNITS_SCHEMA, "job_units")
JobUnitsByKeyView = _by_key(JobUnitsView, JOB_UNITS_SCHEMA, "job_units")


# --- budgets -------------------------------------------------------------------------------

EXAMPLE_BUDGET = {
    "id": 7, "team": "recsys", "period_start": "2026-11-01", "period_end": "2026-12-01", "co2e_budget_g": 5.0e6,
    "note": "Q4 target", "as_of": "2026-11-26T12:00:00Z", "spent_g": 3.9e6, "forecast_g": 4.55e6,
    "remaining_g": 1.1e6, "used_fraction": 0.78, "elapsed_fraction": 0.85,
}


@extend_schema_view(
    get=extend_schema(
        operation_id="budgets_list",
        summary="Team budgets with spent and forecast",
        description=(
            "Spent = the team's TeamDay carbon (operational + embodied) in the period so far; forecast = spent "
            "extrapolated linearly to the period end."
        ),
        parameters=[s.BudgetListQuerySerializer],
        responses={200: s.BudgetStatusSerializer(many=True), **ERRORS},
        examples=[OpenApiExample("A budget", value=EXAMPLE_BUDGET, response_only=True)],
        tags=["budgets"],
    ),
    post=extend_schema(
        operation_id="budgets_set",
        summary="Create or replace a team's budget for a period (admin tokens)",
        request=s.BudgetSetSerializer,
        responses={201: s.BudgetStatusSerializer, 200: s.BudgetStatusSerializer, **ERRORS},
        examples=[
            OpenApiExample("November", value={"team": "recsys", "period_start": "2026-11-01",
                                              "period_end": "2026-12-01", "co2e_budget_g": 5.0e6,
                                              "note": "Q4 target"}, request_only=True),
            OpenApiExample("Stored", value=EXAMPLE_BUDGET, response_only=True, status_codes=["201", "200"]),
        ],
        tags=["budgets"],
    ),
)
class BudgetCollectionView(ApiView):
    scopes_by_method = {"GET": READ_SCOPES, "POST": ADMIN_SCOPES}
    pagination_class = CappedLimitOffsetPagination

    def teams(self) -> QuerySet[Team]:
        return team_visible_queryset(token=self.token(), user=self.request.user)

    def get(self, request):
        query = s.validated(s.BudgetListQuerySerializer, request.query_params.dict())
        budgets = budget_visible_queryset(teams=self.teams())
        if query.get("team"):
            budgets = budgets.filter(team__slug=query["team"])
        now = timezone.now()
        if query.get("active") is not None:
            today = now.date()
            active = {"period_start__lte": today, "period_end__gt": today}
            budgets = budgets.filter(**active) if query["active"] else budgets.exclude(**active)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(budgets, request, view=self)
        data = [s.BudgetStatusSerializer(budget_status(budget=b, as_of=now)).data for b in page or []]
        return paginator.get_paginated_response(data)

    def post(self, request):
        data = s.validated(s.BudgetSetSerializer, request.data)
        team = self.teams().filter(slug=data["team"]).first()
        if team is None:
            raise field_error("team", f"No team {data['team']!r} in this organisation.")
        budget, created = budget_set(
            team=team, period_start=data["period_start"], period_end=data["period_end"],
            co2e_budget_g=data["co2e_budget_g"], note=data["note"],
        )
        return Response(
            s.BudgetStatusSerializer(budget_status(budget=budget, as_of=timezone.now())).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema_view(
    get=extend_schema(
        operation_id="budgets_get",
        summary="One budget with spent and forecast",
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses={200: s.BudgetStatusSerializer, **ERRORS,
                   (404, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="No such budget visible.")},
        examples=[OpenApiExample("A budget", value=EXAMPLE_BUDGET, response_only=True)],
        tags=["budgets"],
    )
)
class BudgetDetailView(ApiView):
    scopes = READ_SCOPES

    def get(self, request, pk: int):
        teams = team_visible_queryset(token=self.token(), user=request.user)
        budget = budget_visible_queryset(teams=teams).filter(pk=pk).first() if 0 < pk <= MAX_DB_INT else None
        if budget is None:
            raise exceptions.NotFound("No such budget visible to this token.")
        return Response(s.BudgetStatusSerializer(budget_status(budget=budget, as_of=timezone.now())).data)


@extend_schema_view(
    post=extend_schema(
        operation_id="budgets_check",
        summary="Would this job exceed the team's budget? (ok / warn / hold)",
        description=(
            "Projected = spent in the budget period containing `at` + the job's estimate. `warn` from 90 % of the "
            "budget, `hold` from 100 % (thresholds in the response). A team without a budget then is `ok`."
        ),
        request=s.BudgetCheckSerializer,
        responses={200: s.BudgetDecisionSerializer, **ERRORS},
        examples=[
            OpenApiExample("Check a 12 kg job", value={"team": "recsys", "co2e_g": 12000.0}, request_only=True),
            OpenApiExample(
                "Warn",
                value={"decision": "warn", "team": "recsys", "estimate_g": 700000.0, "projected_g": 4.6e6,
                       "projected_fraction": 0.92, "thresholds": {"warn_fraction": 0.9, "hold_fraction": 1.0},
                       "budget": EXAMPLE_BUDGET},
                response_only=True,
            ),
        ],
        tags=["budgets"],
    )
)
class BudgetCheckView(ApiView):
    scopes = READ_SCOPES

    def post(self, request):
        data = s.validated(s.BudgetCheckSerializer, request.data)
        team = team_visible_queryset(token=self.token(), user=request.user).filter(slug=data["team"]).first()
        if team is None:
            raise field_error("team", f"No team {data['team']!r} visible to this token.")
        now = timezone.now()
        decision = budget_check(team=team, estimate_g=data["co2e_g"], at=data.get("at") or now, as_of=now)
        return Response(s.BudgetDecisionSerializer(decision).data)


# --- advice --------------------------------------------------------------------------------


@extend_schema_view(
    post=extend_schema(
        operation_id="advice",
        summary="Carbon-aware advice: footprint per candidate cluster and the cleanest start window",
        description=(
            "Estimates a planned job on each candidate cluster with the what-if engine (energy = GPUs x average "
            "power x hours, x the site's PUE; operational carbon on the zone's annual factor with a low/high band; "
            "embodied share of the device) and searches the zone's stored hourly intensity (recorded wins over "
            "forecast) for the start before the deadline with the least carbon. The recommendation is the "
            "candidate and start with the least operational + embodied carbon, compared with the first candidate "
            "starting at `earliest_start`."
        ),
        request=s.AdviceRequestSerializer,
        responses={200: s.AdviceResponseSerializer, **ERRORS},
        examples=[
            OpenApiExample(
                "8 H100 for 6 h, by tomorrow noon",
                value={"gpu_count": 8, "hours": 6, "hardware_model": "h100-sxm5-80gb", "clusters": [1, 2],
                       "earliest_start": "2026-11-26T10:00:00Z", "deadline": "2026-11-27T12:00:00Z"},
                request_only=True,
            ),
            OpenApiExample(
                "Advice",
                value={
                    "hardware_model": "h100-sxm5-80gb", "gpu_count": 8, "hours": 6.0,
                    "earliest_start": "2026-11-26T10:00:00Z", "deadline": "2026-11-27T12:00:00Z",
                    "candidates": [{
                        "cluster": 1, "cluster_slug": "hpc-a", "site": "paris", "zone": "FR", "pue": 1.3,
                        "avg_power_w": 574.0, "it_energy_kwh": 27.55, "total_energy_kwh": 35.82,
                        "annual_intensity_g_per_kwh": 56.0, "co2e_operational_annual_g": 2006.0,
                        "co2e_embodied_g": 1026.0, "co2e_low_g": 2300.0, "co2e_high_g": 3900.0,
                        "at_earliest": {"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T16:00:00Z",
                                        "co2e_operational_g": 1802.0, "intensity_g_per_kwh": 50.3},
                        "best": {"start": "2026-11-27T01:00:00Z", "end": "2026-11-27T07:00:00Z",
                                 "co2e_operational_g": 1147.0, "intensity_g_per_kwh": 32.0},
                        "saving_g": 655.0, "window_source": "hourly", "window_candidates": 21}],
                    "recommendation": {"cluster": 1, "start": "2026-11-27T01:00:00Z", "end": "2026-11-27T07:00:00Z",
                                       "co2e_g": 2173.0, "baseline_co2e_g": 2828.0, "saving_g": 655.0,
                                       "saving_fraction": 0.2316},
                    "assumptions": ["facility energy = IT energy x the site's PUE"],
                },
                response_only=True,
            ),
        ],
        tags=["advice"],
    )
)
class AdviceView(ApiView):
    scopes = READ_SCOPES

    def post(self, request):
        data = s.validated(s.AdviceRequestSerializer, request.data)
        token = self.token()
        visible = cluster_visible_queryset(token=token, user=request.user)
        if "clusters" in data:
            by_id = {c.pk: c for c in visible.filter(pk__in=data["clusters"])}
            missing = [cid for cid in data["clusters"] if cid not in by_id]
            if missing:
                raise field_error("clusters", f"Unknown cluster id(s): {', '.join(map(str, missing))}.")
            clusters = [by_id[cid] for cid in data["clusters"]]
        else:
            clusters = list(visible.order_by("id"))
            if token is not None and token.scope == Scope.SCHEDULER:
                clusters.sort(key=lambda c: c.pk != token.cluster_id)
        advice = advice_for_job(
            clusters=clusters, hardware_model=data["hardware_model"], gpu_count=data["gpu_count"],
            hours=data["hours"], earliest_start=data.get("earliest_start") or timezone.now(),
            deadline=data.get("deadline"), avg_power_w=data.get("avg_power_w"),
            utilisation=data.get("utilisation"),
        )
        return Response(s.AdviceResponseSerializer(advice).data)


@csrf_exempt
def api_not_found(request, unmatched: str = "") -> JsonResponse:
    """Unknown /api/v1/ URLs answer problem details too (not Django's HTML 404 page)."""
    return JsonResponse(
        {"type": "about:blank", "title": "Not found", "status": 404, "detail": f"No API endpoint at {request.path}."},
        status=404,
        content_type="application/problem+json",
    )
