# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""Budgets: spent from TeamDay, linear forecast, the scheduler's check (ok/warn/hold), isolation."""

from __future__ import annotations

import datetime as dt

import pytest

from accounting import models as m
from accounting.selectors.budgets import budget_check, budget_status
from tests.accounting.test_api_support import db_snapshot, problem_fields, world  # noqa: F401

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def _budget(world, g=1000.0):
    return m.CarbonBudget.objects.create(
        team=world.team, period_start=dt.date(2026, 11, 1), period_end=dt.date(2026, 12, 1), co2e_budget_g=g
    )


def _day(world, day, operational, embodied=0.0, team=None):
    m.TeamDay.objects.create(
        org=world.org,
        team=team or world.team,
        site=world.cluster_a.site,
        day=day,
        co2e_operational_g=operational,
        co2e_embodied_g=embodied,
    )


def test_status_spent_and_linear_forecast(world):
    budget = _budget(world)
    _day(world, dt.date(2026, 10, 31), 999.0)  # before the period
    _day(world, dt.date(2026, 11, 1), 200.0, 50.0)
    _day(world, dt.date(2026, 11, 10), 250.0)
    _day(world, dt.date(2026, 11, 20), 400.0)  # after as_of: not counted yet
    _day(world, dt.date(2026, 11, 5), 300.0, team=world.team2)
    status = budget_status(budget=budget, as_of=dt.datetime(2026, 11, 11, tzinfo=UTC))
    assert status.spent_g == 500.0
    assert status.elapsed_fraction == 10 / 30
    assert status.forecast_g == pytest.approx(1500.0)
    assert (status.remaining_g, status.used_fraction) == (500.0, 0.5)
    after = budget_status(budget=budget, as_of=dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert (after.spent_g, after.forecast_g, after.elapsed_fraction) == (900.0, 900.0, 1.0)


@pytest.mark.parametrize(
    ("estimate", "decision"),
    [(0.0, "ok"), (399.0, "ok"), (400.0, "warn"), (499.0, "warn"), (500.0, "hold"), (1e6, "hold")],
)
def test_check_thresholds(world, estimate, decision):
    _budget(world)
    _day(world, dt.date(2026, 11, 3), 500.0)
    at = dt.datetime(2026, 11, 10, tzinfo=UTC)
    assert budget_check(team=world.team, estimate_g=estimate, at=at, as_of=at).decision == decision


def test_check_endpoint(world):
    budget = _budget(world)
    _day(world, dt.date(2026, 11, 3), 850.0)
    before = db_snapshot()
    response = world.client("sched_a").post(
        "/api/v1/budgets/check/", {"team": "recsys", "co2e_g": 100.0, "at": "2026-11-10T00:00:00Z"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["decision"], body["estimate_g"], body["projected_g"]) == ("warn", 100.0, 950.0)
    assert body["projected_fraction"] == pytest.approx(0.95)
    assert body["thresholds"] == {"warn_fraction": 0.9, "hold_fraction": 1.0}
    assert body["budget"]["id"] == budget.pk
    assert db_snapshot() == before
    # No budget for the llm team: always ok.
    free = world.client("sched_a").post("/api/v1/budgets/check/", {"team": "llm", "co2e_g": 1e9}, format="json").json()
    assert (free["decision"], free["budget"], free["projected_fraction"]) == ("ok", None, None)


def test_check_endpoint_projection_values(world):
    _budget(world, g=2000.0)
    _day(world, dt.date(2026, 11, 3), 1700.0)
    body = (
        world.client("admin")
        .post(
            "/api/v1/budgets/check/", {"team": "recsys", "co2e_g": 100.0, "at": "2026-11-10T00:00:00Z"}, format="json"
        )
        .json()
    )
    assert (body["decision"], body["projected_g"], body["projected_fraction"]) == ("warn", 1800.0, 0.9)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"co2e_g": 1.0}, "team"),
        ({"team": "recsys"}, "co2e_g"),
        ({"team": "recsys", "co2e_g": -1}, "co2e_g"),
        ({"team": "recsys", "co2e_g": "nan"}, "co2e_g"),
        ({"team": "ghost", "co2e_g": 1}, "team"),
        ({"team": "recsys", "co2e_g": 1, "at": "2026-11-10"}, "at"),
    ],
)
def test_check_validation(world, body, field):
    response = world.client("sched_a").post("/api/v1/budgets/check/", body, format="json")
    assert response.status_code == 400
    assert problem_fields(response) == [field]


def test_team_isolation(world):
    budget = _budget(world)
    other = m.CarbonBudget.objects.create(
        team=world.team2, period_start=dt.date(2026, 11, 1), period_end=dt.date(2026, 12, 1), co2e_budget_g=5.0
    )
    ids = lambda token: sorted(b["id"] for b in world.client(token).get("/api/v1/budgets/").json()["results"])  # noqa: E731
    assert ids("alice") == [budget.pk]
    assert ids("bob") == sorted([budget.pk, other.pk])
    assert ids("other_admin") == []
    assert world.client("alice").get(f"/api/v1/budgets/{other.pk}/").status_code == 404
    assert world.client("alice").get(f"/api/v1/budgets/{budget.pk}/").json()["co2e_budget_g"] == 1000.0
    # alice may not check (or learn about) a team she is not in; another org's scheduler neither.
    assert problem_fields(
        world.client("alice").post("/api/v1/budgets/check/", {"team": "llm", "co2e_g": 1}, format="json")
    ) == ["team"]
    response = world.client("sched_other").post("/api/v1/budgets/check/", {"team": "llm", "co2e_g": 1}, format="json")
    assert problem_fields(response) == ["team"]
    assert world.client("host_a").get("/api/v1/budgets/").status_code == 403


def test_set_budget_admin_only(world):
    body = {"team": "recsys", "period_start": "2026-12-01", "period_end": "2027-01-01", "co2e_budget_g": 5e6}
    before = db_snapshot()
    assert world.client("sched_a").post("/api/v1/budgets/", body, format="json").status_code == 403
    assert world.client("bob").post("/api/v1/budgets/", body, format="json").status_code == 403
    assert db_snapshot() == before
    created = world.client("admin").post("/api/v1/budgets/", body, format="json")
    assert created.status_code == 201, created.json()
    replaced = world.client("admin").post("/api/v1/budgets/", {**body, "co2e_budget_g": 4e6}, format="json")
    assert replaced.status_code == 200
    assert m.CarbonBudget.objects.get().co2e_budget_g == 4e6
    # Who changed it: the admin token, in the audit log (not "system").
    events = m.AuditEvent.objects.filter(object_type="budget").order_by("pk")
    assert [e.action for e in events] == ["budget.create", "budget.update"]
    assert {e.actor_token.scope for e in events} == {"admin"}
    assert all(e.actor_label.startswith("token ") for e in events)
    overlap = world.client("admin").post(
        "/api/v1/budgets/", {**body, "period_start": "2026-12-15", "period_end": "2027-01-15"}, format="json"
    )
    assert problem_fields(overlap) == ["period_start"]
    backwards = world.client("admin").post("/api/v1/budgets/", {**body, "period_end": "2026-11-01"}, format="json")
    assert problem_fields(backwards) == ["period_end"]
    foreign = world.client("other_admin").post("/api/v1/budgets/", {**body, "team": "llm"}, format="json")
    assert problem_fields(foreign) == ["team"]
    assert m.CarbonBudget.objects.count() == 1


def test_list_active_filter(world):
    _budget(world)
    client = world.client("admin")
    assert client.get("/api/v1/budgets/", {"team": "recsys"}).json()["count"] == 1
    assert problem_fields(client.get("/api/v1/budgets/", {"active": "maybe"})) == ["active"]
