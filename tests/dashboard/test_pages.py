"""The rough edges of issue 17 as a reader meets them: each page shows what it computed."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def _selected(html: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, name
    return re.findall(r'<option value="([^"]*)"[^>]*selected', select.group(1))


@pytest.mark.parametrize("query", ["", "?team=", "?period=30d", "?x=quality"])
def test_tradeoffs_form_shows_the_family_and_kind_the_chart_shows(client, world, frozen_now, query):
    client.force_login(world.admin)
    resp = client.get("/tradeoffs/" + query)
    html = resp.content.decode()
    assert resp.context["family_label"] == "LLM" and resp.context["kind_label"] == "Training"
    assert _selected(html, "family") == ["llm"] and _selected(html, "kind") == ["training"]
    assert _selected(html, "period") == (["30d"] if "30d" in query else ["90d"])


def test_overview_period_select_shows_the_default_when_only_a_team_is_given(client, world, frozen_now):
    client.force_login(world.admin)
    html = client.get(f"/?team={world.t1.pk}").content.decode()
    assert _selected(html, "period") == ["30d"] and _selected(html, "group_by") == ["team"]
