"""plotly.js is served from the installed plotly package (never a CDN) with long cache headers."""

from __future__ import annotations

import gzip
from pathlib import Path

import plotly
import pytest

from dashboard.views import PLOTLY_VERSION

JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
URL = f"/assets/plotly-{PLOTLY_VERSION}.min.js"


def test_plotly_js_is_the_package_file_gzipped_and_cached(client):
    response = client.get(URL, HTTP_ACCEPT_ENCODING="gzip, br")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert gzip.decompress(response.content) == JS.read_bytes()
    etag = response["ETag"]
    again = client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304


def test_plotly_js_plain_and_unknown_version(client):
    response = client.get(URL)
    assert b"".join(response.streaming_content) == JS.read_bytes()
    assert client.get("/assets/plotly-0.0.1.min.js").status_code == 404


@pytest.mark.django_db
def test_pages_reference_local_plotly_and_no_cdn(client, world, frozen_now):
    client.force_login(world.admin)
    html = client.get("/").content.decode()
    assert f'src="{URL}"' in html
    for host in ("cdn.plot.ly", "cdnjs", "jsdelivr", "unpkg", "googleapis"):
        assert host not in html
