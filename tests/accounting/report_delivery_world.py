"""A small exact world for the report delivery tests: one organisation, two teams with jobs in
November 2026 (footprints and TeamDay rows), members, an admin, an opted-out member, an
inactive one, an extra recipient, and a local SMTP server (aiosmtpd) the tests send through."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import socket
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from accounting import models as m
from tests import factories as f

UTC = dt.UTC
KWH = 3.6e6
MONTH = dt.date(2026, 11, 1)
# The scheduled moment: 2 December 06:00 (UTC is the default report time zone).
SEND_AT = dt.datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


@dataclass
class World:
    org: m.Organization
    alpha: m.Team
    beta: m.Team
    site: m.Site
    alpha_jobs: list[m.Job]
    beta_jobs: list[m.Job]


def _job(cluster, team, *, sched: str, name: str, day: int, kwh: float, op_g: float, emb_g: float, status="completed"):
    start = dt.datetime(2026, 11, day, 8, 0, tzinfo=UTC)
    job = f.JobFactory(
        cluster=cluster,
        team=team,
        scheduler_job_id=sched,
        name=name,
        status=status,
        started_at=start,
        ended_at=start + dt.timedelta(hours=10),
        units={"tokens": 1.0e9},
        primary_unit="tokens",
    )
    m.JobFootprint.objects.create(
        job=job,
        energy_j=kwh * KWH,
        gpu_energy_j=kwh * KWH * 0.7,
        gpu_idle_energy_j=kwh * KWH * 0.1,
        host_energy_j=kwh * KWH * 0.1,
        facility_energy_j=kwh * KWH * 0.2,
        co2e_operational_g=op_g,
        co2e_embodied_g=emb_g,
        co2e_low_g=(op_g + emb_g) * 0.9,
        co2e_high_g=(op_g + emb_g) * 1.1,
        device_hours=80.0,
        measured_fraction=1.0,
        is_final=True,
        method_version="test-1",
    )
    m.TeamDay.objects.create(
        org=team.org,
        team=team,
        site=cluster.site,
        day=start.date(),
        energy_j=kwh * KWH,
        gpu_idle_energy_j=kwh * KWH * 0.1,
        co2e_operational_g=op_g,
        co2e_embodied_g=emb_g,
    )
    return job


def world_build() -> World:
    org = f.OrganizationFactory(name="Acme AI", slug="acme")
    alpha = f.TeamFactory(org=org, name="Alpha", slug="alpha", report_email="alpha-leads@acme.test")
    beta = f.TeamFactory(org=org, name="Beta", slug="beta")
    site = f.SiteFactory(org=org, name="Paris", slug="paris", zone=f.GridZoneFactory(code="FR", name="France"))
    cluster = f.ClusterFactory(site=site, name="c1", slug="c1")
    alpha_jobs = [
        _job(cluster, alpha, sched="a-1", name="alpha-pretrain", day=3, kwh=1200.0, op_g=60_000.0, emb_g=9_000.0),
        _job(cluster, alpha, sched="a-2", name="alpha-finetune", day=17, kwh=300.0, op_g=15_000.0, emb_g=2_000.0),
    ]
    beta_jobs = [
        _job(cluster, beta, sched="b-1", name="beta-secret-recsys", day=9, kwh=500.0, op_g=25_000.0, emb_g=4_000.0)
    ]
    # Fleet overhead (no team) of the month: in the roll-up only.
    m.TeamDay.objects.create(
        org=org, team=None, site=site, day=dt.date(2026, 11, 20), energy_j=100 * KWH, co2e_operational_g=5_000.0
    )
    users = {
        "ana": ("ana@acme.test", alpha, m.Membership.Role.MEMBER, True),
        "ben": ("Ben@Acme.test", alpha, m.Membership.Role.MEMBER, True),
        "olga": ("olga@acme.test", alpha, m.Membership.Role.MEMBER, True),  # opts out
        "ivan": ("ivan@acme.test", alpha, m.Membership.Role.MEMBER, False),  # inactive
        "bea": ("bea@acme.test", beta, m.Membership.Role.MEMBER, True),
        "root": ("root@acme.test", None, m.Membership.Role.ADMIN, True),
    }
    for username, (address, team, role, active) in users.items():
        user = f.UserFactory(username=username, email=address, is_active=active)
        f.MembershipFactory(user=user, org=org, team=team, role=role)
        if username == "olga":
            m.ReportOptOut.objects.create(user=user, org=org)
    m.ReportRecipient.objects.create(org=org, team=None, email="lead@acme.test", note="sustainability lead")
    m.ReportRecipient.objects.create(org=org, team=beta, email="finance@acme.test", note="finance")
    return World(org=org, alpha=alpha, beta=beta, site=site, alpha_jobs=alpha_jobs, beta_jobs=beta_jobs)


# --- a real SMTP server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    """Accepts everything, unless told to refuse: ``rcpt_replies`` by address (e.g. "550 5.1.1
    no such user"), ``data_replies`` for the next DATA commands in order ("451 4.3.0 ...")."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"


class SmtpSink:
    """aiosmtpd's Controller on 127.0.0.1:``port`` (its own thread and event loop)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, data_size_limit=64 << 20)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        try:
            self.controller.stop()
        except (AssertionError, asyncio.CancelledError, RuntimeError):
            pass

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]
