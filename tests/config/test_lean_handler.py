"""The lean chain's URL match (config/handlers.py): resolved once per URLconf for the exact
ingest path, and resolved again when the URLconf changes."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import override_settings
from django.urls import URLResolver, path

from config.handlers import LEAN_PATHS

pytestmark = pytest.mark.django_db
(INGEST,) = LEAN_PATHS


def _teapot(request):
    return HttpResponse(request.resolver_match.url_name, status=418)


# A URLconf of its own for the override below (ROOT_URLCONF names this module).
urlpatterns = [path(INGEST.lstrip("/"), _teapot, name="teapot-ingest")]


@pytest.fixture
def resolves(monkeypatch) -> list[str]:
    """The paths the root resolver is asked to resolve (nested includes not counted)."""
    seen: list[str] = []
    resolve = URLResolver.resolve

    def spy(self, path):
        if self.pattern.regex.pattern == "^/":
            seen.append(path)
        return resolve(self, path)

    monkeypatch.setattr(URLResolver, "resolve", spy)
    return seen


def test_the_ingest_path_is_resolved_once(client, resolves):
    first = client.post(INGEST, data=b"{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer clk_x")
    second = client.post(INGEST, data=b"{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer clk_y")
    assert (first.status_code, second.status_code) == (401, 401)
    assert first.wsgi_request.resolver_match.url_name == second.wsgi_request.resolver_match.url_name == "ingest-batches"
    assert resolves.count(INGEST) == 1  # each test client has a handler of its own


def test_a_new_urlconf_is_resolved_again(client, resolves):
    assert client.post(INGEST, data=b"{}", content_type="application/json").status_code == 401
    with override_settings(ROOT_URLCONF=__name__):
        response = client.post(INGEST, data=b"{}", content_type="application/json")
    assert (response.status_code, response.content) == (418, b"teapot-ingest")
    assert client.post(INGEST, data=b"{}", content_type="application/json").status_code == 401


def test_other_paths_resolve_every_time(client, resolves):
    client.get("/healthz")
    client.get("/healthz")
    assert resolves.count("/healthz") == 2
