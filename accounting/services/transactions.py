"""Retrying a whole transaction that PostgreSQL aborted to break a deadlock or a serialisation
conflict.

The writers take their locks in one order (docs/reliability.md, "Lock order"), so a deadlock
should not happen; if one still does (or a serialisation failure), PostgreSQL aborts one of the
transactions and nothing of it was written. Running it again from the start is then safe — every
write path here is idempotent or re-reads what it changes under its locks — and the client gets
its answer instead of a 500.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg.errors
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

RETRY_ATTEMPTS = 4
RETRY_BASE_DELAY_S = 0.02


def is_transient_conflict(exc: BaseException) -> bool:
    """A deadlock or a serialisation failure: the transaction was rolled back whole."""
    cause = exc.__cause__ if isinstance(exc, OperationalError) else exc
    return isinstance(cause, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure))


def retry_on_conflict(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a function that opens its own transaction(s): rerun it, after a short jittered
    wait, when a deadlock or a serialisation failure aborted it (up to ``RETRY_ATTEMPTS`` runs).

    Called inside a transaction (a test's, or a caller's), it runs once: the outer transaction
    is aborted with it and only its owner can start again."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return func(*args, **kwargs)
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                if attempt == RETRY_ATTEMPTS or not is_transient_conflict(exc):
                    raise
                delay_s = RETRY_BASE_DELAY_S * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning(
                    "transaction conflict in %s (attempt %d of %d), retrying in %.0f ms: %s",
                    func.__qualname__,
                    attempt,
                    RETRY_ATTEMPTS,
                    delay_s * 1000,
                    exc.__cause__,
                )
                time.sleep(delay_s)
        raise AssertionError("unreachable")

    return run
