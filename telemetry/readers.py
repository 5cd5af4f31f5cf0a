"""Stored telemetry as its consumers read it: the raw-store reads attribution needs (issue 12).

Telemetry owns its tables; accounting reads the GPU series, host windows and previous windows
through these functions (accounting.mappers turns them into domain types), never with SQL of
its own. Reads are for many batches at once: one query per kind of row for all batches a worker
claimed. Arrays come back as the driver's lists (the columnar store's own form, issue 18) and
times as integer microseconds since the epoch (exact; no datetime per window).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection

from accounting.domain.timebase import from_us, to_us


@dataclass(frozen=True, slots=True, eq=False)
class StoredSeries:
    """One stored series row (one batch's windows of one GPU in one UTC day), in seq order.

    ``processes_runs`` / ``mig_runs``: the stored run-length lists (``[[first index, list],
    ...]``, ``GpuSeries.processes``) as their JSON text; ``counter_mj`` None when no window of
    the series had a counter, else one value (or None) per window."""

    batch_id: int
    device_id: int
    seq: list[int]
    start_us: list[int]
    end_us: list[int]
    energy_j: list[float]
    avg_power_w: list[float]
    util_pct: list[float]
    quality: list[str]
    processes_runs: str
    mig_runs: str
    counter_mj: list[int | None] | None
    energy_covers: str

    def __len__(self) -> int:
        return len(self.seq)


def gpu_series_for_batches(*, batch_pks: list[int]) -> list[StoredSeries]:
    """The GPU series of these batches, ordered by batch, device and first window."""
    if not batch_pks:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT batch_id, device_id, seq, start_us, end_us, energy_j, avg_power_w, util_pct, quality, "
            "processes::text, mig_instances::text, counter_mj, energy_covers "
            "FROM telemetry_gpuseries WHERE batch_id = ANY(%s) ORDER BY batch_id, device_id, first_start_at",
            [list(batch_pks)],
        )
        rows = cursor.fetchall()
    return [
        StoredSeries(
            batch_id=batch_id,
            device_id=device_id,
            seq=seq,
            start_us=start_us,
            end_us=end_us,
            energy_j=energy_j,
            avg_power_w=avg_power_w,
            util_pct=util_pct,
            quality=quality,
            processes_runs=processes,
            mig_runs=mig,
            counter_mj=counter_mj,
            energy_covers=energy_covers,
        )
        for (
            batch_id,
            device_id,
            seq,
            start_us,
            end_us,
            energy_j,
            avg_power_w,
            util_pct,
            quality,
            processes,
            mig,
            counter_mj,
            energy_covers,
        ) in rows
    ]


_US = "(EXTRACT(EPOCH FROM {col}) * 1000000)::bigint"


@dataclass(frozen=True, slots=True)
class StoredHostWindow:
    batch_id: int
    seq: int
    start_us: int
    end_us: int
    cpu_energy_j: float
    dram_energy_j: float
    wall_energy_j: float | None
    quality: str


def host_windows_for_batches(*, batch_pks: list[int]) -> list[StoredHostWindow]:
    """The host windows of these batches, ordered by batch and start."""
    if not batch_pks:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT batch_id, seq, {_US.format(col='start_at')}, {_US.format(col='end_at')}, cpu_energy_j, "
            "dram_energy_j, wall_energy_j, quality "
            "FROM telemetry_hostwindow WHERE batch_id = ANY(%s) ORDER BY batch_id, start_at",
            [list(batch_pks)],
        )
        return [
            StoredHostWindow(
                batch_id=batch_id,
                seq=seq,
                start_us=start_us,
                end_us=end_us,
                cpu_energy_j=cpu,
                dram_energy_j=dram,
                wall_energy_j=wall,
                quality=quality,
            )
            for batch_id, seq, start_us, end_us, cpu, dram, wall, quality in cursor.fetchall()
        ]


@dataclass(frozen=True, slots=True)
class StoredPreviousWindow:
    key: int
    device_id: int
    end_us: int
    avg_power_w: float
    counter_mj: int | None
    util_pct: float


_DAY_BEFORE_B = "(q.b - interval '1 day')"
# The requests as rows ``r`` (key, device, before, day start), with ``before`` and one day before
# it in microseconds: what both previous-window queries look up from. Devices come as (request
# index, device) and the requests' instants once per request (index, key, before, day start):
# each parameter an array literal (text), which the driver sends as it is where it would adapt a
# list element by element (about 6 us per timestamp: 1 ms for a claim's 200 devices).
_REQUESTS = (
    f"(SELECT q.k, u.d, q.b, q.day_start, {_US.format(col='q.b')} AS b_us, {_US.format(col=_DAY_BEFORE_B)} AS lo_us"
    "  FROM unnest(%s::int[], %s::bigint[]) AS u(i, d)"
    "  JOIN unnest(%s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS q(i, k, b, day_start)"
    "  ON q.i = u.i) r"
)


def _array_text(values: list, item=str) -> str:
    """A PostgreSQL array literal of ``values`` (``item``: each value's text)."""
    return "{" + ",".join(map(item, values)) + "}"


def _timestamp_text(value: dt.datetime) -> str:
    return f'"{value.isoformat()}"'


def previous_windows_for_many(*, requests: list[tuple[int, list[int], dt.datetime]]) -> list[StoredPreviousWindow]:
    """Each device's last stored window ending at or before ``before``, for many (key, device_ids,
    before) requests in one query (looked up within a day: partition pruning keeps it cheap, and an
    older neighbour is a long gap anyway).

    A device's series never overlap in time (ingest refuses a batch starting before the host's
    last window ends), so the window sought lies in one of its two latest series starting before
    ``before``: only those are unnested."""
    keys, befores, day_starts = [], [], []
    indexes: list[int] = []  # per device: its request's index
    devices: list[int] = []
    for index, (key, device_ids, before) in enumerate(requests):
        keys.append(key)
        befores.append(before)
        # The series holding windows that start from before - 1 day start on or after that day's midnight.
        day_starts.append(from_us(to_us(before - dt.timedelta(days=1)) // 86_400_000_000 * 86_400_000_000))
        indexes += [index] * len(device_ids)
        devices += device_ids
    if not devices:
        return []
    per_request = [
        _array_text(list(range(len(requests)))),
        _array_text(keys),
        _array_text(befores, _timestamp_text),
        _array_text(day_starts, _timestamp_text),
    ]
    with connection.cursor() as cursor:
        # Almost always the window sought is the last one of the device's latest series starting
        # before ``before`` (the previous batch's): read that element alone. Where it is not (it
        # ends after ``before``, or starts before the day looked up), the general query below
        # unnests the two latest series.
        cursor.execute(
            "SELECT r.k, r.d, s.end_us[s.n], s.avg_power_w[s.n], s.counter_mj[s.n], s.util_pct[s.n], "
            "  s.start_us[s.n] >= r.lo_us AND s.end_us[s.n] <= r.b_us "
            f"FROM {_REQUESTS} "
            "CROSS JOIN LATERAL (SELECT s.start_us, s.end_us, s.avg_power_w, s.counter_mj, s.util_pct, "
            "  cardinality(s.start_us) AS n FROM telemetry_gpuseries s WHERE s.device_id = r.d "
            "  AND s.first_start_at < r.b AND s.first_start_at >= r.day_start "
            "  ORDER BY s.first_start_at DESC LIMIT 1) s",
            [_array_text(indexes), _array_text(devices), *per_request],
        )
        rows = cursor.fetchall()
        found = [_previous(row) for *row, is_it in rows if is_it]
        general = {(key, device_id) for key, device_id, *_, is_it in rows if not is_it}
        if not general:
            return found
        picked = [
            i
            for i, (index, device) in enumerate(zip(indexes, devices, strict=True))
            if (keys[index], device) in general
        ]
        cursor.execute(
            "SELECT r.k, r.d, p.end_us, p.avg_power_w, p.counter_mj, p.util_pct "
            f"FROM {_REQUESTS} "
            "CROSS JOIN LATERAL (SELECT w.end_us, w.avg_power_w, w.counter_mj, w.util_pct "
            "  FROM (SELECT s.* FROM telemetry_gpuseries s WHERE s.device_id = r.d AND s.first_start_at < r.b "
            "        AND s.first_start_at >= r.day_start ORDER BY s.first_start_at DESC LIMIT 2) s "
            "  CROSS JOIN LATERAL unnest(s.start_us, s.end_us, s.avg_power_w, s.counter_mj, s.util_pct) "
            "    AS w(start_us, end_us, avg_power_w, counter_mj, util_pct) "
            "  WHERE w.start_us < r.b_us AND w.start_us >= r.lo_us AND w.end_us <= r.b_us "
            "  ORDER BY w.start_us DESC LIMIT 1) p",
            [_array_text([indexes[i] for i in picked]), _array_text([devices[i] for i in picked]), *per_request],
        )
        return found + [_previous(row) for row in cursor.fetchall()]


def _previous(row) -> StoredPreviousWindow:
    key, device_id, end_us, power, counter, util = row
    return StoredPreviousWindow(
        key=key, device_id=device_id, end_us=end_us, avg_power_w=power, counter_mj=counter, util_pct=util
    )


def hosts_seen_since(*, host_ids: list[int], since: dt.datetime) -> set[int]:
    """The hosts among ``host_ids`` whose last stored window ended at ``since`` or later (their
    agents are alive): one row per host (``telemetry_hoststream``), whatever the history."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT host_id FROM telemetry_hoststream WHERE host_id = ANY(%s) AND last_seen_at >= %s",
            [host_ids, since],
        )
        return {host_id for (host_id,) in cursor.fetchall()}
