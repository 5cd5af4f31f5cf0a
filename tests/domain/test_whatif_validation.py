"""Validation of the what-if estimator against published footprints and a cross-generation
speedup (tests/domain/data/published_footprints.json carries every figure's citation).

Errors are printed (run with -s to see them) and asserted within declared tolerances."""

import json
from pathlib import Path

import pytest

from accounting.domain.whatif import (
    CarbonContext,
    InferenceConfig,
    MeasuredJob,
    estimate_job,
    llm_inference,
    llm_training,
    project_hardware,
)

DATA = json.loads((Path(__file__).parent / "data" / "published_footprints.json").read_text())
KWH = 3.6e6


def _report(name: str, what: str, ours: float, published: float) -> float:
    err = ours / published - 1
    print(f"[validation] {name}: {what} ours={ours:,.2f} published={published:,.2f} error={err:+.1%}")
    return err


@pytest.mark.parametrize("case", DATA["training_footprints"], ids=lambda c: c["name"])
def test_published_training_footprints_hours_path(case):
    hours = case["days"] * 24 if "days" in case else case["gpu_hours"] / case["device_count"]
    r = estimate_job(
        device_key=case["device_key"],
        device_count=case["device_count"],
        hours=hours,
        avg_power_w=case["avg_power_w"],
        carbon=CarbonContext(pue=case["pue"], intensity_g_per_kwh=case["intensity_g_per_kwh"]),
    )
    e_err = _report(case["name"], "energy MWh", r.footprint.total_energy_j / KWH / 1000, case["published_energy_mwh"])
    c_err = _report(case["name"], "operational tCO2e", r.footprint.operational_co2e_g / 1e6, case["published_co2e_t"])
    assert abs(e_err) <= case["tolerance"]
    assert abs(c_err) <= case["tolerance"]


def test_llama2_rows_and_total_with_one_grid_factor():
    ll = DATA["llama2"]
    first = ll["rows"][0]
    intensity = first["published_co2e_t"] * 1e6 / (first["gpu_hours"] * first["power_w"] / 1000)
    total_t = total_h = 0.0
    for row in ll["rows"]:
        r = estimate_job(
            device_key=ll["device_key"],
            device_count=1,
            hours=row["gpu_hours"],
            avg_power_w=row["power_w"],
            carbon=CarbonContext(pue=ll["pue"], intensity_g_per_kwh=intensity),
        )
        err = _report(f"Llama 2 {row['model']}", "tCO2e", r.footprint.operational_co2e_g / 1e6, row["published_co2e_t"])
        assert abs(err) <= ll["carbon_tolerance"]
        total_t += r.footprint.operational_co2e_g / 1e6
        total_h += row["gpu_hours"]
    assert total_h == ll["published_total_gpu_hours"]
    assert abs(_report("Llama 2 total", "tCO2e", total_t, ll["published_total_co2e_t"])) <= ll["carbon_tolerance"]


def _flops_cases():
    ll = DATA["llama2"]
    cases = [
        (f"Llama 2 {r['model']}", r["parameters"], ll["tokens"], r["gpu_hours"], ll["device_key"]) for r in ll["rows"]
    ]
    bloom = DATA["training_footprints"][1]
    cases.append((bloom["name"], bloom["parameters"], bloom["tokens"], bloom["gpu_hours"], bloom["device_key"]))
    return cases


@pytest.mark.parametrize(("name", "params", "tokens", "gpu_hours", "device_key"), _flops_cases(), ids=lambda x: str(x))
def test_flops_path_gpu_hours_error_reported(name, params, tokens, gpu_hours, device_key):
    r = llm_training(
        parameters=params,
        tokens=tokens,
        device_key=device_key,
        device_count=1,
        carbon=CarbonContext(pue=1.0, intensity_g_per_kwh=0.0),
    )
    err = _report(name, "GPU-hours (6ND, MFU 0.4)", r.footprint.runtime_s / 3600, gpu_hours)
    assert abs(err) <= DATA["flops_path"]["bound"]


@pytest.mark.parametrize("case", DATA["cross_generation"], ids=lambda c: c["name"])
def test_cross_generation_speedup_error_reported(case):
    job = MeasuredJob(
        device_key=case["source_device"],
        device_count=case["device_count"],
        runtime_s=3600.0,
        gpu_energy_j=case["device_count"] * 350.0 * 3600,
        family=case["family"],
        kind=case["kind"],
        precision=case["source_precision"],
    )
    r = project_hardware(
        job=job,
        target_key=case["target_device"],
        target_precision=case["target_precision"],
        carbon=CarbonContext(pue=1.0, intensity_g_per_kwh=0.0),
    )
    err = _report(case["name"], "speedup", r.speedup, case["published_speedup"])
    assert abs(err) <= case["bound"]


def test_h200_keeps_h100_prefill_time_and_decodes_faster_by_at_most_bandwidth_ratio():
    cfg = InferenceConfig(
        parameters=13e9,
        prompt_tokens=128 * 1024,
        output_tokens=128 * 1024,
        batch_size=64,
        context_tokens=192,
        layers=40,
        kv_dim=5120,
    )
    carbon = CarbonContext(pue=1.0, intensity_g_per_kwh=0.0)
    h100 = llm_inference(config=cfg, device_key="h100-sxm5-80gb", device_count=1, carbon=carbon)
    h200 = llm_inference(config=cfg, device_key="h200-sxm-141gb", device_count=1, carbon=carbon)
    assert h200.prefill_s == pytest.approx(h100.prefill_s)
    ratio = h100.decode_s / h200.decode_s
    print(f"[validation] H200/H100 decode speedup (model) = {ratio:.3f}; bandwidth ratio = {4800 / 3350:.3f}")
    assert 1.0 < ratio <= 4800 / 3350 + 1e-9
