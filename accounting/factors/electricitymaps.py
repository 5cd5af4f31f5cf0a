"""Electricity Maps API v3 client (carbon-intensity/latest and /forecast), stdlib urllib only.

Values are requested on the direct basis (``emissionFactorType=direct``; the API's default is
life-cycle): location-based Scope 2 is the generation factor, GHG Protocol Scope 2 Guidance.

Every failure mode the caller must fall back on is one exception type, ``ProviderError``, with
a short ``kind`` ("timeout", "http", "network", "payload") for the fetch report.
"""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from accounting.factors.csv_import import MAX_PLAUSIBLE_G_PER_KWH, parse_utc

# The basis the client asks for, recorded on every row it writes (accounting.models.IntensityBasis).
EMISSION_FACTOR_TYPE = "direct"


class ProviderError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class IntensityPoint:
    zone: str
    hour: datetime  # start of the hour, aware UTC
    intensity_g_per_kwh: float
    is_estimated: bool = False


@dataclass(frozen=True)
class ElectricityMapsClient:
    base_url: str
    token: str
    timeout_s: float

    def _get(self, path: str, zone: str) -> dict:
        query = urllib.parse.urlencode({"zone": zone, "emissionFactorType": EMISSION_FACTOR_TYPE})
        url = f"{self.base_url.rstrip('/')}/{path}?{query}"
        req = urllib.request.Request(url, headers={"auth-token": self.token, "Accept": "application/json"})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (URL from settings)
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise ProviderError("http", f"HTTP {exc.code} for {path} zone={zone}")
        except TimeoutError:
            raise ProviderError("timeout", f"no answer within {self.timeout_s:g} s for {path} zone={zone}")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise ProviderError("timeout", f"no answer within {self.timeout_s:g} s for {path} zone={zone}")
            raise ProviderError("network", f"{exc.reason} for {path} zone={zone}")
        except OSError as exc:  # connection reset mid-body and the like
            raise ProviderError("network", f"{exc} for {path} zone={zone}")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ProviderError("payload", f"response for {path} zone={zone} is not JSON")
        if not isinstance(doc, dict):
            raise ProviderError("payload", f"response for {path} zone={zone} is not a JSON object")
        return doc

    def latest(self, zone: str) -> IntensityPoint:
        doc = self._get("carbon-intensity/latest", zone)
        return _point(doc, zone)

    def forecast(self, zone: str) -> list[IntensityPoint]:
        doc = self._get("carbon-intensity/forecast", zone)
        items = doc.get("forecast")
        if not isinstance(items, list):
            raise ProviderError("payload", f"forecast for zone={zone} has no 'forecast' list")
        return [_point(item, zone) for item in items]


def _point(doc: dict, zone: str) -> IntensityPoint:
    try:
        value = doc["carbonIntensity"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"carbonIntensity {value!r} is not a number")
        if not 0 <= value <= MAX_PLAUSIBLE_G_PER_KWH:
            raise ValueError(f"carbonIntensity {value!r} out of range")
        dt = parse_utc(str(doc["datetime"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderError("payload", f"zone={zone}: {exc}")
    return IntensityPoint(
        zone=zone,
        hour=dt.replace(minute=0, second=0, microsecond=0),
        intensity_g_per_kwh=float(value),
        is_estimated=bool(doc.get("isEstimated", False)),
    )
