"""Bulk exports of the ledger: one row per job and UTC hour (``job-hours``, from JobHour) or one
per job (``jobs``, from Job and its JobFootprint), as CSV or Parquet, streamed.

Pages are cut by time: rows of [from, to) in key order ((hour, job id) or (started_at, job id)),
at most ``limit`` per page; a page that stops short of ``to`` names the key its successor starts
at, as an opaque ``cursor``. Nothing is held in memory but one chunk of rows (CSV) or one row
group (Parquet; a Parquet file needs its footer, written after the last row group, so the
stream ends with it). Who sees what is the one access rule (``accounting.selectors.access``);
``team`` narrows to one team the principal sees. The columns, their types and units are
``COLUMNS`` here, documented in docs/exports.md; the Parquet schema carries each column's unit
as field metadata (``unit``) and the method version in the file's metadata.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from accounting.models import JobHour
from accounting.selectors.access import Principal, jobs_visible

CHUNK_ROWS = 5000  # rows read per database round trip and per Parquet row group


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "timestamp" | "int" | "float" | "string" | "bool"
    unit: str  # "" for labels
    description: str
    source: str  # the ORM path (values_list) the column reads


JOB_HOUR_COLUMNS: tuple[Column, ...] = (
    Column("hour", "timestamp", "UTC", "Start of the UTC hour", "hour"),
    Column("job_id", "int", "", "CarbonLedger job id", "job_id"),
    Column("scheduler_job_id", "string", "", "The scheduler's job id", "job__scheduler_job_id"),
    Column("cluster", "string", "", "Cluster slug", "job__cluster__slug"),
    Column("site", "string", "", "Site slug", "job__cluster__site__slug"),
    Column("team", "string", "", "Team slug", "job__team__slug"),
    Column("kind", "string", "", "training | inference", "job__kind"),
    Column("family", "string", "", "llm | moe | recommender | other", "job__family"),
    Column("energy_j", "float", "J", "Energy charged in the hour: IT + facility (PUE)", "energy_j"),
    Column("gpu_energy_j", "float", "J", "GPU energy (active + idle baseline)", "gpu_energy_j"),
    Column("gpu_idle_energy_j", "float", "J", "GPU idle baseline of held devices", "gpu_idle_energy_j"),
    Column("host_energy_j", "float", "J", "Host share (CPU, DRAM, unmeasured wall)", "host_energy_j"),
    Column("facility_energy_j", "float", "J", "Facility overhead: (PUE - 1) x IT energy", "facility_energy_j"),
    Column("co2e_operational_g", "float", "gCO2e", "Operational carbon (location-based)", "co2e_operational_g"),
    Column("co2e_embodied_g", "float", "gCO2e", "Embodied carbon, time share of held devices", "co2e_embodied_g"),
    Column("co2e_low_g", "float", "gCO2e", "Low end of the total's uncertainty band", "co2e_low_g"),
    Column("co2e_high_g", "float", "gCO2e", "High end of the total's uncertainty band", "co2e_high_g"),
    Column(
        "intensity_g_per_kwh", "float", "gCO2e/kWh", "Grid intensity applied (energy-weighted)", "intensity_g_per_kwh"
    ),
    Column("held_s", "float", "device-s", "Device-seconds held (embodied time share)", "held_s"),
    Column(
        "measured_gpu_energy_j", "float", "J", "Part of gpu_energy_j from measured windows", "measured_gpu_energy_j"
    ),
)

JOB_COLUMNS: tuple[Column, ...] = (
    Column("job_id", "int", "", "CarbonLedger job id", "id"),
    Column("scheduler_job_id", "string", "", "The scheduler's job id", "scheduler_job_id"),
    Column("cluster", "string", "", "Cluster slug", "cluster__slug"),
    Column("site", "string", "", "Site slug", "cluster__site__slug"),
    Column("team", "string", "", "Team slug", "team__slug"),
    Column("username", "string", "", "Scheduler user", "username"),
    Column("name", "string", "", "Job name", "name"),
    Column("kind", "string", "", "training | inference", "kind"),
    Column("family", "string", "", "llm | moe | recommender | other", "family"),
    Column("status", "string", "", "pending | running | completed | failed | preempted | cancelled", "status"),
    Column("started_at", "timestamp", "UTC", "Start", "started_at"),
    Column("ended_at", "timestamp", "UTC", "End (empty while running)", "ended_at"),
    Column("energy_j", "float", "J", "Energy: IT + facility (PUE)", "footprint__energy_j"),
    Column("gpu_energy_j", "float", "J", "GPU energy (active + idle baseline)", "footprint__gpu_energy_j"),
    Column("host_energy_j", "float", "J", "Host share", "footprint__host_energy_j"),
    Column("facility_energy_j", "float", "J", "Facility overhead", "footprint__facility_energy_j"),
    Column(
        "co2e_operational_g", "float", "gCO2e", "Operational carbon (location-based)", "footprint__co2e_operational_g"
    ),
    Column("co2e_embodied_g", "float", "gCO2e", "Embodied carbon", "footprint__co2e_embodied_g"),
    Column("co2e_low_g", "float", "gCO2e", "Low end of the band", "footprint__co2e_low_g"),
    Column("co2e_high_g", "float", "gCO2e", "High end of the band", "footprint__co2e_high_g"),
    Column("device_hours", "float", "device-h", "Device-hours held", "footprint__device_hours"),
    Column("measured_fraction", "float", "1", "Share of GPU energy measured (0..1)", "footprint__measured_fraction"),
    Column("is_final", "bool", "", "Footprint final (job ended, telemetry in)", "footprint__is_final"),
    Column("method_version", "string", "", "Accounting method version", "footprint__method_version"),
    Column("primary_unit", "string", "", "The unit SCI is per", "primary_unit"),
    Column("units", "string", "", "Functional units reported, JSON object", "units"),
)

DATASETS: dict[str, tuple[Column, ...]] = {"job-hours": JOB_HOUR_COLUMNS, "jobs": JOB_COLUMNS}
_TIME_KEY = {"job-hours": ("hour", "job_id"), "jobs": ("started_at", "id")}


class CursorInvalid(ValueError):
    pass


def cursor_encode(at: dt.datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_text, id_text = raw.split("|")
        at = dt.datetime.fromisoformat(at_text)
        row_id = int(id_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorInvalid("not a cursor of this export") from exc
    if at.tzinfo is None or not 0 < row_id < 2**63:
        raise CursorInvalid("not a cursor of this export")
    return at, row_id


@dataclass(frozen=True)
class ExportPage:
    dataset: str
    columns: tuple[Column, ...]
    queryset: QuerySet[Any]  # this page's rows, in key order, as values_list tuples
    next_cursor: str | None


def export_page(
    *,
    principal: Principal,
    dataset: str,
    start: dt.datetime,
    end: dt.datetime,
    team_ids: list[int] | None = None,
    cursor: str | None = None,
    limit: int,
) -> ExportPage:
    """The page of ``dataset`` rows of [start, end) the principal sees (``team_ids``: only
    these teams), from ``cursor`` on (``CursorInvalid`` for a cursor that is not one)."""
    columns = DATASETS[dataset]
    time_field, id_field = _TIME_KEY[dataset]
    visible = jobs_visible(principal=principal)
    if team_ids is not None:
        visible = visible.filter(team_id__in=team_ids)
    rows: QuerySet[Any]
    if dataset == "job-hours":
        rows = JobHour.objects.filter(job__in=visible.values("pk"))
    else:
        rows = visible
    rows = rows.filter(**{f"{time_field}__gte": start, f"{time_field}__lt": end})
    if cursor is not None:
        at, row_id = cursor_decode(cursor)
        rows = rows.filter(Q(**{f"{time_field}__gt": at}) | Q(**{time_field: at, f"{id_field}__gte": row_id}))
    rows = rows.order_by(time_field, id_field)
    after = rows.values_list(time_field, id_field)[limit : limit + 1]
    following = next(iter(after), None)
    return ExportPage(
        dataset=dataset,
        columns=columns,
        queryset=rows.values_list(*(c.source for c in columns))[:limit],
        next_cursor=cursor_encode(following[0], following[1]) if following else None,
    )


def _cell(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.kind == "timestamp":
        return value.astimezone(dt.UTC)
    if column.name == "units":
        return json.dumps(value, sort_keys=True)
    return value


def _rows(page: ExportPage) -> Iterator[list[Any]]:
    for row in page.queryset.iterator(chunk_size=CHUNK_ROWS):
        yield [_cell(c, v) for c, v in zip(page.columns, row, strict=True)]


def _csv_text(column: Column, value: Any) -> Any:
    if value is None:
        return ""
    if column.kind == "timestamp":
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if column.kind == "float":
        return repr(float(value))  # shortest text that reads back to the same double
    if column.kind == "bool":
        return "true" if value else "false"
    return value


class _Sink(io.RawIOBase):
    """A write-only stream that hands out what was written so far (Parquet row groups)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.size

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def export_csv_stream(page: ExportPage) -> Iterator[bytes]:
    """The page as CSV (RFC 4180, header row, UTC ISO 8601 times, empty for null), in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.name for c in page.columns])
    for n, row in enumerate(_rows(page), start=1):
        writer.writerow([_csv_text(c, v) for c, v in zip(page.columns, row, strict=True)])
        if n % 1000 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def parquet_schema(columns: tuple[Column, ...], *, dataset: str) -> Any:
    import pyarrow as pa  # read only by the Parquet exports

    kinds = {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
    }
    fields = [pa.field(c.name, kinds[c.kind], metadata={"unit": c.unit, "description": c.description}) for c in columns]
    return pa.schema(fields, metadata={"carbonledger.dataset": dataset, "carbonledger.schema_version": "1"})


def export_parquet_stream(page: ExportPage) -> Iterator[bytes]:
    """The page as one Parquet file, a row group per ``CHUNK_ROWS`` rows, sent as each is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(page.columns, dataset=page.dataset)
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    batch: list[list[Any]] = []

    def flush() -> None:
        arrays = [pa.array([row[i] for row in batch], type=schema.field(i).type) for i in range(len(schema))]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        batch.clear()

    for row in _rows(page):
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            flush()
            yield sink.take()
    if batch:
        flush()
    writer.close()
    yield sink.take()
