"""Validation of the what-if estimator against published footprints and a cross-generation
speedup (tests/domain/data/published_footprints.json carries every figure's citation).

Errors are printed (run with -s to see them) and asserted within declared tolerances."""

import json
from pathlib import Path

import pytest

from accounting.domain.catalog import TFLOPS, device_from_figures
from accounting.domain.units import HOURS_PER_YEAR
from accounting.domain.whatif import (
    CarbonContext,
    EmbodiedPolicy,
    HostShare,
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
        host=None,  # the published power figures already include the host (GPT-3) or leave it out (BLOOM)
    )
    e_err = _report(case["name"], "energy MWh", r.footprint.total_energy_j / KWH / 1000, case["published_energy_mwh"])
    c_err = _report(case["name"], "operational tCO2e", r.footprint.operational_co2e_g / 1e6, case["published_co2e_t"])
    assert abs(e_err) <= case["tolerance"]
    assert abs(c_err) <= case["tolerance"]


def _described(key):
    figures = DATA["described_devices"][key]
    return device_from_figures(
        key=key,
        name=figures["name"],
        peak_flops={p: v * TFLOPS for p, v in figures["peak_tflops"].items()},
        memory_gb=figures["memory_gb"],
        memory_bandwidth_gb_s=figures["memory_bandwidth_gb_s"],
        max_power_w=figures["max_power_w"],
        source=figures["source"],
    )


@pytest.mark.parametrize("path", ["hours", "flops"])
@pytest.mark.parametrize("case", DATA["tpu_footprints"], ids=lambda c: c["name"])
def test_tpu_footprints_from_patterson_table_4_within_1_percent(case, path):
    """TPUs are outside the catalog: described by their figures, from the paper's inputs."""
    device = _described(case["device"])
    runtime = {"hours": case["days"] * 24}
    if path == "flops":
        peak = DATA["described_devices"][case["device"]]["peak_tflops"]["bf16"]
        runtime = {"flops": case["flops"], "efficiency": case["measured_tflops_per_chip"] / peak}
    r = estimate_job(
        device=device,
        device_count=case["device_count"],
        avg_power_w=case["avg_power_w"],
        carbon=CarbonContext(pue=case["pue"], intensity_g_per_kwh=case.get("intensity_g_per_kwh", 0.0)),
        host=None,  # Table 4's power is the whole system's per chip, host included
        **runtime,
    )
    assert r.footprint.device_key == case["device"]
    e_err = _report(
        case["name"], f"energy MWh ({path})", r.footprint.total_energy_j / KWH / 1000, case["published_energy_mwh"]
    )
    assert abs(e_err) <= 0.01
    if "published_co2e_t" in case:
        c_err = _report(case["name"], f"tCO2e ({path})", r.footprint.operational_co2e_g / 1e6, case["published_co2e_t"])
        assert abs(c_err) <= 0.01


def test_t5_exact_hours_and_flops_arithmetic():
    """The hand arithmetic behind the T5 row: 512 chips × 480 h × 310 W × PUE 1.12, and
    4.05e22 FLOP at 45.6 TFLOP/s per chip."""
    device = _described("tpu-v3")
    carbon = CarbonContext(pue=1.12, intensity_g_per_kwh=545.0)
    hours = estimate_job(device=device, device_count=512, hours=480, avg_power_w=310, carbon=carbon, host=None)
    assert hours.footprint.total_energy_j == pytest.approx(512 * 480 * 310 * 3600 * 1.12, rel=1e-12)
    flops = estimate_job(
        device=device, device_count=512, flops=4.05e22, efficiency=45.6 / 123, avg_power_w=310, carbon=carbon, host=None
    )
    assert flops.footprint.runtime_s == pytest.approx(4.05e22 / (512 * 45.6e12), rel=1e-12)
    assert flops.footprint.total_energy_j == pytest.approx(4.05e22 / 45.6e12 * 310 * 1.12, rel=1e-12)


def test_bloom_embodied_with_the_server_as_host_input_within_1_percent():
    b = DATA["bloom_embodied"]
    life_h = b["lifetime_years"] * HOURS_PER_YEAR

    def policy(kg):
        return EmbodiedPolicy(
            embodied_kg=kg,
            embodied_low_kg=kg,
            embodied_high_kg=kg,
            lifetime_h=life_h,
            expected_utilisation=b["usage_rate"],
        )

    r = estimate_job(
        device_key=b["device_key"],
        device_count=b["device_count"],
        device_hours=b["gpu_hours"],
        avg_power_w=b["avg_power_w"],
        carbon=CarbonContext(pue=b["pue"], intensity_g_per_kwh=b["intensity_g_per_kwh"]),
        embodied=policy(b["gpu_embodied_kg"]),
        host=HostShare(power_w=0.0, gpu_slots=b["gpus_per_server"], embodied=policy(b["server_embodied_kg"])),
    )
    fp = r.footprint
    assert fp.it_energy_j / KWH == pytest.approx(b["published_dynamic_kwh"], rel=1e-12)
    assert abs(_report("BLOOM", "dynamic tCO2e", fp.operational_co2e_g / 1e6, b["published_dynamic_t"])) <= 0.01
    assert abs(_report("BLOOM", "embodied tCO2e", fp.embodied_co2e_g / 1e6, b["published_embodied_t"])) <= 0.01
    gpu_g = b["gpu_hours"] * b["gpu_embodied_kg"] * 1000 / (life_h * b["usage_rate"])
    assert fp.host_embodied_co2e_g == pytest.approx(
        gpu_g * b["server_embodied_kg"] / b["gpus_per_server"] / 150, rel=1e-12
    )
    assert fp.embodied_co2e_g == pytest.approx(gpu_g + fp.host_embodied_co2e_g, rel=1e-12)


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
            host=None,  # the paper counts GPU TDP only
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
