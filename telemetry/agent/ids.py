"""UUID text without the ``uuid`` module.

The agent only formats random (and, in the simulator, hashed) 16-byte values as version-4 UUIDs;
importing ``uuid`` for that also loads ``platform`` and libuuid (≈ 2–4 ms of CPU at every start).
"""

from __future__ import annotations

import os


def uuid4_text(raw: bytes) -> str:
    """``str(uuid.UUID(bytes=raw, version=4))``: version 4, RFC 4122 variant, lower-case hex."""
    if len(raw) != 16:
        raise ValueError("uuid4_text: 16 bytes required")
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # variant 10xx
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_uuid4() -> str:
    """``str(uuid.uuid4())``."""
    return uuid4_text(os.urandom(16))
