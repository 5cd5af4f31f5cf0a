"""Real processes for integration tests: a private Redis, Celery workers and beat.

Each test here runs with committed transactions (the worker is another process) against the
pytest-django test database. Redis is started privately on a free port so that a test may
stop and restart it without touching anything else on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var" / "integration"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.2, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._ping, timeout_s=10, what="redis")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(_free_port())
    server.start()
    yield server
    server.stop()


class Processes:
    """Starts Celery worker/beat processes against the test database and the private Redis."""

    def __init__(self, redis: RedisServer, db_name: str) -> None:
        self.redis = redis
        self.db_name = db_name
        self.procs: list[subprocess.Popen] = []
        VAR.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings_test",
            DJANGO_DEBUG="true",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{self.db_name}",
            REDIS_URL=self.redis.url,
            CARBONLEDGER_SKIP_NUDGE="false",
            # The claim timeout must exceed the attribution's hard time limit (config/settings.py).
            CARBONLEDGER_ATTRIBUTION_SOFT_TIME_LIMIT_S="8",
            CARBONLEDGER_ATTRIBUTION_TIME_LIMIT_S="10",
            CARBONLEDGER_CLAIM_TIMEOUT_S="12",
            CARBONLEDGER_SWEEPER_INTERVAL_S="1",
            DATABASE_CONN_MAX_AGE="0",
        )
        return env

    def worker(self, name: str, concurrency: int = 1, *, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``env``: variables over ``env()`` for this worker (e.g. shorter time limits)."""
        log = open(VAR / f"{name}.log", "w")  # closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-n",
                f"{name}@%h",
                "-c",
                str(concurrency),
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env={**self.env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def beat(self, where: Path | None = None) -> subprocess.Popen:
        """``where``: a directory of the test's own for the log and schedule file (var/integration
        is shared with other runs); its schedule is kept, so a restarted beat reads it again."""
        log = open((where or VAR) / "beat.log", "a" if where else "w")
        schedule = (where or VAR) / "beat-schedule"
        if where is None:
            for leftover in VAR.glob("beat-schedule*"):
                leftover.unlink()
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(schedule), "-l", "INFO"],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill9(proc: subprocess.Popen) -> None:
        """SIGKILL the process group: the prefork parent and its children die at once."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    self.kill9(proc)


def _reset_celery_connections(app) -> None:
    """Drop pooled broker connections so the next publish connects to the configured URL."""
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    # kombu keeps producer pools per connection in a global registry: a pool of the same broker
    # URL (the session's Redis, restarted on its port) would hand out connections of the pool
    # closed above ("Acquire on closed pool": every nudge of the next test lost).
    pools.reset()


@pytest.fixture
def processes(redis_server, transactional_db, settings) -> Iterator[Processes]:
    from workers.app import app

    settings.CARBONLEDGER_SKIP_NUDGE = False
    settings.CELERY_BROKER_URL = redis_server.url
    app.conf.broker_url = redis_server.url
    app.conf.result_backend = redis_server.url
    _reset_celery_connections(app)
    # A fresh stack per test: no message or nudge mark left by the previous test's processes (a
    # mark whose message died with a killed worker would hold back this test's nudges).
    import redis

    from accounting.services.work_queue import NUDGE_MARK_KEY

    redis.Redis.from_url(redis_server.url).delete("celery", NUDGE_MARK_KEY)
    procs = Processes(redis_server, connection.settings_dict["NAME"])
    yield procs
    procs.stop_all()


class WebServer:
    """gunicorn serving config.wsgi against the test database, stoppable mid-test (an outage)."""

    def __init__(self, env: dict[str, str], *, workers: int = 1) -> None:
        self.port = _free_port()
        self.env = env
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(VAR / "web.log", "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                "4",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._up, timeout_s=30, what="gunicorn")

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            Processes.kill9(self.proc)
            self.proc = None


@pytest.fixture
def web_server(processes) -> Iterator[WebServer]:
    env = processes.env()
    env["CARBONLEDGER_SKIP_NUDGE"] = "true"  # the test attributes explicitly after the run
    server = WebServer(env)
    server.start()
    yield server
    server.stop()
