"""The cost of one ingest POST (docs/performance.md, "The cost of one POST"): pinned statement
counts, no session or browser middleware on the ingest path, and the same response headers as
through the full middleware."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounting.models import ApiToken, Device
from accounting.tokens import token_create
from config.handlers import LEAN_MIDDLEWARE, LEAN_PATHS
from telemetry.models import TelemetryBatch
from tests.factories import DeviceFactory, HostFactory
from tests.telemetry.helpers import batch, gpu_entry, window

pytestmark = pytest.mark.django_db(transaction=False)
URL = "/api/v1/ingest/batches"
SECURITY_HEADERS = (
    "Content-Security-Policy",
    "Permissions-Policy",
    "Cache-Control",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
)


@pytest.fixture
def agent():
    host = HostFactory()
    devices = [DeviceFactory(host=host, index=i, uuid=f"GPU-cost-{i}") for i in range(8)]
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    return host, devices, secret


def _body(host, uuids: list[str], *, seq: int, batch_id: str | None = None) -> bytes:
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    payload = batch(
        hostname=host.hostname,
        batch_id=batch_id,
        windows=[
            window(
                seq=seq,
                start=start + dt.timedelta(seconds=10 * seq),
                gpus=[gpu_entry(uuid_=u, index=i) for i, u in enumerate(uuids)],
            )
        ],
    )
    return gzip.compress(json.dumps(payload).encode())


def _post(client, secret: str, body: bytes, **extra):
    return client.post(
        URL,
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_CONTENT_ENCODING="gzip",
        **extra,
    )


def _sql(ctx) -> list[str]:
    return [q["sql"].split()[0] + " " + q["sql"][:90] for q in ctx.captured_queries]


def test_the_lean_path_is_the_ingest_endpoint():
    assert LEAN_PATHS == {reverse("ingest-batches")}
    assert not any("session" in m or "csrf" in m or "auth" in m or "axes" in m for m in LEAN_MIDDLEWARE)


def test_one_post_of_known_devices_takes_five_statements(
    client, agent, monkeypatch, django_capture_on_commit_callbacks
):
    host, devices, secret = agent
    # The first POST of a day in a process also creates (or finds) the day's partitions, and
    # remembers them once committed (this test's transaction never commits: run the callbacks).
    monkeypatch.setattr("telemetry.partitions._known", set())
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(client, secret, _body(host, [d.uuid for d in devices], seq=1)).status_code == 202
    with CaptureQueriesContext(connection) as ctx:
        response = _post(client, secret, _body(host, [d.uuid for d in devices], seq=2))
    assert response.status_code == 202, response.content
    # token with its host's name and devices (accounting's statement); SAVEPOINT (the test's
    # transaction; BEGIN in production); host stream lock + duplicate check; batch INSERT +
    # stream UPDATE + host windows; RELEASE (COMMIT). The COPY goes around Django.
    assert len(ctx.captured_queries) == 5, _sql(ctx)
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert "accounting_apitoken" in sqls[0] and "accounting_device" in sqls[0]
    assert "FOR UPDATE OF s" in sqls[2] and "WITH batch AS" in sqls[3]
    # Each app's statements name only its own tables (docs/architecture.md, "Who owns which table").
    assert "telemetry_" not in sqls[0] and "accounting_" not in sqls[2] + sqls[3]
    assert not any("UPDATE" in s and "apitoken" in s for s in sqls)  # no per-request token write
    record = TelemetryBatch.objects.get(batch_id=response.json()["batch_id"])
    assert (record.host_id, record.first_seq, record.gpu_window_count, record.host_window_count, record.status) == (
        host.pk,
        2,
        8,
        1,
        "pending",
    )
    assert (host.stream.last_seq, host.stream.last_seen_at) == (2, record.last_end)
    # The one-statement INSERT stores what Model.save would: defaults by value (a TextChoices
    # member as its value, not its name). The attribution's findings are accounting's (none yet).
    assert (record.attempts, record.error, record.claimed_at, record.attributed_at) == (0, "", None, None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM telemetry_telemetrybatch WHERE id = %s", [record.pk])
        assert cursor.fetchone() == ("pending",)
    assert (record.agent_version, record.gpu_energy_j, record.host_energy_j) == ("test", 8 * 6000.0, 1200.0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT device_id FROM telemetry_gpuwindow WHERE batch_id = %s ORDER BY device_id", [record.pk])
        assert [row[0] for row in cursor.fetchall()] == sorted(d.pk for d in devices)


def test_a_resent_batch_takes_four_statements_and_changes_nothing(client, agent):
    host, devices, secret = agent
    body = _body(host, [d.uuid for d in devices], seq=1, batch_id="1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    first = _post(client, secret, body)
    with CaptureQueriesContext(connection) as ctx:
        again = _post(client, secret, body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {
        "batch_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "accepted_windows": 8,
        "duplicate": True,
    }
    # token (with its host's inventory); SAVEPOINT; stream lock + duplicate; RELEASE
    assert len(ctx.captured_queries) == 4, _sql(ctx)
    assert TelemetryBatch.objects.count() == 1


def test_a_new_device_is_registered_under_the_lock_after_the_one_statement(client, agent):
    host, devices, secret = agent
    other = DeviceFactory(host=HostFactory(cluster=host.cluster), uuid="GPU-elsewhere")
    uuids = [d.uuid for d in devices[:7]] + ["GPU-cost-new"]
    response = _post(client, secret, _body(host, uuids, seq=1))
    assert response.status_code == 202, response.content
    assert Device.objects.get(uuid="GPU-cost-new").host_id == host.pk
    # A device of another host is still refused, naming the field, and nothing is stored.
    refused = _post(client, secret, _body(host, [other.uuid], seq=2))
    assert refused.status_code == 403
    assert refused.json()["errors"] == [
        {"field": "windows.gpus.uuid", "message": "device GPU-elsewhere belongs to another host"}
    ]
    assert TelemetryBatch.objects.count() == 1


def test_the_ingest_path_does_not_touch_the_session(client, agent):
    host, devices, secret = agent
    user = get_user_model().objects.create_user(username="browser", password="x-irrelevant-1")
    client.force_login(user)  # a session cookie rides along, as from a browser
    with CaptureQueriesContext(connection) as ctx:
        response = _post(client, secret, _body(host, [d.uuid for d in devices], seq=1))
    assert response.status_code == 202
    assert not any("django_session" in q["sql"] or "auth_user" in q["sql"] for q in ctx.captured_queries)
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert not hasattr(response.wsgi_request, "session")


def test_other_paths_keep_the_full_middleware(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies  # CSRF middleware ran
    assert hasattr(response.wsgi_request, "session")


@pytest.mark.parametrize("token", ["good", "bad"])
def test_ingest_responses_carry_the_same_security_headers_as_through_the_full_middleware(client, agent, token):
    host, devices, secret = agent
    full = Client()  # Django's own handler: settings.MIDDLEWARE on every path
    auth = secret if token == "good" else "clk_not-a-token"
    lean_response = _post(client, auth, _body(host, [d.uuid for d in devices], seq=1))
    full_response = _post(full, auth, _body(host, [d.uuid for d in devices], seq=2))
    assert lean_response.status_code == full_response.status_code == (202 if token == "good" else 401)
    for name in SECURITY_HEADERS:
        assert lean_response[name] == full_response[name], name
    assert lean_response["Content-Type"] == full_response["Content-Type"]


def test_the_ingest_endpoint_answers_json_whatever_the_accept_header(client, agent):
    host, devices, secret = agent
    ok = _post(client, secret, _body(host, [d.uuid for d in devices], seq=1), HTTP_ACCEPT="text/html")
    assert (ok.status_code, ok["Content-Type"]) == (202, "application/json")
    refused = _post(client, "clk_not-a-token", _body(host, [d.uuid for d in devices], seq=2), HTTP_ACCEPT="text/xml")
    assert (refused.status_code, refused["Content-Type"]) == (401, "application/problem+json")
    assert refused.json()["status"] == 401
