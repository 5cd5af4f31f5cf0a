"""What-if API: success paths, 400s naming fields, 403/404 isolation."""

import datetime as dt

import pytest
from rest_framework.test import APIClient

from accounting import models as m
from accounting.domain.whatif import DEFAULT_HOST
from accounting.tokens import token_create
from tests.factories import (
    ClusterFactory,
    DeviceFactory,
    GridZoneFactory,
    HardwareModelFactory,
    HostFactory,
    JobAllocationFactory,
    JobFactory,
    MembershipFactory,
    OrganizationFactory,
    SiteFactory,
    TeamFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
UTC = dt.UTC


@pytest.fixture
def world():
    org = OrganizationFactory()
    zone = GridZoneFactory(code="ZZ-WHATIF", annual_intensity_g_per_kwh=400.0)
    site = SiteFactory(org=org, zone=zone, pue=1.5)
    cluster = ClusterFactory(site=site)
    host = HostFactory(cluster=cluster)
    a100 = HardwareModelFactory(
        key="a100-sxm4-80gb",
        name="A100",
        idle_power_w=55.0,
        max_power_w=400.0,
        embodied_kg=100.0,
        embodied_low_kg=80.0,
        embodied_high_kg=120.0,
    )
    HardwareModelFactory(key="h100-sxm5-80gb")
    team = TeamFactory(org=org)
    job = JobFactory(
        cluster=cluster,
        team=team,
        family=m.Job.Family.LLM,
        kind=m.Job.Kind.TRAINING,
        status=m.Job.Status.COMPLETED,
        started_at=dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
        ended_at=dt.datetime(2026, 11, 1, 10, 0, tzinfo=UTC),
        units={"tokens": 1.0e9},
        model_meta={"precision": "bf16", "avg_util": 0.9},
    )
    for _ in range(4):
        JobAllocationFactory(
            job=job, device=DeviceFactory(host=host, hardware_model=a100), start=job.started_at, end=job.ended_at
        )
    # The ledger: GPU 12 kWh, host 5.64 kWh (half a 1128 W host), facility (1.5 − 1) × IT, at hourly
    # intensities averaging 450 gCO2e/kWh (the zone's annual factor is 400); embodied: 40 A100-hours + 600 g host.
    m.JobFootprint.objects.create(
        job=job,
        gpu_energy_j=43.2e6,
        host_energy_j=20.304e6,
        facility_energy_j=31.752e6,
        energy_j=95.256e6,
        co2e_operational_g=11907.0,
        co2e_embodied_g=40 * 100_000 / (5 * 8760 * 0.8) + 600.0,
        co2e_low_g=11000.0,
        co2e_high_g=13500.0,
        device_hours=40.0,
        is_final=True,
    )
    other_team = TeamFactory(org=org)
    return {
        "org": org,
        "zone": zone,
        "site": site,
        "cluster": cluster,
        "job": job,
        "team": team,
        "other_team": other_team,
    }


def client_for(user):
    c = APIClient()
    c.force_authenticate(user=user)
    return c


def member_of(team):
    user = UserFactory()
    MembershipFactory(user=user, org=team.org, team=team)
    return user


def fields_of(resp):
    return {e["field"] for e in resp.json().get("errors", [])}


ESTIMATE = {
    "device_key": "h100-sxm5-80gb",
    "device_count": 8,
    "hours": 10,
    "avg_power_w": 500,
    "pue": 1.2,
    "intensity_g_per_kwh": 300,
    "units": {"tokens": 1e9},
}


def test_estimate_exact_values(world):
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", ESTIMATE, format="json")
    assert resp.status_code == 200, resp.content
    fp = resp.json()["footprint"]
    # GPUs 8 × 500 W plus the default host's 1128 W (2 × 360 W × 0.5 + 2048 GB × 0.375 W/GB), all
    # 8 slots held, over 36,000 s: 184.608 MJ IT; × 1.2 PUE; 300 g/kWh.
    it_j = (8 * 500 + 1128) * 36000
    assert fp["it_energy_j"] == pytest.approx(it_j, rel=1e-12)
    assert fp["host_energy_j"] == pytest.approx(1128 * 36000, rel=1e-12)
    assert fp["avg_power_w"] == pytest.approx(500.0)
    assert fp["facility_energy_j"] == pytest.approx(0.2 * it_j)
    assert fp["operational_co2e_g"] == pytest.approx(it_j * 1.2 / 3.6e6 * 300, rel=1e-12)
    # Embodied from the HardwareModel row, 80 device-h × 150 kg / (5 × 8766 h × 0.8), plus the
    # host's share (no host rows loaded here: the domain figure they are loaded from) over 8 slots.
    host_kg = DEFAULT_HOST.embodied.embodied_kg
    gpu_g = 80 * 150_000 / (5 * 8766 * 0.8)
    assert fp["host_embodied_co2e_g"] == pytest.approx(80 * host_kg * 1000 / 8 / (5 * 8766 * 0.8), rel=1e-12)
    assert fp["embodied_co2e_g"] == pytest.approx(gpu_g + fp["host_embodied_co2e_g"], rel=1e-12)
    assert fp["energy_per_unit_j"]["tokens"] == pytest.approx(it_j / 1e9)
    assert resp.json()["assumptions"]


def test_estimate_embodied_given_defaults_to_the_ledgers_expected_utilisation(world):
    body = {**ESTIMATE, "include_host": False, "embodied": {"embodied_kg": 150}}
    fp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json").json()["footprint"]
    assert fp["embodied_co2e_g"] == pytest.approx(80 * 150_000 / (5 * 8766 * 0.8), rel=1e-12)
    assert fp["host_energy_j"] == 0.0 and fp["it_energy_j"] == pytest.approx(8 * 500 * 36000)


TPU_V3 = {
    "key": "tpu-v3",
    "name": "Google TPU v3",
    "peak_tflops": {"bf16": 123},
    "memory_gb": 32,
    "memory_bandwidth_gb_s": 900,
    "max_power_w": 450,
    "embodied_kg": 100,
    "citation": "Jouppi et al. 2021 Table 1; Patterson et al. 2021 Table 4",
}


def test_estimate_a_device_outside_the_catalog_by_its_figures(world):
    # Patterson et al. 2021 Table 4, T5: 512 TPU v3 × 20 days at 310 W measured system power per
    # chip (host included), PUE 1.12, 545 g/kWh: 85.7 MWh, 46.7 tCO2e published.
    body = {
        "device": TPU_V3,
        "device_count": 512,
        "flops": 4.05e22,
        "efficiency": 45.6 / 123,
        "avg_power_w": 310,
        "include_host": False,
        "pue": 1.12,
        "intensity_g_per_kwh": 545,
    }
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 200, resp.content
    fp = resp.json()["footprint"]
    assert fp["device_key"] == "tpu-v3"
    assert fp["runtime_s"] == pytest.approx(4.05e22 / (512 * 45.6e12), rel=1e-12)
    assert fp["total_energy_j"] == pytest.approx(4.05e22 / 45.6e12 * 310 * 1.12, rel=1e-12)
    assert abs(fp["total_energy_j"] / 3.6e9 / 85.7 - 1) < 0.01
    assert abs(fp["operational_co2e_g"] / 1e6 / 46.7 - 1) < 0.01
    runtime_h = fp["runtime_s"] / 3600
    assert fp["embodied_co2e_g"] == pytest.approx(512 * runtime_h * 100_000 / (5 * 8766 * 0.8), rel=1e-12)


def test_estimate_device_hours_beyond_a_million_with_the_server_as_host_input(world):
    # BLOOM (Luccioni et al. 2022): 1,082,990 A100 GPU-hours at 400 W, 57 g/kWh; GPU 150 kg and
    # server 2,500 kg per 8 GPUs, 6 years, 85 % usage: 24.69 t dynamic, 11.2 t embodied.
    body = {
        "device_key": "a100-sxm4-80gb",
        "device_count": 384,
        "device_hours": 1_082_990,
        "avg_power_w": 400,
        "pue": 1.0,
        "intensity_g_per_kwh": 57,
        "embodied": {"embodied_kg": 150, "lifetime_years": 6, "expected_utilisation": 0.85},
        "host": {"power_w": 0, "gpu_slots": 8, "embodied_kg": 2500, "lifetime_years": 6, "expected_utilisation": 0.85},
    }
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 200, resp.content
    fp = resp.json()["footprint"]
    assert fp["runtime_s"] == pytest.approx(1_082_990 / 384 * 3600, rel=1e-12)
    assert fp["total_energy_j"] == pytest.approx(433_196 * 3.6e6, rel=1e-12)
    assert abs(fp["operational_co2e_g"] / 1e6 / 24.69 - 1) < 0.01
    assert abs(fp["embodied_co2e_g"] / 1e6 / 11.2 - 1) < 0.01


def test_estimate_parameters_times_tokens_is_the_6nd_route(world):
    body = {k: v for k, v in ESTIMATE.items() if k not in ("hours", "units")}
    body.update({"parameters": 7e9, "tokens": 2e12, "efficiency": 0.5})
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 200, resp.content
    data = resp.json()
    assert data["flops"] == pytest.approx(6 * 7e9 * 2e12)
    assert data["footprint"]["runtime_s"] == pytest.approx(6 * 7e9 * 2e12 / (8 * 989.4e12 * 0.5), rel=1e-12)
    assert data["footprint"]["units"] == {"tokens": 2e12}
    assert data["assumptions"][0].startswith("training FLOPs = 6 × 7e+09 parameters × 2e+12 tokens")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"device": TPU_V3}, "device_key"),
        ({"hours": None, "parameters": 7e9}, "tokens"),
        ({"hours": None, "device_hours": 5e10}, "device_hours"),
        ({"device_hours": 100}, "hours"),
        ({"host": {"power_w": 20_000}}, "host.power_w"),
        ({"host": {"gpu_slots": 0}}, "host.gpu_slots"),
        ({"include_host": False, "host": {"power_w": 100}}, "host"),
        ({"include_host": False, "avg_power_w": 2000}, "avg_power_w"),
        ({"device_key": None, "device": {**TPU_V3, "peak_tflops": {"fp3": 1}}}, "device.peak_tflops"),
        ({"device_key": None, "device": {**TPU_V3, "idle_power_w": 500}}, "device.idle_power_w"),
    ],
)
def test_estimate_new_inputs_bad_input_is_400_naming_the_field(world, patch, field):
    body = {k: v for k, v in {**ESTIMATE, **patch}.items() if v is not None}
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 400, resp.content
    assert field in fields_of(resp), resp.json()


def test_estimate_power_above_the_limit_is_accepted_only_with_the_host_included_in_it(world):
    body = {**ESTIMATE, "avg_power_w": 800}
    c = client_for(member_of(world["team"]))
    assert c.post("/api/v1/estimate/", body, format="json").status_code == 400
    resp = c.post("/api/v1/estimate/", {**body, "include_host": False}, format="json")
    assert resp.status_code == 200
    assert resp.json()["footprint"]["it_energy_j"] == pytest.approx(8 * 800 * 36000)


def test_estimate_with_zone_code(world):
    body = {**ESTIMATE, "zone_code": "ZZ-WHATIF"}
    del body["intensity_g_per_kwh"]
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 200
    assert resp.json()["footprint"]["intensity_g_per_kwh"] == 400.0


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"device_key": "tpu-v9"}, "device_key"),
        ({"device_count": 0}, "device_count"),
        ({"pue": 0.5}, "pue"),
        ({"flops": 1e20}, "hours"),
        ({"utilisation": 0.5}, "avg_power_w"),
        ({"intensity_g_per_kwh": None}, "intensity_g_per_kwh"),
        ({"precision": "fp3"}, "precision"),
        ({"hours": "NaN"}, "hours"),
        ({"units": {"tokens": -1}}, "units.tokens"),
        ({"embodied": {"embodied_kg": 10, "embodied_low_kg": 20}}, "embodied.embodied_low_kg"),
    ],
)
def test_estimate_bad_input_is_400_naming_the_field(world, patch, field):
    body = {**ESTIMATE, **patch}
    body = {k: v for k, v in body.items() if v is not None}
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 400, resp.content
    assert field in fields_of(resp), resp.json()


def test_estimate_unknown_zone_is_400(world):
    body = {**ESTIMATE, "zone_code": "NOPE"}
    del body["intensity_g_per_kwh"]
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 400 and "zone_code" in fields_of(resp)


def test_unauthenticated_is_rejected(world):
    resp = APIClient().post("/api/v1/estimate/", ESTIMATE, format="json")
    assert resp.status_code in (401, 403)


def test_project_job_for_team_member(world):
    job = world["job"]
    before = m.JobFootprint.objects.get(job=job).gpu_energy_j
    resp = client_for(member_of(world["team"])).post(
        f"/api/v1/jobs/{job.pk}/project/", {"target_key": "h100-sxm5-80gb"}, format="json"
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["baseline"]["device_key"] == "a100-sxm4-80gb" and body["baseline"]["device_count"] == 4
    assert body["baseline"]["runtime_s"] == 36000.0 and body["baseline"]["basis"] == "measured"
    assert body["projected"]["device_key"] == "h100-sxm5-80gb" and body["projected"]["basis"] == "modelled"
    assert body["speedup"] > 1.5 and body["method"] == "roofline"
    # the baseline is the ledger footprint, not a re-model from the zone's annual factor
    assert body["baseline"]["total_energy_j"] == 95.256e6 and body["baseline"]["operational_co2e_g"] == 11907.0
    assert body["baseline"]["co2e_g"] == 11907.0 + 40 * 100_000 / (5 * 8760 * 0.8) + 600.0
    assert body["baseline"]["intensity_g_per_kwh"] == pytest.approx(450.0, rel=1e-12)
    assert body["baseline"]["pue"] == pytest.approx(1.5, rel=1e-12)
    assert m.JobFootprint.objects.get(job=job).gpu_energy_j == before  # read-only


def test_project_job_visible_to_org_admin_and_superuser(world):
    admin = UserFactory()
    MembershipFactory(user=admin, org=world["org"], team=None, role=m.Membership.Role.ADMIN)
    superuser = UserFactory(is_superuser=True)
    for user in (admin, superuser):
        resp = client_for(user).post(
            f"/api/v1/jobs/{world['job'].pk}/project/", {"target_key": "h100-sxm5-80gb"}, format="json"
        )
        assert resp.status_code == 200


def test_project_job_hidden_from_other_team_and_other_org(world):
    other_member = member_of(world["other_team"])
    outsider = member_of(TeamFactory())
    plain_member_admin_elsewhere = UserFactory()
    MembershipFactory(
        user=plain_member_admin_elsewhere, org=OrganizationFactory(), team=None, role=m.Membership.Role.ADMIN
    )
    for user in (other_member, outsider, plain_member_admin_elsewhere):
        resp = client_for(user).post(
            f"/api/v1/jobs/{world['job'].pk}/project/", {"target_key": "h100-sxm5-80gb"}, format="json"
        )
        assert resp.status_code == 404


def test_project_job_missing_is_404_and_bad_target_400(world):
    c = client_for(member_of(world["team"]))
    assert c.post("/api/v1/jobs/999999/project/", {"target_key": "h100-sxm5-80gb"}, format="json").status_code == 404
    resp = c.post(f"/api/v1/jobs/{world['job'].pk}/project/", {"target_key": "nope"}, format="json")
    assert resp.status_code == 400 and "target_key" in fields_of(resp)
    resp = c.post(
        f"/api/v1/jobs/{world['job'].pk}/project/", {"target_key": "h100-sxm5-80gb", "target_count": 0}, format="json"
    )
    assert resp.status_code == 400 and "target_count" in fields_of(resp)


def test_project_job_with_nothing_measured_is_409(world):
    # The request is valid; the job's state (no allocation, no measured energy yet) is what stops
    # the projection: a 409 problem, as any state that forbids an action (was a 400 on "job").
    job = JobFactory(cluster=world["cluster"], team=world["team"])
    resp = client_for(member_of(world["team"])).post(
        f"/api/v1/jobs/{job.pk}/project/", {"target_key": "h100-sxm5-80gb"}, format="json"
    )
    assert resp.status_code == 409
    assert resp.json()["detail"] == "The job has no device allocations: nothing measured to project."


def _bearer(secret):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return c


def test_token_scopes(world):
    job = world["job"]
    url = f"/api/v1/jobs/{job.pk}/project/"
    body = {"target_key": "h100-sxm5-80gb"}
    admin = token_create(org=world["org"], name="a", scope=m.ApiToken.Scope.ADMIN)
    assert _bearer(admin.secret).post(url, body, format="json").status_code == 200
    sched = token_create(org=world["org"], name="s", scope=m.ApiToken.Scope.SCHEDULER, cluster=world["cluster"])
    assert _bearer(sched.secret).post(url, body, format="json").status_code == 200
    other_cluster = ClusterFactory(site=world["site"])
    sched2 = token_create(org=world["org"], name="s2", scope=m.ApiToken.Scope.SCHEDULER, cluster=other_cluster)
    assert _bearer(sched2.secret).post(url, body, format="json").status_code == 404
    user_tok = token_create(org=world["org"], name="u", scope=m.ApiToken.Scope.USER, user=member_of(world["team"]))
    assert _bearer(user_tok.secret).post(url, body, format="json").status_code == 200
    user_tok2 = token_create(
        org=world["org"], name="u2", scope=m.ApiToken.Scope.USER, user=member_of(world["other_team"])
    )
    assert _bearer(user_tok2.secret).post(url, body, format="json").status_code == 404
    foreign_admin = token_create(org=OrganizationFactory(), name="f", scope=m.ApiToken.Scope.ADMIN)
    assert _bearer(foreign_admin.secret).post(url, body, format="json").status_code == 404
    host_tok = token_create(
        org=world["org"], name="h", scope=m.ApiToken.Scope.HOST, host=HostFactory(cluster=world["cluster"])
    )
    assert _bearer(host_tok.secret).post(url, body, format="json").status_code == 403
    assert _bearer(host_tok.secret).post("/api/v1/estimate/", ESTIMATE, format="json").status_code == 403


FLEET = {
    "old_key": "a100-sxm4-80gb",
    "old_count": 16,
    "new_key": "h100-sxm5-80gb",
    "new_count": 8,
    "pue": 1.2,
    "intensity_g_per_kwh": 400,
    "old_age_years": 2,
    "workloads": [{"family": "llm", "kind": "training", "device_hours_per_year": 100000, "avg_util": 0.9}],
}


def test_fleet_plan(world):
    resp = client_for(member_of(world["team"])).post("/api/v1/fleet-plan/", FLEET, format="json")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    # Embodied from HardwareModel rows: 8 × 150 kg new; old 16 × 100 kg × (1 − 2/5) remaining.
    assert body["new_embodied_co2e_g"] == pytest.approx(8 * 150_000)
    assert body["old_remaining_embodied_g"] == pytest.approx(16 * 100_000 * 0.6)
    assert body["operational_saving_g_per_year"] > 0 and body["payback_years"] > 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"workloads": []}, "workloads"),
        ({"workloads": [{"family": "cnn", "kind": "training", "device_hours_per_year": 1}]}, "workloads[0].family"),
        ({"workloads": [{"family": "llm", "kind": "training", "device_hours_per_year": 1e6}]}, "workloads"),
        ({"new_key": "x"}, "new_key"),
        ({"old_count": -1}, "old_count"),
    ],
)
def test_fleet_plan_bad_input(world, patch, field):
    resp = client_for(member_of(world["team"])).post("/api/v1/fleet-plan/", {**FLEET, **patch}, format="json")
    assert resp.status_code == 400, resp.content
    assert field in fields_of(resp), resp.json()


def test_fleet_plan_without_embodied_rows_needs_figures(world):
    body = {**FLEET, "new_key": "l4-24gb"}
    resp = client_for(member_of(world["team"])).post("/api/v1/fleet-plan/", body, format="json")
    assert resp.status_code == 400 and "new_embodied" in fields_of(resp)
    body["new_embodied"] = {"embodied_kg": 50}
    assert client_for(member_of(world["team"])).post("/api/v1/fleet-plan/", body, format="json").status_code == 200


WINDOW = {
    "duration_s": 7200,
    "earliest_start": "2026-11-26T10:00:00Z",
    "deadline": "2026-11-26T16:00:00Z",
    "energy_j": 3.6e9,
    "pue": 1.0,
    "forecast": [
        {"hour": f"2026-11-26T{h:02d}:00:00Z", "intensity_g_per_kwh": v}
        for h, v in zip(range(10, 16), (420, 380, 250, 210, 300, 410), strict=True)
    ],
}


def test_best_window_from_forecast(world):
    resp = client_for(member_of(world["team"])).post("/api/v1/best-window/", WINDOW, format="json")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["best_start"] == "2026-11-26T12:00:00+00:00"
    assert body["best_avg_intensity_g_per_kwh"] == pytest.approx(230.0)
    assert body["now_avg_intensity_g_per_kwh"] == pytest.approx(400.0)
    assert body["saving_co2e_g"] == pytest.approx(1000 * 170.0)


def test_best_window_from_stored_zone_series(world):
    start = dt.datetime(2026, 11, 26, 10, tzinfo=UTC)
    for i, v in enumerate((420, 380, 250, 210, 300, 410)):
        m.HourlyIntensity.objects.create(
            zone=world["zone"],
            hour=start + dt.timedelta(hours=i),
            intensity_g_per_kwh=v,
            is_forecast=True,
            source=m.FactorSource.OPERATOR,
        )
    body = {k: v for k, v in WINDOW.items() if k != "forecast"} | {"zone_code": "ZZ-WHATIF"}
    resp = client_for(member_of(world["team"])).post("/api/v1/best-window/", body, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["best_start"] == "2026-11-26T12:00:00+00:00"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"deadline": "2026-11-26T09:00:00Z"}, "deadline"),
        ({"deadline": "2026-11-26T11:00:00Z"}, "deadline"),
        ({"forecast": []}, "forecast"),
        ({"earliest_start": "yesterday"}, "earliest_start"),
        (
            {"forecast": [{"hour": "2026-11-26T10:00:00Z", "intensity_g_per_kwh": -5}]},
            "forecast[0].intensity_g_per_kwh",
        ),
        ({"earliest_start": "2026-11-26T08:00:00Z"}, "forecast"),
    ],
)
def test_best_window_bad_input(world, patch, field):
    resp = client_for(member_of(world["team"])).post("/api/v1/best-window/", {**WINDOW, **patch}, format="json")
    assert resp.status_code == 400, resp.content
    assert field in fields_of(resp), resp.json()


# --- one base for every API view: throttle, scopes, the principal's rule (issue 12 step 3) ----


def test_whatif_endpoints_are_throttled_per_token(world, monkeypatch):
    from django.core.cache import cache

    from accounting.api.permissions import TokenRateThrottle

    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "2/min"})
    issued = token_create(org=world["org"], name="thr", scope=m.ApiToken.Scope.ADMIN)
    key = f"throttle_token_t{issued.token.pk}"
    cache.delete(key)
    client = _bearer(issued.secret)
    codes = [client.post("/api/v1/estimate/", ESTIMATE, format="json").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    resp = client.post("/api/v1/best-window/", WINDOW, format="json")  # one bucket per token
    assert resp.status_code == 429 and resp["Content-Type"] == "application/problem+json"
    assert int(resp["Retry-After"]) > 0 and resp.json()["title"] == "Too many requests"
    cache.delete(key)


@pytest.mark.parametrize(
    ("url", "body"),
    [("/api/v1/estimate/", ESTIMATE), ("/api/v1/fleet-plan/", FLEET), ("/api/v1/best-window/", WINDOW)],
)
def test_whatif_refuses_a_token_without_a_read_scope(world, url, body):
    host_tok = token_create(
        org=world["org"], name="h", scope=m.ApiToken.Scope.HOST, host=HostFactory(cluster=world["cluster"])
    )
    before = m.Job.objects.count(), m.JobFootprint.objects.count()
    resp = _bearer(host_tok.secret).post(url, body, format="json")
    assert resp.status_code == 403 and resp["Content-Type"] == "application/problem+json"
    assert resp.json()["detail"] == "This token's scope does not allow this operation."
    assert (m.Job.objects.count(), m.JobFootprint.objects.count()) == before


def test_a_member_of_one_team_cannot_project_another_teams_job(world):
    resp = client_for(member_of(world["other_team"])).post(
        f"/api/v1/jobs/{world['job'].pk}/project/", {"target_key": "h100-sxm5-80gb"}, format="json"
    )
    assert resp.status_code == 404 and resp["Content-Type"] == "application/problem+json"
    assert resp.json()["detail"] == "No such job visible to this token."


def test_whatif_is_json_only_like_every_api_view(world):
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", {"device_key": "x"}, format="multipart")
    assert resp.status_code == 415


# --- physical bounds (issue 19) --------------------------------------------------------------


def _project(world, **body):
    return client_for(member_of(world["team"])).post(
        f"/api/v1/jobs/{world['job'].pk}/project/", {"target_key": "h100-sxm5-80gb", **body}, format="json"
    )


def errors_of(resp) -> dict[str, str]:
    return {e["field"]: e["message"] for e in resp.json().get("errors", [])}


def test_a_1_w_power_cap_on_an_h100_is_refused_naming_the_bound(world):
    resp = _project(world, target_power_cap_w=1)
    assert resp.status_code == 400, resp.content
    assert errors_of(resp) == {
        "target_power_cap_w": "must be between 200 and 700 W for H100 SXM5 80GB (its enforceable power-limit range)"
    }
    assert "projected" not in resp.json()


@pytest.mark.parametrize(("cap", "code"), [(199, 400), (200, 200), (700, 200), (701, 400)])
def test_power_cap_bounds_are_inclusive(world, cap, code):
    assert _project(world, target_power_cap_w=cap).status_code == code


def test_a_power_cap_on_a_device_without_a_cited_minimum_uses_the_30_percent_rule(world):
    body = {"target_key": "l40s-48gb", "target_power_cap_w": 100}  # 30 % of 350 W = 105 W
    resp = client_for(member_of(world["team"])).post(f"/api/v1/jobs/{world['job'].pk}/project/", body, format="json")
    assert resp.status_code == 400
    assert errors_of(resp)["target_power_cap_w"].startswith("must be between 105 and 350 W for L40S 48GB")


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        ({"device_count": 0}, "device_count", "must be between 1 and 1e+06 (devices)"),
        ({"hours": -1}, "hours", "must be above 0 and at most 1e+06 h (a run takes some time)"),
        ({"hours": 0}, "hours", "must be above 0 and at most 1e+06 h (a run takes some time)"),
        ({"pue": 0.9}, "pue", "must be between 1 and 5 (facility / IT energy, 1 at best)"),
        (
            {"avg_power_w": None, "utilisation": 1.5},
            "utilisation",
            "must be between 0 and 1 (a fraction of the device's busy time)",
        ),
        ({"intensity_g_per_kwh": -1}, "intensity_g_per_kwh", "must be between 0 and 5000 gCO2e/kWh"),
        (
            {"avg_power_w": 16},
            "avg_power_w",
            "must be between 49 and 700 W for H100 SXM5 80GB (its idle draw less 30% to its power limit)",
        ),
        (
            {"avg_power_w": 900},
            "avg_power_w",
            "must be between 49 and 700 W for H100 SXM5 80GB (its idle draw less 30% to its power limit)",
        ),
    ],
)
def test_impossible_estimate_input_is_400_naming_field_and_bound(world, patch, field, message):
    body = {k: v for k, v in {**ESTIMATE, **patch}.items() if v is not None}
    resp = client_for(member_of(world["team"])).post("/api/v1/estimate/", body, format="json")
    assert resp.status_code == 400, resp.content
    assert errors_of(resp) == {field: message}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"target_count": 0}, "target_count"),
        ({"target_pue": 0.9}, "target_pue"),
    ],
)
def test_impossible_projection_input_is_400(world, patch, field):
    resp = _project(world, **patch)
    assert resp.status_code == 400 and field in errors_of(resp)


def test_impossible_fleet_and_window_input_is_400(world):
    c = client_for(member_of(world["team"]))
    workloads = [{"family": "llm", "kind": "training", "device_hours_per_year": 1000, "avg_power_w": 5}]
    resp = c.post("/api/v1/fleet-plan/", {**FLEET, "workloads": workloads}, format="json")
    assert resp.status_code == 400
    assert errors_of(resp) == {
        "workloads[0].avg_power_w": "must be between 38 and 400 W for A100 SXM4 80GB "
        "(its idle draw less 30% to its power limit)"
    }
    resp = c.post("/api/v1/best-window/", {**WINDOW, "duration_s": 0}, format="json")
    assert resp.status_code == 400 and set(errors_of(resp)) == {"duration_s"}
    resp = c.post("/api/v1/best-window/", {**WINDOW, "pue": 0.9}, format="json")
    assert resp.status_code == 400 and set(errors_of(resp)) == {"pue"}


def test_projecting_onto_the_same_hardware_reproduces_the_ledger_footprint(world):
    body = _project(world, target_key="a100-sxm4-80gb").json()
    b, p = body["baseline"], body["projected"]
    assert b["total_energy_j"] == 95.256e6 and b["host_energy_j"] == 20.304e6
    for f in ("runtime_s", "total_energy_j", "operational_co2e_g", "embodied_co2e_g", "co2e_g"):
        assert p[f] == pytest.approx(b[f], rel=1e-9), f
    assert body["co2e_change_g"] == pytest.approx(0.0, abs=1e-6)


def test_a_power_cap_slows_the_projected_job(world):
    free = _project(world, target_key="a100-sxm4-80gb").json()["projected"]
    capped = _project(world, target_key="a100-sxm4-80gb", target_power_cap_w=200).json()["projected"]
    cs, ms = 0.9 * 0.70, 0.9 * 0.15
    slow = cs * (200 / 300) ** -0.5 + ms * (200 / 300) ** -0.05 + (1 - cs - ms)
    assert free["runtime_s"] == pytest.approx(36000.0, rel=1e-9)
    assert capped["runtime_s"] == pytest.approx(36000.0 * slow, rel=1e-9)
    assert capped["avg_power_w"] == pytest.approx(200.0, rel=1e-9)


def test_the_cap_curve_is_fitted_from_the_same_jobs_run_under_caps(world):
    job = world["job"]
    job.name = "bert-large"
    job.save()
    a100 = m.HardwareModel.objects.get(key="a100-sxm4-80gb")
    host = HostFactory(cluster=world["cluster"])
    for cap, hours in ((None, 10.0), (200.0, 12.0)):
        run = JobFactory(
            cluster=world["cluster"],
            team=world["team"],
            name="bert-large",
            kind=m.Job.Kind.TRAINING,
            status=m.Job.Status.COMPLETED,
            power_cap_w=cap,
            started_at=dt.datetime(2026, 10, 1, tzinfo=UTC),
            ended_at=dt.datetime(2026, 10, 1, tzinfo=UTC) + dt.timedelta(hours=hours),
        )
        JobAllocationFactory(
            job=run, device=DeviceFactory(host=host, hardware_model=a100), start=run.started_at, end=run.ended_at
        )
    body = _project(world, target_key="a100-sxm4-80gb", target_power_cap_w=200).json()
    import math

    alpha = math.log((1.2 - (1 - 0.63)) / 0.63) / math.log(400 / 200)
    cs, ms = 0.9 * 0.70, 0.9 * 0.15
    slow = cs * (200 / 300) ** -alpha + ms * (200 / 300) ** -0.05 + (1 - cs - ms)
    assert body["projected"]["runtime_s"] == pytest.approx(36000.0 * slow, rel=1e-9)
    assert any("fitted from 1 jobs run under different caps" in n for n in body["assumptions"])
