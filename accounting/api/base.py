"""The one base of every v1 API view (jobs, budgets, advice, what-if): bearer-token or session
authentication, scope permissions, the per-token rate limit, JSON only, problem-details errors
naming list items as ``allocation[0].gpus``, and the request's principal
(``accounting.selectors.access``), which decides what the request may see."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounting.api import serializers as s
from accounting.api.auth import authenticated_token, request_token, token_expiry_headers
from accounting.api.permissions import READ_SCOPES, Scope, ScopePermission, TokenRateThrottle, request_principal
from accounting.models import ApiToken, Job, JobAllocation
from accounting.selectors.access import Principal, jobs_visible
from accounting.selectors.jobs import job_get, job_with_allocations


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

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in token_expiry_headers(authenticated_token(request)).items():
            response[name] = value
        return response

    def token(self) -> ApiToken | None:
        return request_token(self.request)

    def principal(self) -> Principal:
        return request_principal(self.request)

    def visible_jobs(self) -> QuerySet[Job]:
        return jobs_visible(principal=self.principal())

    def job_or_404(self, *, with_footprint: bool = True, for_update: bool = False, **kwargs) -> Job:
        """The visible job named by the URL (``pk``, ``job_id`` or ``scheduler_job_id`` with the
        cluster), else 404. ``for_update``: read with a row lock (call it inside a transaction),
        without its footprint."""
        principal = self.principal()
        lookup: dict = {}
        if "pk" in kwargs or "job_id" in kwargs:
            lookup["job_id"] = kwargs.get("pk", kwargs.get("job_id"))
        else:
            cluster_id = s.validated(s.ClusterQuerySerializer, self.request.query_params.dict()).get("cluster")
            if principal.is_scheduler:
                if cluster_id is not None and cluster_id != principal.cluster_id:
                    raise exceptions.NotFound("No such job in this token's cluster.")
                cluster_id = principal.cluster_id
            elif cluster_id is None:
                raise field_error("cluster", "Required unless the token is a scheduler token.")
            lookup.update(scheduler_job_id=kwargs["scheduler_job_id"], cluster_id=cluster_id)
        job = job_get(
            principal=principal, for_update=for_update, with_footprint=with_footprint and not for_update, **lookup
        )
        if job is None:
            raise exceptions.NotFound("No such job visible to this token.")
        return job

    def job_response(
        self,
        job: Job,
        *,
        code: int = status.HTTP_200_OK,
        allocations: list[JobAllocation] | None = None,
        allocations_sorted: bool = False,
    ) -> Response:
        job = job_with_allocations(job=job, allocations=allocations, allocations_sorted=allocations_sorted)
        return Response(s.JobSerializer(job).data, status=code)


__all__ = ["ApiView", "CappedLimitOffsetPagination", "Scope", "bracket_indices", "field_error"]
