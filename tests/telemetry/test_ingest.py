"""Ingest API: durable storage, idempotency, strict validation that changes nothing on reject."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math

import pytest
from django.db import connection

from accounting.models import ApiToken, Device
from accounting.services.allocations import pending_device_uuid
from accounting.tokens import token_create, token_lookup
from telemetry.models import HostStream, TelemetryBatch
from telemetry.parsing import BatchError, parse_batch
from telemetry.services import batch_ingest
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, window

pytestmark = pytest.mark.django_db(transaction=False)
URL = "/api/v1/ingest/batches"


def _start() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)


@pytest.fixture
def host_setup():
    host = HostFactory()
    device = DeviceFactory(host=host, index=0)
    issued = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host)
    return host, device, issued.secret


def _post(client, secret, payload, *, gzip_it=True, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    if gzip_it:
        body = gzip.compress(body)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.post(URL, data=body, content_type="application/json", **headers)


def _counts() -> tuple[int, int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_gpuwindow")
        gpu = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM telemetry_hostwindow")
        host = cursor.fetchone()[0]
    return TelemetryBatch.objects.count(), gpu, host


def test_batch_is_stored_and_a_resend_is_acknowledged_without_double_counting(client, host_setup):
    host, device, secret = host_setup
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)]),
            window(
                seq=2, start=_start() + dt.timedelta(seconds=10), gpus=[gpu_entry(uuid_=device.uuid, energy_j=5000.0)]
            ),
        ],
    )
    first = _post(client, secret, payload)
    assert first.status_code == 202, first.content
    assert first.json() == {"batch_id": payload["batch_id"], "accepted_windows": 2, "duplicate": False}
    again = _post(client, secret, payload)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert _counts() == (1, 2, 2)
    stored = TelemetryBatch.objects.get()
    assert stored.gpu_energy_j == 11000.0
    assert stored.host_energy_j == 2400.0
    assert (stored.first_seq, stored.last_seq) == (1, 2)
    assert HostStream.objects.get(host=host).last_seq == 2


def test_stored_window_values_round_trip_exactly(client, host_setup):
    """Binary COPY writes each column as PostgreSQL's own type: read back what was sent."""
    host, device, secret = host_setup
    start = _start().replace(microsecond=250_000)
    processes = [
        {"pid": 41, "sm_util_pct": 62.5, "job_key": "slurm:77"},
        {"pid": 42, "sm_util_pct": None, "job_key": None},
    ]
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=7,
                start=start,
                gpus=[
                    gpu_entry(
                        uuid_=device.uuid,
                        energy_j=6000.5,
                        counter_mj=2**62 + 3,
                        processes=processes,
                        power_limit_w=None,
                        quality="integrated",
                    )
                ],
            )
        ],
    )
    payload["windows"][0]["start"] = start.isoformat()
    assert _post(client, secret, payload).status_code == 202
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq, start_at, end_at, energy_j, counter_mj, avg_power_w, max_power_w, util_pct, "
            "mem_used_mib, power_limit_w, quality, jsonb_typeof(processes), processes FROM telemetry_gpuwindow"
        )
        row = cursor.fetchone()
        cursor.execute("SELECT seq, cpu_energy_j, wall_energy_j, quality FROM telemetry_hostwindow")
        host_row = cursor.fetchone()
    assert row[:11] == (
        7,
        start,
        start + dt.timedelta(seconds=10),
        6000.5,
        2**62 + 3,
        600.05,
        620.05,
        95.0,
        60000.0,
        None,
        "integrated",
    )
    assert row[11] == "array"
    stored_processes = json.loads(row[12]) if isinstance(row[12], str) else row[12]
    assert stored_processes == processes
    assert host_row == (7, 1000.0, None, "measured")


def test_integer_json_numbers_in_float_fields_are_stored_as_floats(client, host_setup):
    host, device, secret = host_setup
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=_start(),
                gpus=[
                    gpu_entry(
                        uuid_=device.uuid,
                        energy_j=6000,
                        avg_power_w=600,
                        max_power_w=640,
                        util_pct=95,
                        mem_used_mib=60000,
                        power_limit_w=700,
                    )
                ],
            )
        ],
    )
    payload["windows"][0]["host"].update(cpu_energy_j=1000, dram_energy_j=200, cpu_util_pct=35)
    assert _post(client, secret, payload).status_code == 202
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT energy_j, avg_power_w, max_power_w, util_pct, mem_used_mib, power_limit_w FROM telemetry_gpuwindow"
        )
        assert cursor.fetchone() == (6000.0, 600.0, 640.0, 95.0, 60000.0, 700.0)
        cursor.execute("SELECT cpu_energy_j, dram_energy_j, cpu_util_pct FROM telemetry_hostwindow")
        assert cursor.fetchone() == (1000.0, 200.0, 35.0)


def test_unknown_device_is_registered_for_the_tokens_own_host_and_replaces_a_placeholder(client, host_setup):
    host, _, secret = host_setup
    placeholder = Device.objects.create(host=host, uuid=pending_device_uuid(host_id=host.pk, index=3), index=3)
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=_start(),
                gpus=[gpu_entry(uuid_="GPU-new-3", index=3), gpu_entry(uuid_="GPU-new-4", index=4)],
            )
        ],
    )
    assert _post(client, secret, payload).status_code == 202
    placeholder.refresh_from_db()
    assert placeholder.uuid == "GPU-new-3"
    assert Device.objects.get(uuid="GPU-new-4").host == host


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda p: p["windows"][0]["gpus"][0].update(energy_j=-1.0), 400, "windows[0].gpus[0].energy_j"),
        (lambda p: p["windows"][0]["gpus"][0].update(energy_j="12"), 400, "windows[0].gpus[0].energy_j"),
        (lambda p: p["windows"][0]["gpus"][0].update(util_pct=101), 400, "windows[0].gpus[0].util_pct"),
        (lambda p: p["windows"][0]["host"].update(quality="guessed"), 400, "windows[0].host.quality"),
        (lambda p: p["windows"][0].update(end=p["windows"][0]["start"]), 400, "windows[0].end"),
        (lambda p: p["windows"][1].update(seq=1), 400, "windows[1].seq"),
        (lambda p: p["windows"][1].update(start=p["windows"][0]["start"]), 400, "windows[1].start"),
        (lambda p: p.update(batch_id="not-a-uuid"), 400, "batch_id"),
        (lambda p: p.update(windows=[]), 400, "windows"),
        (lambda p: p["windows"][0].update(start="2026-11-26T10:00:00"), 400, "windows[0].start"),
        (lambda p: p["windows"][0]["gpus"][0].update(energy_j=1e9), 400, "windows[0].gpus[0].energy_j"),
        (lambda p: p.update(hostname="someone-else"), 403, "hostname"),
    ],
)
def test_bad_batches_get_a_4xx_naming_the_field_and_change_nothing(client, host_setup, mutate, status, field):
    host, device, secret = host_setup
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)]),
            window(seq=2, start=_start() + dt.timedelta(seconds=10), gpus=[gpu_entry(uuid_=device.uuid)]),
        ],
    )
    mutate(payload)
    response = _post(client, secret, payload)
    assert response.status_code == status, response.content
    body = response.json()
    assert body["errors"][0]["field"] == field
    assert _counts() == (0, 0, 0)
    assert not HostStream.objects.filter(host=host, last_seq__isnull=False).exists()


def test_nan_and_infinity_are_rejected(client, host_setup):
    host, device, secret = host_setup
    payload = batch(
        hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)])]
    )
    text = json.dumps(payload).replace('"energy_j": 6000.0', '"energy_j": NaN')
    assert "NaN" in text
    response = _post(client, secret, None, raw=text.encode())
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "windows[0].gpus[0].energy_j"
    assert math.isnan(float("nan"))
    assert _counts() == (0, 0, 0)


@pytest.mark.parametrize("gzip_it", [False, True])
def test_a_post_without_a_body_is_a_400_naming_the_body(client, host_setup, gzip_it):
    """The schema marks the body required; a POST with none (or an empty gzip stream) is refused."""
    _host, _device, secret = host_setup
    response = _post(client, secret, None, gzip_it=gzip_it, raw=b"")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "body", "message": "not valid JSON: Expecting value: line 1 column 1 (char 0)"}
    ]
    assert _counts() == (0, 0, 0)


def test_future_and_too_old_windows_are_rejected(client, host_setup):
    host, device, secret = host_setup
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    payload = batch(hostname=host.hostname, windows=[window(seq=1, start=future, gpus=[gpu_entry(uuid_=device.uuid)])])
    response = _post(client, secret, payload)
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "field": "windows[0].end",
        "message": "is in the future beyond the 300 s clock-skew allowance",
    }
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    payload = batch(hostname=host.hostname, windows=[window(seq=1, start=old, gpus=[gpu_entry(uuid_=device.uuid)])])
    response = _post(client, secret, payload)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "windows[0].start"
    assert _counts() == (0, 0, 0)


def test_overlap_with_already_ingested_windows_is_a_conflict(client, host_setup):
    host, device, secret = host_setup
    first = batch(hostname=host.hostname, windows=[window(seq=5, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)])])
    assert _post(client, secret, first).status_code == 202
    replay = batch(hostname=host.hostname, windows=[window(seq=5, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)])])
    response = _post(client, secret, replay)
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "windows[0].seq"
    overlapping = batch(
        hostname=host.hostname,
        windows=[window(seq=6, start=_start() + dt.timedelta(seconds=5), gpus=[gpu_entry(uuid_=device.uuid)])],
    )
    response = _post(client, secret, overlapping)
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "windows[0].start"
    assert _counts() == (1, 1, 1)


def test_gzip_bomb_is_refused_with_413(client, host_setup, settings):
    _host, _device, secret = host_setup
    settings.INGEST_MAX_BODY_BYTES = 64 * 1024
    bomb = gzip.compress(b"[" + b"0," * 200_000 + b"0]")
    assert len(bomb) < 64 * 1024
    response = client.post(
        URL,
        data=bomb,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"
    assert _counts() == (0, 0, 0)


def test_authentication_and_scope(client, host_setup):
    host, device, _secret = host_setup
    payload = batch(
        hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)])]
    )
    assert client.post(URL, data=json.dumps(payload), content_type="application/json").status_code == 401
    assert _post(client, "clk_wrong", payload).status_code == 401
    scheduler = token_create(
        org=host.cluster.site.org, name="slurm", scope=ApiToken.Scope.SCHEDULER, cluster=host.cluster
    )
    assert _post(client, scheduler.secret, payload).status_code == 403
    other_host = HostFactory(cluster=host.cluster)
    other = token_create(org=host.cluster.site.org, name="other", scope=ApiToken.Scope.HOST, host=other_host)
    response = _post(client, other.secret, payload)
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "hostname"
    assert _counts() == (0, 0, 0)


def test_a_device_of_another_host_cannot_be_posted(client, host_setup):
    host, _device, secret = host_setup
    foreign = DeviceFactory(host=HostFactory(cluster=host.cluster))
    payload = batch(
        hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=foreign.uuid)])]
    )
    response = _post(client, secret, payload)
    assert response.status_code == 403
    assert _counts() == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_host_deleted_after_its_token_was_read_is_refused_and_nothing_is_stored(host_setup):
    """The token lookup read the host (name and devices); the host is deleted before the batch's
    transaction, whose foreign keys then fail at COMMIT: a 403, not a 500, and nothing stored."""
    host, device, secret = host_setup
    token = token_lookup(raw=secret)
    assert token is not None and token.token_host is not None
    payload = batch(
        hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=[gpu_entry(uuid_=device.uuid)])]
    )
    now = _start() + dt.timedelta(minutes=1)
    parsed = parse_batch(data=payload, now=now, clock_skew_s=300.0, retention_days=30, max_windows=100)
    host.delete()
    with pytest.raises(BatchError) as refused:
        batch_ingest(token=token, batch=parsed, now=now)
    assert (refused.value.status, refused.value.field) == (403, "Authorization")
    assert _counts() == (0, 0, 0)
    assert not HostStream.objects.exists()


def test_invalid_json_and_encoding(client, host_setup):
    _, _, secret = host_setup
    assert _post(client, secret, None, raw=b"{not json").status_code == 400
    response = client.post(
        URL,
        data=b"xx",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_CONTENT_ENCODING="br",
    )
    assert response.status_code == 415
    response = client.post(
        URL,
        data=b"not gzip",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 400


def test_process_without_per_process_utilisation_is_accepted(client, host_setup):
    """Some drivers report processes but no per-process SM utilisation: the agent sends null."""
    host, device, secret = host_setup
    gpu = gpu_entry(
        uuid_=device.uuid,
        processes=[{"pid": 7, "sm_util_pct": None, "job_key": "slurm:1"}],
        mig_instances=[{"uuid": "MIG-1", "profile": "1g.10gb"}],
    )
    payload = batch(hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=[gpu])])
    assert _post(client, secret, payload).status_code == 202
    assert _counts() == (1, 1, 1)


def test_new_devices_get_their_catalog_model_and_unknown_names_none(client, host_setup):
    from accounting.models import HardwareModel

    host, _, secret = host_setup
    h200 = HardwareModel.objects.create(
        key="h200-sxm-141gb",
        name="NVIDIA H200 SXM",
        vendor="NVIDIA",
        match_names=["NVIDIA H200"],
        embodied_kg=200,
        embodied_low_kg=150,
        embodied_high_kg=250,
        embodied_kind="estimate",
        embodied_source="t",
    )
    payload = batch(
        hostname=host.hostname,
        windows=[
            window(
                seq=1,
                start=_start(),
                gpus=[
                    gpu_entry(uuid_="GPU-h200", index=1, name="NVIDIA H200"),
                    gpu_entry(uuid_="GPU-nvl", index=2, name="NVIDIA H200 NVL"),
                ],
            )
        ],
    )
    assert _post(client, secret, payload).status_code == 202
    assert Device.objects.get(uuid="GPU-h200").hardware_model == h200
    # A variant the catalog does not know is not silently taken for its neighbour.
    assert Device.objects.get(uuid="GPU-nvl").hardware_model is None
