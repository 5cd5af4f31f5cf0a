"""Response headers of docs/security.md (CSP, Permissions-Policy, Cache-Control: no-store) and
invalid dashboard filters that are named on the page instead of silently dropping every filter."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounting.tokens import token_create
from dashboard.views import PLOTLY_VERSION

PAGES = [
    reverse("dashboard:overview"),
    reverse("dashboard:sites"),
    reverse("dashboard:devices"),
    reverse("dashboard:jobs"),
    reverse("dashboard:live"),
    reverse("dashboard:tradeoffs"),
    reverse("dashboard:planner"),
    reverse("dashboard:budgets"),
    reverse("dashboard:methodology"),
    reverse("dashboard:reports"),
]


def _csp(response) -> dict[str, list[str]]:
    directives = [d.strip().split() for d in response["Content-Security-Policy"].split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


@pytest.mark.parametrize("url", PAGES)
def test_authenticated_pages_send_csp_permissions_policy_and_no_store(client, world, frozen_now, url):
    client.force_login(world.admin)
    response = client.get(url)
    assert response.status_code == 200
    csp = _csp(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'; no nonce used
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"] and csp["form-action"] == ["'self'"]
    assert response["Permissions-Policy"].startswith("accelerometer=(), camera=()")
    assert response["Cache-Control"] == "no-store"
    # Every <script> is a file from this origin or a non-executable JSON data block.
    html = response.content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag


def test_csv_export_and_live_json_are_no_store(client, world, frozen_now):
    client.force_login(world.admin)
    export = client.get(reverse("dashboard:jobs-export"))
    assert export["Cache-Control"] == "no-store"
    b"".join(export.streaming_content)
    assert client.get(reverse("dashboard:live-data"))["Cache-Control"] == "no-store"


def test_api_data_is_no_store(client, world):
    secret = token_create(org=world.org, name="hdr", scope="admin").secret
    response = client.get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" in response and "Permissions-Policy" in response


def test_login_page_has_the_headers_and_plotly_keeps_its_long_cache(client, db):
    login = client.get("/accounts/login/")
    assert _csp(login)["script-src"] == ["'self'"]
    assert "no-store" in login["Cache-Control"]  # LoginView is never_cache already
    asset = client.get(reverse("dashboard:plotly-js", args=[PLOTLY_VERSION]))
    assert asset["Cache-Control"] == "public, max-age=31536000, immutable"


def test_api_docs_serve_no_inline_script(client, world):
    client.force_login(world.superuser)
    html = client.get("/api/docs/").content.decode()
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", html))


# --- invalid filters -----------------------------------------------------------------------


def test_invalid_job_filter_is_named_and_the_valid_ones_still_apply(client, world, frozen_now):
    client.force_login(world.admin)
    response = client.get(reverse("dashboard:jobs"), {"family": "recommender", "team": "99999"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="ignored-filters"' in html
    assert "Ignored filter <strong>Team</strong> (“99999”)" in html
    assert "The other filters are applied." in html
    names = [r.name for r in response.context["page"].rows]
    assert names == ["beta-failed"]  # the family filter held; before, every visible job was listed


def test_csv_export_keeps_the_valid_filters(client, world, frozen_now):
    client.force_login(world.admin)
    export = client.get(reverse("dashboard:jobs-export"), {"family": "recommender", "status": "bogus"})
    rows = b"".join(export.streaming_content).decode().strip().splitlines()
    assert len(rows) == 2 and "beta-failed" in rows[1]


def test_bad_custom_range_keeps_the_team_and_says_the_default_period_applies(client, world, frozen_now):
    client.force_login(world.admin)
    response = client.get(
        reverse("dashboard:overview"),
        {"period": "custom", "start": "2026-03-19", "end": "2026-03-01", "team": str(world.t2.pk)},
    )
    html = response.content.decode()
    assert "Ignored filter <strong>Period</strong>: The end date is before the start date." in html
    assert "The default period applies." in html
    assert [g.name for g in response.context["data"].groups if sum(g.energy_kwh)] == ["Beta"]


def test_valid_filters_show_no_message(client, world, frozen_now):
    client.force_login(world.admin)
    response = client.get(reverse("dashboard:jobs"), {"family": "llm"})
    assert 'id="ignored-filters"' not in response.content.decode()


def test_api_rejects_an_invalid_filter_with_400(client, world):
    secret = token_create(org=world.org, name="flt", scope="admin").secret
    response = client.get("/api/v1/jobs/", {"status": "bogus"}, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 400
    assert "status" in response.content.decode()
