"""The rough edges of issue 17 as a reader meets them: each page shows what it computed."""

from __future__ import annotations

import datetime as dt
import re

import pytest

pytestmark = pytest.mark.django_db


def _selected(html: str, name: str) -> list[str]:
    select = re.search(rf'<select[^>]* name="{name}"[^>]*>(.*?)</select>', html, re.S)
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


def test_per_unit_figures_read_the_same_on_the_list_and_the_job_page(client, world, frozen_now):
    client.force_login(world.member)
    listing = client.get("/jobs/?sort=name").content.decode()
    # alpha-train: 410 kg over 2e9 tokens = 0.000205 g per token = 0.205 g per 1k tokens, on both pages
    assert re.search(r"0\.205\s*<span class=\"muted small\">g / 1k tokens</span>", listing)
    detail = client.get(f"/jobs/{world.j1.pk}/").content.decode()
    assert "per 1k tokens" in detail


def test_a_unit_at_its_own_scale_reads_singular(world):
    from accounting.selectors.dashboard.common import unit_rate

    assert unit_rate(3.2, "steps") == (3.2, "step")
    assert unit_rate(4.0, "queries") == (4.0, "query")
    assert unit_rate(0.000205, "tokens") == (pytest.approx(0.205), "1k tokens")
    m = world.j1
    m.units = {"steps": 100.0}
    m.primary_unit = "steps"
    m.save()
    from accounting.selectors import dashboard as sel

    [eff] = sel.job_detail_get(scope=sel.viewer_scope_get(user=world.member), job_id=m.pk)["efficiency"]
    assert eff.per_label == "step" and eff.co2e_g_per == pytest.approx(4100.0)


def test_job_page_reads_metadata_and_intensity_as_people_do(client, world, frozen_now):
    job = world.j1
    job.model_meta = {"parameters": 1300000000.0, "context_tokens": 4096.0, "precision": "bf16", "avg_util": 0.9}
    job.save()
    client.force_login(world.member)
    html = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "<dt>parameters</dt><dd>1.3 billion</dd>" in html and "1300000000" not in html
    assert "<dt>context tokens</dt><dd>4,096</dd>" in html and "<dt>avg util</dt><dd>0.9</dd>" in html
    # 400 kg over 1000 kWh drawn: the job's hours averaged 400 g/kWh (beside the zone's annual 400)
    assert '<span id="job-avg-intensity">400</span>' in html


def test_budget_period_shows_its_last_day_not_the_exclusive_end(client, world, frozen_now):
    from accounting import models as m

    m.CarbonBudget.objects.create(
        team=world.t1, period_start=dt.date(2026, 3, 1), period_end=dt.date(2026, 4, 1), co2e_budget_g=1_000_000
    )
    client.force_login(world.member)
    html = client.get("/budgets/").content.decode()
    assert "1 Mar – 31 Mar 2026" in html and "1 Apr 2026" not in html


def test_whatif_panel_starts_from_the_jobs_own_device(client, world, frozen_now):
    client.force_login(world.member)
    html = client.get(f"/jobs/{world.j1.pk}/").content.decode()
    assert _selected(html, "target_key") == ["h100-sxm5-80gb"]
    assert "NVIDIA H100 SXM5 80GB (this job's)</option>" in html


def test_job_page_says_what_the_gpu_readings_covered(client, world, frozen_now):
    """docs/method.md §2: a quarter of alpha-train's GPU energy from Grace Hopper module counters."""
    fp = world.j1.footprint
    fp.covers_gpu_energy_j = fp.gpu_energy_j * 0.75
    fp.covers_gpu_cpu_memory_energy_j = fp.gpu_energy_j * 0.25
    fp.save()
    client.force_login(world.member)
    html = client.get(f"/jobs/{world.j1.pk}/").content.decode()
    assert (
        '<div class="sub" id="counter-coverage">GPU readings cover: 75% the GPU alone, '
        "25% GPU + CPU + memory (module counter; host CPU not added)</div>"
    ) in html
    fp.covers_gpu_energy_j = 0.0
    fp.covers_gpu_cpu_memory_energy_j = fp.gpu_energy_j
    fp.save()
    html = client.get(f"/jobs/{world.j1.pk}/").content.decode()
    assert "GPU readings cover GPU + CPU + memory (module counter; host CPU not added)</div>" in html
    # A ledger from before coverage was recorded: nothing claimed.
    fp.covers_gpu_cpu_memory_energy_j = 0.0
    fp.save()
    assert 'id="counter-coverage"' not in client.get(f"/jobs/{world.j1.pk}/").content.decode()


def test_overview_statement_says_what_part_of_the_period_it_covers(client, world, frozen_now):
    """The statement card is built from the ledger's hourly records; days known only as daily
    totals (this world's TeamDay rows, like seeded or imported history) are not in it. Beside
    cards that count them, it says how much of the period's energy it covers instead of showing
    a much smaller Scope 2 figure without a word."""
    client.force_login(world.admin)
    resp = client.get("/")
    html = resp.content.decode()
    statement, kpis = resp.context["disclosure"], resp.context["data"].kpis
    assert statement.energy_kwh < kpis.energy_kwh * 0.99
    note = re.search(r'<div class="alert info small" id="period-coverage">(.*?)</div>', html, re.S)
    assert note and "built from the ledger's hourly records" in note.group(1)
