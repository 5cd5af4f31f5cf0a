"""The job page's service card: an inference service's energy and carbon per request, per 1k
input and output tokens, per hour and per day over a chosen period (``accounting.selectors.
serving.service_report``, the API's figures), and the same rates hour by hour for its chart.

An hour's rate divides the hour's ledger row (``JobHour``) by what the server counted in it
(``accounting.selectors.serving.service_hour_counts``: the increase of its counters from the
last reading at or before the hour's start to the last at or before its end, a drop counted as
a restart from 0; the period's units are the sum of its hours'). An hour without a ledger row, or in which the server
counted no unit, has no rate (a gap in the chart, not a zero or an infinity).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Exists, OuterRef

from accounting.domain.carbon import basis_mix
from accounting.domain.serving import TOKENS_PER_UNIT
from accounting.domain.units import S_PER_H, kg_from_g, kwh_from_j
from accounting.models import Job, JobHour, ServingCounters
from accounting.selectors.access import Principal, jobs_visible
from accounting.selectors.serving import ServiceReport, service_report_by_hour

HOUR = dt.timedelta(hours=1)
J_PER_WH = S_PER_H  # 1 Wh = 1 W x 3600 s
# The card's period choices: key -> (label, span; None: the service's whole life).
SERVICE_PERIODS: dict[str, tuple[str, dt.timedelta | None]] = {
    "24h": ("Last 24 h", dt.timedelta(hours=24)),
    "7d": ("Last 7 days", dt.timedelta(days=7)),
    "30d": ("Last 30 days", dt.timedelta(days=30)),
    "life": ("Whole life", None),
}
DEFAULT_SERVICE_PERIOD = "7d"


@dataclass(frozen=True)
class ServiceRateRow:
    """One line of the card: the period's footprint divided by one unit."""

    key: str  # per_request, per_1k_input_tokens, per_1k_output_tokens, per_hour, per_day
    label: str
    energy_wh: float | None
    co2e_g: float | None
    # As shown: Wh and gCO2e per unit, kWh and kgCO2e per hour and per day.
    energy: float | None
    energy_unit: str
    co2e: float | None
    co2e_unit: str


@dataclass(frozen=True)
class ServiceHours:
    """Hour by hour (``hour``: its start, UTC): what the server counted, the ledger's energy and
    carbon (None: no ledger row yet) and the rates (None: no rate that hour)."""

    hour: list[dt.datetime]
    requests: list[float | None]
    input_tokens: list[float | None]
    output_tokens: list[float | None]
    energy_j: list[float | None]
    co2e_g: list[float | None]
    energy_wh_per_request: list[float | None]
    co2e_g_per_request: list[float | None]
    energy_wh_per_1k_input_tokens: list[float | None]
    co2e_g_per_1k_input_tokens: list[float | None]
    energy_wh_per_1k_output_tokens: list[float | None]
    co2e_g_per_1k_output_tokens: list[float | None]


@dataclass(frozen=True)
class ServiceRates:
    period: str  # a key of SERVICE_PERIODS
    period_label: str
    periods: list[tuple[str, str]]
    report: ServiceReport | None  # None: the period holds no whole hour yet
    rows: list[ServiceRateRow]
    basis_label: str  # what the carbon figure counts (operational basis + embodied)
    hours: ServiceHours
    period_h: float | None = None
    energy_kwh: float | None = None
    co2e_kg: float | None = None


def _floor_hour(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: dt.datetime) -> dt.datetime:
    floor = _floor_hour(at)
    return floor if floor == at else floor + HOUR


def service_period_bounds(*, job: Job, period: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Whole UTC hours ``[start, end)``: the period ends where the service ended, or at the last
    whole hour while it runs; it starts ``span`` earlier, never before the service started."""
    end = _ceil_hour(job.ended_at) if job.ended_at is not None else _floor_hour(now)
    start = _floor_hour(job.started_at)
    span = SERVICE_PERIODS[period][1]
    if span is not None:
        start = max(start, end - span)
    return start, end


def _per(value: float | None, count: float | None, scale: float) -> float | None:
    if value is None or count is None or count <= 0:
        return None
    return value * scale / count


def _rows(report: ServiceReport) -> list[ServiceRateRow]:
    eff = report.efficiency
    rates = (
        ("per_request", "per request", eff.per_request),
        ("per_1k_input_tokens", "per 1k input tokens", eff.per_1k_input_tokens),
        ("per_1k_output_tokens", "per 1k output tokens", eff.per_1k_output_tokens),
        ("per_hour", "per hour", eff.per_hour),
        ("per_day", "per day", eff.per_day),
    )
    rows = []
    for key, label, rate in rates:
        energy_wh = None if rate is None else rate.energy_j / J_PER_WH
        co2e_g = None if rate is None else rate.co2e_g
        if key in ("per_hour", "per_day"):
            shown = (
                None if rate is None else kwh_from_j(rate.energy_j),
                "kWh",
                None if rate is None else kg_from_g(rate.co2e_g),
                "kgCO2e",
            )
        else:
            shown = (energy_wh, "Wh", co2e_g, "gCO2e")
        rows.append(ServiceRateRow(key, label, energy_wh, co2e_g, *shown))
    return rows


def _empty_hours() -> ServiceHours:
    return ServiceHours(*([] for _ in range(12)))


def service_rates_get(*, scope: Principal, job_id: int, period: str, now: dt.datetime) -> ServiceRates | None:
    """The service card of a job the viewer sees that has serving counters (else None), over
    ``period`` (a key of ``SERVICE_PERIODS``; an unknown key reads as the default)."""
    job = (
        jobs_visible(principal=scope)
        .filter(Exists(ServingCounters.objects.filter(job=OuterRef("pk"))), id=job_id)
        .first()
    )
    if job is None:
        return None
    if period not in SERVICE_PERIODS:
        period = DEFAULT_SERVICE_PERIOD
    start, end = service_period_bounds(job=job, period=period, now=now)
    periods = [(key, label) for key, (label, _span) in SERVICE_PERIODS.items()]
    label = SERVICE_PERIODS[period][0]
    if end <= start:  # a service younger than its first whole hour
        return ServiceRates(period, label, periods, None, [], "", _empty_hours())
    report, counts = service_report_by_hour(job=job, start=start, end=end, now=now)
    ledger = {
        hour.astimezone(dt.UTC): (energy, operational + embodied, direct, lifecycle, co2_only)
        for hour, energy, operational, embodied, direct, lifecycle, co2_only in JobHour.objects.filter(
            job=job, hour__gte=start, hour__lt=end
        ).values_list(
            "hour",
            "energy_j",
            "co2e_operational_g",
            "co2e_embodied_g",
            "direct_basis_energy_j",
            "lifecycle_basis_energy_j",
            "co2_only_energy_j",
        )
    }
    mix = basis_mix(
        energy_j=sum(v[0] for v in ledger.values()),
        direct_energy_j=sum(v[2] for v in ledger.values()),
        lifecycle_energy_j=sum(v[3] for v in ledger.values()),
        co2_only_energy_j=sum(v[4] for v in ledger.values()),
    )
    basis = (
        f"operational, Scope 2 location-based ({mix.label} intensity), + embodied"
        if ledger
        else "operational, Scope 2 location-based, + embodied"
    )
    hours = sorted(set(ledger) | set(counts))
    series: dict[str, list] = {name: [] for name in ServiceHours.__dataclass_fields__}
    for hour in hours:
        count = counts.get(hour)
        requests, inputs, outputs = (count.requests, count.input_tokens, count.output_tokens) if count else (None,) * 3
        energy_j, co2e_g = ledger[hour][:2] if hour in ledger else (None, None)
        energy_wh = None if energy_j is None else energy_j / J_PER_WH
        series["hour"].append(hour)
        series["requests"].append(requests)
        series["input_tokens"].append(inputs)
        series["output_tokens"].append(outputs)
        series["energy_j"].append(energy_j)
        series["co2e_g"].append(co2e_g)
        series["energy_wh_per_request"].append(_per(energy_wh, requests, 1.0))
        series["co2e_g_per_request"].append(_per(co2e_g, requests, 1.0))
        series["energy_wh_per_1k_input_tokens"].append(_per(energy_wh, inputs, TOKENS_PER_UNIT))
        series["co2e_g_per_1k_input_tokens"].append(_per(co2e_g, inputs, TOKENS_PER_UNIT))
        series["energy_wh_per_1k_output_tokens"].append(_per(energy_wh, outputs, TOKENS_PER_UNIT))
        series["co2e_g_per_1k_output_tokens"].append(_per(co2e_g, outputs, TOKENS_PER_UNIT))
    eff = report.efficiency
    return ServiceRates(
        period,
        label,
        periods,
        report,
        _rows(report),
        basis,
        ServiceHours(**series),
        period_h=eff.period_s / S_PER_H,
        energy_kwh=kwh_from_j(eff.energy_j),
        co2e_kg=kg_from_g(eff.co2e_g),
    )


__all__ = [
    "DEFAULT_SERVICE_PERIOD",
    "SERVICE_PERIODS",
    "ServiceHours",
    "ServiceRateRow",
    "ServiceRates",
    "service_period_bounds",
    "service_rates_get",
]
