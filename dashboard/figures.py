"""Plotly figures for the dashboard, built from the plain data the selectors return.

Each builder returns the figure as a JSON string safe to embed in a <script type="application/json">
element, or None when there is nothing to draw (the template then shows the empty state).
Units are in every title and axis; hover text carries the detail.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Figures are plain dicts in plotly.js's figure schema (data + layout). Building them through
# plotly.graph_objects costs 10–40 ms per figure in validation and template deep-copies, which
# is most of a page's budget; plotly.js validates on the client anyway.

# Okabe–Ito, extended: distinguishable for the common colour-vision deficiencies.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#332288",
    "#88CCEE",
    "#117733",
    "#AA4499",
    "#44AA99",
]
OVERHEAD_COLOUR = "#9AA3AE"
FRONT_COLOUR = "#111827"
FONT = "Inter, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
GRID = "#e5e7eb"


def colour_for(index: int, name: str = "") -> str:
    if name.lower().startswith("fleet overhead"):
        return OVERHEAD_COLOUR
    return PALETTE[index % len(PALETTE)]


def _axis(title: str = "", **extra: Any) -> dict[str, Any]:
    axis = {
        "title": {"text": title},
        "gridcolor": GRID,
        "zerolinecolor": GRID,
        "linecolor": "#d1d5db",
        "automargin": True,
    }
    axis.update(extra)
    return axis


class Figure:
    """Minimal figure builder with the same shape as a plotly figure: ``data`` and ``layout``."""

    def __init__(self, *, title: str, height: int = 360, **layout: Any) -> None:
        self.data: list[dict[str, Any]] = []
        self.layout: dict[str, Any] = {
            "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
            "font": {"family": FONT, "size": 12, "color": "#1f2937"},
            "height": height,
            "margin": {"l": 64, "r": 24, "t": 56, "b": 64},
            "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff",
            "legend": {"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
            "hoverlabel": {"font": {"family": FONT}},
            "xaxis": _axis(),
            "yaxis": _axis(),
        }
        for key, value in layout.items():
            if isinstance(value, dict) and isinstance(self.layout.get(key), dict):
                self.layout[key] = {**self.layout[key], **value}
            else:
                self.layout[key] = value

    def add(self, trace_type: str, **trace: Any) -> Figure:
        self.data.append({"type": trace_type, **trace})
        return self

    def axis(self, name: str, title: str = "", **extra: Any) -> Figure:
        self.layout[name] = {**self.layout.get(name, _axis()), **_axis(title, **extra)}
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "layout": self.layout}


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json(fig: Figure) -> str:
    raw = json.dumps(fig.to_dict(), default=_default, separators=(",", ":"), allow_nan=False)
    # Same escaping as Django's json_script: the JSON can sit inside a <script> element.
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def energy_scale(max_kwh: float) -> tuple[float, str]:
    """Divisor and unit for an energy axis (kWh below 10 MWh, MWh above)."""
    return (1000.0, "MWh") if max_kwh >= 10_000 else (1.0, "kWh")


def mass_scale(max_kg: float) -> tuple[float, str]:
    return (1000.0, "tCO2e") if max_kg >= 10_000 else (1.0, "kgCO2e")


# --- overview ------------------------------------------------------------------------------


def stacked_daily_figure(
    *, days: Sequence[dt.date], groups: Sequence[Any], metric: str, title: str, group_label: str
) -> str | None:
    """Stacked bars per day of one metric (energy_kwh / co2e_operational_kg / co2e_embodied_kg)."""
    if not days or not groups or not any(any(getattr(g, metric)) for g in groups):
        return None
    totals = [sum(getattr(g, metric)[i] for g in groups) for i in range(len(days))]
    div, unit = energy_scale(max(totals)) if metric == "energy_kwh" else mass_scale(max(totals))
    fig = Figure(title=f"{title} ({unit}/day)", barmode="stack", bargap=0.15)
    x = list(days)
    for i, g in enumerate(groups):
        fig.add(
            "bar",
            x=x,
            y=[round(v / div, 6) for v in getattr(g, metric)],
            name=g.name,
            marker={"color": colour_for(i, g.name)},
            hovertemplate=f"%{{x|%d %b %Y}}<br>{group_label}: {g.name}<br>%{{y:,.2f}} {unit}<extra></extra>",
        )
    fig.axis("xaxis", "", type="date")
    fig.axis("yaxis", f"{unit} per day (UTC days)", rangemode="tozero")
    return to_json(fig)


def share_donut_figure(*, values: dict[str, float], title: str, unit: str) -> str | None:
    if not values or sum(values.values()) <= 0:
        return None
    labels = list(values)
    fig = Figure(
        title=f"{title} ({unit})", height=320, legend={"orientation": "v", "y": 0.5, "yanchor": "middle", "x": 1.02}
    )
    fig.add(
        "pie",
        labels=labels,
        values=[round(v, 6) for v in values.values()],
        hole=0.55,
        sort=False,
        marker={"colors": [colour_for(i, label) for i, label in enumerate(labels)]},
        textinfo="percent",
        hovertemplate=f"%{{label}}<br>%{{value:,.1f}} {unit} (%{{percent}})<extra></extra>",
    )
    return to_json(fig)


# --- sites ---------------------------------------------------------------------------------


def intensity_curves_figure(*, curves: dict[str, dict[str, list]]) -> str | None:
    if not curves:
        return None
    fig = Figure(title="Hourly grid intensity by zone (gCO2e/kWh)", height=380, hovermode="x unified")
    for i, (code, c) in enumerate(sorted(curves.items())):
        fig.add(
            "scatter",
            x=c["hour"],
            y=c["g_per_kwh"],
            mode="lines",
            name=code,
            line={"width": 1.6, "color": colour_for(i)},
            hovertemplate=f"{code}: %{{y:,.0f}} gCO2e/kWh<extra></extra>",
        )
    fig.axis("xaxis", "", type="date")
    fig.axis("yaxis", "gCO2e/kWh (hourly, UTC)", rangemode="tozero")
    return to_json(fig)


def energy_heatmap_figure(*, site_names: Sequence[str], matrix: Sequence[Sequence[float]]) -> str | None:
    if not site_names or not any(any(row) for row in matrix):
        return None
    fig = Figure(
        title="Where and when job energy was drawn (kWh by site and hour of day, UTC)",
        height=140 + 46 * len(site_names),
    )
    fig.add(
        "heatmap",
        z=[[round(v, 3) for v in r] for r in matrix],
        x=[f"{h:02d}:00" for h in range(24)],
        y=list(site_names),
        colorscale="YlGnBu",
        reversescale=True,
        colorbar={"title": {"text": "kWh"}},
        hovertemplate="%{y}<br>%{x} UTC<br>%{z:,.1f} kWh<extra></extra>",
    )
    fig.axis("xaxis", "Hour of day (UTC)", type="category")
    fig.axis("yaxis", "", type="category")
    return to_json(fig)


def site_carbon_figure(*, sites: Sequence[Any]) -> str | None:
    rows = [s for s in sites if s.energy_kwh > 0]
    if not rows:
        return None
    names = [s.name for s in rows]
    fig = Figure(
        title="Carbon by site (kgCO2e) and carbon per IT kWh: grid intensity × PUE (gCO2e/kWh)", barmode="stack"
    )
    fig.add(
        "bar",
        x=names,
        y=[s.co2e_operational_kg for s in rows],
        name="Operational",
        marker={"color": PALETTE[0]},
        hovertemplate="%{x}<br>Operational %{y:,.1f} kgCO2e<extra></extra>",
    )
    fig.add(
        "bar",
        x=names,
        y=[s.co2e_embodied_kg for s in rows],
        name="Embodied",
        marker={"color": PALETTE[1]},
        hovertemplate="%{x}<br>Embodied %{y:,.1f} kgCO2e<extra></extra>",
    )
    fig.add(
        "scatter",
        x=names,
        y=[s.effective_g_per_kwh * s.pue if s.effective_g_per_kwh is not None else None for s in rows],
        name="Grid intensity × PUE (per IT kWh)",
        yaxis="y2",
        mode="markers",
        marker={"size": 12, "color": FRONT_COLOUR, "symbol": "diamond"},
        customdata=[[s.effective_g_per_kwh, s.pue] for s in rows],
        hovertemplate=(
            "%{x}<br>%{y:,.0f} gCO2e per kWh of IT energy<br>"
            "= %{customdata[0]:,.0f} g/kWh drawn × PUE %{customdata[1]:.2f}<extra></extra>"
        ),
    )
    fig.axis("yaxis", "kgCO2e", rangemode="tozero")
    fig.axis("yaxis2", "gCO2e/kWh", overlaying="y", side="right", rangemode="tozero", showgrid=False)
    return to_json(fig)


# --- devices -------------------------------------------------------------------------------


def model_hours_figure(*, models: Sequence[Any]) -> str | None:
    rows = [m for m in models if m.observed_h > 0]
    if not rows:
        return None
    names = [m.name for m in rows]
    fig = Figure(title="Device-hours by state per model (device-h)", barmode="stack")
    for label, attr, colour in (
        ("Allocated, busy", "busy_allocated_h", PALETTE[2]),
        ("Allocated, idle (<5 % util)", "idle_allocated_h", PALETTE[5]),
        ("Unallocated", "unallocated_h", OVERHEAD_COLOUR),
    ):
        fig.add(
            "bar",
            x=names,
            y=[round(getattr(m, attr), 3) for m in rows],
            name=label,
            marker={"color": colour},
            hovertemplate=f"%{{x}}<br>{label}: %{{y:,.0f}} device-hours<extra></extra>",
        )
    fig.axis("yaxis", "device-hours", rangemode="tozero")
    return to_json(fig)


def _subplot_title(text: str, x: float, y: float) -> dict[str, Any]:
    return {
        "text": f"<b>{text}</b>",
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "showarrow": False,
        "xanchor": "center",
        "yanchor": "bottom",
        "font": {"size": 12},
    }


def model_util_power_figure(*, models: Sequence[Any]) -> str | None:
    """Horizontal bars: model names read along one shared category axis on the left, whole
    (rotated labels under two narrow subplots were clipped)."""
    rows = [m for m in models if m.avg_util_pct is not None]
    if not rows:
        return None
    names = [m.name for m in rows]
    fig = Figure(
        title="Utilisation and power per device model (%, W)",
        showlegend=False,
        height=max(300, 150 + 44 * len(rows)),
        annotations=[
            _subplot_title("Average utilisation (%)", 0.24, 1.0),
            _subplot_title("Average power (W per GPU)", 0.78, 1.0),
        ],
    )
    fig.add(
        "bar",
        y=names,
        x=[m.avg_util_pct for m in rows],
        orientation="h",
        marker={"color": PALETTE[0]},
        xaxis="x",
        yaxis="y",
        hovertemplate="%{y}<br>%{x:.1f} % utilisation<extra></extra>",
    )
    fig.add(
        "bar",
        y=names,
        x=[m.avg_power_w for m in rows],
        orientation="h",
        marker={"color": PALETTE[1]},
        xaxis="x2",
        yaxis="y2",
        hovertemplate="%{y}<br>%{x:,.0f} W average<extra></extra>",
    )
    fig.axis("xaxis", "%", domain=[0, 0.46], range=[0, 100])
    fig.axis("xaxis2", "W", domain=[0.56, 1], anchor="y2", rangemode="tozero")
    fig.axis("yaxis", "", type="category", autorange="reversed")
    fig.axis("yaxis2", "", type="category", anchor="x2", matches="y", showticklabels=False)
    return to_json(fig)


def embodied_figure(*, rows: Sequence[Any]) -> str | None:
    if not rows:
        return None
    names = [r.name for r in rows]
    fig = Figure(title="Embodied carbon per device and its amortisation (kgCO2e)", barmode="group")
    fig.add(
        "bar",
        x=names,
        y=[r.embodied_kg for r in rows],
        name="Embodied per device",
        marker={"color": PALETTE[1]},
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [r.embodied_high_kg - r.embodied_kg for r in rows],
            "arrayminus": [r.embodied_kg - r.embodied_low_kg for r in rows],
            "color": "#6b7280",
        },
        customdata=[[r.embodied_low_kg, r.embodied_high_kg, r.embodied_kind] for r in rows],
        hovertemplate="%{x}<br>%{y:,.0f} kgCO2e per device<br>range %{customdata[0]:,.0f}–%{customdata[1]:,.0f}"
        "<br>%{customdata[2]}<extra></extra>",
    )
    fig.add(
        "bar",
        x=names,
        y=[round(r.embodied_kg * (r.amortised_share or 0), 3) for r in rows],
        name="Amortised to date (by age)",
        marker={"color": PALETTE[2]},
        hovertemplate="%{x}<br>%{y:,.0f} kgCO2e of each device's life already elapsed<extra></extra>",
    )
    fig.axis("yaxis", "kgCO2e per device", rangemode="tozero")
    return to_json(fig)


# --- job detail ----------------------------------------------------------------------------


def job_trace_figure(*, traces: Sequence[dict[str, Any]], raw: bool = False) -> str | None:
    """Power and utilisation per GPU: hourly averages (DeviceHour), or with ``raw`` the agent's
    windows (a young job, a zoom to window resolution), with time ticks to the second."""
    traces = [t for t in traces if t["hours"]]
    if not traces:
        return None
    many = len(traces) > 16
    resolution = "per window" if raw else "hourly average"
    x_format = "%d %b %H:%M:%S" if raw else "%d %b %H:00"
    fig = Figure(
        title="Power and utilisation trace per GPU (W, %)" + (": raw windows" if raw else ""),
        height=540,
        showlegend=not many,
        hovermode="closest",
        annotations=[
            _subplot_title(f"Power per GPU (W, {resolution})", 0.5, 1.0),
            _subplot_title(f"Utilisation per GPU (%, {resolution})", 0.5, 0.44),
        ],
        meta={"resolution": "window" if raw else "hour"},
    )
    width = 1.2 if many else 1.8
    mode = "lines+markers" if raw and max(len(t["hours"]) for t in traces) <= 60 else "lines"
    for i, t in enumerate(traces):
        colour = colour_for(i)
        model = f" ({t['model']})" if t.get("model") else ""
        fig.add(
            "scatter",
            x=t["hours"],
            y=[round(v, 1) for v in t["power_w"]],
            name=t["label"],
            legendgroup=t["label"],
            mode=mode,
            line={"width": width, "color": colour, **({"shape": "hv"} if raw else {})},
            xaxis="x",
            yaxis="y",
            hovertemplate=f"{t['label']}{model}<br>%{{x|{x_format}}}<br>%{{y:,.0f}} W<extra></extra>",
        )
        fig.add(
            "scatter",
            x=t["hours"],
            y=[round(v, 1) for v in t["util_pct"]],
            name=t["label"],
            legendgroup=t["label"],
            showlegend=False,
            mode=mode,
            line={"width": width, "color": colour, **({"shape": "hv"} if raw else {})},
            xaxis="x2",
            yaxis="y2",
            hovertemplate=f"{t['label']}<br>%{{x|{x_format}}}<br>%{{y:.0f}} %<extra></extra>",
        )
    fig.axis("xaxis", "", type="date", anchor="y", matches="x2", showticklabels=False)
    fig.axis(
        "xaxis2",
        "Window end (UTC)" if raw else "Hour (UTC)",
        type="date",
        anchor="y2",
        **({"tickformat": "%H:%M"} if raw else {}),
    )
    fig.axis("yaxis", "W", domain=[0.56, 1], rangemode="tozero")
    fig.axis("yaxis2", "%", domain=[0, 0.44], range=[0, 100], anchor="x2")
    return to_json(fig)


def job_window_figure(*, power: Mapping[str, Any] | None) -> str | None:
    """The trace figure from ``job_power_get``'s raw windows."""
    if not power:
        return None
    traces = [
        {"label": d["label"], "model": "", "hours": d["t"], "power_w": d["power_w"], "util_pct": d["util_pct"]}
        for d in power["devices"]
    ]
    return job_trace_figure(traces=traces, raw=True)


def power_series_figure(*, t: Sequence[str], power_kw: Sequence[float], title: str) -> str:
    """A power-over-time line (the fleet's per minute, a job's per window) drawn empty until
    data arrives; the page's script extends it with Plotly.react."""
    fig = Figure(title=title, height=300, showlegend=False, hovermode="x unified")
    fig.add(
        "scatter",
        x=list(t),
        y=[round(v, 3) for v in power_kw],
        name="Power",
        mode="lines",
        line={"width": 2, "color": PALETTE[0], "shape": "hv"},
        fill="tozeroy",
        fillcolor="rgba(0,114,178,0.12)",
        hovertemplate="%{x|%H:%M:%S}<br>%{y:,.2f} kW<extra></extra>",
    )
    fig.axis("xaxis", "Time (UTC)", type="date", tickformat="%H:%M")
    fig.axis("yaxis", "kW", rangemode="tozero")
    return to_json(fig)


def job_hours_figure(*, hours: dict[str, list]) -> str | None:
    if not hours["hour"]:
        return None
    fig = Figure(title="Carbon per hour (gCO2e) and grid intensity over the run (gCO2e/kWh)", barmode="stack")
    # Bars centred on their hour and an hour wide (0.9 h drawn): with one or two hours plotly
    # would otherwise size the bar to the whole axis and tick in milliseconds.
    centres = [h + dt.timedelta(minutes=30) for h in hours["hour"]]
    bar_ms = 0.9 * 3_600_000
    fig.add(
        "bar",
        x=centres,
        width=bar_ms,
        y=[round(v * 1000, 3) for v in hours["co2e_operational_kg"]],
        name="Operational",
        marker={"color": PALETTE[0]},
        hovertemplate="%{x|%d %b %H:00}<br>Operational %{y:,.1f} gCO2e<extra></extra>",
    )
    fig.add(
        "bar",
        x=centres,
        width=bar_ms,
        y=[round(v * 1000, 3) for v in hours["co2e_embodied_kg"]],
        name="Embodied",
        marker={"color": PALETTE[1]},
        hovertemplate="%{x|%d %b %H:00}<br>Embodied %{y:,.1f} gCO2e<extra></extra>",
    )
    fig.add(
        "scatter",
        x=centres,
        y=hours["intensity_g_per_kwh"],
        name="Grid intensity",
        yaxis="y2",
        mode="lines+markers",
        line={"color": PALETTE[5], "width": 2},
        marker={"size": 4},
        hovertemplate="%{x|%d %b %H:00}<br>%{y:,.0f} gCO2e/kWh<extra></extra>",
    )
    first, last = hours["hour"][0], hours["hour"][-1] + dt.timedelta(hours=1)
    fig.axis("xaxis", "Hour (UTC)", type="date", tickformat="%d %b %H:%M", range=[first, last])
    fig.axis("yaxis", "gCO2e per hour", rangemode="tozero")
    fig.axis("yaxis2", "gCO2e/kWh", overlaying="y", side="right", rangemode="tozero", showgrid=False)
    return to_json(fig)


def breakdown_figure(*, values: dict[str, float], title: str, unit: str) -> str | None:
    if not values or sum(values.values()) <= 0:
        return None
    labels = list(values)
    fig = Figure(
        title=f"{title} ({unit})",
        height=90 + 44 * len(labels),
        showlegend=False,
        margin={"l": 150, "r": 24, "t": 48, "b": 44},
    )
    fig.add(
        "bar",
        x=[round(v, 6) for v in values.values()],
        y=labels,
        orientation="h",
        marker={"color": [colour_for(i) for i in range(len(labels))]},
        hovertemplate=f"%{{y}}<br>%{{x:,.3f}} {unit}<extra></extra>",
    )
    fig.axis("xaxis", unit, rangemode="tozero")
    fig.axis("yaxis", "", autorange="reversed", type="category")
    return to_json(fig)


# (key suffix in ServiceHours, legend name, count field for the hover, unit of that count)
_SERVICE_UNITS = (
    ("request", "per request", "requests", "requests"),
    ("1k_input_tokens", "per 1k input tokens", "input_tokens", "input tokens"),
    ("1k_output_tokens", "per 1k output tokens", "output_tokens", "output tokens"),
)


def _rounded(values: Sequence[float | None], digits: int = 6) -> list[float | None]:
    return [None if v is None else round(v, digits) for v in values]


def service_rates_figure(*, hours: Any, basis_label: str) -> str | None:
    """An inference service's energy and carbon per request, per 1k input and per 1k output
    tokens, one point per hour (gaps where the hour has no ledger row or served nothing):
    carbon above, energy below, one colour per unit in both."""
    if not any(v is not None for v in hours.co2e_g_per_request):
        return None
    centres = [h + dt.timedelta(minutes=30) for h in hours.hour]
    fig = Figure(
        title="Energy and carbon per request and per 1k tokens, hour by hour",
        height=560,
        hovermode="x unified",
        annotations=[
            _subplot_title(f"Carbon per unit (gCO2e; {basis_label})", 0.5, 1.0),
            _subplot_title("Energy per unit (Wh; GPU, host and facility)", 0.5, 0.44),
        ],
    )
    mode = "lines+markers" if len(centres) <= 72 else "lines"
    for i, (suffix, name, count_field, count_unit) in enumerate(_SERVICE_UNITS):
        co2e = getattr(hours, f"co2e_g_per_{suffix}")
        if not any(v is not None for v in co2e):
            continue  # the server has no such counter (Triton: no tokens)
        colour = PALETTE[i]
        counts = getattr(hours, count_field)
        common = {
            "x": centres,
            "mode": mode,
            "legendgroup": suffix,
            "connectgaps": False,
            "customdata": [None if c is None else round(c) for c in counts],
            "line": {"width": 2, "color": colour},
            "marker": {"size": 5, "color": colour},
        }
        fig.add(
            "scatter",
            y=_rounded(co2e),
            name=name,
            xaxis="x",
            yaxis="y",
            hovertemplate=f"{name}: %{{y:,.4g}} gCO2e (%{{customdata:,}} {count_unit})<extra></extra>",
            **common,
        )
        fig.add(
            "scatter",
            y=_rounded(getattr(hours, f"energy_wh_per_{suffix}")),
            name=name,
            showlegend=False,
            xaxis="x2",
            yaxis="y2",
            hovertemplate=f"{name}: %{{y:,.4g}} Wh<extra></extra>",
            **common,
        )
    first, last = hours.hour[0], hours.hour[-1] + dt.timedelta(hours=1)
    fig.axis("xaxis", "", type="date", anchor="y", matches="x2", showticklabels=False, range=[first, last])
    fig.axis("xaxis2", "Hour (UTC)", type="date", anchor="y2", tickformat="%d %b %H:%M", range=[first, last])
    fig.axis("yaxis", "gCO2e per unit", domain=[0.56, 1], rangemode="tozero")
    fig.axis("yaxis2", "Wh per unit", domain=[0, 0.44], rangemode="tozero", anchor="x2")
    return to_json(fig)


# --- trade-offs ----------------------------------------------------------------------------


SVG_POINTS_MAX = 5000


def tradeoff_figure(*, data: Any, colour_by: str) -> str | None:
    if not data.points:
        return None
    groups: dict[str, list] = {}
    for p in data.points:
        groups.setdefault(getattr(p, colour_by), []).append(p)
    unit_y = f"gCO2e per {data.per_label}"
    better = "higher is better" if data.x_higher_is_better else "lower is better"
    fig = Figure(
        title=f"Carbon per unit ({unit_y}) versus {data.x_label} — Pareto front highlighted",
        height=520,
        hovermode="closest",
    )
    hover = (
        "%{customdata[0]}<br>%{customdata[1]} · %{customdata[2]} · %{customdata[3]}<br>"
        f"{data.x_label}: %{{x:,.4g}}<br>%{{y:.4g}} {unit_y}<extra></extra>"
    )
    # SVG markers up to a few thousand points: WebGL is absent in headless, remote-desktop and
    # GPU-less browsers, where a "scattergl" trace draws only a "WebGL is not supported" notice.
    trace_type = "scatter" if len(data.points) <= SVG_POINTS_MAX else "scattergl"
    for i, (name, pts) in enumerate(sorted(groups.items())):
        fig.add(
            trace_type,
            x=[p.x for p in pts],
            y=[p.co2e_g_per_unit * data.per_factor for p in pts],
            mode="markers",
            name=name,
            marker={"size": 7, "color": colour_for(i), "opacity": 0.6},
            customdata=[[p.name, p.device, p.zone, p.team] for p in pts],
            hovertemplate=hover,
        )
    fig.add(
        "scatter",
        x=[p.x for p in data.front],
        y=[p.co2e_g_per_unit * data.per_factor for p in data.front],
        mode="lines+markers",
        name="Pareto front",
        line={"color": FRONT_COLOUR, "width": 2, "shape": "hv"},
        marker={"size": 10, "symbol": "star", "color": FRONT_COLOUR},
        customdata=[[p.name, p.device, p.zone, p.team] for p in data.front],
        hovertemplate="Pareto: " + hover,
    )
    fig.axis("xaxis", f"{data.x_label} ({better})", type="log" if data.x_metric == "throughput" else "linear")
    fig.axis("yaxis", f"{unit_y} (lower is better)", type="log")
    return to_json(fig)


# --- budgets and reports ---------------------------------------------------------------------


def burndown_figure(*, row: Any) -> str | None:
    if row.budget_kg is None or not row.days:
        return None
    end = row.period_end - dt.timedelta(days=1)
    over = row.forecast_kg > row.budget_kg
    fig = Figure(title=f"{row.team}: burn-down (kgCO2e)", height=300)
    fig.add(
        "scatter",
        x=[row.period_start, end],
        y=[row.budget_kg, row.budget_kg],
        mode="lines",
        name="Budget",
        line={"color": "#6b7280", "dash": "dash"},
        hovertemplate="Budget %{y:,.0f} kgCO2e<extra></extra>",
    )
    fig.add(
        "scatter",
        x=row.days,
        y=[round(v, 3) for v in row.cumulative_kg],
        mode="lines",
        name="Spent (cumulative)",
        line={"color": PALETTE[0], "width": 3},
        fill="tozeroy",
        fillcolor="rgba(0,114,178,0.12)",
        hovertemplate="%{x|%d %b}<br>%{y:,.1f} kgCO2e spent<extra></extra>",
    )
    fig.add(
        "scatter",
        x=[row.days[-1], end],
        y=[round(row.cumulative_kg[-1], 3), round(row.forecast_kg, 3)],
        mode="lines+markers",
        name="Forecast (linear run rate)",
        line={"color": "#D55E00" if over else "#009E73", "dash": "dot"},
        hovertemplate="%{x|%d %b}<br>%{y:,.1f} kgCO2e forecast<extra></extra>",
    )
    fig.axis("xaxis", "", type="date")
    fig.axis("yaxis", "kgCO2e", rangemode="tozero")
    return to_json(fig)


def report_team_figure(*, teams: Sequence[dict[str, Any]]) -> str | None:
    if not teams:
        return None
    names = [t["team"] for t in teams]
    fig = Figure(title="Carbon by team this month (kgCO2e)", barmode="stack", height=320)
    fig.add(
        "bar",
        x=names,
        y=[t["cur"]["co2e_operational_kg"] for t in teams],
        name="Operational",
        marker={"color": PALETTE[0]},
        hovertemplate="%{x}<br>%{y:,.1f} kgCO2e operational<extra></extra>",
    )
    fig.add(
        "bar",
        x=names,
        y=[t["cur"]["co2e_embodied_kg"] for t in teams],
        name="Embodied",
        marker={"color": PALETTE[1]},
        hovertemplate="%{x}<br>%{y:,.1f} kgCO2e embodied<extra></extra>",
    )
    fig.axis("yaxis", "kgCO2e", rangemode="tozero")
    return to_json(fig)
