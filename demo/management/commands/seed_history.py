"""Seed an organisation with a realistic, deterministic history of jobs and ledger aggregates.

Creates sites in grid zones of clearly different intensity, clusters, hosts, GPUs of mixed
models, teams, users, jobs of every family/kind/status with functional units and quality,
allocations, JobFootprint, JobHour, DeviceHour, TeamDay, hourly intensity and budgets.

The jobs are scheduled on the simulated fleet (a job waits until enough GPUs of its cluster
are free), so the aggregates agree with each other: a device-hour's allocated seconds are the
seconds jobs held it, TeamDay team rows are the sum of the team's JobHour rows, and the
fleet-overhead rows (team NULL) carry the energy of unallocated GPUs.

Output is a function of (--seed, --gpus, --jobs, --days, --end): run twice with the same
arguments into two databases and the rows are identical. Pass --end to pin timestamps;
the default is the current hour.

Usage: manage.py seed_history --org demo --gpus 1000 --jobs 100000 --days 90 --seed 7
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from accounting import models as m
from accounting.domain.units import HOURS_PER_YEAR

UTC = dt.UTC
METHOD_VERSION = "seed-v1"
CHUNK = 5_000
HOST_POWER_PER_GPU_W = 60.0  # CPU + DRAM share of an 8-GPU server, per GPU slot
HOST_EMBODIED_KG = 2_500.0  # server without GPUs (chassis, CPUs, DRAM, SSD), per 8 slots
HOST_LIFETIME_H = 5 * HOURS_PER_YEAR  # the domain's (Julian) year, as embodied amortisation uses
HOST_EXPECTED_UTIL = 0.8


@dataclass(frozen=True)
class ZoneSpec:
    code: str
    name: str
    annual_g_per_kwh: float
    utc_offset_h: float
    solar_dip: float  # fractional drop of intensity at local solar noon
    evening_peak: float  # fractional rise at 19:00 local


ZONES = [
    ZoneSpec("FR", "France", 56.0, 1, 0.10, 0.15),
    ZoneSpec("DE", "Germany", 350.0, 1, 0.30, 0.12),
    ZoneSpec("PL", "Poland", 750.0, 1, 0.06, 0.06),
    ZoneSpec("US-WA", "United States, Washington", 95.0, -8, 0.12, 0.18),
    ZoneSpec("IN", "India", 700.0, 5.5, 0.15, 0.08),
]


@dataclass(frozen=True)
class SiteSpec:
    slug: str
    name: str
    zone: str
    pue: float
    models: tuple[tuple[str, float], ...]  # (hardware key, weight)


SITES = [
    SiteSpec("seed-fra1", "Frankfurt FRA1", "DE", 1.30, (("h100-sxm5-80gb", 0.6), ("l40s-48gb", 0.4))),
    SiteSpec("seed-par1", "Paris PAR1", "FR", 1.25, (("h100-sxm5-80gb", 0.5), ("a100-sxm4-80gb", 0.5))),
    SiteSpec("seed-qcy1", "Quincy QCY1", "US-WA", 1.15, (("h100-sxm5-80gb", 0.6), ("mi300x-192gb", 0.4))),
    SiteSpec("seed-waw1", "Warsaw WAW1", "PL", 1.45, (("a100-sxm4-80gb", 0.6), ("v100-sxm2-32gb", 0.4))),
    SiteSpec("seed-bom1", "Mumbai BOM1", "IN", 1.60, (("a100-sxm4-80gb", 0.5), ("l40s-48gb", 0.5))),
]


@dataclass(frozen=True)
class HwSpec:
    key: str
    name: str
    vendor: str
    reported_name: str
    idle_w: float
    max_w: float
    memory_gb: float
    embodied_kg: float
    speed: float  # throughput relative to H100 SXM5 on the same workload
    release_year: int


HARDWARE = {
    h.key: h
    for h in [
        HwSpec(
            "h100-sxm5-80gb", "NVIDIA H100 SXM5 80GB", "NVIDIA", "NVIDIA H100 80GB HBM3", 70, 700, 80, 164, 1.0, 2022
        ),
        HwSpec(
            "a100-sxm4-80gb", "NVIDIA A100 SXM4 80GB", "NVIDIA", "NVIDIA A100-SXM4-80GB", 55, 400, 80, 120, 0.45, 2020
        ),
        HwSpec("l40s-48gb", "NVIDIA L40S 48GB", "NVIDIA", "NVIDIA L40S", 35, 350, 48, 90, 0.4, 2023),
        HwSpec(
            "v100-sxm2-32gb",
            "NVIDIA Tesla V100 SXM2 32GB",
            "NVIDIA",
            "Tesla V100-SXM2-32GB",
            40,
            300,
            32,
            80,
            0.18,
            2017,
        ),
        HwSpec(
            "mi300x-192gb", "AMD Instinct MI300X 192GB", "AMD", "AMD Instinct MI300X", 120, 750, 192, 190, 1.05, 2023
        ),
    ]
}


@dataclass(frozen=True)
class TeamSpec:
    slug: str
    name: str
    users: tuple[str, ...]
    mix: tuple[tuple[str, str, float], ...]  # (family, kind, weight)


TEAMS = [
    TeamSpec(
        "recsys",
        "Recommendations",
        ("amara", "bo", "chen"),
        (("recommender", "training", 0.5), ("recommender", "inference", 0.5)),
    ),
    TeamSpec(
        "search",
        "Search ranking",
        ("dara", "eli", "femi"),
        (("recommender", "training", 0.3), ("recommender", "inference", 0.3), ("llm", "inference", 0.4)),
    ),
    TeamSpec(
        "llm-pretrain",
        "LLM pre-training",
        ("gita", "hugo", "ines", "jun"),
        (("llm", "training", 0.85), ("llm", "inference", 0.15)),
    ),
    TeamSpec(
        "llm-serving", "LLM serving", ("kofi", "lena", "mo"), (("llm", "inference", 0.7), ("moe", "inference", 0.3))
    ),
    TeamSpec(
        "moe-research", "MoE research", ("nia", "omar", "pia"), (("moe", "training", 0.7), ("moe", "inference", 0.3))
    ),
    TeamSpec("vision", "Vision", ("quinn", "rui"), (("other", "training", 0.7), ("other", "inference", 0.3))),
]


@dataclass(frozen=True)
class Workload:
    gpus: tuple[int, ...]
    gpu_weights: tuple[float, ...]
    median_h: float
    util_pct: float
    unit: str
    units_per_gpu_s: float  # on an H100 at the nominal utilisation
    quality_metric: str
    quality_range: tuple[float, float]
    params: tuple[float, ...]


WORKLOADS = {
    ("llm", "training"): Workload(
        (8, 16, 32, 64),
        (0.4, 0.3, 0.2, 0.1),
        20,
        85,
        "tokens",
        3_000,
        "eval_accuracy",
        (0.45, 0.72),
        (1.3e9, 7e9, 13e9, 70e9),
    ),
    ("llm", "inference"): Workload(
        (1, 2, 4, 8), (0.3, 0.3, 0.25, 0.15), 6, 45, "tokens", 1_500, "p99_latency_ms", (180, 900), (7e9, 13e9, 70e9)
    ),
    ("moe", "training"): Workload(
        (8, 16, 32), (0.5, 0.3, 0.2), 16, 75, "tokens", 4_500, "eval_accuracy", (0.5, 0.74), (47e9, 141e9)
    ),
    ("moe", "inference"): Workload(
        (4, 8), (0.6, 0.4), 6, 40, "tokens", 2_200, "p99_latency_ms", (220, 1200), (47e9, 141e9)
    ),
    ("recommender", "training"): Workload(
        (1, 2, 4, 8), (0.3, 0.3, 0.25, 0.15), 4, 60, "samples", 50_000, "auc", (0.72, 0.82), (2e8, 1e9, 5e9)
    ),
    ("recommender", "inference"): Workload(
        (1, 2), (0.7, 0.3), 8, 35, "queries", 4_000, "p99_latency_ms", (8, 40), (2e8, 1e9)
    ),
    ("other", "training"): Workload(
        (1, 2, 4), (0.5, 0.3, 0.2), 3, 55, "samples", 1_200, "top1_accuracy", (0.7, 0.86), (2.5e7, 3e8)
    ),
    ("other", "inference"): Workload(
        (1, 2), (0.8, 0.2), 4, 30, "samples", 2_500, "p99_latency_ms", (10, 60), (2.5e7, 3e8)
    ),
}


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    buf: list = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def _bulk(model, rows: Iterable, *, total: int, desc: str, quiet: bool, ignore_conflicts: bool = False) -> None:
    bar = tqdm(total=total, desc=desc, unit="rows", disable=quiet, leave=True, mininterval=1.0)
    for chunk in _chunks(rows, CHUNK):
        model.objects.bulk_create(chunk, batch_size=CHUNK, ignore_conflicts=ignore_conflicts)
        bar.update(len(chunk))
    bar.close()


def _intensity_curve(
    rng: np.random.Generator, zone: ZoneSpec, t0: dt.datetime, hours: int, *, annual_g_per_kwh: float
) -> np.ndarray:
    """Synthetic hourly average intensity: solar dip, evening peak, weekly cycle, AR(1) weather,
    scaled so that its mean over the seeded hours is the zone's loaded annual factor
    (``annual_g_per_kwh``: the GridZone row, e.g. codecarbon's, not the demo's own figure)."""
    h = np.arange(hours, dtype=float)
    local = (t0.hour + h + zone.utc_offset_h) % 24
    solar = np.clip(np.cos((local - 13) / 24 * 2 * np.pi * 1.6), 0, None)  # daylight bump around 13:00
    evening = np.exp(-(((local - 19) % 24) ** 2) / 6)
    weekday = ((t0.weekday() * 24 + t0.hour + h) // 24) % 7
    weekend = np.where(weekday >= 5, -0.06, 0.0)
    weather = np.zeros(hours)
    eps = rng.normal(0, 0.035, hours)
    for i in range(1, hours):
        weather[i] = 0.9 * weather[i - 1] + eps[i]  # ~10 h memory: a week averages within a few % of the annual
    shape = np.clip(1 - zone.solar_dip * solar + zone.evening_peak * evening + weekend + weather, 0.25, None)
    return (annual_g_per_kwh * shape / shape.mean()).round(1)


class Command(BaseCommand):
    help = "Seed a realistic, deterministic history (fleet, jobs, ledger aggregates, budgets) for an organisation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", default="demo", help="organisation slug (created if missing)")
        parser.add_argument("--gpus", type=int, default=64)
        parser.add_argument("--jobs", type=int, default=1_000)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--end", default="", help="ISO datetime the history ends at (default: current hour, UTC)")
        parser.add_argument("--occupancy", type=float, default=0.65, help="target share of GPU-hours held by jobs")
        parser.add_argument(
            "--skip-if-seeded",
            action="store_true",
            help="exit successfully, changing nothing, when the organisation already has history",
        )

    def handle(self, *args, **opts) -> None:
        gpus, n_jobs, days = opts["gpus"], opts["jobs"], opts["days"]
        if gpus < 1 or n_jobs < 1 or days < 1:
            raise CommandError("--gpus, --jobs and --days must be positive")
        if not 0.05 <= opts["occupancy"] <= 0.95:
            raise CommandError("--occupancy must be within [0.05, 0.95]")
        if opts["end"]:
            end = dt.datetime.fromisoformat(opts["end"])
            end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
        else:
            end = dt.datetime.now(tz=UTC)
        end = end.replace(minute=0, second=0, microsecond=0)
        quiet = opts["verbosity"] < 1
        if (
            opts["skip_if_seeded"]
            and m.Site.objects.filter(org__slug=opts["org"], slug__in=[s.slug for s in SITES]).exists()
        ):
            self.stdout.write(f"organisation {opts['org']!r} already has seeded history; nothing to do")
            return
        with transaction.atomic():
            summary = Seeder(
                org_slug=opts["org"],
                gpus=gpus,
                n_jobs=n_jobs,
                days=days,
                seed=opts["seed"],
                end=end,
                occupancy=opts["occupancy"],
                quiet=quiet,
            ).run()
        if not quiet:
            self.stdout.write(self.style.SUCCESS(summary))


class Seeder:
    def __init__(
        self,
        *,
        org_slug: str,
        gpus: int,
        n_jobs: int,
        days: int,
        seed: int,
        end: dt.datetime,
        occupancy: float,
        quiet: bool,
    ) -> None:
        self.org_slug, self.gpus, self.n_jobs, self.days = org_slug, gpus, n_jobs, days
        self.rng = np.random.default_rng(seed)
        self.end = end
        self.t0 = end - dt.timedelta(days=days)
        self.hours = days * 24
        self.occupancy = occupancy
        self.quiet = quiet

    # --- fleet -----------------------------------------------------------------------------

    def _fleet(self) -> None:
        self.org, _ = m.Organization.objects.get_or_create(
            slug=self.org_slug, defaults={"name": self.org_slug.replace("-", " ").title()}
        )
        if m.Site.objects.filter(org=self.org, slug__in=[s.slug for s in SITES]).exists():
            raise CommandError(f"organisation {self.org_slug!r} already has seeded sites; seed another --org")
        zones = {}
        for z in ZONES:
            zones[z.code], _ = m.GridZone.objects.get_or_create(
                code=z.code,
                defaults={
                    "name": z.name,
                    "annual_intensity_g_per_kwh": z.annual_g_per_kwh,
                    "source": m.FactorSource.OPERATOR,
                    "source_detail": "seed_history demo value (approximate annual average)",
                    "vintage": "2024",
                },
            )
        self.zone_rows = zones
        self.hw = {}
        for spec in HARDWARE.values():
            self.hw[spec.key], _ = m.HardwareModel.objects.get_or_create(
                key=spec.key,
                defaults={
                    "name": spec.name,
                    "vendor": spec.vendor,
                    "kind": m.HardwareModel.Kind.GPU,
                    "match_names": [spec.reported_name],
                    "idle_power_w": spec.idle_w,
                    "max_power_w": spec.max_w,
                    "memory_gb": spec.memory_gb,
                    "release_year": spec.release_year,
                    "embodied_kg": spec.embodied_kg,
                    "embodied_low_kg": round(spec.embodied_kg * 0.7, 1),
                    "embodied_high_kg": round(spec.embodied_kg * 1.4, 1),
                    "embodied_kind": m.HardwareModel.EmbodiedKind.ESTIMATE,
                    "embodied_source": "seed_history demo estimate (ACT-style, die area and HBM capacity)",
                },
            )
        self.sites = []
        self.clusters = []  # (cluster row, site index, kind preference)
        for i, s in enumerate(SITES):
            site = m.Site.objects.create(
                org=self.org,
                name=s.name,
                slug=s.slug,
                zone=zones[s.zone],
                pue=s.pue,
                pue_source="seed_history demo value (annualised facility meter)",
            )
            self.sites.append(site)
            for kind, scheduler in (("training", "slurm"), ("inference", "kubernetes")):
                cl = m.Cluster.objects.create(
                    site=site, name=f"{s.name} {kind}", slug=f"{s.slug}-{kind[:5]}", scheduler=scheduler
                )
                self.clusters.append((cl, i, kind))
        n_hosts = math.ceil(self.gpus / 8)
        host_rows, host_meta = [], []
        per_cluster_count = [0] * len(self.clusters)
        for h in range(n_hosts):
            site_idx = h % len(SITES)
            local = h // len(SITES)
            cl_idx = site_idx * 2 + (local % 2)
            per_cluster_count[cl_idx] += 1
            site_spec = SITES[site_idx]
            keys = [k for k, _ in site_spec.models]
            weights = np.array([w for _, w in site_spec.models])
            key = keys[int(self.rng.choice(len(keys), p=weights / weights.sum()))]
            cl = self.clusters[cl_idx][0]
            host_rows.append(
                m.Host(
                    cluster=cl,
                    hostname=f"{site_spec.slug[5:]}-gpu-{local:03d}",
                    cpu_model="AMD EPYC 9454",
                    cpu_tdp_w=290,
                    dram_gb=2048,
                    ssd_gb=30_720,
                    gpu_slots=8,
                )
            )
            host_meta.append((cl_idx, site_idx, key))
        m.Host.objects.bulk_create(host_rows)
        dev_rows: list[m.Device] = []
        self.dev_cluster, self.dev_site, self.dev_key, self.dev_host = [], [], [], []
        remaining = self.gpus
        for h_idx, (host, (cl_idx, site_idx, key)) in enumerate(zip(host_rows, host_meta, strict=True)):
            for gi in range(min(8, remaining)):
                spec = HARDWARE[key]
                years = int(self.rng.integers(0, 3))
                dev_rows.append(
                    m.Device(
                        host=host,
                        uuid=f"GPU-{self.org_slug[:8]}-{h_idx:05d}-{gi}-{len(dev_rows):08x}",
                        index=gi,
                        reported_name=spec.reported_name,
                        hardware_model=self.hw[key],
                        deployed_on=(self.t0 - dt.timedelta(days=120 + 365 * years)).date(),
                        power_limit_w=spec.max_w,
                    )
                )
                self.dev_cluster.append(cl_idx)
                self.dev_site.append(site_idx)
                self.dev_key.append(key)
                self.dev_host.append(h_idx)
            remaining -= min(8, remaining)
        m.Device.objects.bulk_create(dev_rows)
        self.devices = dev_rows
        self.dev_cluster_arr = np.array(self.dev_cluster)
        self.cluster_devices = [np.flatnonzero(self.dev_cluster_arr == c) for c in range(len(self.clusters))]
        self.dev_idle = np.array([HARDWARE[k].idle_w for k in self.dev_key])
        self.dev_max = np.array([HARDWARE[k].max_w for k in self.dev_key])
        self.dev_speed = np.array([HARDWARE[k].speed for k in self.dev_key])
        self.dev_emb_g_per_h = np.array(
            [
                self.hw[k].embodied_kg
                * 1000
                / (self.hw[k].lifetime_years * HOURS_PER_YEAR * self.hw[k].expected_utilisation)
                for k in self.dev_key
            ]
        ) + HOST_EMBODIED_KG * 1000 / 8 / (HOST_LIFETIME_H * HOST_EXPECTED_UTIL)
        self.site_pue = np.array([s.pue for s in SITES])

    def _teams(self) -> None:
        self.teams = []
        self.team_users: list[list] = []
        user_model = get_user_model()
        for t in TEAMS:
            team, _ = m.Team.objects.get_or_create(org=self.org, slug=t.slug, defaults={"name": t.name})
            self.teams.append(team)
            users = []
            for name in t.users:
                user, created = user_model.objects.get_or_create(
                    username=f"{name}.{self.org_slug}", defaults={"email": f"{name}@{self.org_slug}.example"}
                )
                if created:
                    user.set_unusable_password()
                    user.save(update_fields=["password"])
                m.Membership.objects.get_or_create(
                    user=user, org=self.org, team=team, defaults={"role": m.Membership.Role.MEMBER}
                )
                users.append(user)
            self.team_users.append(users)

    def _intensity(self) -> None:
        """Hourly intensity per site zone; hours already stored (real imports) win."""
        self.site_intensity = np.zeros((len(SITES), self.hours))
        zone_curve = {}
        for z in ZONES:
            curve = _intensity_curve(
                self.rng, z, self.t0, self.hours, annual_g_per_kwh=self.zone_rows[z.code].annual_intensity_g_per_kwh
            )
            existing = m.HourlyIntensity.objects.filter(
                zone=self.zone_rows[z.code],
                signal=m.IntensitySignal.AVERAGE,
                is_forecast=False,
                hour__gte=self.t0,
                hour__lt=self.end,
            ).values_list("hour", "intensity_g_per_kwh")
            have = set()
            for hour, value in existing:
                idx = int((hour - self.t0).total_seconds() // 3600)
                curve[idx] = value
                have.add(idx)
            zone_curve[z.code] = curve
            rows = (
                m.HourlyIntensity(
                    zone=self.zone_rows[z.code],
                    hour=self.t0 + dt.timedelta(hours=i),
                    signal=m.IntensitySignal.AVERAGE,
                    intensity_g_per_kwh=float(curve[i]),
                    source=m.FactorSource.ESTIMATE,
                    version=1,
                )
                for i in range(self.hours)
                if i not in have
            )
            _bulk(
                m.HourlyIntensity,
                rows,
                total=self.hours - len(have),
                desc=f"intensity {z.code}",
                quiet=self.quiet,
                ignore_conflicts=True,
            )
        for i, s in enumerate(SITES):
            self.site_intensity[i] = zone_curve[s.zone]

    # --- jobs ------------------------------------------------------------------------------

    def _plan_jobs(self) -> None:
        rng, n = self.rng, self.n_jobs
        team_w = np.array([3, 2, 2, 3, 1.5, 1.5])
        self.job_team = rng.choice(len(TEAMS), size=n, p=team_w / team_w.sum())
        self.job_fk: list[tuple[str, str]] = []
        gpus, base_h = np.zeros(n, dtype=int), np.zeros(n)
        for j in range(n):
            mix = TEAMS[self.job_team[j]].mix
            w = np.array([x[2] for x in mix])
            fam, kind, _ = mix[int(rng.choice(len(mix), p=w / w.sum()))]
            self.job_fk.append((fam, kind))
            wl = WORKLOADS[(fam, kind)]
            gw = np.array(wl.gpu_weights)
            gpus[j] = wl.gpus[int(rng.choice(len(wl.gpus), p=gw / gw.sum()))]
            base_h[j] = wl.median_h * math.exp(rng.normal(0, 0.8))
        # Scale durations so the fleet is held about `occupancy` of the time.
        gpus = np.minimum(gpus, max(len(d) for d in self.cluster_devices))
        target_gpu_h = self.occupancy * self.gpus * self.hours
        scale = target_gpu_h / float((gpus * base_h).sum())
        self.job_dur_h = np.clip(base_h * scale, 5 / 60, 10 * 24)
        self.job_gpus = gpus
        self.job_submit_h = np.sort(rng.uniform(0, self.hours, size=n))
        stuck = rng.random(n) < 0.04
        self.job_util = np.array([WORKLOADS[fk].util_pct for fk in self.job_fk]) * rng.uniform(0.8, 1.12, n)
        self.job_util = np.where(stuck, rng.uniform(0.5, 3.0, n), np.clip(self.job_util, 5, 99))
        self.job_cap = np.where(rng.random(n) < 0.1, 0.7, 0.0)  # fraction of max power, 0 = uncapped
        r = rng.random(n)
        self.job_outcome = np.select([r < 0.08, r < 0.13, r < 0.16], ["failed", "preempted", "cancelled"], "completed")
        cut = rng.uniform(0.1, 0.9, n)
        self.job_dur_h = np.where(self.job_outcome == "completed", self.job_dur_h, self.job_dur_h * cut)
        self.job_quality_u = rng.random(n)
        self.job_param_u = rng.random(n)
        self.job_user_u = rng.random(n)

    def _schedule(self) -> None:
        """Place each job on free GPUs of a cluster of its kind; wait in the queue when none are free."""
        free_at = np.zeros(len(self.devices))
        n = self.n_jobs
        self.job_start_h = np.full(n, np.nan)
        self.job_cluster = np.zeros(n, dtype=int)
        self.job_devs: list[np.ndarray] = [np.empty(0, dtype=int)] * n
        kind_clusters = {
            kind: [c for c, (_, _, k) in enumerate(self.clusters) if k == kind and len(self.cluster_devices[c])]
            for kind in ("training", "inference")
        }
        any_clusters = [c for c in range(len(self.clusters)) if len(self.cluster_devices[c])]
        pick = self.rng.random(n)
        for j in tqdm(range(n), desc="schedule", disable=self.quiet, mininterval=1.0):
            cands = kind_clusters[self.job_fk[j][1]] or any_clusters
            # Home cluster chosen at random among clusters big enough; the team does not care where.
            big = [c for c in cands if len(self.cluster_devices[c]) >= self.job_gpus[j]] or cands
            c = big[int(pick[j] * len(big))]
            devs = self.cluster_devices[c]
            need = min(self.job_gpus[j], len(devs))
            t = self.job_submit_h[j]
            fa = free_at[devs]
            free = devs[fa <= t]
            if len(free) >= need:
                chosen = free[:need]
                start = t
            else:
                order = np.argsort(fa, kind="stable")[:need]
                chosen = devs[order]
                start = float(fa[order[-1]])
            self.job_gpus[j] = need
            self.job_cluster[j] = c
            if start >= self.hours:
                continue  # still queued at the end of the history: pending
            self.job_start_h[j] = start
            self.job_devs[j] = np.sort(chosen)
            free_at[chosen] = start + self.job_dur_h[j]

    def _units(self, j: int, gpu_s: float, speed: float) -> tuple[dict, str, str, float | None, dict]:
        fam, kind = self.job_fk[j]
        wl = WORKLOADS[(fam, kind)]
        eff = min(self.job_util[j] / wl.util_pct, 1.15)
        primary = wl.units_per_gpu_s * speed * eff * gpu_s
        units = {wl.unit: round(primary)}
        if kind == "inference" and wl.unit == "tokens":
            units["queries"] = round(primary / 350)
        if kind == "training":
            units["steps"] = max(1, round(primary / (2_000_000 if wl.unit == "tokens" else 4_096)))
        lo, hi = wl.quality_range
        q = self.job_quality_u[j]
        if wl.quality_metric == "p99_latency_ms":
            quality = lo + (hi - lo) * q / max(speed, 0.2) ** 0.5
        else:
            quality = lo + (hi - lo) * (0.6 * q + 0.4 * min(1.0, math.log10(max(primary, 10)) / 12))
        params = wl.params[int(self.job_param_u[j] * len(wl.params))]
        meta = {"parameters": params, "precision": "bf16" if speed >= 0.4 else "fp16", "batch_size": 32}
        if fam == "moe":
            meta["active_parameters"] = round(params * 0.28)
        return units, wl.unit, wl.quality_metric, round(quality, 4), meta

    def _simulate_and_write(self) -> None:
        H, n_dev = self.hours, len(self.devices)
        dev_alloc_s = np.zeros((n_dev, H))
        dev_energy = np.zeros((n_dev, H))  # GPU joules while held
        dev_util_s = np.zeros((n_dev, H))
        n_sites, days = len(SITES), self.days + 1
        # TeamDay accumulators: [team, site, day, (energy, gpu_idle, op, emb)]
        td = np.zeros((len(TEAMS), n_sites, days, 4))
        day_of_hour = ((self.t0.hour + np.arange(H)) // 24).astype(int)
        job_rows: list[m.Job] = []
        fp_data: list[dict[str, object] | None] = []
        jh_data: list[tuple[np.ndarray, ...] | None] = []
        alloc_data: list[tuple[Any, dt.datetime, dt.datetime | None] | None] = []
        status_of = []
        teams = self.teams
        noise = self.rng.normal(0, 0.05, size=(self.n_jobs, 4))
        for j in tqdm(range(self.n_jobs), desc="simulate", disable=self.quiet, mininterval=1.0):
            fam, kind = self.job_fk[j]
            team_idx = int(self.job_team[j])
            users = self.team_users[team_idx]
            user = users[int(self.job_user_u[j] * len(users))]
            cl_row, site_idx, _ = self.clusters[self.job_cluster[j]]
            start_h = self.job_start_h[j]
            submit = self.t0 + dt.timedelta(hours=float(self.job_submit_h[j]))
            label = f"{fam}-{kind[:5]}-{j:06d}"
            if math.isnan(start_h):
                status = "pending"
                job_rows.append(
                    self._job_row(j, cl_row, teams[team_idx], user, status, submit, None, {}, "", "", None, {}, label)
                )
                status_of.append(status)
                fp_data.append(None)
                jh_data.append(None)
                alloc_data.append(None)
                continue
            end_h = start_h + self.job_dur_h[j]
            running = end_h > H
            status = "running" if running else str(self.job_outcome[j])
            stop_h = min(end_h, H)
            devs = self.job_devs[j]
            nd = len(devs)
            idle_w, max_w = self.dev_idle[devs[0]], self.dev_max[devs[0]]
            util = self.job_util[j]
            p_w = idle_w + (max_w - idle_w) * (util / 100) ** 0.9
            if self.job_cap[j]:
                p_w = min(p_w, self.job_cap[j] * max_w)
            h0, h1 = math.floor(start_h), math.ceil(stop_h)
            hrs = np.arange(h0, h1)
            overlap_s = (np.minimum(hrs + 1, stop_h) - np.maximum(hrs, start_h)) * 3600
            jitter = 1 + noise[j, int(hrs[0]) % 4] * np.cos(hrs * 0.7 + j)
            pw_h = np.clip(p_w * jitter, idle_w, max_w)
            util_h = np.clip(util * jitter, 0, 100)
            gpu_e = nd * overlap_s * pw_h
            idle_e = nd * overlap_s * idle_w
            host_e = nd * overlap_s * HOST_POWER_PER_GPU_W
            pue = self.site_pue[site_idx]
            fac_e = (pue - 1) * (gpu_e + host_e)
            tot_e = gpu_e + host_e + fac_e
            inten = self.site_intensity[site_idx, hrs]
            op_g = tot_e / 3.6e6 * inten
            emb_g = nd * overlap_s / 3600 * self.dev_emb_g_per_h[devs[0]]
            dev_alloc_s[np.ix_(devs, hrs)] += overlap_s
            dev_energy[np.ix_(devs, hrs)] += overlap_s * pw_h
            dev_util_s[np.ix_(devs, hrs)] += overlap_s * util_h
            dd = day_of_hour[hrs]
            for col, vals in enumerate((tot_e, idle_e, op_g, emb_g)):
                np.add.at(td[team_idx, site_idx, :, col], dd, vals)
            gpu_s = float(nd * (stop_h - start_h) * 3600)
            units, primary, qmetric, qvalue, meta = self._units(j, gpu_s, self.dev_speed[devs[0]])
            if self.job_cap[j]:
                meta["power_cap_w"] = round(self.job_cap[j] * max_w)
            started = self.t0 + dt.timedelta(hours=float(start_h))
            ended = None if running else self.t0 + dt.timedelta(hours=float(end_h))
            job_rows.append(
                self._job_row(
                    j,
                    cl_row,
                    teams[team_idx],
                    user,
                    status,
                    started,
                    ended,
                    units,
                    primary,
                    qmetric,
                    qvalue,
                    meta,
                    label,
                )
            )
            status_of.append(status)
            measured = float(np.clip(0.97 - 0.25 * abs(noise[j, 0]) * 4, 0, 1)) if j % 17 else 0.0
            op_total, emb_total = float(op_g.sum()), float(emb_g.sum())
            spread = 0.05 + (1 - measured) * 0.2
            fp_data.append(
                dict(
                    energy_j=float(tot_e.sum()),
                    gpu_energy_j=float(gpu_e.sum()),
                    gpu_idle_energy_j=float(idle_e.sum()),
                    host_energy_j=float(host_e.sum()),
                    facility_energy_j=float(fac_e.sum()),
                    co2e_operational_g=op_total,
                    co2e_embodied_g=emb_total,
                    co2e_low_g=(op_total + emb_total) * (1 - spread),
                    co2e_high_g=(op_total + emb_total) * (1 + spread),
                    device_hours=gpu_s / 3600,
                    measured_fraction=round(measured, 3),
                    is_final=not running,
                    method_version=METHOD_VERSION,
                    last_window_end=self.t0 + dt.timedelta(hours=float(stop_h)),
                )
            )
            jh_data.append((hrs, tot_e, gpu_e, op_g, emb_g, inten))
            alloc_data.append((devs, started, ended))
        _bulk(m.Job, iter(job_rows), total=len(job_rows), desc="jobs", quiet=self.quiet)
        self._write_job_children(job_rows, fp_data, jh_data, alloc_data)
        self._write_device_hours(dev_alloc_s, dev_energy, dev_util_s, td, day_of_hour)
        self._write_team_days(td)
        self._write_budgets(td)

    def _job_row(self, j, cl_row, team, user, status, started, ended, units, primary, qmetric, qvalue, meta, label):
        fam, kind = self.job_fk[j]
        return m.Job(
            org=self.org,
            cluster=cl_row,
            scheduler_job_id=f"seed-{j + 1}",
            name=label,
            team=team,
            user=user,
            username=user.username,
            kind=kind,
            family=fam,
            status=status,
            started_at=started,
            ended_at=ended,
            requested_s=round(float(self.job_dur_h[j]) * 3600 * 1.5),
            model_meta=meta,
            units=units,
            primary_unit=primary,
            quality_metric=qmetric,
            quality_value=qvalue,
            power_cap_w=meta.get("power_cap_w"),
        )

    def _write_job_children(self, job_rows, fp_data, jh_data, alloc_data) -> None:
        devices = self.devices

        def allocations():
            for job, a in zip(job_rows, alloc_data, strict=True):
                if a is not None:
                    devs, started, ended = a
                    for d in devs:
                        yield m.JobAllocation(job=job, device=devices[d], start=started, end=ended)

        def footprints():
            for job, f in zip(job_rows, fp_data, strict=True):
                if f is not None:
                    yield m.JobFootprint(job=job, **f)

        def hours():
            for job, h, f in zip(job_rows, jh_data, fp_data, strict=True):
                if h is None:
                    continue
                hrs, tot_e, gpu_e, op_g, emb_g, inten = h
                # The footprint's other sums spread over the hours by energy, so that a footprint
                # recomputed from its job-hours (as the ledger's rollup does) is this one.
                total = float(sum(tot_e)) or 1.0
                for k, hour in enumerate(hrs):
                    share = float(tot_e[k]) / total
                    yield m.JobHour(
                        job=job,
                        hour=self.t0 + dt.timedelta(hours=int(hour)),
                        energy_j=float(tot_e[k]),
                        gpu_energy_j=float(gpu_e[k]),
                        co2e_operational_g=float(op_g[k]),
                        co2e_embodied_g=float(emb_g[k]),
                        intensity_g_per_kwh=float(inten[k]),
                        gpu_idle_energy_j=(f or {}).get("gpu_idle_energy_j", 0.0) * share,
                        host_energy_j=(f or {}).get("host_energy_j", 0.0) * share,
                        facility_energy_j=(f or {}).get("facility_energy_j", 0.0) * share,
                        co2e_low_g=(f or {}).get("co2e_low_g", 0.0) * share,
                        co2e_high_g=(f or {}).get("co2e_high_g", 0.0) * share,
                        held_s=(f or {}).get("device_hours", 0.0) * 3600 * share,
                        measured_gpu_energy_j=(f or {}).get("measured_fraction", 0.0) * float(gpu_e[k]),
                        last_window_end=(f or {}).get("last_window_end") if k == len(hrs) - 1 else None,
                    )

        n_alloc = sum(len(a[0]) for a in alloc_data if a is not None)
        n_hours = sum(len(h[0]) for h in jh_data if h is not None)
        _bulk(m.JobAllocation, allocations(), total=n_alloc, desc="allocations", quiet=self.quiet)
        _bulk(
            m.JobFootprint, footprints(), total=sum(f is not None for f in fp_data), desc="footprints", quiet=self.quiet
        )
        _bulk(m.JobHour, hours(), total=n_hours, desc="job hours", quiet=self.quiet)

    def _write_device_hours(self, alloc_s, energy, util_s, td, day_of_hour) -> None:
        H = self.hours
        unalloc_s = np.clip(3600 - alloc_s, 0, None)
        idle_w = self.dev_idle[:, None]
        total_e = energy + unalloc_s * idle_w
        site = np.array(self.dev_site)
        pue = self.site_pue[site][:, None]
        inten = self.site_intensity[site]
        op_g = total_e * pue / 3.6e6 * inten
        emb_g = np.repeat(self.dev_emb_g_per_h[:, None], H, axis=1)
        # Fleet-overhead account: unallocated GPUs (idle baseline + host idle share + facility).
        oh_e = unalloc_s * (idle_w + HOST_POWER_PER_GPU_W * 0.5) * pue
        oh_op = oh_e / 3.6e6 * inten
        oh_emb = unalloc_s / 3600 * self.dev_emb_g_per_h[:, None]
        oh_idle = unalloc_s * idle_w
        self.overhead = np.zeros((len(SITES), self.days + 1, 4))
        for s in range(len(SITES)):
            in_site = site == s
            if not in_site.any():
                continue
            for col, arr in enumerate((oh_e, oh_idle, oh_op, oh_emb)):
                np.add.at(self.overhead[s, :, col], day_of_hour, arr[in_site].sum(axis=0))
        hours = [self.t0 + dt.timedelta(hours=h) for h in range(H)]
        util = util_s / 3600

        def rows():
            for d, dev in enumerate(self.devices):
                idle_e = float(self.dev_idle[d]) * 3600
                for h in range(H):
                    yield m.DeviceHour(
                        device=dev,
                        hour=hours[h],
                        energy_j=float(total_e[d, h]),
                        idle_energy_j=idle_e,
                        allocated_s=float(alloc_s[d, h]),
                        observed_s=3600.0,
                        avg_util_pct=float(util[d, h]),
                        avg_power_w=float(total_e[d, h]) / 3600,
                        co2e_operational_g=float(op_g[d, h]),
                        co2e_embodied_g=float(emb_g[d, h]),
                    )

        _bulk(m.DeviceHour, rows(), total=len(self.devices) * H, desc="device hours", quiet=self.quiet)

    def _day(self, idx: int) -> dt.date:
        return (self.t0.replace(hour=0) + dt.timedelta(days=idx)).date()

    def _write_team_days(self, td) -> None:
        def rows():
            for s, site in enumerate(self.sites):
                for d in range(self.days + 1):
                    for t, team in enumerate(self.teams):
                        e, idle, op, emb = td[t, s, d]
                        if e > 0:
                            yield m.TeamDay(
                                org=self.org,
                                team=team,
                                site=site,
                                day=self._day(d),
                                energy_j=float(e),
                                gpu_idle_energy_j=float(idle),
                                co2e_operational_g=float(op),
                                co2e_embodied_g=float(emb),
                            )
                    e, idle, op, emb = self.overhead[s, d]
                    if e > 0:
                        yield m.TeamDay(
                            org=self.org,
                            team=None,
                            site=site,
                            day=self._day(d),
                            energy_j=float(e),
                            gpu_idle_energy_j=float(idle),
                            co2e_operational_g=float(op),
                            co2e_embodied_g=float(emb),
                        )

        _bulk(m.TeamDay, rows(), total=0, desc="team days", quiet=self.quiet)

    def _write_budgets(self, td) -> None:
        """Monthly budgets per team: the month's run rate × a factor, so some teams overshoot."""
        first = self._day(0).replace(day=1)
        last = self._day(self.days)
        months = []
        cur = first
        while cur <= last:
            n_days = calendar.monthrange(cur.year, cur.month)[1]
            months.append((cur, cur + dt.timedelta(days=n_days)))
            cur = cur + dt.timedelta(days=n_days)
        day_dates = [self._day(d) for d in range(self.days + 1)]
        rows = []
        for t, team in enumerate(self.teams):
            daily = td[t, :, :, 2].sum(axis=0) + td[t, :, :, 3].sum(axis=0)
            for start, stop in months:
                idx = [i for i, day in enumerate(day_dates) if start <= day < stop]
                seen = float(daily[idx].sum()) if idx else 0.0
                rate = seen / len(idx) if idx else 0.0
                projected = rate * (stop - start).days
                factor = float(self.rng.uniform(0.8, 1.35))
                budget_g = max(round(projected * factor / 1000) * 1000, 1000.0)
                rows.append(
                    m.CarbonBudget(
                        team=team,
                        period_start=start,
                        period_end=stop,
                        co2e_budget_g=budget_g,
                        note="seed_history: month run rate × planning factor",
                    )
                )
        m.CarbonBudget.objects.bulk_create(rows, ignore_conflicts=True)

    def run(self) -> str:
        self._fleet()
        self._teams()
        self._intensity()
        self._plan_jobs()
        self._schedule()
        self._simulate_and_write()
        return (
            f"Seeded org {self.org_slug!r}: {len(self.devices)} GPUs on {math.ceil(self.gpus / 8)} hosts in "
            f"{len(SITES)} sites, {self.n_jobs} jobs, {self.days} days ending {self.end.isoformat()}."
        )
