"""Static PNG charts for the report (matplotlib, Agg backend: offline, no display)."""

from __future__ import annotations

import functools
import io
import weakref

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from accounting.domain.units import kwh_from_j
from accounting.selectors.reports import MonthReport

# Content-IDs the HTML refers to (<img src="cid:...">).
CID_ENERGY = "energy-split"
CID_FAMILY = "carbon-by-family"

_COLOURS = ("#2f6f4f", "#8fbf9f", "#6b7fa8", "#c9a66b", "#b05a5a", "#7a7a7a")


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _bar(labels: list[str], values: list[float], *, title: str, unit: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * max(len(labels), 2) + 0.9))
    ax.barh(labels[::-1], values[::-1], color=_COLOURS[0])
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(unit)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    top = max(values) if values else 0.0
    for i, v in enumerate(values[::-1]):
        ax.text(v + top * 0.01, i, f"{v:,.1f}", va="center", fontsize=9)
    ax.set_xlim(0, top * 1.18 if top > 0 else 1)
    return _png(fig)


def _forget(key: int, _ref: object) -> None:
    _CACHE.pop(key, None)


_CACHE: dict[int, tuple[weakref.ref[MonthReport], dict[str, bytes]]] = {}


def report_charts(report: MonthReport) -> dict[str, bytes]:
    """PNG bytes by Content-ID: the energy split and carbon by workload family. Drawn once per
    report object (the mail's inline images and its PDF share them)."""
    hit = _CACHE.get(id(report))
    if hit is not None and hit[0]() is report:
        return dict(hit[1])
    charts = _draw(report)
    key = id(report)
    _CACHE[key] = (weakref.ref(report, functools.partial(_forget, key)), charts)
    return dict(charts)


def _draw(report: MonthReport) -> dict[str, bytes]:
    s = report.energy_split
    parts = [
        ("GPU active", s.gpu_active_j),
        ("GPU idle (reserved)", s.gpu_idle_j),
        ("Host CPU & memory", s.host_j),
        ("Facility (cooling, power)", s.facility_j),
    ]
    charts = {
        CID_ENERGY: _bar(
            [p[0] for p in parts], [kwh_from_j(p[1]) for p in parts], title="Where the energy went", unit="kWh"
        )
    }
    fam = report.by_family[:6]
    charts[CID_FAMILY] = _bar(
        [f.label for f in fam] or ["no jobs"],
        [f.co2e_g / 1000.0 for f in fam] or [0.0],
        title="Carbon by workload",
        unit="kg CO₂e",
    )
    return charts
