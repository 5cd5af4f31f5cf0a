"""Electricity Maps adapter against a local stdlib HTTP server replaying recorded responses:
success, timeout, HTTP 500, garbage JSON, with the fallback rows they must produce."""

import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from accounting.factors.electricitymaps import ElectricityMapsClient, ProviderError
from accounting.models import FactorChange, HourlyIntensity
from accounting.services.factors import intensity_fetch_latest
from tests.factories import GridZoneFactory, SiteFactory

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 26, 10, 20, tzinfo=UTC)
HOUR_NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)
H = timedelta(hours=1)


class Replay(BaseHTTPRequestHandler):
    # path (without query) -> (status, body bytes, delay_s); set per test.
    script: dict = {}
    seen: list = []

    def do_GET(self):
        path, _, query = self.path.partition("?")
        type(self).seen.append((path, query, self.headers.get("auth-token")))
        status, body, delay = type(self).script.get(path, (404, b'{"error": "not found"}', 0))
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, *args):
        pass


@pytest.fixture
def provider(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Replay.script, Replay.seen = {}, []
    settings.ELECTRICITYMAPS_API_URL = f"http://127.0.0.1:{server.server_address[1]}/v3"
    settings.ELECTRICITYMAPS_API_TOKEN = "test-token"
    settings.ELECTRICITYMAPS_TIMEOUT_S = 0.3
    yield Replay
    server.shutdown()
    server.server_close()


def _ok(name):
    return (200, (DATA / name).read_bytes(), 0)


@pytest.fixture
def de_zone(db):
    zone = GridZoneFactory(code="DE", annual_intensity_g_per_kwh=380.95, source="codecarbon")
    SiteFactory(zone=zone)
    GridZoneFactory(code="FR")  # no site: not fetched
    return zone


def _rows(zone, **kw):
    return list(
        HourlyIntensity.objects.filter(zone=zone, **kw)
        .order_by("hour")
        .values_list("hour", "intensity_g_per_kwh", "is_forecast", "is_fallback", "source")
    )


def test_success_stores_latest_and_forecast(provider, de_zone):
    provider.script = {
        "/v3/carbon-intensity/latest": _ok("em_latest_DE.json"),
        "/v3/carbon-intensity/forecast": _ok("em_forecast_DE.json"),
    }
    report = intensity_fetch_latest(now=NOW)
    assert report == {
        "zones": 1,
        "fetched": 1,
        "fallback_last_good": 0,
        "fallback_annual": 0,
        "forecast_rows": 4,
        "errors": [],
    }
    # The direct basis is asked for explicitly (the API default is life-cycle, issue 13).
    assert ("/v3/carbon-intensity/latest", "zone=DE&emissionFactorType=direct", "test-token") in provider.seen
    assert _rows(de_zone, is_forecast=False) == [(HOUR_NOW, 302.0, False, False, "electricitymaps")]
    assert [r[:2] for r in _rows(de_zone, is_forecast=True)] == [
        (HOUR_NOW + H, 298.0),
        (HOUR_NOW + 2 * H, 287.0),
        (HOUR_NOW + 3 * H, 301.0),
        (HOUR_NOW + 4 * H, 340.0),
    ]
    # Beat may run twice in the hour: same rows, nothing new.
    intensity_fetch_latest(now=NOW)
    assert HourlyIntensity.objects.filter(zone=de_zone).count() == 5


@pytest.mark.parametrize(
    ("latest", "kind"),
    [
        ((200, b"{}", 1.0), "timeout"),
        ((500, (DATA / "em_error_500.json").read_bytes(), 0), "http"),
        ((200, (DATA / "em_garbage.txt").read_bytes(), 0), "payload"),
        ((200, b'{"zone": "DE", "carbonIntensity": "high", "datetime": "2026-11-26T10:00:00Z"}', 0), "payload"),
    ],
    ids=["timeout", "http500", "garbage", "wrong-type"],
)
def test_failure_falls_back_to_annual_factor_without_history(provider, de_zone, latest, kind):
    provider.script = {"/v3/carbon-intensity/latest": latest, "/v3/carbon-intensity/forecast": (500, b"{}", 0)}
    report = intensity_fetch_latest(now=NOW)
    assert (report["fetched"], report["fallback_annual"], report["fallback_last_good"]) == (0, 1, 0)
    assert report["errors"][0].startswith(f"DE latest: {kind}:")
    assert _rows(de_zone) == [(HOUR_NOW, 380.95, False, True, "codecarbon")]


def test_failure_carries_last_good_value_then_real_value_replaces_fallback(provider, de_zone):
    HourlyIntensity.objects.create(
        zone=de_zone, hour=HOUR_NOW - 2 * H, intensity_g_per_kwh=311.0, source="electricitymaps"
    )
    HourlyIntensity.objects.create(
        zone=de_zone, hour=HOUR_NOW - 3 * H, intensity_g_per_kwh=320.0, source="electricitymaps"
    )
    provider.script = {"/v3/carbon-intensity/latest": (500, b"{}", 0), "/v3/carbon-intensity/forecast": (500, b"{}", 0)}
    report = intensity_fetch_latest(now=NOW)
    assert (report["fallback_last_good"], report["fallback_annual"]) == (1, 0)
    assert _rows(de_zone, hour=HOUR_NOW) == [(HOUR_NOW, 311.0, False, True, "electricitymaps")]

    provider.script["/v3/carbon-intensity/latest"] = _ok("em_latest_DE.json")
    intensity_fetch_latest(now=NOW + timedelta(minutes=20))
    row = HourlyIntensity.objects.get(zone=de_zone, hour=HOUR_NOW, is_forecast=False)
    assert (row.intensity_g_per_kwh, row.is_fallback, row.version) == (302.0, False, 2)
    fc = FactorChange.objects.get()
    assert (fc.affects_from, fc.affects_to, fc.recompute_status) == (HOUR_NOW, HOUR_NOW + H, "pending")


def test_stale_last_good_is_not_carried(provider, de_zone):
    HourlyIntensity.objects.create(
        zone=de_zone, hour=HOUR_NOW - 7 * H, intensity_g_per_kwh=311.0, source="electricitymaps"
    )
    provider.script = {"/v3/carbon-intensity/latest": (500, b"{}", 0), "/v3/carbon-intensity/forecast": (500, b"{}", 0)}
    assert intensity_fetch_latest(now=NOW)["fallback_annual"] == 1


def test_fallback_never_overwrites_a_real_value(provider, de_zone):
    HourlyIntensity.objects.create(zone=de_zone, hour=HOUR_NOW, intensity_g_per_kwh=299.0, source="electricitymaps")
    provider.script = {"/v3/carbon-intensity/latest": (503, b"{}", 0), "/v3/carbon-intensity/forecast": (503, b"{}", 0)}
    report = intensity_fetch_latest(now=NOW)
    assert (report["fallback_last_good"], report["fallback_annual"]) == (0, 0)
    assert _rows(de_zone) == [(HOUR_NOW, 299.0, False, False, "electricitymaps")]


def test_missing_token_uses_fallback_without_calling(provider, de_zone, settings):
    settings.ELECTRICITYMAPS_API_TOKEN = ""
    report = intensity_fetch_latest(now=NOW)
    assert report["fallback_annual"] == 1 and provider.seen == []


def test_client_timeout_is_bounded(provider):
    provider.script = {"/v3/carbon-intensity/latest": (200, b"{}", 2.0)}
    client = ElectricityMapsClient(base_url=f"{provider_url(provider)}", token="t", timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(ProviderError) as exc:
        client.latest("DE")
    assert exc.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def provider_url(_provider):
    from django.conf import settings

    return settings.ELECTRICITYMAPS_API_URL
