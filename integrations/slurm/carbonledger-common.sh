#!/bin/bash
# Shared helpers of the CarbonLedger Slurm prolog/epilog. Sourced, not run.
# Configuration: /etc/carbonledger/slurm.env (override with CARBONLEDGER_ENV_FILE):
#   CARBONLEDGER_URL=https://carbonledger.example.org      (no trailing slash)
#   CARBONLEDGER_TOKEN=clk_...                              (a scheduler token of this cluster)
#   CARBONLEDGER_TEAM_MAP="physics=phys-ml,default=platform" (Slurm account -> team slug; optional)
#   CARBONLEDGER_KIND=training   CARBONLEDGER_FAMILY=other   (defaults for jobs that set nothing)
#   CARBONLEDGER_TIMEOUT_S=5
# Jobs may override kind/family/team with --comment="carbonledger:kind=inference,family=llm,team=llm".
# Never fail the job: a prolog that exits non-zero drains the node, so every error is logged and
# the script exits 0.

CARBONLEDGER_ENV_FILE="${CARBONLEDGER_ENV_FILE:-/etc/carbonledger/slurm.env}"
# shellcheck disable=SC1090
[ -r "$CARBONLEDGER_ENV_FILE" ] && . "$CARBONLEDGER_ENV_FILE"
CARBONLEDGER_TIMEOUT_S="${CARBONLEDGER_TIMEOUT_S:-5}"
CURL="${CARBONLEDGER_CURL:-curl}"

cl_log() { logger -t carbonledger -- "$*" 2>/dev/null || echo "carbonledger: $*" >&2; }

# JSON string: escape backslash and quote, drop control characters.
cl_json_str() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"; }

# "0,1,3" or "0-2,5" -> "0,1,2,5" (SLURM_JOB_GPUS / CUDA_VISIBLE_DEVICES); UUIDs are dropped.
cl_gpu_indices() {
  local out="" part lo hi n
  IFS=',' read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
      lo=${BASH_REMATCH[1]}; hi=${BASH_REMATCH[2]}
      for ((n = lo; n <= hi; n++)); do out="${out:+$out,}$n"; done
    elif [[ "$part" =~ ^[0-9]+$ ]]; then
      out="${out:+$out,}$part"
    fi
  done
  printf '%s' "$out"
}

# Slurm account -> team slug through CARBONLEDGER_TEAM_MAP ("acct=slug,...", "default=slug").
cl_team_for() {
  local account="$1" item default=""
  IFS=',' read -ra items <<< "${CARBONLEDGER_TEAM_MAP:-}"
  for item in "${items[@]}"; do
    [ "${item%%=*}" = "$account" ] && { printf '%s' "${item#*=}"; return; }
    [ "${item%%=*}" = "default" ] && default="${item#*=}"
  done
  printf '%s' "${account:-$default}"
}

# Value of key in SLURM_JOB_COMMENT "carbonledger:kind=inference,family=llm".
cl_comment_value() {
  local comment="${SLURM_JOB_COMMENT:-}" item
  [[ "$comment" == carbonledger:* ]] || return 0
  IFS=',' read -ra items <<< "${comment#carbonledger:}"
  for item in "${items[@]}"; do
    [ "${item%%=*}" = "$1" ] && { printf '%s' "${item#*=}"; return; }
  done
}

# POST/PATCH JSON; prints the HTTP status. Retries transient failures twice.
cl_send() {
  local method="$1" path="$2" body="$3"
  if [ -z "${CARBONLEDGER_URL:-}" ] || [ -z "${CARBONLEDGER_TOKEN:-}" ]; then
    cl_log "CARBONLEDGER_URL/CARBONLEDGER_TOKEN not set in $CARBONLEDGER_ENV_FILE; skipping"
    echo 000
    return
  fi
  "$CURL" --silent --show-error --output /dev/null --write-out '%{http_code}' \
    --max-time "$CARBONLEDGER_TIMEOUT_S" --retry 2 --retry-delay 1 \
    -X "$method" -H "Authorization: Bearer $CARBONLEDGER_TOKEN" -H "Content-Type: application/json" \
    --data "$body" "$CARBONLEDGER_URL$path" 2>/dev/null || echo 000
}

# The job's output file: SLURM_JOB_STDOUT where slurmd sets it, else scontrol's StdOut=.
cl_job_stdout() {
  if [ -n "${SLURM_JOB_STDOUT:-}" ]; then printf '%s' "$SLURM_JOB_STDOUT"; return; fi
  command -v "${CARBONLEDGER_SCONTROL:-scontrol}" >/dev/null 2>&1 || return 0
  "${CARBONLEDGER_SCONTROL:-scontrol}" show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^StdOut=//p' | head -1
}

# Is this node the job's first (the one that writes the summary)? Yes when the node list is unknown.
cl_first_node() {
  local list="${SLURM_JOB_NODELIST:-}" first
  [ -n "$list" ] || return 0
  if command -v "${CARBONLEDGER_SCONTROL:-scontrol}" >/dev/null 2>&1; then
    first="$("${CARBONLEDGER_SCONTROL:-scontrol}" show hostnames "$list" 2>/dev/null | head -1)"
  else
    first="${list%%[,\[]*}"
  fi
  [ -z "$first" ] || [ "$first" = "${SLURMD_NODENAME:-$(hostname -s)}" ]
}

# Opt-in: append the job's summary (carbonledger job <id>) to its output file. The summary is
# fetched here (the cluster's token never reaches a process of the user) and appended as the
# job's user (root never writes into a path the user controls), to a regular file only.
cl_job_summary() {
  local job_id="$1" wanted out cli text
  wanted="$(cl_comment_value summary)"
  wanted="${wanted:-${CARBONLEDGER_JOB_SUMMARY:-false}}"
  case "$wanted" in true|yes|1) ;; *) return 0;; esac
  cl_first_node || return 0
  out="$(cl_job_stdout "$job_id")"
  if [ -z "$out" ] || [ ! -f "$out" ] || [ -L "$out" ]; then
    cl_log "epilog: job $job_id has no regular output file to write the summary into"
    return 0
  fi
  cli="${CARBONLEDGER_CLI:-carbonledger}"
  # $cli unquoted on purpose: it may be "python3 /opt/carbonledger/carbonledger_cli.py".
  # shellcheck disable=SC2086
  if ! text="$(CARBONLEDGER_URL="$CARBONLEDGER_URL" CARBONLEDGER_TOKEN="$CARBONLEDGER_TOKEN" \
      $cli --timeout "$CARBONLEDGER_TIMEOUT_S" job "$job_id" 2>/dev/null)"; then
    cl_log "epilog: could not read the CarbonLedger summary of job $job_id"
    return 0
  fi
  local -a as_user=()
  if [ "$(id -u)" = 0 ] && [ -n "${SLURM_JOB_USER:-}" ]; then
    as_user=(runuser -u "$SLURM_JOB_USER" --)
  fi
  printf '\n%s\n' "$text" | "${as_user[@]}" sh -c 'cat >> "$1"' sh "$out" \
    || cl_log "epilog: could not append the CarbonLedger summary to $out"
}
