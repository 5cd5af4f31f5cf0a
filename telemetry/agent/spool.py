"""Durable on-disk spool (sqlite3, WAL, synchronous=FULL).

Writes per window, kept few (docs/agent.md, "Overhead"): storing a window is one durable
transaction (its seq is cached in memory, and so is the spool's depth, so the eviction check
reads nothing); forming a batch and counting the attempt to send it is one more (durable, since
its batch_id must survive a crash before it is sent); the acknowledgement is written without its
own fsync (WAL, synchronous=NORMAL for that transaction): lost on power failure it only makes the
batch go again, and the server answers "duplicate".

Windows are written here the moment they close; the sender groups the oldest pending windows
into a batch with a fixed uuid4 batch_id (stored before the first send, so a retry after a crash
or timeout re-sends the same id and the server answers "duplicate" instead of counting twice),
and deletes the batch only after a 2xx. The per-host window seq lives here too, assigned in the
same transaction that stores the window, so it survives restarts.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from typing import Any, NamedTuple

from telemetry.agent.ids import random_uuid4
from telemetry.agent.log import kv

logger = logging.getLogger("carbonledger.agent.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    windows TEXT NOT NULL,
    n_windows INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    batch_id TEXT PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    windows TEXT NOT NULL,
    status INTEGER NOT NULL,
    problem TEXT NOT NULL,
    moved_at REAL NOT NULL
);
"""


class Batch(NamedTuple):
    id: int
    batch_id: str
    first_seq: int
    last_seq: int
    windows: list[dict[str, Any]]
    attempts: int


class Spool:
    def __init__(
        self, directory: str | os.PathLike[str], *, max_windows: int = 100_000, initial_seq: int | None = None
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "spool.sqlite3")
        self.max_windows = max_windows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a window acknowledged to the loop is on disk
        self._db.executescript(_SCHEMA)
        with self._tx():
            if self._meta("next_seq") is None:
                # Seed from the clock (seconds): with windows of >= 1 s the count never outruns it,
                # so a wiped spool still produces seqs above everything the server already has.
                seed = int(time.time()) if initial_seq is None else initial_seq
                self._set_meta("next_seq", str(seed))
            if self._meta("dropped_windows") is None:
                self._set_meta("dropped_windows", "0")
            self._next_seq = int(self._meta("next_seq"))  # type: ignore[arg-type]
            self._depth = self._depth_locked()

    # -- helpers -----------------------------------------------------------------------------
    def _tx(self, *, durable: bool = True):
        return _Tx(self._db, self._lock, durable=durable)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def _depth_locked(self) -> int:
        pending = self._db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
        batched = self._db.execute("SELECT COALESCE(SUM(n_windows), 0) FROM batches").fetchone()[0]
        return int(pending) + int(batched)

    # -- producer ----------------------------------------------------------------------------
    def add_window(self, window: dict[str, Any]) -> int:
        """Assign the next seq, store the window durably, evict the oldest past the bound."""
        payload = json.dumps(window)
        with self._tx():
            seq = self._next_seq
            # {"seq": seq, **window} as JSON, without re-encoding the window under the lock.
            stored = f'{{"seq": {seq}, {payload[1:]}' if payload != "{}" else f'{{"seq": {seq}}}'
            self._db.execute("INSERT INTO windows(seq, payload) VALUES(?, ?)", (seq, stored))
            self._set_meta("next_seq", str(seq + 1))
            self._next_seq = seq + 1
            self._depth += 1
            if self._depth > self.max_windows:
                self._evict_locked()
        return seq

    def _evict_locked(self) -> None:
        over = self._depth_locked() - self.max_windows
        dropped = 0
        first = last = None
        while over > 0:
            row = self._db.execute(
                "SELECT id, first_seq, last_seq, n_windows FROM batches ORDER BY id LIMIT 1"
            ).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM batches WHERE id=?", (row[0],))
                n, lo, hi = row[3], row[1], row[2]
            else:
                row = self._db.execute("SELECT seq FROM windows ORDER BY seq LIMIT 1").fetchone()
                if row is None:
                    break
                self._db.execute("DELETE FROM windows WHERE seq=?", (row[0],))
                n, lo, hi = 1, row[0], row[0]
            dropped += n
            over -= n
            first = lo if first is None else min(first, lo)
            last = hi if last is None else max(last, hi)
        self._depth = self._depth_locked()
        if dropped:
            total = int(self._meta("dropped_windows") or 0) + dropped
            self._set_meta("dropped_windows", str(total))
            kv(
                logger,
                logging.ERROR,
                "spool_full_dropped_oldest",
                dropped=dropped,
                first_seq=first,
                last_seq=last,
                dropped_total=total,
                max_windows=self.max_windows,
                hint="server unreachable for too long; raise spool_max_windows or fix delivery",
            )

    # -- sender ------------------------------------------------------------------------------
    def backlog(self) -> tuple[int, int]:
        """(batches formed but not yet acknowledged, windows not yet in a batch)."""
        with self._tx():
            formed = self._db.execute("SELECT count(*) FROM batches").fetchone()[0]
            pending = self._db.execute("SELECT count(*) FROM windows").fetchone()[0]
        return int(formed), int(pending)

    def next_batch(self, max_windows: int, *, attempt: bool = False) -> Batch | None:
        """The oldest unsent batch; if none, form one from the oldest pending windows.

        ``attempt``: the caller is about to send it: its attempt is counted in the same
        transaction (``Batch.attempts`` is the count before this one)."""
        with self._tx():
            row = self._db.execute(
                "SELECT id, batch_id, first_seq, last_seq, windows, attempts FROM batches ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                rows = self._db.execute(
                    "SELECT seq, payload FROM windows ORDER BY seq LIMIT ?", (max_windows,)
                ).fetchall()
                if not rows:
                    return None
                windows_json = "[" + ",".join(r[1] for r in rows) + "]"
                batch_id = random_uuid4()
                cursor = self._db.execute(
                    "INSERT INTO batches(batch_id, first_seq, last_seq, windows, n_windows, attempts, created_at)"
                    " VALUES(?,?,?,?,?,?,?)",
                    (batch_id, rows[0][0], rows[-1][0], windows_json, len(rows), 1 if attempt else 0, time.time()),
                )
                self._db.execute("DELETE FROM windows WHERE seq<=?", (rows[-1][0],))
                row = (cursor.lastrowid, batch_id, rows[0][0], rows[-1][0], windows_json, 0)
            elif attempt:
                self._db.execute("UPDATE batches SET attempts=attempts+1 WHERE id=?", (row[0],))
        return Batch(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])

    def record_attempt(self, batch: Batch) -> None:
        with self._tx():
            self._db.execute("UPDATE batches SET attempts=attempts+1 WHERE id=?", (batch.id,))

    def ack(self, batch: Batch, *, sent_at: float) -> None:
        # No fsync of its own: the next durable commit (the next window) carries it to disk, and
        # if power fails first the batch is sent again under its batch_id (server: "duplicate").
        with self._tx(durable=False):
            deleted = self._db.execute("DELETE FROM batches WHERE id=?", (batch.id,)).rowcount
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('last_send_at', ?), ('last_sent_seq', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(sent_at), str(batch.last_seq)),
            )
            self._depth -= len(batch.windows) if deleted else 0

    def dead_letter(self, batch: Batch, *, status: int, problem: str) -> None:
        with self._tx():
            deleted = self._db.execute("DELETE FROM batches WHERE id=?", (batch.id,)).rowcount
            self._depth -= len(batch.windows) if deleted else 0
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letter(batch_id, first_seq, last_seq, windows, status, problem, moved_at)"
                " VALUES(?,?,?,?,?,?,?)",
                (
                    batch.batch_id,
                    batch.first_seq,
                    batch.last_seq,
                    json.dumps(batch.windows),
                    status,
                    problem,
                    time.time(),
                ),
            )
            total = int(self._meta("dead_lettered_batches") or 0) + 1
            self._set_meta("dead_lettered_batches", str(total))

    # -- status ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._tx():
            pending = self._db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
            batches, batched = self._db.execute("SELECT COUNT(*), COALESCE(SUM(n_windows), 0) FROM batches").fetchone()
            dead = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
            last_send = self._meta("last_send_at")
            return {
                "pending_windows": int(pending),
                "unsent_batches": int(batches),
                "depth_windows": int(pending) + int(batched),
                "dead_letter_batches": int(dead),
                "dropped_windows": int(self._meta("dropped_windows") or 0),
                "next_seq": int(self._meta("next_seq") or 0),
                "last_sent_seq": None if self._meta("last_sent_seq") is None else int(self._meta("last_sent_seq")),  # type: ignore[arg-type]
                "last_send_at": None if last_send is None else float(last_send),
            }

    def dead_letters(self) -> list[dict[str, Any]]:
        with self._tx():
            rows = self._db.execute(
                "SELECT batch_id, first_seq, last_seq, status, problem, moved_at FROM dead_letter ORDER BY moved_at"
            ).fetchall()
        return [
            dict(zip(("batch_id", "first_seq", "last_seq", "status", "problem", "moved_at"), r, strict=True))
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Tx:
    """One transaction under the spool's lock; ``durable=False`` commits without an fsync."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, *, durable: bool = True) -> None:
        self.db = db
        self.lock = lock
        self.durable = durable

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            if not self.durable:
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            try:
                if not self.durable:
                    self.db.execute("PRAGMA synchronous=FULL")
            finally:
                self.lock.release()
