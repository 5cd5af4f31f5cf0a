"""Settings: strict env parsing, every variable documented, production passes check --deploy."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import ImproperEnv, env_bool, env_float, env_int, parse_database_url

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARBONLEDGER_"))}
    base.update(env)
    base["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def test_env_example_lists_every_variable_the_settings_read():
    settings_src = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|float|list)\("([A-Z_]+)"', settings_src))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - documented == set()


def test_production_settings_pass_check_deploy():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="carbon.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Not one warning, and none silenced (SILENCED_SYSTEM_CHECKS stays empty).
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr


def test_production_settings_with_https_from_env_pass_check_deploy():
    """The HTTPS settings a deployment sets explicitly (behind a TLS-terminating proxy)."""
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "INFO",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="carbon.example.org",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://carbon.example.org",
        DJANGO_SECURE_SSL_REDIRECT="true",
        DJANGO_SECURE_HSTS_SECONDS="63072000",
        DJANGO_SECURE_HSTS_PRELOAD="true",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr


def test_production_without_a_secret_refuses_to_start():
    result = _manage("check", DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="carbon.example.org")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_malformed_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("X_INT", "ten")
    with pytest.raises(ImproperEnv, match="X_INT='ten' is not an integer"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperEnv, match="X_BOOL"):
        env_bool("X_BOOL", False)
    monkeypatch.setenv("X_FLOAT", "nan")
    with pytest.raises(ImproperEnv, match="must be finite"):
        env_float("X_FLOAT", 1.0)
    with pytest.raises(ImproperEnv, match="PostgreSQL is the only database"):
        parse_database_url("sqlite:///db.sqlite3")
    assert parse_database_url("postgres://u:p%40ss@db:6432/cl")["PASSWORD"] == "p@ss"
