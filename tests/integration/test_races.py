"""Races found from outside, replayed against real processes (gunicorn, a Celery worker,
PostgreSQL), bounded in time, on loopback only.

1. A job registered while its host's first batch is being ingested ended at 0 J: the
   registration created a placeholder device that ingest never bound to the real GPU.
2. Ending a job deadlocked with the worker's rollup (the end locked batch rows, then waited for
   the rollup lock; the rollup held that lock and waited for the batch rows) and answered 500.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection
from django.db.models import Sum

from accounting.models import ApiToken, Device, Host, Job, JobAllocation, JobFootprint, LedgerEntry
from accounting.services.attribution import batches_attribute
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.accounting.test_api_support import build_world
from tests.integration.conftest import WebServer, wait_for
from tests.telemetry.helpers import INGEST_URL, batch, gpu_entry, iso, window

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOBS = "/api/v1/jobs/"
TIMEOUT_S = 30


def _post_batch(base: str, secret: str, payload: dict) -> requests.Response:
    return requests.post(
        base + INGEST_URL,
        data=gzip.compress(json.dumps(payload).encode()),
        timeout=TIMEOUT_S,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": f"Bearer {secret}"},
    )


def _api(base: str, secret: str, path: str, body: dict) -> requests.Response:
    return requests.post(base + path, json=body, timeout=TIMEOUT_S, headers={"Authorization": f"Bearer {secret}"})


def _register_body(*, job_id: str, host: str, gpus: list[int], started: dt.datetime) -> dict:
    return {
        "scheduler_job_id": job_id,
        "team": "recsys",
        "user": "alice",
        "name": f"race-{job_id}",
        "kind": "training",
        "family": "llm",
        "started_at": iso(started),
        "allocation": [{"host": host, "gpus": gpus}],
    }


def test_registration_racing_a_hosts_first_batch_holds_the_gpu_that_reports(web_server):
    """Per trial, on a fresh host: the agent's first batch and a registration on its GPU 0 are
    sent at the same instant. Whichever commits first, the host ends with one device at index 0,
    the job holds it, and the job's footprint carries the window's energy to the joule."""
    world = build_world()
    trials = 10
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started, window_start = now - dt.timedelta(minutes=5), now - dt.timedelta(minutes=2)
    hosts = []
    for trial in range(trials):
        host = Host.objects.create(cluster=world.cluster_a, hostname=f"fresh-{trial:02d}", gpu_slots=1)
        secret = token_create(org=world.org, name=f"agent-{trial}", scope=ApiToken.Scope.HOST, host=host).secret
        hosts.append((host, secret))

    def trial_run(trial: int) -> tuple[int, int]:
        host, secret = hosts[trial]
        payload = batch(
            hostname=host.hostname,
            windows=[
                window(
                    seq=1,
                    start=window_start,
                    duration_s=10.0,
                    gpus=[gpu_entry(uuid_=f"GPU-race-{trial:02d}", index=0, energy_j=4321.0 + trial)],
                )
            ],
        )
        barrier = threading.Barrier(2)

        def ingest() -> int:
            barrier.wait()
            return _post_batch(web_server.url, secret, payload).status_code

        def register() -> int:
            barrier.wait()
            return _api(
                web_server.url,
                world.secrets["sched_a"],
                JOBS,
                _register_body(job_id=f"race-{trial}", host=host.hostname, gpus=[0], started=started),
            ).status_code

        with ThreadPoolExecutor(2) as pool:
            posted, registered = pool.submit(ingest), pool.submit(register)
            return posted.result(), registered.result()

    for trial in range(trials):
        assert trial_run(trial) == (202, 201)

    batches_attribute(batch_pks=list(TelemetryBatch.objects.values_list("pk", flat=True)), now=now)
    for trial, (host, _) in enumerate(hosts):
        devices = list(Device.objects.filter(host=host).values_list("uuid", flat=True))
        assert devices == [f"GPU-race-{trial:02d}"], "one device at index 0: the placeholder was bound"
        job = Job.objects.get(scheduler_job_id=f"race-{trial}")
        held = list(JobAllocation.objects.filter(job=job).values_list("device__uuid", flat=True))
        assert held == [f"GPU-race-{trial:02d}"]
        response = _api(
            web_server.url,
            world.secrets["sched_a"],
            f"{JOBS}by-key/race-{trial}/end/",
            {"exit_state": "completed", "ended_at": iso(now - dt.timedelta(minutes=1))},
        )
        assert response.status_code == 200, response.text
        footprint = JobFootprint.objects.get(job=job)
        assert footprint.is_final
        assert footprint.gpu_energy_j == 4321.0 + trial  # every joule of the window, none to overhead
        assert LedgerEntry.objects.filter(device__host=host, account="fleet_overhead").count() == 0


@pytest.fixture
def live_stack(processes):
    """gunicorn (2 processes) with nudges on and a real Celery worker: batches are attributed
    and rolled up while the test ends jobs."""
    processes.worker("race-worker", concurrency=2)
    server = WebServer(processes.env(), workers=2)
    server.start()
    yield server
    server.stop()


def test_job_ends_racing_the_workers_rollups_never_answer_500(live_stack):
    """8 hosts × 4 GPUs stream batches (nudged to a real worker: attribution and rollup) while
    32 jobs, one per GPU, are ended at an instant inside the streamed range (so each end marks
    batches dirty under the same rows the rollups mark done). Every end answers 200; after the
    queue drains every footprint is final and equals its ledger entries, and every joule
    posted is in the ledger exactly once."""
    world = build_world()
    base = live_stack.url
    n_hosts, gpus_per_host, n_batches, window_s = 8, 4, 12, 10.0
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    t0 = now - dt.timedelta(seconds=n_batches * window_s + 60)
    hosts = []
    for h in range(n_hosts):
        host = Host.objects.create(cluster=world.cluster_a, hostname=f"stress-{h}", gpu_slots=gpus_per_host)
        secret = token_create(org=world.org, name=f"agent-{h}", scope=ApiToken.Scope.HOST, host=host).secret
        hosts.append((host, secret))
    sched = world.secrets["sched_a"]
    for host, _ in hosts:
        for g in range(gpus_per_host):
            response = _api(
                base,
                sched,
                JOBS,
                _register_body(job_id=f"{host.hostname}-{g}", host=host.hostname, gpus=[g], started=t0),
            )
            assert response.status_code == 201, response.text

    posted_j = 0.0

    def stream(host: Host, secret: str) -> float:
        total = 0.0
        for b in range(n_batches):
            start = t0 + dt.timedelta(seconds=b * window_s)
            gpus = [
                gpu_entry(uuid_=f"GPU-{host.hostname}-{g}", index=g, energy_j=5000.0 + 10 * g + b)
                for g in range(gpus_per_host)
            ]
            response = _post_batch(
                base,
                secret,
                batch(hostname=host.hostname, windows=[window(seq=b + 1, start=start, duration_s=window_s, gpus=gpus)]),
            )
            assert response.status_code == 202, response.text
            total += sum(g["energy_j"] for g in gpus)
            time.sleep(0.02)
        return total

    ended_at = t0 + dt.timedelta(seconds=(n_batches // 2) * window_s + 5)  # inside a window
    statuses: list[int] = []

    def end_all() -> None:
        time.sleep(0.3)  # let the first batches reach the worker
        for host, _ in hosts:
            for g in range(gpus_per_host):
                response = _api(
                    base,
                    sched,
                    f"{JOBS}by-key/{host.hostname}-{g}/end/",
                    {"exit_state": "completed", "ended_at": iso(ended_at)},
                )
                statuses.append(response.status_code)
                assert response.headers["Content-Type"].startswith("application/"), response.text

    with ThreadPoolExecutor(n_hosts + 1) as pool:
        streams = [pool.submit(stream, host, secret) for host, secret in hosts]
        ender = pool.submit(end_all)
        posted_j = sum(s.result() for s in streams)
        ender.result()
    assert statuses == [200] * (n_hosts * gpus_per_host)

    def drained() -> bool:
        return not TelemetryBatch.objects.exclude(status=TelemetryBatch.Status.DONE).exists()

    try:
        wait_for(drained, timeout_s=120, what="every batch attributed")
    except AssertionError as exc:
        import redis

        from accounting.services.work_queue import NUDGE_MARK_KEY

        broker = redis.Redis.from_url(live_stack.env["REDIS_URL"])
        states = list(
            TelemetryBatch.objects.exclude(status="done").values_list("pk", "status", "claimed_at", "attempts", "error")
        )
        raise AssertionError(
            f"{exc}; not done: {states}; queue {broker.llen('celery')}, "
            f"mark {broker.get(NUDGE_MARK_KEY)!r} ttl {broker.ttl(NUDGE_MARK_KEY)}"
        ) from exc
    gpu_ledger_j = LedgerEntry.objects.filter(component__in=["gpu_active", "gpu_idle"]).aggregate(
        total=Sum("energy_j")
    )["total"]
    assert gpu_ledger_j == pytest.approx(posted_j, rel=1e-12)
    for job in Job.objects.filter(cluster=world.cluster_a, scheduler_job_id__startswith="stress-"):
        footprint = JobFootprint.objects.get(job=job)
        assert footprint.is_final
        ledger_j = LedgerEntry.objects.filter(job=job).aggregate(total=Sum("energy_j"))["total"] or 0.0
        assert footprint.energy_j == pytest.approx(ledger_j, rel=1e-12)
        assert footprint.gpu_energy_j > 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_telemetrybatch WHERE status = 'failed'")
        assert cursor.fetchone()[0] == 0
