"""The cost of one small ingest POST, layer by layer (a benchmark, not a test).

Two modes, both on a scratch database (``--db``, recreated) and a private redis-server, POSTing
the agent's steady-state batch (one 10 s window of an 8-GPU host, gzip; ``--windows-per-batch``
for bigger ones) round-robin over ``--hosts`` hosts, each with a current ``sent_at``:

* in process (default): the production WSGI application (``config.wsgi``, production settings,
  ``DEBUG=false``) is called directly, as gunicorn calls it, without the HTTP server;
* ``--gunicorn sync|gthread``: gunicorn serves it (``config/gunicorn.conf.py``, or gunicorn's
  defaults with ``--gunicorn-config none``; the worker class given here) and this process POSTs
  over HTTP (``http.client``: one kept-alive connection per client, which a sync worker closes
  after each response; ``--new-connection`` for one per POST; ``--clients`` threads). Blocks of
  the same POSTs go in turn to the application in process, to that gunicorn and, with
  ``--baseline DIR``, to a gunicorn running another checkout (e.g. an export of the base commit),
  so that every column of the table sees the same load from the rest of the machine.

Each prints:

  * CPU per POST, unprofiled, over ``--posts`` POSTs per target: the web side (in process: the
    WSGI calls; under gunicorn: the arbiter and its workers, per worker thread, from
    ``/proc/<pid>/task/<tid>/schedstat``), the PostgreSQL backends serving it and redis-server;
  * in process: the SQL of one POST, with each statement's wall time seen by the client;
  * a cProfile (CPU clock) of ``--posts`` POSTs: cumulative time per call of each layer (profiled
    times are inflated by the profiler; read them as shares). Under gunicorn, every thread of
    one worker is profiled (``benchmarks/gunicorn_profile.conf.py``), HTTP handling included;
  * the worker side is measured by ``benchmarks/ingest.py`` (claims per round are printed there).

    .venv/bin/python benchmarks/post_profile.py --posts 400
    .venv/bin/python benchmarks/post_profile.py --posts 800 --gunicorn sync --baseline /tmp/base
    .venv/bin/python benchmarks/post_profile.py --posts 800 --gunicorn gthread --threads 4 --access-log
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gzip
import http.client
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's code, not an installed copy

import ingest as base  # the ingest benchmark's process, seeding and payload helpers

PATH = "/api/v1/ingest/batches"
PROFILE_CONFIG = Path(__file__).resolve().parent / "gunicorn_profile.conf.py"

# (label, file suffix, function name) of the layers reported from the profile.
LAYERS = (
    ("WSGI call, whole request", "django/core/handlers/wsgi.py", "__call__"),
    ("  request_started/finished signals (connection checks)", "django/db/__init__.py", "close_old_connections"),
    ("  middleware + view (BaseHandler.get_response)", "django/core/handlers/base.py", "get_response"),
    ("    URL resolving", "django/urls/resolvers.py", "resolve"),
    ("    SessionMiddleware.process_request", "django/contrib/sessions/middleware.py", "process_request"),
    ("    CsrfViewMiddleware.process_view", "django/middleware/csrf.py", "process_view"),
    ("    CSPMiddleware.process_response", "csp/middleware.py", "process_response"),
    ("    AxesMiddleware", "axes/middleware.py", "__call__"),
    ("    view: APIView.dispatch", "rest_framework/views.py", "dispatch"),
    ("      DRF initialize_request", "rest_framework/views.py", "initialize_request"),
    ("      DRF initial (auth, permission, throttle)", "rest_framework/views.py", "initial"),
    ("        token lookup (one query)", "accounting/tokens.py", "_find"),
    ("        content negotiation", "rest_framework/views.py", "perform_content_negotiation"),
    ("      body: read", "telemetry/api/views.py", "_read_body"),
    ("      body: gunzip", "telemetry/parsing.py", "decompress"),
    ("      body: JSON", "telemetry/api/views.py", "_loads"),
    ("      parse_batch (v1)", "telemetry/parsing.py", "parse_batch"),
    ("      parse_batch_v2", "telemetry/wire_v2.py", "parse_batch_v2"),
    ("      batch_ingest (service, commit included)", "telemetry/services.py", "batch_ingest"),
    (
        "        hostname + device ids (accounting's inventory, one query)",
        "accounting/services/inventory.py",
        "ingest_inventory",
    ),
    ("        host stream lock + duplicate check (one query)", "telemetry/services.py", "_stream_lock"),
    ("        device registration (only for new devices)", "accounting/services/inventory.py", "devices_register"),
    ("        ensure_partitions (cached)", "telemetry/partitions.py", "ensure_partitions"),
    (
        "        batch row INSERT + host stream UPDATE (one statement)",
        "telemetry/services.py",
        "_batch_insert_and_host_advance",
    ),
    ("        GPU series rows (binary arrays)", "telemetry/services.py", "gpu_series_rows"),
    ("        COPY of the GPU series (host windows: in the INSERT)", "telemetry/services.py", "copy_rows"),
    ("        commit (Atomic.__exit__)", "django/db/transaction.py", "__exit__"),
    ("        nudge (Redis SET NX, send_task)", "accounting/services/work_queue.py", "batches_nudge"),
    ("      finalize_response (+ expiry headers)", "rest_framework/views.py", "finalize_response"),
    ("      response rendering (JSON)", "rest_framework/response.py", "rendered_content"),
)
_WORKERS = ("gunicorn/workers/sync.py", "gunicorn/workers/gthread.py")
# What gunicorn adds around the WSGI call (profiled under --gunicorn only).
GUNICORN_LAYERS = (
    ("gthread: main loop, one poll + dispatch", "gunicorn/workers/gthread.py", "wait_for_and_dispatch_events"),
    ("gthread: accept a connection", "gunicorn/workers/gthread.py", "accept"),
    ("gthread: back from the thread pool (keep-alive)", "gunicorn/workers/gthread.py", "finish_request"),
    ("gthread: request thread, whole connection turn", "gunicorn/workers/gthread.py", "handle"),
    ("sync: accept + whole connection", "gunicorn/workers/sync.py", "accept"),
    ("sync: wait (select)", "gunicorn/workers/sync.py", "wait"),
    ("heartbeat (notify: utime of the worker tmp file)", "gunicorn/workers/workertmp.py", "notify"),
    ("HTTP request parsing (next(parser))", "gunicorn/http/parser.py", "__next__"),
    ("  wait for data on a new connection (a selector each)", "gunicorn/workers/gthread.py", "wait_for_data"),
    ("handle_request (pre hook, environ, WSGI, write, access log)", _WORKERS, "handle_request"),
    ("  environ (wsgi.create)", "gunicorn/http/wsgi.py", "create"),
    ("  WSGI call (Django)", "django/core/handlers/wsgi.py", "__call__"),
    ("  response: write", "gunicorn/http/wsgi.py", "write"),
    ("  response: close", "gunicorn/http/wsgi.py", "close"),
    ("  access log", "gunicorn/glogging.py", "access"),
    ("keep-alive: drain the body (finish_body)", "gunicorn/http/parser.py", "finish_body"),
    ("close the connection (close_graceful)", "gunicorn/util.py", "close_graceful"),
)


def _environ(body: bytes, secret: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": PATH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {secret}",
        "HTTP_CONTENT_ENCODING": "gzip",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


_SENT_AT = re.compile(rb'"sent_at":"[^"]*"')


def _fresh(body: bytes) -> bytes:
    """The pre-built batch with ``sent_at`` set to now, as an agent with a synchronised clock
    sends it: the batches' windows lie minutes in the past, and a ``sent_at`` there would make
    every POST log a clock-skew warning (a cost of the benchmark, not of the agents' POSTs)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    return gzip.compress(_SENT_AT.sub(b'"sent_at":"' + now + b'"', gzip.decompress(body), count=1), compresslevel=5)


def _sched_s(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system, nanosecond resolution: the scheduler's run time from
    ``/proc/.../schedstat``) of every thread of a process, or of one thread."""
    tids = [tid] if tid is not None else _tids(pid)
    total = 0
    for t in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
        except (OSError, IndexError):
            continue  # a thread that exited meanwhile
    return total / 1e9


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process in clock ticks of 10 ms, from /proc (used by
    benchmarks/attribution_profile.py)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tids(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def _user_sys_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (clock ticks of 10 ms: a split, not a total)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (gunicorn's workers under its arbiter)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return sorted(out)


class _Batches:
    """Each host's pre-built batches in seq order, handed out round-robin over the hosts."""

    def __init__(self, seeds, queues) -> None:
        self.seeds, self.queues = seeds, queues
        self.cursor = [0] * len(seeds)
        self.i = 0

    def next(self) -> tuple[str, bytes]:
        """(bearer secret, gzip body with a current ``sent_at``)."""
        h = self.i % len(self.seeds)
        self.i += 1
        _, _, body = self.queues[h][self.cursor[h]]
        self.cursor[h] += 1
        return self.seeds[h].secret, _fresh(body)


class _InProcess:
    """Calls the WSGI application in this process; ``cpu_s`` sums the CPU of the calls alone."""

    def __init__(self) -> None:
        from config.wsgi import application

        self.application = application
        self.cpu_s = 0.0

    def post(self, batches: _Batches, profiler: cProfile.Profile | None = None) -> None:
        secret, body = batches.next()
        environ = _environ(body, secret)
        status: list[str] = []
        t = time.process_time()
        if profiler is not None:
            profiler.enable()
        result = self.application(environ, lambda s, headers, exc=None: status.append(s))
        b"".join(result)
        result.close()
        if profiler is not None:
            profiler.disable()
        self.cpu_s += time.process_time() - t
        if not status[0].startswith("202"):
            raise RuntimeError(f"POST {batches.i}: {status[0]}")

    @staticmethod
    def backend() -> int:
        from django.db import connection

        with connection.cursor() as c:
            c.execute("SELECT pg_backend_pid()")
            return c.fetchone()[0]


class _Http:
    """POSTs over one keep-alive HTTP connection; http.client reconnects after a server closes."""

    def __init__(self, port: int, *, new_connection: bool = False) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.closed_by_server = 0
        self.new_connection = new_connection  # close after each response, as benchmarks/ingest.py does

    def post(self, batches: _Batches, headers: dict[str, str] | None = None) -> None:
        secret, body = batches.next()
        self.conn.request(
            "POST",
            PATH,
            body=body,
            headers={
                "Authorization": f"Bearer {secret}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Host": "127.0.0.1",
                **(headers or {}),
            },
        )
        resp = self.conn.getresponse()
        payload = resp.read()
        if resp.will_close:
            self.closed_by_server += 1
        elif self.new_connection:
            self.conn.close()
        if resp.status != 202:
            raise RuntimeError(f"POST {batches.i}: {resp.status} {payload[:300]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="carbonledger_post_profile")
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--posts", type=int, default=400, help="POSTs per measured phase")
    parser.add_argument("--windows-per-batch", type=int, default=1)
    parser.add_argument(
        "--gunicorn",
        choices=("sync", "gthread"),
        help="serve the application with gunicorn and this worker class; POST over HTTP",
    )
    parser.add_argument("--web-workers", type=int, default=1, help="gunicorn workers (--gunicorn)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (--gunicorn gthread)")
    parser.add_argument(
        "--gunicorn-config",
        default=str(base.ROOT / "config" / "gunicorn.conf.py"),
        help="gunicorn config file (--gunicorn); 'none' for gunicorn's defaults with the command line "
        "ingest.py and scripts/run.sh used before config/gunicorn.conf.py",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="write gunicorn's access log (to var/bench/post_profile_access.log), as scripts/run.sh does",
    )
    parser.add_argument("--rounds", type=int, default=10, help="blocks of in-process and HTTP POSTs (--gunicorn)")
    parser.add_argument("--clients", type=int, default=1, help="concurrent HTTP clients, one thread each (--gunicorn)")
    parser.add_argument(
        "--new-connection",
        action="store_true",
        help="a new TCP connection per POST (as benchmarks/ingest.py; an agent whose batches are further "
        "apart than the server's keep-alive timeout)",
    )
    parser.add_argument(
        "--baseline",
        help="another checkout (e.g. an export of the base commit): its gunicorn is measured in the same rounds",
    )
    parser.add_argument(
        "--baseline-worker-class",
        choices=("sync", "gthread"),
        help="the baseline's worker class (default: --gunicorn's); with --baseline . it compares the two classes",
    )
    parser.add_argument(
        "--baseline-config",
        default="none",
        help="the baseline's gunicorn config file ('none': gunicorn's defaults, as before config/gunicorn.conf.py)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile phase")
    args = parser.parse_args()
    procs = base.Procs()
    try:
        return _run(args, procs)
    finally:
        procs.stop_all()


def _prepare(args, procs: base.Procs, batches_per_host: int):
    """Redis, the database, the seeded hosts and their pre-built batches (seq order)."""
    redis_port = base._free_port()
    env = base.stack_env(db=args.db, redis_url=f"redis://127.0.0.1:{redis_port}/0")
    procs.start(
        "redis-profile",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        env,
    )
    base.database_prepare(db=args.db, env=env)
    import django

    django.setup()
    from django.db import connection

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(seconds=batches_per_host * args.windows_per_batch * base.WINDOW_S + 600)
    seeds = base._seed(args.hosts, start).hosts
    queues = [
        base._build_host_batches((s, start.timestamp(), 1, batches_per_host, args.windows_per_batch, i, 0))
        for i, s in enumerate(seeds)
    ]
    connection.close()
    return env, seeds, queues, procs.procs[0][1].pid


def _run(args, procs: base.Procs) -> int:
    if args.gunicorn:
        return _run_gunicorn(args, procs)
    per_host = 3 * args.posts // args.hosts + 4  # warm-up, timed, profiled, query capture
    _env, seeds, queues, redis_pid = _prepare(args, procs, per_host)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    batches = _Batches(seeds, queues)
    app = _InProcess()
    for _ in range(2 * len(seeds)):  # warm-up: imports, caches, partitions, every host once
        app.post(batches)
    backend = app.backend()

    # 1. Unprofiled CPU per POST.
    web0, pg0, r0, t0 = app.cpu_s, _sched_s(backend), _sched_s(redis_pid), time.perf_counter()
    for _ in range(args.posts):
        app.post(batches)
    web1, pg1, r1, t1 = app.cpu_s, _sched_s(backend), _sched_s(redis_pid), time.perf_counter()
    n = args.posts
    gpu_windows = 8 * args.windows_per_batch
    print(f"\n{n} POSTs of {gpu_windows} GPU windows in process, unprofiled (CPU ms per POST):")
    print(f"  web (WSGI calls)       {1000 * (web1 - web0) / n:7.3f}")
    print(f"  PostgreSQL backend     {1000 * (pg1 - pg0) / n:7.3f}")
    print(f"  redis-server           {1000 * (r1 - r0) / n:7.3f}")
    print(f"  wall per POST          {1000 * (t1 - t0) / n:7.3f}")

    # 2. The SQL of a POST: each statement's wall time seen by the client, averaged over POSTs.
    with CaptureQueriesContext(connection) as ctx:
        app.post(batches)
    # Read now: the next request's request_started signal empties connection.queries.
    captured = ctx.captured_queries
    # execute_wrapper sees no BEGIN/COMMIT (Django issues them on the connection, not a cursor).
    sqls = [" ".join(q["sql"].split()) for q in captured if q["sql"] not in ("BEGIN", "COMMIT")]
    walls = [0.0] * len(sqls)

    def timed(execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timed.at += 1  # type: ignore[attr-defined]
            if timed.at <= len(walls):  # type: ignore[attr-defined]
                walls[timed.at - 1] += time.perf_counter() - t  # type: ignore[attr-defined]

    rounds = min(100, args.posts)
    for _ in range(rounds):
        timed.at = 0  # type: ignore[attr-defined]
        with connection.execute_wrapper(timed):
            app.post(batches)
    print(f"\nSQL of one POST: {len(captured)} statements through Django, BEGIN and COMMIT included")
    print(f"\nstatements other than BEGIN/COMMIT (COPY goes around it), wall ms, mean of {rounds}")
    for sql, wall in zip(sqls, walls, strict=True):
        print(f"  {1000 * wall / rounds:6.3f}  {sql[:140]}")
    if not args.no_profile:
        # 3. Profile: the WSGI calls only (CPU clock, not waits on PostgreSQL).
        profiler = cProfile.Profile(time.process_time)
        for _ in range(n):
            app.post(batches, profiler)
        _print_profile(pstats.Stats(profiler), n, LAYERS)
    connection.close()
    return 0


def _cumulative(table: dict, suffix: str | tuple[str, ...], name: str) -> tuple[float, float]:
    cum = calls = 0.0
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
        if func == name and filename.endswith(suffix):
            cum += ct
            calls += nc
    return cum, calls


def _print_profile(stats: pstats.Stats, n: int, layers: tuple[tuple[str, str | tuple[str, ...], str], ...]) -> None:
    table = stats.stats  # type: ignore[attr-defined]
    print(f"\ncProfile (CPU time) of {n} POSTs: cumulative CPU ms per POST (profiled, inflated; calls per POST)")
    found: dict[tuple[str, str | tuple[str, ...]], float] = {}
    for label, suffix, name in layers:
        cum, calls = _cumulative(table, suffix, name)
        print(f"  {1000 * cum / n:7.3f}  {calls / n:5.2f}  {label}")
        found[name, suffix] = cum
    middleware = (
        found["get_response", "django/core/handlers/base.py"]
        - found["dispatch", "rest_framework/views.py"]
        - found["resolve", "django/urls/resolvers.py"]
    )
    print(f"  {1000 * middleware / n:7.3f}        middleware in all (get_response - dispatch - URL resolving)")
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_callees("batch_ingest")
    print("\nbatch_ingest's callees (CPU s over all POSTs):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-3000:])
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(30)
    print("\nTop 30 by own time:")
    print("\n".join(line for line in out.getvalue().splitlines()[6:45] if line.strip()))


# --- under gunicorn ------------------------------------------------------------------------


def _gunicorn_argv(
    args, port: int, *, config: str | None, workers: int, profile: bool = False, worker_class: str | None = None
) -> list[str]:
    argv = [base.PY, "-m", "gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    if profile:
        argv += ["-c", str(PROFILE_CONFIG)]  # which loads ``config`` (POST_PROFILE_CONFIG) and adds its hooks
    elif config:
        argv += ["-c", config]
    if not config:
        # gunicorn's defaults, as benchmarks/ingest.py and scripts/run.sh ran it before the config file.
        argv += ["--timeout", "120", "--log-level", "warning"]
    if (worker_class or args.gunicorn) == "sync":
        argv += ["--worker-class", "sync", "--threads", "1"]
    else:
        argv += ["--worker-class", "gthread", "--threads", str(args.threads)]
    if args.access_log:
        argv += ["--access-logfile", str(base.VAR / "post_profile_access.log")]
    return argv


def _backends(db: str, label: str) -> list[int]:
    """The PostgreSQL backends of one measured gunicorn (``application_name``)."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [db, f"post_profile_{label}"],
        )
        return [row[0] for row in c.fetchall()]


def _start_gunicorn(args, procs: base.Procs, env: dict[str, str], *, config: str | None, workers: int, extra=None):
    port = base._free_port()
    argv = _gunicorn_argv(args, port, config=config, workers=workers, profile=extra is not None)
    proc = procs.start(f"gunicorn-{args.gunicorn}", argv, {**env, **(extra or {})})
    base._wait(lambda: base._port_open(port), timeout_s=60, what="gunicorn")
    base._wait(lambda: len(_children(proc.pid)) >= workers, timeout_s=60, what="gunicorn workers")
    return proc, port


def _stop(procs: base.Procs, proc) -> None:
    """SIGTERM (graceful: workers run their exit hooks) and wait."""
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    procs.procs = [(name, p) for name, p in procs.procs if p is not proc]


class _Server:
    """One gunicorn under measurement: its workers' CPU (per thread), its PostgreSQL backends'
    (found by ``application_name``, set through libpq's ``PGAPPNAME``), wall time."""

    def __init__(self, label: str, proc, port: int, command: str) -> None:
        self.label, self.proc, self.port, self.command = label, proc, port, command
        self.workers = _children(proc.pid)
        self.cpu = dict.fromkeys(("worker", "main", "arbiter", "pg", "redis", "wall", "user", "sys"), 0.0)
        self.closed = 0
        self.posts = 0

    def block(self, clients: list[tuple[_Http, _Batches]], count: int, redis_pid: int, db: str) -> None:
        """``count`` POSTs shared by the clients (one thread each), measured."""
        backends0 = {pid: _sched_s(pid) for pid in _backends(db, self.label)}
        w0 = {pid: {tid: _sched_s(pid, tid) for tid in _tids(pid)} for pid in self.workers}
        us0 = [_user_sys_s(pid) for pid in self.workers]
        closed0 = sum(client.closed_by_server for client, _ in clients)
        ar0, r0, t0 = _sched_s(self.proc.pid), _sched_s(redis_pid), time.perf_counter()
        shares = [count // len(clients) + (1 if k < count % len(clients) else 0) for k in range(len(clients))]
        if len(clients) == 1:
            for _ in range(count):
                clients[0][0].post(clients[0][1])
        else:
            errors: list[BaseException] = []

            def run(client: _Http, batches: _Batches, share: int) -> None:
                try:
                    for _ in range(share):
                        client.post(batches)
                except BaseException as exc:  # re-raised below, in the main thread
                    errors.append(exc)

            threads = [
                threading.Thread(target=run, args=(client, batches, share))
                for (client, batches), share in zip(clients, shares, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
        ar1, r1, t1 = _sched_s(self.proc.pid), _sched_s(redis_pid), time.perf_counter()
        for pid in self.workers:
            for tid in _tids(pid):
                delta = _sched_s(pid, tid) - w0[pid].get(tid, 0.0)
                self.cpu["worker"] += delta
                if tid == pid:
                    self.cpu["main"] += delta
        for a, b in zip(us0, [_user_sys_s(pid) for pid in self.workers], strict=True):
            self.cpu["user"] += b[0] - a[0]
            self.cpu["sys"] += b[1] - a[1]
        # A backend that appeared meanwhile counts from its start.
        self.cpu["pg"] += sum(_sched_s(pid) - backends0.get(pid, 0.0) for pid in _backends(db, self.label))
        self.cpu["arbiter"] += ar1 - ar0
        self.cpu["redis"] += r1 - r0
        self.cpu["wall"] += t1 - t0
        self.closed += sum(client.closed_by_server for client, _ in clients) - closed0
        self.posts += count


def _run_gunicorn(args, procs: base.Procs) -> int:
    """The same POSTs in process and over HTTP to gunicorn (and to a baseline checkout's gunicorn
    with ``--baseline``), interleaved in ``--rounds`` blocks so that all see the same load from the
    rest of the machine; then a profile of one worker."""
    n = args.posts
    warm = 2 * args.hosts
    targets = 2 + bool(args.baseline)
    per_host = (targets * (warm + n) + (0 if args.no_profile else warm + n)) // args.hosts + 4
    env, seeds, queues, redis_pid = _prepare(args, procs, per_host)
    config = None if args.gunicorn_config == "none" else args.gunicorn_config
    # Each client thread posts for its own hosts (one host's batches must arrive in seq order).
    clients = max(1, args.clients)
    batch_sets = [
        _Batches([seeds[h] for h in range(k, len(seeds), clients)], [queues[h] for h in range(k, len(seeds), clients)])
        for k in range(clients)
    ]

    servers = [_start_server(args, procs, env, "gunicorn", base.ROOT, config)]
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        baseline_config = None if args.baseline_config == "none" else args.baseline_config
        servers.append(
            _start_server(args, procs, env, "baseline", baseline, baseline_config, args.baseline_worker_class)
        )
    connections = {
        server.label: [(_Http(server.port, new_connection=args.new_connection), b) for b in batch_sets]
        for server in servers
    }
    app = _InProcess()
    for _ in range(warm // clients):  # warm-up: imports, caches, partitions, every host (in every worker)
        for server in servers:
            for client, batches in connections[server.label]:
                client.post(batches)
        app.post(batch_sets[0])
    own_backend = app.backend()
    cpu = dict.fromkeys(("app", "app_pg", "app_redis", "app_wall"), 0.0)
    rounds = max(1, args.rounds)
    for r in range(rounds):
        block = n // rounds + (1 if r < n % rounds else 0)
        a0, pg0, r0, t0 = app.cpu_s, _sched_s(own_backend), _sched_s(redis_pid), time.perf_counter()
        for k in range(block):
            app.post(batch_sets[k % clients])
        a1, pg1, r1, t1 = app.cpu_s, _sched_s(own_backend), _sched_s(redis_pid), time.perf_counter()
        cpu["app"] += a1 - a0
        cpu["app_pg"] += pg1 - pg0
        cpu["app_redis"] += r1 - r0
        cpu["app_wall"] += t1 - t0
        for server in servers if r % 2 == 0 else servers[::-1]:
            server.block(connections[server.label], block, redis_pid, args.db)
    for server in servers:
        for client, _ in connections[server.label]:
            client.conn.close()
        if _children(server.proc.pid) != server.workers:
            print(f"warning: {server.label}'s workers changed during the run", file=sys.stderr)
        _stop(procs, server.proc)
    _print_http(args, n, rounds, clients, cpu, servers)
    if args.no_profile:
        return 0

    # Profile: one worker, every thread of it (benchmarks/gunicorn_profile.conf.py); the
    # profilers are cleared at the first measured POST, which carries the X-Bench-Profile header.
    out_dir = base.VAR / "post_profile_gunicorn"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    extra = {"POST_PROFILE_OUT": str(out_dir), "POST_PROFILE_CONFIG": config or ""}
    proc, port = _start_gunicorn(args, procs, env, config=config, workers=1, extra=extra)
    client = _Http(port)
    for _ in range(warm):
        client.post(batch_sets[0])
    client.post(batch_sets[0], {"X-Bench-Profile": "start"})
    for _ in range(n - 1):
        client.post(batch_sets[0])
    client.conn.close()
    _stop(procs, proc)
    files = sorted(out_dir.glob("*.prof"))
    if not files:
        raise RuntimeError(f"no profile written to {out_dir} (see var/bench/gunicorn-{args.gunicorn}.log)")
    stats = pstats.Stats(*(str(f) for f in files))
    print(f"\nProfile of one gunicorn {args.gunicorn} worker, every thread (per-thread CPU clock)")
    _print_profile(stats, n, GUNICORN_LAYERS + LAYERS)
    return 0


def _start_server(
    args,
    procs: base.Procs,
    env: dict[str, str],
    label: str,
    root: Path,
    config: str | None,
    worker_class: str | None = None,
) -> _Server:
    """gunicorn from the checkout at ``root`` (its own code: cwd and PYTHONPATH), measured."""
    port = base._free_port()
    argv = _gunicorn_argv(args, port, config=config, workers=args.web_workers, worker_class=worker_class)
    server_env = {**env, "PYTHONPATH": str(root), "PGAPPNAME": f"post_profile_{label}"}
    log = open(base.VAR / f"{label}-{args.gunicorn}.log", "w")
    proc = subprocess.Popen(
        argv, cwd=root, env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs.procs.append((label, proc))
    base._wait(lambda: base._port_open(port), timeout_s=60, what=f"gunicorn ({label})")
    base._wait(lambda: len(_children(proc.pid)) >= args.web_workers, timeout_s=60, what="gunicorn workers")
    return _Server(label, proc, port, f"(in {root}) " + " ".join(argv[2:]))


def _print_http(args, n: int, rounds: int, clients: int, cpu: dict[str, float], servers: list[_Server]) -> None:
    gpu_windows = 8 * args.windows_per_batch

    def ms(seconds: float) -> str:
        return f"{1000 * seconds / n:10.3f}"

    print(
        f"\n{n} POSTs of {gpu_windows} GPU windows to each target, interleaved in {rounds} rounds; {clients} client(s)"
    )
    for server in servers:
        kept = "no keep-alive" if server.closed == n or args.new_connection else "keep-alive"
        print(
            f"  {server.label}: {server.command}\n    {server.closed} of {n} responses closed the connection ({kept})"
        )
    print(
        "CPU ms per POST, unprofiled (schedstat)"
        + "".join(f"{label:>11}" for label in ["in process"] + [s.label for s in servers])
    )
    rows = [
        ("web", cpu["app"], [s.cpu["worker"] + s.cpu["arbiter"] for s in servers]),
        ("  gunicorn workers", None, [s.cpu["worker"] for s in servers]),
        ("    user (10 ms ticks)", None, [s.cpu["user"] for s in servers]),
        ("    system (10 ms ticks)", None, [s.cpu["sys"] for s in servers]),
    ]
    if args.gunicorn == "gthread":
        rows += [
            ("    main threads (poll, keep-alive)", None, [s.cpu["main"] for s in servers]),
            ("    request threads", None, [s.cpu["worker"] - s.cpu["main"] for s in servers]),
        ]
    rows += [
        ("  gunicorn arbiter", None, [s.cpu["arbiter"] for s in servers]),
        ("PostgreSQL backend(s)", cpu["app_pg"], [s.cpu["pg"] for s in servers]),
        ("redis-server", cpu["app_redis"], [s.cpu["redis"] for s in servers]),
        (
            "web + PostgreSQL + redis",
            cpu["app"] + cpu["app_pg"] + cpu["app_redis"],
            [s.cpu["worker"] + s.cpu["arbiter"] + s.cpu["pg"] + s.cpu["redis"] for s in servers],
        ),
        ("wall per POST (all clients)", cpu["app_wall"], [s.cpu["wall"] for s in servers]),
    ]
    for label, own, others in rows:
        print(f"  {label:37s}" + (ms(own) if own is not None else " " * 10) + "".join(ms(v) for v in others))
    print(
        f"  {'web per GPU window (us)':37s}{1e6 * cpu['app'] / n / gpu_windows:10.1f}"
        + "".join(f"{1e6 * (s.cpu['worker'] + s.cpu['arbiter']) / n / gpu_windows:10.1f}" for s in servers)
    )


if __name__ == "__main__":
    sys.exit(main())
