"""Serving counters from each inference server's real metrics format, and a service's rates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from accounting.domain.errors import InputError
from accounting.domain.serving import (
    CounterReading,
    CounterTotals,
    UnitRate,
    counter_increase,
    counter_totals,
    parse_exposition,
    service_efficiency,
)

DATA = Path(__file__).parent / "data" / "serving"
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _scrape(server: str) -> str:
    return (DATA / f"{server}.txt").read_text()


def test_vllm_sums_engines_and_finish_reasons():
    assert counter_totals(_scrape("vllm"), server="vllm") == CounterTotals(
        requests_total=2000.0,  # 1180 + 60 + 10 (engine 0) + 730 + 20 + 0 (engine 1)
        input_tokens_total=2_000_000.0,  # 1.23456e+06 + 765440
        output_tokens_total=500_000.0,  # 310250 + 189750
        model="meta-llama/Llama-3.1-8B-Instruct",
    )


def test_tgi_reads_its_histogram_sums_and_has_no_model_label():
    assert counter_totals(_scrape("tgi"), server="tgi") == CounterTotals(1311.0, 851234.0, 290455.0, None)
    with pytest.raises(InputError) as error:
        counter_totals(_scrape("tgi"), server="tgi", model="x")
    assert error.value.field == "model"


def test_trtllm_serve():
    assert counter_totals(_scrape("trtllm"), server="trtllm") == CounterTotals(
        900.0, 1_800_000.0, 450_000.0, "nvidia/Llama-3.1-70B-Instruct-FP8"
    )


def test_triton_needs_the_model_that_answers_and_has_no_token_counters():
    with pytest.raises(InputError) as error:
        counter_totals(_scrape("triton"), server="triton")
    assert error.value.field == "model"
    assert "ensemble, postprocessing, preprocessing, tensorrt_llm" in error.value.message
    assert counter_totals(_scrape("triton"), server="triton", model="ensemble") == CounterTotals(
        2400.0, None, None, "ensemble"
    )
    with pytest.raises(InputError) as missing:
        counter_totals(_scrape("triton"), server="triton", model="bert")
    assert missing.value.field == "model"


def test_a_scrape_of_another_server_or_an_unknown_server_is_refused():
    with pytest.raises(InputError) as error:
        counter_totals(_scrape("tgi"), server="vllm")
    assert (error.value.field, error.value.message) == (
        "metrics",
        "no vllm:request_success_total in the scrape: is it a vllm metrics page?",
    )
    with pytest.raises(InputError) as unknown:
        counter_totals(_scrape("vllm"), server="sglang")
    assert unknown.value.field == "server"


def test_the_text_format_labels_escapes_and_timestamps():
    text = (
        "# a comment\n\n"
        'm{a="x}y",b="say \\"hi\\"",c="back\\\\slash",d="line\\nbreak"} 1.5e+03 1700000000000\n'
        "plain 7\n"
        "m_inf +Inf\n"
    )
    samples = list(parse_exposition(text))
    assert [(s.name, s.labels, s.value) for s in samples[:2]] == [
        ("m", {"a": "x}y", "b": 'say "hi"', "c": "back\\slash", "d": "line\nbreak"}, 1500.0),
        ("plain", {}, 7.0),
    ]
    assert samples[2].value == float("inf")
    for bad, message in (
        ("m{a=1} 2", 'line 1: a label needs name="value"'),
        ('m{a="1} 2', "line 1: unterminated label value"),
        ("m", "line 1: sample 'm' has no value"),
        ("m twelve", "line 1: 'twelve' is not a number"),
    ):
        with pytest.raises(InputError) as error:
            list(parse_exposition(bad))
        assert error.value.message == message
    negative = 'vllm:request_success_total{model_name="m"} -1\n'
    with pytest.raises(InputError) as error:
        counter_totals(negative, server="vllm")
    assert error.value.message == "vllm:request_success_total is -1.0: a counter is finite and not negative"


def test_counter_increase_counts_a_restart_from_zero():
    assert counter_increase([100.0, 150.0, 20.0, 50.0]) == 50.0 + 20.0 + 30.0
    assert counter_increase([5.0]) == 0.0
    assert counter_increase([]) == 0.0


def test_service_efficiency_per_unit_hour_and_day():
    readings = [
        CounterReading(T0, 1000.0, 2e6, 5e5),
        CounterReading(T0 + dt.timedelta(hours=1), 1600.0, 2.6e6, 6e5),
        CounterReading(T0 + dt.timedelta(hours=2), 400.0, 4e5, 1e5),  # restarted: 400 since
    ]
    eff = service_efficiency(
        readings=list(reversed(readings)),
        period_s=7200.0,
        energy_j=36e6,
        co2e_operational_g=1800.0,
        co2e_embodied_g=200.0,
    )
    assert (eff.requests, eff.input_tokens, eff.output_tokens, eff.co2e_g) == (1000.0, 1e6, 2e5, 2000.0)
    assert eff.per_request == UnitRate(36e3, 2.0)
    assert eff.per_1k_input_tokens == UnitRate(36e3, 2.0)
    assert eff.per_1k_output_tokens == UnitRate(180e3, 10.0)
    assert eff.per_hour == UnitRate(18e6, 1000.0)
    assert eff.per_day == UnitRate(432e6, 24000.0)


def test_without_token_counters_or_with_one_reading():
    triton = service_efficiency(
        readings=[CounterReading(T0, 0.0, None, None), CounterReading(T0 + dt.timedelta(hours=1), 3600.0, None, None)],
        period_s=3600.0,
        energy_j=7.2e6,
        co2e_operational_g=360.0,
        co2e_embodied_g=0.0,
    )
    assert (triton.per_request, triton.per_1k_input_tokens, triton.per_1k_output_tokens) == (
        UnitRate(2000.0, 0.1),
        None,
        None,
    )
    lonely = service_efficiency(
        readings=[CounterReading(T0, 10.0, 1.0, 1.0)],
        period_s=3600.0,
        energy_j=1.0,
        co2e_operational_g=1.0,
        co2e_embodied_g=0.0,
    )
    assert (lonely.requests, lonely.per_request, lonely.per_hour) == (None, None, UnitRate(1.0, 1.0))
    with pytest.raises(InputError):
        service_efficiency(readings=[], period_s=0.0, energy_j=0.0, co2e_operational_g=0.0, co2e_embodied_g=0.0)
