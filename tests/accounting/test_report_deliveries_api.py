"""GET /api/v1/reports/{YYYY-MM}/deliveries/: the month's delivery ledger through the API. An
admin token sees its organisation's deliveries (the roll-up's included), a user token its
user's teams' only, a scheduler or host token nothing (403); filters by team and status; the
row's fields as the ledger holds them. Tenant isolation across organisations:
tests/security/test_isolation.py ("api-report-deliveries")."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from accounting import models as m
from accounting.services import report_delivery as svc
from accounting.tokens import token_create
from tests import factories as f
from tests.accounting.report_delivery_world import MONTH, SEND_AT, world_build

pytestmark = pytest.mark.django_db
URL = "/api/v1/reports/2026-11/deliveries/"


@pytest.fixture
def world():
    w = world_build()
    for scope in svc.report_month_plan(org_id=w.org.id, month=MONTH, now=SEND_AT):
        svc.report_scope_deliver(org_id=w.org.id, team_id=scope, month=MONTH, now=SEND_AT)
    return w


def _client(**kw) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(**kw).secret}")


def _user(username: str):
    return m.Membership.objects.get(user__username=username).user


def _recipients(response) -> list[tuple[str | None, str, int]]:
    assert response.status_code == 200, response.content
    return [(r["team"], r["recipient"], r["revision"]) for r in response.json()["results"]]


def test_an_admin_token_sees_the_organisations_deliveries_roll_up_included(world):
    body = _client(org=world.org, name="adm", scope="admin").get(URL)
    assert _recipients(body) == [
        ("alpha", "alpha-leads@acme.test", 0),
        ("alpha", "ana@acme.test", 0),
        ("alpha", "ben@acme.test", 0),
        ("beta", "bea@acme.test", 0),
        ("beta", "finance@acme.test", 0),
        (None, "lead@acme.test", 0),
        (None, "root@acme.test", 0),
    ]
    data = body.json()
    assert (data["month"], data["count"], data["truncated"]) == ("2026-11", 7, False)
    row = m.ReportDelivery.objects.get(recipient="ana@acme.test")
    assert data["results"][1] == {
        "month": "2026-11",
        "org": "acme",
        "team": "alpha",
        "team_name": "Alpha",
        "recipient": "ana@acme.test",
        "revision": 0,
        "status": "sent",
        "attempts": 1,
        "last_error": "",
        "message_id": row.message_id,
        "reason": "",
        "forced_by": "",
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "sent_at": "2026-12-02T06:00:00Z",
        "next_attempt_at": None,
        "unsubscribed_at": None,
        "revised_after_sending": False,
    }


def test_a_user_token_sees_its_teams_deliveries_only(world):
    ana = _client(org=world.org, name="ana", scope="user", user=_user("ana"))
    assert _recipients(ana.get(URL)) == [
        ("alpha", "alpha-leads@acme.test", 0),
        ("alpha", "ana@acme.test", 0),
        ("alpha", "ben@acme.test", 0),
    ]
    # Another team named: refused (400 naming the field), as for the report itself.
    refused = ana.get(URL, {"team": "beta"})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"field": "team", "message": "No such team visible to this token."}]
    # A user token of an organisation admin sees the whole organisation, the roll-up included.
    root = _client(org=world.org, name="root", scope="user", user=_user("root"))
    assert len(_recipients(root.get(URL))) == 7
    # A session (the dashboard) reads as its user.
    session = Client()
    session.force_login(_user("bea"))
    assert _recipients(session.get(URL)) == [("beta", "bea@acme.test", 0), ("beta", "finance@acme.test", 0)]


def test_filters_and_revised_after_sending(world):
    admin = _client(org=world.org, name="adm", scope="admin")
    assert _recipients(admin.get(URL, {"team": "beta"})) == [
        ("beta", "bea@acme.test", 0),
        ("beta", "finance@acme.test", 0),
    ]
    m.ReportDelivery.objects.filter(recipient="finance@acme.test").update(
        status="failed", last_error="SMTPDataError: 554 5.7.1 rejected"
    )
    failed = admin.get(URL, {"status": "failed"}).json()["results"]
    assert [(r["recipient"], r["last_error"]) for r in failed] == [
        ("finance@acme.test", "SMTPDataError: 554 5.7.1 rejected")
    ]
    m.TeamDay.objects.filter(team=world.alpha, day=dt.date(2026, 11, 3)).update(co2e_operational_g=1.0)
    svc.report_revisions_check(org_id=world.org.id, month=MONTH, now=SEND_AT)
    rows = admin.get(URL, {"team": "alpha", "status": "sent"}).json()["results"]
    assert [(r["recipient"], r["revised_after_sending"]) for r in rows] == [
        ("alpha-leads@acme.test", True),
        ("ana@acme.test", True),
        ("ben@acme.test", True),
    ]
    bad = admin.get(URL, {"status": "lost"})
    assert bad.status_code == 400 and [e["field"] for e in bad.json()["errors"]] == ["status"]
    assert admin.get("/api/v1/reports/2026-13/deliveries/").status_code == 404
    assert _recipients(admin.get("/api/v1/reports/2026-10/deliveries/")) == []


def test_scheduler_host_and_anonymous_callers_are_refused(world):
    cluster = f.ClusterFactory(site=world.site, name="c2", slug="c2")
    host = f.HostFactory(cluster=cluster, hostname="h2")
    assert _client(org=world.org, name="s", scope="scheduler", cluster=cluster).get(URL).status_code == 403
    assert _client(org=world.org, name="h", scope="host", host=host).get(URL).status_code == 403
    assert Client().get(URL).status_code == 401


def test_the_endpoint_is_in_the_openapi_schema(world):
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    op = schema["paths"]["/api/v1/reports/{month}/deliveries/"]["get"]
    assert op["operationId"] == "report_month_deliveries"
    assert {p["name"] for p in op["parameters"]} == {"month", "team", "status"}
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert set(fields) == {"month", "count", "truncated", "results"}
