"""Monthly report delivery (accounting/services/report_delivery.py, selectors/report_deliveries.py):
recipients and scoping, the month-closed check, the schedule, exactly-once planning, forced
resends, revisions, the stale "sending" row, the management command and the beat entry.
The messages go through Django's locmem backend here; tests/integration/test_report_smtp.py
sends through a real SMTP server."""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
import zoneinfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from accounting import models as m
from accounting.domain.errors import InputError, StateError
from accounting.selectors import report_deliveries as sel
from accounting.selectors.reports import month_report_fingerprint
from accounting.services import report_delivery as svc
from telemetry.models import TelemetryBatch
from tests import factories as f
from tests.accounting.report_delivery_world import KWH, MONTH, SEND_AT, world_build

pytestmark = pytest.mark.django_db
UTC = dt.UTC
Status = m.ReportDelivery.Status


@pytest.fixture
def world():
    return world_build()


def _rows(org, **filters):
    return list(
        m.ReportDelivery.objects.filter(org=org, **filters)
        .order_by("team_id", "recipient", "revision")
        .values_list("team__name", "recipient", "revision", "status", "attempts")
    )


def _send_all(world, now=SEND_AT):
    for scope in svc.report_month_plan(org_id=world.org.id, month=MONTH, now=now):
        svc.report_scope_deliver(org_id=world.org.id, team_id=scope, month=MONTH, now=now)


# --- recipients ----------------------------------------------------------------------------


def test_team_recipients_are_members_team_address_and_extras_without_opt_outs(world):
    alpha = sel.report_recipients_list(org_id=world.org.id, team_id=world.alpha.id)
    assert [(r.email, r.source, r.bounced) for r in alpha] == [
        ("alpha-leads@acme.test", "team address", False),
        ("ana@acme.test", "member ana", False),
        ("ben@acme.test", "member ben", False),  # lower-cased; olga opted out, ivan is inactive
    ]
    beta = sel.report_recipients_list(org_id=world.org.id, team_id=world.beta.id)
    assert [(r.email, r.source) for r in beta] == [
        ("bea@acme.test", "member bea"),
        ("finance@acme.test", "extra (finance)"),
    ]
    rollup = sel.report_recipients_list(org_id=world.org.id, team_id=None)
    assert [(r.email, r.source) for r in rollup] == [
        ("lead@acme.test", "extra (sustainability lead)"),
        ("root@acme.test", "admin root"),
    ]


def test_a_flagged_address_is_listed_as_bouncing(world):
    m.BouncedAddress.objects.create(email="ana@acme.test", smtp_code=550, error="550 5.1.1 no such user")
    alpha = sel.report_recipients_list(org_id=world.org.id, team_id=world.alpha.id)
    assert [(r.email, r.bounced) for r in alpha] == [
        ("alpha-leads@acme.test", False),
        ("ana@acme.test", True),
        ("ben@acme.test", False),
    ]


# --- planning and exactly once -------------------------------------------------------------


def test_plan_creates_one_row_per_scope_and_recipient_once(world):
    scopes = svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT)
    assert scopes == [world.alpha.id, world.beta.id, None]
    expected = [
        ("Alpha", "alpha-leads@acme.test", 0, "pending", 0),
        ("Alpha", "ana@acme.test", 0, "pending", 0),
        ("Alpha", "ben@acme.test", 0, "pending", 0),
        ("Beta", "bea@acme.test", 0, "pending", 0),
        ("Beta", "finance@acme.test", 0, "pending", 0),
        (None, "lead@acme.test", 0, "pending", 0),
        (None, "root@acme.test", 0, "pending", 0),
    ]
    assert _rows(world.org) == expected
    run = m.ReportRun.objects.get(org=world.org, month=MONTH)
    assert (run.scopes, run.deliveries, run.planned_at) == (3, 7, SEND_AT)
    # Planning again (a second tick, a re-run of the command) adds nothing.
    assert svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT) == scopes
    assert _rows(world.org) == expected
    assert m.ReportRun.objects.count() == 1


def test_a_team_without_data_in_the_month_gets_no_report(world):
    idle = f.TeamFactory(org=world.org, name="Idle", slug="idle")
    f.MembershipFactory(user=f.UserFactory(username="ida", email="ida@acme.test"), org=world.org, team=idle)
    assert svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT) == [
        world.alpha.id,
        world.beta.id,
        None,
    ]
    assert not m.ReportDelivery.objects.filter(team=idle).exists()


def test_deliver_sends_each_recipient_its_scope_once(world):
    _send_all(world)
    assert sorted((msg.to[0], msg.subject) for msg in mail.outbox) == [
        ("alpha-leads@acme.test", "CarbonLedger report November 2026: Alpha"),
        ("ana@acme.test", "CarbonLedger report November 2026: Alpha"),
        ("bea@acme.test", "CarbonLedger report November 2026: Beta"),
        ("ben@acme.test", "CarbonLedger report November 2026: Alpha"),
        ("finance@acme.test", "CarbonLedger report November 2026: Beta"),
        ("lead@acme.test", "CarbonLedger report November 2026: Whole organisation"),
        ("root@acme.test", "CarbonLedger report November 2026: Whole organisation"),
    ]
    rows = m.ReportDelivery.objects.filter(org=world.org)
    assert {(r.status, r.attempts, r.sent_at, r.last_error) for r in rows} == {("sent", 1, rows[0].sent_at, "")}
    for row in rows:
        assert (
            row.message_id
            and row.message_id == next(x for x in mail.outbox if x.to == [row.recipient]).extra_headers["Message-ID"]
        )
    # A second run (the task redelivered, the command run again) sends nothing.
    mail.outbox.clear()
    _send_all(world, now=SEND_AT + dt.timedelta(hours=1))
    for scope in (world.alpha.id, world.beta.id, None):
        assert svc.report_scope_deliver(org_id=world.org.id, team_id=scope, month=MONTH, now=SEND_AT) == (
            svc.DeliverOutcome()
        )
    assert mail.outbox == []
    assert m.ReportDelivery.objects.filter(org=world.org).count() == 7


def test_a_teams_report_never_carries_another_teams_jobs(world):
    _send_all(world)
    alpha_msgs = [x for x in mail.outbox if "Alpha" in x.subject]
    assert len(alpha_msgs) == 3
    for msg in alpha_msgs:
        html = msg.alternatives[0].content
        csv_name, csv_text, _ = msg.attachments[0]
        for text in (msg.body, html, csv_text):
            assert "beta-secret-recsys" not in text
            assert "Beta" not in text
        assert "alpha-pretrain" in csv_text and "alpha-finetune" in csv_text
        assert csv_name == f"carbonledger-2026-11-team-{world.alpha.id}.csv"
    rollup = next(x for x in mail.outbox if x.to == ["root@acme.test"])
    assert "beta-secret-recsys" in rollup.attachments[0][1]


def test_fingerprint_sent_is_the_reports(world):
    _send_all(world)
    report = svc.report_build(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=SEND_AT)
    expected = month_report_fingerprint(report)
    assert set(m.ReportDelivery.objects.filter(team=world.alpha).values_list("fingerprint", flat=True)) == {expected}
    assert report.totals.energy_j == 1500.0 * KWH
    assert report.totals.co2e_g == 86_000.0


# --- month closed --------------------------------------------------------------------------


def _batch(world, *, status, start=dt.datetime(2026, 11, 10, 0, 0, tzinfo=UTC)):
    host = f.HostFactory(cluster=m.Cluster.objects.get(site=world.site))
    return TelemetryBatch.objects.create(
        host=host,
        batch_id=uuid.uuid4(),
        received_at=start,
        first_start=start,
        last_end=start + dt.timedelta(minutes=5),
        first_seq=1,
        last_seq=2,
        gpu_window_count=1,
        host_window_count=1,
        gpu_energy_j=1.0,
        host_energy_j=1.0,
        status=status,
    )


def test_month_closed_check(world):
    check = sel.month_closed_check(org_id=world.org.id, month=MONTH, now=SEND_AT)
    assert check == sel.MonthClosed(closed=True, reasons=(), failed_batches=0)
    early = sel.month_closed_check(org_id=world.org.id, month=MONTH, now=dt.datetime(2026, 11, 30, 23, tzinfo=UTC))
    assert early.reasons == ("the month ends 2026-12-01 00:00 UTC",)
    _batch(world, status=TelemetryBatch.Status.DONE)
    _batch(world, status=TelemetryBatch.Status.FAILED)
    pending = _batch(world, status=TelemetryBatch.Status.PENDING)
    _batch(world, status=TelemetryBatch.Status.PENDING, start=dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # December
    m.FactorChange.objects.create(
        reason="PUE corrected",
        factor_type="pue",
        factor_key="paris",
        affects_from=dt.datetime(2026, 11, 15, tzinfo=UTC),
        affects_to=dt.datetime(2026, 11, 16, tzinfo=UTC),
    )
    m.FactorChange.objects.create(  # another month: does not hold November
        reason="October PUE",
        factor_type="pue",
        factor_key="paris",
        affects_from=dt.datetime(2026, 10, 1, tzinfo=UTC),
        affects_to=dt.datetime(2026, 11, 1, tzinfo=UTC),
    )
    check = sel.month_closed_check(org_id=world.org.id, month=MONTH, now=SEND_AT)
    assert check == sel.MonthClosed(
        closed=False,
        reasons=(
            "1 telemetry batch(es) of the month not yet attributed",
            "1 factor change(s) affecting the month wait for their recompute",
        ),
        failed_batches=1,
    )
    with pytest.raises(StateError, match="2026-11 is not closed yet: 1 telemetry batch"):
        svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT)
    assert not m.ReportDelivery.objects.exists() and not m.ReportRun.objects.exists()
    pending.status = TelemetryBatch.Status.DONE
    pending.save()
    m.FactorChange.objects.update(recompute_status="done")
    assert sel.month_closed_check(org_id=world.org.id, month=MONTH, now=SEND_AT).closed


# --- schedule ------------------------------------------------------------------------------


def test_due_month_in_the_organisations_time_zone(settings):
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    # 06:00 in Paris on 2 December is 05:00 UTC.
    assert sel.report_due_month(now=dt.datetime(2026, 12, 2, 4, 59, tzinfo=UTC), tz=paris) == (
        dt.date(2026, 10, 1),
        dt.datetime(2026, 11, 2, 5, 0, tzinfo=UTC),
    )
    assert sel.report_due_month(now=dt.datetime(2026, 12, 2, 5, 0, tzinfo=UTC), tz=paris) == (
        dt.date(2026, 11, 1),
        dt.datetime(2026, 12, 2, 5, 0, tzinfo=UTC),
    )
    settings.REPORTS_SEND_DAY = 5
    settings.REPORTS_SEND_TIME = dt.time(9, 30)
    assert sel.report_due_month(now=dt.datetime(2027, 1, 5, 9, 30, tzinfo=UTC), tz=zoneinfo.ZoneInfo("UTC")) == (
        dt.date(2026, 12, 1),
        dt.datetime(2027, 1, 5, 9, 30, tzinfo=UTC),
    )


def test_runs_due_plans_each_month_once_at_the_organisations_moment(world):
    m.ReportSchedule.objects.create(org=world.org, time_zone="America/New_York")  # 06:00 EST = 11:00 UTC
    before = dt.datetime(2026, 12, 2, 10, 59, tzinfo=UTC)
    # October has no data: its run plans nothing but is recorded (not planned again).
    assert svc.report_runs_due(now=before) == []
    assert list(m.ReportRun.objects.values_list("month", "scopes")) == [(dt.date(2026, 10, 1), 0)]
    at = dt.datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert svc.report_runs_due(now=at) == [
        (world.org.id, world.alpha.id, MONTH),
        (world.org.id, world.beta.id, MONTH),
        (world.org.id, None, MONTH),
    ]
    assert svc.report_runs_due(now=at + dt.timedelta(minutes=15)) == []
    assert m.ReportDelivery.objects.count() == 7


def test_runs_due_waits_for_the_month_to_close(world):
    pending = _batch(world, status=TelemetryBatch.Status.PENDING)
    assert svc.report_runs_due(now=SEND_AT) == []
    assert not m.ReportRun.objects.filter(month=MONTH).exists()
    pending.status = TelemetryBatch.Status.DONE
    pending.save()
    assert len(svc.report_runs_due(now=SEND_AT + dt.timedelta(minutes=15))) == 3


def test_beat_schedule_entry(settings):
    import workers.tasks  # noqa: F401 - registers the tasks as the worker's autodiscovery does
    from workers.app import app

    entry = app.conf.beat_schedule["send-monthly-reports"]
    assert entry == {"task": "reports.tick", "schedule": settings.REPORTS_TICK_S}
    assert settings.REPORTS_TICK_S == 900.0
    assert (settings.REPORTS_SEND_DAY, settings.REPORTS_SEND_TIME) == (2, dt.time(6, 0))
    assert "reports.tick" in app.tasks and "reports.deliver" in app.tasks


def test_tick_task_fans_out_one_deliver_per_report(world, django_capture_on_commit_callbacks, monkeypatch):
    from workers import tasks

    sent: list[tuple] = []
    monkeypatch.setattr(tasks.report_deliver, "delay", lambda *args: sent.append(args))
    monkeypatch.setattr(tasks.timezone, "now", lambda: SEND_AT)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reports_tick() == {"planned": 3, "nudged": 3, "revised": 0}
    assert sent == [
        (world.org.id, world.alpha.id, "2026-11-01"),
        (world.org.id, world.beta.id, "2026-11-01"),
        (world.org.id, None, "2026-11-01"),
    ]
    # The task itself, called as the worker does: sends the team's report.
    result = tasks.report_deliver.apply(args=(world.org.id, world.alpha.id, "2026-11-01")).get()
    assert result == {"sent": 3, "retry": 0, "failed": 0, "skipped": 0, "uncertain": 0, "retry_in_s": None}
    assert sorted(x.to[0] for x in mail.outbox) == ["alpha-leads@acme.test", "ana@acme.test", "ben@acme.test"]
    # A tick later: nothing new is planned; rows still pending for longer than a tick are re-nudged.
    sent.clear()
    monkeypatch.setattr(tasks.timezone, "now", lambda: SEND_AT + dt.timedelta(seconds=901))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reports_tick() == {"planned": 0, "nudged": 2, "revised": 0}
    assert sent == [(world.org.id, world.beta.id, "2026-11-01"), (world.org.id, None, "2026-11-01")]


# --- a worker lost mid-send ----------------------------------------------------------------


def test_a_row_left_sending_becomes_uncertain_and_is_not_resent(world, settings):
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[world.beta.id])
    m.ReportDelivery.objects.filter(recipient="bea@acme.test").update(
        status=Status.SENDING, claimed_at=SEND_AT, message_id="<lost@localhost>"
    )
    soon = SEND_AT + dt.timedelta(seconds=settings.REPORTS_SENDING_TIMEOUT_S - 1)
    assert svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=soon).sent == 1
    later = SEND_AT + dt.timedelta(seconds=settings.REPORTS_SENDING_TIMEOUT_S + 1)
    outcome = svc.report_scope_deliver(org_id=world.org.id, team_id=world.beta.id, month=MONTH, now=later)
    assert outcome == svc.DeliverOutcome(uncertain=1)
    row = m.ReportDelivery.objects.get(recipient="bea@acme.test")
    assert (row.status, row.message_id) == ("uncertain", "<lost@localhost>")
    assert row.last_error.startswith("interrupted while sending (worker lost)")
    assert [x.to for x in mail.outbox] == [["finance@acme.test"]]


# --- forced resend -------------------------------------------------------------------------


def test_forced_resend_is_a_new_revision_logged_with_who_and_why(world):
    _send_all(world)
    mail.outbox.clear()
    admin = m.Membership.objects.get(user__username="root").user
    row = svc.report_delivery_resend(
        org_id=world.org.id,
        team_id=world.alpha.id,
        month=MONTH,
        recipient=" Ana@Acme.test ",
        reason="mail lost in the recipient's spam filter",
        actor=admin,
    )
    assert (row.recipient, row.revision, row.status, row.forced_by) == ("ana@acme.test", 1, "pending", "root")
    event = m.AuditEvent.objects.get(action="report.resend")
    assert (event.actor_user, event.actor_label, event.object_type, event.object_id, event.reason) == (
        admin,
        "root",
        "report_delivery",
        str(row.pk),
        "mail lost in the recipient's spam filter",
    )
    assert event.after == {"team": world.alpha.id, "month": "2026-11-01", "recipient": "ana@acme.test", "revision": 1}
    svc.report_scope_deliver(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=SEND_AT)
    assert [(x.to, x.subject) for x in mail.outbox] == [
        (["ana@acme.test"], "CarbonLedger report November 2026: Alpha (re-sent)")
    ]
    assert _rows(world.org, team=world.alpha, recipient="ana@acme.test") == [
        ("Alpha", "ana@acme.test", 0, "sent", 1),
        ("Alpha", "ana@acme.test", 1, "sent", 1),
    ]


def test_forced_resend_refuses_outsiders_blank_reasons_and_bouncing_addresses(world):
    _send_all(world)
    before = (m.ReportDelivery.objects.count(), m.AuditEvent.objects.count())
    kwargs = {"org_id": world.org.id, "team_id": world.alpha.id, "month": MONTH, "actor": "ops"}
    with pytest.raises(InputError, match=re.escape("recipient: bea@acme.test is not a recipient of this report")):
        svc.report_delivery_resend(recipient="bea@acme.test", reason="asked", **kwargs)
    with pytest.raises(InputError, match="reason: a forced resend needs a reason"):
        svc.report_delivery_resend(recipient="ana@acme.test", reason="  ", **kwargs)
    m.BouncedAddress.objects.create(email="ben@acme.test", smtp_code=550, error="550 no such user")
    with pytest.raises(StateError, match=re.escape("ben@acme.test is flagged as bouncing")):
        svc.report_delivery_resend(recipient="ben@acme.test", reason="asked", **kwargs)
    assert (m.ReportDelivery.objects.count(), m.AuditEvent.objects.count()) == before


# --- revisions -----------------------------------------------------------------------------


def test_revised_after_sending_is_detected_and_resent_as_a_revision(world):
    _send_all(world)
    mail.outbox.clear()
    later = SEND_AT + dt.timedelta(days=3)
    sent_fp = m.ReportDelivery.objects.filter(team=world.alpha).values_list("fingerprint", flat=True).first()
    assert svc.report_revisions_check(org_id=world.org.id, month=MONTH, now=later) == []
    # A recompute lowers one of Alpha's days (a corrected PUE): Alpha and the roll-up change.
    m.TeamDay.objects.filter(team=world.alpha, day=dt.date(2026, 11, 3)).update(co2e_operational_g=48_000.0)
    assert svc.report_revisions_check(org_id=world.org.id, month=MONTH, now=later) == [world.alpha.id, None]
    new_fp = month_report_fingerprint(
        svc.report_build(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=later)
    )
    assert new_fp != sent_fp
    alpha_rows = m.ReportDelivery.objects.filter(team=world.alpha)
    assert {(r.fingerprint, r.current_fingerprint, r.checked_at, r.revised_after_sending) for r in alpha_rows} == {
        (sent_fp, new_fp, later, True)
    }
    assert not any(r.revised_after_sending for r in m.ReportDelivery.objects.filter(team=world.beta))
    assert sel.report_delivery_counts(org_id=world.org.id, month=MONTH) == {"sent": 7, "revised": 5}
    # Re-send Alpha's as a revision: one new row per recipient, subject says so.
    assert svc.report_revision_plan(org_id=world.org.id, month=MONTH, team_id=world.alpha.id, now=later) == 3
    assert svc.report_revision_plan(org_id=world.org.id, month=MONTH, team_id=world.alpha.id, now=later) == 0
    svc.report_scope_deliver(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=later)
    assert sorted((x.to[0], x.subject) for x in mail.outbox) == [
        (a, "CarbonLedger report November 2026: Alpha (revised)")
        for a in ("alpha-leads@acme.test", "ana@acme.test", "ben@acme.test")
    ]
    revised = m.ReportDelivery.objects.get(team=world.alpha, recipient="ana@acme.test", revision=1)
    assert (revised.reason, revised.fingerprint, revised.revised_after_sending) == (
        svc.REVISED_REASON,
        new_fp,
        False,
    )
    assert sel.report_delivery_counts(org_id=world.org.id, month=MONTH) == {"sent": 7, "revised": 2}


# --- the management command ----------------------------------------------------------------


def test_command_send_status_resend(world, monkeypatch):
    monkeypatch.setattr(svc.timezone, "now", lambda: SEND_AT)
    out = io.StringIO()
    call_command("reports", "send", "--month", "2026-11", "--team", "alpha", stdout=out)
    assert out.getvalue().splitlines() == [
        "Alpha: sent 3, retry 0, failed 0, skipped 0, uncertain 0",
    ]
    out = io.StringIO()
    call_command("reports", "send", "--month", "2026-11", stdout=out)
    assert out.getvalue().splitlines() == [
        "Alpha: sent 0, retry 0, failed 0, skipped 0, uncertain 0",
        "Beta: sent 2, retry 0, failed 0, skipped 0, uncertain 0",
        "Whole organisation: sent 2, retry 0, failed 0, skipped 0, uncertain 0",
    ]
    assert len(mail.outbox) == 7
    out = io.StringIO()
    call_command(
        "reports",
        "resend",
        "--month",
        "2026-11",
        "--team",
        "beta",
        "--recipient",
        "finance@acme.test",
        "--reason",
        "auditor asked for a copy",
        stdout=out,
    )
    assert out.getvalue().splitlines()[-1] == "Beta: sent 1, retry 0, failed 0, skipped 0, uncertain 0"
    event = m.AuditEvent.objects.get(action="report.resend")
    assert event.reason == "auditor asked for a copy"
    assert event.actor_label.endswith("(manage.py reports resend)")
    out = io.StringIO()
    call_command("reports", "status", "--month", "2026-11", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Acme AI 2026-11: closed; sent 8"
    assert "  Beta finance@acme.test r1 sent attempts 1 (forced by " in lines[-3]
    with pytest.raises(CommandError, match="--month must be YYYY-MM"):
        call_command("reports", "send", "--month", "2026-13")
    with pytest.raises(CommandError, match="no team 'gamma'"):
        call_command("reports", "send", "--month", "2026-11", "--team", "gamma")
    with pytest.raises(CommandError, match="reason: a forced resend needs a reason"):
        call_command(
            "reports", "resend", "--month", "2026-11", "--team", "beta", "--recipient", "x@y.z", "--reason", ""
        )


# --- recipients: services, audit, admin ----------------------------------------------------


def test_recipient_changes_are_audited_and_a_rejected_one_changes_nothing(world):
    admin = m.Membership.objects.get(user__username="root").user
    row = svc.report_recipient_add(
        org_id=world.org.id, team_id=world.alpha.id, email=" CFO@Acme.test ", note="finance", actor=admin
    )
    assert (row.email, row.note, row.team_id) == ("cfo@acme.test", "finance", world.alpha.id)
    event = m.AuditEvent.objects.get()
    assert (event.action, event.object_type, event.object_id, event.actor_label) == (
        "recipient.change",
        "report_recipients",
        str(world.alpha.id),
        "root",
    )
    assert (event.before, event.after) == ({"extra": []}, {"extra": ["cfo@acme.test"]})
    before = (m.ReportRecipient.objects.count(), m.AuditEvent.objects.count())
    with pytest.raises(StateError, match=re.escape("cfo@acme.test already receives this report")):
        svc.report_recipient_add(org_id=world.org.id, team_id=world.alpha.id, email="cfo@acme.test", actor=admin)
    with pytest.raises(InputError, match="email: 'not-an-address' is not an e-mail address"):
        svc.report_recipient_add(org_id=world.org.id, team_id=world.alpha.id, email="not-an-address", actor=admin)
    other_team = f.TeamFactory(name="Elsewhere", slug="elsewhere")
    with pytest.raises(InputError, match=f"team: team {other_team.id} is not in organisation {world.org.id}"):
        svc.report_recipient_add(org_id=world.org.id, team_id=other_team.id, email="x@acme.test", actor=admin)
    assert (m.ReportRecipient.objects.count(), m.AuditEvent.objects.count()) == before
    svc.report_recipient_remove(recipient_id=row.pk, actor=admin)
    removed = m.AuditEvent.objects.order_by("-id").first()
    assert (removed.before, removed.after) == ({"extra": ["cfo@acme.test"]}, {"extra": []})
    # The roll-up's extras are audited under the organisation.
    svc.report_recipient_add(org_id=world.org.id, team_id=None, email="cso@acme.test", actor=admin)
    assert m.AuditEvent.objects.order_by("-id").first().object_id == f"org:{world.org.id}"


def test_opt_out_and_bounce_clear_are_audited(world):
    ana = m.Membership.objects.get(user__username="ana").user
    assert svc.report_opt_out_set(user_id=ana.id, org_id=world.org.id, opted_out=True, actor=ana) is True
    assert svc.report_opt_out_set(user_id=ana.id, org_id=world.org.id, opted_out=True, actor=ana) is False
    assert "ana@acme.test" not in {
        r.email for r in sel.report_recipients_list(org_id=world.org.id, team_id=world.alpha.id)
    }
    event = m.AuditEvent.objects.get()
    assert (event.object_id, event.before, event.after) == (f"user:{ana.id}", {"opted_out": False}, {"opted_out": True})
    m.BouncedAddress.objects.create(email="ben@acme.test", smtp_code=550, error="550 no such user")
    svc.bounced_address_clear(email="Ben@acme.test", actor="ops")
    assert not m.BouncedAddress.objects.exists()
    cleared = m.AuditEvent.objects.order_by("-id").first()
    assert (cleared.object_id, cleared.actor_label, cleared.after) == ("bounce:ben@acme.test", "ops", None)
    with pytest.raises(StateError, match=re.escape("ben@acme.test is not flagged")):
        svc.bounced_address_clear(email="ben@acme.test", actor="ops")


def test_admin_adds_and_removes_recipients_through_the_services(world, client):
    root = f.UserFactory(username="superroot", is_staff=True, is_superuser=True)
    client.force_login(root)
    response = client.post(
        "/admin/accounting/reportrecipient/add/",
        {"org": world.org.id, "team": world.beta.id, "email": "Auditor@Acme.test", "note": "auditor"},
    )
    assert response.status_code == 302
    row = m.ReportRecipient.objects.get(email="auditor@acme.test")
    assert m.AuditEvent.objects.get().actor_label == "superroot"
    response = client.post(f"/admin/accounting/reportrecipient/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not m.ReportRecipient.objects.filter(email="auditor@acme.test").exists()
    assert m.AuditEvent.objects.count() == 2
    assert client.get("/admin/accounting/reportdelivery/").status_code == 200
    response = client.post("/admin/accounting/reportschedule/add/", {"org": world.org.id, "time_zone": "Mars/Olympus"})
    assert response.status_code == 200 and "is not an IANA time zone" in response.content.decode()
    assert not m.ReportSchedule.objects.exists()


# --- the deliveries page -------------------------------------------------------------------


def test_deliveries_page_lists_what_was_sent_scoped_to_the_viewer(world, client):
    _send_all(world)
    m.ReportDelivery.objects.filter(recipient="finance@acme.test").update(
        status=Status.FAILED, last_error="SMTPDataError: 554 5.7.1 Message rejected by policy", sent_at=None
    )
    m.TeamDay.objects.filter(team=world.alpha, day=dt.date(2026, 11, 3)).update(co2e_operational_g=1.0)
    svc.report_revisions_check(org_id=world.org.id, month=MONTH, now=SEND_AT)
    client.force_login(m.Membership.objects.get(user__username="root").user)
    body = client.get("/reports/deliveries/").content.decode()
    assert body.count("<tr>") == 8  # the header and seven deliveries
    assert "November 2026: 1 failed, 6 sent; <strong>5 revised after sending</strong>" in body
    assert "SMTPDataError: 554 5.7.1 Message rejected by policy" in body
    assert "lead@acme.test" in body and "Whole organisation" in body
    # A member sees their team's deliveries only: no other team's, no roll-up's.
    client.force_login(m.Membership.objects.get(user__username="bea").user)
    body = client.get("/reports/deliveries/?month=2026-11").content.decode()
    assert body.count("<tr>") == 3
    assert "finance@acme.test" in body and "ana@acme.test" not in body and "root@acme.test" not in body
    body = client.get("/reports/deliveries/?month=november").content.decode()
    assert "Ignored filter <strong>Month</strong> (“november”): not a month (YYYY-MM); the latest is shown." in body
    assert body.count("<tr>") == 3
    client.logout()
    assert client.get("/reports/deliveries/").status_code == 302


# --- settings: strict parsing of the e-mail and schedule variables --------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMAIL_USE_TLS": "true", "EMAIL_USE_SSL": "true"}, "EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive"),
        ({"EMAIL_BACKEND": "smpt"}, "EMAIL_BACKEND='smpt': use one of smtp, console, file, locmem"),
        ({"EMAIL_HOST_USER": "mailer"}, "EMAIL_HOST_USER and EMAIL_HOST_PASSWORD go together"),
        ({"EMAIL_PORT": "70000"}, "EMAIL_PORT=70000 is not a TCP port"),
        ({"CARBONLEDGER_REPORTS_SEND_TIME": "6am"}, "CARBONLEDGER_REPORTS_SEND_TIME='6am' is not HH:MM"),
        ({"CARBONLEDGER_REPORTS_SEND_DAY": "31"}, "CARBONLEDGER_REPORTS_SEND_DAY must be 1..28"),
        ({"CARBONLEDGER_REPORTS_TIME_ZONE": "Europe/Pariss"}, "'Europe/Pariss' is not an IANA time zone"),
    ],
)
def test_settings_refuse_malformed_mail_and_schedule_variables(env, message):
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "CARBONLEDGER_REPORTS_"))}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=Path(__file__).resolve().parents[2],
        env={**base, "DJANGO_DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr.splitlines()[-1]


def test_settings_accept_smtp_over_tls_with_credentials():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "CARBONLEDGER_REPORTS_"))},
        "DJANGO_DEBUG": "true",
        "EMAIL_BACKEND": "smtp",
        "EMAIL_HOST": "smtp.example.org",
        "EMAIL_PORT": "465",
        "EMAIL_USE_SSL": "true",
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": "s3cret",
        "CARBONLEDGER_REPORTS_TIME_ZONE": "Europe/Paris",
        "CARBONLEDGER_REPORTS_SEND_TIME": "07:30",
    }
    code = (
        "from config import settings as s; print(s.EMAIL_BACKEND, s.EMAIL_PORT, s.EMAIL_USE_SSL, s.EMAIL_USE_TLS,"
        " s.REPORTS_TIME_ZONE, s.REPORTS_SEND_TIME, s.REPORTS_SEND_DAY)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "465",
        "True",
        "False",
        "Europe/Paris",
        "07:30:00",
        "2",
    ], result.stderr


def test_an_unexpected_error_while_sending_releases_the_claims(world, monkeypatch):
    svc.report_month_plan(org_id=world.org.id, month=MONTH, now=SEND_AT, scopes=[world.alpha.id])

    def broken(*args, **kwargs):
        raise ValueError("a bug in the message")

    monkeypatch.setattr(svc, "report_message_build", broken)
    with pytest.raises(ValueError, match="a bug in the message"):
        svc.report_scope_deliver(org_id=world.org.id, team_id=world.alpha.id, month=MONTH, now=SEND_AT)
    assert {(r[3], r[4]) for r in _rows(world.org)} == {("pending", 0)}
    assert mail.outbox == []


def test_command_revise_sends_the_revised_reports_only(world, monkeypatch):
    monkeypatch.setattr(svc.timezone, "now", lambda: SEND_AT)
    call_command("reports", "send", "--month", "2026-11", stdout=io.StringIO())
    mail.outbox.clear()
    m.TeamDay.objects.filter(team=world.beta).update(co2e_embodied_g=5_000.0)
    out = io.StringIO()
    call_command("reports", "revise", "--month", "2026-11", stdout=out)
    assert out.getvalue().splitlines() == [
        "Beta: 2 revised report(s) queued",
        "Whole organisation: 2 revised report(s) queued",
        "Beta: sent 2, retry 0, failed 0, skipped 0, uncertain 0",
        "Whole organisation: sent 2, retry 0, failed 0, skipped 0, uncertain 0",
    ]
    assert sorted((x.to[0], x.subject) for x in mail.outbox) == [
        ("bea@acme.test", "CarbonLedger report November 2026: Beta (revised)"),
        ("finance@acme.test", "CarbonLedger report November 2026: Beta (revised)"),
        ("lead@acme.test", "CarbonLedger report November 2026: Whole organisation (revised)"),
        ("root@acme.test", "CarbonLedger report November 2026: Whole organisation (revised)"),
    ]
    out = io.StringIO()
    call_command("reports", "revise", "--month", "2026-11", stdout=out)
    assert out.getvalue() == ""
