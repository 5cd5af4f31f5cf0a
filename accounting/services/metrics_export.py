"""OpenTelemetry metrics export (OTLP over HTTP), an option beside the Prometheus ``/metrics``:
the same families, names and labels (``accounting.selectors.metrics.metric_families``), pushed
to an OpenTelemetry collector (or any OTLP/HTTP receiver) by ``manage.py metrics_otlp``.

Mapping: a Prometheus counter family becomes a monotonic cumulative Sum named as the family
(``carbonledger_energy_joules``; a collector's Prometheus exporter adds ``_total`` back), a gauge
a Gauge; each sample's labels are its data point's attributes; the unit follows the name's
suffix (``_joules`` J, ``_grams`` g, ``_seconds`` s, else 1). The packages are the ``otlp``
extra (``pip install carbonledger[otlp]``): the server runs without them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from accounting.domain.errors import StateError
from accounting.selectors.access import Principal
from accounting.selectors.metrics import metric_families, metrics_snapshot, recent_job_s

SERVICE_NAME = "carbonledger"
_UNITS = (("_joules", "J"), ("_grams", "g"), ("_seconds", "s"))


def otel_unit(name: str) -> str:
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return "1"


def _observations(points: list[tuple[dict[str, str], float]]) -> Callable[[Any], Iterable[Any]]:
    from opentelemetry.metrics import Observation

    def callback(_options: Any) -> Iterable[Any]:
        return [Observation(value, attributes) for attributes, value in points]

    return callback


def metrics_otlp_export(
    *,
    principal: Principal,
    endpoint: str,
    now: dt.datetime,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> int:
    """Read what ``principal`` sees and push it once to the OTLP/HTTP ``endpoint``
    (``http://collector:4318/v1/metrics``); returns the number of data points sent."""
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
        from opentelemetry.sdk.resources import Resource
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise StateError(
            "The OTLP export needs the otlp extra: pip install 'carbonledger[otlp]' "
            "(opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http)."
        ) from exc

    snapshot = metrics_snapshot(principal=principal, now=now, recent_s=recent_job_s())
    families = list(metric_families(snapshot, now_ts=now.timestamp()))

    # One collection, exported once: the in-memory reader collects, the exporter sends.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": SERVICE_NAME}))
    meter = provider.get_meter("carbonledger.ledger")
    points_sent = 0
    for family in families:
        points = [(dict(s.labels), float(s.value)) for s in family.samples]
        if not points:
            continue
        points_sent += len(points)
        create = meter.create_observable_counter if family.type == "counter" else meter.create_observable_gauge
        create(
            family.name,
            callbacks=[_observations(points)],
            unit=otel_unit(family.name),
            description=family.documentation,
        )
    exporter = OTLPMetricExporter(endpoint=endpoint, headers=dict(headers or {}), timeout=timeout_s)
    try:
        data = reader.get_metrics_data()
        result = exporter.export(data, timeout_millis=timeout_s * 1000) if data is not None else None
    finally:
        exporter.shutdown()
        provider.shutdown()
    if result != MetricExportResult.SUCCESS:
        raise StateError(f"The OTLP receiver at {endpoint} did not accept the export.")
    return points_sent
