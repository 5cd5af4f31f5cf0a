"""gunicorn settings shared by every way the web process starts (scripts/run.sh, docker/Dockerfile,
docker/compose.yaml, benchmarks/ingest.py): ``gunicorn -c config/gunicorn.conf.py``. Command
lines add only what differs between them (bind address, workers, access log).
"""

import os

wsgi_app = "config.wsgi:application"
# Access lines as gunicorn writes them, built from their own fields (config/gunicorn_logging.py).
logger_class = "config.gunicorn_logging.Logger"
timeout = 60
# The workers' heartbeat updates a file on every loop: in memory, not on a container's overlay
# filesystem (where the update can block the worker). gunicorn creates it with mkstemp (mode 0600).
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108
