"""A stand-in for Slurm in the demo: reports functional units, ends jobs and starts new ones.

It drives the same services the scheduler API calls (job_register / job_units_report /
job_end), so the demo exercises the real paths: allocations change, ledger batches are
re-attributed, footprints become final and new live ones appear.
"""

from __future__ import annotations

import random
import signal
import time

from django.core.management.base import BaseCommand
from django.utils import timezone

from accounting.models import Job
from accounting.services.allocations import AllocationSpec
from accounting.services.jobs import job_end, job_register, job_units_report

# Functional units per GPU-second by family/kind (orders of magnitude of public figures:
# an 8B-parameter model trains at ~3k tokens/s per H100; a 7B chat model serves ~1.5k tokens/s).
UNITS_PER_GPU_S = {
    ("llm", "training"): ("tokens", 3000.0),
    ("llm", "inference"): ("tokens", 1500.0),
    ("moe", "inference"): ("tokens", 2200.0),
    ("recommender", "training"): ("samples", 40000.0),
    ("recommender", "inference"): ("queries", 9000.0),
    ("other", "training"): ("samples", 800.0),
}
EXIT_STATES = [Job.Status.COMPLETED] * 6 + [Job.Status.FAILED, Job.Status.PREEMPTED]


class Command(BaseCommand):
    help = "Demo scheduler: report units every --tick-s, replace one running job every --churn-s."

    def add_arguments(self, parser):
        parser.add_argument("--tick-s", type=float, default=20.0)
        parser.add_argument("--churn-s", type=float, default=180.0)
        parser.add_argument("--org", default="acme")
        parser.add_argument("--seed", type=int, default=11)
        parser.add_argument("--iterations", type=int, default=0, help="stop after N ticks (0: run until signalled)")

    def handle(self, *args, **opts):
        rng = random.Random(opts["seed"])
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        last_churn = time.monotonic()
        ticks = 0
        while not stopping:
            now = timezone.now()
            running = list(
                Job.objects.filter(org__slug=opts["org"], status=Job.Status.RUNNING).prefetch_related("allocations")
            )
            for job in running:
                unit, rate = UNITS_PER_GPU_S.get((job.family, job.kind), ("samples", 500.0))
                gpus = sum(1 for a in job.allocations.all() if a.end is None)
                elapsed_s = (now - job.started_at).total_seconds()
                jitter = 0.9 + 0.2 * rng.random()
                job_units_report(
                    job=job, units={unit: round(rate * gpus * elapsed_s * jitter)}, mode="set", primary_unit=unit
                )
            if running and time.monotonic() - last_churn >= opts["churn_s"]:
                last_churn = time.monotonic()
                self._replace(rng.choice(running), rng)
            ticks += 1
            if opts["iterations"] and ticks >= opts["iterations"]:
                break
            deadline = time.monotonic() + opts["tick_s"]
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)

    def _replace(self, job: Job, rng: random.Random) -> None:
        held = [a for a in job.allocations.select_related("device__host") if a.end is None]
        state = rng.choice(EXIT_STATES)
        job_end(job=job, status=state)
        base = job.name.split("#")[0]
        new_id = str(int(Job.objects.filter(cluster=job.cluster).count()) + 2000)
        hosts: dict[str, list[int]] = {}
        for allocation in held:
            hosts.setdefault(allocation.device.host.hostname, []).append(allocation.device.index)
        registration = job_register(
            org=job.org,
            cluster=job.cluster,
            scheduler_job_id=new_id,
            team=job.team,
            kind=job.kind,
            family=job.family,
            name=f"{base}#{new_id}",
            username=job.username,
            model_meta=job.model_meta,
            allocation=[AllocationSpec(host=h, gpus=tuple(sorted(g))) for h, g in hosts.items()],
        )
        self.stdout.write(
            f"job {job.scheduler_job_id} ended ({state}); job {new_id} started "
            f"on {sum(len(g) for g in hosts.values())} GPUs (created={registration.created})"
        )
