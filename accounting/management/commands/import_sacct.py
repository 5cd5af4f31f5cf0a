"""Import finished (or running) Slurm jobs from ``sacct`` into the ledger's job table.

    sacct -a -P -X --starttime 2026-11-01 \
          --format=JobID,JobName,User,Account,State,Start,End,Elapsed,AllocTRES,ConsumedEnergyRaw,NodeList \
          > sacct.txt
    manage.py import_sacct sacct.txt --cluster paris/hpc-a [--timezone Europe/Paris] [--team-map acct=slug]

Pipe-separated (``-P``); a header line is recognised and used to find the columns, otherwise
the columns are taken in the order above. Steps (``123.batch``, ``123.extern``, ``123.0``)
are skipped: the allocation line carries the job's TRES. Idempotent on the Slurm job id:
an imported job is not duplicated, an ended one is not changed. Lines that cannot be
imported are listed at the end with their line number and reason.

Allocations: sacct names nodes and a GPU count, not GPU indices. When every node's share of
the GPUs equals the number of GPUs the agent has reported on that host (a whole-node job),
those devices are allocated; otherwise the job is imported without device allocations and
the GPU count, nodes and Slurm's ConsumedEnergy are kept in ``model_meta["slurm"]`` (the
agent's process -> job mapping still attributes its telemetry).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import zoneinfo
from dataclasses import dataclass, field

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from accounting.domain.errors import InputError
from accounting.models import Cluster, Device, Host, Job, Team
from accounting.services.allocations import AllocationSpec
from accounting.services.jobs import job_end, job_register

COLUMNS = [
    "JobID",
    "JobName",
    "User",
    "Account",
    "State",
    "Start",
    "End",
    "Elapsed",
    "AllocTRES",
    "ConsumedEnergyRaw",
    "NodeList",
]
JOB_ID = re.compile(r"^\d+(?:_\d+|_\[[^\]]*\])?(?:\+\d+)?$")
STEP = re.compile(r"^[^.]+\.[A-Za-z0-9_]+$")
STATE_MAP = {
    "COMPLETED": Job.Status.COMPLETED,
    "FAILED": Job.Status.FAILED,
    "TIMEOUT": Job.Status.FAILED,
    "NODE_FAIL": Job.Status.FAILED,
    "OUT_OF_MEMORY": Job.Status.FAILED,
    "BOOT_FAIL": Job.Status.FAILED,
    "DEADLINE": Job.Status.FAILED,
    "CANCELLED": Job.Status.CANCELLED,
    "PREEMPTED": Job.Status.PREEMPTED,
    "REQUEUED": Job.Status.PREEMPTED,
    "RUNNING": Job.Status.RUNNING,
    "SUSPENDED": Job.Status.RUNNING,
}


class LineError(ValueError):
    pass


def expand_hostlist(expr: str) -> list[str]:
    """Slurm hostlist -> names: ``gpu-[01-03,07],cpu1`` -> gpu-01 gpu-02 gpu-03 gpu-07 cpu1."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", expr):
        match = re.fullmatch(r"(.*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            if "-" in item:
                lo, hi = item.split("-", 1)
                if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
                    raise LineError(f"bad host range {item!r} in NodeList")
                hosts.extend(f"{prefix}{n:0{len(lo)}d}{suffix}" for n in range(int(lo), int(hi) + 1))
            elif item.isdigit():
                hosts.append(f"{prefix}{item}{suffix}")
            else:
                raise LineError(f"bad host {item!r} in NodeList")
    return hosts


def parse_elapsed_s(text: str) -> float:
    """``[D-]HH:MM:SS`` or ``MM:SS`` (sacct Elapsed) -> seconds."""
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 2:
        parts = [0, *parts]
    if len(parts) != 3:
        raise LineError(f"bad Elapsed {text!r}")
    hours, minutes, seconds = parts
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def parse_tres(text: str) -> dict[str, str]:
    """``billing=16,cpu=16,gres/gpu:a100=4,mem=64G,node=1`` -> {key: value}."""
    out: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise LineError(f"bad AllocTRES item {item!r}")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def tres_gpus(tres: dict[str, str]) -> int:
    """GPU count: ``gres/gpu`` when present, else the sum of typed ``gres/gpu:<type>`` entries."""
    if "gres/gpu" in tres:
        return int(tres["gres/gpu"])
    return sum(int(v) for k, v in tres.items() if k.startswith("gres/gpu:"))


@dataclass
class Row:
    line_no: int
    job_id: str
    name: str
    user: str
    account: str
    state: str
    start: dt.datetime
    end: dt.datetime | None
    elapsed_s: float
    gpus: int
    tres: dict[str, str]
    consumed_energy_j: float | None
    nodes: list[str]


@dataclass
class Report:
    created: int = 0
    existing: int = 0
    ended: int = 0
    steps_skipped: int = 0
    pending_skipped: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Import Slurm jobs from `sacct -P --format=JobID,JobName,User,Account,State,Start,End,Elapsed,AllocTRES,"
        "ConsumedEnergyRaw,NodeList` output (idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="sacct output file, or - for stdin")
        parser.add_argument("--cluster", required=True, help="Cluster id or site-slug/cluster-slug")
        parser.add_argument("--timezone", default="UTC", help="Time zone sacct printed Start/End in (default UTC)")
        parser.add_argument(
            "--team-map",
            action="append",
            default=[],
            metavar="ACCOUNT=TEAM",
            help="Slurm account -> team slug (default: the account name is the team slug)",
        )
        parser.add_argument("--default-team", help="Team slug for accounts with no team (else the line is rejected)")
        parser.add_argument("--kind", choices=[c.value for c in Job.Kind], default=Job.Kind.TRAINING)
        parser.add_argument("--family", choices=[c.value for c in Job.Family], default=Job.Family.OTHER)

    def handle(self, *args, **options) -> None:
        cluster = self._cluster(options["cluster"])
        try:
            tz = zoneinfo.ZoneInfo(options["timezone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"--timezone {options['timezone']!r} is not a known time zone")
        team_map: dict[str, str] = {}
        for item in options["team_map"]:
            if "=" not in item:
                raise CommandError(f"--team-map {item!r}: expected ACCOUNT=TEAM")
            account, slug = item.split("=", 1)
            team_map[account] = slug
        teams = {t.slug: t for t in Team.objects.filter(org=cluster.site.org)}
        if options["default_team"] and options["default_team"] not in teams:
            raise CommandError(f"--default-team {options['default_team']!r} is not a team of {cluster.site.org.slug}")

        stream = sys.stdin if options["path"] == "-" else open(options["path"], encoding="utf-8")
        with stream:
            lines = stream.read().splitlines()
        report = Report()
        columns = COLUMNS
        for line_no, line in enumerate(tqdm(lines, desc="sacct", unit="line", file=sys.stderr, disable=None), start=1):
            if not line.strip():
                continue
            fields = line.split("|")
            if fields[0] == "JobID":
                missing = [c for c in COLUMNS if c not in fields]
                if missing:
                    raise CommandError(f"line {line_no}: header lacks {', '.join(missing)}")
                columns = fields
                continue
            try:
                row = self._parse(line_no, fields, columns, tz)
                if row is None:
                    report.steps_skipped += 1
                    continue
                if row.state == "PENDING":
                    report.pending_skipped += 1
                    continue
                slug = team_map.get(row.account, row.account) if row.account else ""
                team = teams.get(slug) or teams.get(options["default_team"] or "")
                if team is None:
                    raise LineError(f"no team for account {row.account!r} (use --team-map or --default-team)")
                self._import(
                    row, cluster=cluster, team=team, kind=options["kind"], family=options["family"], report=report
                )
            except (LineError, InputError) as exc:
                report.rejected.append((line_no, str(exc), line[:200]))
        self._print_report(report)

    @staticmethod
    def _cluster(ref: str) -> Cluster:
        clusters = Cluster.objects.select_related("site", "site__org")
        if ref.isdigit():
            found = list(clusters.filter(pk=int(ref)))
        elif "/" in ref:
            site_slug, slug = ref.split("/", 1)
            found = list(clusters.filter(site__slug=site_slug, slug=slug))
        else:
            found = list(clusters.filter(slug=ref))
        if len(found) != 1:
            raise CommandError(f"--cluster {ref!r}: {'ambiguous, use site/cluster' if found else 'not found'}")
        return found[0]

    @staticmethod
    def _parse(line_no: int, fields: list[str], columns: list[str], tz: zoneinfo.ZoneInfo) -> Row | None:
        if len(fields) != len(columns):
            raise LineError(f"expected {len(columns)} fields, got {len(fields)}")
        value = dict(zip(columns, fields, strict=True))
        job_id = value["JobID"].strip()
        if STEP.match(job_id):
            return None
        if not JOB_ID.match(job_id):
            raise LineError(f"bad JobID {job_id!r}")
        state = value["State"].split()[0] if value["State"].strip() else ""
        if state == "PENDING":
            return Row(
                line_no,
                job_id,
                "",
                "",
                "",
                "PENDING",
                dt.datetime.min.replace(tzinfo=dt.UTC),
                None,
                0.0,
                0,
                {},
                None,
                [],
            )
        if state not in STATE_MAP:
            raise LineError(f"unknown State {value['State']!r}")

        def when(name: str) -> dt.datetime | None:
            text = value[name].strip()
            if text in ("", "Unknown", "None"):
                return None
            try:
                return dt.datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(dt.UTC)
            except ValueError:
                raise LineError(f"bad {name} {text!r}")

        start = when("Start")
        if start is None:
            raise LineError("no Start time")
        end = when("End")
        if STATE_MAP[state] not in (Job.Status.RUNNING,) and end is None:
            raise LineError(f"state {state} without an End time")
        if end is not None and end < start:
            raise LineError("End before Start")
        try:
            tres = parse_tres(value["AllocTRES"])
            gpus = tres_gpus(tres)
            elapsed_s = parse_elapsed_s(value["Elapsed"]) if value["Elapsed"].strip() else 0.0
        except ValueError as exc:
            raise LineError(str(exc))
        energy_text = value["ConsumedEnergyRaw"].strip()
        try:
            energy = float(energy_text) if energy_text else None
        except ValueError:
            raise LineError(f"bad ConsumedEnergyRaw {energy_text!r}")
        # Slurm prints 0 (or a huge sentinel) when no energy plugin measured the job.
        if energy is not None and not (0 < energy < 1e18):
            energy = None
        node_text = value["NodeList"].strip()
        nodes = expand_hostlist(node_text) if node_text not in ("", "None assigned") else []
        return Row(
            line_no,
            job_id,
            value["JobName"],
            value["User"],
            value["Account"],
            state,
            start,
            end,
            elapsed_s,
            gpus,
            tres,
            energy,
            nodes,
        )

    @staticmethod
    def _whole_node_allocation(*, cluster: Cluster, row: Row) -> list[AllocationSpec]:
        if not row.nodes or row.gpus <= 0 or row.gpus % len(row.nodes):
            return []
        per_node = row.gpus // len(row.nodes)
        specs: list[AllocationSpec] = []
        for hostname in row.nodes:
            host = Host.objects.filter(cluster=cluster, hostname=hostname).first()
            if host is None:
                return []
            indices = sorted(
                Device.objects.filter(host=host)
                .exclude(uuid__startswith="pending:")
                .exclude(uuid__startswith="MIG-")
                .values_list("index", flat=True)
            )
            if len(indices) != per_node:
                return []
            specs.append(AllocationSpec(host=hostname, gpus=tuple(indices)))
        return specs

    def _import(self, row: Row, *, cluster: Cluster, team: Team, kind: str, family: str, report: Report) -> None:
        slurm_meta = {
            "gpus": row.gpus,
            "nodes": row.nodes,
            "elapsed_s": row.elapsed_s,
            "alloc_tres": row.tres,
            "consumed_energy_j": row.consumed_energy_j,
            "state": row.state,
        }
        with transaction.atomic():
            registration = job_register(
                org=cluster.site.org,
                cluster=cluster,
                scheduler_job_id=row.job_id,
                team=team,
                kind=kind,
                family=family,
                name=row.name[:300],
                username=row.user[:150],
                started_at=row.start,
                model_meta={"slurm": slurm_meta},
                allocation=self._whole_node_allocation(cluster=cluster, row=row),
            )
            if registration.created:
                report.created += 1
            else:
                report.existing += 1
            status = STATE_MAP[row.state]
            if status != Job.Status.RUNNING:
                _job, changed = job_end(job=registration.job, status=status, ended_at=row.end)
                report.ended += int(changed)

    def _print_report(self, report: Report) -> None:
        self.stdout.write(
            f"imported {report.created} new job(s), {report.existing} already known, {report.ended} ended; "
            f"skipped {report.steps_skipped} step line(s) and {report.pending_skipped} pending job(s); "
            f"rejected {len(report.rejected)} line(s)"
        )
        for line_no, reason, text in report.rejected:
            self.stdout.write(f"  line {line_no}: {reason}: {text}")
