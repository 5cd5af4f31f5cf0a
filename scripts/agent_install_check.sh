#!/usr/bin/env bash
# The agent installs alone (docs/agent.md, Install): builds the carbonledger-agent wheel from
# packaging/agent, installs it into a fresh venv, checks that nothing of the server came with it
# (Django, DRF, Celery, Plotly, codecarbon...) and runs `probe` and a short `simulate` from it.
# Nothing is written into the repository or into .venv; the temp dir is removed at exit.
#   scripts/agent_install_check.sh                  # the check (scripts/test.sh runs it)
#   scripts/agent_install_check.sh --wheel-dir DIR  # the same, and keep the checked wheel in DIR
# pip reads its usual configuration: offline, point PIP_FIND_LINKS (or PIP_INDEX_URL) at a
# directory holding setuptools>=77 (build) and nvidia-ml-py wheels.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEEL_DIR=""
if [[ "${1:-}" == "--wheel-dir" ]]; then
    WHEEL_DIR="${2:?--wheel-dir needs a directory}"
    shift 2
fi
[[ $# -eq 0 ]] || { echo "usage: $0 [--wheel-dir DIR]" >&2; exit 64; }

log() { printf '\033[1;32m==>\033[0m agent install: %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m agent install: %s\n' "$*" >&2; exit 1; }

command -v python3.11 >/dev/null 2>&1 && PYBIN="${AGENT_CHECK_PYTHON:-python3.11}" || PYBIN="${AGENT_CHECK_PYTHON:-python3}"
"$PYBIN" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "needs Python >= 3.11, found $("$PYBIN" --version)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/cl-agent-check.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
# The venv must see only what the wheel installed: no checkout on the path.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
START=$SECONDS

# Built from a copy of exactly what the wheel takes, so no build/ or egg-info lands in the
# checkout and no stale file from an earlier build/lib can slip into the wheel.
log "building the wheel (packaging/agent)"
mkdir -p "$TMP/src/packaging/agent" "$TMP/src/telemetry"
cp "$ROOT/packaging/agent/pyproject.toml" "$ROOT/packaging/agent/setup.cfg" "$TMP/src/packaging/agent/"
(cd "$ROOT" && find telemetry/agent -name '*.py' -not -path '*/__pycache__/*' -print0 \
    | xargs -0 cp --parents -t "$TMP/src")
"$PYBIN" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$VPY" -m pip wheel --quiet --no-deps --wheel-dir "$TMP/dist" "$TMP/src/packaging/agent" \
    || die "pip wheel packaging/agent failed"
WHEEL="$(ls "$TMP"/dist/carbonledger_agent-*.whl)"

# The wheel holds telemetry/agent/* and its metadata, nothing else (no accounting/, dashboard/,
# config/, workers/, nor telemetry's server modules).
"$VPY" - "$WHEEL" "$ROOT" <<'PYEOF' || die "the wheel's contents are wrong (above)"
import pathlib, sys, zipfile
wheel, root = sys.argv[1], pathlib.Path(sys.argv[2])
names = zipfile.ZipFile(wheel).namelist()
code = sorted(n for n in names if ".dist-info/" not in n)
stray = [n for n in code if not n.startswith("telemetry/agent/")]
expected = sorted(p.relative_to(root).as_posix() for p in (root / "telemetry/agent").rglob("*.py")
                  if "__pycache__" not in p.parts)
if stray or code != expected:
    print("not agent code:", stray, "\nmissing:", sorted(set(expected) - set(code)), file=sys.stderr)
    sys.exit(1)
print(f"    wheel {pathlib.Path(wheel).name}: {len(code)} files, all under telemetry/agent/")
PYEOF

log "installing it into a fresh venv"
"$VPY" -m pip install --quiet "$WHEEL" || die "pip install $(basename "$WHEEL") failed"
INSTALLED="$("$VPY" -m pip list --format=freeze --disable-pip-version-check | tr 'A-Z_' 'a-z-')"
echo "$INSTALLED" | sed 's/^/    /'
for pkg in django djangorestframework drf-spectacular celery redis psycopg plotly codecarbon pandas; do
    if echo "$INSTALLED" | grep -q "^$pkg=="; then die "installing the agent pulled $pkg"; fi
done
# Exactly the agent and nvidia-ml-py (pip/setuptools/wheel come with the venv): a new dependency
# of the agent is a decision to make here, with docs/agent.md, not a side effect.
EXTRA="$(echo "$INSTALLED" | cut -d= -f1 | grep -vxE 'carbonledger-agent|nvidia-ml-py|pip|setuptools|wheel' || true)"
[[ -z "$EXTRA" ]] || die "unexpected packages in the agent venv: $(echo "$EXTRA" | tr '\n' ' ')"
"$VPY" -I -c 'import importlib.util as u; import telemetry.agent.cli, telemetry.agent.sim, telemetry.agent.sender
assert all(u.find_spec(m) is None for m in ("django", "rest_framework", "celery", "plotly", "codecarbon", "accounting"))
assert "/site-packages/" in telemetry.agent.cli.__file__, telemetry.agent.cli.__file__' \
    || die "the agent imports from outside its venv, or a server package is importable"

AGENT="$TMP/venv/bin/carbonledger-agent"
cd "$TMP"
log "carbonledger-agent probe"
set +e
"$AGENT" probe --spool-dir "$TMP/probe" >"$TMP/probe.out" 2>"$TMP/probe.err"
rc=$?
set -e
if [[ $rc -eq 2 ]] && grep -q "^NVML is not available" "$TMP/probe.err"; then
    echo "    no NVIDIA driver here: exit 2 with the install hint, as documented"
elif [[ $rc -eq 0 ]] && "$VPY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["backend"]=="nvml" and d["gpus"]' "$TMP/probe.out"; then
    echo "    NVML found: $("$VPY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["gpus"]), "GPU(s), driver", d["driver_version"])' "$TMP/probe.out")"
else
    cat "$TMP/probe.out" "$TMP/probe.err" >&2
    die "probe exited $rc"
fi
"$AGENT" probe --backend sim --interval 0.2 --spool-dir "$TMP/probe" >"$TMP/probe-sim.out" \
    || die "probe --backend sim failed"
"$VPY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["backend"]=="sim" and d["gpus"] and d["gpus"][0]["energy_source"]=="counter", d' \
    "$TMP/probe-sim.out" || die "probe --backend sim printed no GPU reading"

log "carbonledger-agent simulate (3 s, 2 GPUs, no server: windows are spooled)"
"$AGENT" simulate --gpus 2 --duration 3 --tick-s 0.5 --window-s 1 --base-dir "$TMP/sim" --log-level WARNING \
    || die "simulate failed"
"$AGENT" status --json --spool-dir "$TMP/sim/sim-node-01/spool" >"$TMP/status.json" || die "status failed"
"$VPY" - "$TMP/status.json" <<'PYEOF' || die "simulate spooled no windows (status above)"
import json, sys
s = json.load(open(sys.argv[1]))
ok = s["depth_windows"] >= 3 and s["dead_letter_batches"] == 0 and s["agent"]["backend"] == "sim"
print(f"    spool: {s['depth_windows']} windows, {s['dead_letter_batches']} dead letters, "
      f"{len(s['agent']['gpus'])} GPUs, agent {s['agent']['agent_version']}")
if not ok:
    print(json.dumps(s, indent=2), file=sys.stderr)
    sys.exit(1)
PYEOF

if [[ -n "$WHEEL_DIR" ]]; then
    mkdir -p "$WHEEL_DIR"
    cp "$WHEEL" "$WHEEL_DIR/"
    log "wheel kept: $WHEEL_DIR/$(basename "$WHEEL")"
fi
log "ok in $((SECONDS - START)) s"
