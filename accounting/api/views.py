"""v1 API for job schedulers and integrations: jobs, footprints, budgets, advice.

Views are thin: validate with a serializer, resolve what the request's principal may touch
(``accounting.selectors.access``), call a service or selector, shape the answer. Scope rules
live in ``accounting.api.permissions``, the OpenAPI documentation in ``accounting.api.schema``.
"""

from __future__ import annotations

import dataclasses

from django.db import transaction
from django.db.models import QuerySet
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.response import Response

from accounting.api import schema
from accounting.api import serializers as s
from accounting.api.base import ApiView, CappedLimitOffsetPagination, field_error
from accounting.api.permissions import ADMIN_SCOPES, READ_SCOPES, WRITE_SCOPES, Scope
from accounting.api.whatif_serializers import domain_checked
from accounting.domain import bounds
from accounting.models import Cluster, Team
from accounting.selectors.access import Principal, budgets_visible, clusters_visible, teams_visible
from accounting.selectors.budgets import budget_check, budget_status
from accounting.selectors.disclosure import job_market_water
from accounting.selectors.jobs import MAX_DB_INT, JobFilters, job_footprint_get, job_list, team_user_cluster_get
from accounting.services.advice import advice_for_job
from accounting.services.budgets import budget_set
from accounting.services.jobs import job_end, job_register, job_units_report, job_update
from accounting.services.transactions import retry_on_conflict
from accounting.services.whatif import whatif_device_specs

# --- jobs ----------------------------------------------------------------------------------


@extend_schema_view(**schema.JOBS_SCHEMA)
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
        principal = self.principal()
        assert principal.org_id is not None  # write scopes are token-only
        username = data.get("user", "")
        cluster = self._cluster(principal=principal, cluster_id=data.get("cluster"))
        team, user, own_cluster = team_user_cluster_get(
            org_id=principal.org_id,
            team_slug=data["team"],
            username=username,
            cluster_id=principal.cluster_id if cluster is None else None,
        )
        if cluster is None:  # a scheduler token's own cluster, loaded with the team
            assert own_cluster is not None  # a database constraint of scheduler tokens
            cluster = own_cluster
        if team is None:
            raise field_error("team", f"No team {data['team']!r} in this organisation.")
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
            sluid=data.get("sluid", ""),
        )
        if registration.created:  # a new job holds exactly the allocations just created
            return self.job_response(
                registration.job,
                code=status.HTTP_201_CREATED,
                allocations=registration.allocations,
                allocations_sorted=registration.allocations_sorted,
            )
        return self.job_response(registration.job)

    @staticmethod
    def _cluster(*, principal: Principal, cluster_id: int | None) -> Cluster | None:
        """The cluster to register in (``None`` for a scheduler token: its own, loaded with the
        team); 403/400 when the principal may not register there."""
        if principal.is_scheduler:
            if cluster_id is not None and not principal.can_write_job(
                org_id=principal.org_id or 0, cluster_id=cluster_id
            ):
                raise exceptions.PermissionDenied("A scheduler token registers jobs of its own cluster only.")
            return None
        if cluster_id is None:
            raise field_error("cluster", "Required for admin tokens.")
        cluster = clusters_visible(principal=principal).filter(pk=cluster_id).first()
        if cluster is None:
            raise field_error("cluster", f"No cluster {cluster_id} in this organisation.")
        return cluster


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


class JobEndView(ApiView):
    scopes = WRITE_SCOPES

    @retry_on_conflict
    def post(self, request, **kwargs):
        with transaction.atomic():
            # The visibility check and the row lock are one query; job_end does not re-read.
            job = self.job_or_404(for_update=True, **kwargs)
            body = s.validated(s.JobEndSerializer, request.data)
            job, changed = job_end(
                job=job,
                status=body["exit_state"],
                ended_at=body.get("ended_at"),
                locked=True,
            )
        if changed:  # job_end loaded the allocations as they are now
            return Response(s.JobSerializer(job).data)
        return self.job_response(job)


class JobFootprintView(ApiView):
    scopes = READ_SCOPES

    def get(self, request, **kwargs):
        job = self.job_or_404(**kwargs)
        view = job_footprint_get(job=job)
        query = s.validated(s.FootprintQuerySerializer, request.query_params.dict())
        if query.get("include") == "scope2" and view.has_ledger:
            # Off the hot path (a scheduler's poll is two queries): only when asked.
            view = dataclasses.replace(view, scope2=job_market_water(job=job, footprint=job.footprint))
        return Response(s.represented(s.JobFootprintSerializer, view))


class JobUnitsView(ApiView):
    scopes = (Scope.SCHEDULER, Scope.USER, Scope.ADMIN)

    @retry_on_conflict
    def post(self, request, **kwargs):
        job = self.job_or_404(**kwargs)
        body = s.validated(s.JobUnitsSerializer, request.data)
        job = job_units_report(job=job, **body)
        return self.job_response(job)


def _by_id(view: type[ApiView], doc: dict, name: str) -> type[ApiView]:
    by_id = extend_schema_view(**doc)(type(f"{view.__name__}ById", (view,), {}))
    return extend_schema_view(
        **{method: extend_schema(operation_id=f"{name}_{method}", parameters=[schema.JOB_ID_PARAM]) for method in doc}
    )(by_id)


def _by_key(view: type[ApiView], doc: dict, name: str) -> type[ApiView]:
    by_key = extend_schema_view(**doc)(type(f"{view.__name__}ByKey", (view,), {}))
    return extend_schema_view(
        **{
            method: extend_schema(
                operation_id=f"{name}_by_key_{method}",
                parameters=[schema.SCHEDULER_JOB_ID_PARAM, schema.CLUSTER_PARAM],
            )
            for method in doc
        }
    )(by_key)


JobDetailByIdView = _by_id(JobDetailView, schema.JOB_DETAIL_SCHEMA, "job")
JobDetailByKeyView = _by_key(JobDetailView, schema.JOB_DETAIL_SCHEMA, "job")
JobEndByIdView = _by_id(JobEndView, schema.JOB_END_SCHEMA, "job_end")
JobEndByKeyView = _by_key(JobEndView, schema.JOB_END_SCHEMA, "job_end")
JobFootprintByIdView = _by_id(JobFootprintView, schema.JOB_FOOTPRINT_SCHEMA, "job_footprint")
JobFootprintByKeyView = _by_key(JobFootprintView, schema.JOB_FOOTPRINT_SCHEMA, "job_footprint")
JobUnitsByIdView = _by_id(JobUnitsView, schema.JOB_UNITS_SCHEMA, "job_units")
JobUnitsByKeyView = _by_key(JobUnitsView, schema.JOB_UNITS_SCHEMA, "job_units")


# --- budgets -------------------------------------------------------------------------------


@extend_schema_view(**schema.BUDGETS_SCHEMA)
class BudgetCollectionView(ApiView):
    scopes_by_method = {"GET": READ_SCOPES, "POST": ADMIN_SCOPES}
    pagination_class = CappedLimitOffsetPagination

    def teams(self) -> QuerySet[Team]:
        return teams_visible(principal=self.principal())

    def get(self, request):
        query = s.validated(s.BudgetListQuerySerializer, request.query_params.dict())
        budgets = budgets_visible(principal=self.principal())
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
            team=team,
            period_start=data["period_start"],
            period_end=data["period_end"],
            co2e_budget_g=data["co2e_budget_g"],
            note=data["note"],
            actor=self.token() or request.user,
        )
        return Response(
            s.BudgetStatusSerializer(budget_status(budget=budget, as_of=timezone.now())).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema_view(**schema.BUDGET_DETAIL_SCHEMA)
class BudgetDetailView(ApiView):
    scopes = READ_SCOPES

    def get(self, request, pk: int):
        visible = budgets_visible(principal=self.principal())
        budget = visible.filter(pk=pk).first() if 0 < pk <= MAX_DB_INT else None
        if budget is None:
            raise exceptions.NotFound("No such budget visible to this token.")
        return Response(s.BudgetStatusSerializer(budget_status(budget=budget, as_of=timezone.now())).data)


@extend_schema_view(**schema.BUDGET_CHECK_SCHEMA)
class BudgetCheckView(ApiView):
    scopes = READ_SCOPES

    def post(self, request):
        data = s.validated(s.BudgetCheckSerializer, request.data)
        team = teams_visible(principal=self.principal()).filter(slug=data["team"]).first()
        if team is None:
            raise field_error("team", f"No team {data['team']!r} visible to this token.")
        now = timezone.now()
        decision = budget_check(team=team, estimate_g=data["co2e_g"], at=data.get("at") or now, as_of=now)
        return Response(s.BudgetDecisionSerializer(decision).data)


# --- advice --------------------------------------------------------------------------------


@extend_schema_view(**schema.ADVICE_SCHEMA)
class AdviceView(ApiView):
    scopes = READ_SCOPES

    def post(self, request):
        data = s.validated(s.AdviceRequestSerializer, request.data)
        principal = self.principal()
        visible = clusters_visible(principal=principal)
        if "clusters" in data:
            by_id = {c.pk: c for c in visible.filter(pk__in=data["clusters"])}
            missing = [cid for cid in data["clusters"] if cid not in by_id]
            if missing:
                raise field_error("clusters", f"Unknown cluster id(s): {', '.join(map(str, missing))}.")
            clusters = [by_id[cid] for cid in data["clusters"]]
        else:
            clusters = list(visible.order_by("id"))
            if principal.is_scheduler:  # its own cluster first
                clusters.sort(key=lambda c: c.pk != principal.cluster_id)
        if data.get("avg_power_w") is not None:  # only then: the device's figures cost a query
            spec = whatif_device_specs().get(data["hardware_model"])
            if spec is not None:  # an unknown model is advice_for_job's 400
                domain_checked(lambda: bounds.avg_power_w(spec, data["avg_power_w"], "avg_power_w"))
        advice = advice_for_job(
            clusters=clusters,
            hardware_model=data["hardware_model"],
            gpu_count=data["gpu_count"],
            hours=data["hours"],
            earliest_start=data.get("earliest_start") or timezone.now(),
            deadline=data.get("deadline"),
            avg_power_w=data.get("avg_power_w"),
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
