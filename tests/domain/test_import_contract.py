"""The import contracts in pyproject.toml hold, and each of them can fail.

import-linter reports a contract "KEPT" also when it checks nothing (a misspelt module, indirect
imports ignored), so the second test copies the code, adds one forbidden import per contract and
expects every contract to be reported broken.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("accounting", "telemetry", "dashboard", "workers", "config", "demo")
CONTRACTS = (
    "The accounting core is pure (no Django, DRF, Celery or Plotly)",
    "The host agent is plain Python (no Django, DRF, Celery or Plotly)",
    "Accounting is layered: api | management > services > mappers > selectors >",
    "The apps never import the workers",
    "The agent imports nothing of accounting, dashboard, workers, config, telemetry's",
    "Production apps never import the demo app",
)
# One forbidden import per contract (each would be a real mistake): the module, its import.
VIOLATIONS = {
    # Indirect: accounting.models imports Django.
    "accounting/domain/_violation.py": "import accounting.models\n",
    # Indirect: telemetry.models imports Django; and the agent reaching the server's code.
    "telemetry/agent/_violation.py": "import telemetry.models\n",
    # A selector (a read) calling a service (a write): the layers upside down.
    "accounting/selectors/_violation.py": "import accounting.services.jobs\n",
    "dashboard/_violation.py": "import workers.tasks\n",
    # A service reaching for the demo data generator (it imports only accounting.models and
    # the domain, so no other contract is touched).
    "accounting/services/_violation_demo.py": "import demo.management.commands.seed_history\n",
}


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


def test_every_import_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout
    assert all(name in " ".join(result.stdout.split()) for name in CONTRACTS)


def test_every_import_contract_fails_on_a_forbidden_import(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, source in VIOLATIONS.items():
        (tmp_path / module).write_text(source)
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert f"Contracts: 0 kept, {len(CONTRACTS)} broken." in result.stdout, result.stdout
    assert all(name in " ".join(result.stdout.split()) for name in CONTRACTS)
