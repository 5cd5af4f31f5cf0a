"""gunicorn settings shared by every way the web process starts (scripts/run.sh, docker/Dockerfile,
docker/compose.yaml, benchmarks/ingest.py): ``gunicorn -c config/gunicorn.conf.py``. Command
lines add only what differs between them (bind address, number of workers, access log).

Measured with ``benchmarks/post_profile.py --gunicorn`` (docs/performance.md, "Issue 18: the web
side of one POST").
"""

import os

wsgi_app = "config.wsgi:application"
# Threaded workers: an ingest POST waits on its commit (the WAL flush) and on PostgreSQL, and a
# thread serves another request meanwhile. With 4 concurrent clients on 2 workers they used less
# CPU per POST than sync workers (3.45 vs 3.59 ms) at 1.6x the POSTs per second; alone, the same.
worker_class = "gthread"
threads = 4
# The agent keeps one connection open across its batches (telemetry/agent/sender.py), which it
# sends every 10 s (one window) to 60 s (its default batching). A kept-alive connection costs an
# idle gthread worker nothing but a file descriptor, while a new one per POST costs the web a
# TCP accept and teardown (~0.2 ms of CPU per POST measured; a TLS handshake where gunicorn
# terminates TLS) and the agent a failed first attempt on the connection the server closed. So
# idle connections are kept past the agent's default interval and past the usual 60 s idle
# timeout of load balancers, which then close first. Beyond ``worker_connections`` (1000 per
# worker) kept-alive connections, responses close theirs.
keepalive = 75
timeout = 60
# Access lines as gunicorn writes them, built from their own fields (config/gunicorn_logging.py).
logger_class = "config.gunicorn_logging.Logger"
# The workers' heartbeat updates a file on every loop: in memory, not on a container's overlay
# filesystem (where the update can block the worker). gunicorn creates it with mkstemp (mode 0600).
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108
