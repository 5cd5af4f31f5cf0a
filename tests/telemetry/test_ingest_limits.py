"""Ingest under hostile or unusual input (issue 19): each refusal is a 4xx naming the field, and
changes nothing; a chunked body is read like any other."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
from django.test.client import FakePayload

from accounting.models import ApiToken, Device
from accounting.tokens import token_create
from telemetry.models import HostStream
from telemetry.parsing import MAX_DEVICE_INDEX
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import INGEST_URL, batch, gpu_entry, post_batch, stored_counts, window

pytestmark = pytest.mark.django_db


def _start() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)


@pytest.fixture
def host_setup():
    host = HostFactory()
    device = DeviceFactory(host=host, index=0)
    issued = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host)
    return host, device, issued.secret


def _payload(host, gpus: list[dict]) -> dict:
    return batch(hostname=host.hostname, windows=[window(seq=1, start=_start(), gpus=gpus)])


def _post_gzip_bytes(client, secret: str, body: bytes):
    return client.post(
        INGEST_URL,
        data=body,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )


@pytest.mark.parametrize("index", [2**40, MAX_DEVICE_INDEX + 1])
def test_a_new_gpu_index_beyond_the_column_is_refused_naming_the_field(client, host_setup, index):
    host, device, secret = host_setup
    devices_before = Device.objects.count()
    payload = _payload(host, [gpu_entry(uuid_=device.uuid), gpu_entry(uuid_="GPU-new-huge", index=index)])
    response = post_batch(client, secret, payload)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": "windows[0].gpus[1].index", "message": f"must be between 0 and {MAX_DEVICE_INDEX}"}
    ]
    assert stored_counts() == (0, 0, 0)
    assert Device.objects.count() == devices_before
    assert not HostStream.objects.filter(host=host, last_seq__isnull=False).exists()


def test_the_largest_index_the_column_holds_is_accepted(client, host_setup):
    host, _device, secret = host_setup
    response = post_batch(client, secret, _payload(host, [gpu_entry(uuid_="GPU-top", index=MAX_DEVICE_INDEX)]))
    assert response.status_code == 202, response.content
    assert Device.objects.get(uuid="GPU-top").index == 2**31 - 1
    assert stored_counts() == (1, 1, 1)


@pytest.mark.parametrize("depth", [1_100, 100_000])
def test_deeply_nested_json_is_refused_with_400(client, host_setup, depth):
    _host, _device, secret = host_setup
    response = _post_gzip_bytes(client, secret, gzip.compress(b"[" * depth + b"]" * depth))
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [{"field": "body", "message": "JSON nested too deeply"}]
    assert stored_counts() == (0, 0, 0)


def test_trailing_bytes_after_the_gzip_stream_are_refused(client, host_setup):
    host, device, secret = host_setup
    body = gzip.compress(json.dumps(_payload(host, [gpu_entry(uuid_=device.uuid)])).encode())
    for trailer in (b"garbage", b"\x00", gzip.compress(b"{}")):
        response = _post_gzip_bytes(client, secret, body + trailer)
        assert response.status_code == 400, response.content
        assert response.json()["errors"] == [{"field": "body", "message": "data after the end of the gzip stream"}]
    assert stored_counts() == (0, 0, 0)
    assert _post_gzip_bytes(client, secret, body).status_code == 202  # the same stream alone is fine


class _Stream:
    """A server's decoded chunked input: ``data`` (or bytes without end), in the sizes asked for."""

    def __init__(self, data: bytes | None = None, *, endless: bool = False) -> None:
        self.data = data or b""
        self.endless = endless
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        if self.endless:
            chunk = b"\x1f" * size
        else:
            chunk = self.data[self.read_bytes : self.read_bytes + size] if size >= 0 else self.data[self.read_bytes :]
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:  # WSGI input has it; the view never calls it
        raise AssertionError("readline")


def _post_chunked(client, secret: str, stream, *, gzip_it: bool = True):
    """A request as gunicorn hands over a chunked one: no CONTENT_LENGTH, input terminated by the server."""
    environ = {
        "wsgi.input": stream,
        "wsgi.input_terminated": True,
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {secret}",
    }
    if gzip_it:
        environ["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.generic("POST", INGEST_URL, **environ)


@pytest.mark.parametrize("gzip_it", [True, False])
def test_a_chunked_body_without_content_length_is_read_and_stored(client, host_setup, gzip_it):
    host, device, secret = host_setup
    payload = _payload(host, [gpu_entry(uuid_=device.uuid)])
    body = json.dumps(payload).encode()
    stream = _Stream(gzip.compress(body) if gzip_it else body)
    response = _post_chunked(client, secret, stream, gzip_it=gzip_it)
    assert response.status_code == 202, response.content
    assert response.json() == {"batch_id": payload["batch_id"], "accepted_windows": 1, "duplicate": False}
    assert stored_counts() == (1, 1, 1)


def test_a_chunked_body_over_the_limit_is_refused_while_reading(client, host_setup, settings):
    _host, _device, secret = host_setup
    settings.INGEST_MAX_BODY_BYTES = 64 * 1024
    stream = _Stream(endless=True)
    response = _post_chunked(client, secret, stream)
    assert response.status_code == 413, response.content
    assert response.json()["errors"] == [{"field": "body", "message": "body exceeds 65536 bytes"}]
    assert stream.read_bytes == 64 * 1024 + 1  # stopped one byte past the limit, not at the end of the stream
    assert stored_counts() == (0, 0, 0)


def test_a_request_with_a_content_length_reads_only_that_many_bytes(client, host_setup):
    """The chunked path is only for a missing length: a declared length still bounds the read."""
    host, device, secret = host_setup
    body = gzip.compress(json.dumps(_payload(host, [gpu_entry(uuid_=device.uuid)])).encode())
    response = client.generic(
        "POST",
        INGEST_URL,
        data=body,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        **{"wsgi.input": FakePayload(body + b"next request"), "wsgi.input_terminated": True},
    )
    assert response.status_code == 202, response.content
    assert stored_counts() == (1, 1, 1)
