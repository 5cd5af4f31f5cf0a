"""Every page, JSON endpoint and export applies the viewer's scope: members see their teams,
org admins their organisation (incl. the fleet-overhead account), superusers everything."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from accounting import models as m

from .conftest import NOW

PAGES = [
    "dashboard:overview",
    "dashboard:sites",
    "dashboard:devices",
    "dashboard:jobs",
    "dashboard:jobs-export",
    "dashboard:live",
    "dashboard:live-data",
    "dashboard:tradeoffs",
    "dashboard:planner",
    "dashboard:budgets",
    "dashboard:methodology",
    "dashboard:reports",
]


def _login(client, user):
    client.force_login(user)
    return client


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_anonymous_is_sent_to_login(client, name):
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.django_db
def test_anonymous_job_detail_and_report_are_sent_to_login(client, world):
    for url in (reverse("dashboard:job-detail", args=[world.j1.pk]), "/reports/2026-03/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_for_a_member(client, world, frozen_now, name):
    response = _login(client, world.member).get(reverse(name))
    assert response.status_code == 200


def test_login_page_is_styled_and_logs_in(client, world):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"dashboard/app.css" in page.content and b"Sign in" in page.content
    response = client.post("/accounts/login/", {"username": "member", "password": "correct-horse-battery"})
    assert response.status_code == 302 and response["Location"] == "/"
    bad = client.post("/accounts/login/", {"username": "member", "password": "wrong"})
    assert b"didn't match" in bad.content and bad.status_code == 200


def _job_names(client, user, query: str = "") -> list[str]:
    response = _login(client, user).get(reverse("dashboard:jobs") + query)
    return [row.name for row in response.context["page"].rows]


def test_jobs_list_is_scoped(client, world, frozen_now):
    assert sorted(_job_names(client, world.member)) == ["alpha-live", "alpha-train"]
    assert sorted(_job_names(client, world.admin)) == ["alpha-live", "alpha-train", "beta-failed"]
    assert sorted(_job_names(client, world.superuser)) == ["alpha-live", "alpha-train", "beta-failed", "gamma-secret"]
    assert _job_names(client, world.outsider) == ["gamma-secret"]


def test_jobs_list_team_filter_cannot_widen_scope(client, world, frozen_now):
    # A member asking for another team's id gets an invalid form and still only their own jobs.
    assert sorted(_job_names(client, world.member, f"?team={world.t2.pk}")) == ["alpha-live", "alpha-train"]
    assert _job_names(client, world.admin, f"?team={world.t2.pk}") == ["beta-failed"]


def test_csv_export_is_scoped_and_exact(client, world, frozen_now):
    rows = _csv(_login(client, world.member).get(reverse("dashboard:jobs-export") + "?sort=name"))
    assert rows[0] == [
        "id",
        "scheduler_job_id",
        "name",
        "team",
        "username",
        "family",
        "kind",
        "status",
        "started_at",
        "ended_at",
        "duration_h",
        "device_hours",
        "energy_kwh",
        "co2e_kg",
        "co2e_operational_kg",
        "co2e_embodied_kg",
        "site",
        "zone",
        "co2e_per_unit_g",
        "primary_unit",
        "measured_fraction",
    ]
    assert [r[2] for r in rows[1:]] == ["alpha-live", "alpha-train"]
    j1 = rows[2]
    assert j1 == [
        str(world.j1.pk),
        "1001",
        "alpha-train",
        "Alpha",
        "ana",
        "llm",
        "training",
        "completed",
        "2026-03-18T08:00:00+00:00",
        "2026-03-18T12:00:00+00:00",
        "4.0",
        "8.0",
        "1000.0",
        "410.0",
        "400.0",
        "10.0",
        "Site A",
        "ZZ-TEST",
        "0.000205",
        "tokens",
        "1.0",
    ]
    admin_rows = _csv(_login(client, world.admin).get(reverse("dashboard:jobs-export")))
    assert sorted(r[2] for r in admin_rows[1:]) == ["alpha-live", "alpha-train", "beta-failed"]
    outsider_rows = _csv(_login(client, world.outsider).get(reverse("dashboard:jobs-export")))
    assert [r[2] for r in outsider_rows[1:]] == ["gamma-secret"]


@pytest.mark.parametrize(
    ("viewer", "visible"),
    [
        ("member", {"j1", "running"}),
        ("admin", {"j1", "j2", "running"}),
        ("superuser", {"j1", "j2", "j3", "running"}),
        ("outsider", {"j3"}),
    ],
)
def test_job_detail_is_scoped(client, world, frozen_now, viewer, visible):
    _login(client, getattr(world, viewer))
    for key in ("j1", "j2", "j3", "running"):
        response = client.get(reverse("dashboard:job-detail", args=[getattr(world, key).pk]))
        assert response.status_code == (200 if key in visible else 404), key


@pytest.mark.parametrize(
    ("viewer", "running"),
    [("member", ["alpha-live"]), ("admin", ["alpha-live"]), ("outsider", []), ("superuser", ["alpha-live"])],
)
def test_live_json_is_scoped(client, world, frozen_now, viewer, running):
    data = _login(client, getattr(world, viewer)).get(reverse("dashboard:live-data")).json()
    assert [j["name"] for j in data["jobs"]] == running
    assert data["running"] == len(running)
    if running:
        job = data["jobs"][0]
        assert (job["energy_kwh"], job["co2e_kg"], job["elapsed_h"], job["avg_power_kw"]) == (36.0, 14.6, 2.0, 18.0)


def test_overview_member_sees_own_team_without_overhead(client, world, frozen_now):
    k = _login(client, world.member).get("/?period=7d").context["data"].kpis
    assert k.energy_kwh == pytest.approx(1000.0)
    assert k.co2e_kg == pytest.approx(410.0)
    assert k.overhead_share is None
    assert k.idle_share == pytest.approx(0.1)
    # the previous week carries data on 1 of its 7 days: no percentage, the reason instead
    assert k.energy_change_pct is None and k.change_reason == "no comparable data (previous period mostly empty)"
    assert k.lost_energy_kwh == 0.0


def test_overview_admin_sees_org_with_overhead_and_not_other_org(client, world, frozen_now):
    response = _login(client, world.admin).get("/?period=7d")
    data = response.context["data"]
    k = data.kpis
    assert k.energy_kwh == pytest.approx(1800.0)
    assert k.co2e_kg == pytest.approx(738.0)
    assert k.overhead_share == pytest.approx(300 / 1800)
    assert k.idle_share == pytest.approx(450 / 1800)
    assert k.lost_energy_kwh == pytest.approx(500.0)
    assert k.lost_co2e_kg == pytest.approx(205.0)
    assert [g.name for g in data.groups] == ["Alpha", "Beta", "Fleet overhead (unallocated)"]
    assert b"gamma-secret" not in response.content and b"Gamma" not in response.content


def test_overview_superuser_sees_all_orgs(client, world, frozen_now):
    k = _login(client, world.superuser).get("/?period=7d").context["data"].kpis
    assert k.energy_kwh == pytest.approx(2700.0)


def test_sites_and_devices_are_scoped(client, world, frozen_now):
    member_sites = _login(client, world.member).get("/sites/?period=7d").context["data"]
    assert [s.name for s in member_sites.sites] == ["Site A"]
    assert member_sites.sites[0].energy_kwh == pytest.approx(1000.0)  # own team only, no overhead
    admin_sites = _login(client, world.admin).get("/sites/?period=7d").context["data"]
    assert admin_sites.sites[0].energy_kwh == pytest.approx(1800.0)
    out_sites = _login(client, world.outsider).get("/sites/?period=7d").context["data"]
    assert [s.name for s in out_sites.sites] == ["Site G"]
    member_dev = _login(client, world.member).get("/devices/?period=7d").context["data"]
    assert member_dev.devices_total == 2 and not member_dev.fleet_scope
    out_dev = _login(client, world.outsider).get("/devices/?period=7d").context["data"]
    assert [h.name for h in out_dev.hosts] == ["node-g1"]


def test_reports_are_scoped(client, world, frozen_now):
    member = _login(client, world.member).get("/reports/").context["months"]
    assert [(r["month"].isoformat(), r["energy_kwh"]) for r in member] == [("2026-03-01", pytest.approx(1800.0))]
    admin = _login(client, world.admin).get("/reports/").context["months"]
    assert admin[0]["energy_kwh"] == pytest.approx(2600.0)
    page = _login(client, world.member).get("/reports/2026-03/")
    assert [t["team"] for t in page.context["data"]["teams"]] == ["Alpha"]
    assert _login(client, world.member).get(f"/reports/2026-03/?team={world.t2.pk}").status_code == 404
    admin_page = _login(client, world.admin).get("/reports/2026-03/").context["data"]
    assert [t["team"] for t in admin_page["teams"]] == ["Alpha", "Beta", "Fleet overhead (unallocated)"]


def test_budgets_are_scoped(client, world, frozen_now):
    m.CarbonBudget.objects.create(
        team=world.t1,
        period_start=NOW.date().replace(day=1),
        period_end=NOW.date().replace(month=4, day=1),
        co2e_budget_g=1_000_000,
    )
    m.CarbonBudget.objects.create(
        team=world.t3,
        period_start=NOW.date().replace(day=1),
        period_end=NOW.date().replace(month=4, day=1),
        co2e_budget_g=1_000_000,
    )
    rows = _login(client, world.member).get("/budgets/").context["rows"]
    assert [r.team for r in rows] == ["Alpha"]
    rows = _login(client, world.admin).get("/budgets/").context["rows"]
    assert sorted(r.team for r in rows) == ["Alpha", "Beta"]


def test_methodology_lists_only_own_org_factors(client, world, frozen_now):
    data = _login(client, world.outsider).get("/methodology/").context["data"]
    assert data["orgs"] == ["Globex"]
    assert [v for v, _n in data["method_versions"]] == ["test-1"]
    assert dict(data["method_versions"]) == {"test-1": 1}


def test_user_without_membership_sees_nothing(client, world, frozen_now):
    from tests.factories import UserFactory

    nobody = UserFactory(username="nobody")
    assert _job_names(client, nobody) == []
    assert _login(client, nobody).get("/?period=7d").context["data"].kpis.energy_kwh == 0.0
    assert _login(client, nobody).get(reverse("dashboard:live-data")).json()["jobs"] == []
    assert _csv(_login(client, nobody).get(reverse("dashboard:jobs-export")))[1:] == []


def test_bad_page_and_budget_date_are_named_not_silently_replaced(client, world, frozen_now):
    """A query parameter outside the filter forms that cannot be read is named on the page (as
    an invalid filter is), and the page says what it shows instead (issue 19)."""
    c = _login(client, world.member)
    r = c.get("/jobs/?page=abc")
    assert r.status_code == 200
    assert r.context["ignored_filters"] == [
        {"label": "Page", "value": "abc", "message": "not a page number; page 1 is shown."}
    ]
    assert b'id="ignored-filters"' in r.content
    r = c.get("/budgets/?on=2026-13-45")
    assert r.status_code == 200
    assert r.context["ignored_filters"] == [
        {"label": "On", "value": "2026-13-45", "message": "not a date (YYYY-MM-DD); today is shown."}
    ]
    assert r.context["on"] == NOW.date()
    # Good values: no message.
    assert "ignored_filters" not in c.get("/jobs/?page=1").context
    assert "ignored_filters" not in c.get("/budgets/?on=2026-03-01").context
