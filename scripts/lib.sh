# Shared bootstrap for scripts/run.sh and scripts/test.sh: venv, PostgreSQL, Redis.
# Sourced, not executed. Everything it starts is recorded in $CL_STARTED_PIDS / var/ for cleanup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p var
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/carbonledger}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
PY="$ROOT/.venv/bin/python"

log() { printf '\033[1;32m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

ensure_venv() {
    local stamp="$ROOT/.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [[ ! -x "$PY" ]]; then
        log "creating virtual environment in .venv"
        command -v python3.11 >/dev/null 2>&1 && PYBIN=python3.11 || PYBIN=python3
        "$PYBIN" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
            || die "Python 3.11 is required (Django 5.2 LTS); found $("$PYBIN" --version)"
        "$PYBIN" -m venv "$ROOT/.venv"
    fi
    if [[ ! -f "$stamp" ]]; then
        log "installing Python dependencies (pip install -e .[dev])"
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet -e ".[dev]"
        rm -f "$ROOT"/.venv/.installed-*
        touch "$stamp"
    fi
}

_url_part() { "$PY" - "$1" "$2" <<'PYEOF'
import sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
print({"host": u.hostname or "127.0.0.1", "port": u.port or (5432 if u.scheme.startswith("postgres") else 6379),
       "db": u.path.lstrip("/"), "user": u.username or "postgres"}[sys.argv[2]])
PYEOF
}

ensure_postgres() {
    local host port
    host="$(_url_part "$DATABASE_URL" host)"; port="$(_url_part "$DATABASE_URL" port)"
    if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then return 0; fi
    log "PostgreSQL is not answering on $host:$port; starting it"
    if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
    for _ in $(seq 1 30); do pg_isready -q -h "$host" -p "$port" && return 0; sleep 1; done
    # Last resort: a throwaway cluster from the installed binaries (pg_ctl refuses root).
    local bindir
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [[ -n "$bindir" ]] || die "PostgreSQL is not installed: apt-get install postgresql (15+), then re-run"
    local data="$ROOT/var/pgdata"
    if [[ ! -d "$data" ]]; then
        mkdir -p "$data"; chown postgres "$data" 2>/dev/null || true
        runuser -u postgres -- "$bindir/initdb" -D "$data" -A trust -U postgres >/dev/null
    fi
    runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -o "-p $port -k /tmp" -l "$ROOT/var/pg.log" start >/dev/null
    for _ in $(seq 1 30); do pg_isready -q -h "$host" -p "$port" && return 0; sleep 1; done
    die "could not start PostgreSQL (see var/pg.log)"
}

ensure_redis() {
    local host port
    host="$(_url_part "$REDIS_URL" host)"; port="$(_url_part "$REDIS_URL" port)"
    if redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then return 0; fi
    command -v redis-server >/dev/null 2>&1 || die "Redis is not installed: apt-get install redis-server, then re-run"
    log "Redis is not answering on $host:$port; starting it"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$ROOT/var" --logfile "$ROOT/var/redis.log"
    for _ in $(seq 1 20); do redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.5; done
    die "could not start Redis (see var/redis.log)"
}

ensure_database() {
    local host port db user
    host="$(_url_part "$DATABASE_URL" host)"; port="$(_url_part "$DATABASE_URL" port)"
    db="$(_url_part "$DATABASE_URL" db)"; user="$(_url_part "$DATABASE_URL" user)"
    if ! psql -h "$host" -p "$port" -U "$user" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
        log "creating database $db"
        createdb -h "$host" -p "$port" -U "$user" "$db"
    fi
}

ensure_chromium() {
    if [[ -x /usr/bin/chromium ]]; then return 0; fi
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        log "installing Debian's chromium for the browser tests"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || log "could not install chromium; browser tests will be skipped"
    else
        log "chromium not found (apt-get install chromium); browser tests will be skipped"
    fi
}

# A real Prometheus for tests/integration/test_prometheus.py (it runs its own on a free port
# with its own storage). apt starts and enables Debian's service: stop and disable it, so no
# scraper is left running on :9090 after the install.
ensure_prometheus() {
    if command -v prometheus >/dev/null 2>&1; then return 0; fi
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        log "installing Debian's prometheus for the metrics integration test"
        if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                prometheus >/dev/null); then
            if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
                systemctl disable --now prometheus >/dev/null 2>&1 || true
            else
                service prometheus stop >/dev/null 2>&1 || true
                update-rc.d prometheus disable >/dev/null 2>&1 || true
            fi
        else
            log "could not install prometheus; the Prometheus integration test will be skipped"
        fi
    else
        log "prometheus not found (apt-get install prometheus); the Prometheus integration test will be skipped"
    fi
}
