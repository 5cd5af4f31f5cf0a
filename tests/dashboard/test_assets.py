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


def test_redoc_bundle_is_served_locally_with_a_local_logo(client):
    from dashboard.views import REDOC_JS, REDOC_VERSION

    url = f"/assets/redoc-{REDOC_VERSION}.standalone.js"
    body = gzip.decompress(client.get(url, HTTP_ACCEPT_ENCODING="gzip").content)
    assert b"cdn.redoc.ly" in REDOC_JS.read_bytes() and b"cdn.redoc.ly" not in body
    assert body.count(b"/static/dashboard/docs-mark.svg") == 1
    assert len(body) == len(REDOC_JS.read_bytes()) - len(b"https://cdn.redoc.ly/redoc/logo-mini.svg") + len(
        b"/static/dashboard/docs-mark.svg"
    )
    assert client.get("/assets/redoc-0.0.0.standalone.js").status_code == 404


@pytest.mark.django_db
def test_redoc_page_uses_the_local_bundle_and_no_web_fonts(client, world):
    from dashboard.views import REDOC_VERSION

    client.force_login(world.admin)
    html = client.get("/api/redoc/").content.decode()
    assert f'<script src="/assets/redoc-{REDOC_VERSION}.standalone.js"></script>' in html
    assert "googleapis" not in html and "gstatic" not in html and "https://" not in html
