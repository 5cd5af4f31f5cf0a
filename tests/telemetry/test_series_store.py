"""The columnar raw GPU store: one row of arrays per (batch, device, UTC day), written by ingest with
one binary COPY; a batch crossing midnight is split into one row per day's partition; retention drops
whole days; the attribution mappers read back exactly the windows that were sent."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection

from accounting.domain.timebase import to_us
from accounting.domain.types import GpuWindowIn, MigInstanceSample, PreviousWindow, ProcessSample, Quality
from accounting.mappers import GpuWindowRow, gpu_series_for_batches, previous_windows_for_many
from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from telemetry.partitions import drop_expired_partitions
from tests.factories import DeviceFactory, HardwareModelFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db(transaction=False)
S10 = dt.timedelta(seconds=10)
PROCS = [{"pid": 41, "sm_util_pct": 62.5, "job_key": "slurm:77"}]
MIG = [
    {
        "gpu_instance_id": 1,
        "compute_instance_id": 0,
        "profile": "3g.40gb",
        "slices": 3,
        "activity": 0.5,
        "job_keys": ["slurm:77"],
    }
]
MIG_STORED = [{**MIG[0], "uuid": None, "mem_used_mib": None}]  # as ingest normalises it


def _json(value):
    """jsonb comes back as text through Django's connection."""
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture
def agent():
    host = HostFactory()
    d0 = DeviceFactory(host=host, index=0, hardware_model=HardwareModelFactory(idle_power_w=70.0))
    d1 = DeviceFactory(host=host, index=1, hardware_model=None)
    issued = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host)
    return host, d0, d1, issued.secret


def _series_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text, device_id, first_start_at, last_end_at, window_count, seq, start_us, "
            "end_us, energy_j, counter_mj, avg_power_w, max_power_w, util_pct, mem_util_pct, mem_used_mib, "
            "power_limit_w, quality, processes, mig_instances, energy_covers "
            "FROM telemetry_gpuseries ORDER BY device_id, first_start_at"
        )
        return [(*r[:17], _json(r[17]), _json(r[18]), r[19]) for r in cursor.fetchall()]


def test_a_batch_is_stored_as_one_row_of_arrays_per_device(client, agent):
    host, d0, d1, secret = agent
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    day = f"{start:%Y%m%d}"
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=start,
                gpus=[
                    gpu_entry(uuid_=d0.uuid, energy_j=6000.0, counter_mj=5_000_000, processes=PROCS),
                    gpu_entry(uuid_=d1.uuid, index=1, energy_j=100.0, power_limit_w=None, quality="modelled"),
                ],
            ),
            window(
                seq=2,
                start=start + S10,
                gpus=[
                    gpu_entry(uuid_=d0.uuid, energy_j=6500.5, processes=PROCS),
                    gpu_entry(uuid_=d1.uuid, index=1, energy_j=200.0, power_limit_w=None, mig_instances=MIG),
                ],
            ),
            window(
                seq=3,
                start=start + 2 * S10,
                gpus=[
                    gpu_entry(uuid_=d0.uuid, energy_j=7000.0, counter_mj=5_013_500),
                    gpu_entry(uuid_=d1.uuid, index=1, energy_j=300.0, power_limit_w=None, mig_instances=MIG),
                ],
            ),
        ],
    )
    response = post_batch(client, secret, payload)
    assert response.status_code == 202, response.content
    assert response.json()["accepted_windows"] == 6
    s0 = to_us(start)
    starts = [s0, s0 + 10_000_000, s0 + 20_000_000]
    ends = [s0 + 10_000_000, s0 + 20_000_000, s0 + 30_000_000]
    assert _series_rows() == [
        (
            f"telemetry_gpuseries_p{day}",
            d0.pk,
            start,
            start + 3 * S10,
            3,
            [1, 2, 3],
            starts,
            ends,
            [6000.0, 6500.5, 7000.0],
            [5_000_000, None, 5_013_500],
            [600.0, 650.05, 700.0],
            [620.0, 670.05, 720.0],
            [95.0, 95.0, 95.0],
            [50.0, 50.0, 50.0],
            [60000.0, 60000.0, 60000.0],
            [700.0, 700.0, 700.0],
            ["measured", "measured", "measured"],
            [[0, PROCS], [2, []]],
            [],
            "gpu",
        ),
        (
            f"telemetry_gpuseries_p{day}",
            d1.pk,
            start,
            start + 3 * S10,
            3,
            [1, 2, 3],
            starts,
            ends,
            [100.0, 200.0, 300.0],
            None,
            [10.0, 20.0, 30.0],
            [30.0, 40.0, 50.0],
            [95.0, 95.0, 95.0],
            [50.0, 50.0, 50.0],
            [60000.0, 60000.0, 60000.0],
            None,
            ["modelled", "measured", "measured"],
            [],
            [[1, MIG_STORED]],
            "gpu",
        ),
    ]
    stored = TelemetryBatch.objects.get()
    assert (stored.gpu_window_count, stored.gpu_energy_j) == (6, 20100.5)
    # The view of the old per-window table unnests the same windows.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT device_id, seq, start_at, counter_mj, power_limit_w, processes, mig_instances "
            "FROM telemetry_gpuwindow ORDER BY device_id, seq"
        )
        assert [(*r[:5], _json(r[5]), _json(r[6])) for r in cursor.fetchall()] == [
            (d0.pk, 1, start, 5_000_000, 700.0, PROCS, []),
            (d0.pk, 2, start + S10, None, 700.0, PROCS, []),
            (d0.pk, 3, start + 2 * S10, 5_013_500, 700.0, [], []),
            (d1.pk, 1, start, None, None, [], []),
            (d1.pk, 2, start + S10, None, None, [], MIG_STORED),
            (d1.pk, 3, start + 2 * S10, None, None, [], MIG_STORED),
        ]

    # Attribution reads back the same domain windows.
    windows = [row for s in gpu_series_for_batches(batch_pks=[stored.pk])[stored.pk] for row in s.rows()]
    proc = (ProcessSample(pid=41, sm_util_pct=62.5, job_key="slurm:77"),)
    mig = (
        MigInstanceSample(
            gpu_instance_id=1, compute_instance_id=0, slices=3, activity=0.5, job_keys=frozenset({"slurm:77"})
        ),
    )

    def gpu_row(device, seq, energy_j, power_w, quality, processes, mig_instances, idle_w, counter_mj):
        return GpuWindowRow(
            window=GpuWindowIn(
                device_id=device.pk,
                seq=seq,
                start=start + (seq - 1) * S10,
                end=start + seq * S10,
                energy_j=energy_j,
                avg_power_w=power_w,
                util_pct=95.0,
                quality=quality,
                idle_power_w=idle_w,
                processes=processes,
                mig_instances=mig_instances,
                energy_covers="gpu",
            ),
            counter_mj=counter_mj,
        )

    assert windows == [
        gpu_row(d0, 1, 6000.0, 600.0, Quality.MEASURED, proc, (), 70.0, 5_000_000),
        gpu_row(d0, 2, 6500.5, 650.05, Quality.MEASURED, proc, (), 70.0, None),
        gpu_row(d0, 3, 7000.0, 700.0, Quality.MEASURED, (), (), 70.0, 5_013_500),
        gpu_row(d1, 1, 100.0, 10.0, Quality.MODELLED, (), (), 0.0, None),
        gpu_row(d1, 2, 200.0, 20.0, Quality.MEASURED, (), mig, 0.0, None),
        gpu_row(d1, 3, 300.0, 30.0, Quality.MEASURED, (), mig, 0.0, None),
    ]
    # The last window ending by a time: the series' own last window, or an earlier one of it.
    assert previous_windows_for_many(
        requests=[(1, [d0.pk, d1.pk], start + 3 * S10), (2, [d0.pk], start + 2 * S10 + dt.timedelta(seconds=5))]
    ) == {
        1: {
            d0.pk: PreviousWindow(end=start + 3 * S10, avg_power_w=700.0, counter_mj=5_013_500, util_pct=95.0),
            d1.pk: PreviousWindow(end=start + 3 * S10, avg_power_w=30.0, counter_mj=None, util_pct=95.0),
        },
        2: {d0.pk: PreviousWindow(end=start + 2 * S10, avg_power_w=650.05, counter_mj=None, util_pct=95.0)},
    }


def test_a_batch_crossing_midnight_is_split_into_each_days_partition_and_retention_drops_a_day(client, agent):
    host, d0, _, secret = agent
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    first = midnight - 2 * S10
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(seq=seq, start=first + (seq - 1) * S10, gpus=[gpu_entry(uuid_=d0.uuid, energy_j=1000.0 * seq)])
            for seq in (1, 2, 3, 4)
        ],
    )
    # The second window ends exactly at midnight; a window starting 5 s before it would cross it.
    payload["windows"][1]["end"] = (midnight + dt.timedelta(seconds=5)).isoformat()
    payload["windows"][2]["start"] = (midnight + dt.timedelta(seconds=5)).isoformat()
    response = post_batch(client, secret, payload)
    assert response.status_code == 202, response.content
    before, after = f"{midnight - S10:%Y%m%d}", f"{midnight:%Y%m%d}"
    rows = [(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in _series_rows()]
    m = to_us(midnight)
    assert rows == [
        (
            f"telemetry_gpuseries_p{before}",
            first,
            midnight + dt.timedelta(seconds=5),
            2,
            [1, 2],
            [m - 20_000_000, m - 10_000_000],
            [m - 10_000_000, m + 5_000_000],
            [1000.0, 2000.0],
        ),
        (
            f"telemetry_gpuseries_p{after}",
            midnight + dt.timedelta(seconds=5),
            midnight + 2 * S10,
            2,
            [3, 4],
            [m + 5_000_000, m + 10_000_000],
            [m + 10_000_000, m + 20_000_000],
            [3000.0, 4000.0],
        ),
    ]
    # Attribution reads the batch's four windows from both rows, in order.
    stored = TelemetryBatch.objects.get()
    assert [
        w.window.seq
        for w in [row for s in gpu_series_for_batches(batch_pks=[stored.pk])[stored.pk] for row in s.rows()]
    ] == [1, 2, 3, 4]

    # Retention keeps days from ``today - retention``: the day before midnight goes, with exactly its windows.
    dropped = drop_expired_partitions(today=midnight.date() + dt.timedelta(days=1), retention_days=1)
    assert dropped == [f"telemetry_hostwindow_p{before}", f"telemetry_gpuseries_p{before}"]  # the lock order
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq, energy_j FROM telemetry_gpuwindow ORDER BY seq")
        assert cursor.fetchall() == [(3, 3000.0), (4, 4000.0)]
