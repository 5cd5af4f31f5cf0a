"""Create the demo organisation and write the simulated fleet file (idempotent).

Three sites in zones of clearly different grid intensity, mixed GPU generations, teams,
running jobs holding most GPUs (the rest idle: the fleet-overhead account), host tokens and
a fleet file for ``carbonledger-agent simulate --fleet``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounting.models import (
    ApiToken,
    CarbonBudget,
    Cluster,
    Device,
    GridZone,
    HardwareModel,
    Host,
    Job,
    JobAllocation,
    Membership,
    Organization,
    Site,
    Team,
)
from accounting.tokens import token_create

ORG = ("Acme AI", "acme")
TEAMS = [("LLM Research", "llm-research"), ("Recommendations", "recsys"), ("Inference Platform", "inference")]
# (site name, slug, zone code, PUE, cluster, [(hostname, sim model, catalog key, gpus)])
SITES = [
    (
        "Paris",
        "paris",
        "FR",
        1.2,
        "par-a100",
        [("par-gpu-01", "A100", "a100-sxm4-80gb", 4), ("par-gpu-02", "A100", "a100-sxm4-80gb", 4)],
    ),
    (
        "Frankfurt",
        "frankfurt",
        "DE",
        1.35,
        "fra-h100",
        [("fra-gpu-01", "H100", "h100-sxm5-80gb", 4), ("fra-gpu-02", "H100", "h100-sxm5-80gb", 4)],
    ),
    ("Warsaw", "warsaw", "PL", 1.5, "waw-v100", [("waw-gpu-01", "V100", "v100-sxm2-32gb", 4)]),
]
# (scheduler id, name, team slug, kind, family, workload for the simulator, host, gpu indexes, units)
JOBS = [
    (
        "1001",
        "llama-8b-pretrain",
        "llm-research",
        "training",
        "llm",
        "llm_training",
        "fra-gpu-01",
        [0, 1, 2, 3],
        {"tokens": 0},
        "tokens",
        {"parameters": 8e9, "precision": "bf16", "batch_size": 1024},
    ),
    (
        "1002",
        "moe-8x7b-serving",
        "inference",
        "inference",
        "moe",
        "moe_inference",
        "fra-gpu-02",
        [0, 1],
        {"tokens": 0},
        "tokens",
        {"parameters": 46.7e9, "active_parameters": 12.9e9, "precision": "fp8"},
    ),
    (
        "1003",
        "chat-7b-serving",
        "inference",
        "inference",
        "llm",
        "llm_inference",
        "par-gpu-01",
        [0, 1],
        {"tokens": 0},
        "tokens",
        {"parameters": 7e9, "precision": "bf16", "batch_size": 32},
    ),
    (
        "1004",
        "dlrm-train",
        "recsys",
        "training",
        "recommender",
        "recsys_training",
        "par-gpu-01",
        [2, 3],
        {"samples": 0},
        "samples",
        {"parameters": 2.1e9, "precision": "fp32", "batch_size": 65536},
    ),
    (
        "1005",
        "ranker-serving",
        "recsys",
        "inference",
        "recommender",
        "recsys_inference",
        "par-gpu-02",
        [0],
        {"queries": 0},
        "queries",
        {"parameters": 0.4e9, "precision": "fp16"},
    ),
    (
        "1006",
        "bert-finetune",
        "llm-research",
        "training",
        "other",
        "llm_training",
        "waw-gpu-01",
        [0, 1],
        {"samples": 0},
        "samples",
        {"parameters": 0.34e9, "precision": "fp32"},
    ),
]


class Command(BaseCommand):
    help = "Create the demo organisation, fleet, jobs and tokens; write the simulator's fleet file."

    def add_arguments(self, parser):
        parser.add_argument("--fleet-file", default="var/demo-fleet.json")
        parser.add_argument("--server-url", default="http://127.0.0.1:8000")
        parser.add_argument("--window-s", type=float, default=10.0)
        parser.add_argument("--admin-password", default=None, help="default: random, printed once")

    @transaction.atomic
    def handle(self, *args, **opts):
        zones = {z.code: z for z in GridZone.objects.filter(code__in=[s[2] for s in SITES])}
        missing = sorted({s[2] for s in SITES} - set(zones))
        if missing:
            raise CommandError(f"grid zones {missing} are missing: run `manage.py load_factors` first")
        hardware = {h.key: h for h in HardwareModel.objects.filter(key__in=[h[2] for s in SITES for h in s[5]])}
        org, _ = Organization.objects.get_or_create(slug=ORG[1], defaults={"name": ORG[0]})
        teams = {}
        for name, slug in TEAMS:
            teams[slug], _ = Team.objects.get_or_create(org=org, slug=slug, defaults={"name": name})
        today = timezone.now().date().replace(day=1)
        next_month = (today + dt.timedelta(days=32)).replace(day=1)
        for slug, team in teams.items():
            CarbonBudget.objects.get_or_create(
                team=team,
                period_start=today,
                defaults={
                    "period_end": next_month,
                    "co2e_budget_g": {"llm-research": 400_000.0, "recsys": 60_000.0, "inference": 150_000.0}[slug],
                },
            )
        User = get_user_model()
        admin, _created = User.objects.get_or_create(username="admin", defaults={"email": "admin@acme.example"})
        password = opts["admin_password"] or secrets.token_urlsafe(9)
        admin.set_password(password)
        admin.is_staff = True
        admin.is_superuser = True
        admin.save()
        Membership.objects.get_or_create(user=admin, org=org, team=None, defaults={"role": Membership.Role.ADMIN})
        analyst, _ = User.objects.get_or_create(username="alice", defaults={"email": "alice@acme.example"})
        analyst.set_password(password)
        analyst.save()
        Membership.objects.get_or_create(user=analyst, org=org, team=teams["recsys"])

        fleet_hosts: list[dict[str, Any]] = []  # the fleet file: hostname, token and a list of GPU dicts
        devices: dict[tuple[str, int], Device] = {}
        now = timezone.now()
        for site_name, site_slug, zone_code, pue, cluster_slug, hosts in SITES:
            site, _ = Site.objects.update_or_create(
                org=org,
                slug=site_slug,
                defaults={
                    "name": site_name,
                    "zone": zones[zone_code],
                    "pue": pue,
                    "pue_source": "demo: operator estimate",
                },
            )
            cluster, _ = Cluster.objects.get_or_create(site=site, slug=cluster_slug, defaults={"name": cluster_slug})
            for hostname, sim_model, hw_key, n_gpus in hosts:
                host, _ = Host.objects.get_or_create(
                    cluster=cluster,
                    hostname=hostname,
                    defaults={
                        "cpu_model": "AMD EPYC 7763 64-Core Processor",
                        "dram_gb": 1024,
                        "ssd_gb": 7680,
                        "gpu_slots": n_gpus,
                    },
                )
                # A fresh token per run: the secret is only ever shown once.
                ApiToken.objects.filter(host=host, scope=ApiToken.Scope.HOST, revoked_at__isnull=True).update(
                    revoked_at=now
                )
                token = token_create(org=org, name=f"agent {hostname}", scope=ApiToken.Scope.HOST, host=host)
                gpus = []
                for index in range(n_gpus):
                    uuid = f"GPU-demo-{hostname}-{index}"
                    device, _ = Device.objects.get_or_create(
                        uuid=uuid,
                        defaults={
                            "host": host,
                            "index": index,
                            "hardware_model": hardware.get(hw_key),
                            "deployed_on": dt.date(2024, 1, 15),
                        },
                    )
                    devices[(hostname, index)] = device
                    gpus.append({"model": sim_model, "workload": "idle", "job_key": None, "uuid": uuid})
                fleet_hosts.append({"hostname": hostname, "token": token.secret, "gpus": gpus})

        by_host = {h["hostname"]: h for h in fleet_hosts}
        started = now - dt.timedelta(minutes=2)
        for sched_id, name, team_slug, kind, family, workload, hostname, indexes, units, unit, meta in JOBS:
            cluster = devices[(hostname, indexes[0])].host.cluster
            job, _created = Job.objects.get_or_create(
                cluster=cluster,
                scheduler_job_id=sched_id,
                defaults={
                    "org": org,
                    "name": name,
                    "team": teams[team_slug],
                    "kind": kind,
                    "family": family,
                    "status": Job.Status.RUNNING,
                    "started_at": started,
                    "units": units,
                    "primary_unit": unit,
                    "model_meta": meta,
                    "username": "alice" if team_slug == "recsys" else "bob",
                },
            )
            if job.status != Job.Status.RUNNING:
                continue
            for index in indexes:
                device = devices[(hostname, index)]
                if not JobAllocation.objects.filter(job=job, device=device, end__isnull=True).exists():
                    JobAllocation.objects.create(job=job, device=device, start=job.started_at)
                by_host[hostname]["gpus"][index].update(workload=workload, job_key=f"slurm:{sched_id}")

        fleet = {
            "server_url": opts["server_url"],
            "window_s": opts["window_s"],
            "tick_s": 1.0,
            "seed": 7,
            "max_batch_windows": 6,
            "hosts": fleet_hosts,
        }
        path = Path(opts["fleet_file"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fleet, indent=2))
        path.chmod(0o600)  # holds host tokens
        self.stdout.write(
            self.style.SUCCESS(
                f"demo organisation ready: {len(fleet_hosts)} hosts, {len(devices)} GPUs, {len(JOBS)} jobs; "
                f"fleet file {path}"
            )
        )
        self.stdout.write(f"login: admin / {password}   (team member: alice / {password})")
