"""A seeded month for the report tests (October 2026), built through the real path: telemetry
batches parsed and stored by the ingest service, attributed by ``batches_attribute`` (ledger
entries, JobHour, JobFootprint, TeamHour, TeamDay), so the report is checked against the ledger
the product really writes. September 2026 is history (TeamDay rows, every day: a comparable
previous month); October 2025 has no data (no comparison).

Acme (policy: overhead kept separate) has two sites: Site A (grid ZZ-COAL 500 g/kWh, PUE 1.4)
with host a1 (8 x H100), and Site B (ZZ-HYDRO 40 g/kWh, PUE 1.1) with no work. On 5 Oct, 00-06 h:
- Alpha "llm-pretrain" (LLM training, GPUs 0-3 at 600 W, 4e9 tokens), completed;
- Alpha "chat-serving" (LLM inference, GPUs 4-5 at the 70 W idle baseline: reserved, unused,
  1e5 queries), completed;
- Beta "recsys-train" (recommender training, GPUs 6-7 at 400 W for 3 h, 1e7 samples), failed;
  GPUs 6-7 idle and unallocated for the last 3 h: fleet overhead.
On 12 Oct 00-02 h Alpha runs "llm-pretrain" again (GPUs 0-3, 600 W, 2e9 tokens); GPUs 4-7 idle,
unallocated. Host a1 draws 400 W CPU and 200 W DRAM throughout.
Globex (another tenant): Gamma "gamma-secret" on host g1 (1 GPU at 300 W, 4 h) on 5 Oct.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings

from accounting import models as m
from accounting.services.attribution import batches_attribute
from accounting.services.factors import hardware_load_catalog
from accounting.tokens import token_create
from telemetry.models import HostStream, TelemetryBatch
from telemetry.parsing import parse_batch
from telemetry.services import batch_ingest
from tests import factories as f
from tests.telemetry.helpers import batch, gpu_entry, window

UTC = dt.UTC
MONTH = dt.date(2026, 10, 1)
TODAY = dt.date(2026, 11, 3)  # the month is closed
KWH = 3.6e6
CPU_W, DRAM_W = 400.0, 200.0
HISTORY_KWH_PER_DAY = 1.25  # Alpha, every day of September 2026
HISTORY_CO2E_G_PER_DAY = 600.0


@dataclass
class ReportWorld:
    org: m.Organization
    other_org: m.Organization
    alpha: m.Team
    beta: m.Team
    gamma: m.Team
    site_a: m.Site
    site_b: m.Site
    site_g: m.Site
    pretrain: m.Job
    pretrain_again: m.Job
    serving: m.Job
    recsys: m.Job
    secret: m.Job
    member: object  # Alpha member
    beta_member: object
    admin: object  # Acme admin
    outsider: object  # Gamma member (Globex)


def _job(cluster, team, *, sched, name, family, kind, status, start, hours, units, primary, gpus):
    job = f.JobFactory(
        cluster=cluster,
        team=team,
        scheduler_job_id=sched,
        name=name,
        family=family,
        kind=kind,
        status=status,
        started_at=start,
        ended_at=start + dt.timedelta(hours=hours),
        units=units,
        primary_unit=primary,
    )
    for d in gpus:
        f.JobAllocationFactory(job=job, device=d, start=start, end=start + dt.timedelta(hours=hours))
    return job


def _ingest(host, secret_token, start: dt.datetime, hours: int, power_w) -> list[int]:
    """One batch of hourly windows; ``power_w(hour_index, gpu_index)`` is each GPU's draw."""
    gpus = list(host.devices.order_by("index"))
    windows = [
        window(
            seq=(HostStream.objects.filter(host=host).values_list("last_seq", flat=True).first() or 0) + h + 1,
            start=start + dt.timedelta(hours=h),
            duration_s=3600.0,
            cpu_energy_j=CPU_W * 3600,
            dram_energy_j=DRAM_W * 3600,
            gpus=[
                gpu_entry(uuid_=g.uuid, index=g.index, energy_j=power_w(h, g.index) * 3600, duration_s=3600.0)
                for g in gpus
            ],
        )
        for h in range(hours)
    ]
    now = start + dt.timedelta(hours=hours, minutes=5)
    parsed = parse_batch(
        data=batch(hostname=host.hostname, windows=windows),
        now=now,
        clock_skew_s=settings.INGEST_CLOCK_SKEW_S,
        retention_days=settings.TELEMETRY_RETENTION_DAYS,
        max_windows=10_000,
    )
    batch_ingest(token=secret_token, batch=parsed, now=now)
    host.refresh_from_db()
    pks = list(TelemetryBatch.objects.filter(host=host).values_list("pk", flat=True))
    return pks


def report_world() -> ReportWorld:
    hardware_load_catalog()
    h100 = m.HardwareModel.objects.get(key="h100-sxm5-80gb")
    org = f.OrganizationFactory(slug="acme", name="Acme")
    other = f.OrganizationFactory(slug="globex", name="Globex")
    alpha = f.TeamFactory(org=org, name="Alpha", slug="alpha")
    beta = f.TeamFactory(org=org, name="Beta", slug="beta")
    gamma = f.TeamFactory(org=other, name="Gamma", slug="gamma")
    coal = f.GridZoneFactory(code="ZZ-COAL", annual_intensity_g_per_kwh=500.0)
    hydro = f.GridZoneFactory(code="ZZ-HYDRO", annual_intensity_g_per_kwh=40.0)
    site_a = f.SiteFactory(org=org, name="Site A", slug="site-a", zone=coal, pue=1.4)
    site_b = f.SiteFactory(org=org, name="Site B", slug="site-b", zone=hydro, pue=1.1)
    site_g = f.SiteFactory(org=other, name="Site G", slug="site-g", zone=coal, pue=1.2)
    ca = f.ClusterFactory(site=site_a, slug="ca")
    f.ClusterFactory(site=site_b, slug="cb")
    cg = f.ClusterFactory(site=site_g, slug="cg")
    a1 = f.HostFactory(cluster=ca, hostname="a1", gpu_slots=8)
    g1 = f.HostFactory(cluster=cg, hostname="g1", gpu_slots=1)
    gpus = [f.DeviceFactory(host=a1, index=i, hardware_model=h100) for i in range(8)]
    g_gpu = f.DeviceFactory(host=g1, index=0, hardware_model=h100)

    d5 = dt.datetime(2026, 10, 5, tzinfo=UTC)
    d12 = dt.datetime(2026, 10, 12, tzinfo=UTC)
    pretrain = _job(
        ca,
        alpha,
        sched="101",
        name="llm-pretrain",
        family="llm",
        kind="training",
        status="completed",
        start=d5,
        hours=6,
        units={"tokens": 4e9},
        primary="tokens",
        gpus=gpus[:4],
    )
    serving = _job(
        ca,
        alpha,
        sched="102",
        name="chat-serving",
        family="llm",
        kind="inference",
        status="completed",
        start=d5,
        hours=6,
        units={"queries": 1e5},
        primary="queries",
        gpus=gpus[4:6],
    )
    recsys = _job(
        ca,
        beta,
        sched="201",
        name="recsys-train",
        family="recommender",
        kind="training",
        status="failed",
        start=d5,
        hours=3,
        units={"samples": 1e7},
        primary="samples",
        gpus=gpus[6:],
    )
    again = _job(
        ca,
        alpha,
        sched="103",
        name="llm-pretrain",
        family="llm",
        kind="training",
        status="completed",
        start=d12,
        hours=2,
        units={"tokens": 2e9},
        primary="tokens",
        gpus=gpus[:4],
    )
    secret = _job(
        cg,
        gamma,
        sched="901",
        name="gamma-secret",
        family="llm",
        kind="training",
        status="completed",
        start=d5,
        hours=4,
        units={"tokens": 1e9},
        primary="tokens",
        gpus=[g_gpu],
    )

    tok_a = token_create(org=org, name="a1", scope=m.ApiToken.Scope.HOST, host=a1).token
    tok_g = token_create(org=other, name="g1", scope=m.ApiToken.Scope.HOST, host=g1).token

    def day5(h: int, i: int) -> float:
        if i < 4:
            return 600.0
        if i < 6:
            return 70.0
        return 400.0 if h < 3 else 70.0

    _ingest(a1, tok_a, d5, 6, day5)
    _ingest(a1, tok_a, d12, 2, lambda h, i: 600.0 if i < 4 else 70.0)
    _ingest(g1, tok_g, d5, 4, lambda h, i: 300.0)
    pks = sorted(TelemetryBatch.objects.values_list("pk", flat=True))
    outcome = batches_attribute(batch_pks=pks, now=dt.datetime(2026, 10, 13, tzinfo=UTC))
    assert outcome.attributed == pks

    for day in range(1, 31):
        m.TeamDay.objects.create(
            org=org,
            team=alpha,
            site=site_a,
            day=dt.date(2026, 9, day),
            energy_j=HISTORY_KWH_PER_DAY * KWH,
            co2e_operational_g=HISTORY_CO2E_G_PER_DAY,
            co2e_embodied_g=0.0,
        )

    member = f.UserFactory(username="alpha-member")
    f.MembershipFactory(user=member, org=org, team=alpha, role=m.Membership.Role.MEMBER)
    beta_member = f.UserFactory(username="beta-member")
    f.MembershipFactory(user=beta_member, org=org, team=beta, role=m.Membership.Role.MEMBER)
    admin = f.UserFactory(username="acme-admin")
    f.MembershipFactory(user=admin, org=org, team=None, role=m.Membership.Role.ADMIN)
    outsider = f.UserFactory(username="gamma-member")
    f.MembershipFactory(user=outsider, org=other, team=gamma, role=m.Membership.Role.MEMBER)
    return ReportWorld(
        org,
        other,
        alpha,
        beta,
        gamma,
        site_a,
        site_b,
        site_g,
        pretrain,
        again,
        serving,
        recsys,
        secret,
        member,
        beta_member,
        admin,
        outsider,
    )
