"""Agent tests: plain Python (run with -p no:django), loopback HTTP only, short ticks."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from telemetry.agent.wire import FORMAT, windows_v1


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


class IngestServer:
    """A loopback stand-in for POST /api/v1/ingest/batches following docs/wire-format.md:
    202 for a new batch, 200 duplicate for a known batch_id, 409 when seqs do not advance.
    ``script`` (a list of status codes) forces responses for the next requests. A v2 body is
    recorded as sent (``raw``) and, in ``body``, with its v1 ``windows`` (``windows_v1``)."""

    def __init__(self, port: int = 0, *, share: IngestServer | None = None) -> None:
        # hostname -> windows in acceptance order; shared with a previous instance to model
        # a server that restarts with its database intact.
        self.accepted: dict[str, list[dict]] = share.accepted if share else {}
        self.batch_ids: set[str] = share.batch_ids if share else set()
        self.requests: list[dict] = share.requests if share else []
        self.script: list[int | str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                sent = json.loads(gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw)
                body = {**sent, "windows": windows_v1(sent)} if sent.get("format") == FORMAT else sent
                with outer.lock:
                    outer.requests.append(
                        {"path": self.path, "auth": self.headers.get("Authorization"), "body": body, "raw": sent}
                    )
                    forced = outer.script.pop(0) if outer.script else None
                    if forced == "accept_then_503":  # committed, but the response is lost
                        outer.batch_ids.add(body["batch_id"])
                        outer.accepted.setdefault(body["hostname"], []).extend(body["windows"])
                        return self._reply(503, {"title": "response lost", "status": 503})
                    if forced is not None:
                        return self._reply(
                            forced,
                            {
                                "type": "about:blank",
                                "title": "forced",
                                "status": forced,
                                "detail": f"windows[0].gpus[0].energy_j: forced {forced}",
                            },
                        )
                    host = body["hostname"]
                    if body["batch_id"] in outer.batch_ids:
                        return self._reply(
                            200, {"batch_id": body["batch_id"], "accepted_windows": 0, "duplicate": True}
                        )
                    got = outer.accepted.setdefault(host, [])
                    if got and body["windows"][0]["seq"] <= got[-1]["seq"]:
                        return self._reply(409, {"title": "seq conflict", "status": 409})
                    outer.batch_ids.add(body["batch_id"])
                    got.extend(body["windows"])
                    return self._reply(
                        202,
                        {"batch_id": body["batch_id"], "accepted_windows": len(body["windows"]), "duplicate": False},
                    )

            def _reply(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ingest_server():
    server = IngestServer()
    yield server
    server.stop()
