"""Strict environment parsing for settings.

Every variable is parsed once, at import time; a malformed value stops the process with a
message naming the variable instead of running with a silently wrong setting.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse


class ImproperEnv(ValueError):
    pass


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ImproperEnv(f"environment variable {name} is required")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperEnv(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperEnv(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperEnv(f"{name}={value} must be >= {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperEnv(f"{name}={raw!r} is not a number") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperEnv(f"{name}={raw!r} must be finite")
    if minimum is not None and value < minimum:
        raise ImproperEnv(f"{name}={value} must be >= {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_database_url(url: str) -> dict[str, object]:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ImproperEnv(
            f"DATABASE_URL must be a postgres:// URL (PostgreSQL is the only database), got {parsed.scheme!r}"
        )
    name = parsed.path.lstrip("/")
    if not name:
        raise ImproperEnv("DATABASE_URL must name a database, e.g. postgres://user@host:5432/carbonledger")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(name),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
    }


def load_dotenv(path: str) -> None:
    """Load KEY=VALUE lines from a local .env file without overriding the real environment."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if "=" not in stripped:
                raise ImproperEnv(f"{path}:{lineno}: expected KEY=VALUE")
            key, _, value = stripped.partition("=")
            value = value.strip().strip('"').strip("'")
            os.environ.setdefault(key.strip(), value)
