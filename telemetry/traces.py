"""Power traces from the raw GPU series: what other apps may read of raw windows for display.

Two reads, both bounded by the caller (a time range, a device set, a row cap) and both filtered
on the partition key (``first_start_at`` from the UTC midnight of the range's start: a series
row holds one day's windows, so none starting earlier can hold a window in range) before the
arrays are unnested. The dashboard's live pages (``accounting/selectors/dashboard/power.py``)
call them; telemetry's tables are named only here and in the rest of telemetry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet

from accounting.domain.timebase import to_us
from telemetry.models import GpuSeries

_SERIES = GpuSeries._meta.db_table

_WINDOWS_SQL = f"""
    SELECT s.device_id, w.start_us, w.end_us, w.avg_power_w, w.util_pct
    FROM {_SERIES} s
    CROSS JOIN LATERAL unnest(s.seq, s.start_us, s.end_us, s.avg_power_w, s.util_pct)
        AS w(seq, start_us, end_us, avg_power_w, util_pct)
    WHERE s.device_id = ANY(%(devices)s) AND s.first_start_at >= %(day_start)s AND s.first_start_at < %(hi)s
      AND s.last_end_at > %(lo)s AND w.start_us >= %(lo_us)s AND w.start_us < %(hi_us)s
    ORDER BY s.device_id, w.start_us, w.seq
    LIMIT %(limit)s
"""

# Per device and whole minute, the mean power of its windows starting in it; then per minute
# the sum over the devices reporting and their count. The first row carries the device count.
# Preceded by ``WITH fleet AS (<the device query>),``.
_FLEET_SQL = f"""
    per_device AS (
        SELECT 'epoch'::timestamptz + (w.start_us / 60000000) * interval '1 minute' AS b, s.device_id,
               AVG(w.avg_power_w) AS p
        FROM {_SERIES} s
        CROSS JOIN LATERAL unnest(s.start_us, s.avg_power_w) AS w(start_us, avg_power_w)
        WHERE s.device_id IN (SELECT id FROM fleet) AND s.first_start_at >= %s AND s.first_start_at < %s
          AND s.last_end_at > %s AND w.start_us >= %s AND w.start_us < %s
        GROUP BY 1, 2
    )
    SELECT NULL, NULL, (SELECT COUNT(*) FROM fleet)
    UNION ALL
    SELECT * FROM (SELECT b, SUM(p), COUNT(*) FROM per_device GROUP BY b ORDER BY b) m
"""


def _day_start(value: dt.datetime) -> dt.datetime:
    """The UTC midnight starting ``value``'s day (the lower bound of the series that can hold it)."""
    return value.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def device_windows(
    *, device_ids: Sequence[int], start: dt.datetime, end: dt.datetime, limit: int
) -> list[tuple[int, int, int, float, float]]:
    """The raw windows of these devices starting in [``start``, ``end``): (device id, start and
    end in integer microseconds since the epoch, average power W, utilisation %), by device, start
    and seq, at most ``limit``."""
    with connection.cursor() as cursor:
        cursor.execute(
            _WINDOWS_SQL,
            {
                "devices": sorted(device_ids),
                "day_start": _day_start(start),
                "lo": start,
                "hi": end,
                "lo_us": to_us(start),
                "hi_us": to_us(end),
                "limit": limit,
            },
        )
        return list(cursor.fetchall())


def fleet_power_per_minute(
    *, devices: QuerySet[Any], start: dt.datetime, end: dt.datetime
) -> tuple[int, list[tuple[dt.datetime, float, int]]]:
    """GPU power per whole minute in [``start``, ``end``) of the devices ``devices`` selects (a
    query of one column, device ids, run as a subquery of the same statement): per device the mean
    power of its windows starting in that minute, summed over the devices reporting. Returns the
    number of devices selected and, per minute with windows, (minute, W, devices reporting). One query."""
    try:
        devices_sql, devices_params = devices.query.sql_with_params()
    except EmptyResultSet:  # a query that can select nothing
        return 0, []
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH fleet AS ({devices_sql}),{_FLEET_SQL}",
            [*devices_params, _day_start(start), end, start, to_us(start), to_us(end)],
        )
        rows = cursor.fetchall()
    return rows[0][2], [(minute, watts, reporting) for minute, watts, reporting in rows[1:]]
