"""Django's PostgreSQL backend (psycopg 3), with a cheaper per-request health check.

``CONN_HEALTH_CHECKS`` makes Django check a persistent connection before the first query of each
request, with a ``SELECT 1`` round trip: on the ingest endpoint that was one round trip in ten,
about 0.1 ms of the web process's CPU and a statement for PostgreSQL on every POST
(docs/performance.md, "Issue 18: the web side of one POST").

A connection that PostgreSQL ended (a restart, ``pg_terminate_backend``, an idle timeout, a
crash) does not end silently: the server sends its FATAL message and closes the socket, or the
kernel resets it; either way the socket of an idle connection turns readable. An idle
connection, by contrast, has nothing to read. So the check first asks the kernel, without
waiting, whether the socket has anything pending; only if it has (or the connection is not idle
and healthy by psycopg's account) is the ``SELECT 1`` run, and the connection closed if that
fails, exactly as Django does. After an error Django asks again: a connection the error broke
is broken by psycopg's account and gets the full check too. A silently dead network path (no
FIN, no reset) is caught by neither check until TCP gives up, so nothing is lost there.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from psycopg.pq import TransactionStatus


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        """Django asks this before the first query of a request (``CONN_HEALTH_CHECKS``) and
        after an error; a quiet connection answers without a round trip."""
        return self._quiet() or super().is_usable()

    def _quiet(self) -> bool:
        """The connection is open, idle and healthy by psycopg's account, and its socket has
        nothing to read (no message from the server, no end of stream)."""
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != TransactionStatus.IDLE:
            return False
        try:
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False
