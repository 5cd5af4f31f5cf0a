"""A stand-in for Slurm in the demo: reports functional units, ends jobs and starts new ones.

It drives the same services the scheduler API calls (job_register / job_units_report /
job_end), so the demo exercises the real paths: allocations change, ledger batches are
re-attributed, footprints become final and new live ones appear.

Only jobs on hosts that stream telemetry (a batch within ``--stale-s``) are churned: a job
started on a seeded host, which no agent reports, would sit "running" at 0 kWh forever. Running
jobs on such hosts (the seeded history's last jobs) are ended at their last ledger window. A
replacement keeps its predecessor's base name with one ``#<scheduler id>`` suffix.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import signal
import time

from django.core.management.base import BaseCommand
from django.utils import timezone

from accounting.models import Host, Job, JobFootprint
from accounting.services.allocations import AllocationSpec
from accounting.services.jobs import job_end, job_register, job_units_report
from telemetry.readers import hosts_seen_since

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
_SUFFIX = re.compile(r"(#\d+)+$")


def base_name(name: str) -> str:
    """A job name without the ``#<id>`` suffixes replacements added: "bert#2001#2002" → "bert"."""
    return _SUFFIX.sub("", name)


class Command(BaseCommand):
    help = "Demo scheduler: report units every --tick-s, replace one running job every --churn-s."

    def add_arguments(self, parser):
        parser.add_argument("--tick-s", type=float, default=20.0)
        parser.add_argument("--churn-s", type=float, default=180.0)
        parser.add_argument("--org", default="acme")
        parser.add_argument("--seed", type=int, default=11)
        parser.add_argument("--iterations", type=int, default=0, help="stop after N ticks (0: run until signalled)")
        parser.add_argument(
            "--stale-s",
            type=float,
            default=600.0,
            help="a host with no telemetry batch for this long is not live; its running jobs are ended",
        )

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
            running = self._tick(org=opts["org"], rng=rng, stale_s=opts["stale_s"])
            if running and time.monotonic() - last_churn >= opts["churn_s"]:
                last_churn = time.monotonic()
                self._replace(rng.choice(running), rng)
            ticks += 1
            if opts["iterations"] and ticks >= opts["iterations"]:
                break
            deadline = time.monotonic() + opts["tick_s"]
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)

    def _tick(self, *, org: str, rng: random.Random, stale_s: float) -> list[Job]:
        """Report units of the live jobs, end the stale ones; return the live ones."""
        now = timezone.now()
        live_hosts = hosts_seen_since(
            host_ids=list(Host.objects.filter(cluster__site__org__slug=org).values_list("pk", flat=True)),
            since=now - dt.timedelta(seconds=stale_s),
        )
        live: list[Job] = []
        for job in Job.objects.filter(org__slug=org, status=Job.Status.RUNNING).prefetch_related("allocations__device"):
            held = [a for a in job.allocations.all() if a.end is None]
            if any(a.device.host_id in live_hosts for a in held):
                live.append(job)
                unit, rate = UNITS_PER_GPU_S.get((job.family, job.kind), ("samples", 500.0))
                elapsed_s = (now - job.started_at).total_seconds()
                jitter = 0.9 + 0.2 * rng.random()
                job_units_report(
                    job=job, units={unit: round(rate * len(held) * elapsed_s * jitter)}, mode="set", primary_unit=unit
                )
            elif (now - job.started_at).total_seconds() > stale_s:
                self._end_stale(job)
        return live

    def _end_stale(self, job: Job) -> None:
        """End a running job no agent reports: at its last ledger window (its start if none)."""
        last = JobFootprint.objects.filter(job=job).values_list("last_window_end", flat=True).first()
        ended_at = max(last or job.started_at, job.started_at + dt.timedelta(seconds=1))
        job_end(job=job, status=Job.Status.COMPLETED, ended_at=ended_at)
        self.stdout.write(
            f"job {job.scheduler_job_id} ended at {ended_at:%Y-%m-%d %H:%M} (no telemetry from its hosts)"
        )

    def _replace(self, job: Job, rng: random.Random) -> None:
        held = [a for a in job.allocations.select_related("device__host") if a.end is None]
        state = rng.choice(EXIT_STATES)
        job_end(job=job, status=state)
        base = base_name(job.name)
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
