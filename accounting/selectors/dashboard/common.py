"""What several dashboard pages share: the viewer's team options, periods, the scoped TeamDay
and Job querysets, unit scaling, the what-if form choices.

The viewer's scope is the session user's :class:`~accounting.selectors.access.Principal` (the
one access rule); ``viewer_scope_get`` builds it for a session user.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypedDict

from django.db.models import QuerySet

from accounting.domain.comparison import like_for_like_previous
from accounting.models import GridZone, HardwareModel, Job, TeamDay
from accounting.selectors.access import Principal, jobs_visible, principal_for, teams_visible

__all__ = [
    "LOST_STATUSES",
    "OVERHEAD_LABEL",
    "UTC",
    "Period",
    "TeamOption",
    "team_option_list",
    "viewer_scope_get",
    "whatif_option_get",
]

UTC = dt.UTC
OVERHEAD_LABEL = "Fleet overhead (unallocated)"
LOST_STATUSES = (Job.Status.FAILED, Job.Status.PREEMPTED)

# --- scope ---------------------------------------------------------------------------------

# The dashboard selectors take the viewer's Principal as ``scope``.


def viewer_scope_get(*, user: Any) -> Principal:
    """The session user's principal (one query: the memberships; none for a superuser)."""
    return principal_for(user=user)


class TeamOption(TypedDict):
    id: int
    name: str
    slug: str
    org_id: int


def team_option_list(*, scope: Principal) -> list[TeamOption]:
    teams = teams_visible(principal=scope)
    return list(teams.order_by("name", "id").values("id", "name", "slug", "org_id"))


# --- periods -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def start_at(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time.min, tzinfo=UTC)

    @property
    def end_at(self) -> dt.datetime:
        return dt.datetime.combine(self.end, dt.time.min, tzinfo=UTC)

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    def previous(self) -> Period:
        return Period(start=self.start - dt.timedelta(days=self.days), end=self.start)

    @property
    def is_partial_month(self) -> bool:
        """Starts on the 1st and ends before the month does (month to date)."""
        return self.start.day == 1 and self.days > 0 and self.end < _next_month_start(self.start)

    def comparison(self) -> Period:
        """The period a change is measured against: for a partial month, the same number of
        days at the start of the previous month (like for like); otherwise the equally long
        period just before."""
        if self.is_partial_month:
            prev_start = (self.start - dt.timedelta(days=1)).replace(day=1)
            start, end = like_for_like_previous(self.start, self.end, prev_start, self.start)
            return Period(start=start, end=end)
        return self.previous()

    def day_list(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


def _next_month_start(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _pct_change(current: float, previous: float) -> float | None:
    if previous <= 0:
        return None
    return (current - previous) / previous * 100.0


# --- scoped querysets ----------------------------------------------------------------------


def _teamday_qs(*, scope: Principal, period: Period, team_id: int | None) -> QuerySet[TeamDay]:
    qs = TeamDay.objects.filter(scope.rows_q(), day__gte=period.start, day__lt=period.end)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def _jobs_scoped(*, scope: Principal, team_id: int | None) -> QuerySet[Job]:
    qs = jobs_visible(principal=scope)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def _unit_scale(per_unit: float) -> tuple[float, str]:
    """Pick a readable multiple of the unit (per 1, per 1k, per 1M)."""
    for factor, label in ((1.0, ""), (1e3, "1k "), (1e6, "1M "), (1e9, "1G ")):
        if per_unit * factor >= 0.01:
            return factor, label
    return 1e9, "1G "


def unit_singular(unit: str) -> str:
    """ "tokens" → "token", "queries" → "query": a unit read as "per <unit>"."""
    if unit.endswith("ies") and len(unit) > 3:
        return unit[:-3] + "y"
    if unit.endswith("s") and not unit.endswith("ss"):
        return unit[:-1]
    return unit


def unit_rate(per_unit: float, unit: str) -> tuple[float, str]:
    """A per-unit figure on a readable multiple of the unit, the same on every page:
    (0.000205, "tokens") → (0.205, "1k tokens"); (3.2, "steps") → (3.2, "step")."""
    factor, label = _unit_scale(per_unit)
    return per_unit * factor, f"{label}{unit}" if label else unit_singular(unit)


def whatif_option_get() -> dict[str, Any]:
    """Choices for the what-if forms: accelerators and grid zones."""
    return {
        "devices": list(
            HardwareModel.objects.filter(kind=HardwareModel.Kind.GPU)
            .order_by("name")
            .values("key", "name", "max_power_w")
        ),
        "zones": list(GridZone.objects.order_by("code").values("code", "name", "annual_intensity_g_per_kwh")),
    }
