"""Monthly report delivery for 100 teams (not a test; run by hand).

Seeds an organisation of ``--teams`` teams for one month (jobs with footprints, TeamDay rows,
``--members`` recipients per team, an admin for the roll-up), then plans the month and sends
every report (each team's and the roll-up) through Django's SMTP backend to a local aiosmtpd
server started here, as the ``reports.deliver`` task does: the report built from the ledger,
rendered once (text, HTML, PNG charts, CSV, PDF), one message per recipient. Prints the time
per report (build / render / send split) and in total. Target: the whole month under 60 s.

Before and after, in the same run: first ``--paired`` reports (default 30) are rendered in this
process both the previous way (commit 3f7f63d: charts saved with ``bbox_inches="tight"``, which
draws each figure twice, and a font setup per PDF) and the current way, alternating which goes
first, so both see the same load; ``--before-phase`` also sends the whole month the previous way
before sending it again the current way (two full runs: their wall times depend on the load).

    createdb -h 127.0.0.1 -U postgres cl_reports_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/cl_reports_bench DJANGO_DEBUG=true
    .venv/bin/python manage.py migrate
    .venv/bin/python benchmarks/reports.py --teams 100

The seeded organisation (slug ``--org``) is deleted and seeded again at each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import multiprocessing
import os
import random
import socket
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("CARBONLEDGER_SKIP_NUDGE", "true")

import django  # noqa: E402

django.setup()

from aiosmtpd.controller import Controller  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connections, transaction  # noqa: E402

from accounting import models as m  # noqa: E402
from accounting.selectors.report_deliveries import report_scopes_list  # noqa: E402
from accounting.services import report_delivery as svc  # noqa: E402

UTC = dt.UTC
KWH = 3.6e6
FAMILIES = ("llm", "moe", "recsys", "vision", "other")


class CountingHandler:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.bytes += len(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(*, slug: str, teams: int, jobs_per_team: int, members: int, month: dt.date, seed_: int) -> m.Organization:
    rng = random.Random(seed_)
    User = get_user_model()
    m.Job.objects.filter(org__slug=slug).delete()  # jobs protect their team and cluster
    m.Organization.objects.filter(slug=slug).delete()
    User.objects.filter(username__startswith=f"{slug}-").delete()
    days = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - month
    with transaction.atomic():
        org = m.Organization.objects.create(name=f"Bench {slug}", slug=slug)
        zone, _ = m.GridZone.objects.get_or_create(
            code="BENCH-FR",
            defaults={"name": "Bench France", "annual_intensity_g_per_kwh": 56.0, "source": m.FactorSource.OPERATOR},
        )
        site = m.Site.objects.create(org=org, name="Bench site", slug="bench", zone=zone, pue=1.3)
        cluster = m.Cluster.objects.create(site=site, name="bench", slug="bench")
        team_rows = m.Team.objects.bulk_create(
            [m.Team(org=org, name=f"Team {i:03d}", slug=f"team-{i:03d}") for i in range(teams)]
        )
        users = User.objects.bulk_create(
            [
                User(username=f"{slug}-u{i:03d}-{k}", email=f"u{i:03d}-{k}@{slug}.test")
                for i in range(teams)
                for k in range(members)
            ]
            + [User(username=f"{slug}-admin", email=f"admin@{slug}.test")]
        )
        m.Membership.objects.bulk_create(
            [m.Membership(user=u, org=org, team=team_rows[i // members]) for i, u in enumerate(users[:-1])]
            + [m.Membership(user=users[-1], org=org, team=None, role=m.Membership.Role.ADMIN)]
        )
        jobs, footprints = [], []
        teamday: dict[tuple[int, dt.date], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for t in team_rows:
            for j in range(jobs_per_team):
                start = dt.datetime.combine(month, dt.time(), tzinfo=UTC) + dt.timedelta(
                    hours=rng.uniform(0, days.days * 24 - 30)
                )
                jobs.append(
                    m.Job(
                        org=org,
                        cluster=cluster,
                        team=t,
                        scheduler_job_id=f"{t.slug}-{j}",
                        name=f"{t.slug}-job-{j}",
                        kind=m.Job.Kind.TRAINING,
                        family=rng.choice(FAMILIES),
                        status=rng.choice(("completed", "completed", "completed", "failed", "preempted")),
                        started_at=start,
                        ended_at=start + dt.timedelta(hours=rng.uniform(1, 24)),
                        units={"tokens": rng.uniform(1e8, 1e10)},
                        primary_unit="tokens",
                    )
                )
        jobs = m.Job.objects.bulk_create(jobs)
        for job in jobs:
            kwh = rng.uniform(5, 500)
            op, emb = kwh * 56.0 * 1.3, kwh * 8.0
            footprints.append(
                m.JobFootprint(
                    job=job,
                    energy_j=kwh * KWH,
                    gpu_energy_j=kwh * KWH * 0.7,
                    gpu_idle_energy_j=kwh * KWH * 0.08,
                    host_energy_j=kwh * KWH * 0.07,
                    facility_energy_j=kwh * KWH * 0.23,
                    co2e_operational_g=op,
                    co2e_embodied_g=emb,
                    co2e_low_g=(op + emb) * 0.9,
                    co2e_high_g=(op + emb) * 1.1,
                    device_hours=8 * 10.0,
                    measured_fraction=0.95,
                    is_final=True,
                    method_version="bench",
                )
            )
            acc = teamday[(job.team_id, job.started_at.date())]
            acc[0] += kwh * KWH
            acc[1] += kwh * KWH * 0.08
            acc[2] += op
            acc[3] += emb
        m.JobFootprint.objects.bulk_create(footprints)
        m.TeamDay.objects.bulk_create(
            [
                m.TeamDay(
                    org=org,
                    team_id=team_id,
                    site=site,
                    day=day,
                    energy_j=v[0],
                    gpu_idle_energy_j=v[1],
                    co2e_operational_g=v[2],
                    co2e_embodied_g=v[3],
                )
                for (team_id, day), v in teamday.items()
            ]
        )
    return org


def _as_before(before: bool = True) -> None:
    """Put back, in this process, how a report was rendered before the rendering was made
    cheaper (commit 3f7f63d): each chart saved with ``bbox_inches="tight"`` (matplotlib draws the
    figure twice: once to measure it, once to save it) and a new WeasyPrint font configuration
    for every PDF. Everything else (the report, the context, one render per report, SMTP) is the
    code under test, so before and after differ by exactly those two things. ``before`` False
    restores the current rendering."""
    import io

    import matplotlib.pyplot as plt
    from weasyprint.text.fonts import FontConfiguration

    from accounting.reports import charts, render

    def png_tight(fig) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=charts.DPI, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    charts._png = png_tight if before else _CURRENT["png"]
    render._font_config = FontConfiguration if before else _CURRENT["font_config"]


def _current_rendering() -> dict:
    from accounting.reports import charts, render

    return {"png": charts._png, "font_config": render._font_config}


_CURRENT: dict = {}


def _paired(*, org_id: int, month: dt.date, now: dt.datetime, scopes: list, n: int) -> None:
    """Render the parts of ``n`` reports (no sending) the previous way and the current way, in
    this one process, alternating which goes first: both measured under the same load. Prints
    the CPU and wall time of each."""
    from accounting.reports.message import report_parts_build

    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    report_parts_build(
        report=svc.report_build(org_id=org_id, team_id=scopes[0], month=month, now=now), dashboard_url=""
    )
    for i, scope in enumerate(scopes[:n]):
        for before in (True, False) if i % 2 == 0 else (False, True):
            _as_before(before)
            report = svc.report_build(org_id=org_id, team_id=scope, month=month, now=now)  # a fresh object: no caches
            wall, cpu = time.perf_counter(), time.process_time()
            report_parts_build(report=report, dashboard_url="")
            times[before].append((time.process_time() - cpu, time.perf_counter() - wall))
    _as_before(False)
    print(f"--- render only (text, HTML, charts, CSV, PDF), {len(times[True])} reports, one process, alternating:")
    for before, label in ((True, "before"), (False, "after ")):
        cpus = [c for c, _ in times[before]]
        walls = [w for _, w in times[before]]
        print(f"{label}: CPU per report {_stat(cpus)}; wall p50 {statistics.median(walls):.3f} s")
    b = statistics.mean(c for c, _ in times[True])
    a = statistics.mean(c for c, _ in times[False])
    print(f"render CPU per report: {b:.3f} s -> {a:.3f} s ({(1 - a / b) * 100:.0f} % less)")


def _deliver_chunk(job: tuple) -> list[tuple]:
    """In a worker process: deliver each report of the chunk; (scope, seconds, build, render,
    sent, CPU seconds of this process)."""
    org_id, month, now, scopes, before = job
    _as_before(before)
    phases: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[name] += time.perf_counter() - start

        return wrapper

    # Phase timers around the service's steps (build from the ledger, render; the rest is send).
    svc.report_build = timed("build", svc.report_build)
    svc.report_parts_build = timed("render", svc.report_parts_build)
    out = []
    for scope in scopes:
        phases.clear()
        t, cpu = time.perf_counter(), time.process_time()
        outcome = svc.report_scope_deliver(org_id=org_id, team_id=scope, month=month, now=now)
        took, cpu = time.perf_counter() - t, time.process_time() - cpu
        out.append((scope, took, phases["build"], phases["render"], outcome.sent, cpu))
        if outcome.sent == 0 or outcome.retry or outcome.failed:
            print(f"  report {scope}: {outcome}")
    connections.close_all()
    return out


def _stat(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    mean, p50 = statistics.mean(values), statistics.median(values)
    return f"mean {mean:.3f} s, p50 {p50:.3f} s, p95 {p95:.3f} s, max {ordered[-1]:.3f} s"


def _phase(*, label: str, before: bool, org_id: int, month: dt.date, now: dt.datetime, args, handler) -> dict:
    """Plan the month (its delivery rows) and send every report with ``args.workers`` forked
    processes; print the figures of the phase. Returns them."""
    received0, bytes0 = handler.messages, handler.bytes
    start = time.perf_counter()
    scopes = svc.report_month_plan(org_id=org_id, month=month, now=now)
    plan_s = time.perf_counter() - start
    # As beat fans out one reports.deliver per report over the worker processes: --workers
    # processes (forked here, each its own database connection) share the reports.
    connections.close_all()
    chunks = [scopes[i :: args.workers] for i in range(args.workers)]
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        jobs = [(org_id, month, now, c, before) for c in chunks]
        results = [r for part in pool.map(_deliver_chunk, jobs) for r in part]
    total = time.perf_counter() - start
    load = os.getloadavg()
    per_report = [r[1] for r in results]
    splits = [(r[2], r[3], r[1] - r[2] - r[3]) for r in results]
    sent = sum(r[4] for r in results)
    received = handler.messages - received0
    report_cpu = [r[5] for r in results]
    print(f"--- {label}")
    print(f"reports: {len(scopes)} ({args.teams} teams + the roll-up), sent {sent}, received {received}")
    print(f"message size: {(handler.bytes - bytes0) / max(received, 1) / 1024:.0f} KiB on average")
    print(f"plan (month closed check + delivery rows): {plan_s:.2f} s")
    print(f"per report ({args.workers} worker processes): {_stat(per_report)}")
    means = [statistics.mean(s[i] for s in splits) for i in range(3)]
    print(f"  build {means[0]:.3f} s, render (text, HTML, charts, CSV, PDF) {means[1]:.3f} s, send {means[2]:.3f} s")
    print(f"CPU per report (the sending process; PostgreSQL's share not included): {_stat(report_cpu)}")
    print(f"total (plan + every report built and sent): {total:.1f} s; {total / 60.0:.2f} x the 60 s target")
    print(
        f"CPU of all reports {sum(report_cpu):.1f} s over {args.workers} processes: "
        f"{sum(report_cpu) / args.workers:.1f} s of wall time on {args.workers} idle cores"
    )
    print(
        f"load average at the end of the phase: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min) on {os.cpu_count()} CPUs"
    )
    return {"scopes": scopes, "sent": sent, "received": received, "total": total, "cpu": sum(report_cpu)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--org", default="bench-reports")
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--jobs-per-team", type=int, default=30)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--month", default="2026-11")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="processes sending reports (Celery concurrency)")
    parser.add_argument(
        "--paired",
        type=int,
        default=30,
        help="reports rendered both ways in one process, alternating, before sending (0: none)",
    )
    parser.add_argument(
        "--before-phase",
        action="store_true",
        help="also send the whole month with the previous rendering first (a second full run, for comparison)",
    )
    args = parser.parse_args()
    month = dt.date.fromisoformat(f"{args.month}-01")
    now = dt.datetime.combine(month + dt.timedelta(days=32), dt.time(6), tzinfo=UTC).replace(day=2)

    t0 = time.perf_counter()
    org = seed(
        slug=args.org,
        teams=args.teams,
        jobs_per_team=args.jobs_per_team,
        members=args.members,
        month=month,
        seed_=args.seed,
    )
    print(f"seeded {args.teams} teams x {args.jobs_per_team} jobs in {time.perf_counter() - t0:.1f} s")

    handler = CountingHandler()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=64 << 20)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""

    # Imported once here, before the worker processes fork (as a warm Celery worker has them):
    # the phases compare rendering, not the first import of WeasyPrint in each process.
    import matplotlib.pyplot  # noqa: F401
    import weasyprint  # noqa: F401

    _CURRENT.update(_current_rendering())

    phases = []
    try:
        run = functools.partial(_phase, org_id=org.id, month=month, now=now, args=args, handler=handler)
        if args.paired:
            _paired(org_id=org.id, month=month, now=now, scopes=report_scopes_list(org_id=org.id), n=args.paired)
        if args.before_phase:
            phases.append(
                run(label="before (charts saved with bbox_inches='tight', a font setup per PDF)", before=True)
            )
            # The same month again from scratch: the ledger's rows and run of the first phase go.
            m.ReportDelivery.objects.filter(org=org, month=month).delete()
            m.ReportRun.objects.filter(org=org, month=month).delete()
        phases.append(run(label="after (one drawing pass per chart, one font setup per process)", before=False))
        scopes = phases[-1]["scopes"]
        # A second run sends nothing (the delivery ledger).
        again = time.perf_counter()
        resent = sum(svc.report_scope_deliver(org_id=org.id, team_id=s, month=month, now=now).sent for s in scopes)
        again_s = time.perf_counter() - again
    finally:
        controller.stop()

    if len(phases) == 2:
        b, a = phases
        print(
            f"before -> after: total {b['total']:.1f} s -> {a['total']:.1f} s, "
            f"CPU of all reports {b['cpu']:.1f} s -> {a['cpu']:.1f} s ({(1 - a['cpu'] / b['cpu']) * 100:.0f} % less)"
        )
    print(f"second run: {resent} sent in {again_s:.2f} s")
    ok = all(p["received"] == p["sent"] for p in phases) and resent == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
