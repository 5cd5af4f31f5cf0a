#!/usr/bin/env bash
# The test command: installs what it needs, starts PostgreSQL/Redis if they are down, then
# runs lint, the import contracts, type checks and the whole test suite against the real
# services (a real Celery worker and beat are started by the integration tests themselves).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/domain -x
source "$(dirname "$0")/lib.sh"

ensure_venv
ensure_postgres
ensure_redis
ensure_chromium
ensure_prometheus
export DJANGO_DEBUG=true
export DJANGO_SETTINGS_MODULE=config.settings_test

if [[ $# -eq 0 ]]; then
    log "ruff (lint and format)"
    .venv/bin/ruff check .
    .venv/bin/ruff format --check . || die "code not formatted: run .venv/bin/ruff format ."
    log "import contracts (the accounting core and the agent import no framework)"
    .venv/bin/lint-imports
    log "mypy"
    .venv/bin/mypy accounting telemetry workers config dashboard demo
    log "django system checks and migrations"
    .venv/bin/python manage.py check
    .venv/bin/python manage.py makemigrations --check --dry-run >/dev/null \
        || die "models changed without a migration: run manage.py makemigrations"
    log "agent installs alone (its wheel in a fresh venv: no server package; probe, simulate)"
    scripts/agent_install_check.sh
fi
log "pytest"
exec .venv/bin/pytest "$@"
