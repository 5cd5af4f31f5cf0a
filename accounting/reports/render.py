"""HTML (mail and page), plain text and PDF of a monthly report."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import math
from dataclasses import asdict
from typing import Any

from django.template.loader import render_to_string

from accounting.domain.units import J_PER_KWH, kg_from_g, kwh_from_j
from accounting.reports.charts import CID_ENERGY, CID_FAMILY, report_charts
from accounting.reports.recommendations import report_recommendations
from accounting.selectors.reports import BreakdownRow, ChangeVs, MonthReport

QUALITY_TEXT = {
    "measured": "measured by the GPU's or CPU's energy counter",
    "integrated": "integrated from power readings",
    "interpolated": "interpolated over short gaps in the readings",
    "modelled": "modelled (no sensor: rated power x load)",
}
BASIS_TEXT = {"direct": "direct (generation)", "lifecycle": "life-cycle (incl. upstream)"}
GASES_TEXT = {"co2e": "CO₂e (CO₂, CH₄, N₂O)", "co2": "CO₂ only"}
POLICY_TEXT = {
    "separate": "kept as its own line and not redistributed to teams: team figures exclude it",
    "pro_rata": "redistributed to teams pro rata to their energy: each team's share is shown beside its "
    "own figures, which exclude it",
}


def _change_text(c: ChangeVs) -> str:
    if c.change.change_pct is None:
        return f"{c.change.reason} ({c.label})"
    arrow = "up" if c.change.change_pct > 0 else "down"
    last = c.period_end - dt.timedelta(days=1)
    return f"{arrow} {abs(c.change.change_pct):.1f} % vs {c.label} ({c.period_start:%-d %b} – {last:%-d %b %Y})"


def _disclosure_figures(report: MonthReport) -> dict[str, Any] | None:
    """Market-based Scope 2 and water from accounting.selectors.disclosure, each with its basis,
    or ``None`` in a slot that is not configured (no instruments or residual mix; no WUE or
    grid water intensity), so the statement says so instead of printing a number."""
    d = report.disclosure
    if d is None:
        return None
    if not math.isclose(d.energy_kwh * J_PER_KWH, report.totals.energy_j, rel_tol=1e-9, abs_tol=1e-3):
        # The hourly aggregates the disclosure reads do not hold this period's energy (history
        # loaded as daily aggregates only): its figures would not be the report's.
        return {"available": False}
    market = d.market
    market_configured = market.covered_kwh > 0 or any("no residual mix" not in n for n in market.residual_sources)
    water = d.water
    n_sites = len(report.by_site)
    onsite_configured = n_sites > len(water.sites_without_wue)
    offsite_configured = len({s.zone for s in report.by_site}) > len(water.zones_without_water)
    return {
        "available": True,
        "lifecycle_only": d.location_basis.lifecycle_share >= 1.0 - 1e-9,
        "location_kg": kg_from_g(d.location_based_g),
        "location_label": d.labels.get("location_based", ""),
        "basis": d.location_basis.label,
        "upstream_kg": kg_from_g(d.upstream_g),
        "upstream_label": d.labels.get("upstream", ""),
        "market_kg": kg_from_g(market.co2e_g) if market_configured else None,
        "market_label": d.labels.get("market_based", ""),
        "market_matching": market.matching,
        "market_covered_kwh": market.covered_kwh,
        "market_residual_kwh": market.residual_kwh,
        "market_sources": market.residual_sources,
        "market_version": market.method_version,
        "water_onsite_l": water.onsite_l if onsite_configured else None,
        "water_offsite_l": water.offsite_l if offsite_configured else None,
        "water_low_l": water.low_l,
        "water_high_l": water.high_l,
        "water_label": d.labels.get("water", ""),
        "water_version": water.method_version,
        "sites_without_wue": water.sites_without_wue,
        "zones_without_water": water.zones_without_water,
    }


def report_context(report: MonthReport, *, dashboard_url: str = "") -> dict[str, Any]:
    """The templates' context of ``report`` (figures, tables, the recommendations from the
    what-if engine): computed once per report and shared by its text, HTML and PDF."""
    t = report.totals
    kwh = kwh_from_j
    kg = kg_from_g
    share = report.overhead_share
    return {
        "r": report,
        "dashboard_url": dashboard_url,
        "energy_kwh": kwh(t.energy_j),
        "op_kg": kg(t.co2e_operational_g),
        "emb_kg": kg(t.co2e_embodied_g),
        "co2_kg": kg(t.co2e_g),
        "upstream_kg": kg(t.co2e_upstream_g),
        "low_kg": kg(report.quality.co2e_low_g),
        "high_kg": kg(report.quality.co2e_high_g),
        "split": [
            ("GPU active (doing work)", kwh(report.energy_split.gpu_active_j)),
            ("GPU idle baseline (reserved GPUs' standby power)", kwh(report.energy_split.gpu_idle_j)),
            ("Host CPU and memory", kwh(report.energy_split.host_j)),
            ("Facility overhead (cooling, power conversion)", kwh(report.energy_split.facility_j)),
        ],
        "vs_prev": _change_text(report.vs_previous),
        "vs_year": _change_text(report.vs_last_year),
        "lost_kwh": kwh(report.lost_energy_j),
        "idle_pct": None if report.idle_allocated_share is None else report.idle_allocated_share * 100.0,
        "measured_pct": None if report.quality.measured_share is None else report.quality.measured_share * 100.0,
        "quality": [{"label": q, "text": QUALITY_TEXT[q], "pct": v * 100.0} for q, v in report.quality.energy_shares],
        "overhead_kwh": kwh(report.overhead.energy_j) if report.overhead else None,
        "overhead_kg": kg(report.overhead.co2e_g) if report.overhead else None,
        "overhead_share_kwh": kwh(share.energy_j) if share else None,
        "overhead_share_kg": kg(share.co2e_g) if share else None,
        "policy_text": POLICY_TEXT.get(report.overhead_policy, report.overhead_policy),
        "disclosure": _disclosure_figures(report),
        # Quality shares, factors and the band come from the period's ledger entries; a period
        # known only from aggregates (imported history) has none: the report says so.
        "entries_missing": not report.quality.energy_shares and t.energy_j > 0,
        "families": [_row(f) for f in report.by_family],
        "devices": [_row(f) for f in report.by_device_model],
        "teams": [_row(f) for f in report.by_team],
        "top_jobs": [{**asdict(j), "energy_kwh": kwh(j.energy_j), "co2e_kg": kg(j.co2e_g)} for j in report.top_jobs],
        "least": [
            {**asdict(j), "per_unit_g": j.co2e_per_shown_unit_g, "unit": j.unit_label} for j in report.least_efficient
        ],
        "sites": [
            {
                **asdict(x),
                "energy_kwh": kwh(x.energy_j),
                "op_kg": kg(x.co2e_operational_g),
                "emb_kg": kg(x.co2e_embodied_g),
            }
            for x in report.by_site
        ],
        "factors": [
            {
                **asdict(f),
                "energy_kwh": kwh(f.energy_j),
                "op_kg": kg(f.co2e_operational_g),
                "basis_label": BASIS_TEXT.get(f.basis, f.basis),
                "gases_label": GASES_TEXT.get(f.gases, f.gases),
            }
            for f in report.factors
        ],
        "budgets": [
            {"team": b.team, "budget_kg": kg(b.budget_g), "used_kg": kg(b.used_g), "used_pct": b.used_share * 100.0}
            for b in report.budgets
        ],
        "recommendations": report_recommendations(report),
    }


def _row(f: BreakdownRow) -> dict[str, Any]:
    return {
        "label": f.label,
        "jobs": f.jobs,
        "energy_kwh": kwh_from_j(f.energy_j),
        "co2e_kg": kg_from_g(f.co2e_g),
        "overhead_kwh": kwh_from_j(f.overhead_energy_j),
        "overhead_kg": kg_from_g(f.overhead_co2e_g),
    }


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def report_json(report: MonthReport, *, dashboard_url: str = "") -> dict[str, Any]:
    """The report's figures as JSON-ready data (units in the names: J, g, L, kWh where named),
    with the recommendations and the link to the dashboard month: what the API returns."""
    data = _jsonable(report)
    data["totals"]["co2e_g"] = report.totals.co2e_g
    data["month"] = f"{report.month:%Y-%m}"
    data["period_start"] = report.month.isoformat()
    data["recommendations"] = _jsonable(report_recommendations(report))
    data["dashboard_url"] = dashboard_url
    return data


def _data_uris(charts: dict[str, bytes]) -> dict[str, str]:
    return {cid: "data:image/png;base64," + base64.b64encode(png).decode() for cid, png in charts.items()}


def report_html(
    report: MonthReport,
    *,
    for_email: bool,
    dashboard_url: str = "",
    unsubscribe_url: str = "",
    charts: dict[str, bytes] | None = None,
    context: dict[str, Any] | None = None,
) -> str:
    """The report as HTML. For e-mail, charts are ``cid:`` references to inline parts; for a
    page or the PDF they are embedded as data URIs (``charts``: PNGs already drawn, else drawn
    here). ``context``: ``report_context`` already computed for this report."""
    if for_email:
        images = {cid: f"cid:{cid}" for cid in (CID_ENERGY, CID_FAMILY)}
    else:
        images = _data_uris(charts if charts is not None else report_charts(report))
    ctx = context if context is not None else report_context(report, dashboard_url=dashboard_url)
    return render_to_string(
        "reports/month.html",
        {
            **ctx,
            "img_energy": images.get(CID_ENERGY),
            "img_family": images.get(CID_FAMILY),
            "unsubscribe_url": unsubscribe_url if for_email else "",
        },
    )


def report_text(
    report: MonthReport, *, dashboard_url: str = "", unsubscribe_url: str = "", context: dict[str, Any] | None = None
) -> str:
    ctx = context if context is not None else report_context(report, dashboard_url=dashboard_url)
    return render_to_string("reports/month.txt", {**ctx, "unsubscribe_url": unsubscribe_url})


def report_pdf(
    report: MonthReport,
    *,
    dashboard_url: str = "",
    charts: dict[str, bytes] | None = None,
    context: dict[str, Any] | None = None,
) -> bytes:
    """The report as PDF (WeasyPrint), from the page HTML; ``charts`` and ``context`` as in
    ``report_html`` (the e-mail passes those it already has: nothing is drawn twice)."""
    from weasyprint import HTML  # heavy import: only when a PDF is asked for

    html = report_html(report, for_email=False, dashboard_url=dashboard_url, charts=charts, context=context)
    pdf = HTML(string=html).write_pdf(font_config=_font_config())
    return bytes(pdf or b"")


@functools.cache
def _font_config() -> Any:
    """One WeasyPrint font configuration per process, shared by every PDF it renders (the
    fonts a report uses are the same each time; setting them up is ~10 % of a PDF's CPU)."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()
