"""Plotly figures for the dashboard, built from the plain data the selectors return.

Each builder returns the figure as a JSON string safe to embed in a <script type="application/json">
element, or None when there is nothing to draw (the template then shows the empty state).
Units are in every title and axis; hover text carries the detail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

# Okabe–Ito, extended: distinguishable for the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#332288", "#88CCEE",
           "#117733", "#AA4499", "#44AA99"]
OVERHEAD_COLOUR = "#9AA3AE"
FRONT_COLOUR = "#111827"
FONT = "Inter, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def colour_for(index: int, name: str = "") -> str:
    if name.lower().startswith("fleet overhead"):
        return OVERHEAD_COLOUR
    return PALETTE[index % len(PALETTE)]


def _layout(fig: go.Figure, *, title: str, height: int = 360, **extra: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        font={"family": FONT, "size": 12, "color": "#1f2937"},
        height=height,
        margin={"l": 64, "r": 24, "t": 56, "b": 48},
        legend={"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0},
        hoverlabel={"font": {"family": FONT}},
        **extra,
    )
    return fig


def to_json(fig: go.Figure) -> str:
    raw = pio.to_json(fig, validate=False, remove_uids=True, engine="json")
    # Same escaping as Django's json_script: the JSON can sit inside a <script> element.
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def energy_scale(max_kwh: float) -> tuple[float, str]:
    """Divisor and unit for an energy axis (kWh below 10 MWh, MWh above)."""
    return (1000.0, "MWh") if max_kwh >= 10_000 else (1.0, "kWh")


def mass_scale(max_kg: float) -> tuple[float, str]:
    return (1000.0, "tCO2e") if max_kg >= 10_000 else (1.0, "kgCO2e")


# --- overview ------------------------------------------------------------------------------


def stacked_daily_figure(*, days: Sequence[dt.date], groups: Sequence[Any], metric: str, title: str,
                         group_label: str) -> str | None:
    """Stacked bars per day of one metric (energy_kwh / co2e_operational_kg / co2e_embodied_kg)."""
    if not days or not groups or not any(any(getattr(g, metric)) for g in groups):
        return None
    totals = [sum(getattr(g, metric)[i] for g in groups) for i in range(len(days))]
    if metric == "energy_kwh":
        div, unit = energy_scale(max(totals))
    else:
        div, unit = mass_scale(max(totals))
    fig = go.Figure()
    for i, g in enumerate(groups):
        values = [v / div for v in getattr(g, metric)]
        fig.add_trace(go.Bar(
            x=list(days), y=values, name=g.name, marker_color=colour_for(i, g.name),
            hovertemplate=f"%{{x|%d %b %Y}}<br>{group_label}: {g.name}<br>%{{y:,.2f}} {unit}<extra></extra>",
        ))
    _layout(fig, title=f"{title} ({unit}/day)", barmode="stack", bargap=0.15)
    fig.update_yaxes(title_text=f"{unit} per day", rangemode="tozero")
    fig.update_xaxes(title_text="Day (UTC)", type="date")
    return to_json(fig)


def share_donut_figure(*, values: dict[str, float], title: str, unit: str) -> str | None:
    if not values or sum(values.values()) <= 0:
        return None
    labels = list(values)
    fig = go.Figure(go.Pie(
        labels=labels, values=list(values.values()), hole=0.55, sort=False,
        marker={"colors": [colour_for(i, label) for i, label in enumerate(labels)]},
        hovertemplate=f"%{{label}}<br>%{{value:,.1f}} {unit} (%{{percent}})<extra></extra>",
        textinfo="percent",
    ))
    _layout(fig, title=f"{title} ({unit})", height=320, showlegend=True)
    fig.update_layout(legend={"orientation": "v", "y": 0.5, "yanchor": "middle", "x": 1.02})
    return to_json(fig)


# --- sites ---------------------------------------------------------------------------------


def intensity_curves_figure(*, curves: dict[str, dict[str, list]]) -> str | None:
    if not curves:
        return None
    fig = go.Figure()
    for i, (code, c) in enumerate(sorted(curves.items())):
        fig.add_trace(go.Scatter(
            x=c["hour"], y=c["g_per_kwh"], mode="lines", name=code, line={"width": 1.6, "color": colour_for(i)},
            hovertemplate=f"{code}<br>%{{x|%d %b %H:00}} UTC<br>%{{y:,.0f}} gCO2e/kWh<extra></extra>",
        ))
    _layout(fig, title="Hourly grid intensity by zone (gCO2e/kWh)", height=380, hovermode="x unified")
    fig.update_yaxes(title_text="gCO2e/kWh", rangemode="tozero")
    fig.update_xaxes(title_text="Hour (UTC)")
    return to_json(fig)


def energy_heatmap_figure(*, site_names: Sequence[str], matrix: Sequence[Sequence[float]]) -> str | None:
    if not site_names or not any(any(row) for row in matrix):
        return None
    fig = go.Figure(go.Heatmap(
        z=[list(r) for r in matrix], x=[f"{h:02d}:00" for h in range(24)], y=list(site_names),
        colorscale="YlGnBu", colorbar={"title": {"text": "kWh"}},
        hovertemplate="%{y}<br>%{x} UTC<br>%{z:,.1f} kWh<extra></extra>",
    ))
    _layout(fig, title="Where and when job energy was drawn (kWh by site and hour of day, UTC)",
            height=120 + 46 * len(site_names))
    fig.update_xaxes(title_text="Hour of day (UTC)")
    return to_json(fig)


def site_carbon_figure(*, sites: Sequence[Any]) -> str | None:
    rows = [s for s in sites if s.energy_kwh > 0]
    if not rows:
        return None
    names = [s.name for s in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[s.co2e_operational_kg for s in rows], name="Operational", marker_color=PALETTE[0],
                         hovertemplate="%{x}<br>Operational %{y:,.1f} kgCO2e<extra></extra>"))
    fig.add_trace(go.Bar(x=names, y=[s.co2e_embodied_kg for s in rows], name="Embodied", marker_color=PALETTE[1],
                         hovertemplate="%{x}<br>Embodied %{y:,.1f} kgCO2e<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=names, y=[s.effective_g_per_kwh for s in rows], name="Effective intensity incl. PUE", yaxis="y2",
        mode="markers", marker={"size": 12, "color": FRONT_COLOUR, "symbol": "diamond"},
        hovertemplate="%{x}<br>%{y:,.0f} gCO2e per kWh drawn<extra></extra>",
    ))
    _layout(fig, title="Carbon by site (kgCO2e) and effective intensity (gCO2e/kWh)", barmode="stack",
            yaxis2={"overlaying": "y", "side": "right", "title": {"text": "gCO2e/kWh"}, "rangemode": "tozero",
                    "showgrid": False})
    fig.update_yaxes(title_text="kgCO2e", selector={"anchor": "x"}, rangemode="tozero")
    return to_json(fig)


# --- devices -------------------------------------------------------------------------------


def model_hours_figure(*, models: Sequence[Any]) -> str | None:
    rows = [m for m in models if m.observed_h > 0]
    if not rows:
        return None
    names = [m.name for m in rows]
    fig = go.Figure()
    for label, attr, colour in (("Allocated, busy", "busy_allocated_h", PALETTE[2]),
                                ("Allocated, idle (<5 % util)", "idle_allocated_h", PALETTE[5]),
                                ("Unallocated", "unallocated_h", OVERHEAD_COLOUR)):
        fig.add_trace(go.Bar(x=names, y=[getattr(m, attr) for m in rows], name=label, marker_color=colour,
                             hovertemplate=f"%{{x}}<br>{label}: %{{y:,.0f}} device-hours<extra></extra>"))
    _layout(fig, title="Device-hours by state per model (device-h)", barmode="stack")
    fig.update_yaxes(title_text="device-hours")
    return to_json(fig)


def model_util_power_figure(*, models: Sequence[Any]) -> str | None:
    rows = [m for m in models if m.avg_util_pct is not None]
    if not rows:
        return None
    names = [m.name for m in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Average utilisation (%)", "Average power (W per GPU)"))
    fig.add_trace(go.Bar(x=names, y=[m.avg_util_pct for m in rows], marker_color=PALETTE[0], showlegend=False,
                         hovertemplate="%{x}<br>%{y:.1f} % utilisation<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=[m.avg_power_w for m in rows], marker_color=PALETTE[1], showlegend=False,
                         hovertemplate="%{x}<br>%{y:,.0f} W average<extra></extra>"), row=1, col=2)
    _layout(fig, title="Utilisation and power per device model (%, W)")
    fig.update_yaxes(title_text="%", range=[0, 100], row=1, col=1)
    fig.update_yaxes(title_text="W", rangemode="tozero", row=1, col=2)
    return to_json(fig)


def embodied_figure(*, rows: Sequence[Any]) -> str | None:
    if not rows:
        return None
    names = [r.name for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=names, y=[r.embodied_kg for r in rows], name="Embodied per device",
        marker_color=PALETTE[1],
        error_y={"type": "data", "symmetric": False, "array": [r.embodied_high_kg - r.embodied_kg for r in rows],
                 "arrayminus": [r.embodied_kg - r.embodied_low_kg for r in rows], "color": "#6b7280"},
        customdata=[[r.embodied_low_kg, r.embodied_high_kg, r.embodied_kind] for r in rows],
        hovertemplate="%{x}<br>%{y:,.0f} kgCO2e per device<br>range %{customdata[0]:,.0f}–%{customdata[1]:,.0f}"
                      "<br>%{customdata[2]}<extra></extra>",
    ))
    fig.add_trace(go.Bar(
        x=names, y=[r.embodied_kg * (r.amortised_share or 0) for r in rows], name="Amortised to date (by age)",
        marker_color=PALETTE[2],
        hovertemplate="%{x}<br>%{y:,.0f} kgCO2e of each device's life already elapsed<extra></extra>",
    ))
    _layout(fig, title="Embodied carbon per device and its amortisation (kgCO2e)", barmode="group")
    fig.update_yaxes(title_text="kgCO2e per device", rangemode="tozero")
    return to_json(fig)


# --- job detail ----------------------------------------------------------------------------


def job_trace_figure(*, traces: Sequence[dict[str, Any]]) -> str | None:
    traces = [t for t in traces if t["hours"]]
    if not traces:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Power per GPU (W, hourly average)", "Utilisation per GPU (%)"))
    many = len(traces) > 16
    for i, t in enumerate(traces):
        colour = colour_for(i)
        fig.add_trace(go.Scatter(x=t["hours"], y=t["power_w"], name=t["label"], legendgroup=t["label"],
                                 mode="lines", line={"width": 1.2 if many else 1.8, "color": colour},
                                 hovertemplate=f"{t['label']}<br>%{{x|%d %b %H:00}}<br>%{{y:,.0f}} W<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=t["hours"], y=t["util_pct"], name=t["label"], legendgroup=t["label"],
                                 showlegend=False, mode="lines",
                                 line={"width": 1.2 if many else 1.8, "color": colour},
                                 hovertemplate=f"{t['label']}<br>%{{x|%d %b %H:00}}<br>%{{y:.0f}} %<extra></extra>"),
                      row=2, col=1)
    _layout(fig, title="Power and utilisation trace per GPU (W, %)", height=520, showlegend=not many)
    fig.update_yaxes(title_text="W", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="%", range=[0, 100], row=2, col=1)
    fig.update_xaxes(title_text="Hour (UTC)", row=2, col=1)
    return to_json(fig)


def job_hours_figure(*, hours: dict[str, list]) -> str | None:
    if not hours["hour"]:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=hours["hour"], y=[v * 1000 for v in hours["co2e_operational_kg"]], name="Operational",
                         marker_color=PALETTE[0],
                         hovertemplate="%{x|%d %b %H:00}<br>Operational %{y:,.1f} gCO2e<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Bar(x=hours["hour"], y=[v * 1000 for v in hours["co2e_embodied_kg"]], name="Embodied",
                         marker_color=PALETTE[1],
                         hovertemplate="%{x|%d %b %H:00}<br>Embodied %{y:,.1f} gCO2e<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=hours["hour"], y=hours["intensity_g_per_kwh"], name="Grid intensity",
                             mode="lines+markers", line={"color": PALETTE[5], "width": 2}, marker={"size": 4},
                             hovertemplate="%{x|%d %b %H:00}<br>%{y:,.0f} gCO2e/kWh<extra></extra>"),
                  secondary_y=True)
    _layout(fig, title="Carbon per hour (gCO2e) and grid intensity over the run (gCO2e/kWh)", barmode="stack")
    fig.update_yaxes(title_text="gCO2e per hour", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="gCO2e/kWh", rangemode="tozero", showgrid=False, secondary_y=True)
    fig.update_xaxes(title_text="Hour (UTC)")
    return to_json(fig)


def breakdown_figure(*, values: dict[str, float], title: str, unit: str) -> str | None:
    if not values or sum(values.values()) <= 0:
        return None
    labels = list(values)
    fig = go.Figure(go.Bar(
        x=list(values.values()), y=labels, orientation="h",
        marker_color=[colour_for(i) for i in range(len(labels))],
        hovertemplate=f"%{{y}}<br>%{{x:,.3f}} {unit}<extra></extra>",
    ))
    _layout(fig, title=f"{title} ({unit})", height=80 + 44 * len(labels), showlegend=False)
    fig.update_layout(margin={"l": 150, "r": 24, "t": 48, "b": 40})
    fig.update_xaxes(title_text=unit, rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return to_json(fig)


# --- trade-offs ----------------------------------------------------------------------------


def tradeoff_figure(*, data: Any, colour_by: str) -> str | None:
    if not data.points:
        return None
    groups: dict[str, list] = {}
    for p in data.points:
        groups.setdefault(getattr(p, colour_by), []).append(p)
    fig = go.Figure()
    unit_y = f"gCO2e per {data.unit[:-1] if data.unit.endswith('s') else data.unit}"
    for i, (name, pts) in enumerate(sorted(groups.items())):
        fig.add_trace(go.Scattergl(
            x=[p.x for p in pts], y=[p.co2e_g_per_unit for p in pts], mode="markers", name=name,
            marker={"size": 7, "color": colour_for(i), "opacity": 0.65, "line": {"width": 0}},
            customdata=[[p.name, p.device, p.zone, p.team, p.job_id] for p in pts],
            hovertemplate=("%{customdata[0]}<br>%{customdata[1]} · %{customdata[2]} · %{customdata[3]}<br>"
                           f"{data.x_label}: %{{x:,.4g}}<br>%{{y:.4g}} {unit_y}<extra></extra>"),
        ))
    fig.add_trace(go.Scatter(
        x=[p.x for p in data.front], y=[p.co2e_g_per_unit for p in data.front], mode="lines+markers",
        name="Pareto front", line={"color": FRONT_COLOUR, "width": 2, "shape": "hv"},
        marker={"size": 10, "symbol": "star", "color": FRONT_COLOUR},
        customdata=[[p.name, p.device, p.zone, p.team, p.job_id] for p in data.front],
        hovertemplate=("Pareto: %{customdata[0]}<br>%{customdata[1]} · %{customdata[2]} · %{customdata[3]}<br>"
                       f"{data.x_label}: %{{x:,.4g}}<br>%{{y:.4g}} {unit_y}<extra></extra>"),
    ))
    better = "higher is better" if data.x_higher_is_better else "lower is better"
    _layout(fig, title=f"Carbon per unit ({unit_y}) versus {data.x_label} — Pareto front highlighted", height=520)
    fig.update_yaxes(title_text=f"{unit_y} (lower is better)", type="log")
    fig.update_xaxes(title_text=f"{data.x_label} ({better})", type="log" if data.x_metric == "throughput" else "linear")
    return to_json(fig)


# --- budgets and reports ---------------------------------------------------------------------


def burndown_figure(*, row: Any) -> str | None:
    if row.budget_kg is None or not row.days:
        return None
    end = row.period_end - dt.timedelta(days=1)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[row.period_start, end], y=[row.budget_kg, row.budget_kg], mode="lines",
                             name="Budget", line={"color": "#6b7280", "dash": "dash"},
                             hovertemplate="Budget %{y:,.0f} kgCO2e<extra></extra>"))
    fig.add_trace(go.Scatter(x=row.days, y=row.cumulative_kg, mode="lines", name="Spent (cumulative)",
                             line={"color": PALETTE[0], "width": 3}, fill="tozeroy", fillcolor="rgba(0,114,178,0.12)",
                             hovertemplate="%{x|%d %b}<br>%{y:,.1f} kgCO2e spent<extra></extra>"))
    forecast_colour = "#D55E00" if row.forecast_kg > row.budget_kg else "#009E73"
    fig.add_trace(go.Scatter(x=[row.days[-1], end], y=[row.cumulative_kg[-1], row.forecast_kg], mode="lines+markers",
                             name="Forecast (linear run rate)", line={"color": forecast_colour, "dash": "dot"},
                             hovertemplate="%{x|%d %b}<br>%{y:,.1f} kgCO2e forecast<extra></extra>"))
    _layout(fig, title=f"{row.team}: burn-down (kgCO2e)", height=300)
    fig.update_yaxes(title_text="kgCO2e", rangemode="tozero")
    return to_json(fig)


def report_team_figure(*, teams: Sequence[dict[str, Any]]) -> str | None:
    if not teams:
        return None
    names = [t["team"] for t in teams]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[t["cur"]["co2e_operational_kg"] for t in teams], name="Operational",
                         marker_color=PALETTE[0], hovertemplate="%{x}<br>%{y:,.1f} kgCO2e operational<extra></extra>"))
    fig.add_trace(go.Bar(x=names, y=[t["cur"]["co2e_embodied_kg"] for t in teams], name="Embodied",
                         marker_color=PALETTE[1], hovertemplate="%{x}<br>%{y:,.1f} kgCO2e embodied<extra></extra>"))
    _layout(fig, title="Carbon by team this month (kgCO2e)", barmode="stack", height=320)
    fig.update_yaxes(title_text="kgCO2e")
    return to_json(fig)
