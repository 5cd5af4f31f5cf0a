"""The fleet file through the API (admin tokens): ``POST /api/v1/fleet/plan/`` answers what the
document would change, ``POST /api/v1/fleet/apply/`` applies it (the same plan, and the secrets
of tokens it created, once). The body is the fleet file's document as JSON, the same fields as
the YAML file of ``manage.py fleet`` (docs/integrations.md, "Fleet file"); the serializers below
document it and the service validates it (``accounting.services.fleet_file``), naming errors by
their path in the document (``sites[1].pue``). An admin token manages its own organisation only.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounting.api.base import ApiView
from accounting.api.permissions import ADMIN_SCOPES
from accounting.api.schema import BODY_ERRORS, ERRORS
from accounting.models import Organization
from accounting.services.fleet_file import (
    HOSTNAME_RE,
    MAX_GPU_SLOTS,
    OVERHEAD_POLICIES,
    SCHEDULERS,
    SLUG_RE,
    TOKEN_SCOPES,
    FleetApplyResult,
    FleetFileInvalid,
    FleetPlan,
    fleet_apply,
    fleet_document_validate,
    fleet_plan,
)
from accounting.tokens import MAX_LIFETIME

SLUG = SLUG_RE.pattern
# What a fleet document creates or updates, in the order it applies them.
FLEET_OBJECT_KINDS = ("organisation", "team", "site", "cluster", "host", "token")


class _Org(serializers.Serializer):
    slug = serializers.RegexField(SLUG, help_text="Must be the admin token's organisation.")
    name = serializers.CharField(required=False, max_length=200)
    overhead_policy = serializers.ChoiceField(OVERHEAD_POLICIES, required=False)


class _Team(serializers.Serializer):
    slug = serializers.RegexField(SLUG, help_text="Unique among the document's teams.")
    name = serializers.CharField(required=False, max_length=200)
    report_email = serializers.EmailField(required=False, allow_blank=True)


class _Host(serializers.Serializer):
    hostname = serializers.RegexField(HOSTNAME_RE.pattern, max_length=253, help_text="Unique in its cluster.")
    gpu_slots = serializers.IntegerField(required=False, min_value=0, max_value=MAX_GPU_SLOTS)
    cpu_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    cpu_tdp_w = serializers.FloatField(required=False, allow_null=True, min_value=1, max_value=2000)
    dram_gb = serializers.FloatField(required=False, min_value=0, max_value=65536)
    ssd_gb = serializers.FloatField(required=False, min_value=0, max_value=10**7)


class _Cluster(serializers.Serializer):
    slug = serializers.RegexField(SLUG, help_text="Unique in its site.")
    name = serializers.CharField(required=False, max_length=200)
    scheduler = serializers.ChoiceField(SCHEDULERS, required=False)
    hosts = _Host(many=True, required=False)


class _Site(serializers.Serializer):
    slug = serializers.RegexField(SLUG, help_text="Unique among the document's sites.")
    name = serializers.CharField(required=False, max_length=200)
    zone = serializers.CharField(max_length=64, help_text="A grid zone code that exists (manage.py load_factors).")
    pue = serializers.FloatField(min_value=1.0, max_value=5.0)
    pue_source = serializers.CharField(
        required=False, min_length=1, max_length=300, help_text="Where the PUE comes from (default: the fleet file)."
    )
    wue_l_per_kwh = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=100)
    clusters = _Cluster(many=True, required=False)


class _Token(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    scope = serializers.ChoiceField(TOKEN_SCOPES)
    cluster = serializers.CharField(
        required=False, help_text="scheduler tokens only, and required for them: `site/cluster` of this document."
    )
    host = serializers.CharField(
        required=False, help_text="host tokens only, and required for them: `site/cluster/hostname` of this document."
    )
    user = serializers.CharField(required=False, help_text="user tokens only, and required for them: a username.")
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIFETIME.days)


class FleetDocumentSerializer(serializers.Serializer):
    organisation = _Org()
    teams = _Team(many=True, required=False)
    sites = _Site(many=True, required=False)
    tokens = _Token(many=True, required=False)


class _FieldChange(serializers.Serializer):
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class _Change(serializers.Serializer):
    action = serializers.ChoiceField(("create", "update", "unchanged", "kept"))
    kind = serializers.ChoiceField(FLEET_OBJECT_KINDS)
    key = serializers.CharField()
    changed = serializers.DictField(child=_FieldChange(), help_text="Field -> before and after (updates only).")


class _Secret(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.CharField()
    binding = serializers.CharField()
    prefix = serializers.CharField()
    secret = serializers.CharField(help_text="Shown once: only its digest is stored.")


class FleetPlanSerializer(serializers.Serializer):
    has_changes = serializers.BooleanField()
    summary = serializers.CharField()
    changes = _Change(many=True)


class FleetApplySerializer(FleetPlanSerializer):
    applied = serializers.BooleanField()
    tokens = _Secret(many=True)


def _plan_data(plan: FleetPlan) -> dict:
    return {
        "has_changes": plan.has_changes,
        "summary": plan.summary(),
        "changes": [
            {
                "action": c.action,
                "kind": c.kind,
                "key": c.key,
                "changed": {k: {"before": b, "after": a} for k, (b, a) in c.fields.items()},
            }
            for c in plan.changes
        ],
    }


def _apply_data(result: FleetApplyResult) -> dict:
    return {
        **_plan_data(result.plan),
        "applied": True,
        "tokens": [
            {
                "id": t.token_id,
                "name": t.name,
                "scope": t.scope,
                "binding": t.binding,
                "prefix": t.prefix,
                "secret": t.secret,
            }
            for t in result.secrets
        ],
    }


def _invalid(exc: FleetFileInvalid) -> serializers.ValidationError:
    detail: dict[str, list[str]] = {}
    for path, message in exc.errors:
        detail.setdefault(path, []).append(message)
    return serializers.ValidationError(detail)


EXAMPLE_DOCUMENT = {
    "organisation": {"slug": "acme", "name": "Acme AI"},
    "teams": [{"slug": "llm", "name": "LLM", "report_email": "llm-leads@acme.example"}],
    "sites": [
        {
            "slug": "paris",
            "zone": "FR",
            "pue": 1.25,
            "pue_source": "2025 facility report",
            "wue_l_per_kwh": 0.4,
            "clusters": [
                {"slug": "hpc-a", "scheduler": "slurm", "hosts": [{"hostname": "gpu-node-01", "gpu_slots": 8}]}
            ],
        }
    ],
    "tokens": [{"name": "slurm-hpc-a", "scope": "scheduler", "cluster": "paris/hpc-a"}],
}
_DESCRIPTION = (
    'The fleet file as JSON (docs/integrations.md, "Fleet file"). Rules beyond the schema, each a 400 naming '
    "the path: `organisation.slug` is the token's organisation; slugs unique per list; `zone` an existing grid "
    "zone; a token's binding names a cluster or host of the same document (or an existing user); unknown fields "
    "are refused."
)


class _FleetView(ApiView):
    scopes = ADMIN_SCOPES

    def _spec(self, request):
        try:
            spec = fleet_document_validate(request.data)
        except FleetFileInvalid as exc:
            raise _invalid(exc)
        org_id = self.principal().org_id
        assert org_id is not None  # admin scope: a token, bound to its organisation
        org = Organization.objects.get(pk=org_id)
        if spec.slug != org.slug:
            raise serializers.ValidationError(
                {"organisation.slug": [f"must be {org.slug!r}, this token's organisation"]}
            )
        return spec, org


class FleetPlanView(_FleetView):
    @extend_schema(
        operation_id="fleet_plan",
        summary="What a fleet document would change (nothing is written)",
        description=_DESCRIPTION,
        request=FleetDocumentSerializer,
        responses={200: FleetPlanSerializer, **ERRORS, **BODY_ERRORS},
        examples=[OpenApiExample("fleet document", value=EXAMPLE_DOCUMENT, request_only=True)],
        tags=["fleet"],
    )
    def post(self, request):
        spec, _ = self._spec(request)
        return Response(_plan_data(fleet_plan(spec=spec)))


class FleetApplyView(_FleetView):
    @extend_schema(
        operation_id="fleet_apply",
        summary="Apply a fleet document (idempotent: applying it again changes nothing)",
        description=_DESCRIPTION + " Created tokens' secrets are in `tokens`, shown once.",
        request=FleetDocumentSerializer,
        responses={200: OpenApiResponse(FleetApplySerializer), **ERRORS, **BODY_ERRORS},
        examples=[OpenApiExample("fleet document", value=EXAMPLE_DOCUMENT, request_only=True)],
        tags=["fleet"],
    )
    def post(self, request):
        spec, org = self._spec(request)
        try:
            result = fleet_apply(spec=spec, actor=self.token(), reason="fleet file (API)", only_org=org)
        except FleetFileInvalid as exc:
            raise _invalid(exc)
        return Response(_apply_data(result))
