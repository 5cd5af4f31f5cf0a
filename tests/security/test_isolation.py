"""Tenant isolation for every URL of the project (docs/security.md, "Tenant isolation test").

``test_every_url_pattern_is_classified`` walks ``django.urls.get_resolver()``: a URL pattern
that no table below classifies fails it, so a new endpoint is covered by deciding what it is.
Each classified pattern then gets one test that runs it for every principal of ``PRINCIPALS``
against a world of two organisations: org 1 with teams A and B, clusters A and B (hosts A and
B), org 2 with team C, cluster C (host C). Every row carries a marker string; a response may
contain the markers of what its principal sees and never one of anything else. Detail
endpoints answer 404 for another's object (a principal whose scope may not use the endpoint
at all gets the same 401/403 for every object, so nothing tells which ids exist).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounting import models as m
from accounting.tokens import token_create
from tests import factories as f
from tests.telemetry.helpers import batch, gpu_entry, post_batch, stored_counts, window

pytestmark = pytest.mark.django_db
KWH = 3.6e6

# --- the world -----------------------------------------------------------------------------

JOBS = ("ja", "jab", "jb", "jc")  # ja: team A/cluster A, jab: team A/cluster B, jb: B/B, jc: org 2
TEAMS = ("a", "b", "c")
JOB_TEAM = {"ja": "a", "jab": "a", "jb": "b", "jc": "c"}
ORG_OF_TEAM = {"a": 1, "b": 1, "c": 2}
MARK_JOB = {j: f"mark-job-{j}-x7" for j in JOBS}
MARK_TEAM = {t: f"Markteam{t.upper()}x7" for t in TEAMS}
MARK_BUDGET = {t: f"mark-budget-{t}-x7" for t in TEAMS}
MARK_ORG = {
    1: ("markorg-one-x7", "Marksite-one-x7", "Markcluster-a-x7", "Markcluster-b-x7", "marknode-a-x7", "marknode-b-x7"),
    2: ("markorg-two-x7", "Marksite-two-x7", "Markcluster-c-x7", "marknode-c-x7"),
}


@dataclass(frozen=True)
class Who:
    """A principal: a session user or a bearer token, and what it may see."""

    kind: str  # "anonymous" | "session" | "token"
    jobs: frozenset[str]
    teams: frozenset[str]
    orgs: frozenset[int]
    scope: str | None = None  # the token's scope

    def invisible_markers(self) -> list[str]:
        marks = [MARK_JOB[j] for j in JOBS if j not in self.jobs]
        marks += [MARK_TEAM[t] for t in TEAMS if t not in self.teams]
        marks += [MARK_BUDGET[t] for t in TEAMS if t not in self.teams]
        marks += [mark for org, org_marks in MARK_ORG.items() if org not in self.orgs for mark in org_marks]
        return marks


def _who(kind, jobs=(), teams=(), orgs=(), scope=None) -> Who:
    return Who(kind, frozenset(jobs), frozenset(teams), frozenset(orgs), scope)


PRINCIPALS: dict[str, Who] = {
    "anonymous": _who("anonymous"),
    "session A": _who("session", {"ja", "jab"}, {"a"}, {1}),
    "session B": _who("session", {"jb"}, {"b"}, {1}),
    "session org2": _who("session", {"jc"}, {"c"}, {2}),
    "token A": _who("token", {"ja", "jab"}, {"a"}, {1}, scope="user"),
    "token B": _who("token", {"jb"}, {"b"}, {1}, scope="user"),
    "token org2": _who("token", {"jc"}, {"c"}, {2}, scope="user"),
    "admin token org1": _who("token", {"ja", "jab", "jb"}, {"a", "b"}, {1}, scope="admin"),
    "scheduler token A": _who("token", {"ja"}, {"a", "b"}, {1}, scope="scheduler"),
    "host token A": _who("token", (), (), (), scope="host"),
}
SESSIONS = [name for name, who in PRINCIPALS.items() if who.kind == "session"]


@dataclass
class World:
    orgs: dict[int, m.Organization]
    teams: dict[str, m.Team]
    clusters: dict[str, m.Cluster]
    hosts: dict[str, m.Host]
    jobs: dict[str, m.Job]
    budgets: dict[str, m.CarbonBudget]
    clients: dict[str, Client]
    secrets: dict[str, str]
    now: dt.datetime


@pytest.fixture
def world() -> World:
    now = timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    orgs = {
        1: f.OrganizationFactory(slug=MARK_ORG[1][0], name=MARK_ORG[1][0]),
        2: f.OrganizationFactory(slug=MARK_ORG[2][0], name=MARK_ORG[2][0]),
    }
    zone = f.GridZoneFactory(code="ZZ-ISO", annual_intensity_g_per_kwh=400.0)
    hw = f.HardwareModelFactory()
    site1 = f.SiteFactory(org=orgs[1], name=MARK_ORG[1][1], slug="site-one", zone=zone)
    site2 = f.SiteFactory(org=orgs[2], name=MARK_ORG[2][1], slug="site-two", zone=zone)
    clusters = {
        "a": f.ClusterFactory(site=site1, name=MARK_ORG[1][2], slug="cluster-a"),
        "b": f.ClusterFactory(site=site1, name=MARK_ORG[1][3], slug="cluster-b"),
        "c": f.ClusterFactory(site=site2, name=MARK_ORG[2][2], slug="cluster-c"),
    }
    hosts = {
        "a": f.HostFactory(cluster=clusters["a"], hostname=MARK_ORG[1][4]),
        "b": f.HostFactory(cluster=clusters["b"], hostname=MARK_ORG[1][5]),
        "c": f.HostFactory(cluster=clusters["c"], hostname=MARK_ORG[2][3]),
    }
    devices = {k: f.DeviceFactory(host=h, index=0, hardware_model=hw) for k, h in hosts.items()}
    teams = {t: f.TeamFactory(org=orgs[ORG_OF_TEAM[t]], name=MARK_TEAM[t], slug=f"team-{t}") for t in TEAMS}
    job_cluster = {"ja": "a", "jab": "b", "jb": "b", "jc": "c"}
    jobs = {}
    for j in JOBS:
        job = f.JobFactory(
            cluster=clusters[job_cluster[j]],
            team=teams[JOB_TEAM[j]],
            scheduler_job_id=f"sched-{j}",
            name=MARK_JOB[j],
            username=f"user-{j}",
            started_at=start,
        )
        m.JobAllocation.objects.create(job=job, device=devices[job_cluster[j]], start=start)
        m.JobFootprint.objects.create(
            job=job,
            energy_j=10 * KWH,
            gpu_energy_j=7 * KWH,
            co2e_operational_g=4000.0,
            co2e_embodied_g=100.0,
            device_hours=3.0,
            measured_fraction=1.0,
            method_version="iso-1",
            last_window_end=now,
        )
        for h in range(3):
            m.JobHour.objects.create(
                job=job,
                hour=start + dt.timedelta(hours=h),
                energy_j=KWH,
                gpu_energy_j=KWH,
                co2e_operational_g=400.0,
                co2e_embodied_g=10.0,
                intensity_g_per_kwh=400.0,
            )
        jobs[j] = job
    for t, team in teams.items():
        site = site1 if ORG_OF_TEAM[t] == 1 else site2
        m.TeamDay.objects.create(
            org=team.org,
            team=team,
            site=site,
            day=now.date(),
            energy_j=20 * KWH,
            gpu_idle_energy_j=KWH,
            co2e_operational_g=8000.0,
            co2e_embodied_g=200.0,
        )
    budgets = {
        t: m.CarbonBudget.objects.create(
            team=team,
            period_start=now.date().replace(day=1),
            period_end=now.date() + dt.timedelta(days=40),
            co2e_budget_g=1e6,
            note=MARK_BUDGET[t],
        )
        for t, team in teams.items()
    }
    users = {}
    for name, team_key in (("session A", "a"), ("session B", "b"), ("session org2", "c")):
        user = f.UserFactory(username=f"member-{team_key}")
        f.MembershipFactory(user=user, org=teams[team_key].org, team=teams[team_key])
        users[name] = user
    token_of = {
        "token A": token_create(org=orgs[1], name="ua", scope="user", user=users["session A"]),
        "token B": token_create(org=orgs[1], name="ub", scope="user", user=users["session B"]),
        "token org2": token_create(org=orgs[2], name="uc", scope="user", user=users["session org2"]),
        "admin token org1": token_create(org=orgs[1], name="adm", scope="admin"),
        "scheduler token A": token_create(org=orgs[1], name="sa", scope="scheduler", cluster=clusters["a"]),
        "host token A": token_create(org=orgs[1], name="ha", scope="host", host=hosts["a"]),
    }
    clients = {}
    for name in PRINCIPALS:
        if name in users:
            client = Client()
            client.force_login(users[name])
        elif name in token_of:
            client = Client(HTTP_AUTHORIZATION=f"Bearer {token_of[name].secret}")
        else:
            client = Client()
        clients[name] = client
    return World(orgs, teams, clusters, hosts, jobs, budgets, clients, {k: v.secret for k, v in token_of.items()}, now)


# --- helpers -------------------------------------------------------------------------------


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode(errors="replace")


def _no_leak(name: str, response, *, what: str) -> str:
    assert response.status_code < 500, (name, what, response.status_code)
    body = _body(response)
    leaked = [mark for mark in PRINCIPALS[name].invisible_markers() if mark in body]
    assert not leaked, f"{name} sees {leaked} in {what}"
    return body


def _get(world, name, path, **params):
    return world.clients[name].get(path, params)


def _post(world, name, path, data):
    return world.clients[name].post(path, data=json.dumps(data), content_type="application/json")


def _patch(world, name, path, data):
    return world.clients[name].patch(path, data=json.dumps(data), content_type="application/json")


def _api_reads(name: str, *, scopes=("scheduler", "user", "admin")) -> bool:
    """May ``name`` use an API endpoint open to ``scopes`` (a session counts as user)?"""
    who = PRINCIPALS[name]
    scope = "user" if who.kind == "session" else who.scope
    return scope in scopes


def _denied_statuses(name: str) -> set[int]:
    return {401} if PRINCIPALS[name].kind == "anonymous" else {403}


def _each_principal(check: Callable[[World, str], None]) -> Callable[[World], None]:
    def run(world: World) -> None:
        for name in PRINCIPALS:
            check(world, name)

    return run


# --- checks: no tenant data at all ---------------------------------------------------------


def _no_markers_anywhere(path: str, *, method: str = "get", data=None):
    """Public pages and endpoints over shared data only (schema, the what-if catalog, grid
    zones): whoever asks, no marker of any tenant appears."""

    def check(world: World, name: str) -> None:
        client = world.clients[name]
        if method == "post":
            response = client.post(path, data=json.dumps(data or {}), content_type="application/json")
        else:
            response = client.get(path)
        assert response.status_code < 500, (path, name, response.status_code)
        body = _body(response)
        every = [mark for marks in MARK_ORG.values() for mark in marks]
        every += list(MARK_JOB.values()) + list(MARK_TEAM.values()) + list(MARK_BUDGET.values())
        assert not [mark for mark in every if mark in body], (path, name)

    return _each_principal(check)


# --- checks: API ---------------------------------------------------------------------------


def _api_job_detail(
    suffix: str,
    *,
    by_key: bool = False,
    method: str = "get",
    scopes=("scheduler", "user", "admin"),
    write: bool = False,
):
    """One job per request: visible ones answer (not 404), others 404 and stay unchanged; a
    principal whose scope may not use the endpoint gets one status for every job."""

    def check(world: World, name: str) -> None:
        who = PRINCIPALS[name]
        statuses = {}
        for key, job in world.jobs.items():
            if write and key in who.jobs:
                continue  # writes of visible jobs are the API tests' business; here: others' jobs
            if by_key:
                path = f"/api/v1/jobs/by-key/{job.scheduler_job_id}/{suffix}?cluster={job.cluster_id}"
            else:
                path = f"/api/v1/jobs/{job.pk}/{suffix}"
            before = m.Job.objects.filter(pk=job.pk).values().get()
            if method == "get":
                response = _get(world, name, path)
            elif method == "patch":
                response = _patch(world, name, path, {"name": "renamed"})
            else:
                response = _post(world, name, path, {"exit_state": "completed"} if "end" in suffix else {})
            _no_leak(name, response, what=path)
            statuses[key] = response.status_code
            if key not in who.jobs:
                assert m.Job.objects.filter(pk=job.pk).values().get() == before, (name, path)
        if not _api_reads(name, scopes=scopes):
            assert set(statuses.values()) <= _denied_statuses(name), (name, statuses)
            return
        for key, code in statuses.items():
            if key in who.jobs:
                assert code != 404, (name, key, code)
            else:
                assert code == 404, (name, key, code)

    return _each_principal(check)


def _api_job_list(world: World, name: str) -> None:
    response = _get(world, name, "/api/v1/jobs/", limit=100)
    _no_leak(name, response, what="job list")
    if not _api_reads(name):
        assert response.status_code in _denied_statuses(name)
        return
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {world.jobs[j].pk for j in PRINCIPALS[name].jobs}, name
    # A filter naming another tenant's team widens nothing.
    for team in TEAMS:
        narrowed = _get(world, name, "/api/v1/jobs/", team=f"team-{team}")
        _no_leak(name, narrowed, what=f"job list ?team=team-{team}")


def _api_job_register(world: World, name: str) -> None:
    """Registering a job: a scheduler token in its own cluster only, an admin token in its own
    organisation only; another tenant's team or cluster is refused and nothing is created."""
    count = m.Job.objects.count()
    attempts = [
        {"team": "team-a", "scheduler_job_id": "new-1", "cluster": world.clusters["b"].pk},
        {"team": "team-c", "scheduler_job_id": "new-2", "cluster": world.clusters["c"].pk},
        {"team": "team-c", "scheduler_job_id": "new-3"},
    ]
    for body in attempts:
        body = {**body, "kind": "training", "family": "llm", "name": "x"}
        response = _post(world, name, "/api/v1/jobs/", body)
        _no_leak(name, response, what=f"job register {body}")
        if name == "admin token org1" and body.get("cluster") == world.clusters["b"].pk:
            assert response.status_code == 201  # its own organisation: allowed
            m.Job.objects.filter(scheduler_job_id="new-1").delete()
            continue
        assert 400 <= response.status_code < 500, (name, body, response.status_code)
    assert m.Job.objects.count() == count


def _api_budget_list(world: World, name: str) -> None:
    response = _get(world, name, "/api/v1/budgets/", limit=100)
    _no_leak(name, response, what="budget list")
    if not _api_reads(name):
        assert response.status_code in _denied_statuses(name)
        return
    assert response.status_code == 200
    teams = {row["team"] for row in response.json()["results"]}
    assert teams == {f"team-{t}" for t in PRINCIPALS[name].teams}, (name, teams)


def _api_budget_set(world: World, name: str) -> None:
    before = list(m.CarbonBudget.objects.values().order_by("pk"))
    body = {"team": "team-c", "period_start": "2030-01-01", "period_end": "2030-02-01", "co2e_budget_g": 1.0}
    response = _post(world, name, "/api/v1/budgets/", body)
    _no_leak(name, response, what="budget set")
    assert 400 <= response.status_code < 500, (name, response.status_code)
    assert list(m.CarbonBudget.objects.values().order_by("pk")) == before


def _api_budget_detail(world: World, name: str) -> None:
    who = PRINCIPALS[name]
    statuses = {}
    for t, budget in world.budgets.items():
        response = _get(world, name, f"/api/v1/budgets/{budget.pk}/")
        _no_leak(name, response, what=f"budget {t}")
        statuses[t] = response.status_code
    if not _api_reads(name):
        assert set(statuses.values()) <= _denied_statuses(name)
        return
    assert statuses == {t: 200 if t in who.teams else 404 for t in TEAMS}, (name, statuses)


def _api_budget_check(world: World, name: str) -> None:
    who = PRINCIPALS[name]
    for t in TEAMS:
        response = _post(world, name, "/api/v1/budgets/check/", {"team": f"team-{t}", "co2e_g": 10.0})
        _no_leak(name, response, what=f"budget check {t}")
        if not _api_reads(name):
            assert response.status_code in _denied_statuses(name)
        elif t in who.teams:
            assert response.status_code == 200, (name, t)
        else:
            assert response.status_code == 400 and response.json()["errors"][0]["field"] == "team", (name, t)


def _api_advice(world: World, name: str) -> None:
    body = {"hardware_model": "h100-sxm5-80gb", "gpu_count": 1, "hours": 1.0}
    response = _post(world, name, "/api/v1/advice/", body)
    _no_leak(name, response, what="advice")
    for key, cluster in world.clusters.items():
        response = _post(world, name, "/api/v1/advice/", {**body, "clusters": [cluster.pk]})
        _no_leak(name, response, what=f"advice cluster {key}")
        if _api_reads(name) and (1 if key != "c" else 2) not in PRINCIPALS[name].orgs:
            assert response.status_code == 400 and response.json()["errors"][0]["field"] == "clusters"


def _api_metrics(path: str):
    """Admin and user tokens scrape what they see (a user token its teams' jobs, an admin token
    its organisation's); sessions, schedulers, hosts and the anonymous are refused."""

    def check(world: World, name: str) -> None:
        import re

        who = PRINCIPALS[name]
        response = _get(world, name, path)
        body = _no_leak(name, response, what=f"metrics {path}")
        if who.kind == "token" and who.scope in ("admin", "user"):
            assert response.status_code == 200, (name, response.status_code)
            assert set(re.findall(r'job_id="sched-(\w+)"', body)) == who.jobs, (name, body)
            assert set(re.findall(r'team="team-(\w)"', body)) <= who.teams, name
        else:
            assert response.status_code in _denied_statuses(name), (name, response.status_code)

    return check


def _ingest(world: World, name: str) -> None:
    """Host tokens post for their own host only (tests/telemetry/test_ingest.py::
    test_authentication_and_scope covers another host of the same cluster, ::
    test_a_device_of_another_host_cannot_be_posted a foreign device); here every principal,
    another cluster's host and another organisation's host."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    for key in ("b", "c"):
        host = world.hosts[key]
        device = host.devices.get()
        payload = batch(
            hostname=host.hostname, windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_=device.uuid)])]
        )
        before = stored_counts()
        if name in world.secrets:
            response = post_batch(Client(), world.secrets[name], payload)
        else:
            response = world.clients[name].post(
                "/api/v1/ingest/batches", data=json.dumps(payload), content_type="application/json"
            )
        assert response.status_code in (401, 403), (name, key, response.status_code)
        assert stored_counts() == before


# --- checks: dashboard ---------------------------------------------------------------------


def _dashboard_page(path: str, *, exact_jobs: bool = False, csv: bool = False):
    """A page of the signed-in dashboard: tokens and anonymous are sent to the login; a session
    sees no marker of another's data, also with a filter naming another tenant's team."""

    def check(world: World, name: str) -> None:
        who = PRINCIPALS[name]
        response = _get(world, name, path)
        if who.kind != "session":
            assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), name
            return
        assert response.status_code == 200, (name, path, response.status_code)
        body = _no_leak(name, response, what=path)
        if exact_jobs:
            assert {j for j in JOBS if MARK_JOB[j] in body} == who.jobs, (name, path)
        for team in world.teams.values():
            _no_leak(name, _get(world, name, path, team=team.pk), what=f"{path}?team={team.pk}")

    return _each_principal(check)


def _dashboard_job_detail(world: World, name: str) -> None:
    who = PRINCIPALS[name]
    for key, job in world.jobs.items():
        response = _get(world, name, f"/jobs/{job.pk}/")
        if who.kind != "session":
            assert response.status_code == 302, name
            continue
        _no_leak(name, response, what=f"job page {key}")
        assert response.status_code == (200 if key in who.jobs else 404), (name, key)


def _dashboard_job_power(world: World, name: str) -> None:
    who = PRINCIPALS[name]
    for key, job in world.jobs.items():
        response = _get(world, name, f"/jobs/{job.pk}/power.json")
        if who.kind != "session":
            assert response.status_code == 302, name
            continue
        _no_leak(name, response, what=f"job power {key}")
        assert response.status_code == (200 if key in who.jobs else 404), (name, key)


def _dashboard_report_month(world: World, name: str) -> None:
    who = PRINCIPALS[name]
    path = f"/reports/{world.now:%Y-%m}/"
    response = _get(world, name, path)
    if who.kind != "session":
        assert response.status_code == 302, name
        return
    assert response.status_code == 200
    _no_leak(name, response, what=path)
    for t, team in world.teams.items():
        response = _get(world, name, path, team=team.pk)
        _no_leak(name, response, what=f"{path}?team={t}")
        assert response.status_code == (200 if t in who.teams else 404), (name, t)


def _dashboard_report_preview(world: World, name: str) -> None:
    """The framed preview of the mailed report: the principal's jobs, never another's."""
    who = PRINCIPALS[name]
    path = f"/reports/{world.now:%Y-%m}/preview.html"
    response = _get(world, name, path)
    if who.kind != "session":
        assert response.status_code == 302, name
        return
    assert response.status_code == 200
    body = _no_leak(name, response, what=path)
    assert all(MARK_JOB[j] in body for j in who.jobs), name
    for t, team in world.teams.items():
        response = _get(world, name, path, team=team.pk)
        _no_leak(name, response, what=f"{path}?team={t}")
        assert response.status_code == (200 if t in who.teams else 404), (name, t)


# --- checks: the admin ---------------------------------------------------------------------


ADMIN_CALLERS = ("anonymous", "session A", "session org2", "admin token org1")


def _admin_path(pattern: URLPattern, prefix: str) -> str:
    route = prefix + str(pattern.pattern)
    if route.startswith("admin/^"):  # the app index: a regex of the registered app labels
        return "/admin/accounting/"
    route = re.sub(r"<[^>]+>", "1", route)  # object ids, content type ids
    assert "^" not in route, route
    return "/" + route


ADMIN = "admin (staff only)"


def _admin_staff_only(world: World, paths: list[str]) -> None:
    """The admin is for staff only: members and tokens (a bearer token is not a session) are
    sent to the admin login, whatever the page."""
    for path in paths:
        for name in ADMIN_CALLERS:
            response = world.clients[name].get(path)
            if path in ("/admin/login/", "/admin/logout/"):  # the login form; logout (POST only)
                assert response.status_code in (200, 302, 405), (name, path)
                _no_leak(name, response, what=path)
                continue
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), (name, path)


# --- the classification --------------------------------------------------------------------

NO_TENANT_DATA = {
    "healthz": "/healthz",
    "login": "/accounts/login/",
    "logout": "/accounts/logout/",
    "password_change": "/accounts/password_change/",
    "password_change_done": "/accounts/password_change/done/",
    "password_reset": "/accounts/password_reset/",
    "password_reset_done": "/accounts/password_reset/done/",
    "password_reset_confirm": "/accounts/reset/MQ/set-password/",
    "password_reset_complete": "/accounts/reset/done/",
    "api-schema": "/api/schema/",
    "api-docs": "/api/docs/",
    "api-redoc": "/api/redoc/",
    "api-not-found": "/api/v1/jobs/1.5/",
    "dashboard:plotly-js": "/assets/plotly-0.0.0.min.js",
    "dashboard:redoc-js": "/assets/redoc-0.0.0.standalone.js",
}
# What-if over the shared catalog and grid zones only (a job's projection is a job endpoint).
SHARED_DATA_POST = {
    "whatif-estimate": (
        "/api/v1/estimate/",
        {"hardware_model": "h100-sxm5-80gb", "gpu_count": 1, "hours": 1, "zone_code": "ZZ-ISO"},
    ),
    "whatif-fleet-plan": ("/api/v1/fleet-plan/", {"zone_code": "ZZ-ISO"}),
    "whatif-best-window": ("/api/v1/best-window/", {"zone_code": "ZZ-ISO", "hours": 2}),
}
TENANT = {
    "api-jobs": lambda w: (_each_principal(_api_job_list)(w), _each_principal(_api_job_register)(w)),
    "api-job": lambda w: (
        _api_job_detail("")(w),
        _api_job_detail("", method="patch", scopes=("scheduler", "admin"), write=True)(w),
    ),
    "api-job-end": _api_job_detail("end/", method="post", scopes=("scheduler", "admin"), write=True),
    "api-job-footprint": _api_job_detail("footprint/"),
    "api-job-units": _api_job_detail("units/", method="post", write=True),
    "api-job-by-key": lambda w: (
        _api_job_detail("", by_key=True)(w),
        _api_job_detail("", by_key=True, method="patch", scopes=("scheduler", "admin"), write=True)(w),
    ),
    "api-job-end-by-key": _api_job_detail(
        "end/", by_key=True, method="post", scopes=("scheduler", "admin"), write=True
    ),
    "api-job-footprint-by-key": _api_job_detail("footprint/", by_key=True),
    "api-job-units-by-key": _api_job_detail("units/", by_key=True, method="post", write=True),
    "whatif-project-job": _api_job_detail("project/", method="post"),
    "api-job-serving": lambda w: (
        _api_job_detail("serving/")(w),
        _api_job_detail("serving/", method="post", write=True)(w),
    ),
    "api-job-serving-by-key": lambda w: (
        _api_job_detail("serving/", by_key=True)(w),
        _api_job_detail("serving/", by_key=True, method="post", write=True)(w),
    ),
    "api-budgets": lambda w: (_each_principal(_api_budget_list)(w), _each_principal(_api_budget_set)(w)),
    "api-budget": _each_principal(_api_budget_detail),
    "api-budget-check": _each_principal(_api_budget_check),
    "api-advice": _each_principal(_api_advice),
    "api-metrics": _each_principal(_api_metrics("/api/v1/metrics")),
    "metrics": _each_principal(_api_metrics("/metrics")),
    "ingest-batches": _each_principal(_ingest),
    "dashboard:overview": _dashboard_page("/"),
    "dashboard:sites": _dashboard_page("/sites/"),
    "dashboard:devices": _dashboard_page("/devices/"),
    "dashboard:jobs": _dashboard_page("/jobs/", exact_jobs=True),
    "dashboard:jobs-export": _dashboard_page("/jobs/export.csv", exact_jobs=True),
    "dashboard:job-detail": _each_principal(_dashboard_job_detail),
    "dashboard:job-power": _each_principal(_dashboard_job_power),
    "dashboard:live": _dashboard_page("/live/"),
    "dashboard:live-data": _dashboard_page("/live/data.json", exact_jobs=True),
    "dashboard:tradeoffs": _dashboard_page("/tradeoffs/"),
    "dashboard:planner": _dashboard_page("/planner/"),
    "dashboard:budgets": _dashboard_page("/budgets/"),
    "dashboard:methodology": _dashboard_page("/methodology/"),
    "dashboard:reports": _dashboard_page("/reports/"),
    "dashboard:report-month": _each_principal(_dashboard_report_month),
    "dashboard:report-deliveries": _dashboard_page("/reports/deliveries/"),
    "dashboard:report-preview": _each_principal(_dashboard_report_preview),
}
XFAIL: dict[str, str] = {}  # name -> reason, for a leak whose fix is outside this test's owner


# --- checks: exports and the fleet file (issue 16) ------------------------------------------


def _export_rows(response) -> list[dict]:
    import csv
    import io

    import pyarrow.parquet as pq

    body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
    if response["Content-Type"].startswith("application/vnd.apache.parquet"):
        return pq.read_table(io.BytesIO(body)).to_pylist()  # compressed: markers are not in the bytes
    return list(csv.DictReader(io.StringIO(body.decode())))


def _api_export(path: str):
    """An export holds exactly the jobs its principal sees (by scheduler id), and never a marker
    of anything else; ``team`` naming another tenant's team is refused, not widened."""

    def check(world: World, name: str) -> None:
        response = _get(world, name, path)
        if not _api_reads(name):
            assert response.status_code in _denied_statuses(name), (name, path)
            return
        assert response.status_code == 200, (name, path, response.status_code)
        rows = _export_rows(response)
        assert {r["scheduler_job_id"] for r in rows} == {f"sched-{j}" for j in PRINCIPALS[name].jobs}, (name, path)
        text = json.dumps(rows, default=str)
        leaked = [mark for mark in PRINCIPALS[name].invisible_markers() if mark in text]
        assert not leaked, (name, path, leaked)
        for team in TEAMS:
            narrowed = _get(world, name, path, team=f"team-{team}")
            if team in PRINCIPALS[name].teams:
                assert narrowed.status_code == 200, (name, team)
                assert {r["team"] for r in _export_rows(narrowed)} <= {f"team-{team}"}
            else:
                assert narrowed.status_code == 400, (name, path, team, narrowed.status_code)

    return _each_principal(check)


def _api_report(suffix: str):
    """A month's report (JSON and files) holds exactly the jobs its principal sees and never a
    marker of anything else; ``team`` naming a team the principal does not see is refused. The
    Parquet file is checked by its rows; the PDF is compressed (markers are not in its bytes): it
    renders the same report as report.html, which is checked."""

    def check(world: World, name: str) -> None:
        path = f"/api/v1/reports/{world.now:%Y-%m}/{suffix}"
        response = _get(world, name, path)
        if not _api_reads(name):
            assert response.status_code in _denied_statuses(name), (name, path)
            return
        assert response.status_code == 200, (name, path, response.status_code)
        binary = suffix in ("report.pdf", "ledger.parquet")  # compressed: checked by their rows or twin
        body = "" if binary else _no_leak(name, response, what=path)
        wanted = {f"sched-{j}" for j in PRINCIPALS[name].jobs}
        if suffix == "":
            assert {j["scheduler_job_id"] for j in json.loads(body)["top_jobs"]} == wanted, (name, path)
        elif suffix == "ledger.parquet":
            assert {r["scheduler_job_id"] for r in _export_rows(response)} == wanted, (name, path)
        elif suffix == "report.html":
            assert all(MARK_JOB[j] in body for j in PRINCIPALS[name].jobs), (name, path)
        for team in TEAMS:
            narrowed = _get(world, name, path, team=f"team-{team}")
            if team in PRINCIPALS[name].teams:
                assert narrowed.status_code == 200, (name, path, team)
                if not binary:
                    _no_leak(name, narrowed, what=f"{path}?team=team-{team}")
                elif suffix == "ledger.parquet":
                    assert {r["team"] for r in _export_rows(narrowed)} <= {f"team-{team}"}
            else:
                assert narrowed.status_code == 400, (name, path, team, narrowed.status_code)
                _no_leak(name, narrowed, what=f"{path}?team=team-{team}")

    return _each_principal(check)


def _api_fleet(path: str):
    """The fleet file: admin tokens only, their own organisation only; nothing changes for a
    document naming another organisation."""

    def check(world: World, name: str) -> None:
        for org_key in (1, 2):
            document = {"organisation": {"slug": MARK_ORG[org_key][0]}, "teams": [{"slug": "fleet-new-team"}]}
            before = m.Team.objects.count(), m.AuditEvent.objects.count()
            response = _post(world, name, path, document)
            _no_leak(name, response, what=f"{path} org {org_key}")
            own = name == "admin token org1" and org_key == 1
            if not own:
                assert 400 <= response.status_code < 500, (name, org_key, response.status_code)
                assert (m.Team.objects.count(), m.AuditEvent.objects.count()) == before
            else:
                assert response.status_code == 200, (name, response.content)
                m.Team.objects.filter(slug="fleet-new-team").delete()

    return _each_principal(check)


TENANT.update(
    {
        "api-export-job-hours-csv": _api_export("/api/v1/exports/job-hours.csv"),
        "api-export-job-hours-parquet": _api_export("/api/v1/exports/job-hours.parquet"),
        "api-export-jobs-csv": _api_export("/api/v1/exports/jobs.csv"),
        "api-export-jobs-parquet": _api_export("/api/v1/exports/jobs.parquet"),
        "api-report": _api_report(""),
        "api-report-html": _api_report("report.html"),
        "api-report-pdf": _api_report("report.pdf"),
        "api-report-jobs-csv": _api_report("jobs.csv"),
        "api-report-ledger-parquet": _api_report("ledger.parquet"),
        "api-fleet-plan": _api_fleet("/api/v1/fleet/plan/"),
        "api-fleet-apply": _api_fleet("/api/v1/fleet/apply/"),
    }
)


# --- checks: market-based Scope 2, water and the period disclosure (issue 13) --------------


def _instrument_body(site_slug: str) -> dict:
    return {
        "site": site_slug,
        "kind": "go",
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2027-01-01T00:00:00Z",
        "mwh": 1.0,
        "g_per_kwh": 0.0,
        "source": "isolation test",
        "reason": "isolation test",
    }


def _instrument_state():
    return m.ContractualInstrument.objects.count(), m.AuditEvent.objects.count(), m.FactorChange.objects.count()


def _api_instruments(world: World, name: str) -> None:
    """Admin tokens of their own organisation only: another organisation's site is refused and
    its instruments are never listed; nothing changes for a refused request."""
    other = m.ContractualInstrument.objects.create(
        org=world.orgs[2],
        site=m.Site.objects.get(slug="site-two"),
        kind="go",
        period_start=world.now - dt.timedelta(days=1),
        period_end=world.now,
        mwh=1.0,
        source="Marksite-two-x7 contract",
    )
    try:
        listed = _get(world, name, "/api/v1/instruments/")
        _no_leak(name, listed, what="instruments")
        before = _instrument_state()
        foreign = _post(world, name, "/api/v1/instruments/", _instrument_body("site-two"))
        _no_leak(name, foreign, what="instrument at another organisation's site")
        withdraw = world.clients[name].delete(f"/api/v1/instruments/{other.pk}/?reason=x")
        _no_leak(name, withdraw, what="withdraw another organisation's instrument")
        assert _instrument_state() == before, name
        if name == "admin token org1":
            assert listed.status_code == 200 and listed.json() == {"results": []}
            assert foreign.status_code == 400 and foreign.json()["errors"][0]["field"] == "site"
            assert withdraw.status_code == 404
        else:
            denied = _denied_statuses(name)
            assert {listed.status_code, foreign.status_code, withdraw.status_code} <= denied, name
    finally:
        other.delete()


def _api_shared_factors(path: str, body: dict):
    """Residual mixes and grid water are shared factors like grid zones: read scopes read them
    (no tenant marker in them), admin tokens write them; nothing changes for a refused write."""

    def check(world: World, name: str) -> None:
        response = _get(world, name, path)
        _no_leak(name, response, what=path)
        assert response.status_code == (200 if _api_reads(name) else next(iter(_denied_statuses(name)))), name
        if name != "admin token org1":
            before = _instrument_state()
            write = _post(world, name, path, body)
            assert write.status_code in _denied_statuses(name), (name, write.status_code)
            assert _instrument_state() == before

    return _each_principal(check)


def _api_site_wue(world: World, name: str) -> None:
    """A site's WUE series: admin tokens of its organisation only; another organisation's site
    is refused and its rows never listed."""
    other = m.SiteWue.objects.create(
        site=m.Site.objects.get(slug="site-two"), valid_from=world.now, wue_l_per_kwh=1.0, source="Marksite-two-x7"
    )
    try:
        listed = _get(world, name, "/api/v1/site-wue/")
        _no_leak(name, listed, what="site WUE")
        before = _instrument_state(), m.SiteWue.objects.count()
        body = {
            "site": "site-two",
            "valid_from": "2026-01-01T00:00:00Z",
            "wue_l_per_kwh": 1.0,
            "source": "x",
            "reason": "x",
        }
        foreign = _post(world, name, "/api/v1/site-wue/", body)
        _no_leak(name, foreign, what="WUE of another organisation's site")
        assert (_instrument_state(), m.SiteWue.objects.count()) == before, name
        if name == "admin token org1":
            assert listed.status_code == 200 and listed.json() == {"results": []}
            assert foreign.status_code == 400 and foreign.json()["errors"][0]["field"] == "site"
        else:
            assert {listed.status_code, foreign.status_code} <= _denied_statuses(name), name
    finally:
        other.delete()


def _api_disclosure(world: World, name: str) -> None:
    """The period statement sums what the principal sees; ``team`` naming another tenant's team
    is refused, not widened."""
    day = world.now.date()
    params = {"start": str(day - dt.timedelta(days=7)), "end": str(day + dt.timedelta(days=1))}
    response = _get(world, name, "/api/v1/disclosure/", **params)
    _no_leak(name, response, what="disclosure")
    if not _api_reads(name):
        assert response.status_code in _denied_statuses(name), name
        return
    assert response.status_code == 200, (name, response.content)
    for team in TEAMS:
        narrowed = _get(world, name, "/api/v1/disclosure/", team=f"team-{team}", **params)
        _no_leak(name, narrowed, what=f"disclosure team {team}")
        assert narrowed.status_code == (200 if team in PRINCIPALS[name].teams else 400), (name, team)


TENANT.update(
    {
        "api-instruments": _each_principal(_api_instruments),
        "api-instrument": lambda w: None,  # withdrawing: checked with the collection (_api_instruments)
        "api-residual-mixes": _api_shared_factors(
            "/api/v1/residual-mixes/",
            {"zone": "ZZ-ISO", "year": 2026, "g_per_kwh": 1.0, "source_detail": "x", "reason": "x"},
        ),
        "api-zone-water": _api_shared_factors(
            "/api/v1/zone-water/",
            {
                "zone": "ZZ-ISO",
                "l_per_kwh": 1.0,
                "low_l_per_kwh": 1.0,
                "high_l_per_kwh": 1.0,
                "source_detail": "x",
                "reason": "x",
            },
        ),
        "api-disclosure": _each_principal(_api_disclosure),
        "api-site-wue": _each_principal(_api_site_wue),
    }
)


# --- report deliveries and report e-mail subscriptions (issue 14 follow-up) -----------------

DELIVERY_SEES = {  # the delivery rows (by recipient) each principal may list
    "session A": {"deliv-a@x.test"},
    "token A": {"deliv-a@x.test"},
    "session B": {"deliv-b@x.test"},
    "token B": {"deliv-b@x.test"},
    "session org2": {"deliv-c@x.test"},
    "token org2": {"deliv-c@x.test"},
    "admin token org1": {"deliv-a@x.test", "deliv-b@x.test", "deliv-org1@x.test"},
}


def _deliveries_seed(world: World) -> dt.date:
    month = world.now.date().replace(day=1)
    for t, team in world.teams.items():
        m.ReportDelivery.objects.get_or_create(org=team.org, team=team, month=month, recipient=f"deliv-{t}@x.test")
    for key, org in world.orgs.items():
        m.ReportDelivery.objects.get_or_create(org=org, team=None, month=month, recipient=f"deliv-org{key}@x.test")
    return month


def _api_report_deliveries(world: World, name: str) -> None:
    """The month's delivery ledger: user and admin tokens (and sessions) only, each its own
    rows (an admin token its organisation's, roll-up included; a member its team's); ``team``
    naming a team the principal does not see is refused."""
    month = _deliveries_seed(world)
    path = f"/api/v1/reports/{month:%Y-%m}/deliveries/"
    response = _get(world, name, path)
    _no_leak(name, response, what=path)
    if not _api_reads(name, scopes=("user", "admin")):
        assert response.status_code in _denied_statuses(name), (name, response.status_code)
        return
    assert response.status_code == 200, (name, response.content)
    assert {r["recipient"] for r in response.json()["results"]} == DELIVERY_SEES[name], name
    for team in TEAMS:
        narrowed = _get(world, name, path, team=f"team-{team}")
        _no_leak(name, narrowed, what=f"{path}?team=team-{team}")
        if team in PRINCIPALS[name].teams:
            assert narrowed.status_code == 200, (name, team)
            assert {r["recipient"] for r in narrowed.json()["results"]} == {f"deliv-{team}@x.test"}
        else:
            assert narrowed.status_code == 400, (name, team, narrowed.status_code)


def _dashboard_report_subscription(world: World, name: str) -> None:
    """A signed-in user opts in or out of their own teams' reports only; any other team (of
    their organisation or another) is 404 and changes nothing; no session: the login page."""
    for team_key, team in world.teams.items():
        before = list(m.ReportScopeOptOut.objects.values_list("team_id", "email"))
        response = world.clients[name].post(
            "/reports/subscriptions/", {"org": team.org_id, "team": team.pk, "subscribe": "no"}
        )
        _no_leak(name, response, what=f"subscription team {team_key}")
        who = PRINCIPALS[name]
        if who.kind != "session":
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], (name, team_key)
        elif team_key in who.teams:
            assert response.status_code == 302, (name, team_key)
            world.clients[name].post(
                "/reports/subscriptions/", {"org": team.org_id, "team": team.pk, "subscribe": "yes"}
            )
        else:
            assert response.status_code == 404, (name, team_key, response.status_code)
        assert list(m.ReportScopeOptOut.objects.values_list("team_id", "email")) == before, (name, team_key)


def _dashboard_report_unsubscribe(world: World, name: str) -> None:
    """The e-mail's unsubscribe link needs no login: the signed token is the credential. A
    token that does not verify answers 400 to everyone and changes nothing; a valid one shows
    its own recipient and report only, whoever holds it."""
    from accounting.services.report_delivery import report_unsubscribe_token

    _deliveries_seed(world)
    row = m.ReportDelivery.objects.get(recipient="deliv-a@x.test")
    good = report_unsubscribe_token(delivery=row)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for token in (forged, "not-a-token"):
        for method in ("get", "post"):
            response = getattr(world.clients[name], method)(f"/reports/unsubscribe/{token}/")
            _no_leak(name, response, what=f"unsubscribe {method}")
            assert response.status_code == 400, (name, method, response.status_code)
    body = world.clients[name].get(f"/reports/unsubscribe/{good}/").content.decode()
    assert "deliv-a@x.test" in body and MARK_TEAM["a"] in body
    assert not any(mark in body for mark in (MARK_TEAM["b"], MARK_TEAM["c"], *MARK_ORG[2], *MARK_JOB.values()))
    assert not m.ReportScopeOptOut.objects.exists()


TENANT.update(
    {
        "api-report-deliveries": _each_principal(_api_report_deliveries),
        "dashboard:report-subscription": _each_principal(_dashboard_report_subscription),
        "dashboard:report-unsubscribe": _each_principal(_dashboard_report_unsubscribe),
    }
)


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern, prefix + str(pattern.pattern), ns)
        else:
            yield pattern, prefix, f"{namespace}{pattern.name}" if pattern.name else prefix + str(pattern.pattern)


def _patterns() -> tuple[list[tuple[str, Callable[[World], None] | None]], list[str]]:
    cases: list[tuple[str, Callable[[World], None] | None]] = []
    admin_paths = []
    for pattern, prefix, name in _walk(get_resolver()):
        if prefix.startswith("admin/"):
            admin_paths.append(_admin_path(pattern, prefix))
        elif name in NO_TENANT_DATA:
            cases.append((name, _no_markers_anywhere(NO_TENANT_DATA[name])))
        elif name in SHARED_DATA_POST:
            path, data = SHARED_DATA_POST[name]
            cases.append((name, _no_markers_anywhere(path, method="post", data=data)))
        elif name in TENANT:
            cases.append((name, TENANT[name]))
        else:
            cases.append((name, None))  # not classified: test_every_url_pattern_is_classified fails
    return cases, admin_paths


CASES, ADMIN_PATHS = _patterns()


@pytest.mark.django_db(False)
def test_every_url_pattern_is_classified():
    unclassified = [name for name, check in CASES if check is None]
    assert not unclassified, f"classify these URL patterns in tests/security/test_isolation.py: {unclassified}"
    assert len({name for name, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(
            check, id=name, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else []
        )
        for name, check in CASES
        if check is not None
    ],
)
def test_no_principal_sees_another_tenants_data(world, check):
    check(world)


def test_the_admin_is_staff_only(world):
    assert len(ADMIN_PATHS) > 100  # every ModelAdmin's list, add, change, delete and history pages
    _admin_staff_only(world, ADMIN_PATHS)
