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


WIDTH_IN = 6.0
DPI = 110
# Margins in inches. Fixed margins instead of savefig(bbox_inches="tight"), which draws every
# figure twice (once to measure, once to save): the chart costs one drawing pass. The left
# margin fits the longest bar label (10 pt labels: about 0.075 in a character).
_CHAR_IN = 0.075
_LEFT_PAD_IN, _RIGHT_IN, _TOP_IN, _BOTTOM_IN = 0.2, 0.25, 0.4, 0.55


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _bar(labels: list[str], values: list[float], *, title: str, unit: str) -> bytes:
    height_in = 0.45 * max(len(labels), 2) + 0.9
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height_in))
    left_in = _LEFT_PAD_IN + _CHAR_IN * max((len(x) for x in labels), default=1)
    fig.subplots_adjust(
        left=min(left_in / WIDTH_IN, 0.5),
        right=1.0 - _RIGHT_IN / WIDTH_IN,
        top=1.0 - _TOP_IN / height_in,
        bottom=_BOTTOM_IN / height_in,
    )
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
