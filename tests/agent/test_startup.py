"""The agent's start-up cost is part of its overhead budget (docs/agent.md, "Overhead")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What the agent once imported only for conveniences, at ~20 ms of CPU per start together:
# dataclasses (with inspect, ast and dis) and uuid (with platform and libuuid).
HEAVY = {"dataclasses", "inspect", "ast", "dis", "uuid", "platform"}


def test_run_imports_leave_out_heavy_modules():
    code = (
        "import sys\n"
        "import telemetry.agent.cli, telemetry.agent.agent, telemetry.agent.sim, telemetry.agent.sender\n"
        f"print(','.join(sorted(set({sorted(HEAVY)!r}) & set(sys.modules))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert out == "", f"agent start-up imports {out} (see docs/agent.md, 'Overhead')"
