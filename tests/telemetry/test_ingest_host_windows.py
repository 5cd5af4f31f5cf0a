"""Host windows ride on the batch row's INSERT as JSON (telemetry/services.py,
``_batch_insert_and_host_advance``): every value arrives exactly as parsed, in both wire formats."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, post_batch, to_v2, window

pytestmark = pytest.mark.django_db

# (cpu_energy_j, dram_energy_j, wall_energy_j, cpu_util_pct, quality): values whose decimal
# forms are long or that a lossy path (text rounding, float4, numeric) would change.
HOST_VALUES = [
    (0.1, 2 / 3, None, 33.333333333333336, "measured"),
    (1234.5678901234567, 1e-300, 7.000000000000001, 0.0, "modelled"),
    (5e300, 0.0, 123456789.12345679, 100.0, "interpolated"),
]


@pytest.mark.parametrize("wire", ["v1", "v2"])
def test_host_windows_are_stored_exactly(client, wire):
    host = HostFactory()
    device = DeviceFactory(host=host, index=0, uuid=f"GPU-hw-{wire}")
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    start = dt.datetime.now(dt.UTC).replace(second=0) - dt.timedelta(minutes=30, microseconds=876_544)
    windows = []
    for i, (cpu, dram, wall, util, quality) in enumerate(HOST_VALUES):
        w = window(
            seq=i + 1,
            start=start + dt.timedelta(seconds=10 * i),
            gpus=[gpu_entry(uuid_=device.uuid)],
            cpu_energy_j=cpu,
            dram_energy_j=dram,
            wall_energy_j=wall,
            host_quality=quality,
        )
        w["host"]["cpu_util_pct"] = util
        windows.append(w)
    payload = batch(hostname=host.hostname, windows=windows)
    response = post_batch(client, secret, to_v2(payload) if wire == "v2" else payload)
    assert response.status_code == 202, response.content
    record = TelemetryBatch.objects.get(batch_id=response.json()["batch_id"])
    assert record.host_window_count == 3
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT batch_id, host_id, seq, start_at, end_at, cpu_energy_j, dram_energy_j, wall_energy_j,"
            " cpu_util_pct, quality FROM telemetry_hostwindow ORDER BY seq"
        )
        stored = cursor.fetchall()
    assert stored == [
        (
            record.pk,
            host.pk,
            i + 1,
            start + dt.timedelta(seconds=10 * i),
            start + dt.timedelta(seconds=10 * i + 10),
            cpu,
            dram,
            wall,
            util,
            quality,
        )
        for i, (cpu, dram, wall, util, quality) in enumerate(HOST_VALUES)
    ]
