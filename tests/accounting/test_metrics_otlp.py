# ruff: noqa: F811 - pytest fixtures imported from test_api_metrics / test_api_support
"""manage.py metrics_otlp: the /metrics families pushed over OTLP/HTTP to a receiver the test
runs, decoded with the OpenTelemetry protobuf definitions: same names, labels and values."""

from __future__ import annotations

import http.server
import threading

import pytest
from django.core.management import CommandError, call_command

from tests.accounting.test_api_metrics import ledger  # noqa: F401
from tests.accounting.test_api_support import world  # noqa: F401

pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.http", reason="the otlp extra is not installed (pip install -e '.[dev]')"
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

pytestmark = pytest.mark.django_db


class Receiver:
    """An OTLP/HTTP metrics receiver: POST /v1/metrics, protobuf body, 200 with an empty answer."""

    def __init__(self, *, status: int = 200) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/metrics" and self.headers["Content-Type"] == "application/x-protobuf":
                    message = ExportMetricsServiceRequest()
                    message.ParseFromString(body)
                    receiver.requests.append(message)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def points(self) -> dict[tuple[str, tuple], tuple[float, str, str]]:
        """(metric name, sorted attributes) -> (value, kind, unit) of the last export."""
        out = {}
        for resource in self.requests[-1].resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for point in data.data_points:
                        attributes = tuple(sorted((a.key, a.value.string_value) for a in point.attributes))
                        value = point.as_double if point.HasField("as_double") else float(point.as_int)
                        out[(metric.name, attributes)] = (value, kind, metric.unit)
                    if kind == "sum":
                        assert data.is_monotonic and data.aggregation_temporality == 2  # cumulative
        return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_push_has_the_names_labels_and_values_of_the_exposition(ledger, receiver, capsys):
    call_command(
        "metrics_otlp", "--org", "acme", "--endpoint", receiver.endpoint, "--count", "1", "--header", "X-Scope=acme"
    )
    assert len(receiver.requests) == 1 and receiver.headers[0]["x-scope"] == "acme"
    resource = receiver.requests[0].resource_metrics[0].resource
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "carbonledger"
    points = receiver.points()
    team = (("account", "job"), ("org", "acme"), ("site", "paris"), ("team", "recsys"))
    assert points[("carbonledger_energy_joules", team)] == (114.0, "sum", "J")
    assert points[("carbonledger_co2e_grams", (("account", "fleet_overhead"), ("kind", "operational"), ("org", "acme"), ("site", "paris"), ("team", "")))] == (4.0, "sum", "g")  # fmt: skip
    job = (("cluster", "hpc-a"), ("device_model", "a100-sxm4-80gb+h100-sxm5-80gb"), ("job_id", "1001"), ("org", "acme"), ("site", "paris"), ("team", "recsys"))  # fmt: skip
    assert points[("carbonledger_job_energy_joules", (("account", "idle_allocated"), *job))] == (180.0, "sum", "J")
    assert points[("carbonledger_job_functional_units", (*job, ("unit", "tokens")))] == (2.5e6, "sum", "1")
    assert points[("carbonledger_job_running", job)] == (1.0, "gauge", "1")
    assert points[("carbonledger_gpu_allocated_seconds", (("cluster", "hpc-a"), ("device_model", "h100-sxm5-80gb"), ("org", "acme"), ("site", "paris")))] == (7200.0, "sum", "s")  # fmt: skip
    assert points[("carbonledger_attribution_queue_batches", (("state", "pending"),))] == (2.0, "gauge", "1")
    assert not [key for key in points if ("org", "globex") in key[1]]
    assert capsys.readouterr().out == f"pushed {len(points)} data points to {receiver.endpoint}\n"
    # every sample of the Prometheus exposition is a data point, with the family's name
    from prometheus_client.parser import text_string_to_metric_families

    text = ledger.client("admin").get("/metrics").content.decode()
    exposed = {
        (family.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if family.name != "carbonledger_ingest_lag_seconds"
    }
    assert exposed == {key for key in points if key[0] != "carbonledger_ingest_lag_seconds"}


def test_all_organisations_and_failures(ledger):
    receiver = Receiver()
    try:
        call_command("metrics_otlp", "--all-orgs", "--endpoint", receiver.endpoint, "--count", "1")
        assert any(("org", "globex") in key[1] for key in receiver.points())
    finally:
        receiver.close()
    refusing = Receiver(status=400)
    try:
        with pytest.raises(CommandError, match="did not accept the export"):
            call_command("metrics_otlp", "--org", "acme", "--endpoint", refusing.endpoint, "--count", "1")
    finally:
        refusing.close()
    with pytest.raises(CommandError, match="no organisation 'nope'"):
        call_command("metrics_otlp", "--org", "nope", "--endpoint", "http://127.0.0.1:9/v1/metrics", "--count", "1")
