"""gunicorn settings shared by every way the web process starts (scripts/run.sh, docker/Dockerfile,
docker/compose.yaml, benchmarks/ingest.py): ``gunicorn -c config/gunicorn.conf.py``. Command
lines add only what differs between them (bind address, number of workers, access log).

Measured with ``benchmarks/post_profile.py --gunicorn`` (docs/performance.md, "Issue 18: the web
side of one POST").
"""

import os

wsgi_app = "config.wsgi:application"
# Sync workers (one request at a time per process, the connection closed after each response).
# Measured against threaded workers (gthread, 4 threads, connections kept alive) in the same run
# on an otherwise idle machine: 2.55 vs 2.80 ms of web CPU per ingest POST with one client, 2.72
# vs 2.97 with four clients on two workers, and more POSTs per second too: a gthread worker
# hands every request from its polling thread to a pool thread and back, and its threads
# contend for the GIL. Keep-alive, which only threads offer, saved less than that hand-off
# costs. Concurrency comes from the number of workers (the command line's ``--workers``).
worker_class = "sync"
timeout = 60
# Access lines as gunicorn writes them, built from their own fields (config/gunicorn_logging.py).
logger_class = "config.gunicorn_logging.Logger"
# The workers' heartbeat updates a file on every loop: in memory, not on a container's overlay
# filesystem (where the update can block the worker). gunicorn creates it with mkstemp (mode 0600).
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108
