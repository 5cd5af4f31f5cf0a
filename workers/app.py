"""The Celery application: broker from settings, tasks in workers/tasks.py, beat schedule."""

from __future__ import annotations

import os

from celery import Celery
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("carbonledger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


@worker_init.connect
def _require_prefork(sender, **kwargs) -> None:
    """Only the prefork pool enforces the hard time limit (its parent kills the child), and the
    claim timeout relies on it (accounting/services/work_queue.py): refuse any other pool.
    SystemExit, because Celery logs and ignores the exceptions of signal handlers."""
    pool = get_implementation(sender.pool_cls)
    if not (isinstance(pool, type) and issubclass(pool, PreforkPool)):
        raise SystemExit(
            f"carbonledger workers need --pool prefork (got {pool!r}): only it enforces the task "
            "time limits that make an old claim safe to take over"
        )


@worker_process_init.connect
def _tune_gc(**kwargs) -> None:
    """Each pool process, once loaded: see config/gc_tuning.py."""
    from config.gc_tuning import tune_for_server

    tune_for_server()


@app.on_after_configure.connect
def _beat_schedule(sender, **kwargs) -> None:
    from django.conf import settings

    sender.conf.beat_schedule = {
        "sweep-pending-batches": {"task": "ledger.sweep", "schedule": settings.SWEEPER_INTERVAL_S},
        "maintain-partitions": {"task": "telemetry.maintain_partitions", "schedule": 3600.0},
        "recompute-factor-changes": {"task": "ledger.recompute_factor_changes", "schedule": 60.0},
        "fetch-grid-intensity": {"task": "accounting.intensity_fetch_latest", "schedule": 3600.0},
        # Monthly reports: each tick plans the months whose send moment (REPORTS_SEND_DAY at
        # REPORTS_SEND_TIME in the organisation's time zone, default the 2nd at 06:00) has passed
        # and that are closed, then fans out one reports.deliver per report.
        "send-monthly-reports": {"task": "reports.tick", "schedule": settings.REPORTS_TICK_S},
    }
