"""Reads for monthly report delivery: is a month closed, who receives a report, and what the
delivery ledger (accounting.models.ReportDelivery) says was sent."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q

from accounting.models import (
    BouncedAddress,
    FactorChange,
    Host,
    Membership,
    ReportDelivery,
    ReportOptOut,
    ReportRecipient,
    ReportSchedule,
    ReportScopeOptOut,
    Team,
)
from accounting.selectors.access import Principal
from telemetry.queue import batches_count

UTC = dt.UTC


def month_first(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_next(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of ``month`` as aware UTC datetimes (the ledger's months are UTC months)."""
    start = month_first(month)
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=UTC),
        dt.datetime.combine(month_next(start), dt.time.min, tzinfo=UTC),
    )


def scope_q(team_id: int | None, prefix: str = "") -> Q:
    """Rows of one report scope: a team's, or (None) the organisation roll-up's."""
    if team_id is None:
        return Q(**{f"{prefix}team__isnull": True})
    return Q(**{f"{prefix}team_id": team_id})


# --- schedule ------------------------------------------------------------------------------


def report_time_zone(*, org_id: int) -> zoneinfo.ZoneInfo:
    """The organisation's report time zone: its ReportSchedule, else settings.REPORTS_TIME_ZONE."""
    name = ReportSchedule.objects.filter(org_id=org_id).values_list("time_zone", flat=True).first()
    try:
        return zoneinfo.ZoneInfo(name or settings.REPORTS_TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.REPORTS_TIME_ZONE)


def report_due_month(*, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.date, dt.datetime]:
    """The month whose report is due at ``now`` (the last one whose send moment has passed) and
    that moment: REPORTS_SEND_DAY at REPORTS_SEND_TIME (in ``tz``) of the month after it."""
    local = now.astimezone(tz)
    this_month = local.date().replace(day=1)
    due_at = dt.datetime.combine(
        this_month.replace(day=settings.REPORTS_SEND_DAY), settings.REPORTS_SEND_TIME, tzinfo=tz
    )
    if local < due_at:  # this month's run has not come yet: the one before is the last due
        this_month = month_first(this_month - dt.timedelta(days=1))
        due_at = dt.datetime.combine(
            this_month.replace(day=settings.REPORTS_SEND_DAY), settings.REPORTS_SEND_TIME, tzinfo=tz
        )
    report_month = month_first(this_month - dt.timedelta(days=1))
    return report_month, due_at.astimezone(UTC)


# --- month closed --------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthClosed:
    closed: bool
    reasons: tuple[str, ...]  # why not (empty when closed)
    failed_batches: int  # attribution failed for good: reported, not waited for


def month_closed_check(*, org_id: int, month: dt.date, now: dt.datetime) -> MonthClosed:
    """A month is closed when it has ended, every telemetry batch that overlaps it has been
    attributed (none pending or being attributed, which includes batches a recompute marked
    dirty) and no factor change affecting it waits for its recompute. A batch whose attribution
    failed for good does not hold the month (it needs an operator) but is counted."""
    start, end = month_bounds(month)
    reasons = []
    if now < end:
        reasons.append(f"the month ends {end:%Y-%m-%d %H:%M} UTC")
    batches = batches_count(
        host_ids=Host.objects.filter(cluster__site__org_id=org_id).values("pk"), since=start, until=end
    )
    if batches.open:
        reasons.append(f"{batches.open} telemetry batch(es) of the month not yet attributed")
    recomputes = (
        FactorChange.objects.filter(recompute_status__in=("pending", "running"))
        .filter(Q(affects_from__isnull=True) | Q(affects_from__lt=end))
        .filter(Q(affects_to__isnull=True) | Q(affects_to__gt=start))
        .count()
    )
    if recomputes:
        reasons.append(f"{recomputes} factor change(s) affecting the month wait for their recompute")
    return MonthClosed(closed=not reasons, reasons=tuple(reasons), failed_batches=batches.failed)


# --- recipients ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    email: str  # lower-cased
    source: str  # "member alice", "admin bob", "team address", "extra (finance)"
    bounced: bool


def report_recipients_list(*, org_id: int, team_id: int | None) -> list[Recipient]:
    """Who receives the report of a team (its members and the team's addresses), or with
    ``team_id`` None the organisation roll-up (its admins and the roll-up's extra addresses).
    Users who opted out of the organisation's e-mails, addresses that unsubscribed from this
    report (ReportScopeOptOut), inactive users and users without an address are left out; an
    address flagged as bouncing is listed with ``bounced`` (the ledger records it as skipped).
    One entry per address, in address order."""
    opted_out = ReportOptOut.objects.filter(org_id=org_id).values("user_id")
    members = Membership.objects.filter(org_id=org_id, user__is_active=True).exclude(user__email="")
    members = members.exclude(user_id__in=opted_out)
    if team_id is None:
        members = members.filter(role=Membership.Role.ADMIN, team__isnull=True)
        kind = "admin"
    else:
        members = members.filter(team_id=team_id)
        kind = "member"
    found: dict[str, str] = {}
    for username, email in members.order_by("user__username").values_list("user__username", "user__email"):
        found.setdefault(email.strip().lower(), f"{kind} {username}")
    if team_id is not None:
        team_email = Team.objects.filter(id=team_id, org_id=org_id).values_list("report_email", flat=True).first()
        if team_email:
            found.setdefault(team_email.strip().lower(), "team address")
    extras = ReportRecipient.objects.filter(scope_q(team_id), org_id=org_id).order_by("email")
    for email, note in extras.values_list("email", "note"):
        found.setdefault(email.strip().lower(), f"extra ({note})" if note else "extra")
    for email in scope_opted_out_set(org_id=org_id, team_id=team_id):
        found.pop(email, None)
    bounced = set(BouncedAddress.objects.filter(email__in=list(found)).values_list("email", flat=True))
    return [Recipient(email=e, source=found[e], bounced=e in bounced) for e in sorted(found)]


def scope_opted_out_set(*, org_id: int, team_id: int | None) -> set[str]:
    """Addresses (lower-cased) that unsubscribed from one report: a team's, or the roll-up's."""
    rows = ReportScopeOptOut.objects.filter(scope_q(team_id), org_id=org_id)
    return {e.strip().lower() for e in rows.values_list("email", flat=True)}


@dataclass(frozen=True)
class Subscription:
    """One report a signed-in user receives (or would), and whether they unsubscribed from it."""

    org_id: int
    team_id: int | None  # None: the organisation roll-up
    label: str
    opted_out: bool  # unsubscribed from this report (link or page)
    org_opted_out: bool  # out of all the organisation's reports (admin -> Report opt-outs)


def report_subscription_list(*, user_id: int) -> list[Subscription]:
    """The reports a user is a recipient of by membership: each of their teams' reports, and
    the organisation roll-up for an organisation admin; with their unsubscribe state (by their
    address, lower-cased). A user without an address receives nothing: empty."""
    email = (get_user_model().objects.filter(pk=user_id).values_list("email", flat=True).first() or "").strip().lower()
    if not email:
        return []
    memberships = (
        Membership.objects.filter(user_id=user_id)
        .select_related("org", "team")
        .order_by("org__name", "team__name", "role")
    )
    out_of = {
        (org_id, team_id)
        for org_id, team_id in ReportScopeOptOut.objects.filter(email=email).values_list("org_id", "team_id")
    }
    org_out = set(ReportOptOut.objects.filter(user_id=user_id).values_list("org_id", flat=True))
    found: dict[tuple[int, int | None], Subscription] = {}
    for ms in memberships:
        if ms.team is not None:
            key: tuple[int, int | None] = (ms.org_id, ms.team.pk)
            label = f"{ms.team.name} ({ms.org.name})"
        elif ms.role == Membership.Role.ADMIN:
            key = (ms.org_id, None)
            label = f"{ms.org.name}: organisation roll-up"
        else:
            continue
        found.setdefault(
            key,
            Subscription(
                org_id=key[0], team_id=key[1], label=label, opted_out=key in out_of, org_opted_out=key[0] in org_out
            ),
        )
    return list(found.values())


def report_scopes_list(*, org_id: int) -> list[int | None]:
    """The report scopes of an organisation: each team (id order), then the roll-up (None)."""
    return [*Team.objects.filter(org_id=org_id).order_by("id").values_list("id", flat=True), None]


# --- the ledger ----------------------------------------------------------------------------


def report_delivery_list(
    *,
    scope: Principal,
    month: dt.date | None = None,
    team_id: int | None = None,
    status: str | None = None,
    limit: int = 500,
) -> list[ReportDelivery]:
    """Deliveries ``scope`` may see (an admin: the organisation's, the roll-up's included; a
    member: their teams'), newest month first, then team, recipient and revision; ``team_id``
    and ``status`` narrow them."""
    qs = ReportDelivery.objects.filter(scope.rows_q()).select_related("team", "org")
    if month is not None:
        qs = qs.filter(month=month_first(month))
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    if status is not None:
        qs = qs.filter(status=status)
    return list(qs.order_by("-month", "org_id", "team__name", "recipient", "revision")[:limit])


def latest_delivery_ids(rows: Iterable[ReportDelivery]) -> set[int]:
    """Of ``rows``, those that are each recipient's latest revision of its report: where
    "revised after sending" still calls for action (a later revision supersedes the flag)."""
    top: dict[tuple[int, int | None, dt.date, str], ReportDelivery] = {}
    for row in rows:
        key = (row.org_id, row.team_id, row.month, row.recipient)
        if key not in top or row.revision > top[key].revision:
            top[key] = row
    return {row.pk for row in top.values()}


def report_delivery_months(*, scope: Principal) -> list[dt.date]:
    return list(
        ReportDelivery.objects.filter(scope.rows_q()).order_by("-month").values_list("month", flat=True).distinct()
    )


def report_delivery_counts(*, org_id: int, month: dt.date) -> dict[str, int]:
    """Rows of the month by status (the latest revision of each recipient and scope only),
    with "revised" for sent rows whose figures changed since."""
    rows = list(ReportDelivery.objects.filter(org_id=org_id, month=month_first(month)))
    ids = latest_delivery_ids(rows)
    latest = [row for row in rows if row.pk in ids]
    counts = Counter(row.status for row in latest)
    counts["revised"] = sum(1 for row in latest if row.revised_after_sending)
    return dict(counts)


def report_deliveries_due(*, now: dt.datetime, limit: int = 1000) -> list[tuple[int, int | None, dt.date]]:
    """Scopes (org, team or None, month) with a row waiting to be sent: pending for longer than
    a beat tick (its task message was lost, or the workers are behind), or to retry and due.
    Beat re-nudges them: a lost task message delays a report, never loses it."""
    rows = (
        ReportDelivery.objects.filter(
            Q(status=ReportDelivery.Status.PENDING, created_at__lt=now - dt.timedelta(seconds=settings.REPORTS_TICK_S))
            | Q(status=ReportDelivery.Status.RETRY, next_attempt_at__lte=now)
        )
        .values_list("org_id", "team_id", "month")
        .distinct()
        .order_by("month", "org_id", "team_id")
    )
    return list(rows[:limit])
