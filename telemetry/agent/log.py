"""key=value logging an operator can grep (``grep 'event=batch_dead_lettered'``)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def _fmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname}", f"logger={record.name}"]
        fields = getattr(record, "kv", None)
        if fields is not None:
            parts.append(f"event={_fmt_value(record.getMessage())}")
            parts.extend(f"{k}={_fmt_value(v)}" for k, v in fields.items())
        else:
            parts.append(f"msg={_fmt_value(record.getMessage())}")
        if record.exc_info:
            parts.append(f"exc={_fmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def kv(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields`` rendered as key=value pairs."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"kv": fields})


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger("carbonledger.agent")
    if not any(getattr(h, "_carbonledger", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(KeyValueFormatter())
        handler._carbonledger = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
