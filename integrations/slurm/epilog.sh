#!/bin/bash
# CarbonLedger Slurm epilog: end the job (idempotent: the first node's end wins).
# slurm.conf:  Epilog=/etc/slurm/epilog.d/*   (install as /etc/slurm/epilog.d/50-carbonledger.sh)
# The exit state comes from SLURM_JOB_EXIT_CODE when Slurm provides it (0 -> completed, else
# failed); run `manage.py import_sacct` for accounting-grade states (cancelled/preempted) of
# jobs whose epilog did not run.
# Opt-in job summary: with CARBONLEDGER_JOB_SUMMARY=true in slurm.env (or per job
# --comment="carbonledger:summary=yes"; "summary=no" opts a job out), the first node of the job
# appends `carbonledger job <id>` (energy, carbon, energy per unit, data quality, dashboard link)
# to the job's output file, written as the job's user. Needs the `carbonledger` command (the
# client: pip install ./packaging/client) or CARBONLEDGER_CLI naming it.
. "$(dirname "$(readlink -f "$0")")/carbonledger-common.sh"

job_id="${SLURM_JOB_ID:-}"
[ -n "$job_id" ] || { cl_log "epilog: no SLURM_JOB_ID"; exit 0; }
state="completed"
case "${SLURM_JOB_EXIT_CODE:-0}" in
  0|0:0) state="completed";;
  *) state="failed";;
esac
[ -n "${CARBONLEDGER_EXIT_STATE:-}" ] && state="$CARBONLEDGER_EXIT_STATE"
ended_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
body="{\"exit_state\": \"$state\", \"ended_at\": \"$ended_at\"}"
key="$(printf '%s' "$job_id" | tr -cd 'A-Za-z0-9._:+@-')"
status="$(cl_send POST "/api/v1/jobs/by-key/$key/end/" "$body")"
case "$status" in
  200) ;;
  404) cl_log "epilog: job $job_id was never registered (prolog failed?)";;
  *) cl_log "epilog: end job $job_id failed (HTTP $status)";;
esac
[ "$status" = 200 ] && cl_job_summary "$job_id"
exit 0
