"""The sender keeps one HTTP connection alive across batches; the spool writes little per window."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from telemetry.agent.sender import Sender
from telemetry.agent.spool import Spool
from tests.agent.test_sender import window


class KeepAliveSink:
    """An HTTP/1.1 ingest stand-in that records which client connection each request came on."""

    def __init__(self) -> None:
        ports: list[int] = []
        self.ports = ports

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                ports.append(self.client_address[1])
                body = json.dumps({"accepted_windows": 1, "duplicate": False}).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_one_connection_carries_every_batch_and_a_dropped_one_is_reopened(tmp_path):
    sink = KeepAliveSink()
    try:
        spool = Spool(tmp_path / "spool", initial_seq=1)
        sender = Sender(spool, server_url=sink.url, token="t", hostname="h", max_batch_windows=1, timeout_s=2.0)
        for i in range(5):
            spool.add_window(window(i))
            assert sender.drain(threading.Event()) is True
        assert (len(sink.ports), len(set(sink.ports)), sender.connections_opened) == (5, 1, 1)
        # The server (or a proxy) drops the idle connection: the next batch opens a new one.
        assert sender._conn is not None
        sender._conn.sock.close()
        spool.add_window(window(5))
        assert sender.drain(threading.Event()) is True
        assert (len(sink.ports), len(set(sink.ports)), sender.connections_opened) == (6, 2, 2)
        assert spool.stats()["depth_windows"] == 0
        sender.close()
        spool.close()
    finally:
        sink.stop()


def test_spool_statements_and_durable_commits_per_window(tmp_path):
    spool = Spool(tmp_path / "spool", initial_seq=1)
    statements: list[str] = []
    spool._db.set_trace_callback(statements.append)
    seq = spool.add_window(window(0))
    batch = spool.next_batch(30, attempt=True)
    assert batch is not None and (batch.first_seq, batch.last_seq, batch.attempts) == (seq, seq, 0)
    spool.ack(batch, sent_at=1.0)
    spool._db.set_trace_callback(None)
    # Store the window; form its batch and count the attempt; acknowledge it.
    assert len(statements) == 16, statements
    synchronous = "FULL"
    durable_commits = 0
    for sql in statements:
        if sql.startswith("PRAGMA synchronous="):
            synchronous = sql.split("=", 1)[1]
        elif sql == "COMMIT" and synchronous == "FULL":
            durable_commits += 1
    assert durable_commits == 2  # the window, and the batch's id before it is sent
    # A retried batch: its attempts count up in the same transaction that hands it out.
    spool.add_window(window(1))
    first = spool.next_batch(30, attempt=True)
    again = spool.next_batch(30, attempt=True)
    assert first is not None and again is not None and (first.attempts, again.attempts) == (0, 1)
    assert spool.stats()["depth_windows"] == 1
    spool.close()
