"""One engine: an estimate of a job and the ledger of the same job run as estimated agree.

8 × H100 SXM for 24 h at 600 W per GPU on a DGX-H100-class host (2 × EPYC 9654, 2 TB DRAM,
30.72 TB SSD) drawing the estimator's default host power, in a zone with its annual factor only
(so the ledger and the estimate use the same intensity): the telemetry goes through ingest and
the real attribution path (batches_attribute → JobFootprint), the estimate through the what-if
service with its defaults (host share, 0.8 expected utilisation, the loaded embodied rows)."""

from __future__ import annotations

import datetime as dt

import pytest

from accounting.domain.whatif.host import DEFAULT_HOST
from accounting.models import ApiToken, HardwareModel, Job, JobFootprint
from accounting.services.attribution import batches_attribute
from accounting.services.factors import hardware_load_catalog
from accounting.services.whatif import whatif_estimate
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db

GPU_W = 600.0
HOURS = 24
# The host's measured CPU and DRAM draw: the estimator's default host (2 × 360 W TDP at load 0.5
# + 2048 GB × 0.375 W/GB = 1128 W), as RAPL would report it.
CPU_W = 2 * 360.0 * 0.5
DRAM_W = 2048 * 0.375


@pytest.fixture
def ran_job(client):
    hardware_load_catalog()
    h100 = HardwareModel.objects.get(key="h100-sxm5-80gb")
    host = HostFactory(gpu_slots=8, cpu_model="AMD EPYC 9654 96-Core Processor", dram_gb=2048, ssd_gb=30_720)
    site = host.cluster.site
    site.zone.annual_intensity_g_per_kwh = 400.0
    site.zone.save()
    gpus = [DeviceFactory(host=host, index=i, hardware_model=h100) for i in range(8)]
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=HOURS + 6)
    end = start + dt.timedelta(hours=HOURS)
    job = JobFactory(cluster=host.cluster, started_at=start, ended_at=end, status=Job.Status.COMPLETED)
    for gpu in gpus:
        JobAllocationFactory(job=job, device=gpu, start=start, end=end)
    secret = token_create(org=site.org, name="host", scope=ApiToken.Scope.HOST, host=host).secret
    windows = [
        window(
            seq=h + 1,
            start=start + dt.timedelta(hours=h),
            duration_s=3600.0,
            cpu_energy_j=CPU_W * 3600,
            dram_energy_j=DRAM_W * 3600,
            gpus=[gpu_entry(uuid_=g.uuid, index=g.index, energy_j=GPU_W * 3600, duration_s=3600.0) for g in gpus],
        )
        for h in range(HOURS)
    ]
    assert post_batch(client, secret, batch(hostname=host.hostname, windows=windows)).status_code == 202
    pks = list(TelemetryBatch.objects.values_list("pk", flat=True))
    outcome = batches_attribute(batch_pks=pks, now=dt.datetime.now(dt.UTC))
    assert outcome.attributed == pks
    return job, site


def test_estimate_of_8_h100_for_24_h_equals_the_ledger_of_the_job_run_as_estimated(ran_job):
    job, site = ran_job
    ledger = JobFootprint.objects.get(job=job)
    estimate = whatif_estimate(
        device_key="h100-sxm5-80gb",
        device_count=8,
        hours=HOURS,
        avg_power_w=GPU_W,
        pue=site.pue,
        zone_code=site.zone.code,
    ).footprint

    gpu_j = 8 * GPU_W * HOURS * 3600
    host_j = (CPU_W + DRAM_W) * HOURS * 3600
    assert DEFAULT_HOST.power_w == CPU_W + DRAM_W
    # Energy: GPU + the whole host (the job holds all 8 slots) + (PUE − 1) × IT, in both.
    assert ledger.gpu_energy_j == pytest.approx(gpu_j, rel=1e-12)
    assert ledger.host_energy_j == pytest.approx(host_j, rel=1e-12)
    assert estimate.host_energy_j == pytest.approx(host_j, rel=1e-12)
    assert estimate.total_energy_j == pytest.approx(ledger.energy_j, rel=1e-9)
    assert estimate.total_energy_j == pytest.approx((gpu_j + host_j) * 1.5, rel=1e-12)
    # Operational carbon from the same (annual) intensity.
    assert estimate.operational_co2e_g == pytest.approx(ledger.co2e_operational_g, rel=1e-9)
    assert estimate.operational_co2e_g == pytest.approx((gpu_j + host_j) * 1.5 / 3.6e6 * 400.0, rel=1e-12)
    # Embodied: GPU and host rows, 5 years × 0.8 expected utilisation, in both.
    h100 = HardwareModel.objects.get(key="h100-sxm5-80gb")
    gpu_emb_g = 8 * HOURS * h100.embodied_kg * 1000 / (5 * 8766 * 0.8)
    assert estimate.embodied_co2e_g - estimate.host_embodied_co2e_g == pytest.approx(gpu_emb_g, rel=1e-12)
    assert estimate.host_embodied_co2e_g > 0
    assert estimate.embodied_co2e_g == pytest.approx(ledger.co2e_embodied_g, rel=1e-9)
    assert estimate.co2e_g == pytest.approx(ledger.co2e_g, rel=1e-9)


def test_the_old_estimate_left_out_host_and_amortised_over_full_use(ran_job):
    """What the estimator gave before (GPU only, expected utilisation 1.0) misses the ledger by
    the host's energy and embodied share and by the 0.8 amortisation: the defect fixed here."""
    job, site = ran_job
    ledger = JobFootprint.objects.get(job=job)
    h100 = HardwareModel.objects.get(key="h100-sxm5-80gb")
    gpu_only = whatif_estimate(
        device_key="h100-sxm5-80gb",
        device_count=8,
        hours=HOURS,
        avg_power_w=GPU_W,
        pue=site.pue,
        zone_code=site.zone.code,
        include_host=False,
        embodied={"embodied_kg": h100.embodied_kg, "expected_utilisation": 1.0},
    ).footprint
    assert gpu_only.total_energy_j == pytest.approx(ledger.energy_j - ledger.host_energy_j * 1.5, rel=1e-9)
    assert gpu_only.total_energy_j < ledger.energy_j
    assert gpu_only.embodied_co2e_g < ledger.co2e_embodied_g
