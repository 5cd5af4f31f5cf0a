"""The monthly report through the API: the figures as JSON and the files (HTML, PDF, CSV,
Parquet), scoped by the token as every endpoint; another team's jobs never appear."""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
import pytest
from django.db.models import Sum
from django.test import Client

from accounting import models as m
from accounting.tokens import token_create

from .report_world import MONTH, TODAY, report_world

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/2026-10/"


@pytest.fixture
def w(monkeypatch):
    import datetime as dt

    from django.utils import timezone

    world = report_world()
    monkeypatch.setattr(timezone, "now", lambda: dt.datetime.combine(TODAY, dt.time(6), tzinfo=dt.UTC))
    return world


def _client(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


@pytest.fixture
def clients(w):
    return {
        "admin": _client(token_create(org=w.org, name="adm", scope="admin").secret),
        "alpha": _client(token_create(org=w.org, name="a", scope="user", user=w.member).secret),
        "beta": _client(token_create(org=w.org, name="b", scope="user", user=w.beta_member).secret),
        "gamma": _client(token_create(org=w.other_org, name="g", scope="user", user=w.outsider).secret),
    }


def test_json_figures_equal_the_ledger_for_the_org_and_a_team(w, clients):
    body = clients["admin"].get(URL).json()
    ledger = m.TeamDay.objects.filter(org=w.org, day__gte=MONTH).aggregate(
        e=Sum("energy_j"), op=Sum("co2e_operational_g")
    )
    assert body["scope_label"] == "Whole organisation" and body["month"] == "2026-10" and body["partial"] is False
    assert (body["totals"]["energy_j"], body["totals"]["co2e_operational_g"]) == (ledger["e"], ledger["op"])
    assert body["overhead"]["energy_j"] > 0 and body["overhead_policy"] == "separate"
    assert [t["label"] for t in body["by_team"]] == ["Alpha", "Beta", "Fleet overhead (unallocated)"]
    assert [r["kind"] for r in body["recommendations"]] == ["zone_move", "power_cap", "consolidate_idle"]
    assert body["vs_last_year"]["change"] == {"change_pct": None, "reason": "no comparable data"}
    assert body["dashboard_url"] == "http://testserver/reports/2026-10/"
    team = clients["admin"].get(URL, {"team": "alpha"}).json()
    alpha = m.TeamDay.objects.filter(team=w.alpha, day__gte=MONTH).aggregate(e=Sum("energy_j"))
    assert team["totals"]["energy_j"] == alpha["e"] and team["overhead"] is None
    assert team["dashboard_url"] == f"http://testserver/reports/2026-10/?team={w.alpha.pk}"


def test_a_member_sees_only_its_team_and_never_another_teams_jobs(w, clients):
    body = clients["alpha"].get(URL).json()
    assert body["scope_label"] == "All your teams" and body["overhead"] is None
    assert {j["name"] for j in body["top_jobs"]} == {"llm-pretrain", "chat-serving"}
    assert [t["label"] for t in body["by_team"]] == ["Alpha"]
    for path in ("", "report.html", "jobs.csv"):
        text = clients["alpha"].get(URL + path).content.decode()
        assert "recsys-train" not in text and "gamma-secret" not in text
    assert clients["alpha"].get(URL, {"team": "beta"}).status_code == 400
    gamma = clients["gamma"].get(URL)
    assert (
        gamma.json()["totals"]["energy_j"] == m.TeamDay.objects.filter(team=w.gamma).aggregate(e=Sum("energy_j"))["e"]
    )
    assert "llm-pretrain" not in gamma.content.decode()
    refused = clients["gamma"].get(URL, {"team": "alpha"})
    assert refused.status_code == 400 and refused["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in refused.json()["errors"]] == ["team"]


def test_files_html_pdf_csv_parquet(w, clients):
    html = clients["alpha"].get(URL + "report.html", {"team": "alpha"})
    assert html.status_code == 200 and html["Content-Type"] == "text/html; charset=utf-8"
    assert html["Content-Disposition"] == f'attachment; filename="carbonledger-report-2026-10-team-{w.alpha.pk}.html"'
    assert b"Carbon and energy report" in html.content and b"data:image/png;base64," in html.content
    inline = clients["alpha"].get(URL + "report.html", {"team": "alpha", "inline": "1"})
    assert inline["Content-Disposition"].startswith("inline;")
    pdf = clients["alpha"].get(URL + "report.pdf", {"team": "alpha"})
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    rows = list(csv.reader(io.StringIO(clients["alpha"].get(URL + "jobs.csv").content.decode())))
    name = rows[0].index("name") if "name" in rows[0] else None
    assert len(rows) == 1 + 3
    if name is not None:
        assert sorted(r[name] for r in rows[1:]) == ["chat-serving", "llm-pretrain", "llm-pretrain"]
    parquet = clients["alpha"].get(URL + "ledger.parquet")
    assert parquet["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    hours = m.JobHour.objects.filter(job__team=w.alpha).aggregate(n=Sum("held_s"), e=Sum("energy_j"))
    assert table.num_rows == m.JobHour.objects.filter(job__team=w.alpha).count()
    assert sum(table.column("energy_j").to_pylist()) == pytest.approx(hours["e"], rel=1e-12)
    assert set(table.column("team").to_pylist()) == {"alpha"}
    admin = pq.read_table(io.BytesIO(b"".join(clients["admin"].get(URL + "ledger.parquet").streaming_content)))
    assert set(admin.column("team").to_pylist()) == {"alpha", "beta"}


def test_rejected_requests(w, clients):
    for path in (
        "/api/v1/reports/2026-13/",
        "/api/v1/reports/oct-2026/",
        "/api/v1/reports/2026-1/",
        "/api/v1/reports/1999-12/report.pdf",
    ):
        response = clients["admin"].get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json", path
    future = clients["admin"].get("/api/v1/reports/2026-12/")
    assert future.status_code == 400 and [e["field"] for e in future.json()["errors"]] == ["month"]
    assert Client().get(URL).status_code == 401
    host = token_create(org=w.org, name="h", scope="host", host=m.Host.objects.get(hostname="a1")).secret
    assert _client(host).get(URL).status_code == 403
