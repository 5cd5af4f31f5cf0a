"""Writes of team carbon budgets (admin tokens and the admin site)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from accounting.domain.errors import InputError
from accounting.models import AuditEvent, CarbonBudget, Team
from accounting.services.audit import audit_record

AUDITED = ("period_end", "co2e_budget_g", "note")


@transaction.atomic
def budget_set(
    *, team: Team, period_start: dt.date, period_end: dt.date, co2e_budget_g: float, note: str = "", actor=None
) -> tuple[CarbonBudget, bool]:
    """Create or replace the team's budget for the period starting ``period_start``; a change
    writes an AuditEvent (``actor``: the user or token that asked; None for the system).

    Periods of one team may not overlap: a day belongs to at most one budget, so the check
    endpoint never has to choose between two."""
    if period_end <= period_start:
        raise InputError("period_end", "must be after period_start")
    if co2e_budget_g < 0:
        raise InputError("co2e_budget_g", "must be >= 0")
    overlapping = (
        CarbonBudget.objects.select_for_update()
        .filter(team=team, period_start__lt=period_end, period_end__gt=period_start)
        .exclude(period_start=period_start)
    )
    if overlapping.exists():
        raise InputError("period_start", "overlaps another budget period of this team")
    old = CarbonBudget.objects.select_for_update().filter(team=team, period_start=period_start).first()
    budget, created = CarbonBudget.objects.update_or_create(
        team=team,
        period_start=period_start,
        defaults={"period_end": period_end, "co2e_budget_g": co2e_budget_g, "note": note},
    )
    before = None if old is None else {"period_start": period_start, **{f: getattr(old, f) for f in AUDITED}}
    after = {"period_start": period_start, **{f: getattr(budget, f) for f in AUDITED}}
    if before != after:
        audit_record(
            action=AuditEvent.Action.BUDGET_CREATE if created else AuditEvent.Action.BUDGET_UPDATE,
            object_type="budget",
            object_id=budget.pk,
            org=team.org_id,
            actor=actor,
            before=before,
            after=after,
        )
    return budget, created
