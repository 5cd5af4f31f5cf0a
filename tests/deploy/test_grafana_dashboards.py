"""The Grafana provisioning files: the dashboards are docker/grafana/dashboards.py's output, query
only metrics the server exposes, and the provisioning points at them. (Their values against a real
Prometheus: tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import sys
from pathlib import Path

import yaml

from accounting.selectors.metrics import (
    GpuTotals,
    HostSeen,
    IngestState,
    JobTotals,
    MetricsSnapshot,
    TeamTotals,
    metric_families,
)

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"


def _module():
    spec = importlib.util.spec_from_file_location("grafana_dashboards", GRAFANA / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["grafana_dashboards"] = module
    spec.loader.exec_module(module)
    return module


def _exposed_names() -> set[str]:
    """Every sample name of an exposition with one row of each kind."""
    seen = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    snapshot = MetricsSnapshot(
        teams=[TeamTotals("o", "s", "t", 1.0, 0.5, 1.0, 1.0), TeamTotals("o", "s", "", 1.0, 1.0, 1.0, 1.0)],
        gpus=[GpuTotals("o", "s", "c", "m", 1.0, 0.5, 1.0, 1.0, 1.0, 1.0)],
        jobs=[JobTotals("o", "s", "c", "t", "1", "m", True, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, {"tokens": 1.0})],
        ingest=IngestState(seen, 0, 0, 0, {"o": 1}, [HostSeen("o", "s", "c", "h", seen)]),
    )
    return {sample.name for family in metric_families(snapshot, now_ts=seen.timestamp()) for sample in family.samples}


def test_the_files_are_the_generators_output():
    files = _module().dashboard_files()
    assert sorted(files) == ["data-quality.json", "fleet.json", "job.json", "team.json"]
    for name, text in files.items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, f"run python docker/grafana/dashboards.py ({name})"


def test_every_query_uses_exposed_metrics_only():
    exposed = _exposed_names()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        queries = [t["expr"] for p in board["panels"] for t in p["targets"]]
        queries += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
        used = {
            name for q in queries for name in re.findall(r"\b[a-z_]+(?=[{)\s])", q) if name.startswith("carbonledger")
        }
        assert used and used <= exposed, (path.name, used - exposed)
        assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in board["panels"])
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_provisioning_points_at_the_dashboards():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "carbonledger.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/carbonledger"
    compose = yaml.safe_load((GRAFANA / "compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/carbonledger:ro" in volumes
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics" and scrape["authorization"]["type"] == "Bearer"
