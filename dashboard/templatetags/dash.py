"""Number formatting for the dashboard: thousands separators, units that scale, signed changes."""

from __future__ import annotations

import datetime as dt

from django import template

register = template.Library()


def _fmt(value: float, digits: int) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.{digits}f}"


@register.filter
def num(value, digits: int = 2) -> str:
    if value is None or value == "":
        return "—"
    return _fmt(float(value), int(digits))


@register.filter
def energy(kwh) -> str:
    """kWh, switching to MWh / GWh for large values."""
    if kwh is None:
        return "—"
    kwh = float(kwh)
    if abs(kwh) >= 1e6:
        return f"{_fmt(kwh / 1e6, 2)} GWh"
    if abs(kwh) >= 1e3:
        return f"{_fmt(kwh / 1e3, 2)} MWh"
    return f"{_fmt(kwh, 2)} kWh"


@register.filter
def mass(kg) -> str:
    """kgCO2e, switching to tCO2e for large values and gCO2e for small ones."""
    if kg is None:
        return "—"
    kg = float(kg)
    if abs(kg) >= 1e3:
        return f"{_fmt(kg / 1e3, 2)} tCO2e"
    if 0 < abs(kg) < 1:
        return f"{_fmt(kg * 1e3, 1)} gCO2e"
    return f"{_fmt(kg, 2)} kgCO2e"


@register.filter
def pct(fraction, digits: int = 1) -> str:
    if fraction is None:
        return "—"
    return f"{float(fraction) * 100:.{int(digits)}f} %"


@register.filter
def change(percent) -> str:
    if percent is None:
        return "no previous data"
    p = float(percent)
    arrow = "▲" if p > 0 else ("▼" if p < 0 else "=")
    return f"{arrow} {abs(p):.1f} % vs previous period"


@register.filter
def change_class(percent) -> str:
    if percent is None:
        return "neutral"
    return "up" if float(percent) > 0 else ("down" if float(percent) < 0 else "neutral")


@register.filter
def sig(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{float(value):.{int(digits)}g}"


@register.filter
def mul(value, factor) -> float | None:
    if value is None:
        return None
    return float(value) * float(factor)


@register.filter
def day_before(value):
    """The last day of a period given by its exclusive end date (a budget's ``period_end``)."""
    if value is None:
        return None
    return value - dt.timedelta(days=1)


_LARGE = ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"))


@register.filter
def human(value) -> str:
    """A metadata value as a person reads it: 1300000000.0 → "1.3 billion", 4096.0 → "4,096",
    0.9 → "0.9"; text and other values unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    v = float(value)
    for size, word in _LARGE:
        if abs(v) >= size:
            return f"{v / size:.4g} {word}"
    if v.is_integer():
        return f"{int(v):,}"
    return f"{v:.4g}"


@register.filter
def label(key: str) -> str:
    """A metadata key as a label: "context_tokens" → "context tokens"."""
    return str(key).replace("_", " ")


@register.simple_tag
def redoc_js_url() -> str:
    """The locally served ReDoc bundle (dashboard.views.redoc_js)."""
    from django.urls import reverse

    from dashboard.views import REDOC_VERSION

    return reverse("dashboard:redoc-js", args=[REDOC_VERSION])
