"""Writes the Grafana dashboards (provisioning JSON) from the panel definitions below.

    python docker/grafana/dashboards.py          # rewrites docker/grafana/dashboards/*.json

The JSON files are what Grafana loads (docker/grafana/provisioning/dashboards/carbonledger.yaml);
this module is their source, so a panel is edited once here and the files stay consistent.
Every query uses only the metrics CarbonLedger exposes at /metrics (docs/integrations.md);
tests/integration/test_prometheus.py runs each one against a real Prometheus scraping the
server and checks the values, and tests/deploy/test_grafana_dashboards.py that the files are
this module's output.

Plain Python (stdlib only): no Django, nothing of the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
KWH = "3.6e6"  # joules per kWh

# Grafana multi-value variables render as regexes: every selector matches them with =~.
FLEET = 'org=~"$org",site=~"$site"'
TEAM = 'org=~"$org",team=~"$team"'
JOB = 'org=~"$org",cluster=~"$cluster",job_id=~"$job_id"'


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    kind: str = "stat"  # stat | timeseries | bargauge | table
    unit: str = "short"
    legend: str = ""
    description: str = ""
    instant: bool = True  # a stat, bar gauge or table reads the last value


@dataclass(frozen=True)
class Variable:
    name: str
    query: str  # label_values(...) over an exposed metric
    label: str
    multi: bool = True


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]


ORG = Variable("org", "label_values(carbonledger_energy_joules_total, org)", "Organisation")
SITE = Variable("site", 'label_values(carbonledger_energy_joules_total{org=~"$org"}, site)', "Site")

DASHBOARDS = (
    Dashboard(
        uid="carbonledger-fleet",
        title="CarbonLedger / Fleet",
        description="Energy and carbon of the whole fleet: accounts, teams, device models, allocation.",
        variables=(
            ORG,
            SITE,
            Variable("cluster", 'label_values(carbonledger_gpu_energy_joules_total{org=~"$org"}, cluster)', "Cluster"),
        ),
        panels=(
            Panel("Energy, all time", f"sum(carbonledger_energy_joules_total{{{FLEET}}}) / {KWH}", unit="kwatth"),
            Panel("Carbon, all time", f"sum(carbonledger_co2e_grams_total{{{FLEET}}}) / 1000", unit="masskg"),
            Panel(
                "Embodied share of carbon",
                f'sum(carbonledger_co2e_grams_total{{{FLEET},kind="embodied"}}) '
                f"/ sum(carbonledger_co2e_grams_total{{{FLEET}}})",
                unit="percentunit",
            ),
            Panel(
                "Fleet overhead share of energy",
                f'sum(carbonledger_energy_joules_total{{{FLEET},account="fleet_overhead"}}) '
                f"/ sum(carbonledger_energy_joules_total{{{FLEET}}})",
                unit="percentunit",
                description="Energy of devices no job held (the fleet-overhead account).",
            ),
            Panel(
                "Energy by account",
                f"sum by (account) (carbonledger_energy_joules_total{{{FLEET}}}) / {KWH}",
                kind="bargauge",
                unit="kwatth",
                legend="{{account}}",
            ),
            Panel(
                "Carbon by team",
                f"sum by (team) (carbonledger_co2e_grams_total{{{FLEET}}}) / 1000",
                kind="bargauge",
                unit="masskg",
                legend="{{team}}",
                description="The empty team is the fleet-overhead account.",
            ),
            Panel(
                "Power by account",
                f"sum by (account) (rate(carbonledger_energy_joules_total{{{FLEET}}}[$__rate_interval]))",
                kind="timeseries",
                unit="watt",
                legend="{{account}}",
                instant=False,
            ),
            Panel(
                "Carbon rate by team",
                f"sum by (team) (rate(carbonledger_co2e_grams_total{{{FLEET}}}[$__rate_interval])) * 3600",
                kind="timeseries",
                unit="g/h",
                legend="{{team}}",
                instant=False,
            ),
            Panel(
                "GPU energy by device model",
                f'sum by (device_model, state) (carbonledger_gpu_energy_joules_total{{{FLEET},cluster=~"$cluster"}}) '
                f"/ {KWH}",
                kind="bargauge",
                unit="kwatth",
                legend="{{device_model}} {{state}}",
            ),
            Panel(
                "GPU carbon by device model",
                f'sum by (device_model, kind) (carbonledger_gpu_co2e_grams_total{{{FLEET},cluster=~"$cluster"}})'
                " / 1000",
                kind="bargauge",
                unit="masskg",
                legend="{{device_model}} {{kind}}",
            ),
            Panel(
                "GPU allocation by cluster",
                f'sum by (cluster) (carbonledger_gpu_allocated_seconds_total{{{FLEET},cluster=~"$cluster"}}) '
                f'/ sum by (cluster) (carbonledger_gpu_observed_seconds_total{{{FLEET},cluster=~"$cluster"}})',
                kind="bargauge",
                unit="percentunit",
                legend="{{cluster}}",
                description="Device-seconds held by jobs over device-seconds observed.",
            ),
        ),
    ),
    Dashboard(
        uid="carbonledger-team",
        title="CarbonLedger / Team",
        description="A team's energy and carbon, its idle share and its running jobs.",
        variables=(ORG, Variable("team", 'label_values(carbonledger_energy_joules_total{org=~"$org"}, team)', "Team")),
        panels=(
            Panel(
                "Energy, all time",
                f'sum by (team) (carbonledger_energy_joules_total{{{TEAM},account!="fleet_overhead"}}) / {KWH}',
                unit="kwatth",
                legend="{{team}}",
            ),
            Panel(
                "Carbon by kind",
                f"sum by (team, kind) (carbonledger_co2e_grams_total{{{TEAM}}}) / 1000",
                kind="bargauge",
                unit="masskg",
                legend="{{team}} {{kind}}",
            ),
            Panel(
                "Idle share of energy",
                f'sum by (team) (carbonledger_energy_joules_total{{{TEAM},account="idle_allocated"}}) '
                f"/ sum by (team) (carbonledger_energy_joules_total{{{TEAM}}})",
                unit="percentunit",
                legend="{{team}}",
                description="GPU idle baseline of devices the team's jobs held, over the team's energy.",
            ),
            Panel(
                "Jobs running and recently ended",
                f"sum by (cluster, job_id, device_model) (carbonledger_job_energy_joules_total{{{TEAM}}}) / {KWH}",
                kind="table",
                unit="kwatth",
            ),
            Panel(
                "Carbon rate",
                f"sum by (team) (rate(carbonledger_co2e_grams_total{{{TEAM}}}[$__rate_interval])) * 3600",
                kind="timeseries",
                unit="g/h",
                legend="{{team}}",
                instant=False,
            ),
        ),
    ),
    Dashboard(
        uid="carbonledger-job",
        title="CarbonLedger / Job",
        description="One job (running or recently ended): energy, carbon, energy per functional unit, data quality.",
        variables=(
            ORG,
            Variable("cluster", 'label_values(carbonledger_job_running{org=~"$org"}, cluster)', "Cluster"),
            Variable(
                "job_id", 'label_values(carbonledger_job_running{cluster=~"$cluster"}, job_id)', "Job", multi=False
            ),
        ),
        panels=(
            Panel("Energy", f"sum(carbonledger_job_energy_joules_total{{{JOB}}}) / {KWH}", unit="kwatth"),
            Panel(
                "Carbon by kind",
                f"sum by (kind) (carbonledger_job_co2e_grams_total{{{JOB}}})",
                kind="bargauge",
                unit="massg",
                legend="{{kind}}",
            ),
            Panel(
                "Energy per unit",
                f"sum(carbonledger_job_energy_joules_total{{{JOB}}}) "
                f"/ ignoring(unit) group_right sum by (unit) (carbonledger_job_functional_units_total{{{JOB}}})",
                unit="J",
                legend="J per {{unit}}",
            ),
            Panel(
                "Carbon per unit",
                f"sum(carbonledger_job_co2e_grams_total{{{JOB}}}) "
                f"/ ignoring(unit) group_right sum by (unit) (carbonledger_job_functional_units_total{{{JOB}}})",
                unit="massg",
                legend="gCO2e per {{unit}}",
            ),
            Panel(
                "Measured share of GPU energy",
                f'sum(carbonledger_job_gpu_energy_joules_total{{{JOB},quality="measured"}}) '
                f"/ sum(carbonledger_job_gpu_energy_joules_total{{{JOB}}})",
                unit="percentunit",
                description="Read from the GPU energy counter; the rest was integrated, interpolated or modelled.",
            ),
            Panel(
                "Idle share of energy",
                f'sum(carbonledger_job_energy_joules_total{{{JOB},account="idle_allocated"}}) '
                f"/ sum(carbonledger_job_energy_joules_total{{{JOB}}})",
                unit="percentunit",
            ),
            Panel("Running", f"max(carbonledger_job_running{{{JOB}}})", unit="bool_yes_no"),
            Panel(
                "Power",
                f"sum(rate(carbonledger_job_energy_joules_total{{{JOB}}}[$__rate_interval]))",
                kind="timeseries",
                unit="watt",
                instant=False,
            ),
        ),
    ),
    Dashboard(
        uid="carbonledger-data-quality",
        title="CarbonLedger / Data quality",
        description="Is the ledger current and measured: ingest lag, attribution queue, silent hosts, "
        "estimated energy.",
        variables=(
            ORG,
            Variable(
                "cluster",
                'label_values(carbonledger_host_last_seen_timestamp_seconds{org=~"$org"}, cluster)',
                "Cluster",
            ),
        ),
        panels=(
            Panel("Ingest lag", "max(carbonledger_ingest_lag_seconds)", unit="s"),
            Panel(
                "Attribution queue",
                "sum by (state) (carbonledger_attribution_queue_batches)",
                kind="bargauge",
                legend="{{state}}",
            ),
            Panel("Jobs running", 'sum(carbonledger_jobs_running{org=~"$org"})'),
            Panel(
                "Host last seen",
                "max by (cluster, host) "
                '(carbonledger_host_last_seen_timestamp_seconds{org=~"$org",cluster=~"$cluster"}) * 1000',
                kind="table",
                unit="dateTimeAsIso",
            ),
            Panel(
                "Measured share of GPU energy by job",
                'sum by (cluster, job_id) (carbonledger_job_gpu_energy_joules_total{org=~"$org",cluster=~"$cluster",'
                'quality="measured"}) / sum by (cluster, job_id) '
                '(carbonledger_job_gpu_energy_joules_total{org=~"$org",cluster=~"$cluster"})',
                kind="table",
                unit="percentunit",
            ),
            Panel(
                "Estimated GPU energy by cluster",
                'sum by (cluster) (carbonledger_job_gpu_energy_joules_total{org=~"$org",cluster=~"$cluster",'
                f'quality="estimated"}}) / {KWH}',
                kind="bargauge",
                unit="kwatth",
                legend="{{cluster}}",
            ),
        ),
    ),
)


def _variable(v: Variable) -> dict:
    return {
        "name": v.name,
        "label": v.label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": v.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": v.query,
        "refresh": 2,
        "multi": v.multi,
        "includeAll": v.multi,
        "allValue": ".*" if v.multi else None,
        "current": {},
        "sort": 1,
    }


def _panel(p: Panel, index: int) -> dict:
    width = 24 if p.kind == "table" else (12 if p.kind in ("timeseries", "bargauge") else 6)
    height = 4 if p.kind == "stat" else 8
    panel = {
        "id": index + 1,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": 0, "y": index * 8},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "expr": p.expr,
                "legendFormat": p.legend or "__auto",
                "instant": p.instant,
                "range": not p.instant,
                "format": "table" if p.kind == "table" else "time_series",
            }
        ],
    }
    if p.kind == "stat":
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return panel


def dashboard_json(d: Dashboard) -> dict:
    datasource = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
    }
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["carbonledger"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "timezone": "utc",
        "templating": {"list": [datasource, *(_variable(v) for v in d.variables)]},
        "panels": [_panel(p, i) for i, p in enumerate(d.panels)],
    }


def dashboard_files() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{d.uid.removeprefix('carbonledger-')}.json": json.dumps(dashboard_json(d), indent=2) + "\n"
        for d in DASHBOARDS
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in dashboard_files().items():
        (OUT / name).write_text(text)


if __name__ == "__main__":
    main()
