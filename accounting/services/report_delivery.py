"""Monthly report delivery, exactly once per (organisation, team or roll-up, month, recipient).

The delivery ledger (accounting.models.ReportDelivery) is the truth: rows are created before
anything is sent (``report_deliveries_plan``), and a row is claimed (pending -> sending, in a
locked update) before its message goes to the SMTP server, so a re-run, a second beat tick or a
task message delivered twice (acks_late) finds nothing left to send. A row left "sending" by a
worker that died mid-transaction is marked "uncertain" after REPORTS_SENDING_TIMEOUT_S, never
resent on its own: only an admin's forced resend (``report_delivery_resend``, audited) does.

SMTP outcomes: 2xx sent; 4xx or a refused / dropped connection is transient (retry with
exponential backoff up to REPORTS_MAX_ATTEMPTS); 5xx is permanent (failed), and a 5xx refusal
of the recipient (RCPT TO) also flags the address (BouncedAddress): later reports skip it.

A recompute that changes a sent month's figures changes the report's fingerprint
(``month_report_fingerprint``): ``report_revisions_check`` records it on the sent rows (the
deliveries page says "revised after sending") and ``report_revision_plan`` queues the revised
report as the next revision for those recipients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from accounting.domain.errors import InputError, StateError
from accounting.models import (
    AuditEvent,
    BouncedAddress,
    Organization,
    ReportDelivery,
    ReportOptOut,
    ReportRecipient,
    ReportRun,
    ReportScopeOptOut,
    Team,
    TeamDay,
)
from accounting.reports.message import ReportParts, report_message_build, report_parts_build
from accounting.selectors.access import SESSION_SCOPE, Principal
from accounting.selectors.report_deliveries import (
    latest_delivery_ids,
    month_closed_check,
    month_first,
    month_next,
    report_due_month,
    report_recipients_list,
    report_scopes_list,
    report_time_zone,
    scope_opted_out_set,
    scope_q,
)
from accounting.selectors.reports import MonthReport, month_report, month_report_fingerprint
from accounting.services.audit import actor_label, audit_record

log = logging.getLogger(__name__)

Status = ReportDelivery.Status
RETRY_BACKOFF_MAX_S = 3600.0
REVISED_REASON = "revised after sending: the month's figures changed"
# An unsubscribe link (signed with SECRET_KEY, this salt) is honoured this long after sending:
# a year and a month, so last year's same-month report still unsubscribes.
UNSUBSCRIBE_SALT = "carbonledger.reports.unsubscribe"
UNSUBSCRIBE_MAX_AGE_S = 400 * 86400


# --- planning ------------------------------------------------------------------------------


def _scope_has_data(*, org_id: int, team_id: int | None, month: dt.date) -> bool:
    qs = TeamDay.objects.filter(org_id=org_id, day__gte=month, day__lt=month_next(month), energy_j__gt=0)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs.exists()


def report_deliveries_plan(*, org_id: int, team_id: int | None, month: dt.date) -> int:
    """Create revision 0 of the month's report for every current recipient of the scope who
    has no row yet (existing rows, whatever their status, are kept: nothing is sent twice).
    Returns the rows created."""
    month = month_first(month)
    rows = [
        ReportDelivery(org_id=org_id, team_id=team_id, month=month, recipient=r.email, revision=0)
        for r in report_recipients_list(org_id=org_id, team_id=team_id)
    ]
    have = set(
        ReportDelivery.objects.filter(scope_q(team_id), org_id=org_id, month=month).values_list("recipient", flat=True)
    )
    new = [row for row in rows if row.recipient not in have]
    created = ReportDelivery.objects.bulk_create(new, ignore_conflicts=True)
    return len(created)


def report_month_plan(
    *, org_id: int, month: dt.date, now: dt.datetime, scopes: list[int | None] | None = None
) -> list[int | None]:
    """Plan the month's reports of an organisation: each team with ledger data in the month,
    and the organisation roll-up (``scopes``: those only, team ids and None for the roll-up).
    Refused (StateError) while the month is not closed. Returns the scopes to deliver."""
    month = month_first(month)
    check = month_closed_check(org_id=org_id, month=month, now=now)
    if not check.closed:
        raise StateError(f"{month:%Y-%m} is not closed yet: " + "; ".join(check.reasons))
    whole = scopes is None
    wanted = report_scopes_list(org_id=org_id) if scopes is None else scopes
    planned: list[int | None] = []
    created = 0
    with transaction.atomic():
        for scope in wanted:
            if not _scope_has_data(org_id=org_id, team_id=scope, month=month):
                continue
            created += report_deliveries_plan(org_id=org_id, team_id=scope, month=month)
            planned.append(scope)
        if whole:
            ReportRun.objects.get_or_create(
                org_id=org_id,
                month=month,
                defaults={"planned_at": now, "scopes": len(planned), "deliveries": created},
            )
    if check.failed_batches:
        log.warning(
            "reports %s org %d: %d telemetry batch(es) failed attribution and are not in the figures",
            f"{month:%Y-%m}",
            org_id,
            check.failed_batches,
        )
    return planned


def report_runs_due(*, now: dt.datetime) -> list[tuple[int, int | None, dt.date]]:
    """Beat's monthly run: for each organisation whose send moment (REPORTS_SEND_DAY at
    REPORTS_SEND_TIME in its time zone) has passed and whose last month has no run yet, plan
    the month once it is closed (a month not closed yet is tried again at the next tick).
    Returns the scopes (org, team or None, month) to deliver."""
    due: list[tuple[int, int | None, dt.date]] = []
    for org_id in Organization.objects.order_by("id").values_list("id", flat=True):
        month, due_at = report_due_month(now=now, tz=report_time_zone(org_id=org_id))
        if now < due_at or ReportRun.objects.filter(org_id=org_id, month=month).exists():
            continue
        try:
            scopes = report_month_plan(org_id=org_id, month=month, now=now)
        except StateError as exc:
            log.info("reports org %d: %s", org_id, exc)
            continue
        due.extend((org_id, scope, month) for scope in scopes)
    return due


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverOutcome:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    uncertain: int = 0
    retry_in_s: float | None = None  # when the earliest row to retry is due


def report_principal(*, org_id: int, team_id: int | None) -> Principal:
    """A principal that sees exactly one report's scope: its team, or its organisation whole."""
    if team_id is not None:
        return Principal(scope=SESSION_SCOPE, team_ids=frozenset({team_id}))
    return Principal(scope=SESSION_SCOPE, admin_org_ids=frozenset({org_id}))


def report_build(*, org_id: int, team_id: int | None, month: dt.date, now: dt.datetime) -> MonthReport:
    return month_report(
        scope=report_principal(org_id=org_id, team_id=team_id), month=month, team_id=team_id, today=now.date()
    )


def report_dashboard_url(*, month: dt.date, team_id: int | None) -> str:
    path = reverse("dashboard:report-month", args=[month.year, month.month])
    query = f"?team={team_id}" if team_id is not None else ""
    return f"{settings.REPORTS_DASHBOARD_URL}{path}{query}"


def _mark_stale_sending(*, org_id: int, team_id: int | None, month: dt.date, now: dt.datetime) -> int:
    before = now - dt.timedelta(seconds=settings.REPORTS_SENDING_TIMEOUT_S)
    return ReportDelivery.objects.filter(
        scope_q(team_id), org_id=org_id, month=month, status=Status.SENDING, claimed_at__lt=before
    ).update(
        status=Status.UNCERTAIN,
        last_error="interrupted while sending (worker lost): the message may or may not have left; "
        "resend with `manage.py reports resend` if the recipient did not get it",
    )


def _claim(*, org_id: int, team_id: int | None, month: dt.date, now: dt.datetime) -> tuple[list[ReportDelivery], int]:
    """Claim the scope's rows that are due (pending, retry due, or skipped for a bounce that
    may have been cleared): each becomes "sending" with a Message-ID, in one locked update.
    Rows whose address is flagged become (or stay) "skipped". Returns (claimed, skipped)."""
    due = Q(status=Status.PENDING) | Q(status=Status.RETRY, next_attempt_at__lte=now) | Q(status=Status.SKIPPED)
    with transaction.atomic():
        rows = list(
            ReportDelivery.objects.select_for_update(skip_locked=True)
            .filter(scope_q(team_id), due, org_id=org_id, month=month)
            .order_by("recipient", "revision")
        )
        bounced = {b.email: b for b in BouncedAddress.objects.filter(email__in=[r.recipient for r in rows])}
        unsubscribed = scope_opted_out_set(org_id=org_id, team_id=team_id)
        claimed, skipped = [], 0
        for row in rows:
            flag = bounced.get(row.recipient)
            if row.recipient in unsubscribed:
                skipped += 1
                if row.status != Status.SKIPPED:
                    row.status = Status.SKIPPED
                    row.last_error = "unsubscribed from this report"
                    row.save(update_fields=["status", "last_error"])
                continue
            if flag is not None:
                skipped += 1
                if row.status != Status.SKIPPED:
                    row.status = Status.SKIPPED
                    row.last_error = f"address flagged as bouncing since {flag.flagged_at:%Y-%m-%d}: {flag.error}"
                    row.save(update_fields=["status", "last_error"])
                continue
            row.status = Status.SENDING
            row.claimed_at = now
            row.message_id = row.message_id or make_msgid(idstring="report", domain=DNS_NAME)
            row.save(update_fields=["status", "claimed_at", "message_id"])
            claimed.append(row)
    return claimed, skipped


@dataclass(frozen=True)
class SmtpFailure:
    transient: bool
    bounce: bool  # the server refused the recipient for good
    code: int | None
    text: str


def smtp_failure_classify(exc: BaseException) -> SmtpFailure | None:
    """What an exception raised while sending means for the ledger; None: not an SMTP or
    connection failure (a bug: let it raise)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (None, b""))
        reply_text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        text = f"{code} {reply_text}".strip()
        permanent = code is not None and 500 <= code < 600
        return SmtpFailure(transient=not permanent, bounce=permanent, code=code, text=f"recipient refused: {text}")
    if isinstance(exc, smtplib.SMTPResponseException):  # sender, data, helo, connect, auth
        error = exc.smtp_error
        answer = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        permanent = 500 <= exc.smtp_code < 600
        return SmtpFailure(
            transient=not permanent,
            bounce=False,
            code=exc.smtp_code,
            text=f"{type(exc).__name__}: {exc.smtp_code} {answer}".strip(),
        )
    if isinstance(exc, OSError):  # refused, reset, timed out, server disconnected (SMTPException)
        return SmtpFailure(transient=True, bounce=False, code=None, text=f"{type(exc).__name__}: {exc}")
    return None


def _backoff_s(attempts: int) -> float:
    return float(min(settings.REPORTS_RETRY_BACKOFF_S * 2 ** max(attempts - 1, 0), RETRY_BACKOFF_MAX_S))


def _subject_note(row: ReportDelivery) -> str:
    if row.revision == 0:
        return ""
    return "re-sent" if row.forced_by else "revised"


def report_scope_deliver(
    *,
    org_id: int,
    team_id: int | None,
    month: dt.date,
    now: dt.datetime | None = None,
    clock: Callable[[], dt.datetime] = timezone.now,
) -> DeliverOutcome:
    """Send the due rows of one report (organisation, team or None, month): the report is
    built and rendered once, then one message per recipient through one SMTP connection.
    Sent and failure times are read from ``clock`` as they happen, or are all ``now``."""
    month = month_first(month)
    if now is not None:  # a caller's instant (tests, a replay) stands for every timestamp
        fixed = now

        def clock() -> dt.datetime:
            return fixed

    now = clock()
    uncertain = _mark_stale_sending(org_id=org_id, team_id=team_id, month=month, now=now)
    rows, skipped = _claim(org_id=org_id, team_id=team_id, month=month, now=now)
    if not rows:
        return DeliverOutcome(skipped=skipped, uncertain=uncertain)
    try:
        report = report_build(org_id=org_id, team_id=team_id, month=month, now=now)
        fingerprint = month_report_fingerprint(report)
        parts = report_parts_build(report=report, dashboard_url=report_dashboard_url(month=month, team_id=team_id))
    except BaseException:
        # Nothing left: the claims go back so the next run (or the sweeper) tries again.
        ReportDelivery.objects.filter(pk__in=[r.pk for r in rows], status=Status.SENDING).update(
            status=Status.PENDING, claimed_at=None
        )
        raise
    counts = {"sent": 0, "retry": 0, "failed": 0}
    retry_at: list[dt.datetime] = []
    connection = get_connection(fail_silently=False)
    try:
        for row in rows:
            try:
                msg = report_message_build(
                    parts=dataclasses.replace(parts, subject=_subject_note_subject(parts, row)),
                    to=[row.recipient],
                    message_id=row.message_id,
                    unsubscribe_url=report_unsubscribe_url(delivery=row),
                )
                row.attempts += 1
                connection.send_messages([msg])
            except Exception as exc:
                failure = smtp_failure_classify(exc)
                if failure is None:
                    # Not a delivery failure (a bug): this row and those not tried yet go back to
                    # pending, attempts unchanged, for the next run once it is fixed.
                    ReportDelivery.objects.filter(
                        pk__in=[r.pk for r in rows[rows.index(row) :]], status=Status.SENDING
                    ).update(status=Status.PENDING, claimed_at=None)
                    raise
                connection.close()  # the next message opens a fresh connection
                _record_failure(row=row, failure=failure, now=clock())
                if row.status == Status.RETRY and row.next_attempt_at is not None:
                    retry_at.append(row.next_attempt_at)
                counts["retry" if row.status == Status.RETRY else "failed"] += 1
                continue
            sent_at = clock()
            row.status = Status.SENT
            row.sent_at = sent_at
            row.last_error = ""
            row.next_attempt_at = None
            row.fingerprint = row.current_fingerprint = fingerprint
            row.checked_at = sent_at
            row.save(
                update_fields=[
                    "status",
                    "attempts",
                    "sent_at",
                    "last_error",
                    "next_attempt_at",
                    "fingerprint",
                    "current_fingerprint",
                    "checked_at",
                ]
            )
            counts["sent"] += 1
    finally:
        connection.close()
    retry_in_s = max((min(retry_at) - now).total_seconds(), 0.0) if retry_at else None
    return DeliverOutcome(skipped=skipped, uncertain=uncertain, retry_in_s=retry_in_s, **counts)


def _subject_note_subject(parts: ReportParts, row: ReportDelivery) -> str:
    note = _subject_note(row)
    return f"{parts.subject} ({note})" if note else parts.subject


def _record_failure(*, row: ReportDelivery, failure: SmtpFailure, now: dt.datetime) -> None:
    row.last_error = failure.text[:2000]
    row.claimed_at = None
    if failure.transient and row.attempts < settings.REPORTS_MAX_ATTEMPTS:
        row.status = Status.RETRY
        row.next_attempt_at = now + dt.timedelta(seconds=_backoff_s(row.attempts))
    else:
        row.status = Status.FAILED
        row.next_attempt_at = None
        if failure.transient:
            row.last_error = f"gave up after {row.attempts} attempts: {row.last_error}"[:2000]
    if failure.bounce:
        BouncedAddress.objects.get_or_create(
            email=row.recipient, defaults={"smtp_code": failure.code or 550, "error": failure.text[:2000]}
        )
    row.save(update_fields=["status", "attempts", "last_error", "claimed_at", "next_attempt_at"])
    log.warning(
        "report %s to %s (r%d): %s (%s)", f"{row.month:%Y-%m}", row.recipient, row.revision, row.status, failure.text
    )


# --- forced resends and revisions ----------------------------------------------------------


def _next_revision(*, org_id: int, team_id: int | None, month: dt.date, recipient: str) -> int:
    top = ReportDelivery.objects.filter(scope_q(team_id), org_id=org_id, month=month, recipient=recipient).aggregate(
        r=Max("revision")
    )["r"]
    return 0 if top is None else top + 1


def report_delivery_resend(
    *, org_id: int, team_id: int | None, month: dt.date, recipient: str, reason: str, actor: object
) -> ReportDelivery:
    """Force the month's report of a scope to one recipient again, as the recipient's next
    revision; who and why are kept on the row and in the audit log. Only an address that
    received (or was due) this report, or is a current recipient, can be named: a resend never
    takes a team's figures to someone outside it. A bouncing address is refused."""
    month = month_first(month)
    recipient = recipient.strip().lower()
    reason = reason.strip()
    if not reason:
        raise InputError("reason", "a forced resend needs a reason (it is logged)")
    known = ReportDelivery.objects.filter(scope_q(team_id), org_id=org_id, month=month, recipient=recipient).exists()
    current = {r.email for r in report_recipients_list(org_id=org_id, team_id=team_id)}
    if not known and recipient not in current:
        raise InputError("recipient", f"{recipient} is not a recipient of this report")
    flag = BouncedAddress.objects.filter(email=recipient).first()
    if flag is not None:
        raise StateError(
            f"{recipient} is flagged as bouncing since {flag.flagged_at:%Y-%m-%d} ({flag.error}); "
            "remove the flag (admin) first"
        )
    if recipient in scope_opted_out_set(org_id=org_id, team_id=team_id):
        raise StateError(f"{recipient} unsubscribed from this report; only they can subscribe again")
    label = actor_label(actor)
    with transaction.atomic():
        row = ReportDelivery.objects.create(
            org_id=org_id,
            team_id=team_id,
            month=month,
            recipient=recipient,
            revision=_next_revision(org_id=org_id, team_id=team_id, month=month, recipient=recipient),
            reason=reason[:500],
            forced_by=label,
        )
        audit_record(
            action=AuditEvent.Action.REPORT_RESEND,
            object_type="report_delivery",
            object_id=row.pk,
            org=org_id,
            actor=actor,
            after={
                "team": team_id,
                "month": month,
                "recipient": recipient,
                "revision": row.revision,
            },
            reason=reason,
        )
    return row


def report_revisions_check(*, org_id: int, month: dt.date, now: dt.datetime) -> list[int | None]:
    """Re-fingerprint each scope of the month that has sent rows and record it on them
    (current_fingerprint, checked_at). Returns the scopes where a recipient's latest delivery
    was sent with other figures than the month has now (a sent revision settles it)."""
    month = month_first(month)
    rows = list(ReportDelivery.objects.filter(org_id=org_id, month=month))
    latest = latest_delivery_ids(rows)
    scopes = {r.team_id for r in rows if r.status == Status.SENT}
    revised: list[int | None] = []
    for team_id in sorted(scopes, key=lambda t: (t is None, t or 0)):
        report = report_build(org_id=org_id, team_id=team_id, month=month, now=now)
        fingerprint = month_report_fingerprint(report)
        sent = ReportDelivery.objects.filter(scope_q(team_id), org_id=org_id, month=month, status=Status.SENT)
        sent.update(current_fingerprint=fingerprint, checked_at=now)
        if any(
            r.pk in latest and r.status == Status.SENT and r.fingerprint != fingerprint
            for r in rows
            if r.team_id == team_id
        ):
            revised.append(team_id)
    return revised


def report_revisions_check_due(*, now: dt.datetime) -> list[tuple[int, dt.date, list[int | None]]]:
    """Beat's revision check: the sent months of the last REPORTS_REVISION_MONTHS months whose
    rows were last checked more than an hour ago. Returns (org, month, revised scopes)."""
    if settings.REPORTS_REVISION_MONTHS <= 0:
        return []
    oldest = month_first(now.date())
    for _ in range(settings.REPORTS_REVISION_MONTHS):
        oldest = month_first(oldest - dt.timedelta(days=1))
    stale = Q(checked_at__isnull=True) | Q(checked_at__lt=now - dt.timedelta(hours=1))
    pairs = (
        ReportDelivery.objects.filter(stale, status=Status.SENT, month__gte=oldest)
        .values_list("org_id", "month")
        .distinct()
        .order_by("month", "org_id")
    )
    return [(org_id, month, report_revisions_check(org_id=org_id, month=month, now=now)) for org_id, month in pairs]


def report_revision_plan(*, org_id: int, month: dt.date, team_id: int | None, now: dt.datetime) -> int:
    """Queue the revised report of a scope for each recipient whose latest delivery was sent
    with other figures than the month has now: their next revision, reason "revised". A
    recipient already holding a pending revision gets no second one. Returns the rows created."""
    month = month_first(month)
    report = report_build(org_id=org_id, team_id=team_id, month=month, now=now)
    fingerprint = month_report_fingerprint(report)
    latest: dict[str, ReportDelivery] = {}
    for row in ReportDelivery.objects.filter(scope_q(team_id), org_id=org_id, month=month).order_by("revision"):
        latest[row.recipient] = row
    created = 0
    with transaction.atomic():
        for recipient, row in sorted(latest.items()):
            ReportDelivery.objects.filter(pk=row.pk, status=Status.SENT).update(
                current_fingerprint=fingerprint, checked_at=now
            )
            if row.status != Status.SENT or row.fingerprint == fingerprint:
                continue
            ReportDelivery.objects.create(
                org_id=org_id,
                team_id=team_id,
                month=month,
                recipient=recipient,
                revision=row.revision + 1,
                reason=REVISED_REASON,
            )
            created += 1
    return created


# --- recipients (audited as "report_recipients", like Team.report_email) --------------------


def _recipients_object_id(*, org_id: int, team_id: int | None) -> str:
    return str(team_id) if team_id is not None else f"org:{org_id}"


def _extras(*, org_id: int, team_id: int | None) -> list[str]:
    rows = ReportRecipient.objects.filter(scope_q(team_id), org_id=org_id).order_by("email")
    return list(rows.values_list("email", flat=True))


def report_recipient_add(
    *, org_id: int, team_id: int | None, email: str, note: str = "", actor: object
) -> ReportRecipient:
    """An extra address for a team's report (or, team None, the organisation roll-up)."""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InputError("email", f"{email!r} is not an e-mail address") from exc
    if team_id is not None and not Team.objects.filter(id=team_id, org_id=org_id).exists():
        raise InputError("team", f"team {team_id} is not in organisation {org_id}")
    with transaction.atomic():
        before = _extras(org_id=org_id, team_id=team_id)
        if email in before:
            raise StateError(f"{email} already receives this report")
        row = ReportRecipient.objects.create(org_id=org_id, team_id=team_id, email=email, note=note.strip()[:200])
        audit_record(
            action=AuditEvent.Action.RECIPIENT_CHANGE,
            object_type="report_recipients",
            object_id=_recipients_object_id(org_id=org_id, team_id=team_id),
            org=org_id,
            actor=actor,
            before={"extra": before},
            after={"extra": _extras(org_id=org_id, team_id=team_id)},
        )
    return row


def report_recipient_remove(*, recipient_id: int, actor: object) -> None:
    with transaction.atomic():
        row = ReportRecipient.objects.select_for_update().filter(pk=recipient_id).first()
        if row is None:
            raise StateError(f"recipient {recipient_id} does not exist")
        before = _extras(org_id=row.org_id, team_id=row.team_id)
        row.delete()
        audit_record(
            action=AuditEvent.Action.RECIPIENT_CHANGE,
            object_type="report_recipients",
            object_id=_recipients_object_id(org_id=row.org_id, team_id=row.team_id),
            org=row.org_id,
            actor=actor,
            before={"extra": before},
            after={"extra": _extras(org_id=row.org_id, team_id=row.team_id)},
        )


def report_opt_out_set(*, user_id: int, org_id: int, opted_out: bool, actor: object) -> bool:
    """A user's choice to (not) receive the organisation's monthly e-mails. Returns whether it
    changed anything."""
    with transaction.atomic():
        exists = ReportOptOut.objects.filter(user_id=user_id, org_id=org_id).exists()
        if exists == opted_out:
            return False
        if opted_out:
            ReportOptOut.objects.create(user_id=user_id, org_id=org_id)
        else:
            ReportOptOut.objects.filter(user_id=user_id, org_id=org_id).delete()
        audit_record(
            action=AuditEvent.Action.RECIPIENT_CHANGE,
            object_type="report_recipients",
            object_id=f"user:{user_id}",
            org=org_id,
            actor=actor,
            before={"opted_out": exists},
            after={"opted_out": opted_out},
        )
    return True


def _scope_opt_outs(*, org_id: int, team_id: int | None) -> list[str]:
    return sorted(scope_opted_out_set(org_id=org_id, team_id=team_id))


def report_scope_opt_out_set(
    *, org_id: int, team_id: int | None, email: str, opted_out: bool, via: str, actor: object
) -> bool:
    """An address's choice to (not) receive one report: a team's, or (``team_id`` None) the
    organisation roll-up's; ``via`` ReportScopeOptOut.Via. Audited like every change of a
    report's recipients (``recipient.change`` on "report_recipients", the scope's unsubscribed
    addresses before and after). Returns whether it changed anything."""
    email = email.strip().lower()
    if via not in ReportScopeOptOut.Via.values:
        raise InputError("via", f"{via!r} is not one of {', '.join(ReportScopeOptOut.Via.values)}")
    if not email:
        raise InputError("email", "an address is needed to unsubscribe")
    if team_id is not None and not Team.objects.filter(id=team_id, org_id=org_id).exists():
        raise InputError("team", f"team {team_id} is not in organisation {org_id}")
    with transaction.atomic():
        existing = ReportScopeOptOut.objects.select_for_update().filter(scope_q(team_id), org_id=org_id, email=email)
        if existing.exists() == opted_out:
            return False
        before = _scope_opt_outs(org_id=org_id, team_id=team_id)
        if opted_out:
            ReportScopeOptOut.objects.create(org_id=org_id, team_id=team_id, email=email, via=via)
        else:
            existing.delete()
        audit_record(
            action=AuditEvent.Action.RECIPIENT_CHANGE,
            object_type="report_recipients",
            object_id=_recipients_object_id(org_id=org_id, team_id=team_id),
            org=org_id,
            actor=actor,
            before={"unsubscribed": before},
            after={"unsubscribed": _scope_opt_outs(org_id=org_id, team_id=team_id)},
            reason=f"{'unsubscribed' if opted_out else 'subscribed again'} {email} ({via})",
        )
    return True


# --- unsubscribe links (RFC 8058 one-click; no login: the signed token is the credential) ---


def report_unsubscribe_token(*, delivery: ReportDelivery) -> str:
    """The signed, timestamped token of one delivery's unsubscribe link: it names the delivery
    row (so it unsubscribes that row's recipient from that report, team or roll-up, and nothing
    else, once). Only the row's id is in it, not the address: URLs end up in logs."""
    return signing.dumps({"d": delivery.pk}, salt=UNSUBSCRIBE_SALT)


def report_unsubscribe_url(*, delivery: ReportDelivery) -> str:
    path = reverse("dashboard:report-unsubscribe", args=[report_unsubscribe_token(delivery=delivery)])
    return f"{settings.REPORTS_DASHBOARD_URL}{path}"


def report_unsubscribe_delivery_get(*, token: str) -> ReportDelivery:
    """The delivery an unsubscribe token names. Refused (InputError) when the signature does not
    verify (forged, altered), the link is older than UNSUBSCRIBE_MAX_AGE_S, or the delivery is
    gone; (StateError) when this link was already used."""
    try:
        data = signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=UNSUBSCRIBE_MAX_AGE_S)
    except signing.SignatureExpired as exc:
        raise InputError("token", "this unsubscribe link has expired; sign in to change your reports") from exc
    except signing.BadSignature as exc:
        raise InputError("token", "this unsubscribe link is not valid") from exc
    if not isinstance(data, dict) or not isinstance(data.get("d"), int):
        raise InputError("token", "this unsubscribe link is not valid")
    row = ReportDelivery.objects.select_related("org", "team").filter(pk=data["d"]).first()
    if row is None:
        raise InputError("token", "this unsubscribe link is not valid")
    if row.unsubscribed_at is not None:
        raise StateError(f"this link was already used on {row.unsubscribed_at:%Y-%m-%d %H:%M} UTC")
    return row


def report_unsubscribe(*, token: str, now: dt.datetime) -> ReportDelivery:
    """Use an unsubscribe link: its recipient no longer receives that report (the team's, or
    the roll-up), through ``report_scope_opt_out_set`` (audited, actor "unsubscribe link"). The
    link works once; a refused link changes nothing."""
    with transaction.atomic():
        row = report_unsubscribe_delivery_get(token=token)
        locked = ReportDelivery.objects.select_for_update().get(pk=row.pk)
        if locked.unsubscribed_at is not None:
            raise StateError(f"this link was already used on {locked.unsubscribed_at:%Y-%m-%d %H:%M} UTC")
        report_scope_opt_out_set(
            org_id=row.org_id,
            team_id=row.team_id,
            email=row.recipient,
            opted_out=True,
            via=ReportScopeOptOut.Via.LINK,
            actor=f"unsubscribe link ({row.recipient})",
        )
        ReportDelivery.objects.filter(pk=row.pk).update(unsubscribed_at=now)
        row.unsubscribed_at = now
    return row


def bounced_address_clear(*, email: str, actor: object) -> None:
    """Lift a bounce flag (the mailbox works again): the address receives the next reports;
    rows skipped for it are sent at the next run of their report."""
    email = email.strip().lower()
    with transaction.atomic():
        flag = BouncedAddress.objects.select_for_update().filter(email=email).first()
        if flag is None:
            raise StateError(f"{email} is not flagged")
        before = {"email": email, "smtp_code": flag.smtp_code, "error": flag.error, "flagged_at": flag.flagged_at}
        flag.delete()
        audit_record(
            action=AuditEvent.Action.RECIPIENT_CHANGE,
            object_type="report_recipients",
            object_id=f"bounce:{email}",
            org=None,
            actor=actor,
            before=before,
            after=None,
        )
