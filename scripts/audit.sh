#!/usr/bin/env bash
# Dependency audit (ASVS 14.2.1): pip-audit over the installed .venv, failing closed.
#
# pip-audit exits 0 with "No known vulnerabilities found" when it could not audit anything (a
# vulnerability service that does not answer for a package reports it as "skipped"). This script
# fails then, and when the service is unreachable, and on any vulnerability that is not in the
# allow-list (.pip-audit-allowlist: one "ID reason" per line; a reason is mandatory).
# Needs a route to the vulnerability service, so it is NOT part of scripts/test.sh: see docs/security.md.
#
#   scripts/audit.sh                      # PyPI's vulnerability data (pip-audit's default)
#   AUDIT_SERVICE=osv scripts/audit.sh    # the OSV database
# Environment: AUDIT_PYTHON (the interpreter whose packages are audited, default .venv/bin/python),
# AUDIT_ALLOWLIST (default .pip-audit-allowlist), AUDIT_CACHE_DIR, AUDIT_TIMEOUT_S (default 15).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${AUDIT_PYTHON:-$ROOT/.venv/bin/python}"
SERVICE="${AUDIT_SERVICE:-pypi}"
ALLOWLIST="${AUDIT_ALLOWLIST:-$ROOT/.pip-audit-allowlist}"
TIMEOUT_S="${AUDIT_TIMEOUT_S:-15}"

die() { printf 'audit: FAILED: %s\n' "$*" >&2; exit 1; }

[[ -x "$PY" ]] || die "no interpreter at $PY (create .venv first)"
"$PY" -c 'import pip_audit' 2>/dev/null || die "pip-audit is not installed in $PY (pip install -e '.[dev]')"
[[ -f "$ALLOWLIST" ]] || die "allow-list $ALLOWLIST is missing (an empty file with its header comment is fine)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Allow-list: "ID reason" lines; "skip:NAME reason" accepts a dependency the service cannot know.
ignore_args=()
while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%%#*}"
    read -r id reason <<<"$line" || true
    [[ -z "${id:-}" ]] && continue
    [[ -n "${reason:-}" ]] || die "allow-list entry '$id' has no reason"
    [[ "$id" == skip:* ]] || ignore_args+=(--ignore-vuln "$id")
done <"$ALLOWLIST"

cache_args=()
[[ -n "${AUDIT_CACHE_DIR:-}" ]] && cache_args=(--cache-dir "$AUDIT_CACHE_DIR")

echo "audit: pip-audit ($SERVICE) over $("$PY" -c 'import sys; print(sys.prefix)')"
set +e
"$PY" -m pip_audit --progress-spinner off --skip-editable --vulnerability-service "$SERVICE" \
    --timeout "$TIMEOUT_S" --format json --output "$tmp/report.json" "${cache_args[@]}" "${ignore_args[@]}" \
    >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
set -e

if [[ ! -s "$tmp/report.json" ]]; then
    tail -n 5 "$tmp/stderr" >&2
    die "pip-audit produced no report (exit $rc): the vulnerability service ($SERVICE) is unreachable or failed"
fi

"$PY" - "$tmp/report.json" "$ALLOWLIST" "$rc" <<'PYEOF'
import json
import sys

report_path, allowlist_path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
allowed_skips, allowed_ids = set(), set()
for raw in open(allowlist_path, encoding="utf-8"):
    words = raw.split("#", 1)[0].split()
    if words:
        (allowed_skips.add(words[0][5:].lower()) if words[0].startswith("skip:") else allowed_ids.add(words[0]))

deps = json.load(open(report_path, encoding="utf-8")).get("dependencies", [])
problems = []
if not deps:
    problems.append("the report lists no dependencies")
skipped = [d for d in deps if "skip_reason" in d and d["name"].lower() not in allowed_skips]
if skipped:
    problems.append(
        f"{len(skipped)} of {len(deps)} dependencies were NOT audited (the vulnerability service is unreachable "
        f"or does not know them), e.g.: " + "; ".join(d["skip_reason"] for d in skipped[:3])
    )
found = [(d["name"], d["version"], v) for d in deps for v in d.get("vulns", [])
         if v["id"] not in allowed_ids and not allowed_ids.intersection(v.get("aliases", []))]
for name, version, v in found:
    fix = ", ".join(v.get("fix_versions", [])) or "no fixed version"
    print(f"audit: {name} {version}: {v['id']} ({', '.join(v.get('aliases', []))}) fixed in: {fix}")
if found:
    problems.append(f"{len(found)} known vulnerabilities not in the allow-list")
if rc not in (0, 1):
    problems.append(f"pip-audit exited {rc}")
seen = {v["id"] for d in deps for v in d.get("vulns", [])} | {a for d in deps for v in d.get("vulns", [])
                                                               for a in v.get("aliases", [])}
for stale in sorted(allowed_ids - seen):
    print(f"audit: note: allow-list entry {stale} matched nothing (ignored by pip-audit, or fixed): remove it?")
if problems:
    for p in problems:
        print(f"audit: FAILED: {p}", file=sys.stderr)
    sys.exit(1)
print(f"audit: OK: {len(deps)} dependencies audited, no known vulnerability outside the allow-list")
PYEOF
