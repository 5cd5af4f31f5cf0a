"""Instants as integer microseconds since the Unix epoch (UTC): the one time base of the
columnar windows, the raw store and the attribution arrays.

Exact both ways (PostgreSQL keeps microseconds too). Pure: stdlib only. Accounting publishes
this module to telemetry (its parsers, raw store and readers use the same base); the domain never
imports telemetry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(micros: int) -> datetime:
    """Integer microseconds since the Unix epoch as an aware UTC datetime (exact). Takes any
    integral value (a numpy integer from a column as well as an int)."""
    return EPOCH + timedelta(microseconds=int(micros))
