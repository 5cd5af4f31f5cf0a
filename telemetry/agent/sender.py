"""Delivers spooled batches in seq order over HTTP(S): gzip, bearer token, backoff with jitter."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

from telemetry.agent import __version__
from telemetry.agent.log import kv
from telemetry.agent.spool import Batch, Spool
from telemetry.agent.window import iso_utc
from telemetry.agent.wire import FORMAT, WIRE_FORMATS, columns_v2

logger = logging.getLogger("carbonledger.agent.sender")

INGEST_PATH = "/api/v1/ingest/batches"
_RETRYABLE_4XX = {408, 429}
# 401/403 say the host's token is wrong, not that this batch is: every later batch would fail
# the same way, so keep them in order in the spool (retrying with backoff) rather than
# dead-lettering the whole stream while an operator fixes the token.
_AUTH = {401, 403}
_PROBLEM_MAX = 4000


class Outcome(NamedTuple):
    kind: str  # "acked" | "duplicate" | "dead" | "retry"
    status: int | None
    retry_after_s: float | None = None


class Sender:
    def __init__(
        self,
        spool: Spool,
        *,
        server_url: str,
        token: str,
        hostname: str,
        max_batch_windows: int = 30,
        batch_interval_s: float = 0.0,
        timeout_s: float = 10.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        ca_file: str = "",
        wire_format: str = "v2",
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        if not server_url.startswith(("http://", "https://")):
            raise ValueError(f"server_url: must be http(s), got {server_url!r}")
        self.url = server_url.rstrip("/") + INGEST_PATH
        parts = urllib.parse.urlsplit(self.url)
        self._scheme, self._host, self._port, self._path = parts.scheme, parts.hostname or "", parts.port, parts.path
        self.token = token
        self.hostname = hostname
        self.max_batch_windows = max_batch_windows
        if wire_format not in WIRE_FORMATS:
            raise ValueError(f"wire_format: must be one of {', '.join(WIRE_FORMATS)}, got {wire_format!r}")
        # v2 (columnar, docs/wire-format.md "Format 2") unless configured to v1; a batch v2 cannot
        # carry exactly goes as v1 whatever the setting (telemetry.agent.wire).
        self.wire_format = wire_format
        # Hold closed windows up to this long to send them together (0: send each as it closes).
        # The server's cost is mostly per request: see docs/agent.md, "Batching".
        self.batch_interval_s = batch_interval_s
        self.clock = clock
        self._holding_since: float | None = None
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.rng = rng or random.Random()
        self.context = ssl.create_default_context(cafile=ca_file or None) if self.url.startswith("https") else None
        # One HTTP/1.1 connection kept alive across batches (a TLS handshake costs more CPU than
        # the batch): opened on first use, dropped on any error and opened again on the next.
        self._conn: http.client.HTTPConnection | None = None
        # The sender thread and a shutdown flush (if the thread outlives its join) never share
        # the connection mid-request.
        self._conn_lock = threading.Lock()
        self.connections_opened = 0
        self.wake = threading.Event()
        self.failures = 0
        self.sent_batches = 0

    def body(self, batch: Batch, *, sent_at: float) -> bytes:
        doc: dict[str, Any] = {
            "batch_id": batch.batch_id,
            "hostname": self.hostname,
            "agent_version": __version__,
            "sent_at": iso_utc(sent_at),
        }
        columns = columns_v2(batch.windows) if self.wire_format == "v2" else None
        if columns is None:
            doc["windows"] = batch.windows
        else:
            doc["format"] = FORMAT
            doc.update(columns)
        return gzip.compress(json.dumps(doc, separators=(",", ":"), allow_nan=False).encode(), compresslevel=6)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout_s, context=self.context
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
            self.connections_opened += 1
        return self._conn

    def close(self) -> None:
        """Close the kept-alive connection (the sender stays usable: the next send opens one)."""
        with self._conn_lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
        """(status, response body, Retry-After) over the kept-alive connection. A connection the
        server closed while idle fails on reuse: that request is made once more on a new one
        (safe: the batch_id makes a repeat a duplicate)."""
        with self._conn_lock:
            for fresh in (self._conn is None, True):
                conn = self._connection()
                try:
                    conn.request("POST", self._path, body=body, headers=headers)
                    resp = conn.getresponse()
                    raw = resp.read()
                except (OSError, http.client.HTTPException):
                    self._drop()
                    if fresh:
                        raise
                    continue
                if resp.will_close:
                    self._drop()
                return resp.status, raw, resp.getheader("Retry-After")
        raise AssertionError("unreachable")

    def send_once(self, batch: Batch) -> Outcome:
        sent_at = time.time()
        body = self.body(batch, sent_at=sent_at)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"carbonledger-agent/{__version__}",
        }
        fields = {
            "batch_id": batch.batch_id,
            "first_seq": batch.first_seq,
            "last_seq": batch.last_seq,
            "windows": len(batch.windows),
            "attempt": batch.attempts + 1,
        }
        try:
            status, raw, retry_after_header = self._post(body, headers)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused/reset, timeouts, TLS
            kv(logger, logging.WARNING, "batch_send_failed", status="none", error=str(exc), **fields)
            return Outcome("retry", None)
        if status >= 400:
            problem = raw[:_PROBLEM_MAX].decode(errors="replace")
            if 400 <= status < 500 and status not in _RETRYABLE_4XX and status not in _AUTH:
                self.spool.dead_letter(batch, status=status, problem=problem)
                kv(logger, logging.ERROR, "batch_dead_lettered", status=status, problem=problem, **fields)
                return Outcome("dead", status)
            kv(logger, logging.WARNING, "batch_send_failed", status=status, problem=problem[:500], **fields)
            return Outcome("retry", status, _retry_after(retry_after_header))
        if not 200 <= status < 300:
            kv(logger, logging.WARNING, "batch_send_failed", status=status, **fields)
            return Outcome("retry", status)
        duplicate = False
        try:
            duplicate = bool(json.loads(raw or b"{}").get("duplicate", False))
        except (ValueError, AttributeError):
            pass
        self.spool.ack(batch, sent_at=sent_at)
        self.sent_batches += 1
        kv(logger, logging.INFO, "batch_sent", status=status, duplicate=duplicate, **fields)
        return Outcome("duplicate" if duplicate else "acked", status)

    def backoff_s(self, retry_after_s: float | None = None) -> float:
        """Exponential backoff with jitter (half fixed, half random) so a fleet coming back after
        an outage does not hit the server in lockstep; a server's Retry-After is a floor."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(self.failures, 30)))
        delay = ceiling * (0.5 + 0.5 * self.rng.random())
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.backoff_max_s))
        return delay

    def run(self, stop: threading.Event, *, idle_wait_s: float = 1.0) -> None:
        while not stop.is_set():
            if not self.drain(stop):
                self.wake.wait(idle_wait_s)
                self.wake.clear()

    def due(self) -> bool:
        """Whether to send now under ``batch_interval_s``: a batch already formed (a retry) always
        is; new windows are held until there are ``max_batch_windows`` of them or the first of
        them has waited ``batch_interval_s``."""
        if self.batch_interval_s <= 0:
            return True
        formed, pending = self.spool.backlog()
        if formed:
            return True
        if pending == 0:
            self._holding_since = None
            return False
        if pending >= self.max_batch_windows:
            return True
        now = self.clock()
        if self._holding_since is None:
            self._holding_since = now
        return now - self._holding_since >= self.batch_interval_s

    def drain(self, stop: threading.Event, *, deadline: float | None = None, flush: bool = False) -> bool:
        """Send until the spool is empty (True), or stop/deadline/a failure's backoff ends early.
        Unless ``flush`` (shutdown), new windows wait for ``due()``.

        Returns False when nothing was left to send."""
        did_work = False
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if not flush and not self.due():
                return did_work
            self._holding_since = None
            # Formed (or taken) and its attempt counted in one spool transaction.
            batch = self.spool.next_batch(self.max_batch_windows, attempt=True)
            if batch is None:
                return did_work
            did_work = True
            outcome = self.send_once(batch)
            if outcome.kind == "retry":
                self.failures += 1
                delay = self.backoff_s(outcome.retry_after_s)
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - time.monotonic()))
                kv(logger, logging.INFO, "backoff", seconds=round(delay, 3), failures=self.failures)
                stop.wait(delay)
            else:
                if self.failures:
                    kv(logger, logging.INFO, "delivery_resumed", after_failures=self.failures)
                self.failures = 0
        return did_work


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
