"""Monthly report delivery by hand: ``reports send|resend|revise|status``.

    manage.py reports send --month 2026-11 [--team alpha] [--org acme]
        plan the month (refused while it is not closed) and send what is due, in this process;
        a second run sends nothing (the delivery ledger: accounting.models.ReportDelivery)
    manage.py reports resend --month 2026-11 --team alpha --recipient ana@acme.test --reason "..."
        forced: the report again to one recipient as its next revision; who (--by USERNAME, or
        the operating-system user) and why are kept on the row and as an AuditEvent
        (--team org: the organisation roll-up)
    manage.py reports revise --month 2026-11 [--team alpha]
        re-send a report whose figures changed since it was sent, as a revision
    manage.py reports status --month 2026-11 [--org acme]
        re-check the month for revisions and list its deliveries

Beat sends the month on its own (workers/tasks.py reports.tick); this is for a first run, a
catch-up and the cases an operator decides.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from collections import Counter

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounting.domain.errors import InputError, StateError
from accounting.models import Organization, ReportDelivery, Team
from accounting.selectors.report_deliveries import latest_delivery_ids, month_closed_check, report_delivery_list
from accounting.selectors.reports import ORG_SCOPE_LABEL
from accounting.services.report_delivery import (
    report_delivery_resend,
    report_month_plan,
    report_principal,
    report_revision_plan,
    report_revisions_check,
    report_scope_deliver,
)

ROLLUP = "org"


def _month(value: str) -> dt.date:
    match = re.fullmatch(r"(\d{4})-(\d{2})", value or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise CommandError(f"--month must be YYYY-MM (got {value!r})")
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


class Command(BaseCommand):
    help = "Send, resend, revise and list the monthly e-mailed reports (docs/reports-delivery.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("send", "resend", "revise", "status"):
            p = sub.add_parser(name)
            p.add_argument("--month", required=True)
            p.add_argument("--org", help="organisation slug (needed when there are several)")
            if name != "status":
                p.add_argument(
                    "--team",
                    required=name == "resend",
                    help=f"team slug or id; '{ROLLUP}' for the organisation roll-up",
                )
        resend = sub.choices["resend"]
        resend.add_argument("--recipient", required=True)
        resend.add_argument("--reason", required=True)
        resend.add_argument("--by", help="the admin's username (default: the operating-system user)")

    def handle(self, *args: object, **opts: object) -> None:
        month = _month(str(opts["month"]))
        org = self._org(opts.get("org"))
        now = timezone.now()
        action = opts["action"]
        try:
            if action == "status":
                self._status(org, month, now)
                return
            team_ref = opts.get("team")
            team = self._team(org, str(team_ref)) if team_ref else None
            team_id = team.id if team else None
            if action == "send":
                only = None if team_ref is None else [team_id]
                scopes = report_month_plan(org_id=org.id, month=month, now=now, scopes=only)
            elif action == "resend":
                row = report_delivery_resend(
                    org_id=org.id,
                    team_id=team_id,
                    month=month,
                    recipient=str(opts["recipient"]),
                    reason=str(opts["reason"]),
                    actor=self._actor(opts.get("by")),
                )
                self.stdout.write(f"queued {row.recipient} revision {row.revision}")
                scopes = [team_id]
            else:  # revise
                scopes = [team_id] if team_ref else report_revisions_check(org_id=org.id, month=month, now=now)
                for scope in scopes:
                    n = report_revision_plan(org_id=org.id, month=month, team_id=scope, now=now)
                    self.stdout.write(f"{self._label(scope)}: {n} revised report(s) queued")
        except (InputError, StateError) as exc:
            raise CommandError(str(exc)) from exc
        for scope in scopes:
            o = report_scope_deliver(org_id=org.id, team_id=scope, month=month)
            self.stdout.write(
                f"{self._label(scope)}: sent {o.sent}, retry {o.retry}, failed {o.failed}, "
                f"skipped {o.skipped}, uncertain {o.uncertain}"
            )

    # --- helpers -------------------------------------------------------------------------

    def _status(self, org: Organization, month: dt.date, now: dt.datetime) -> None:
        check = month_closed_check(org_id=org.id, month=month, now=now)
        report_revisions_check(org_id=org.id, month=month, now=now)
        rows = report_delivery_list(scope=report_principal(org_id=org.id, team_id=None), month=month, limit=100_000)
        rows.sort(key=lambda r: (r.team_id is None, r.team_id or 0, r.recipient, r.revision))
        counts = Counter(r.status for r in rows)
        latest = latest_delivery_ids(rows)
        flagged = {r.pk for r in rows if r.pk in latest and r.revised_after_sending}
        revised = len(flagged)
        state = "closed" if check.closed else "not closed (" + "; ".join(check.reasons) + ")"
        summary = ", ".join(f"{s} {counts[s]}" for s in ReportDelivery.Status.values if counts[s]) or "nothing planned"
        tail = f"; revised after sending {revised}" if revised else ""
        self.stdout.write(f"{org.name} {month:%Y-%m}: {state}; {summary}{tail}")
        for r in rows:
            line = f"  {self._label(r.team_id)} {r.recipient} r{r.revision} {r.status} attempts {r.attempts}"
            if r.forced_by:
                line += f" (forced by {r.forced_by}: {r.reason})"
            if r.pk in flagged:
                line += " REVISED after sending"
            if r.last_error and r.status != ReportDelivery.Status.SENT:
                line += f" [{r.last_error}]"
            self.stdout.write(line)

    def _org(self, slug: object) -> Organization:
        if slug:
            org = Organization.objects.filter(slug=str(slug)).first()
            if org is None:
                raise CommandError(f"no organisation {slug!r}")
            return org
        orgs = list(Organization.objects.order_by("id")[:2])
        if len(orgs) != 1:
            raise CommandError("name the organisation with --org" if orgs else "no organisation yet")
        return orgs[0]

    def _team(self, org: Organization, ref: str) -> Team | None:
        if ref == ROLLUP:
            return None
        teams = Team.objects.filter(org=org)
        team = (teams.filter(id=int(ref)) if ref.isdigit() else teams.filter(slug=ref)).first()
        if team is None:
            raise CommandError(f"no team {ref!r} in {org.slug}")
        return team

    def _label(self, team_id: int | None) -> str:
        if team_id is None:
            return ORG_SCOPE_LABEL
        return Team.objects.filter(id=team_id).values_list("name", flat=True).first() or f"team {team_id}"

    @staticmethod
    def _actor(username: object) -> object:
        if username:
            user = get_user_model().objects.filter(username=str(username)).first()
            if user is None:
                raise CommandError(f"no user {username!r}")
            return user
        return f"{getpass.getuser()} (manage.py reports resend)"
