#!/bin/bash
# CarbonLedger Slurm prolog: register this node's share of the job (idempotent: every node of a
# multi-node job runs it; the server keeps the union of the GPUs they name).
# slurm.conf:  Prolog=/etc/slurm/prolog.d/*   (install as /etc/slurm/prolog.d/50-carbonledger.sh)
. "$(dirname "$(readlink -f "$0")")/carbonledger-common.sh"

job_id="${SLURM_JOB_ID:-}"
[ -n "$job_id" ] || { cl_log "prolog: no SLURM_JOB_ID"; exit 0; }
host="${SLURMD_NODENAME:-$(hostname -s)}"
gpus="$(cl_gpu_indices "${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}")"
team="$(cl_comment_value team)"; team="${team:-$(cl_team_for "${SLURM_JOB_ACCOUNT:-}")}"
kind="$(cl_comment_value kind)"; kind="${kind:-${CARBONLEDGER_KIND:-training}}"
family="$(cl_comment_value family)"; family="${family:-${CARBONLEDGER_FAMILY:-other}}"
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

allocation="[]"
[ -n "$gpus" ] && allocation="[{\"host\": $(cl_json_str "$host"), \"gpus\": [$gpus]}]"
body="{\"scheduler_job_id\": $(cl_json_str "$job_id"), \"team\": $(cl_json_str "$team"),"
body+=" \"user\": $(cl_json_str "${SLURM_JOB_USER:-}"), \"name\": $(cl_json_str "${SLURM_JOB_NAME:-}"),"
body+=" \"kind\": $(cl_json_str "$kind"), \"family\": $(cl_json_str "$family"),"
body+=" \"started_at\": \"$started_at\", \"allocation\": $allocation}"
[ -z "${SLURM_JOB_USER:-}" ] && body="${body/\"user\": \"\", /}"
# Slurm 26.05 names the job's cgroup v2 directory with its SLUID (SLURM_JOB_SLUID, exported to the
# prolog since 25.11), so the agent reports "slurm:<SLUID>" for its processes: send it, and the job
# answers to both keys. Absent before 25.11 and with CgroupJobIdPaths=yes it changes nothing.
# The digits spelled out: a range such as A-H follows the locale's collation in bash.
sluid="${SLURM_JOB_SLUID:-}"
sluid_re='^[sS][0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz]{13}$'
[[ "$sluid" =~ $sluid_re ]] && body="${body%\}}, \"sluid\": \"$sluid\"}"

status="$(cl_send POST /api/v1/jobs/ "$body")"
case "$status" in
  200|201) ;;
  *) cl_log "prolog: register job $job_id on $host failed (HTTP $status)";;
esac
exit 0
