"""Columnar GPU windows: one device's windows of one batch as arrays (issue 18).

The unit both the columnar wire format (v2, ``telemetry.parsing``) and the columnar raw store
(one row per batch and device) work in: no Python object per window on the ingest path. A v1
batch's rows are grouped into the same shape (``series_from_rows``), so everything after the
parser sees one form whichever format the agent sent.

Times are integer microseconds since the Unix epoch (UTC): exact, and what PostgreSQL keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from accounting.domain.timebase import from_us, to_us

if TYPE_CHECKING:
    from telemetry.parsing import GpuRow


@dataclass(frozen=True, slots=True, eq=False)
class GpuSeries:
    """The windows of one GPU in one batch, in seq order, as equal-length numpy arrays.

    ``counter_mj`` holds NVML's raw counter where ``has_counter`` is true (else 0);
    ``power_limit_w`` is NaN where the agent reported none. ``processes`` and
    ``mig_instances`` are per window (normalised lists, as ``telemetry.parsing`` builds them;
    consecutive windows usually share one list object)."""

    uuid: str
    index: int
    name: str
    energy_covers: str
    seq: np.ndarray  # int64
    start_us: np.ndarray  # int64
    end_us: np.ndarray  # int64
    energy_j: np.ndarray  # float64
    counter_mj: np.ndarray  # int64
    has_counter: np.ndarray  # bool
    avg_power_w: np.ndarray  # float64
    max_power_w: np.ndarray  # float64
    util_pct: np.ndarray  # float64
    mem_util_pct: np.ndarray  # float64
    mem_used_mib: np.ndarray  # float64, NaN = not reported
    power_limit_w: np.ndarray  # float64, NaN = not reported
    quality: tuple[str, ...]
    processes: tuple[list[dict[str, Any]], ...]
    mig_instances: tuple[list[dict[str, Any]], ...]

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @property
    def energy_total_j(self) -> float:
        return float(self.energy_j.sum())


def series_from_rows(rows: list[GpuRow]) -> list[GpuSeries]:
    """Group v1 rows (window-major) into one series per device, devices in first-seen order."""
    by_uuid: dict[str, list[GpuRow]] = {}
    for row in rows:
        by_uuid.setdefault(row.uuid, []).append(row)
    out = []
    for uuid, device_rows in by_uuid.items():
        first = device_rows[0]
        out.append(
            GpuSeries(
                uuid=uuid,
                index=first.index,
                name=first.name,
                energy_covers=first.energy_covers,
                seq=np.fromiter((r.seq for r in device_rows), dtype=np.int64, count=len(device_rows)),
                start_us=np.fromiter((to_us(r.start) for r in device_rows), dtype=np.int64, count=len(device_rows)),
                end_us=np.fromiter((to_us(r.end) for r in device_rows), dtype=np.int64, count=len(device_rows)),
                energy_j=np.array([r.energy_j for r in device_rows], dtype=np.float64),
                counter_mj=np.array([r.counter_mj or 0 for r in device_rows], dtype=np.int64),
                has_counter=np.array([r.counter_mj is not None for r in device_rows], dtype=bool),
                avg_power_w=np.array([r.avg_power_w for r in device_rows], dtype=np.float64),
                max_power_w=np.array([r.max_power_w for r in device_rows], dtype=np.float64),
                util_pct=np.array([r.util_pct for r in device_rows], dtype=np.float64),
                mem_util_pct=np.array([r.mem_util_pct for r in device_rows], dtype=np.float64),
                mem_used_mib=np.array(
                    [np.nan if r.mem_used_mib is None else r.mem_used_mib for r in device_rows], dtype=np.float64
                ),
                power_limit_w=np.array(
                    [np.nan if r.power_limit_w is None else r.power_limit_w for r in device_rows], dtype=np.float64
                ),
                quality=tuple(r.quality for r in device_rows),
                processes=tuple(r.processes for r in device_rows),
                mig_instances=tuple(r.mig_instances for r in device_rows),
            )
        )
    return out


def rows_from_series(series: list[GpuSeries]) -> list[GpuRow]:
    """The v1 row form of columnar series (window-major: by seq, then device order), for code
    that still reads rows."""
    from telemetry.parsing import GpuRow

    rows: list[tuple[int, int, GpuRow]] = []
    for position, s in enumerate(series):
        for i in range(len(s)):
            limit = float(s.power_limit_w[i])
            mem_used = float(s.mem_used_mib[i])
            rows.append(
                (
                    int(s.seq[i]),
                    position,
                    GpuRow(
                        uuid=s.uuid,
                        index=s.index,
                        name=s.name,
                        seq=int(s.seq[i]),
                        start=from_us(int(s.start_us[i])),
                        end=from_us(int(s.end_us[i])),
                        energy_j=float(s.energy_j[i]),
                        counter_mj=int(s.counter_mj[i]) if s.has_counter[i] else None,
                        avg_power_w=float(s.avg_power_w[i]),
                        max_power_w=float(s.max_power_w[i]),
                        util_pct=float(s.util_pct[i]),
                        mem_util_pct=float(s.mem_util_pct[i]),
                        mem_used_mib=None if np.isnan(mem_used) else mem_used,
                        power_limit_w=None if np.isnan(limit) else limit,
                        quality=s.quality[i],
                        processes=s.processes[i],
                        mig_instances=s.mig_instances[i],
                        energy_covers=s.energy_covers,
                    ),
                )
            )
    rows.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in rows]
