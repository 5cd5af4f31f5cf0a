"""Monthly reports sent through a REAL SMTP server (aiosmtpd on a free 127.0.0.1 port, started
by the test) with Django's SMTP backend: the MIME tree the recipient gets, nothing sent twice,
a server refusing then accepting (retried, attempts and last error recorded), permanent
failures (recorded; a refused recipient flagged and skipped later), and one run through a real
Celery worker."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.conf import settings as django_settings
from django.core import signing

from accounting import models as m
from accounting.selectors.dashboard.jobs import EXPORT_COLUMNS
from accounting.services import report_delivery as svc
from tests.accounting.report_delivery_world import MONTH, SEND_AT, SmtpSink, free_port, world_build
from tests.integration.conftest import wait_for

Status = m.ReportDelivery.Status


def _smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10


@pytest.fixture
def sink(settings):
    server = SmtpSink().start()
    _smtp(settings, server.port)
    yield server
    server.stop()


@pytest.fixture
def world(db):
    return world_build()


def _tree(part, depth=0) -> list[str]:
    line = "  " * depth + part.get_content_type()
    if part.get_filename():
        line += f" {part.get_content_disposition()} {part.get_filename()}"
    if part["Content-ID"]:
        line += f" {part['Content-ID']}"
    lines = [line]
    if part.is_multipart():
        for child in part.iter_parts():
            lines += _tree(child, depth + 1)
    return lines


def _row(recipient: str, revision: int = 0) -> m.ReportDelivery:
    return m.ReportDelivery.objects.get(recipient=recipient, revision=revision)


def test_the_report_arrives_as_multipart_alternative_with_inline_charts_csv_and_pdf(world, sink):
    scopes = svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[world.alpha.id])
    outcome = svc.report_scope_deliver(org_id=world.org.id, team_id=scopes[0], month=MONTH, now=SEND_AT)
    assert outcome == svc.DeliverOutcome(sent=3)
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["alpha-leads@acme.test", "ana@acme.test", "ben@acme.test"]
    got = sink.to("ana@acme.test")[0]
    msg = got.message
    team = world.alpha.id
    assert _tree(msg) == [
        "multipart/mixed",
        "  multipart/alternative",
        "    text/plain",
        "    multipart/related",
        "      text/html",
        "      image/png inline energy-split.png <energy-split>",
        "      image/png inline carbon-by-family.png <carbon-by-family>",
        f"  text/csv attachment carbonledger-2026-11-team-{team}.csv",
        f"  application/pdf attachment carbonledger-2026-11-team-{team}.pdf",
    ]
    assert msg["Subject"] == "CarbonLedger report November 2026: Alpha"
    assert msg["To"] == "ana@acme.test"
    assert got.mail_from == "carbonledger@localhost"
    assert msg["Message-ID"] == _row("ana@acme.test").message_id
    assert msg["Auto-Submitted"] == "auto-generated"
    # RFC 2369 / RFC 8058 as received: ana's own one-click unsubscribe link.
    unsubscribe = msg["List-Unsubscribe"].strip()  # folded onto its own line: the URL is long
    base = f"<{django_settings.REPORTS_DASHBOARD_URL}/reports/unsubscribe/"
    assert re.fullmatch(re.escape(base) + r"[\w:-]+/>", unsubscribe), unsubscribe
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = unsubscribe.removeprefix(base).removesuffix("/>")
    assert signing.loads(token, salt=svc.UNSUBSCRIBE_SALT) == {"d": _row("ana@acme.test").pk}
    alternative, attachment_csv, attachment_pdf = msg.iter_parts()
    text, related = alternative.iter_parts()
    html, *images = related.iter_parts()
    assert related.get_param("type") == "text/html"
    html_body = html.get_content()
    for image in images:
        assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
        assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html_body
    assert "<script" not in html_body.lower()
    assert "Alpha" in text.get_content() and "http://localhost:8000/reports/2026-11/?team=" in text.get_content()
    rows = list(csv.reader(io.StringIO(attachment_csv.get_content())))
    assert rows[0] == list(EXPORT_COLUMNS)
    assert sorted(r[2] for r in rows[1:]) == ["alpha-finetune", "alpha-pretrain"]
    assert attachment_pdf.get_content().startswith(b"%PDF-")
    # Everything the recipient got is Alpha's: Beta's job is in none of the parts.
    for part in (text, html, attachment_csv):
        assert "beta-secret-recsys" not in part.get_content()
    row = _row("ana@acme.test")
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, SEND_AT, "")
    # A second run (re-planned, re-delivered) sends nothing.
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[world.alpha.id])
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=team, month=MONTH, now=SEND_AT) == (
        svc.DeliverOutcome()
    )
    assert len(sink.received) == 3


def test_a_server_refusing_then_accepting_is_retried_and_recorded(world, sink, settings):
    settings.REPORTS_RETRY_BACKOFF_S = 60.0
    sink.handler.data_replies = ["451 4.3.0 Mailbox busy, try again later"]
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[world.beta.id])
    first = svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=SEND_AT)
    assert first == svc.DeliverOutcome(sent=1, retry=1, retry_in_s=60.0)
    busy = _row("bea@acme.test")
    assert (busy.status, busy.attempts, busy.last_error, busy.next_attempt_at) == (
        "retry",
        1,
        "SMTPDataError: 451 4.3.0 Mailbox busy, try again later",
        SEND_AT + dt.timedelta(seconds=60),
    )
    assert [r.rcpt_tos for r in sink.received] == [["finance@acme.test"]]
    # Not due yet: nothing happens.
    early = SEND_AT + dt.timedelta(seconds=59)
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=early) == (
        svc.DeliverOutcome()
    )
    due = SEND_AT + dt.timedelta(seconds=60)
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=due) == (
        svc.DeliverOutcome(sent=1)
    )
    done = _row("bea@acme.test")
    assert (done.status, done.attempts, done.last_error, done.sent_at, done.next_attempt_at) == (
        "sent",
        2,
        "",
        due,
        None,
    )
    assert [r.rcpt_tos for r in sink.received] == [["finance@acme.test"], ["bea@acme.test"]]
    assert sink.to("bea@acme.test")[0].message["Message-ID"] == busy.message_id  # the same message, retried


def test_connection_refused_is_transient_until_the_server_is_up(world, settings):
    settings.REPORTS_RETRY_BACKOFF_S = 30.0
    port = free_port()  # nothing listens there yet
    _smtp(settings, port)
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[None])
    outcome = svc.report_scope_deliver(org_id=world.org.id, team_id=None, month=MONTH, now=SEND_AT)
    assert outcome == svc.DeliverOutcome(retry=2, retry_in_s=30.0)
    rows = m.ReportDelivery.objects.order_by("recipient")
    assert [(r.recipient, r.status, r.attempts, r.last_error) for r in rows] == [
        ("lead@acme.test", "retry", 1, "ConnectionRefusedError: [Errno 111] Connection refused"),
        ("root@acme.test", "retry", 1, "ConnectionRefusedError: [Errno 111] Connection refused"),
    ]
    # A second failure doubles the wait.
    again = SEND_AT + dt.timedelta(seconds=30)
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=None, month=MONTH, now=again) == (
        svc.DeliverOutcome(retry=2, retry_in_s=60.0)
    )
    assert {r.next_attempt_at for r in m.ReportDelivery.objects.all()} == {again + dt.timedelta(seconds=60)}
    server = SmtpSink(port).start()
    try:
        up = again + dt.timedelta(seconds=60)
        assert svc.report_scope_deliver(org_id=world.org.id, team_id=None, month=MONTH, now=up) == (
            svc.DeliverOutcome(sent=2)
        )
    finally:
        server.stop()
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["lead@acme.test", "root@acme.test"]
    assert {(r.status, r.attempts, r.last_error) for r in m.ReportDelivery.objects.all()} == {("sent", 3, "")}


def test_permanent_failures_are_recorded_and_a_refused_recipient_is_flagged(world, sink):
    sink.handler.rcpt_replies = {"bea@acme.test": "550 5.1.1 <bea@acme.test>: Recipient address rejected"}
    sink.handler.data_replies = ["554 5.7.1 Message rejected by policy"]
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[world.beta.id])
    outcome = svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=SEND_AT)
    assert outcome == svc.DeliverOutcome(failed=2)
    bea, finance = _row("bea@acme.test"), _row("finance@acme.test")
    assert (bea.status, bea.attempts, bea.last_error) == (
        "failed",
        1,
        "recipient refused: 550 5.1.1 <bea@acme.test>: Recipient address rejected",
    )
    assert (finance.status, finance.attempts, finance.last_error) == (
        "failed",
        1,
        "SMTPDataError: 554 5.7.1 Message rejected by policy",
    )
    assert list(m.BouncedAddress.objects.values_list("email", "smtp_code", "error")) == [
        ("bea@acme.test", 550, "recipient refused: 550 5.1.1 <bea@acme.test>: Recipient address rejected")
    ]
    assert sink.received == []
    # Failed rows are not retried; the flagged address is skipped from then on.
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=SEND_AT) == (
        svc.DeliverOutcome()
    )
    october = dt.date(2026, 10, 1)
    assert svc.report_deliveries_plan(org_id=world.org.id, team_id=world.beta.id, month=october) == 2
    sink.handler.rcpt_replies = {}
    outcome = svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=october, now=SEND_AT)
    assert outcome == svc.DeliverOutcome(sent=1, skipped=1)
    skipped = m.ReportDelivery.objects.get(month=october, recipient="bea@acme.test")
    assert (skipped.status, skipped.attempts) == ("skipped", 0)
    assert skipped.last_error.startswith("address flagged as bouncing since ")
    assert [r.rcpt_tos for r in sink.received] == [["finance@acme.test"]]


def test_transient_failures_give_up_after_the_last_attempt(world, sink, settings):
    settings.REPORTS_MAX_ATTEMPTS = 2
    settings.REPORTS_RETRY_BACKOFF_S = 0.0
    sink.handler.data_replies = ["421 4.7.0 Try again later", "452 4.3.1 Insufficient system storage"]
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[None])
    m.ReportDelivery.objects.filter(recipient="root@acme.test").delete()
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=None, month=MONTH, now=SEND_AT).retry == 1
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=None, month=MONTH, now=SEND_AT).failed == 1
    row = _row("lead@acme.test")
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at) == (
        "failed",
        2,
        "gave up after 2 attempts: SMTPDataError: 452 4.3.1 Insufficient system storage",
        None,
    )
    assert sink.received == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_the_report(processes):
    """reports.deliver through the broker to a prefork worker whose Django sends by SMTP to the
    server this test runs (committed data: the worker is another process)."""
    from workers.tasks import report_deliver

    world = world_build()
    server = SmtpSink().start()
    try:
        svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[None])
        processes.worker(
            "reports",
            env={
                "CARBONLEDGER_TEST_EMAIL_BACKEND": "smtp",
                "EMAIL_BACKEND": "smtp",
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(server.port),
            },
        )
        report_deliver.delay(world.org.id, None, MONTH.isoformat())
        wait_for(
            lambda: m.ReportDelivery.objects.filter(status=Status.SENT).count() == 2,
            timeout_s=90,
            what="the worker sending the roll-up",
        )
    finally:
        server.stop()
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["lead@acme.test", "root@acme.test"]
    assert {r.message["Subject"] for r in server.received} == {"CarbonLedger report November 2026: Whole organisation"}
