"""Inference services: functional units from the serving engine's own Prometheus counters, and
a service's energy and carbon per request, per 1k input and per 1k output tokens, per hour and
per day over any period (SCI per unit for a service that never "ends").

Counters per server, as each exposes them at its metrics endpoint (names checked against the
servers' sources and documentation, 2026):

- **vllm**: requests ``vllm:request_success_total`` (one series per ``finished_reason``), input
  ``vllm:prompt_tokens_total``, output ``vllm:generation_tokens_total``; model label ``model_name``.
- **tgi** (text-generation-inference's router): requests ``tgi_request_success``, input
  ``tgi_request_input_length_sum``, output ``tgi_request_generated_tokens_sum`` (histogram sums,
  added as each request finishes); no model label.
- **trtllm** (``trtllm-serve``, at ``/prometheus/metrics``): requests
  ``trtllm_request_success_total``, input ``trtllm_prompt_tokens_total``, output
  ``trtllm_generation_tokens_total``; model label ``model_name``.
- **triton**: requests ``nv_inference_request_success``; no token counters; model label ``model``.

Every series of a counter is summed (engines, finish reasons, versions), within one model when
the scrape names several. Triton counts a request once per model it passes through (an
ensemble and each of its steps), so a Triton scrape with several models needs the model that
answers the clients. Triton has no token counters (its TensorRT-LLM backend's token figures are
per-iteration gauges, not totals): a Triton service has per-request rates only.

A counter restarts from 0 when the server restarts; a drop between two readings is such a
restart, and the new value counts from 0 (Prometheus's ``increase`` does the same).

Pure: stdlib only. Time comes in as arguments.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from accounting.domain.errors import InputError
from accounting.domain.units import S_PER_DAY, S_PER_H

TOKENS_PER_UNIT = 1000.0  # rates are per 1k tokens


@dataclass(frozen=True)
class ServerCounters:
    """The counter names of one serving engine (None: it has no such counter)."""

    requests: str
    input_tokens: str | None
    output_tokens: str | None
    model_label: str | None


SERVERS: dict[str, ServerCounters] = {
    "vllm": ServerCounters(
        "vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "model_name"
    ),
    "tgi": ServerCounters(
        "tgi_request_success", "tgi_request_input_length_sum", "tgi_request_generated_tokens_sum", None
    ),
    "trtllm": ServerCounters(
        "trtllm_request_success_total", "trtllm_prompt_tokens_total", "trtllm_generation_tokens_total", "model_name"
    ),
    "triton": ServerCounters("nv_inference_request_success", None, None, "model"),
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class CounterTotals:
    """One scrape's totals, summed over the series of the chosen model."""

    requests_total: float
    input_tokens_total: float | None
    output_tokens_total: float | None
    model: str | None  # the model the totals are for (None: the server has no model label)


# --- the text exposition format (Prometheus 0.0.4 and OpenMetrics sample lines) ----------------


def _parse_labels(line: str, start: int, lineno: int) -> tuple[dict[str, str], int]:
    """Labels from ``line[start]`` (just after ``{``) to the closing ``}``; returns them and the
    index after it. Quoted values may hold ``}``, ``,`` and the escapes ``\\\\``, ``\\"``, ``\\n``."""
    labels: dict[str, str] = {}
    i = start
    while True:
        while i < len(line) and line[i] in " ,":
            i += 1
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        eq = line.find("=", i)
        if eq < 0 or eq + 1 >= len(line) or line[eq + 1] != '"':
            raise InputError("metrics", f'line {lineno}: a label needs name="value"')
        name = line[i:eq].strip()
        i = eq + 2
        value: list[str] = []
        while True:
            if i >= len(line):
                raise InputError("metrics", f"line {lineno}: unterminated label value")
            char = line[i]
            if char == "\\" and i + 1 < len(line):
                value.append({"n": "\n", "\\": "\\", '"': '"'}.get(line[i + 1], line[i + 1]))
                i += 2
                continue
            if char == '"':
                i += 1
                break
            value.append(char)
            i += 1
        labels[name] = "".join(value)


def _parse_value(text: str, lineno: int) -> float:
    try:
        return float(text)  # also +Inf, -Inf, NaN
    except ValueError:
        raise InputError("metrics", f"line {lineno}: {text[:40]!r} is not a number") from None


def parse_exposition(text: str) -> Iterator[Sample]:
    """Every sample of a Prometheus text (or OpenMetrics) exposition; comments, ``# TYPE``/``# HELP``
    and blank lines are skipped, a trailing timestamp is ignored."""
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace >= 0 and (space < 0 or brace < space):
            name = line[:brace]
            labels, end = _parse_labels(line, brace + 1, lineno)
            rest = line[end:].split()
        else:
            name, labels, rest = line.split()[0], {}, line.split()[1:]
        if not rest:
            raise InputError("metrics", f"line {lineno}: sample {name!r} has no value")
        yield Sample(name, labels, _parse_value(rest[0], lineno))


def counter_totals(text: str, *, server: str, model: str | None = None) -> CounterTotals:
    """The server's request and token totals in one scrape (``model``: the model's series only)."""
    counters = SERVERS.get(server)
    if counters is None:
        raise InputError("server", f"unknown server {server!r}: one of {', '.join(sorted(SERVERS))}")
    wanted = {counters.requests, counters.input_tokens, counters.output_tokens} - {None}
    samples = [s for s in parse_exposition(text) if s.name in wanted]
    if not any(s.name == counters.requests for s in samples):
        raise InputError("metrics", f"no {counters.requests} in the scrape: is it a {server} metrics page?")
    label = counters.model_label
    if label is not None:
        models = sorted({s.labels.get(label, "") for s in samples if s.name == counters.requests})
        if model is None and len(models) > 1:
            raise InputError(
                "model", f"the scrape has several models ({', '.join(models)}): name the one the service answers with"
            )
        if model is None:
            model = models[0]
        elif model not in models:
            raise InputError("model", f"no series of model {model!r} in the scrape (it has {', '.join(models)})")
        samples = [s for s in samples if s.labels.get(label, "") == model]
    elif model is not None:
        raise InputError("model", f"{server} metrics carry no model label: leave model out")

    def total(name: str | None) -> float | None:
        if name is None:
            return None
        values = [s.value for s in samples if s.name == name]
        if not values:
            return None
        result = math.fsum(values)
        if not math.isfinite(result) or result < 0:
            raise InputError("metrics", f"{name} is {result}: a counter is finite and not negative")
        return result

    requests = total(counters.requests)
    assert requests is not None  # checked above
    return CounterTotals(requests, total(counters.input_tokens), total(counters.output_tokens), model or None)


# --- rates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterReading:
    at: dt.datetime
    requests_total: float
    input_tokens_total: float | None
    output_tokens_total: float | None


def counter_increase(values: Sequence[float]) -> float:
    """What a counter counted over consecutive readings; a drop is a restart (counted from 0)."""
    increase = 0.0
    for before, after in itertools.pairwise(values):
        increase += after - before if after >= before else after
    return increase


def _increase_or_none(values: Sequence[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return counter_increase([v for v in values if v is not None])


@dataclass(frozen=True)
class UnitRate:
    energy_j: float
    co2e_g: float


@dataclass(frozen=True)
class ServiceEfficiency:
    """A service's footprint over a period and its rates. Each rate divides the whole footprint
    by one functional unit (they are alternatives, not shares): per request, per 1k input
    tokens, per 1k output tokens; per hour and per day divide by the period's length."""

    period_s: float
    energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float
    requests: float | None
    input_tokens: float | None
    output_tokens: float | None

    @property
    def co2e_g(self) -> float:
        return self.co2e_operational_g + self.co2e_embodied_g

    def _per(self, count: float | None, scale: float = 1.0) -> UnitRate | None:
        if count is None or count <= 0:
            return None
        return UnitRate(self.energy_j * scale / count, self.co2e_g * scale / count)

    @property
    def per_request(self) -> UnitRate | None:
        return self._per(self.requests)

    @property
    def per_1k_input_tokens(self) -> UnitRate | None:
        return self._per(self.input_tokens, TOKENS_PER_UNIT)

    @property
    def per_1k_output_tokens(self) -> UnitRate | None:
        return self._per(self.output_tokens, TOKENS_PER_UNIT)

    @property
    def per_hour(self) -> UnitRate | None:
        return self._per(self.period_s / S_PER_H)

    @property
    def per_day(self) -> UnitRate | None:
        return self._per(self.period_s / S_PER_DAY)


def service_efficiency(
    *,
    readings: Sequence[CounterReading],
    period_s: float,
    energy_j: float,
    co2e_operational_g: float,
    co2e_embodied_g: float,
) -> ServiceEfficiency:
    """The rates over a period from its energy and carbon and the counter readings that bound it
    (in time order; fewer than two: no units counted)."""
    if period_s <= 0:
        raise InputError("end", "the period must end after it starts")
    ordered = sorted(readings, key=lambda r: r.at)
    if len(ordered) < 2:
        requests = input_tokens = output_tokens = None
    else:
        requests = counter_increase([r.requests_total for r in ordered])
        input_tokens = _increase_or_none([r.input_tokens_total for r in ordered])
        output_tokens = _increase_or_none([r.output_tokens_total for r in ordered])
    return ServiceEfficiency(
        period_s=period_s,
        energy_j=energy_j,
        co2e_operational_g=co2e_operational_g,
        co2e_embodied_g=co2e_embodied_g,
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
