"""A real Prometheus scrapes a running server's /metrics; every query of every Grafana dashboard
(docker/grafana/dashboards.py) is run through Prometheus's HTTP API and must return exactly the
series and values the ledger's roll-ups imply.

Prometheus is Debian's package (scripts/lib.sh ``ensure_prometheus`` installs it); the test runs
its own on a free loopback port with its own storage under tmp_path, and skips with a message
only where the binary is absent.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from accounting import models as m
from accounting.tokens import token_create
from telemetry.models import HostStream, TelemetryBatch
from tests import factories as f
from tests.accounting.test_api_support import build_world
from tests.integration.conftest import ROOT, Processes, WebServer, _free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
HOUR = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
MJ = 1e6


def _dashboards():
    spec = importlib.util.spec_from_file_location("grafana_dashboards", ROOT / "docker" / "grafana" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["grafana_dashboards"] = module
    spec.loader.exec_module(module)
    return module


def _ledger() -> str:
    """Roll-up rows of acme (and of globex, which acme's admin token must not see); returns the
    admin token of acme."""
    world = build_world()
    site = world.cluster_a.site
    team_days = [
        (world.team, 7.2 * MJ, 0.72 * MJ, 500.0, 100.0),
        (world.team2, 3.6 * MJ, 0.0, 250.0, 50.0),
        (None, 1.8 * MJ, 1.8 * MJ, 125.0, 25.0),
    ]
    for team, energy, idle, operational, embodied in team_days:
        m.TeamDay.objects.create(
            org=world.org, team=team, site=site, day=dt.date(2026, 11, 26), energy_j=energy,
            gpu_idle_energy_j=idle, co2e_operational_g=operational, co2e_embodied_g=embodied,
        )  # fmt: skip
    m.TeamDay.objects.create(
        org=world.other_org, team=world.other_team, site=world.other_cluster.site, day=dt.date(2026, 11, 26),
        energy_j=999.0, co2e_operational_g=999.0,
    )  # fmt: skip
    h100 = f.HardwareModelFactory()
    a100 = f.HardwareModelFactory(key="a100-sxm4-80gb", name="NVIDIA A100")
    gpu0 = f.DeviceFactory(host=world.host_a, index=0, hardware_model=h100)
    gpu1 = f.DeviceFactory(host=world.host_a, index=1, hardware_model=a100)
    device_hours = [
        (gpu0, 0, 2.4 * MJ, 0.24 * MJ, 3600.0, 200.0),
        (gpu0, 1, 1.2 * MJ, 0.12 * MJ, 3600.0, 100.0),
        (gpu1, 0, 0.72 * MJ, 0.72 * MJ, 0.0, 40.0),
    ]
    for device, hour, energy, idle, allocated, operational in device_hours:
        m.DeviceHour.objects.create(
            device=device, hour=HOUR + dt.timedelta(hours=hour), energy_j=energy, idle_energy_j=idle,
            allocated_s=allocated, observed_s=3600.0, co2e_operational_g=operational, co2e_embodied_g=10.0,
        )  # fmt: skip
    now = timezone.now()
    running = f.JobFactory(
        cluster=world.cluster_a, team=world.team, scheduler_job_id="1001", status="running", started_at=HOUR,
        units={"tokens": 1.5e9, "requests": 3000},
    )  # fmt: skip
    for device in (gpu0, gpu1):
        m.JobAllocation.objects.create(job=running, device=device, start=HOUR)
    ended = f.JobFactory(
        cluster=world.cluster_a, team=world.team2, scheduler_job_id="1002", status="completed", started_at=HOUR,
        ended_at=now - dt.timedelta(minutes=10),
    )  # fmt: skip
    for hour, energy, operational in ((0, 1.8 * MJ, 150.0), (1, 0.9 * MJ, 75.0)):
        m.JobHour.objects.create(
            job=running, hour=HOUR + dt.timedelta(hours=hour), energy_j=energy, gpu_energy_j=energy * 2 / 3,
            gpu_idle_energy_j=energy / 10, measured_gpu_energy_j=energy * 0.6, co2e_operational_g=operational,
            co2e_embodied_g=5.0,
        )  # fmt: skip
    m.JobHour.objects.create(job=ended, hour=HOUR, energy_j=0.36 * MJ, gpu_energy_j=0.36 * MJ, co2e_operational_g=30.0)
    HostStream.objects.create(
        host=world.host_a, last_seq=1, last_seen_at=dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    )
    for status in ("pending", "failed", "done"):
        TelemetryBatch.objects.create(
            host=world.host_a, batch_id=uuid.uuid4(), received_at=now - dt.timedelta(seconds=120),
            first_start=now, last_end=now, first_seq=1, last_seq=1, gpu_window_count=1, host_window_count=1,
            gpu_energy_j=1.0, host_energy_j=1.0, status=status,
        )  # fmt: skip
    return token_create(name="prometheus", org=world.org, scope="admin").secret


JOB = "a100-sxm4-80gb+h100-sxm5-80gb"
# (dashboard uid, panel title) -> {labels of the series: value}; what the roll-ups above imply.
EXPECTED: dict[tuple[str, str], dict[tuple, float]] = {
    ("carbonledger-fleet", "Energy, all time"): {(): 12.6 / 3.6},
    ("carbonledger-fleet", "Carbon, all time"): {(): 1.05},
    ("carbonledger-fleet", "Embodied share of carbon"): {(): 175 / 1050},
    ("carbonledger-fleet", "Fleet overhead share of energy"): {(): 1.8 / 12.6},
    ("carbonledger-fleet", "Energy by account"): {
        (("account", "job"),): 2.8,
        (("account", "idle_allocated"),): 0.2,
        (("account", "fleet_overhead"),): 0.5,
    },
    # Prometheus drops an empty label: the fleet-overhead account's team="" is no team label.
    ("carbonledger-fleet", "Carbon by team"): {(("team", "recsys"),): 0.6, (("team", "llm"),): 0.3, (): 0.15},
    ("carbonledger-fleet", "Power by account"): {
        (("account", "job"),): 0.0,
        (("account", "idle_allocated"),): 0.0,
        (("account", "fleet_overhead"),): 0.0,
    },
    ("carbonledger-fleet", "Carbon rate by team"): {(("team", "recsys"),): 0.0, (("team", "llm"),): 0.0, (): 0.0},
    ("carbonledger-fleet", "GPU energy by device model"): {
        (("device_model", "h100-sxm5-80gb"), ("state", "active")): 0.9,
        (("device_model", "h100-sxm5-80gb"), ("state", "idle")): 0.1,
        (("device_model", "a100-sxm4-80gb"), ("state", "active")): 0.0,
        (("device_model", "a100-sxm4-80gb"), ("state", "idle")): 0.2,
    },
    ("carbonledger-fleet", "GPU carbon by device model"): {
        (("device_model", "h100-sxm5-80gb"), ("kind", "operational")): 0.3,
        (("device_model", "h100-sxm5-80gb"), ("kind", "embodied")): 0.02,
        (("device_model", "a100-sxm4-80gb"), ("kind", "operational")): 0.04,
        (("device_model", "a100-sxm4-80gb"), ("kind", "embodied")): 0.01,
    },
    ("carbonledger-fleet", "GPU allocation by cluster"): {(("cluster", "hpc-a"),): 7200 / 10800},
    ("carbonledger-team", "Energy, all time"): {(("team", "recsys"),): 2.0, (("team", "llm"),): 1.0},
    ("carbonledger-team", "Carbon by kind"): {
        (("kind", "operational"), ("team", "recsys")): 0.5,
        (("kind", "embodied"), ("team", "recsys")): 0.1,
        (("kind", "operational"), ("team", "llm")): 0.25,
        (("kind", "embodied"), ("team", "llm")): 0.05,
        (("kind", "operational"),): 0.125,
        (("kind", "embodied"),): 0.025,
    },
    ("carbonledger-team", "Idle share of energy"): {(("team", "recsys"),): 0.1, (("team", "llm"),): 0.0},
    ("carbonledger-team", "Jobs running and recently ended"): {
        (("cluster", "hpc-a"), ("device_model", JOB), ("job_id", "1001")): 0.75,
        (("cluster", "hpc-a"), ("device_model", "unknown"), ("job_id", "1002")): 0.1,
    },
    ("carbonledger-team", "Carbon rate"): {(("team", "recsys"),): 0.0, (("team", "llm"),): 0.0, (): 0.0},
    ("carbonledger-job", "Energy"): {(): 0.75},
    ("carbonledger-job", "Carbon by kind"): {(("kind", "operational"),): 225.0, (("kind", "embodied"),): 10.0},
    ("carbonledger-job", "Energy per unit"): {(("unit", "tokens"),): 2.7e6 / 1.5e9, (("unit", "requests"),): 900.0},
    ("carbonledger-job", "Carbon per unit"): {(("unit", "tokens"),): 235 / 1.5e9, (("unit", "requests"),): 235 / 3000},
    ("carbonledger-job", "Measured share of GPU energy"): {(): 0.9},
    ("carbonledger-job", "Idle share of energy"): {(): 0.1},
    ("carbonledger-job", "Running"): {(): 1.0},
    ("carbonledger-job", "Power"): {(): 0.0},
    ("carbonledger-data-quality", "Attribution queue"): {
        (("state", "pending"),): 1.0,
        (("state", "claimed"),): 0.0,
        (("state", "failed"),): 1.0,
    },
    ("carbonledger-data-quality", "Jobs running"): {(): 1.0},
    ("carbonledger-data-quality", "Host last seen"): {(("cluster", "hpc-a"), ("host", "gpu-node-01")): 1795694400000},
    ("carbonledger-data-quality", "Measured share of GPU energy by job"): {
        (("cluster", "hpc-a"), ("job_id", "1001")): 0.9,
        (("cluster", "hpc-a"), ("job_id", "1002")): 0.0,
    },
    ("carbonledger-data-quality", "Estimated GPU energy by cluster"): {(("cluster", "hpc-a"),): 0.15},
}
# Time-dependent: the seconds since the newest batch (received 120 s before the scrape).
BOUNDED = {("carbonledger-data-quality", "Ingest lag"): (120.0, 600.0)}
VARIABLES = {"org": "acme", "site": ".*", "cluster": ".*", "team": ".*", "job_id": "1001", "__rate_interval": "1m"}


class Prometheus:
    def __init__(self, binary: str, workdir: Path, *, target: str, token: str) -> None:
        self.port = _free_port()
        token_file = workdir / "token"
        token_file.write_text(token)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: carbonledger\n    metrics_path: /metrics\n"
            f"    authorization:\n      type: Bearer\n      credentials_file: {token_file}\n"
            f'    static_configs:\n      - targets: ["{target}"]\n'
        )
        self.log = open(workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple, float]:
        data = self.api("query", query=expr)
        return {tuple(sorted((k, v) for k, v in r["metric"].items())): float(r["value"][1]) for r in data["result"]}

    def ready(self) -> bool:
        """Three scrapes of the server stored (a rate over them is defined)."""
        try:
            counts = self.query("count_over_time(carbonledger_job_running[1m])")
        except OSError:
            return False
        return bool(counts) and min(counts.values()) >= 3

    def scrape_errors(self) -> list[str]:
        return [t["lastError"] for t in self.api("targets")["activeTargets"]]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


# Panels shown in docs/integrations.md, as Prometheus's own graph page renders their queries.
SCREENSHOTS = {
    "prometheus-energy-by-account.png": ("carbonledger-fleet", "Energy by account"),
    "prometheus-job-energy-per-unit.png": ("carbonledger-job", "Energy per unit"),
    "prometheus-gpu-energy-by-model.png": ("carbonledger-fleet", "GPU energy by device model"),
}


def _screenshots(prometheus: Prometheus, dashboards, where: Path) -> None:
    """PNGs of Prometheus's table view of dashboard queries (CARBONLEDGER_SCREENSHOTS=DIR):
    the images of docs/integrations.md, from this test's data. Needs Debian's chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed: no screenshots")
    where.mkdir(parents=True, exist_ok=True)
    panels = {(d.uid, p.title): p for d in dashboards.DASHBOARDS for p in d.panels}
    for name, key in SCREENSHOTS.items():
        query = urllib.parse.urlencode(
            {"g0.expr": _substitute(panels[key].expr), "g0.tab": "1", "g0.range_input": "5m"}
        )
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,560",
                "--virtual-time-budget=8000", f"--screenshot={where / name}",
                f"http://127.0.0.1:{prometheus.port}/graph?{query}",
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def _substitute(expr: str) -> str:
    return re.sub(r"\$(\w+)", lambda match: VARIABLES[match.group(1)], expr)


def test_every_dashboard_query_returns_the_ledger_values(redis_server, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "Debian's prometheus is not installed and could not be installed here "
            "(scripts/test.sh runs ensure_prometheus: apt-get install prometheus)"
        )
    token = _ledger()
    web = WebServer(Processes(redis_server, connection.settings_dict["NAME"]).env())
    web.start()
    prometheus = Prometheus(binary, tmp_path, target=f"127.0.0.1:{web.port}", token=token)
    try:
        try:
            wait_for(prometheus.ready, timeout_s=60, interval_s=0.5, what="three scrapes of /metrics")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; scrape errors: {prometheus.scrape_errors()}") from None
        assert prometheus.query('up{job="carbonledger"}') == {
            (("__name__", "up"), ("instance", f"127.0.0.1:{web.port}"), ("job", "carbonledger")): 1.0
        }
        assert prometheus.query('count({__name__=~"carbonledger_.+", org="globex"})') == {}
        dashboards = _dashboards()
        checked = set()
        for dashboard in dashboards.DASHBOARDS:
            for variable in dashboard.variables:
                selector = re.fullmatch(r"label_values\((.+), (\w+)\)", variable.query)
                assert selector, variable.query
                values = prometheus.api("series", **{"match[]": _substitute(selector.group(1))})
                assert values and all(variable.label for _ in values), (dashboard.uid, variable.name)
            for panel in dashboard.panels:
                expr = _substitute(panel.expr)
                for metric in set(re.findall(r"carbonledger_\w+", expr)):
                    assert prometheus.query(f"count({metric})"), (dashboard.uid, panel.title, metric)
                key = (dashboard.uid, panel.title)
                got = prometheus.query(expr)
                if key in BOUNDED:
                    low, high = BOUNDED[key]
                    assert list(got) == [()] and low <= got[()] < high, (key, got)
                else:
                    expected = {tuple(sorted(labels)): value for labels, value in EXPECTED[key].items()}
                    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (key, got)
                checked.add(key)
        assert checked == set(EXPECTED) | set(BOUNDED)
        if os.environ.get("CARBONLEDGER_SCREENSHOTS"):
            _screenshots(prometheus, dashboards, Path(os.environ["CARBONLEDGER_SCREENSHOTS"]))
    finally:
        prometheus.stop()
        web.stop()
