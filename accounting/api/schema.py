"""OpenAPI documentation of the v1 API (drf-spectacular): the shared error responses and
parameters, request/response examples and each operation's ``extend_schema`` arguments, keyed
by HTTP method as ``extend_schema_view`` takes them. The views (``accounting.api.views``,
``accounting.api.whatif_views``) hold behaviour only."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from accounting.api import serializers as s
from accounting.api.whatif_serializers import BestWindowRequest, EstimateRequest, FleetPlanRequest, ProjectRequest

PROBLEM = "application/problem+json"


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(s.ProblemSerializer, description=description)


# Every status an operation can answer is documented (schemathesis' status_code_conformance
# holds the API to it); each as RFC 9457 problem details (accounting.api.errors).
ERRORS = {
    (400, PROBLEM): _problem(
        "Invalid request; `errors` names each field. Also: a rule the schema states only in a description "
        "(a field required with another, an order of two times, a team, cluster or device that must exist)."
    ),
    (401, PROBLEM): _problem("Missing, invalid or revoked token."),
    (403, PROBLEM): _problem("The token's scope does not allow this."),
    (429, PROBLEM): _problem("Rate limit of this token exceeded; `Retry-After` says when to retry."),
    (503, PROBLEM): _problem("The database or the rate-limit cache is unavailable; `Retry-After` says when to retry."),
}
# Operations that take a JSON body: any other media type is refused.
BODY_ERRORS = {(415, PROBLEM): _problem("The body is not `application/json`.")}
NOT_FOUND = {(404, PROBLEM): _problem("No such job visible to this token.")}
CONFLICT = {(409, PROBLEM): _problem("The job has ended: its allocation can no longer change.")}
CLUSTER_PARAM = OpenApiParameter(
    "cluster",
    {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    OpenApiParameter.QUERY,
    required=False,
    description=(
        "Cluster id of the job. Implied by a scheduler token (another cluster: 404); required for user and "
        "admin tokens (missing: 400)."
    ),
)
SCHEDULER_JOB_ID_PARAM = OpenApiParameter(
    "scheduler_job_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=s.SCHEDULER_JOB_ID_PATTERN,
    description="The scheduler's job id (e.g. Slurm job id, Kubernetes pod uid).",
)
JOB_ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="CarbonLedger job id.")

EXAMPLE_ALLOCATION_OUT = [
    {
        "host": "gpu-node-01",
        "gpu_index": 0,
        "gpu_uuid": "GPU-5c3c6e2e-0000-4000-8000-000000000001",
        "pending_device": False,
        "fraction": 1.0,
        "start": "2026-11-26T10:00:00Z",
        "end": None,
    },
    {
        "host": "gpu-node-01",
        "gpu_index": 1,
        "gpu_uuid": "pending:17:1",
        "pending_device": True,
        "fraction": 1.0,
        "start": "2026-11-26T10:00:00Z",
        "end": None,
    },
]
EXAMPLE_JOB = {
    "id": 4211,
    "scheduler_job_id": "88123",
    "cluster": 1,
    "cluster_slug": "hpc-a",
    "team": "recsys",
    "user": "alice",
    "name": "dlrm-train",
    "kind": "training",
    "family": "recommender",
    "status": "running",
    "started_at": "2026-11-26T10:00:00Z",
    "ended_at": None,
    "requested_s": 14400.0,
    "power_cap_w": None,
    "model_meta": {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536},
    "units": {},
    "primary_unit": "",
    "quality_metric": "",
    "quality_value": None,
    "allocations": EXAMPLE_ALLOCATION_OUT,
    "created_at": "2026-11-26T10:00:01Z",
    "updated_at": "2026-11-26T10:00:01Z",
}
EXAMPLE_REGISTER = {
    "scheduler_job_id": "88123",
    "team": "recsys",
    "user": "alice",
    "name": "dlrm-train",
    "kind": "training",
    "family": "recommender",
    "started_at": "2026-11-26T10:00:00Z",
    "requested_s": 14400,
    "model_meta": {"parameters": 2.1e9, "precision": "bf16", "batch_size": 65536},
    "allocation": [{"host": "gpu-node-01", "gpus": [0, 1]}],
}
EXAMPLE_FOOTPRINT = {
    "job": 4211,
    "scheduler_job_id": "88123",
    "status": "completed",
    "is_final": True,
    "has_ledger": True,
    "method_version": "2026.12-1",
    "energy": {
        "total_j": 61200000.0,
        "total_kwh": 17.0,
        "gpu_j": 36000000.0,
        "gpu_active_j": 32400000.0,
        "gpu_idle_j": 3600000.0,
        "host_j": 4800000.0,
        "facility_j": 20400000.0,
    },
    "co2e": {"operational_g": 1020.0, "embodied_g": 61.5, "total_g": 1081.5, "low_g": 930.0, "high_g": 1260.0},
    "device_hours": 8.0,
    "measured_fraction": 1.0,
    "energy_covers": {"gpu_j": 36000000.0, "gpu_memory_j": 0.0, "gpu_cpu_memory_j": 0.0, "unrecorded_j": 0.0},
    "efficiency": [{"unit": "samples", "count": 5.0e8, "energy_j_per_unit": 0.1224, "co2e_g_per_unit": 2.163e-06}],
    "primary_unit": "samples",
    "sci_g_per_unit": 2.163e-06,
    "last_window_end": "2026-11-26T14:00:00Z",
    "updated_at": "2026-11-26T14:00:40Z",
    # With ?include=scope2: 17 kWh, 12 of it covered by a GO bundle at 0 g, 5 kWh at a 420 g/kWh
    # residual mix; WUE 1.8 L/kWh of 11.333 kWh IT; grid water 1.9 (0.9-3.8) L/kWh.
    "scope2": {
        "location_based_g": 1020.0,
        "location_basis": {"direct_share": 1.0, "lifecycle_share": 0.0, "co2_only_share": 0.0, "label": "direct"},
        "market_based_g": 2100.0,
        "market_matching": "annual",
        "residual_sources": ["DE 2026: residual mix 420 g/kWh, AIB European Residual Mixes 2025 v1.0 v1"],
        "upstream_g": 212.5,
        "water_onsite_l": 20.4,
        "water_offsite_l": 32.3,
        "water_low_l": 35.7,
        "water_high_l": 85.0,
        "water_it_kwh_without_wue": 0.0,
    },
}
EXAMPLE_VALIDATION = {
    "type": "about:blank",
    "title": "Invalid request",
    "status": 400,
    "detail": "allocation[0].gpus: This field is required with host.",
    "errors": [{"field": "allocation[0].gpus", "message": "This field is required with host."}],
}


# --- jobs ----------------------------------------------------------------------------------

JOBS_SCHEMA = dict(
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
        responses={201: s.JobSerializer, 200: s.JobSerializer, **ERRORS, **BODY_ERRORS},
        examples=[
            OpenApiExample("Slurm job on two GPUs of one node", value=EXAMPLE_REGISTER, request_only=True),
            OpenApiExample(
                "By GPU UUID (Kubernetes)",
                value={
                    "scheduler_job_id": "3f6c1f0e-7d4a-4a55-9b7e-1c2d3e4f5a6b",
                    "team": "llm",
                    "kind": "inference",
                    "family": "llm",
                    "allocation": [{"gpu_uuid": "GPU-5c3c6e2e-0000-4000-8000-000000000001"}],
                },
                request_only=True,
            ),
            OpenApiExample("Registered", value=EXAMPLE_JOB, response_only=True, status_codes=["201", "200"]),
            OpenApiExample("Field error", value=EXAMPLE_VALIDATION, response_only=True, status_codes=["400"]),
        ],
        tags=["jobs"],
    ),
)

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
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND, **CONFLICT, **BODY_ERRORS},
        examples=[
            OpenApiExample(
                "Grow to a second node",
                value={
                    "allocation": [{"host": "gpu-node-01", "gpus": [0, 1]}, {"host": "gpu-node-02", "gpus": [0, 1]}],
                    "effective_at": "2026-11-26T11:00:00Z",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Units and quality",
                value={
                    "units": {"samples": 5.0e8},
                    "primary_unit": "samples",
                    "quality_metric": "auc",
                    "quality_value": 0.803,
                },
                request_only=True,
            ),
            OpenApiExample("Updated", value=EXAMPLE_JOB, response_only=True),
        ],
        tags=["jobs"],
    ),
}

JOB_END_SCHEMA = {
    "post": extend_schema(
        summary="End a job (idempotent: the first end wins)",
        description=(
            "Closes the job's allocations at `ended_at` (default now), re-attributes telemetry after it and "
            "finalises the footprint. Ending an ended job returns it unchanged with 200. Scheduler and admin "
            "tokens only."
        ),
        request=s.JobEndSerializer,
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND, **BODY_ERRORS},
        examples=[
            OpenApiExample(
                "Completed", value={"exit_state": "completed", "ended_at": "2026-11-26T14:00:00Z"}, request_only=True
            ),
            OpenApiExample(
                "Ended",
                value={**EXAMPLE_JOB, "status": "completed", "ended_at": "2026-11-26T14:00:00Z"},
                response_only=True,
            ),
        ],
        tags=["jobs"],
    )
}

JOB_FOOTPRINT_SCHEMA = {
    "get": extend_schema(
        summary="A job's footprint (live while running, final after the end)",
        description=(
            "From the job's ledger totals: energy breakdown, operational and embodied carbon with a low/high band, "
            "per-unit efficiency (energy and gCO2e per reported functional unit; SCI for the primary unit), the "
            "method version and whether the numbers are final. All zeros with `has_ledger: false` until the first "
            "telemetry is attributed. With `include=scope2` the `scope2` section adds dual Scope 2 reporting "
            "(location-based with its intensity basis, market-based with the matching used), upstream electricity "
            "emissions (Scope 3 cat. 3) and water on and off site with its range (docs/method.md)."
        ),
        parameters=[s.FootprintQuerySerializer],
        responses={200: s.JobFootprintSerializer, **ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Final footprint", value=EXAMPLE_FOOTPRINT, response_only=True)],
        tags=["jobs"],
    )
}

JOB_UNITS_SCHEMA = {
    "post": extend_schema(
        summary="Report functional units (from the training/inference loop)",
        description=(
            "`mode: set` stores cumulative totals (retry-safe, recommended); `mode: add` adds increments. "
            "Scheduler and admin tokens, and user tokens for jobs of the user's teams."
        ),
        request=s.JobUnitsSerializer,
        responses={200: s.JobSerializer, **ERRORS, **NOT_FOUND, **BODY_ERRORS},
        examples=[
            OpenApiExample(
                "Tokens so far",
                value={"units": {"tokens": 1.2e9}, "mode": "set", "primary_unit": "tokens"},
                request_only=True,
            ),
            OpenApiExample(
                "Job with units",
                value={**EXAMPLE_JOB, "units": {"tokens": 1.2e9}, "primary_unit": "tokens"},
                response_only=True,
            ),
        ],
        tags=["jobs"],
    )
}


# --- budgets -------------------------------------------------------------------------------

EXAMPLE_BUDGET = {
    "id": 7,
    "team": "recsys",
    "period_start": "2026-11-01",
    "period_end": "2026-12-01",
    "co2e_budget_g": 5.0e6,
    "note": "Q4 target",
    "as_of": "2026-11-26T12:00:00Z",
    "spent_g": 3.9e6,
    "forecast_g": 4.55e6,
    "remaining_g": 1.1e6,
    "used_fraction": 0.78,
    "elapsed_fraction": 0.85,
}

BUDGETS_SCHEMA = dict(
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
        responses={201: s.BudgetStatusSerializer, 200: s.BudgetStatusSerializer, **ERRORS, **BODY_ERRORS},
        examples=[
            OpenApiExample(
                "November",
                value={
                    "team": "recsys",
                    "period_start": "2026-11-01",
                    "period_end": "2026-12-01",
                    "co2e_budget_g": 5.0e6,
                    "note": "Q4 target",
                },
                request_only=True,
            ),
            OpenApiExample("Stored", value=EXAMPLE_BUDGET, response_only=True, status_codes=["201", "200"]),
        ],
        tags=["budgets"],
    ),
)

BUDGET_DETAIL_SCHEMA = dict(
    get=extend_schema(
        operation_id="budgets_get",
        summary="One budget with spent and forecast",
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses={
            200: s.BudgetStatusSerializer,
            **ERRORS,
            (404, PROBLEM): OpenApiResponse(s.ProblemSerializer, description="No such budget visible."),
        },
        examples=[OpenApiExample("A budget", value=EXAMPLE_BUDGET, response_only=True)],
        tags=["budgets"],
    )
)

BUDGET_CHECK_SCHEMA = dict(
    post=extend_schema(
        operation_id="budgets_check",
        summary="Would this job exceed the team's budget? (ok / warn / hold)",
        description=(
            "Projected = spent in the budget period containing `at` + the job's estimate. `warn` from 90 % of the "
            "budget, `hold` from 100 % (thresholds in the response). A team without a budget then is `ok`."
        ),
        request=s.BudgetCheckSerializer,
        responses={200: s.BudgetDecisionSerializer, **ERRORS, **BODY_ERRORS},
        examples=[
            OpenApiExample("Check a 12 kg job", value={"team": "recsys", "co2e_g": 12000.0}, request_only=True),
            OpenApiExample(
                "Warn",
                value={
                    "decision": "warn",
                    "team": "recsys",
                    "estimate_g": 700000.0,
                    "projected_g": 4.6e6,
                    "projected_fraction": 0.92,
                    "thresholds": {"warn_fraction": 0.9, "hold_fraction": 1.0},
                    "budget": EXAMPLE_BUDGET,
                },
                response_only=True,
            ),
        ],
        tags=["budgets"],
    )
)


# --- advice --------------------------------------------------------------------------------

ADVICE_SCHEMA = dict(
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
        responses={200: s.AdviceResponseSerializer, **ERRORS, **BODY_ERRORS},
        examples=[
            OpenApiExample(
                "8 H100 for 6 h, by tomorrow noon",
                value={
                    "gpu_count": 8,
                    "hours": 6,
                    "hardware_model": "h100-sxm5-80gb",
                    "clusters": [1, 2],
                    "earliest_start": "2026-11-26T10:00:00Z",
                    "deadline": "2026-11-27T12:00:00Z",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Advice",
                value={
                    "hardware_model": "h100-sxm5-80gb",
                    "gpu_count": 8,
                    "hours": 6.0,
                    "earliest_start": "2026-11-26T10:00:00Z",
                    "deadline": "2026-11-27T12:00:00Z",
                    "candidates": [
                        {
                            "cluster": 1,
                            "cluster_slug": "hpc-a",
                            "site": "paris",
                            "zone": "FR",
                            "pue": 1.3,
                            "avg_power_w": 574.0,
                            "it_energy_kwh": 27.55,
                            "total_energy_kwh": 35.82,
                            "annual_intensity_g_per_kwh": 56.0,
                            "co2e_operational_annual_g": 2006.0,
                            "co2e_embodied_g": 1026.0,
                            "co2e_low_g": 2300.0,
                            "co2e_high_g": 3900.0,
                            "at_earliest": {
                                "start": "2026-11-26T10:00:00Z",
                                "end": "2026-11-26T16:00:00Z",
                                "co2e_operational_g": 1802.0,
                                "intensity_g_per_kwh": 50.3,
                            },
                            "best": {
                                "start": "2026-11-27T01:00:00Z",
                                "end": "2026-11-27T07:00:00Z",
                                "co2e_operational_g": 1147.0,
                                "intensity_g_per_kwh": 32.0,
                            },
                            "saving_g": 655.0,
                            "window_source": "hourly",
                            "window_candidates": 21,
                        }
                    ],
                    "recommendation": {
                        "cluster": 1,
                        "start": "2026-11-27T01:00:00Z",
                        "end": "2026-11-27T07:00:00Z",
                        "co2e_g": 2173.0,
                        "baseline_co2e_g": 2828.0,
                        "saving_g": 655.0,
                        "saving_fraction": 0.2316,
                    },
                    "assumptions": ["facility energy = IT energy x the site's PUE"],
                },
                response_only=True,
            ),
        ],
        tags=["advice"],
    )
)


# --- what-if -------------------------------------------------------------------------------

WHATIF_RESULT = OpenApiResponse(description="Scenario result: inputs, footprint(s), band and assumptions.")
WHATIF_ERRORS = {
    **ERRORS,
    (400, PROBLEM): OpenApiResponse(
        s.ProblemSerializer, description="Invalid request; `errors` names each field and the bound it broke."
    ),
}

WHATIF_ESTIMATE_SCHEMA = {
    "post": extend_schema(
        summary="Estimate a planned job from inputs alone",
        request=EstimateRequest,
        responses={200: WHATIF_RESULT, **WHATIF_ERRORS, **BODY_ERRORS},
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
}

WHATIF_PROJECT_SCHEMA = {
    "post": extend_schema(
        summary="Project a measured job onto another device, count, precision or zone",
        request=ProjectRequest,
        responses={
            200: WHATIF_RESULT,
            **WHATIF_ERRORS,
            **NOT_FOUND,
            **BODY_ERRORS,
            (409, PROBLEM): _problem(
                "The job has nothing measured to project yet (no allocations, no hardware model, no GPU energy "
                "or no runtime)."
            ),
        },
        examples=[
            OpenApiExample("to H100", request_only=True, value={"target_key": "h100-sxm5-80gb", "target_count": 4})
        ],
    )
}

WHATIF_FLEET_PLAN_SCHEMA = {
    "post": extend_schema(
        summary="Plan a fleet upgrade: yearly energy/carbon before and after, payback, break-even intensity",
        request=FleetPlanRequest,
        responses={200: WHATIF_RESULT, **WHATIF_ERRORS, **BODY_ERRORS},
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
}

WHATIF_BEST_WINDOW_SCHEMA = {
    "post": extend_schema(
        summary="Cleanest start window before a deadline",
        request=BestWindowRequest,
        responses={200: WHATIF_RESULT, **WHATIF_ERRORS, **BODY_ERRORS},
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
}


# The fleet document refuses unknown fields (a typo in a fleet file must not pass as "unchanged"):
# its components say so, so that generated clients and schema checks know it.
CLOSED_COMPONENTS = ("FleetDocument", "_Org", "_Team", "_Site", "_Cluster", "_Host", "_Token")


def require_polymorphic_bodies(result, generator, request, public):  # type: ignore[no-untyped-def]
    """drf-spectacular post-processing hook: a request body that is one of several shapes (a
    ``PolymorphicProxySerializer``: the ingest batch, wire format v1 or v2) is ``required`` when
    every shape has required members. drf-spectacular marks a serializer's body required only
    from its own ``required`` list, which a ``oneOf`` does not have; without it, a request with no
    body at all read as valid to clients and to schema-driven tests, and is a 400."""
    schemas = result.get("components", {}).get("schemas", {})

    def resolved(schema: dict) -> dict:
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        return schemas.get(name, {}) if name else schema

    def shape_requires(ref: dict) -> bool:
        return bool(resolved(ref).get("required"))

    for path in result.get("paths", {}).values():
        for operation in path.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if not body or body.get("required"):
                continue
            contents = [resolved(media.get("schema", {})) for media in body.get("content", {}).values()]
            if contents and all(
                schema.get("oneOf") and all(shape_requires(ref) for ref in schema["oneOf"]) for schema in contents
            ):
                body["required"] = True
    return result


def close_fleet_document(result, generator, request, public):  # type: ignore[no-untyped-def]
    """drf-spectacular post-processing hook: ``additionalProperties: false`` on the fleet
    document's components."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in CLOSED_COMPONENTS:
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    return result


# --- market-based Scope 2, water, disclosure (accounting.api.instruments_views) ------------

from accounting.api import instruments_serializers as mw  # noqa: E402 - the section's own shapes

INSTRUMENT_NOT_FOUND = {(404, PROBLEM): _problem("No such instrument in this token's organisation.")}
EXAMPLE_INSTRUMENT = {
    "site": "paris",
    "kind": "go",
    "period_start": "2026-01-01T00:00:00Z",
    "period_end": "2027-01-01T00:00:00Z",
    "mwh": 1200.0,
    "g_per_kwh": 0.0,
    "certificate_ids": ["FR-GO-2026-000123-000001"],
    "registry": "AIB hub / EEX",
    "source": "cancellation statement 2026-0042",
    "reason": "2026 GO bundle for Paris",
}
INSTRUMENTS_SCHEMA = {
    "get": extend_schema(
        operation_id="instruments_list",
        summary="Contractual instruments (PPAs, GOs, RECs) of this organisation's sites",
        description="Admin tokens. `matching` is `hourly` when the instrument has hourly deliveries, else `annual`.",
        responses={200: mw.InstrumentListSerializer, **ERRORS},
        tags=["market-based"],
    ),
    "post": extend_schema(
        operation_id="instruments_create",
        summary="Record a contractual instrument of a site (audited; no recompute needed)",
        description=(
            "Admin tokens, sites of their organisation. Market-based Scope 2 reads instruments at query time "
            "(docs/method.md, 'Market-based Scope 2'). Rules beyond the schema (400 naming the field): "
            "`period_end` after `period_start`; `mwh` > 0; `deliveries` at starts of UTC hours inside the "
            "period, once each, summing to `mwh`; a certificate id claimed by no other instrument of the "
            "organisation (no double counting); `site` a site of this organisation."
        ),
        request=mw.InstrumentCreateSerializer,
        responses={201: mw.InstrumentSerializer, **ERRORS, **BODY_ERRORS},
        examples=[OpenApiExample("GO bundle", value=EXAMPLE_INSTRUMENT, request_only=True)],
        tags=["market-based"],
    ),
}
INSTRUMENT_DETAIL_SCHEMA = {
    "delete": extend_schema(
        operation_id="instruments_delete",
        summary="Withdraw an instrument recorded in error (its facts stay in the audit trail)",
        parameters=[mw.InstrumentDeleteQuerySerializer],
        responses={204: None, **ERRORS, **INSTRUMENT_NOT_FOUND},
        tags=["market-based"],
    )
}
RESIDUAL_MIXES_SCHEMA = {
    "get": extend_schema(
        operation_id="residual_mixes_list",
        summary="Residual-mix emission factors per zone and year (shared factors)",
        responses={200: mw.ResidualMixListSerializer, **ERRORS},
        tags=["market-based"],
    ),
    "post": extend_schema(
        operation_id="residual_mixes_set",
        summary="Create or revise a zone's residual mix for a year (version + 1, before/after audited)",
        description=(
            "Admin tokens. The same values again change nothing. Rules beyond the schema (400): `zone` an "
            "existing grid zone; `source_detail` names the dataset and its release."
        ),
        request=mw.ResidualMixSetSerializer,
        responses={200: mw.ResidualMixSerializer, **ERRORS, **BODY_ERRORS},
        tags=["market-based"],
    ),
}
ZONE_WATER_SCHEMA = {
    "get": extend_schema(
        operation_id="zone_water_list",
        summary="Grid water intensity per zone (L consumed per kWh generated, with its range)",
        responses={200: mw.ZoneWaterListSerializer, **ERRORS},
        tags=["water"],
    ),
    "post": extend_schema(
        operation_id="zone_water_set",
        summary="Create or revise a zone's grid water intensity (version + 1, before/after audited)",
        description="Admin tokens. Rules beyond the schema (400): `zone` exists; low <= central <= high.",
        request=mw.ZoneWaterSetSerializer,
        responses={200: mw.ZoneWaterSerializer, **ERRORS, **BODY_ERRORS},
        tags=["water"],
    ),
}
SITE_WUE_SCHEMA = {
    "get": extend_schema(
        operation_id="site_wue_list",
        summary="WUE series of this organisation's sites (L per kWh of IT energy)",
        responses={200: mw.SiteWueListSerializer, **ERRORS},
        tags=["water"],
    ),
    "post": extend_schema(
        operation_id="site_wue_set",
        summary="Create or revise a site's WUE from an instant (version + 1, before/after audited)",
        description=(
            "Admin tokens, sites of their organisation. The newest row at or before an hour applies; before the "
            "first, the site's static `wue_l_per_kwh`. Rules beyond the schema (400): `site` a site of this "
            "organisation."
        ),
        request=mw.SiteWueSetSerializer,
        responses={200: mw.SiteWueSerializer, **ERRORS, **BODY_ERRORS},
        tags=["water"],
    ),
}
DISCLOSURE_SCHEMA = {
    "get": extend_schema(
        operation_id="disclosure_period",
        summary="A period's dual Scope 2 (location- and market-based), upstream, embodied, energy and water",
        description=(
            "What the token sees over [`start`, `end`) (UTC days): location-based Scope 2 with its intensity basis "
            "(direct / life-cycle share), market-based Scope 2 with the matching used (instruments of each site, "
            "the rest at the zone's residual mix, allocated pro rata to energy), upstream electricity emissions "
            "(Scope 3 cat. 3) as their own figure, embodied carbon, energy, and water on site (WUE x IT energy) and "
            "off site (grid water x all energy) with its range. Rules beyond the schema (400): `end` after `start` "
            "and at most 366 days later; `team` a team the token sees."
        ),
        parameters=[mw.DisclosureQuerySerializer],
        responses={200: mw.DisclosureSerializer, **ERRORS},
        tags=["market-based"],
    )
}
# --- monthly reports (accounting.api.reports_views) -------------------------------------------

REPORT_MONTH_PARAM = OpenApiParameter(
    "month", OpenApiTypes.STR, OpenApiParameter.PATH, description="The month, `YYYY-MM` (UTC)."
)
REPORT_NOT_FOUND = {(404, PROBLEM): _problem("Not a month (`YYYY-MM`, years 2000-2100).")}
_REPORT_RULES = (
    "Rules beyond the schema (400 naming the field): `team` a team the token sees; `month` not after the current "
    "month (the current month is a partial report, `partial: true`). Without `team` the report covers everything "
    "the token sees: for an organisation admin the roll-up with the fleet overhead and the declared policy."
)
REPORT_SCHEMA: dict[str, Any] = dict(
    operation_id="report_month",
    summary="A month's carbon report: figures, breakdowns, period statement and three recommendations",
    description=(
        "The figures of the monthly report (the e-mail, the PDF and the dashboard preview show the same): totals "
        "from the ledger (`energy_j`, `co2e_operational_g`, `co2e_embodied_g`, `co2e_upstream_g`), the energy split "
        "of the month's jobs, comparisons with the previous month and the same month last year (`change_pct` null "
        "with a `reason` when there is no comparable data), budgets, breakdowns by team, workload family, accelerator "
        "model and site, top jobs, the least efficient per functional unit, data quality shares, emission factors "
        "used, the disclosure figures (`disclosure`: location- and market-based Scope 2, upstream, water) and "
        "`recommendations` from the what-if engine, each with `saving_co2e_g` per month and its `assumptions`. "
        "Content: docs/reports.md. " + _REPORT_RULES
    ),
    parameters=[REPORT_MONTH_PARAM, OpenApiParameter("team", OpenApiTypes.STR, description="A team slug.")],
    responses={
        200: OpenApiResponse(OpenApiTypes.OBJECT, description="The report's figures"),
        **ERRORS,
        **REPORT_NOT_FOUND,
    },
    tags=["reports"],
)

_REPORT_FILES = {
    "html": ("text/html", "The report as HTML (charts inline as data URIs); `inline=1` to show it, not download it"),
    "pdf": ("application/pdf", "The report as PDF (A4)"),
    "csv": ("text/csv", "The month's jobs with the dashboard's job export columns (docs/exports.md)"),
    "parquet": (
        "application/vnd.apache.parquet",
        "The month's ledger as job-hours (the exports' `job-hours` columns and units, docs/exports.md)",
    ),
}


def report_file_schema(fmt: str) -> dict[str, Any]:
    media, what = _REPORT_FILES[fmt]
    return dict(
        operation_id=f"report_month_{fmt}",
        summary=f"A month's carbon report: {what.split(' (')[0].lower()}",
        description=f"{what}. {_REPORT_RULES}",
        parameters=[
            REPORT_MONTH_PARAM,
            OpenApiParameter("team", OpenApiTypes.STR, description="A team slug."),
            *(
                [OpenApiParameter("inline", OpenApiTypes.STR, enum=["1"], description="Show, not download.")]
                if fmt == "html"
                else []
            ),
        ],
        responses={(200, media): OpenApiResponse(OpenApiTypes.BINARY, description=what), **ERRORS, **REPORT_NOT_FOUND},
        tags=["reports"],
    )
