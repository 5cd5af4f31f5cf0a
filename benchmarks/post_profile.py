"""The cost of one small ingest POST, layer by layer (a benchmark, not a test).

Runs the production WSGI application (``config.wsgi``, production settings, ``DEBUG=false``, as
gunicorn serves it) in this process on a scratch database (``--db``, recreated) and a private
redis-server, and POSTs the agent's steady-state batch (one 10 s window of an 8-GPU host, gzip)
round-robin over ``--hosts`` hosts. It prints:

  * CPU per POST, unprofiled: this process (the web side, WSGI call to response), the
    PostgreSQL backend serving it and redis-server, over ``--posts`` POSTs;
  * the SQL of one POST, with each statement's wall time seen by the client;
  * a cProfile of ``--posts`` POSTs: cumulative time per call of each layer (profiled times are
    inflated by the profiler; read them as shares);
  * the worker side is measured by ``benchmarks/ingest.py`` (claims per round are printed there).

    .venv/bin/python benchmarks/post_profile.py --posts 400
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's code, not an installed copy

import ingest as base  # the ingest benchmark's process, seeding and payload helpers

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
    ("      DRF initial (auth, permission, throttle)", "rest_framework/views.py", "initial"),
    ("        token lookup (one query)", "accounting/tokens.py", "_find"),
    ("        content negotiation", "rest_framework/views.py", "perform_content_negotiation"),
    ("      body: gunzip", "telemetry/parsing.py", "decompress"),
    ("      body: JSON", "telemetry/api/views.py", "_loads"),
    ("      parse_batch", "telemetry/parsing.py", "parse_batch"),
    ("      batch_ingest (service, commit included)", "telemetry/services.py", "batch_ingest"),
    ("        host lock + duplicate check (one query, before: ORM)", "django/db/models/query.py", "get"),
    ("        host lock + duplicate check + device ids (one query)", "telemetry/services.py", "_host_lock"),
    ("        device resolution (before; now only for new devices)", "telemetry/services.py", "_resolve_devices"),
    ("        ensure_partitions (cached)", "telemetry/partitions.py", "ensure_partitions"),
    ("        batch row INSERT (before: ORM)", "django/db/models/query.py", "create"),
    (
        "        batch row INSERT + host UPDATE (one statement)",
        "telemetry/services.py",
        "_batch_insert_and_host_advance",
    ),
    ("        COPY of GPU and host windows", "telemetry/services.py", "copy_rows"),
    ("        host UPDATE (before: ORM)", "django/db/models/query.py", "update"),
    ("        commit (Atomic.__exit__)", "django/db/transaction.py", "__exit__"),
    ("        nudge (Redis SET NX, send_task)", "accounting/services/work_queue.py", "batches_nudge"),
    ("      finalize_response (+ expiry headers)", "rest_framework/views.py", "finalize_response"),
    ("      response rendering (JSON)", "rest_framework/response.py", "rendered_content"),
)


def _environ(body: bytes, secret: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/ingest/batches",
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


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="carbonledger_post_profile")
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--posts", type=int, default=400, help="POSTs per measured phase")
    parser.add_argument("--windows-per-batch", type=int, default=1)
    args = parser.parse_args()
    procs = base.Procs()
    try:
        return _run(args, procs)
    finally:
        procs.stop_all()


def _run(args, procs: base.Procs) -> int:
    import datetime as dt

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
    import logging

    # The seeded batches were "sent" minutes ago: every one would log a clock-skew warning.
    logging.getLogger("telemetry.services").setLevel(logging.ERROR)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    per_host = 3 * args.posts // args.hosts + 4  # warm-up, timed, profiled, query capture
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(seconds=per_host * args.windows_per_batch * base.WINDOW_S + 600)
    seeds = base._seed(args.hosts, start).hosts
    queues = [
        base._build_host_batches((s, start.timestamp(), 1, per_host, args.windows_per_batch, i, 0))
        for i, s in enumerate(seeds)
    ]
    connection.close()
    from config.wsgi import application

    cursor = [0] * len(seeds)

    def post(i: int) -> int:
        h = i % len(seeds)
        _, _, body = queues[h][cursor[h]]
        cursor[h] += 1
        status: list[str] = []
        result = application(_environ(body, seeds[h].secret), lambda s, headers, exc=None: status.append(s))
        b"".join(result)
        result.close()
        code = int(status[0].split()[0])
        if code != 202:
            raise RuntimeError(f"POST {i}: {status[0]}")
        return code

    i = 0
    for _ in range(2 * len(seeds)):  # warm-up: imports, caches, partitions, every host once
        post(i)
        i += 1
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        (backend,) = c.fetchone()
    redis_pid = procs.procs[0][1].pid

    # 1. Unprofiled CPU per POST.
    web0, pg0, r0, t0 = time.process_time(), _proc_cpu_s(backend), _proc_cpu_s(redis_pid), time.perf_counter()
    for _ in range(args.posts):
        post(i)
        i += 1
    web1, pg1, r1, t1 = time.process_time(), _proc_cpu_s(backend), _proc_cpu_s(redis_pid), time.perf_counter()
    n = args.posts
    gpu_windows = 8 * args.windows_per_batch
    print(f"\n{n} POSTs of {gpu_windows} GPU windows, unprofiled (CPU ms per POST):")
    print(f"  web (this process)     {1000 * (web1 - web0) / n:7.3f}")
    print(f"  PostgreSQL backend     {1000 * (pg1 - pg0) / n:7.3f}   (clock ticks of 10 ms: +-{1000 * 0.01 / n:.3f})")
    print(f"  redis-server           {1000 * (r1 - r0) / n:7.3f}")
    print(f"  wall per POST          {1000 * (t1 - t0) / n:7.3f}")

    # 2. The SQL of a POST: each statement's wall time seen by the client, averaged over POSTs.
    with CaptureQueriesContext(connection) as ctx:
        post(i)
        i += 1
    # execute_wrapper sees no BEGIN/COMMIT (Django issues them on the connection, not a cursor).
    sqls = [" ".join(q["sql"].split()) for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
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
            post(i)
        i += 1
    print(f"\nSQL of one POST: {len(ctx.captured_queries)} statements through Django, BEGIN and COMMIT included")
    print(f"\nstatements other than BEGIN/COMMIT (COPY goes around it), wall ms, mean of {rounds}")
    for sql, wall in zip(sqls, walls, strict=True):
        print(f"  {1000 * wall / rounds:6.3f}  {sql[:140]}")

    # 3. Profile.
    profiler = cProfile.Profile(time.process_time)  # CPU, not waits on PostgreSQL
    profiler.enable()
    for _ in range(n):
        post(i)
        i += 1
    profiler.disable()
    stats = pstats.Stats(profiler)
    table = stats.stats  # type: ignore[attr-defined]
    print(f"\ncProfile (CPU time) of {n} POSTs: cumulative CPU ms per POST (profiled, inflated; calls per POST)")
    found: dict[tuple[str, str], float] = {}
    for label, suffix, name in LAYERS:
        cum = calls = 0.0
        for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
            if func == name and filename.endswith(suffix):
                cum += ct
                calls += nc
        print(f"  {1000 * cum / n:7.3f}  {calls / n:5.2f}  {label}")
        found[name, suffix] = cum
    middleware = (
        found["get_response", "django/core/handlers/base.py"]
        - found["dispatch", "rest_framework/views.py"]
        - found["resolve", "django/urls/resolvers.py"]
    )
    print(f"  {1000 * middleware / n:7.3f}        middleware in all (get_response - dispatch - URL resolving)")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_callees("batch_ingest")
    print("\nbatch_ingest's callees (CPU s over all POSTs):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-3000:])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print("\nTop 25 by own time:")
    print("\n".join(line for line in out.getvalue().splitlines()[6:40] if line.strip()))
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
