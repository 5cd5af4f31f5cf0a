"""scripts/audit.sh fails closed: unreachable services, skipped dependencies and vulnerabilities
outside the allow-list all exit non-zero. pip-audit is replaced by a canned report (no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "audit.sh"

DJANGO_OK = {"name": "django", "version": "5.2.19", "vulns": []}
VULN = {"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": ["5.2.20"], "aliases": ["CVE-2026-0001"], "description": "x"}


def _run(tmp_path: Path, report: dict | None, allowlist: str = "", **env: str) -> subprocess.CompletedProcess:
    """audit.sh with AUDIT_PYTHON a wrapper: ``-m pip_audit`` writes ``report``, the rest is real Python."""
    canned = tmp_path / "canned.json"
    if report is not None:
        canned.write_text(json.dumps(report))
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [[ "$1" == "-m" ]]; then\n'
        '  while [[ $# -gt 0 ]]; do [[ "$1" == "--output" ]] && out="$2"; shift; done\n'
        f'  [[ -f {canned} ]] && cp {canned} "$out" && exit 0\n'
        '  echo "ConnectionError: Failed to resolve host" >&2; exit 1\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    allow = tmp_path / "allow"
    allow.write_text(allowlist)
    return subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AUDIT_PYTHON": str(fake), "AUDIT_ALLOWLIST": str(allow), **env},
    )


def test_a_clean_report_passes(tmp_path):
    result = _run(tmp_path, {"dependencies": [DJANGO_OK]})
    assert result.returncode == 0, result.stderr
    assert "1 dependencies audited" in result.stdout


def test_an_unreachable_service_fails(tmp_path):
    result = _run(tmp_path, None)
    assert result.returncode == 1
    assert "produced no report" in result.stderr and "unreachable" in result.stderr


def test_skipped_dependencies_fail_although_pip_audit_found_nothing(tmp_path):
    skipped = {"name": "amqp", "skip_reason": "Dependency not found on PyPI and could not be audited: amqp (5.4.2)"}
    result = _run(tmp_path, {"dependencies": [DJANGO_OK, skipped]})
    assert result.returncode == 1
    assert "1 of 2 dependencies were NOT audited" in result.stderr
    # A documented skip is accepted.
    assert _run(tmp_path, {"dependencies": [DJANGO_OK, skipped]}, "skip:amqp private mirror build\n").returncode == 0


def test_an_empty_report_fails(tmp_path):
    result = _run(tmp_path, {"dependencies": []})
    assert result.returncode == 1 and "no dependencies" in result.stderr


def test_a_vulnerability_fails_unless_allow_listed_with_a_reason(tmp_path):
    report = {"dependencies": [{**DJANGO_OK, "vulns": [VULN]}]}
    result = _run(tmp_path, report)
    assert result.returncode == 1
    assert "django 5.2.19: GHSA-aaaa-bbbb-cccc (CVE-2026-0001) fixed in: 5.2.20" in result.stdout
    assert _run(tmp_path, report, "# header\nCVE-2026-0001  admin-only feature we do not use\n").returncode == 0
    no_reason = _run(tmp_path, report, "GHSA-aaaa-bbbb-cccc\n")
    assert no_reason.returncode == 1 and "has no reason" in no_reason.stderr


def test_the_shipped_allow_list_gives_every_entry_a_reason():
    for raw in (ROOT / ".pip-audit-allowlist").read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        assert not words or len(words) >= 2, raw
