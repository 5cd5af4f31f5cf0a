"""The declarative fleet file: an organisation, its teams, sites (grid zone, PUE, WUE), clusters,
hosts and integration tokens in one YAML (or JSON) document, applied idempotently.

``fleet_document_validate`` checks the whole document and names every error by its path in the
file (``sites[1].pue: must be >= 1``); ``fleet_plan`` compares it with the database and lists
what would be created or changed (nothing is ever deleted: objects of the organisation that the
file does not name are reported as kept); ``fleet_apply`` makes those changes in one
transaction, each with its audit event (``fleet.create`` / ``fleet.update``), PUE, zone and WUE
through the factor services (versioned, with a FactorChange that the recompute picks up), report
recipients as ``recipient.change`` and the overhead policy as ``policy.update``. Applying the
same file twice changes nothing the second time. Tokens are created when no active token of
that name, scope and binding exists; their secrets are returned once, by the apply that made
them. Format and fields: docs/integrations.md, "Fleet file".
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounting.models import ApiToken, AuditEvent, Cluster, GridZone, Host, Organization, Site, Team
from accounting.services import factors as factor_services
from accounting.services.audit import audit_record
from accounting.tokens import MAX_LIFETIME, token_create

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,48}[a-z0-9])?$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
SCHEDULERS = ("slurm", "kubernetes", "other")
OVERHEAD_POLICIES = ("separate", "pro_rata")
TOKEN_SCOPES = ("scheduler", "host", "user", "admin")
DEFAULT_PUE_SOURCE = "fleet file"
MAX_GPU_SLOTS = 64


class FleetFileInvalid(Exception):
    """The document breaks one or more rules; ``errors`` are (path, message) pairs, in file order."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))
        self.errors = errors


# --- the document, validated -------------------------------------------------------------


@dataclass(frozen=True)
class HostSpec:
    hostname: str
    gpu_slots: int
    cpu_model: str
    cpu_tdp_w: float | None
    dram_gb: float
    ssd_gb: float


@dataclass(frozen=True)
class ClusterSpec:
    slug: str
    name: str
    scheduler: str
    hosts: tuple[HostSpec, ...]


@dataclass(frozen=True)
class SiteSpec:
    slug: str
    name: str
    zone: str
    pue: float
    pue_source: str
    wue_l_per_kwh: float | None
    clusters: tuple[ClusterSpec, ...]


@dataclass(frozen=True)
class TeamSpec:
    slug: str
    name: str
    report_email: str


@dataclass(frozen=True)
class TokenSpec:
    name: str
    scope: str
    cluster: str | None  # "site/cluster"
    host: str | None  # "site/cluster/hostname"
    user: str | None  # a username
    expires_in_days: int | None


@dataclass(frozen=True)
class FleetSpec:
    slug: str
    name: str
    overhead_policy: str
    teams: tuple[TeamSpec, ...]
    sites: tuple[SiteSpec, ...]
    tokens: tuple[TokenSpec, ...]


class _Checker:
    """Walks the document once, collecting every error with its path."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path or "document", "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else str(key), f"unknown field (allowed: {', '.join(allowed)})")
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, "must be a list")
            return []
        return value

    def text(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        blank: bool = True,
        default: str = "",
        pattern: re.Pattern[str] | None = None,
        max_length: int = 200,
        choices: tuple[str, ...] = (),
        check: Callable[[str], str | None] | None = None,
    ) -> str:
        where = f"{path}.{key}" if path else key
        if key not in obj or obj[key] is None:
            if required:
                self.fail(where, "required")
            return default
        value = obj[key]
        if not isinstance(value, str):
            self.fail(where, "must be a string")
            return default
        if "\x00" in value:  # PostgreSQL text cannot hold it: refused here, not a database error
            self.fail(where, "must not contain NUL characters")
            return default
        if (required or not blank) and not value.strip():
            self.fail(where, "must not be empty")
        elif len(value) > max_length:
            self.fail(where, f"at most {max_length} characters")
        elif pattern is not None and not pattern.match(value):
            self.fail(where, f"must match {pattern.pattern}")
        elif choices and value not in choices:
            self.fail(where, f"must be one of {', '.join(choices)}")
        elif check is not None and (problem := check(value)):
            self.fail(where, problem)
        return value

    def number(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        default: float | None,
        minimum: float,
        maximum: float,
        integer: bool = False,
    ) -> Any:
        where = f"{path}.{key}"
        if key not in obj or obj[key] is None:
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, "must be a whole number" if integer else "must be a number")
            return default
        if integer and value != int(value):
            self.fail(where, "must be a whole number")
            return default
        if value < minimum:
            self.fail(where, f"must be >= {minimum:g}")
        elif value > maximum:
            self.fail(where, f"must be <= {maximum:g}")
        return int(value) if integer else float(value)

    def unique(self, keys: list[tuple[str, str]], what: str) -> None:
        seen: set[str] = set()
        for path, key in keys:
            if key in seen:
                self.fail(path, f"duplicate {what} {key!r}")
            seen.add(key)


def _email_problem(value: str) -> str | None:
    if not value:
        return None
    try:
        validate_email(value)
    except DjangoValidationError:
        return "must be an email address"
    return None


def _user_exists(username: str) -> bool:
    return get_user_model().objects.filter(username=username).exists()


def fleet_document_validate(document: Any) -> FleetSpec:
    """The validated fleet document, or ``FleetFileInvalid`` naming every error by its path.
    Zone codes must exist (``manage.py load_factors`` loads them); token bindings must name a
    cluster or host of the same file."""
    c = _Checker()
    doc = c.mapping(document, "", ("organisation", "teams", "sites", "tokens"))
    org = c.mapping(doc.get("organisation"), "organisation", ("slug", "name", "overhead_policy"))
    if "organisation" not in doc and isinstance(document, dict):
        c.fail("organisation", "required")
    org_slug = c.text(org, "slug", "organisation", required=True, pattern=SLUG_RE, max_length=50)
    org_name = c.text(org, "name", "organisation", default=org_slug)
    policy = c.text(org, "overhead_policy", "organisation", default="separate", choices=OVERHEAD_POLICIES)

    teams: list[TeamSpec] = []
    for i, raw in enumerate(c.items(doc.get("teams"), "teams")):
        path = f"teams[{i}]"
        t = c.mapping(raw, path, ("slug", "name", "report_email"))
        slug = c.text(t, "slug", path, required=True, pattern=SLUG_RE, max_length=50)
        teams.append(
            TeamSpec(
                slug=slug,
                name=c.text(t, "name", path, default=slug),
                report_email=c.text(t, "report_email", path, max_length=254, check=_email_problem),
            )
        )
    c.unique([(f"teams[{i}].slug", t.slug) for i, t in enumerate(teams)], "team slug")

    known_zones = set(GridZone.objects.values_list("code", flat=True))
    sites: list[SiteSpec] = []
    for i, raw in enumerate(c.items(doc.get("sites"), "sites")):
        path = f"sites[{i}]"
        s = c.mapping(raw, path, ("slug", "name", "zone", "pue", "pue_source", "wue_l_per_kwh", "clusters"))
        slug = c.text(s, "slug", path, required=True, pattern=SLUG_RE, max_length=50)
        zone = c.text(
            s,
            "zone",
            path,
            required=True,
            max_length=64,
            check=lambda z: None if z in known_zones else f"unknown grid zone {z!r} (manage.py load_factors)",
        )
        if "pue" not in s:
            c.fail(f"{path}.pue", "required")
        pue = c.number(s, "pue", path, default=1.0, minimum=1.0, maximum=5.0)
        clusters: list[ClusterSpec] = []
        for j, raw_cluster in enumerate(c.items(s.get("clusters"), f"{path}.clusters")):
            cpath = f"{path}.clusters[{j}]"
            k = c.mapping(raw_cluster, cpath, ("slug", "name", "scheduler", "hosts"))
            cslug = c.text(k, "slug", cpath, required=True, pattern=SLUG_RE, max_length=50)
            hosts: list[HostSpec] = []
            for h, raw_host in enumerate(c.items(k.get("hosts"), f"{cpath}.hosts")):
                hpath = f"{cpath}.hosts[{h}]"
                if isinstance(raw_host, str):  # a bare hostname: every other field default
                    raw_host = {"hostname": raw_host}
                o = c.mapping(raw_host, hpath, ("hostname", "gpu_slots", "cpu_model", "cpu_tdp_w", "dram_gb", "ssd_gb"))
                hosts.append(
                    HostSpec(
                        hostname=c.text(o, "hostname", hpath, required=True, pattern=HOSTNAME_RE, max_length=253),
                        gpu_slots=c.number(
                            o, "gpu_slots", hpath, default=8, minimum=0, maximum=MAX_GPU_SLOTS, integer=True
                        ),
                        cpu_model=c.text(o, "cpu_model", hpath),
                        cpu_tdp_w=c.number(o, "cpu_tdp_w", hpath, default=None, minimum=1, maximum=2000),
                        dram_gb=c.number(o, "dram_gb", hpath, default=0.0, minimum=0, maximum=65536),
                        ssd_gb=c.number(o, "ssd_gb", hpath, default=0.0, minimum=0, maximum=10**7),
                    )
                )
            c.unique([(f"{cpath}.hosts[{h}].hostname", x.hostname) for h, x in enumerate(hosts)], "hostname")
            clusters.append(
                ClusterSpec(
                    slug=cslug,
                    name=c.text(k, "name", cpath, default=cslug),
                    scheduler=c.text(k, "scheduler", cpath, default="slurm", choices=SCHEDULERS),
                    hosts=tuple(hosts),
                )
            )
        c.unique([(f"{path}.clusters[{j}].slug", x.slug) for j, x in enumerate(clusters)], "cluster slug")
        sites.append(
            SiteSpec(
                slug=slug,
                name=c.text(s, "name", path, default=slug),
                zone=zone,
                pue=pue,
                # Every factor has a source: left out, the fleet file is named; never blank.
                pue_source=c.text(s, "pue_source", path, blank=False, default=DEFAULT_PUE_SOURCE, max_length=300),
                wue_l_per_kwh=c.number(s, "wue_l_per_kwh", path, default=None, minimum=0, maximum=100),
                clusters=tuple(clusters),
            )
        )
    c.unique([(f"sites[{i}].slug", x.slug) for i, x in enumerate(sites)], "site slug")

    cluster_refs = {f"{s.slug}/{k.slug}" for s in sites for k in s.clusters}
    host_refs = {f"{s.slug}/{k.slug}/{h.hostname}" for s in sites for k in s.clusters for h in k.hosts}
    tokens: list[TokenSpec] = []
    for i, raw in enumerate(c.items(doc.get("tokens"), "tokens")):
        path = f"tokens[{i}]"
        t = c.mapping(raw, path, ("name", "scope", "cluster", "host", "user", "expires_in_days"))
        scope = c.text(t, "scope", path, required=True, choices=TOKEN_SCOPES)
        binding = {"scheduler": "cluster", "host": "host", "user": "user"}.get(scope)
        for key in ("cluster", "host", "user"):
            if key in t and key != binding:
                c.fail(f"{path}.{key}", f"not allowed for scope {scope or '?'}")
        if binding and binding not in t:
            c.fail(f"{path}.{binding}", f"required for scope {scope}")
        tokens.append(
            TokenSpec(
                name=c.text(t, "name", path, required=True),
                scope=scope,
                cluster=c.text(
                    t,
                    "cluster",
                    path,
                    check=lambda r: None if r in cluster_refs else "must be site/cluster of a cluster in this file",
                )
                or None,
                host=c.text(
                    t,
                    "host",
                    path,
                    max_length=400,
                    check=lambda r: None if r in host_refs else "must be site/cluster/hostname of a host in this file",
                )
                or None,
                user=c.text(
                    t,
                    "user",
                    path,
                    max_length=150,
                    check=lambda u: None if _user_exists(u) else f"no user {u!r} (create it first)",
                )
                or None,
                expires_in_days=c.number(
                    t, "expires_in_days", path, default=None, minimum=1, maximum=MAX_LIFETIME.days, integer=True
                ),
            )
        )
    c.unique([(f"tokens[{i}].name", f"{t.scope}:{t.name}") for i, t in enumerate(tokens)], "token (scope:name)")
    if c.errors:
        raise FleetFileInvalid(c.errors)
    return FleetSpec(
        slug=org_slug,
        name=org_name,
        overhead_policy=policy,
        teams=tuple(teams),
        sites=tuple(sites),
        tokens=tuple(tokens),
    )


def fleet_document_load(text: str) -> Any:
    """Parse a fleet file (YAML; JSON is YAML too). A syntax error is a ``FleetFileInvalid``
    at ``document`` with the line and column."""
    import yaml  # PyYAML: read only by the fleet file (the command and the API take JSON too)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise FleetFileInvalid([("document", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}")])


# --- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetChange:
    """One object of the file: ``create``, ``update`` (``fields``: name -> (before, after)) or
    ``unchanged``; ``kept`` for an object of the organisation that the file does not name."""

    action: str
    kind: str  # organisation | team | site | cluster | host | token
    key: str  # slug path: "paris/hpc-a/gpu-node-01"
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def line(self) -> str:
        sign = {"create": "+", "update": "~", "unchanged": "=", "kept": " "}[self.action]
        text = f"{sign} {self.kind} {self.key}"
        if self.action == "update":
            text += ": " + ", ".join(f"{k} {b!r} -> {a!r}" for k, (b, a) in self.fields.items())
        elif self.action == "kept":
            text += " (not in the file, kept)"
        return text


@dataclass(frozen=True)
class FleetPlan:
    changes: tuple[FleetChange, ...]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def has_changes(self) -> bool:
        return any(c.action in ("create", "update") for c in self.changes)

    def summary(self) -> str:
        return (
            f"Plan: {self.count('create')} to create, {self.count('update')} to change, "
            f"{self.count('unchanged')} unchanged, {self.count('kept')} not in the file (kept)."
        )

    def render(self, *, verbose: bool = False) -> str:
        shown = [c for c in self.changes if verbose or c.action in ("create", "update", "kept")]
        return "\n".join([*(c.line() for c in shown), self.summary()])


def _diff(obj: Any, wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (getattr(obj, k), v) for k, v in wanted.items() if getattr(obj, k) != v}


def _site_wanted(spec: SiteSpec) -> dict[str, Any]:
    return {"name": spec.name, "pue": spec.pue, "pue_source": spec.pue_source, "wue_l_per_kwh": spec.wue_l_per_kwh}


def _host_wanted(spec: HostSpec) -> dict[str, Any]:
    return {
        "gpu_slots": spec.gpu_slots,
        "cpu_model": spec.cpu_model,
        "cpu_tdp_w": spec.cpu_tdp_w,
        "dram_gb": spec.dram_gb,
        "ssd_gb": spec.ssd_gb,
    }


def _token_key(spec: TokenSpec) -> str:
    bound = spec.cluster or spec.host or spec.user
    return f"{spec.scope}:{spec.name}" + (f" ({bound})" if bound else "")


def _active_token(org: Organization, spec: TokenSpec, now: dt.datetime) -> ApiToken | None:
    tokens = ApiToken.objects.filter(org=org, name=spec.name, scope=spec.scope, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    if spec.cluster:
        site_slug, cluster_slug = spec.cluster.split("/")
        tokens = tokens.filter(cluster__slug=cluster_slug, cluster__site__slug=site_slug)
    if spec.host:
        site_slug, cluster_slug, hostname = spec.host.split("/", 2)
        tokens = tokens.filter(
            host__hostname=hostname, host__cluster__slug=cluster_slug, host__cluster__site__slug=site_slug
        )
    if spec.user:
        tokens = tokens.filter(user__username=spec.user)
    return tokens.order_by("-created_at").first()


def fleet_plan(*, spec: FleetSpec, now: dt.datetime | None = None) -> FleetPlan:
    """What applying ``spec`` would change, object by object, in file order (read only)."""
    now = now or timezone.now()
    changes: list[FleetChange] = []
    org = Organization.objects.filter(slug=spec.slug).first()
    org_wanted = {"name": spec.name, "overhead_policy": spec.overhead_policy}
    if org is None:
        changes.append(FleetChange("create", "organisation", spec.slug))
    else:
        diff = _diff(org, org_wanted)
        changes.append(FleetChange("update" if diff else "unchanged", "organisation", spec.slug, diff))

    def existing(queryset: Any, **lookup: Any) -> Any:
        return queryset.filter(**lookup).first() if org is not None else None

    for team in spec.teams:
        row = existing(Team.objects, org=org, slug=team.slug)
        wanted = {"name": team.name, "report_email": team.report_email}
        changes.append(_change("team", team.slug, row, wanted))
    for site in spec.sites:
        site_row = existing(Site.objects.select_related("zone"), org=org, slug=site.slug)
        change = _change("site", site.slug, site_row, _site_wanted(site))
        if site_row is not None and site_row.zone.code != site.zone:
            fields = {"zone": (site_row.zone.code, site.zone), **change.fields}
            change = FleetChange("update", "site", site.slug, fields)
        changes.append(change)
        for cluster in site.clusters:
            key = f"{site.slug}/{cluster.slug}"
            cluster_row = Cluster.objects.filter(site=site_row, slug=cluster.slug).first() if site_row else None
            changes.append(_change("cluster", key, cluster_row, {"name": cluster.name, "scheduler": cluster.scheduler}))
            for host in cluster.hosts:
                host_row = (
                    Host.objects.filter(cluster=cluster_row, hostname=host.hostname).first() if cluster_row else None
                )
                changes.append(_change("host", f"{key}/{host.hostname}", host_row, _host_wanted(host)))
    for token in spec.tokens:
        found = _active_token(org, token, now) if org is not None else None
        changes.append(FleetChange("unchanged" if found else "create", "token", _token_key(token)))
    if org is not None:
        changes.extend(_kept(org, spec))
    return FleetPlan(tuple(changes))


def _change(kind: str, key: str, row: Any, wanted: dict[str, Any]) -> FleetChange:
    if row is None:
        return FleetChange("create", kind, key)
    diff = _diff(row, wanted)
    return FleetChange("update" if diff else "unchanged", kind, key, diff)


def _kept(org: Organization, spec: FleetSpec) -> list[FleetChange]:
    named_teams = {t.slug for t in spec.teams}
    named_sites = {s.slug for s in spec.sites}
    named_clusters = {f"{s.slug}/{k.slug}" for s in spec.sites for k in s.clusters}
    named_hosts = {f"{s.slug}/{k.slug}/{h.hostname}" for s in spec.sites for k in s.clusters for h in k.hosts}
    kept = [FleetChange("kept", "team", slug) for slug in Team.objects.filter(org=org).values_list("slug", flat=True)]
    kept = [c for c in kept if c.key not in named_teams]
    for slug in Site.objects.filter(org=org).order_by("slug").values_list("slug", flat=True):
        if slug not in named_sites:
            kept.append(FleetChange("kept", "site", slug))
    for key in (
        f"{s}/{c}"
        for s, c in Cluster.objects.filter(site__org=org)
        .order_by("site__slug", "slug")
        .values_list("site__slug", "slug")
    ):
        if key not in named_clusters and key.split("/")[0] in named_sites:
            kept.append(FleetChange("kept", "cluster", key))
    hosts = Host.objects.filter(cluster__site__org=org).order_by("cluster__site__slug", "cluster__slug", "hostname")
    for s, c, h in hosts.values_list("cluster__site__slug", "cluster__slug", "hostname"):
        if f"{s}/{c}/{h}" not in named_hosts and f"{s}/{c}" in named_clusters:
            kept.append(FleetChange("kept", "host", f"{s}/{c}/{h}"))
    return kept


# --- apply ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSecret:
    name: str
    scope: str
    binding: str
    token_id: int
    prefix: str
    secret: str  # shown once


@dataclass(frozen=True)
class FleetApplyResult:
    plan: FleetPlan
    organisation_id: int
    secrets: tuple[IssuedSecret, ...]


def _factor_user(actor: Any) -> Any:
    """The factor services record a real user (FactorChange.changed_by): a token's user, a
    signed-in user, else None (the fleet event beside it names the token or command)."""
    token = getattr(actor, "token", None) if not isinstance(actor, ApiToken) else actor
    if isinstance(token, ApiToken):
        return token.user
    if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) is not None:
        return actor
    return None


def _audit(action: str, kind: str, key: Any, org: Organization, actor: Any, before: Any, after: Any, reason: str):
    audit_record(
        action=action, object_type=kind, object_id=key, org=org, actor=actor, before=before, after=after, reason=reason
    )


def _save_diff(row: Any, diff: dict[str, tuple[Any, Any]]) -> None:
    for name, (_, after) in diff.items():
        setattr(row, name, after)
    row.save(update_fields=list(diff))


@transaction.atomic
def fleet_apply(
    *,
    spec: FleetSpec,
    actor: Any = None,
    reason: str = "fleet file",
    only_org: Organization | None = None,
    now: dt.datetime | None = None,
) -> FleetApplyResult:
    """Make the database match ``spec`` (creates and updates; never deletes) and return the plan
    that was applied. ``only_org``: the organisation the caller may manage (an admin token's); a
    file naming another one is refused at ``organisation.slug``. Runs under a lock on the
    organisation row so two applies of the same organisation run one after the other."""
    now = now or timezone.now()
    reason = (reason or "").strip() or "fleet file"
    if only_org is not None and spec.slug != only_org.slug:
        raise FleetFileInvalid([("organisation.slug", f"must be {only_org.slug!r}, this token's organisation")])
    org = Organization.objects.select_for_update().filter(slug=spec.slug).first()
    plan = fleet_plan(spec=spec, now=now)
    Fa = AuditEvent.Action
    if org is None:
        org = Organization.objects.create(slug=spec.slug, name=spec.name, overhead_policy=spec.overhead_policy)
        _audit(Fa.FLEET_CREATE, "organisation", spec.slug, org, actor, None, {"name": org.name}, reason)
        _audit(
            Fa.POLICY_UPDATE,
            "organisation",
            org.pk,
            org,
            actor,
            None,
            {"overhead_policy": spec.overhead_policy},
            reason,
        )
    else:
        if org.name != spec.name:
            before = {"name": org.name}
            _save_diff(org, {"name": (org.name, spec.name)})
            _audit(Fa.FLEET_UPDATE, "organisation", spec.slug, org, actor, before, {"name": spec.name}, reason)
        if org.overhead_policy != spec.overhead_policy:
            before = {"overhead_policy": org.overhead_policy}
            _save_diff(org, {"overhead_policy": (org.overhead_policy, spec.overhead_policy)})
            after = {"overhead_policy": spec.overhead_policy}
            _audit(Fa.POLICY_UPDATE, "organisation", org.pk, org, actor, before, after, reason)

    for team in spec.teams:
        _apply_team(org, team, actor, reason)
    zones = {z.code: z for z in GridZone.objects.filter(code__in={s.zone for s in spec.sites})}
    for site in spec.sites:
        site_row = _apply_site(org, site, zones[site.zone], actor, reason)
        for cluster in site.clusters:
            cluster_row = _apply_row(
                Cluster,
                {"site": site_row, "slug": cluster.slug},
                {"name": cluster.name, "scheduler": cluster.scheduler},
                "cluster",
                f"{site.slug}/{cluster.slug}",
                org,
                actor,
                reason,
            )
            for host in cluster.hosts:
                _apply_row(
                    Host,
                    {"cluster": cluster_row, "hostname": host.hostname},
                    _host_wanted(host),
                    "host",
                    f"{site.slug}/{cluster.slug}/{host.hostname}",
                    org,
                    actor,
                    reason,
                )
    secrets = tuple(s for token in spec.tokens if (s := _apply_token(org, token, actor, now)) is not None)
    return FleetApplyResult(plan=plan, organisation_id=org.pk, secrets=secrets)


def _apply_row(model, lookup, wanted, kind, key, org, actor, reason):
    row = model.objects.filter(**lookup).first()
    if row is None:
        row = model.objects.create(**lookup, **wanted)
        _audit(AuditEvent.Action.FLEET_CREATE, kind, key, org, actor, None, wanted, reason)
        return row
    diff = _diff(row, wanted)
    if diff:
        _save_diff(row, diff)
        before = {k: b for k, (b, _) in diff.items()}
        after = {k: a for k, (_, a) in diff.items()}
        _audit(AuditEvent.Action.FLEET_UPDATE, kind, key, org, actor, before, after, reason)
    return row


def _apply_team(org: Organization, team: TeamSpec, actor: Any, reason: str) -> None:
    row = Team.objects.filter(org=org, slug=team.slug).first()
    if row is None:
        row = Team.objects.create(org=org, slug=team.slug, name=team.name, report_email=team.report_email)
        _audit(AuditEvent.Action.FLEET_CREATE, "team", team.slug, org, actor, None, {"name": team.name}, reason)
        if team.report_email:
            after = {"report_email": team.report_email}
            _audit(AuditEvent.Action.RECIPIENT_CHANGE, "report_recipients", row.pk, org, actor, None, after, reason)
        return
    if row.name != team.name:
        before = {"name": row.name}
        _save_diff(row, {"name": (row.name, team.name)})
        _audit(AuditEvent.Action.FLEET_UPDATE, "team", team.slug, org, actor, before, {"name": team.name}, reason)
    if row.report_email != team.report_email:
        before = {"report_email": row.report_email}
        _save_diff(row, {"report_email": (row.report_email, team.report_email)})
        after = {"report_email": team.report_email}
        _audit(AuditEvent.Action.RECIPIENT_CHANGE, "report_recipients", row.pk, org, actor, before, after, reason)


def _apply_site(org: Organization, site: SiteSpec, zone: GridZone, actor: Any, reason: str) -> Site:
    row = Site.objects.filter(org=org, slug=site.slug).first()
    if row is None:
        row = Site.objects.create(
            org=org,
            slug=site.slug,
            name=site.name,
            zone=zone,
            pue=site.pue,
            pue_source=site.pue_source,
            wue_l_per_kwh=site.wue_l_per_kwh,
        )
        after = {"zone": zone.code, **_site_wanted(site)}
        _audit(AuditEvent.Action.FLEET_CREATE, "site", f"{org.slug}/{site.slug}", org, actor, None, after, reason)
        return row
    user = _factor_user(actor)
    if row.name != site.name:
        before = {"name": row.name}
        _save_diff(row, {"name": (row.name, site.name)})
        key = f"{org.slug}/{site.slug}"
        _audit(AuditEvent.Action.FLEET_UPDATE, "site", key, org, actor, before, {"name": site.name}, reason)
    # Carbon factors: versioned FactorChanges (recompute of the affected ledger) and their audit.
    if row.pue != site.pue or row.pue_source != site.pue_source:
        factor_services.site_set_pue(
            site=row, pue=site.pue, valid_from=None, source=site.pue_source, reason=reason, user=user
        )
    changes: dict[str, Any] = {}
    if row.zone_id != zone.pk:
        changes["zone"] = zone
    if row.wue_l_per_kwh != site.wue_l_per_kwh:
        changes["wue_l_per_kwh"] = site.wue_l_per_kwh
    if changes:
        factor_services.site_update_factors(site=row, changes=changes, reason=reason, user=user)
    return row


def _apply_token(org: Organization, spec: TokenSpec, actor: Any, now: dt.datetime) -> IssuedSecret | None:
    if _active_token(org, spec, now) is not None:
        return None
    cluster = host = user = None
    if spec.cluster:
        site_slug, cluster_slug = spec.cluster.split("/")
        cluster = Cluster.objects.get(site__org=org, site__slug=site_slug, slug=cluster_slug)
    if spec.host:
        site_slug, cluster_slug, hostname = spec.host.split("/", 2)
        host = Host.objects.get(
            cluster__site__org=org, cluster__site__slug=site_slug, cluster__slug=cluster_slug, hostname=hostname
        )
    if spec.user:
        user = get_user_model().objects.get(username=spec.user)
    expires_in = dt.timedelta(days=spec.expires_in_days) if spec.expires_in_days else None
    issued = token_create(
        org=org,
        name=spec.name,
        scope=spec.scope,
        host=host,
        cluster=cluster,
        user=user,
        expires_in=expires_in,
        actor=actor,
        now=now,
    )
    return IssuedSecret(
        name=spec.name,
        scope=spec.scope,
        binding=spec.cluster or spec.host or spec.user or "",
        token_id=issued.token.pk,
        prefix=issued.token.prefix,
        secret=issued.secret,
    )
