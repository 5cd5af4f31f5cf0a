"""What the attribution of a telemetry batch found: its gaps (and how each was filled) and its
diagnostics, read from accounting's own record (``BatchFindings``), never from telemetry's row."""

from __future__ import annotations

from accounting.models import BatchFindings


def batch_findings_get(*, batch_pk: int) -> BatchFindings:
    """The findings of the batch's latest attribution. A batch that had nothing to report (or is
    not attributed yet) has no row: it reads as an unsaved record with no gaps and no diagnostics."""
    return BatchFindings.objects.filter(batch_id=batch_pk).first() or BatchFindings(batch_id=batch_pk)
