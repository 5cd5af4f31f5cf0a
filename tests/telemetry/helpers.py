"""Builders for wire-format batches (docs/wire-format.md) used across ingest tests."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid

INGEST_URL = "/api/v1/ingest/batches"


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def gpu_entry(
    *,
    uuid_: str,
    index: int = 0,
    energy_j: float = 6000.0,
    duration_s: float = 10.0,
    processes=None,
    name: str = "NVIDIA H100 80GB HBM3",
    quality: str = "measured",
    **extra,
) -> dict:
    entry = {
        "uuid": uuid_,
        "index": index,
        "name": name,
        "energy_j": energy_j,
        "counter_mj": None,
        "avg_power_w": energy_j / duration_s,
        "max_power_w": energy_j / duration_s + 20,
        "util_pct": 95.0,
        "mem_util_pct": 50.0,
        "mem_used_mib": 60000.0,
        "power_limit_w": 700.0,
        "quality": quality,
        "processes": processes or [],
    }
    entry.update(extra)
    return entry


def window(
    *,
    seq: int,
    start: dt.datetime,
    duration_s: float = 10.0,
    gpus: list[dict],
    cpu_energy_j: float = 1000.0,
    dram_energy_j: float = 200.0,
    wall_energy_j: float | None = None,
    host_quality: str = "measured",
) -> dict:
    return {
        "seq": seq,
        "start": iso(start),
        "end": iso(start + dt.timedelta(seconds=duration_s)),
        "host": {
            "cpu_energy_j": cpu_energy_j,
            "dram_energy_j": dram_energy_j,
            "wall_energy_j": wall_energy_j,
            "cpu_util_pct": 30.0,
            "quality": host_quality,
        },
        "gpus": gpus,
    }


def batch(*, hostname: str, windows: list[dict], batch_id: str | None = None) -> dict:
    return {
        "batch_id": batch_id or str(uuid.uuid4()),
        "hostname": hostname,
        "agent_version": "test",
        "sent_at": iso(dt.datetime.now(dt.UTC)),
        "windows": windows,
    }


def to_v2(payload: dict) -> dict:
    """The same batch in wire format v2, as the agent builds it (telemetry.agent.wire)."""
    from telemetry.agent.wire import FORMAT, columns_v2

    columns = columns_v2(payload["windows"])
    assert columns is not None, "these windows cannot be carried exactly in v2"
    header = {key: value for key, value in payload.items() if key != "windows"}
    return {**header, "format": FORMAT, **columns}


def post_batch(client, secret: str, payload: dict):
    """POST a batch gzip-compressed with a host token, as the agent does."""
    return client.post(
        INGEST_URL,
        data=gzip.compress(json.dumps(payload).encode()),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


def stored_counts() -> tuple[int, int, int]:
    """(TelemetryBatch rows, GPU windows, host windows): what a rejected request must leave as it was."""
    from django.db import connection

    from telemetry.models import TelemetryBatch

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COALESCE(SUM(window_count), 0) FROM telemetry_gpuseries),"
            " (SELECT count(*) FROM telemetry_hostwindow)"
        )
        gpu, host = cursor.fetchone()
    return TelemetryBatch.objects.count(), gpu, host


def store_gpu_windows(
    *,
    device,
    windows: list[tuple[int, dt.datetime, dt.datetime, float, float, float]],
    batch_id: int = 1,
    quality: str = "measured",
) -> None:
    """Store raw GPU windows of one device as ingest does (``telemetry_gpuseries``, its partitions
    created): ``windows`` are (seq, start, end, energy_j, avg_power_w, util_pct), in seq order;
    max power = avg, no memory figures, counter, power limit or processes."""
    import numpy as np
    from django.db import connection

    from accounting.domain.timebase import to_us
    from telemetry.partitions import ensure_partitions
    from telemetry.series import GpuSeries
    from telemetry.services import GPU_SERIES_COPY_COLUMNS, copy_rows, gpu_series_rows, series_days

    n = len(windows)
    power_w = np.array([w[4] for w in windows], dtype=np.float64)
    no_list: list = []
    series = GpuSeries(
        uuid=device.uuid,
        index=device.index,
        name="",
        energy_covers="gpu",
        seq=np.array([w[0] for w in windows], dtype=np.int64),
        start_us=np.array([to_us(w[1]) for w in windows], dtype=np.int64),
        end_us=np.array([to_us(w[2]) for w in windows], dtype=np.int64),
        energy_j=np.array([w[3] for w in windows], dtype=np.float64),
        counter_mj=np.zeros(n, dtype=np.int64),
        has_counter=np.zeros(n, dtype=bool),
        avg_power_w=power_w,
        max_power_w=power_w.copy(),
        util_pct=np.array([w[5] for w in windows], dtype=np.float64),
        mem_util_pct=np.zeros(n),
        mem_used_mib=np.zeros(n),
        power_limit_w=np.full(n, np.nan),
        quality=(quality,) * n,
        processes=(no_list,) * n,
        mig_instances=(no_list,) * n,
    )
    ensure_partitions(days=series_days([series]))
    with connection.cursor() as cursor:
        copy_rows(
            cursor=cursor.cursor,
            table="telemetry_gpuseries",
            columns=GPU_SERIES_COPY_COLUMNS,
            rows=gpu_series_rows(
                batch_pk=batch_id, host_id=device.host_id, series=[series], device_ids={device.uuid: device.pk}
            ),
        )
