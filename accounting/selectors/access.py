"""Who may see and change what: one ``Principal`` per request, built from an API token or a
signed-in user, and the one visibility rule every read applies (API, what-if, dashboard pages,
CSV exports and reports).

========== =====================================================================================
principal  sees
========== =====================================================================================
admin      token: every job, team, budget and cluster of its organisation
scheduler  token: jobs of its one cluster; every team (it submits for any) and cluster of its
           organisation
user       token: jobs and budgets of the teams its user belongs to in the token's organisation,
           the whole organisation with an org-admin membership; the organisation's clusters
host       token: nothing (ingest only)
session    a signed-in user: as a user token, across all the user's organisations; the clusters
           of every organisation the user belongs to
superuser  a signed-in superuser: everything (``is_staff`` alone grants nothing)
========== =====================================================================================

A token never reads outside its organisation, whatever its user's memberships elsewhere.
Lookups outside what a principal sees are 404s (not 403s), so ids of other tenants leak nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db.models import Q, QuerySet

from accounting.models import ApiToken, CarbonBudget, Cluster, Job, Membership, Team
from accounting.selectors.budgets import budget_visible_queryset

Scope = ApiToken.Scope
SESSION_SCOPE = Scope.USER  # a browser session reads as a user token across its memberships
_NOTHING = Q(pk__in=[])


@dataclass(frozen=True)
class Principal:
    """The caller of one request. ``scope`` is what the scope permission table checks (a
    token's scope, ``user`` for a session, ``None`` anonymous); the sets are what it sees."""

    scope: str | None
    via_token: bool = False
    org_id: int | None = None  # a token's organisation: every read stays inside it
    user_id: int | None = None
    cluster_id: int | None = None  # a scheduler token's cluster
    host_id: int | None = None  # a host token's host
    is_superuser: bool = False  # a signed-in superuser (never a token)
    admin_org_ids: frozenset[int] = frozenset()  # organisations seen whole
    team_ids: frozenset[int] = frozenset()  # teams seen through memberships
    member_org_ids: frozenset[int] = frozenset()  # other organisations the user belongs to

    # --- what kind of principal ------------------------------------------------------------

    @property
    def is_authenticated(self) -> bool:
        return self.scope is not None

    @property
    def is_scheduler(self) -> bool:
        return self.via_token and self.scope == Scope.SCHEDULER

    @property
    def _is_admin_token(self) -> bool:
        return self.via_token and self.scope == Scope.ADMIN

    @property
    def is_admin(self) -> bool:
        """Sees whole organisations (fleet-level rows, the overhead account): an admin token, an
        org-admin membership, a superuser."""
        return self.is_superuser or bool(self.admin_org_ids)

    @property
    def org_ids(self) -> frozenset[int]:
        return self.admin_org_ids | self.member_org_ids

    # --- the rule, as Q objects ------------------------------------------------------------

    def rows_q(self, prefix: str = "") -> Q:
        """Rows carrying ``<prefix>org_id`` and ``<prefix>team_id`` (jobs, team-days) the
        principal sees by organisation and team. A scheduler's cluster is added by ``jobs_q``."""
        if self.is_superuser:
            return Q()
        if self.is_scheduler or self._is_admin_token:
            return Q(**{f"{prefix}org_id": self.org_id})
        if not self.admin_org_ids and not self.team_ids:
            return _NOTHING
        q = Q(**{f"{prefix}org_id__in": sorted(self.admin_org_ids)}) | Q(
            **{f"{prefix}team_id__in": sorted(self.team_ids)}
        )
        return self._in_org(q, prefix)

    def jobs_q(self, prefix: str = "") -> Q:
        if self.is_scheduler:
            if self.cluster_id is None:
                return _NOTHING
            return Q(**{f"{prefix}org_id": self.org_id, f"{prefix}cluster_id": self.cluster_id})
        return self.rows_q(prefix)

    def teams_q(self) -> Q:
        if self.is_superuser:
            return Q()
        if self.is_scheduler or self._is_admin_token:
            return Q(org_id=self.org_id)
        if not self.admin_org_ids and not self.team_ids:
            return _NOTHING
        return self._in_org(Q(org_id__in=sorted(self.admin_org_ids)) | Q(id__in=sorted(self.team_ids)), "")

    def orgs_q(self, lookup: str = "org_id") -> Q:
        """Rows whose organisation (``lookup``: the path to its id) the principal belongs to:
        sites, clusters, devices, factor tables, organisations themselves (``lookup="id"``)."""
        if self.is_superuser:
            return Q()
        if self.via_token:
            return Q(**{lookup: self.org_id}) if self.scope in (Scope.SCHEDULER, Scope.USER, Scope.ADMIN) else _NOTHING
        return Q(**{f"{lookup}__in": sorted(self.org_ids)}) if self.org_ids else _NOTHING

    def clusters_q(self) -> Q:
        return self.orgs_q("site__org_id")

    def _in_org(self, q: Q, prefix: str) -> Q:
        return q & Q(**{f"{prefix}org_id": self.org_id}) if self.via_token else q

    # --- the dashboard's names for the same rule ------------------------------------------
    # (accounting.selectors.fleet and the dashboard selectors' ``scope`` argument, which is
    # always a session principal)

    # --- the same rule as SQL, for the raw one-query job reads -----------------------------

    def jobs_where_sql(self, alias: str) -> tuple[str, list[Any]]:
        """``jobs_q`` as a WHERE fragment over the job table aliased ``alias``, with its
        parameters (tests/accounting/test_access.py checks both select the same jobs)."""
        if self.is_superuser:
            return "TRUE", []
        if self.is_scheduler:
            if self.cluster_id is None:
                return "FALSE", []
            return f"{alias}.org_id = %s AND {alias}.cluster_id = %s", [self.org_id, self.cluster_id]
        if self._is_admin_token:
            return f"{alias}.org_id = %s", [self.org_id]
        if not self.admin_org_ids and not self.team_ids:
            return "FALSE", []
        sql = f"({alias}.org_id = ANY(%s) OR {alias}.team_id = ANY(%s))"
        params: list[Any] = [sorted(self.admin_org_ids), sorted(self.team_ids)]
        if self.via_token:
            sql += f" AND {alias}.org_id = %s"
            params.append(self.org_id)
        return sql, params

    # --- writes ----------------------------------------------------------------------------

    def can_write_jobs(self) -> bool:
        """Register, update and end jobs: scheduler and admin tokens."""
        return self.via_token and self.scope in (Scope.SCHEDULER, Scope.ADMIN)

    def can_write_job(self, *, org_id: int, cluster_id: int) -> bool:
        """May register, update or end a job of ``cluster_id`` in ``org_id``: an admin token in its
        organisation, a scheduler token in its own cluster only."""
        if not self.can_write_jobs() or org_id != self.org_id:
            return False
        return self.scope == Scope.ADMIN or cluster_id == self.cluster_id


ANONYMOUS = Principal(scope=None)


def principal_for(*, token: ApiToken | None = None, user: Any = None) -> Principal:
    """The principal of a request authenticated by ``token`` (its user, if any, is read from
    the token) or else by the session ``user``. One query at most (the user's memberships);
    none for admin, scheduler and host tokens."""
    if token is not None:
        base = Principal(scope=token.scope, via_token=True, org_id=token.org_id, user_id=token.user_id)
        if token.scope == Scope.ADMIN:
            return replace(base, admin_org_ids=frozenset({token.org_id}))
        if token.scope == Scope.SCHEDULER:
            return replace(base, cluster_id=token.cluster_id)
        if token.scope == Scope.HOST:
            return replace(base, host_id=token.host_id)
        if token.scope == Scope.USER and token.user_id is not None:
            return _with_memberships(base, user_id=token.user_id, org_id=token.org_id)
        return base
    if user is None or not user.is_authenticated or getattr(user, "pk", None) is None:
        return ANONYMOUS
    if user.is_superuser:
        return Principal(scope=SESSION_SCOPE, user_id=user.pk, is_superuser=True)
    return _with_memberships(Principal(scope=SESSION_SCOPE, user_id=user.pk), user_id=user.pk, org_id=None)


def _with_memberships(principal: Principal, *, user_id: int, org_id: int | None) -> Principal:
    memberships = Membership.objects.filter(user_id=user_id)
    if org_id is not None:
        memberships = memberships.filter(org_id=org_id)
    admin: set[int] = set()
    teams: set[int] = set()
    orgs: set[int] = set()
    for member_org, team_id, role in memberships.values_list("org_id", "team_id", "role"):
        orgs.add(member_org)
        if team_id is None and role == Membership.Role.ADMIN:
            admin.add(member_org)
        elif team_id is not None:
            teams.add(team_id)
    return replace(
        principal, admin_org_ids=frozenset(admin), team_ids=frozenset(teams), member_org_ids=frozenset(orgs - admin)
    )


def jobs_visible(*, principal: Principal) -> QuerySet[Job]:
    return Job.objects.filter(principal.jobs_q())


def teams_visible(*, principal: Principal) -> QuerySet[Team]:
    """Teams a principal may read (budgets) or check a job against. Schedulers submit jobs for
    any team of their organisation, so they see all its teams."""
    return Team.objects.filter(principal.teams_q())


def clusters_visible(*, principal: Principal) -> QuerySet[Cluster]:
    return Cluster.objects.select_related("site", "site__zone").filter(principal.clusters_q())


def budgets_visible(*, principal: Principal) -> QuerySet[CarbonBudget]:
    """Budgets of the teams the principal sees, newest period first."""
    return budget_visible_queryset(teams=teams_visible(principal=principal))
