#!/usr/bin/env bash
# The run command: installs what it needs, starts PostgreSQL/Redis if they are down,
# migrates, loads factors and a demo organisation, then runs web, Celery worker, beat, a demo
# scheduler and a simulated GPU fleet streaming live telemetry, and a local SMTP sink that
# receives last month's e-mailed reports (listed at /reports/deliveries/, kept in var/mail/).
# Ctrl-C stops everything.
#   PORT=8000 SMTP_PORT=8025 scripts/run.sh
source "$(dirname "$0")/lib.sh"

PORT="${PORT:-8000}"
SMTP_PORT="${SMTP_PORT:-8025}"
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
export DJANGO_SETTINGS_MODULE=config.settings
export PYTHONUNBUFFERED=1
# Reports go by SMTP to the local sink below (aiosmtpd's Maildir handler: var/mail/new/).
export EMAIL_BACKEND=smtp EMAIL_HOST=127.0.0.1 EMAIL_PORT="$SMTP_PORT" EMAIL_USE_TLS=false EMAIL_USE_SSL=false
export DEFAULT_FROM_EMAIL="${DEFAULT_FROM_EMAIL:-carbonledger@acme.example}"
export CARBONLEDGER_DASHBOARD_URL="http://127.0.0.1:$PORT"

ensure_venv
ensure_postgres
ensure_redis
ensure_database

log "migrating"
.venv/bin/python manage.py migrate --noinput >/dev/null
log "loading carbon factors (grid intensity, hardware catalog, embodied carbon)"
.venv/bin/python manage.py load_factors
log "creating the demo organisation and fleet"
.venv/bin/python manage.py demo_setup --server-url "http://127.0.0.1:$PORT" --window-s 10 | tee var/demo-login.txt
log "seeding 30 days of history beside the live data (once per database)"
.venv/bin/python manage.py seed_history --org acme --gpus 40 --jobs 400 --days 30 --seed 1 --skip-if-seeded

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    log "stopping"
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 20); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    log "stopped"
    exit 0
}
trap cleanup INT TERM EXIT

start() {  # start NAME CMD...: each in its own process group, output to var/NAME.log
    local name="$1"; shift
    setsid "$@" >"var/$name.log" 2>&1 &
    PIDS+=("$!")
}

mkdir -p var/mail/cur var/mail/new var/mail/tmp  # a Maildir (aiosmtpd does not create its subfolders)
start smtp-sink .venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox var/mail
start web .venv/bin/gunicorn config.wsgi:application -c config/gunicorn.conf.py --bind "127.0.0.1:$PORT" \
    --workers 3 --access-logfile -
start worker .venv/bin/celery -A config worker -c 2 -l INFO --without-gossip --without-mingle
start beat .venv/bin/celery -A config beat -s var/celerybeat-schedule -l INFO
for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:$PORT/accounts/login/" >/dev/null && break; sleep 0.5; done
LAST_MONTH="$(date -u -d "$(date -u +%Y-%m-01) -1 day" +%Y-%m)"
log "sending the $LAST_MONTH reports to the local SMTP sink (127.0.0.1:$SMTP_PORT)"
.venv/bin/python manage.py reports send --month "$LAST_MONTH" --org acme \
    || log "no report sent for $LAST_MONTH (see above); beat sends it once the month is closed"
start scheduler .venv/bin/python manage.py demo_scheduler
start fleet .venv/bin/carbonledger-agent simulate --fleet var/demo-fleet.json --base-dir var/agent-sim

cat <<MSG

  CarbonLedger is running:  http://127.0.0.1:$PORT/
  $(grep '^login:' var/demo-login.txt)
  API docs:                  http://127.0.0.1:$PORT/api/docs/
  Sent reports:              http://127.0.0.1:$PORT/reports/deliveries/  (the mails: var/mail/new/)
  Logs:                      var/web.log var/worker.log var/beat.log var/fleet.log var/scheduler.log var/smtp-sink.log
  Live telemetry arrives every 10 s; the first footprints appear within a minute.
  Press Ctrl-C to stop everything.

MSG
wait -n "${PIDS[@]}" || true
log "a process exited; see var/*.log"
