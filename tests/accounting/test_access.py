"""The one access rule (accounting.selectors.access): for each kind of principal, exactly which
jobs, teams, budgets and clusters it sees; the raw one-query job read agrees with the queryset;
the dashboard's scope built from a session principal selects the same rows."""

from __future__ import annotations

import datetime as dt

import pytest

from accounting import models as m
from accounting.selectors import dashboard as dashboard_sel
from accounting.selectors.access import (
    ANONYMOUS,
    budgets_visible,
    clusters_visible,
    jobs_visible,
    principal_for,
    teams_visible,
)
from accounting.selectors.jobs import job_get
from accounting.tokens import token_create
from tests import factories as f

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture
def fleet():
    """Org acme: clusters A and B, teams X and Y; org globex: cluster G, team Z. One job per
    (cluster, team) pair of the same org, one budget per team."""
    acme, globex = f.OrganizationFactory(slug="acme"), f.OrganizationFactory(slug="globex")
    site = f.SiteFactory(org=acme)
    a, b = f.ClusterFactory(site=site, slug="a"), f.ClusterFactory(site=site, slug="b")
    g = f.ClusterFactory(site=f.SiteFactory(org=globex), slug="g")
    x, y = f.TeamFactory(org=acme, slug="x"), f.TeamFactory(org=acme, slug="y")
    z = f.TeamFactory(org=globex, slug="z")
    jobs = {}
    for cluster, team in ((a, x), (a, y), (b, x), (b, y), (g, z)):
        name = f"{cluster.slug}{team.slug}"
        jobs[name] = f.JobFactory(cluster=cluster, team=team, scheduler_job_id=name, started_at=T0)
    budgets = {
        t.slug: m.CarbonBudget.objects.create(
            team=t, period_start=dt.date(2026, 11, 1), period_end=dt.date(2026, 12, 1), co2e_budget_g=1e6
        )
        for t in (x, y, z)
    }
    member_x = f.UserFactory(username="member-x")
    f.MembershipFactory(user=member_x, org=acme, team=x)
    f.MembershipFactory(user=member_x, org=globex, team=z)  # also in another org: a token never reaches it
    org_admin = f.UserFactory(username="org-admin")
    f.MembershipFactory(user=org_admin, org=acme, team=None, role=m.Membership.Role.ADMIN)
    staff = f.UserFactory(username="staff", is_staff=True)  # staff without superuser: memberships only
    f.MembershipFactory(user=staff, org=acme, team=y)
    superuser = f.UserFactory(username="root", is_staff=True, is_superuser=True)
    tokens = {
        "admin token": token_create(org=acme, name="adm", scope="admin").token,
        "scheduler token of A": token_create(org=acme, name="sa", scope="scheduler", cluster=a).token,
        "user token of member-x": token_create(org=acme, name="ux", scope="user", user=member_x).token,
        "user token of org-admin": token_create(org=acme, name="ua", scope="user", user=org_admin).token,
        "host token": token_create(org=acme, name="h", scope="host", host=f.HostFactory(cluster=a)).token,
    }
    users = {
        "session member-x": member_x,
        "session org-admin": org_admin,
        "session staff": staff,
        "session superuser": superuser,
    }
    return {"jobs": jobs, "budgets": budgets, "tokens": tokens, "users": users, "clusters": {"a": a, "b": b, "g": g}}


def _principal(fleet, kind: str):
    if kind == "anonymous":
        return ANONYMOUS
    if kind in fleet["tokens"]:
        return principal_for(token=m.ApiToken.objects.get(pk=fleet["tokens"][kind].pk))
    return principal_for(user=fleet["users"][kind])


ALL_JOBS = {"ax", "ay", "bx", "by", "gz"}
# kind: (jobs, teams, budgets (by team), clusters)
TABLE = {
    "admin token": ({"ax", "ay", "bx", "by"}, {"x", "y"}, {"x", "y"}, {"a", "b"}),
    "scheduler token of A": ({"ax", "ay"}, {"x", "y"}, {"x", "y"}, {"a", "b"}),
    "user token of member-x": ({"ax", "bx"}, {"x"}, {"x"}, {"a", "b"}),
    "user token of org-admin": ({"ax", "ay", "bx", "by"}, {"x", "y"}, {"x", "y"}, {"a", "b"}),
    "host token": (set(), set(), set(), set()),
    "session member-x": ({"ax", "bx", "gz"}, {"x", "z"}, {"x", "z"}, {"a", "b", "g"}),
    "session org-admin": ({"ax", "ay", "bx", "by"}, {"x", "y"}, {"x", "y"}, {"a", "b"}),
    "session staff": ({"ay", "by"}, {"y"}, {"y"}, {"a", "b"}),
    "session superuser": (ALL_JOBS, {"x", "y", "z"}, {"x", "y", "z"}, {"a", "b", "g"}),
    "anonymous": (set(), set(), set(), set()),
}


@pytest.mark.parametrize("kind", list(TABLE))
def test_each_principal_sees_exactly_its_rows(fleet, kind):
    principal = _principal(fleet, kind)
    jobs, teams, budgets, clusters = TABLE[kind]
    assert set(jobs_visible(principal=principal).values_list("scheduler_job_id", flat=True)) == jobs
    assert set(teams_visible(principal=principal).values_list("slug", flat=True)) == teams
    assert {b.team.slug for b in budgets_visible(principal=principal)} == budgets
    assert set(clusters_visible(principal=principal).values_list("slug", flat=True)) == clusters


@pytest.mark.parametrize("kind", list(TABLE))
def test_one_job_reads_agree_with_the_rule(fleet, kind):
    """job_get (the raw one-query path for admin and scheduler tokens, the queryset for the
    rest) finds exactly the visible jobs, by id and by scheduler key."""
    principal = _principal(fleet, kind)
    expected = TABLE[kind][0]
    found = {name for name, job in fleet["jobs"].items() if job_get(principal=principal, job_id=job.pk)}
    assert found == expected
    by_key = {
        name
        for name, job in fleet["jobs"].items()
        if job_get(principal=principal, scheduler_job_id=name, cluster_id=job.cluster_id, with_footprint=False)
    }
    assert by_key == expected


@pytest.mark.parametrize("kind", list(TABLE))
def test_raw_predicate_selects_what_the_queryset_selects(fleet, kind):
    from django.db import connection

    principal = _principal(fleet, kind)
    where, params = principal.jobs_where_sql("j")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT j.scheduler_job_id FROM {m.Job._meta.db_table} j WHERE {where}", params)
        raw = {row[0] for row in cursor.fetchall()}
    assert raw == set(jobs_visible(principal=principal).values_list("scheduler_job_id", flat=True))


def test_admin_and_scheduler_principals_cost_no_query(fleet, django_assert_num_queries):
    tokens = [m.ApiToken.objects.get(pk=fleet["tokens"][k].pk) for k in ("admin token", "scheduler token of A")]
    with django_assert_num_queries(0):
        for token in tokens:
            principal_for(token=token)


@pytest.mark.parametrize("kind", [k for k in TABLE if k.startswith("session")])
def test_dashboard_scope_from_the_principal_selects_the_same_jobs(fleet, kind, rf):
    from dashboard.views import _scope

    request = rf.get("/")
    request.user = fleet["users"][kind]
    scope = _scope(request)
    principal = _principal(fleet, kind)
    assert set(m.Job.objects.filter(scope.rows_q()).values_list("scheduler_job_id", flat=True)) == TABLE[kind][0]
    assert scope == dashboard_sel.viewer_scope_get(user=fleet["users"][kind])
    assert principal.is_admin == scope.is_admin


def test_write_rule(fleet):
    a, b, g = (fleet["clusters"][k] for k in "abg")
    admin = _principal(fleet, "admin token")
    sched = _principal(fleet, "scheduler token of A")
    assert admin.can_write_job(org_id=a.site.org_id, cluster_id=b.pk)
    assert not admin.can_write_job(org_id=g.site.org_id, cluster_id=g.pk)
    assert sched.can_write_job(org_id=a.site.org_id, cluster_id=a.pk)
    assert not sched.can_write_job(org_id=a.site.org_id, cluster_id=b.pk)
    for kind in ("user token of org-admin", "session superuser", "host token"):
        assert not _principal(fleet, kind).can_write_job(org_id=a.site.org_id, cluster_id=a.pk)
