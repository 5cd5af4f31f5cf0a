"""Period-over-period comparisons that say so when there is nothing comparable.

Pure (no imports beyond the standard library). The dashboard's overview, the monthly report
and its e-mail all compare a period with an earlier one ("▲ 12 % vs previous period"). A
percentage is only meaningful when both periods are like for like: the same length, and the
earlier one mostly covered by data. Otherwise the figure is withheld and the reason given
("no comparable data"), never an absurd "▲ 16036 %" computed from three stray days.

Rules (docs/method.md, "Comparisons"):

- ``coverage`` of a period is the share of its days (or hours) on which the ledger has any
  energy, in [0, 1]; the caller measures it.
- A change is reported only when the previous period's coverage is at least
  ``MIN_PREVIOUS_COVERAGE`` (half of the period) and its total is positive.
- A partial current period (month to date) is compared with the same number of days at the
  start of the previous period: :func:`like_for_like_previous`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MIN_PREVIOUS_COVERAGE = 0.5

NO_PREVIOUS_DATA = "no comparable data"
PREVIOUS_MOSTLY_EMPTY = "no comparable data (previous period mostly empty)"


@dataclass(frozen=True)
class Comparison:
    """A change between two periods, or the reason there is none."""

    change_pct: float | None
    reason: str | None = None  # set exactly when change_pct is None

    @property
    def comparable(self) -> bool:
        return self.change_pct is not None


def compare(
    current: float,
    previous: float,
    *,
    previous_coverage: float,
    min_previous_coverage: float = MIN_PREVIOUS_COVERAGE,
) -> Comparison:
    """Change from ``previous`` to ``current`` in percent, or why it is withheld.

    >>> compare(110.0, 100.0, previous_coverage=1.0).change_pct
    10.0
    >>> compare(110.0, 100.0, previous_coverage=0.1).reason
    'no comparable data (previous period mostly empty)'
    """
    if not 0.0 <= previous_coverage <= 1.0:
        raise ValueError(f"previous_coverage must lie in [0, 1], got {previous_coverage}")
    if previous <= 0.0 or previous_coverage == 0.0:
        return Comparison(change_pct=None, reason=NO_PREVIOUS_DATA)
    if previous_coverage < min_previous_coverage:
        return Comparison(change_pct=None, reason=PREVIOUS_MOSTLY_EMPTY)
    return Comparison(change_pct=(current - previous) / previous * 100.0)


def coverage(days_with_data: int, days_in_period: int) -> float:
    """Share of a period's days that carry data, in [0, 1] (0 for an empty period)."""
    if days_in_period <= 0:
        return 0.0
    return min(1.0, max(0.0, days_with_data / days_in_period))


def like_for_like_previous(
    start: dt.date, end: dt.date, previous_start: dt.date, previous_end: dt.date
) -> tuple[dt.date, dt.date]:
    """The part of the previous period ``[previous_start, previous_end)`` that matches the
    (possibly partial) current period ``[start, end)`` day for day: its first ``end - start``
    days, never longer than the previous period itself.

    >>> like_for_like_previous(dt.date(2026, 12, 1), dt.date(2026, 12, 4),
    ...                        dt.date(2026, 11, 1), dt.date(2026, 12, 1))
    (datetime.date(2026, 11, 1), datetime.date(2026, 11, 4))
    """
    days = (end - start).days
    if days < 0:
        raise ValueError("end before start")
    return previous_start, min(previous_end, previous_start + dt.timedelta(days=days))
