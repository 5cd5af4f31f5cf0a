"""The one error a rule raises for input it cannot work with, and the one for a state that
forbids a change. The API maps each once (``accounting/api/errors.py``): ``InputError`` to a
400 problem naming the field, ``StateError`` to a 409; forms show the message beside the field.
"""

from __future__ import annotations


class InputError(ValueError):
    """Well-formed input that is wrong for the method or for the data held (a power cap below
    the device's minimum, an end before the start, a GPU that is not in the cluster).

    ``field`` is the request's own name for it (``allocation[0].gpu_uuid``), so a client can
    point at what to fix."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class StateError(Exception):
    """The resource's current state forbids the change (moving the allocation of an ended job)."""
