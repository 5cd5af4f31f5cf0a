# ruff: noqa: F811 - pytest fixtures imported from test_api_support
"""GET /metrics (and /api/v1/metrics): Prometheus counters read from the roll-ups, scoped by token,
in the text format and OpenMetrics."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounting import models as m
from telemetry.models import HostStream, TelemetryBatch
from tests import factories as f
from tests.accounting.test_api_support import world  # noqa: F401

pytestmark = pytest.mark.django_db
METRICS = "/metrics"
HOUR = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def _samples(text: str, parse=text_string_to_metric_families) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in parse(text) for s in family.samples}


def _batch(host, status, received_at):
    return TelemetryBatch.objects.create(
        host=host,
        batch_id=uuid.uuid4(),
        received_at=received_at,
        first_start=received_at,
        last_end=received_at,
        first_seq=1,
        last_seq=1,
        gpu_window_count=1,
        host_window_count=1,
        gpu_energy_j=1.0,
        host_energy_j=1.0,
        status=status,
    )


@pytest.fixture
def ledger(world):
    """Roll-up rows of two organisations: team-days, device-hours, job-hours of four jobs."""
    site = world.cluster_a.site
    now = timezone.now()
    m.TeamDay.objects.create(
        org=world.org, team=world.team, site=site, day=dt.date(2026, 11, 1), energy_j=100.0,
        gpu_idle_energy_j=5.0, co2e_operational_g=10.0, co2e_embodied_g=2.0,
    )  # fmt: skip
    m.TeamDay.objects.create(
        org=world.org, team=world.team, site=site, day=dt.date(2026, 11, 2), energy_j=20.0,
        gpu_idle_energy_j=1.0, co2e_operational_g=3.0, co2e_embodied_g=0.5,
    )  # fmt: skip
    m.TeamDay.objects.create(
        org=world.org, team=world.team2, site=site, day=dt.date(2026, 11, 2), energy_j=7.0,
        co2e_operational_g=0.7, co2e_embodied_g=0.25,
    )  # fmt: skip
    m.TeamDay.objects.create(
        org=world.org, team=None, site=site, day=dt.date(2026, 11, 2), energy_j=50.0,
        gpu_idle_energy_j=50.0, co2e_operational_g=4.0, co2e_embodied_g=1.0,
    )  # fmt: skip
    m.TeamDay.objects.create(
        org=world.other_org, team=world.other_team, site=world.other_cluster.site, day=dt.date(2026, 11, 1),
        energy_j=999.0, co2e_operational_g=999.0,
    )  # fmt: skip
    h100 = f.HardwareModelFactory()
    a100 = f.HardwareModelFactory(key="a100-sxm4-80gb", name="NVIDIA A100")
    gpu0 = f.DeviceFactory(host=world.host_a, index=0, hardware_model=h100)
    gpu1 = f.DeviceFactory(host=world.host_a, index=1, hardware_model=a100)
    other_gpu = f.DeviceFactory(host=f.HostFactory(cluster=world.other_cluster), hardware_model=h100)
    for hour, device, energy, idle in ((0, gpu0, 1000.0, 100.0), (1, gpu0, 500.0, 50.0), (0, gpu1, 300.0, 300.0)):
        m.DeviceHour.objects.create(
            device=device, hour=HOUR + dt.timedelta(hours=hour), energy_j=energy, idle_energy_j=idle,
            allocated_s=3600.0 if device is gpu0 else 0.0, observed_s=3600.0,
            co2e_operational_g=energy / 100, co2e_embodied_g=2.5,
        )  # fmt: skip
    m.DeviceHour.objects.create(device=other_gpu, hour=HOUR, energy_j=777.0, observed_s=60.0)

    def job(sched_id, *, team, status, ended_at=None, cluster=None, devices=(), units=None):
        j = f.JobFactory(
            cluster=cluster or world.cluster_a, team=team, scheduler_job_id=sched_id, status=status,
            started_at=HOUR, ended_at=ended_at, units=units or {},
        )  # fmt: skip
        for device in devices:
            m.JobAllocation.objects.create(job=j, device=device, start=HOUR)
        return j

    running = job("1001", team=world.team, status="running", devices=[gpu0, gpu1], units={"tokens": 2.5e6})
    recent = job("1002", team=world.team2, status="completed", ended_at=now - dt.timedelta(minutes=30))
    job("1003", team=world.team, status="completed", ended_at=now - dt.timedelta(hours=2), devices=[gpu0])
    job("9001", team=world.other_team, status="running", cluster=world.other_cluster, devices=[other_gpu])
    for hour, energy in ((0, 1200.0), (1, 600.0)):
        m.JobHour.objects.create(
            job=running, hour=HOUR + dt.timedelta(hours=hour), energy_j=energy, gpu_energy_j=energy / 2,
            gpu_idle_energy_j=energy / 10, measured_gpu_energy_j=energy / 4, co2e_operational_g=energy / 100,
            co2e_embodied_g=1.5,
        )  # fmt: skip
    m.JobHour.objects.create(job=recent, hour=HOUR, energy_j=40.0, gpu_energy_j=40.0, co2e_operational_g=0.4)
    HostStream.objects.create(
        host=world.host_a, last_seq=1, last_seen_at=dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    )
    _batch(world.host_a, "pending", now - dt.timedelta(seconds=30))
    _batch(world.host_a, "pending", now - dt.timedelta(seconds=60))
    _batch(world.host_a, "failed", now - dt.timedelta(seconds=90))
    return world


ADMIN_TEXT_LINES = [
    "# HELP carbonledger_energy_joules_total Attributed energy (IT + facility) by account: job (a team's jobs, "
    "GPU idle baseline excluded), idle_allocated (GPU idle baseline of devices a job held), fleet_overhead "
    "(unallocated devices, team '')",
    "# TYPE carbonledger_energy_joules_total counter",
    'carbonledger_energy_joules_total{account="fleet_overhead",org="acme",site="paris",team=""} 50.0',
    'carbonledger_energy_joules_total{account="job",org="acme",site="paris",team="llm"} 7.0',
    'carbonledger_energy_joules_total{account="idle_allocated",org="acme",site="paris",team="llm"} 0.0',
    'carbonledger_energy_joules_total{account="job",org="acme",site="paris",team="recsys"} 114.0',
    'carbonledger_energy_joules_total{account="idle_allocated",org="acme",site="paris",team="recsys"} 6.0',
    "# TYPE carbonledger_co2e_grams_total counter",
    'carbonledger_co2e_grams_total{account="fleet_overhead",kind="operational",org="acme",site="paris",team=""} 4.0',
    'carbonledger_co2e_grams_total{account="job",kind="operational",org="acme",site="paris",team="recsys"} 13.0',
    'carbonledger_co2e_grams_total{account="job",kind="embodied",org="acme",site="paris",team="recsys"} 2.5',
    "# TYPE carbonledger_gpu_energy_joules_total counter",
    'carbonledger_gpu_energy_joules_total{cluster="hpc-a",device_model="a100-sxm4-80gb",org="acme",site="paris",'
    'state="active"} 0.0',
    'carbonledger_gpu_energy_joules_total{cluster="hpc-a",device_model="a100-sxm4-80gb",org="acme",site="paris",'
    'state="idle"} 300.0',
    'carbonledger_gpu_energy_joules_total{cluster="hpc-a",device_model="h100-sxm5-80gb",org="acme",site="paris",'
    'state="active"} 1350.0',
    'carbonledger_gpu_energy_joules_total{cluster="hpc-a",device_model="h100-sxm5-80gb",org="acme",site="paris",'
    'state="idle"} 150.0',
    'carbonledger_gpu_co2e_grams_total{cluster="hpc-a",device_model="h100-sxm5-80gb",kind="operational",'
    'org="acme",site="paris"} 15.0',
    'carbonledger_gpu_co2e_grams_total{cluster="hpc-a",device_model="h100-sxm5-80gb",kind="embodied",'
    'org="acme",site="paris"} 5.0',
    'carbonledger_gpu_allocated_seconds_total{cluster="hpc-a",device_model="h100-sxm5-80gb",org="acme",'
    'site="paris"} 7200.0',
    'carbonledger_gpu_observed_seconds_total{cluster="hpc-a",device_model="a100-sxm4-80gb",org="acme",'
    'site="paris"} 3600.0',
    "# TYPE carbonledger_job_energy_joules_total counter",
    'carbonledger_job_energy_joules_total{account="job",cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",'
    'job_id="1001",org="acme",site="paris",team="recsys"} 1620.0',
    'carbonledger_job_energy_joules_total{account="idle_allocated",cluster="hpc-a",'
    'device_model="a100-sxm4-80gb+h100-sxm5-80gb",job_id="1001",org="acme",site="paris",team="recsys"} 180.0',
    'carbonledger_job_energy_joules_total{account="job",cluster="hpc-a",device_model="unknown",job_id="1002",'
    'org="acme",site="paris",team="llm"} 40.0',
    'carbonledger_job_co2e_grams_total{cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",job_id="1001",'
    'kind="operational",org="acme",site="paris",team="recsys"} 18.0',
    'carbonledger_job_co2e_grams_total{cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",job_id="1001",'
    'kind="embodied",org="acme",site="paris",team="recsys"} 3.0',
    'carbonledger_job_gpu_energy_joules_total{cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",'
    'job_id="1001",org="acme",quality="measured",site="paris",team="recsys"} 450.0',
    'carbonledger_job_gpu_energy_joules_total{cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",'
    'job_id="1001",org="acme",quality="estimated",site="paris",team="recsys"} 450.0',
    'carbonledger_job_functional_units_total{cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",'
    'job_id="1001",org="acme",site="paris",team="recsys",unit="tokens"} 2.5e+06',
    'carbonledger_job_running{cluster="hpc-a",device_model="a100-sxm4-80gb+h100-sxm5-80gb",job_id="1001",'
    'org="acme",site="paris",team="recsys"} 1.0',
    'carbonledger_job_running{cluster="hpc-a",device_model="unknown",job_id="1002",org="acme",site="paris",'
    'team="llm"} 0.0',
    'carbonledger_attribution_queue_batches{state="pending"} 2.0',
    'carbonledger_attribution_queue_batches{state="claimed"} 0.0',
    'carbonledger_attribution_queue_batches{state="failed"} 1.0',
    'carbonledger_jobs_running{org="acme"} 1.0',
    'carbonledger_host_last_seen_timestamp_seconds{cluster="hpc-a",host="gpu-node-01",org="acme",site="paris"} '
    "1.7956944e+09",
]


def test_admin_token_scrapes_its_organisation_at_the_root_path(ledger):
    response = ledger.client("admin").get(METRICS)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.content.decode()
    lines = set(text.splitlines())
    missing = [line for line in ADMIN_TEXT_LINES if line not in lines]
    assert not missing, missing
    assert "globex" not in text and "ohio" not in text and "9001" not in text and "777" not in text
    assert 'job_id="1003"' not in text  # ended two hours ago: out of the exposition
    samples = _samples(text)
    assert 30 <= samples[("carbonledger_ingest_lag_seconds", ())] < 60
    # every sample of the energy family sums to the team-days' energy of the organisation
    energy = sum(v for (name, _), v in samples.items() if name == "carbonledger_energy_joules_total")
    assert energy == 100.0 + 20.0 + 7.0 + 50.0
    # the former address serves the same exposition
    assert ledger.client("admin").get("/api/v1/metrics").content.splitlines()[:40] == text.encode().splitlines()[:40]


def test_openmetrics_when_the_scraper_asks_for_it(ledger):
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = ledger.client("admin").get(METRICS, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert (
        response["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
    )
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    lines = text.splitlines()
    assert "# TYPE carbonledger_energy_joules counter" in lines
    assert 'carbonledger_energy_joules_total{account="job",org="acme",site="paris",team="recsys"} 114.0' in lines
    assert (
        'carbonledger_job_energy_joules_total{account="idle_allocated",cluster="hpc-a",'
        'device_model="a100-sxm4-80gb+h100-sxm5-80gb",job_id="1001",org="acme",site="paris",team="recsys"} 180.0'
    ) in lines
    samples = _samples(text, openmetrics_families)
    assert samples[("carbonledger_attribution_queue_batches", (("state", "failed"),))] == 1.0
    query = ledger.client("admin").get(METRICS, {"format": "openmetrics"})
    assert query["Content-Type"].startswith("application/openmetrics-text")


def test_user_token_sees_its_teams_only(ledger):
    text = ledger.client("alice").get(METRICS).content.decode()  # alice: member of recsys
    samples = _samples(text)
    energy = {k: v for k, v in samples.items() if k[0] == "carbonledger_energy_joules_total"}
    assert energy == {
        ("carbonledger_energy_joules_total", (("account", "job"), ("org", "acme"), ("site", "paris"), ("team", "recsys"))): 114.0,
        ("carbonledger_energy_joules_total", (("account", "idle_allocated"), ("org", "acme"), ("site", "paris"), ("team", "recsys"))): 6.0,
    }  # fmt: skip
    jobs = {dict(labels)["job_id"] for name, labels in samples if name == "carbonledger_job_running"}
    assert jobs == {"1001"}
    # no fleet-level families for a team member
    assert "carbonledger_gpu_energy_joules" not in text and "carbonledger_ingest_lag_seconds" not in text
    # bob holds an organisation-admin membership: he sees the fleet overhead too
    bob = _samples(ledger.client("bob").get(METRICS).content.decode())
    assert bob[("carbonledger_energy_joules_total", (("account", "fleet_overhead"), ("org", "acme"), ("site", "paris"), ("team", "")))] == 50.0  # fmt: skip


def test_metrics_access(world, settings):
    for token in ("sched_a", "host_a"):
        assert world.client(token).get(METRICS).status_code == 403
    assert APIClient().get(METRICS).status_code == 401
    assert world.client("admin").get(METRICS, {"format": "json"}).status_code == 404
    settings.CARBONLEDGER_METRICS_PUBLIC = True
    open_response = APIClient().get(METRICS)
    assert open_response.status_code == 200
    assert "carbonledger_jobs_running" in open_response.content.decode()


def test_public_endpoint_reports_every_organisation(ledger, settings):
    settings.CARBONLEDGER_METRICS_PUBLIC = True
    samples = _samples(APIClient().get(METRICS).content.decode())
    assert samples[("carbonledger_energy_joules_total", (("account", "job"), ("org", "globex"), ("site", "ohio"), ("team", "recsys")))] == 999.0  # fmt: skip
    assert samples[("carbonledger_jobs_running", (("org", "globex"),))] == 1.0
    # an admin token still reads its own organisation only
    admin = ledger.client("admin").get(METRICS).content.decode()
    assert "globex" not in admin


def test_ended_jobs_leave_after_the_recent_window(ledger, settings):
    settings.CARBONLEDGER_METRICS_RECENT_JOB_S = 3 * 3600
    text = ledger.client("admin").get(METRICS).content.decode()
    assert 'job_id="1003"' in text
    settings.CARBONLEDGER_METRICS_RECENT_JOB_S = 60
    text = ledger.client("admin").get(METRICS).content.decode()
    assert 'job_id="1002"' not in text and 'job_id="1001"' in text


def test_gpu_history_is_cached_and_recent_hours_are_live(ledger, settings):
    from django.core.cache import cache

    from accounting.selectors.access import principal_for
    from accounting.selectors.metrics import gpu_history_key

    def h100_active(client) -> float:
        samples = _samples(client.get(METRICS).content.decode())
        labels = (("cluster", "hpc-a"), ("device_model", "h100-sxm5-80gb"), ("org", "acme"), ("site", "paris"))
        return samples[("carbonledger_gpu_energy_joules_total", (*labels[:3], *labels[3:], ("state", "active")))]

    client = ledger.client("admin")
    assert h100_active(client) == 1350.0
    gpu0 = m.Device.objects.get(host=ledger.host_a, index=0)
    # an old hour written after the history was cached (a recompute): seen once the cache expires
    m.DeviceHour.objects.create(device=gpu0, hour=HOUR - dt.timedelta(days=20), energy_j=1000.0)
    # a recent hour: seen at the next scrape
    recent = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    m.DeviceHour.objects.create(device=gpu0, hour=recent, energy_j=10.0, idle_energy_j=4.0)
    assert h100_active(client) == 1350.0 + 6.0
    admin = principal_for(token=m.ApiToken.objects.get(name="admin"))
    cache.delete(gpu_history_key(principal=admin, now=timezone.now())[0])  # the cache expired
    assert h100_active(client) == 1350.0 + 6.0 + 1000.0
