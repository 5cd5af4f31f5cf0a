"""HTML (mail and page), plain text and PDF of a monthly report."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import asdict
from typing import Any

from django.template.loader import render_to_string

from accounting.domain.units import kg_from_g, kwh_from_j
from accounting.reports.charts import CID_ENERGY, CID_FAMILY, report_charts
from accounting.selectors.reports import BreakdownRow, ChangeVs, MonthReport

try:  # B1's disclosure figures (market-based Scope 2, water) where that module exists
    from accounting.selectors import disclosure as _disclosure
except ImportError:  # pragma: no cover - depends on the deployment's version
    _disclosure = None  # type: ignore[assignment]


def _change_text(c: ChangeVs) -> str:
    if c.change.change_pct is None:
        return f"{c.change.reason} ({c.label})"
    arrow = "up" if c.change.change_pct > 0 else "down"
    last = c.period_end - dt.timedelta(days=1)
    return f"{arrow} {abs(c.change.change_pct):.1f} % vs {c.label} ({c.period_start:%-d %b} – {last:%-d %b %Y})"


def _context(report: MonthReport, *, dashboard_url: str = "", images: dict[str, str] | None = None) -> dict[str, Any]:
    t = report.totals
    kwh = kwh_from_j
    kg = kg_from_g
    return {
        "r": report,
        "dashboard_url": dashboard_url,
        "img": images or {},
        "energy_kwh": kwh(t.energy_j),
        "op_kg": kg(t.co2e_operational_g),
        "emb_kg": kg(t.co2e_embodied_g),
        "co2_kg": kg(t.co2e_g),
        "upstream_kg": kg(t.co2e_upstream_g),
        "low_kg": kg(report.quality.co2e_low_g),
        "high_kg": kg(report.quality.co2e_high_g),
        "split": [
            ("GPU active", kwh(report.energy_split.gpu_active_j)),
            ("GPU idle baseline (reserved, unused)", kwh(report.energy_split.gpu_idle_j)),
            ("Host CPU and memory", kwh(report.energy_split.host_j)),
            ("Facility overhead (cooling, power conversion)", kwh(report.energy_split.facility_j)),
        ],
        "vs_prev": _change_text(report.vs_previous),
        "vs_year": _change_text(report.vs_last_year),
        "lost_kwh": kwh(report.lost_energy_j),
        "idle_pct": None if report.idle_allocated_share is None else report.idle_allocated_share * 100.0,
        "measured_pct": None if report.quality.measured_share is None else report.quality.measured_share * 100.0,
        "overhead_kwh": kwh(report.overhead.energy_j) if report.overhead else None,
        "overhead_kg": kg(report.overhead.co2e_g) if report.overhead else None,
        "not_measured_pct": None
        if report.quality.measured_share is None
        else (1.0 - report.quality.measured_share) * 100.0,
        "disclosure": _disclosure_figures(report),
        "img_energy": (images or {}).get(CID_ENERGY),
        "img_family": (images or {}).get(CID_FAMILY),
        "families": [_row(f) for f in report.by_family],
        "devices": [_row(f) for f in report.by_device_model],
        "teams": [_row(f) for f in report.by_team],
        "top_jobs": [{**asdict(j), "energy_kwh": kwh(j.energy_j), "co2e_kg": kg(j.co2e_g)} for j in report.top_jobs],
        "sites": [
            {**asdict(x), "energy_kwh": kwh(x.energy_j), "op_kg": kg(x.co2e_operational_g)} for x in report.by_site
        ],
        "budgets": [
            {"team": b.team, "budget_kg": kg(b.budget_g), "used_kg": kg(b.used_g), "used_pct": b.used_share * 100.0}
            for b in report.budgets
        ],
    }


def _row(f: BreakdownRow) -> dict[str, Any]:
    return {"label": f.label, "jobs": f.jobs, "energy_kwh": kwh_from_j(f.energy_j), "co2e_kg": kg_from_g(f.co2e_g)}


def _disclosure_figures(report: MonthReport) -> dict[str, Any] | None:
    fn = getattr(_disclosure, "period_disclosure", None) if _disclosure else None
    if fn is None or report.org_id is None:
        return None
    try:
        return dict(fn(org_id=report.org_id, team_id=report.team_id, start=report.month, end=report.period_end))
    except TypeError:
        return None


def report_html(report: MonthReport, *, for_email: bool, dashboard_url: str = "") -> str:
    """The report as HTML. For e-mail, charts are ``cid:`` references to inline parts; for a
    page or the PDF they are embedded as data URIs."""
    if for_email:
        images = {cid: f"cid:{cid}" for cid in (CID_ENERGY, CID_FAMILY)}
    else:
        images = {
            cid: "data:image/png;base64," + base64.b64encode(png).decode() for cid, png in report_charts(report).items()
        }
    return render_to_string("reports/month.html", _context(report, dashboard_url=dashboard_url, images=images))


def report_text(report: MonthReport, *, dashboard_url: str = "") -> str:
    return render_to_string("reports/month.txt", _context(report, dashboard_url=dashboard_url))


def report_pdf(report: MonthReport, *, dashboard_url: str = "") -> bytes:
    from weasyprint import HTML  # heavy import: only when a PDF is asked for

    pdf = HTML(string=report_html(report, for_email=False, dashboard_url=dashboard_url)).write_pdf()
    return bytes(pdf or b"")
