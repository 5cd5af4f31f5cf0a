"""What-if engine: hand-worked cases with exact expected values (no database)."""

import datetime as dt
import math

import pytest

from accounting.domain.catalog import CATALOG
from accounting.domain.errors import InputError
from accounting.domain.whatif import (
    CapRun,
    CarbonContext,
    EmbodiedPolicy,
    FleetWorkload,
    InferenceConfig,
    JobPoint,
    MeasuredJob,
    best_start_window,
    calibrate,
    decode_batch_sweep,
    estimate_job,
    fit_alpha,
    idle_consolidation,
    llm_inference,
    moe_offload_comparison,
    parallel_scaling,
    pareto_front,
    plan_fleet_upgrade,
    power_cap_curve,
    project_hardware,
    recommender_inference,
    workloads_from_jobs,
    zone_shift,
)

UTC = dt.UTC
C400 = CarbonContext(pue=1.0, intensity_g_per_kwh=400.0)


def a100_job(**kw):
    base = dict(
        device_key="a100-sxm4-80gb",
        device_count=8,
        runtime_s=36000.0,
        gpu_energy_j=8 * 300.0 * 36000,
        family="llm",
        kind="training",
        precision="bf16",
        units={"tokens": 1e10},
    )
    base.update(kw)
    return MeasuredJob(**base)


def test_roofline_projection_a100_to_h100_exact():
    r = project_hardware(job=a100_job(), target_key="h100-sxm5-80gb", carbon=C400)
    ratio = 0.70 * 312 / 989.4 + 0.15 * 2039 / 3350 + 0.15 * 600 / 900
    assert r.projected.runtime_s == pytest.approx(36000 * ratio)
    u_eq = (300 - 55) / (400 - 55)
    p_t = 70 + (700 - 70) * u_eq
    assert r.projected.it_energy_j == pytest.approx(p_t * 36000 * ratio * 8)
    assert r.projected.avg_power_w == pytest.approx(p_t)
    assert r.speedup == pytest.approx(1 / ratio)
    assert r.baseline.basis == "measured" and r.projected.basis == "modelled" and r.method == "roofline"
    assert r.projected.co2e_low_g < r.projected.co2e_g < r.projected.co2e_high_g
    assert r.projected.energy_per_unit_j["tokens"] == pytest.approx(r.projected.it_energy_j / 1e10)
    assert any("0.7/0.15/0.15" in a for a in r.assumptions)


def test_utilisation_keeps_stall_time():
    r = project_hardware(job=a100_job(avg_util=0.5), target_key="h100-sxm5-80gb", carbon=C400)
    busy = 0.70 * 312 / 989.4 + 0.15 * 2039 / 3350 + 0.15 * 600 / 900
    assert r.projected.runtime_s == pytest.approx(36000 * (0.5 + 0.5 * busy))


def test_fp8_on_a100_falls_back_to_bf16_and_says_so():
    job = a100_job(device_key="h100-sxm5-80gb", precision="fp8", gpu_energy_j=8 * 500.0 * 36000)
    r = project_hardware(job=job, target_key="a100-sxm4-80gb", carbon=C400)
    assert r.projected.runtime_s > job.runtime_s
    assert any("no FP8 rate" in a and "BF16" in a for a in r.assumptions)


def test_memory_capacity_bound_inference_changes_device_count():
    job = a100_job(
        device_key="a100-sxm4-40gb",
        device_count=4,
        kind="inference",
        gpu_energy_j=4 * 250.0 * 3600,
        runtime_s=3600.0,
        model_meta={"parameters": 70e9},
    )
    r = project_hardware(job=job, target_key="h200-sxm-141gb", carbon=C400)
    # 140 GB of BF16 weights: ceil(140 / (0.9 × 141)) = 2 H200s.
    assert r.memory_required_gb == pytest.approx(140.0)
    assert r.projected.device_count == 2
    r8 = project_hardware(job=job, target_key="h200-sxm-141gb", target_count=1, carbon=C400)
    assert r8.projected.device_count == 2  # raised to what holds the model
    fp8 = project_hardware(job=job, target_key="h200-sxm-141gb", target_precision="fp8", carbon=C400)
    assert fp8.projected.device_count == 1


def test_estimator_flops_path_exact_and_same_builder():
    e = estimate_job(
        device_key="a100-sxm4-80gb",
        device_count=1,
        flops=8.4e22,
        efficiency=0.4,
        utilisation=1.0,
        carbon=CarbonContext(pue=1.2, intensity_g_per_kwh=100.0),
        host=None,  # GPU energy alone; the host share is tested in tests/domain/test_estimator_ledger.py
    )
    runtime = 8.4e22 / (312e12 * 0.4)
    assert e.footprint.runtime_s == pytest.approx(runtime)
    assert e.footprint.it_energy_j == pytest.approx(400 * runtime)
    assert e.footprint.operational_co2e_g == pytest.approx(400 * runtime * 1.2 / 3.6e6 * 100)
    with pytest.raises(InputError) as exc:
        estimate_job(device_key="a100-sxm4-80gb", device_count=1, hours=1, flops=1, utilisation=1.0, carbon=C400)
    assert exc.value.field == "hours"


def test_embodied_policy_charge():
    pol = EmbodiedPolicy(
        embodied_kg=150, embodied_low_kg=100, embodied_high_kg=200, lifetime_h=43800, expected_utilisation=0.8
    )
    e = estimate_job(
        device_key="h100-sxm5-80gb", device_count=8, hours=10, avg_power_w=500, carbon=C400, embodied=pol, host=None
    )
    assert e.footprint.embodied_co2e_g == pytest.approx(80 * 150_000 / (43800 * 0.8))


def test_fleet_plan_hand_worked_and_break_even_identity():
    old_pol = EmbodiedPolicy(embodied_kg=100, embodied_low_kg=80, embodied_high_kg=120, lifetime_h=5 * 8766)
    new_pol = EmbodiedPolicy(embodied_kg=150, embodied_low_kg=100, embodied_high_kg=200, lifetime_h=5 * 8766)
    w = [FleetWorkload(family="other", kind="training", device_hours_per_year=8766, avg_power_w=400, split=(1, 0, 0))]
    plan = plan_fleet_upgrade(
        old_key="a100-sxm4-80gb",
        old_count=2,
        new_key="h100-sxm5-80gb",
        new_count=1,
        workloads=w,
        carbon=C400,
        old_embodied=old_pol,
        new_embodied=new_pol,
        old_age_years=1,
    )
    new_h = 8766 * 312 / 989.4
    e_before = 8766 * 3600 * 400 + 8766 * 3600 * 55
    e_after = new_h * 3600 * 700 + (8766 - new_h) * 3600 * 70
    assert plan.energy_before_j_per_year == pytest.approx(e_before)
    assert plan.energy_after_j_per_year == pytest.approx(e_after)
    saving = (e_before - e_after) / 3.6e6 * 400
    assert plan.operational_saving_g_per_year == pytest.approx(saving)
    assert plan.payback_years == pytest.approx(150_000 / saving)
    assert plan.old_remaining_embodied_g == pytest.approx(2 * 100_000 * 0.8)
    be = plan.break_even_intensity_g_per_kwh
    again = plan_fleet_upgrade(
        old_key="a100-sxm4-80gb",
        old_count=2,
        new_key="h100-sxm5-80gb",
        new_count=1,
        workloads=w,
        carbon=CarbonContext(pue=1.0, intensity_g_per_kwh=be),
        old_embodied=old_pol,
        new_embodied=new_pol,
    )
    assert again.payback_years == pytest.approx(5.0)


def test_fleet_plan_no_saving_gives_no_payback():
    pol = EmbodiedPolicy(embodied_kg=100, embodied_low_kg=100, embodied_high_kg=100)
    w = [FleetWorkload(family="llm", kind="training", device_hours_per_year=1000, avg_util=0.9)]
    plan = plan_fleet_upgrade(
        old_key="h100-sxm5-80gb",
        old_count=8,
        new_key="b200-sxm-180gb",
        new_count=16,
        workloads=w,
        carbon=C400,
        old_embodied=pol,
        new_embodied=pol,
    )
    assert plan.operational_saving_g_per_year < 0
    assert plan.payback_years is None and plan.break_even_intensity_g_per_kwh is None


def test_workloads_from_jobs_scales_to_a_year():
    ws = workloads_from_jobs(jobs=[a100_job()], period_s=86400 * 30)
    assert ws[0].device_hours_per_year == pytest.approx(80 * 365.25 / 30)
    assert ws[0].avg_power_w == pytest.approx(300.0)


def test_best_start_window_hand_worked():
    t0 = dt.datetime(2026, 11, 26, 10, tzinfo=UTC)
    fc = [(t0 + dt.timedelta(hours=i), v) for i, v in enumerate((420, 380, 250, 210, 300, 410))]
    w = best_start_window(
        forecast=fc, duration_s=7200, earliest_start=t0, deadline=t0 + dt.timedelta(hours=6), energy_j=3.6e9, pue=1.0
    )
    assert w.best_start == t0 + dt.timedelta(hours=2)
    assert w.best_avg_intensity_g_per_kwh == pytest.approx(230.0)
    assert w.now_avg_intensity_g_per_kwh == pytest.approx(400.0)
    assert w.saving_co2e_g == pytest.approx(1000 * 170)
    half = best_start_window(
        forecast=fc,
        duration_s=3600,
        earliest_start=t0 + dt.timedelta(minutes=30),
        deadline=t0 + dt.timedelta(hours=1, minutes=30),
    )
    assert half.now_avg_intensity_g_per_kwh == pytest.approx(400.0)
    with pytest.raises(InputError) as exc:
        best_start_window(forecast=fc, duration_s=7200, earliest_start=t0, deadline=t0 + dt.timedelta(hours=1))
    assert exc.value.field == "deadline"


def test_zone_shift_keeps_embodied():
    e = estimate_job(
        device_key="h100-sxm5-80gb",
        device_count=1,
        hours=1,
        avg_power_w=500,
        carbon=C400,
        embodied=EmbodiedPolicy(embodied_kg=100, embodied_low_kg=100, embodied_high_kg=100),
    )
    z = zone_shift(before=e.footprint, to_carbon=CarbonContext(pue=1.0, intensity_g_per_kwh=40.0))
    assert z.after.operational_co2e_g == pytest.approx(e.footprint.operational_co2e_g / 10)
    assert z.after.embodied_co2e_g == pytest.approx(e.footprint.embodied_co2e_g)
    assert z.saving_co2e_g == pytest.approx(e.footprint.operational_co2e_g * 0.9)


def test_power_cap_curve_exact():
    c = power_cap_curve(
        device_key="a100-sxm4-80gb",
        device_count=1,
        runtime_s=1000,
        avg_power_w=400,
        caps_w=[400, 300],
        compute_share=0.6,
        memory_share=0.3,
    )
    p400, p300 = c.points
    assert p400.runtime_s == pytest.approx(1000) and p400.energy_j == pytest.approx(400_000)
    slow = 0.6 * 0.75**-0.5 + 0.3 * 0.75**-0.05 + 0.1
    assert p300.runtime_s == pytest.approx(1000 * slow)
    assert p300.energy_j == pytest.approx(300 * 1000 * slow)
    assert c.min_energy_cap_w == 300 and c.alpha_source == "default"


def test_fit_alpha_recovers_known_exponent():
    f = 0.6
    runs = []
    for key, t1 in (("a", 1000.0), ("b", 500.0)):
        runs.append(CapRun(key, 400, t1))
        for cap in (300, 250):
            runs.append(CapRun(key, cap, t1 * ((1 - f) + f * (400 / cap) ** 0.4)))
    alpha, n = fit_alpha(runs=runs, compute_share=f)
    assert alpha == pytest.approx(0.4) and n == 2
    c = power_cap_curve(
        device_key="a100-sxm4-80gb",
        device_count=1,
        runtime_s=1000,
        avg_power_w=400,
        caps_w=[300],
        compute_share=f,
        memory_share=0.3,
        calibration_runs=runs,
    )
    assert c.alpha == pytest.approx(0.4) and c.fitted_from_jobs == 2


def test_parallel_scaling_hand_worked():
    r = parallel_scaling(
        device_key="h100-sxm5-80gb", counts=[1, 8, 16], compute_device_s=8000, steps=100, gradient_bytes=1e9
    )
    p1, p8, p16 = r.points
    assert p1.comm_s == 0 and p1.runtime_s == 8000
    assert p8.comm_s == pytest.approx(100 * 1.75 * 1e9 / 900e9)
    assert p16.comm_s == pytest.approx(100 * 1.875 * 1e9 / 50e9)
    assert p16.scaling_efficiency == pytest.approx(8000 / (16 * (500 + 3.75)))
    assert p16.energy_j > p8.energy_j
    assert r.knee_count == 16
    r2 = parallel_scaling(
        device_key="h100-sxm5-80gb", counts=[8, 64], compute_device_s=8000, steps=1000, gradient_bytes=14e9
    )
    assert r2.knee_count == 8  # crossing nodes at 50 GB/s no longer pays


def test_idle_consolidation_exact():
    s = idle_consolidation(
        idle_device_h=100,
        idle_power_w=70,
        carbon=CarbonContext(pue=1.5, intensity_g_per_kwh=400),
        devices_freed=2,
        period_h=876,
        embodied=EmbodiedPolicy(embodied_kg=100, embodied_low_kg=50, embodied_high_kg=150, lifetime_h=8766),
    )
    assert s.operational_saved_g == pytest.approx(7 * 1.5 * 400)
    # EmbodiedPolicy's default expected utilisation is the ledger's 0.8 (embodied.DEFAULT_LIFETIME).
    assert s.embodied_avoided_g == pytest.approx(2 * 876 * 100_000 / (8766 * 0.8))


def test_llm_decode_memory_bound_and_kv_quantisation():
    cfg = InferenceConfig(
        parameters=7e9, prompt_tokens=0, output_tokens=1000, batch_size=1, context_tokens=0, layers=32, kv_dim=4096
    )
    r = llm_inference(config=cfg, device_key="h100-sxm5-80gb", carbon=C400)
    step = 14e9 / (3350e9 * 0.8)
    assert r.decode_bound == "memory" and r.decode_step_s == pytest.approx(step)
    assert r.tokens_per_s_per_device == pytest.approx(1 / step)
    long_ctx = InferenceConfig(**{**cfg.__dict__, "batch_size": 16, "context_tokens": 4096})
    bf16 = llm_inference(config=long_ctx, device_key="h100-sxm5-80gb", carbon=C400)
    fp8kv = llm_inference(config=long_ctx, device_key="h100-sxm5-80gb", carbon=C400, kv_precision="fp8")
    kv_gb = 2 * 32 * 4096 * 2 * 16 * 4096 / 1e9
    assert bf16.memory_required_gb == pytest.approx(14 + kv_gb)
    assert fp8kv.memory_required_gb == pytest.approx(14 + kv_gb / 2)
    assert fp8kv.decode_step_s < bf16.decode_step_s


def test_decode_throughput_rises_with_batch_until_compute_bound():
    cfg = InferenceConfig(
        parameters=7e9, prompt_tokens=0, output_tokens=1e6, batch_size=1, context_tokens=0, layers=32, kv_dim=4096
    )
    pts = decode_batch_sweep(
        config=cfg, device_key="h100-sxm5-80gb", device_count=1, batch_sizes=[1, 8, 64, 512], carbon=C400
    )
    tps = [p.tokens_per_s_per_device for p in pts]
    assert tps == sorted(tps)
    assert pts[0].decode_bound == "memory" and pts[-1].decode_bound == "compute"


def test_moe_active_vs_total_and_offloading():
    cfg = InferenceConfig(
        parameters=47e9,
        active_parameters=13e9,
        num_experts=8,
        experts_per_token=2,
        prompt_tokens=0,
        output_tokens=1000,
        batch_size=1,
        context_tokens=0,
        layers=32,
        kv_dim=1024,
    )
    r = llm_inference(config=cfg, device_key="l40s-48gb", carbon=C400)
    # batch 1 reads shared + 2/8 of experts = the active parameters.
    assert r.decode_step_s == pytest.approx(13e9 * 2 / (864e9 * 0.8 * r.device_count))
    assert r.device_count == math.ceil(94 / (0.9 * 48))
    pol = EmbodiedPolicy(embodied_kg=100, embodied_low_kg=100, embodied_high_kg=100)
    cmp = moe_offload_comparison(
        config=cfg, device_key="l40s-48gb", carbon=C400, offload_fraction=0.5, offload_miss_rate=0.5, embodied=pol
    )
    assert cmp.devices_saved == 1
    assert cmp.provisioned_embodied_saved_g_per_h == pytest.approx(100_000 / (5 * 8766 * 0.8))
    assert cmp.embodied_saved_g == pytest.approx(
        cmp.resident.footprint.embodied_co2e_g - cmp.offloaded.footprint.embodied_co2e_g
    )
    assert cmp.slowdown > 1 and cmp.offloaded.pcie_bytes_per_step > 0


def test_recommender_serving_devices_for_tail_latency():
    r = recommender_inference(
        qps=200_000,
        duration_s=3600,
        lookups_per_query=500,
        embedding_dim=128,
        dense_flops_per_query=2e7,
        p99_latency_s=0.05,
        device_key="a100-sxm4-80gb",
        carbon=C400,
    )
    s = 0.002 + max(256 * 500 * 128 * 4 / (2039e9 * 0.6), 256 * 2e7 / (312e12 * 0.3))
    assert r.batch_service_s == pytest.approx(s)
    rho_max = min(0.7, 1 - math.log(100) * s / 0.05)
    assert r.rho_max == pytest.approx(rho_max)
    assert r.device_count == math.ceil(200_000 / (rho_max * 256 / s))
    assert r.rho_actual <= rho_max and r.p99_latency_s <= 0.05
    with pytest.raises(InputError) as exc:
        recommender_inference(
            qps=1,
            duration_s=1,
            lookups_per_query=1,
            embedding_dim=1,
            dense_flops_per_query=0,
            p99_latency_s=0.001,
            device_key="t4-16gb",
            carbon=C400,
        )
    assert exc.value.field == "p99_latency_s"


def test_calibration_median_ratio_replaces_roofline():
    jobs = [a100_job(device_count=1, runtime_s=t, gpu_energy_j=t * 300, units={"tokens": 1.0}) for t in (10, 12, 14)]
    jobs += [
        a100_job(device_key="h100-sxm5-80gb", device_count=1, runtime_s=t, gpu_energy_j=t * 600, units={"tokens": 1.0})
        for t in (4, 5, 6)
    ]
    cal = calibrate(jobs=jobs, source_key="a100-sxm4-80gb", target_key="h100-sxm5-80gb", family="llm", unit="tokens")
    assert cal.runtime_ratio == pytest.approx(5 / 12) and cal.energy_ratio == pytest.approx(3000 / 3600)
    assert (cal.n_source, cal.n_target) == (3, 3)
    r = project_hardware(job=a100_job(), target_key="h100-sxm5-80gb", carbon=C400, calibration=cal)
    assert r.method == "calibrated" and r.calibration_jobs == 6
    assert r.projected.runtime_s == pytest.approx(36000 * 5 / 12)
    assert r.projected.basis == "calibrated"
    assert (
        calibrate(jobs=jobs[:3], source_key="a100-sxm4-80gb", target_key="h100-sxm5-80gb", family="llm", unit="tokens")
        is None
    )


def test_pareto_front_and_summary():
    pts = [
        JobPoint(
            1,
            throughput_per_s=100,
            energy_per_unit_j=1,
            co2e_per_unit_g=1.0,
            attributes={"batch": 64, "device": "h100"},
        ),
        JobPoint(
            2, throughput_per_s=50, energy_per_unit_j=2, co2e_per_unit_g=2.0, attributes={"batch": 8, "device": "a100"}
        ),
        JobPoint(
            3,
            throughput_per_s=200,
            energy_per_unit_j=3,
            co2e_per_unit_g=3.0,
            attributes={"batch": 128, "device": "h100"},
        ),
        JobPoint(
            4, throughput_per_s=40, energy_per_unit_j=4, co2e_per_unit_g=4.0, attributes={"batch": 4, "device": "a100"}
        ),
    ]
    s = pareto_front(pts)
    assert s.front == [1, 3] and s.rest == [2, 4]
    assert s.numeric["batch"] == {"front_median": 96.0, "rest_median": 6.0}
    assert s.categorical["device"]["front_mode"] == "h100" and s.categorical["device"]["front_share"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_key": "nope"}, "target_key"),
        ({"target_count": 0}, "target_count"),
        ({"target_precision": "fp4"}, "target_precision"),
        ({"carbon": CarbonContext(pue=0.9, intensity_g_per_kwh=1)}, "pue"),
    ],
)
def test_projection_input_errors_name_the_field(kwargs, field):
    args = {"job": a100_job(), "target_key": "h100-sxm5-80gb", "carbon": C400, **kwargs}
    with pytest.raises(InputError) as exc:
        project_hardware(**args)
    assert exc.value.field == field


def test_every_catalog_device_projects_every_family():
    for key in CATALOG:
        for family in ("llm", "moe", "recommender", "other"):
            for kind in ("training", "inference"):
                r = project_hardware(job=a100_job(family=family, kind=kind), target_key=key, carbon=C400)
                assert r.projected.runtime_s > 0 and math.isfinite(r.projected.co2e_g)
