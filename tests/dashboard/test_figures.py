"""Figures as their readers see them: labels that say what is plotted, exact plotted values."""

from __future__ import annotations

import json
from types import SimpleNamespace

from dashboard import figures


def _site(name, kwh, op_kg, effective, pue):
    return SimpleNamespace(
        name=name,
        energy_kwh=kwh,
        co2e_operational_kg=op_kg,
        co2e_embodied_kg=1.0,
        effective_g_per_kwh=effective,
        pue=pue,
    )


def test_site_carbon_marker_is_intensity_times_pue_and_says_so():
    fig = json.loads(
        figures.site_carbon_figure(sites=[_site("Warsaw", 100.0, 66.19, 661.9, 1.4), _site("Idle", 0.0, 0, None, 1.1)])
    )
    [marker] = [t for t in fig["data"] if t["type"] == "scatter"]
    assert marker["name"] == "Grid intensity × PUE (per IT kWh)"
    assert marker["x"] == ["Warsaw"] and marker["y"] == [661.9 * 1.4]
    assert marker["customdata"] == [[661.9, 1.4]]
    assert "intensity × PUE" in fig["layout"]["title"]["text"]


def test_device_model_names_read_whole_on_a_horizontal_axis():
    models = [
        SimpleNamespace(name="NVIDIA A100 SXM4 80GB", avg_util_pct=57.1, avg_power_w=256.0),
        SimpleNamespace(name="AMD Instinct MI300X 192GB", avg_util_pct=41.0, avg_power_w=410.0),
    ]
    fig = json.loads(figures.model_util_power_figure(models=models))
    util, power = fig["data"]
    assert util["orientation"] == power["orientation"] == "h"
    assert util["y"] == ["NVIDIA A100 SXM4 80GB", "AMD Instinct MI300X 192GB"] and util["x"] == [57.1, 41.0]
    assert power["x"] == [256.0, 410.0]
    assert fig["layout"]["yaxis"]["automargin"] is True and fig["layout"]["yaxis2"]["showticklabels"] is False
    assert "tickangle" not in fig["layout"]["xaxis"]


def test_a_one_hour_job_has_an_hour_wide_bar_and_hour_ticks():
    import datetime as dt

    h = dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)
    hours = {
        "hour": [h],
        "co2e_operational_kg": [0.4],
        "co2e_embodied_kg": [0.01],
        "intensity_g_per_kwh": [400.0],
    }
    fig = json.loads(figures.job_hours_figure(hours=hours))
    op = fig["data"][0]
    assert op["x"] == ["2026-03-20T10:30:00+00:00"] and op["width"] == 0.9 * 3_600_000 and op["y"] == [400.0]
    x = fig["layout"]["xaxis"]
    assert x["tickformat"] == "%d %b %H:%M" and x["range"] == ["2026-03-20T10:00:00+00:00", "2026-03-20T11:00:00+00:00"]
