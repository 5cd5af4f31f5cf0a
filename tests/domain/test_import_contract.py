"""The import contracts in pyproject.toml hold, and each of them can fail.

import-linter reports a contract "KEPT" also when it checks nothing (a misspelt module, indirect
imports ignored), so the second test copies the code, adds one forbidden import per contract and
expects every contract to be reported broken.

What an import contract cannot see, SQL text, is checked by scanning the source: accounting and
the dashboard name none of telemetry's tables (they call ``telemetry.queue``,
``telemetry.traces`` and ``telemetry.readers``), nor reach its models' managers; and telemetry
names none of accounting's tables, nor reaches its models' managers (ingest asks
``accounting.services.inventory``).
"""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
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
    "Accounting and the dashboard use only telemetry's published modules (queue, traces,",
    "Telemetry uses only accounting's published modules (API auth and problems, inventory,",
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
    # A service maintaining telemetry's partitions itself (the workers' job) instead of going
    # through a published module (telemetry.partitions imports only Django: no other contract).
    "accounting/services/_violation_telemetry.py": "import telemetry.partitions\n",
    # Ingest looking up allocations itself instead of asking the inventory (accounting.selectors
    # imports no workers nor demo: no other contract is touched).
    "telemetry/_violation.py": "import accounting.selectors.jobs\n",
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


# --- accounting and the dashboard through telemetry's published modules ----------------------

PUBLISHED = {"telemetry.queue", "telemetry.traces", "telemetry.readers", "telemetry.series", "telemetry.models"}
# A table of telemetry's (its models' tables, the raw series' daily partitions, the window view).
TELEMETRY_TABLE = re.compile(r"\btelemetry_[a-z]\w*")


def _sources(*packages: str) -> list[Path]:
    """The packages' modules but their migrations (frozen history that moves data between apps)
    and the host agent (which has no database but its own SQLite spool)."""
    return sorted(
        path
        for package in packages
        for path in (ROOT / package).rglob("*.py")
        if not {"migrations", "agent"} & set(path.relative_to(ROOT).parts)
    )


def _consumer_sources() -> list[Path]:
    return _sources("accounting", "dashboard")


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant of the module but its docstrings (prose, not SQL), with its line;
    f-strings give their literal parts."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_telemetry_contract_forbids_every_telemetry_module_but_the_published_ones():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = [c for c in contracts if c.get("source_modules") == ["accounting", "dashboard"]]
    assert len(contract) == 1
    modules = {
        f"telemetry.{p.stem}"
        for p in (ROOT / "telemetry").iterdir()
        if p.name not in {"__init__.py", "__pycache__"} and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert {"telemetry.queue", "telemetry.traces", "telemetry.services", "telemetry.agent"} <= modules
    assert set(contract[0]["forbidden_modules"]) == modules - PUBLISHED


def test_accounting_and_the_dashboard_name_no_telemetry_table_in_sql():
    found: dict[str, list[str]] = {}
    for path in _consumer_sources():
        for line, text in _strings(ast.parse(path.read_text())):
            for table in TELEMETRY_TABLE.findall(text):
                found.setdefault(str(path.relative_to(ROOT)), []).append(f"{line}: {table}")
    assert found == {}


def _models(app: str) -> set[str]:
    tree = ast.parse((ROOT / app / "models.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def _telemetry_models() -> set[str]:
    return _models("telemetry")


def _manager_uses(tree: ast.AST, models: set[str]) -> list[tuple[int, str]]:
    """``Model.objects`` (or the model's ``_meta``, its table name) for these model names."""
    return [
        (node.lineno, f"{node.value.id}.{node.attr}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in {"objects", "_meta", "_default_manager", "_base_manager"}
        and isinstance(node.value, ast.Name)
        and node.value.id in models
    ]


def test_accounting_and_the_dashboard_use_no_telemetry_model_manager():
    models = _telemetry_models()
    assert {"TelemetryBatch", "GpuSeries", "HostWindow"} <= models
    found = [
        f"{path.relative_to(ROOT)}:{line}: {use}"
        for path in _consumer_sources()
        for line, use in _manager_uses(ast.parse(path.read_text()), models)
    ]
    assert found == []


def test_the_scans_find_a_telemetry_table_in_sql_and_a_manager():
    """The scans above can fail: the statements they are meant to catch are caught, prose is not."""
    tree = ast.parse(
        '''"""Docstrings may name telemetry_telemetrybatch."""
def f(cursor, pks):
    """Nor is this one SQL: telemetry_gpuseries."""
    cursor.execute(f"SELECT id FROM telemetry_telemetrybatch WHERE id = ANY(%s) {''}", [pks])
    table = GpuSeries._meta.db_table
    return TelemetryBatch.objects.filter(pk__in=pks), table
'''
    )
    tables = [(line, t) for line, text in _strings(tree) for t in TELEMETRY_TABLE.findall(text)]
    assert tables == [(4, "telemetry_telemetrybatch")]
    assert sorted(_manager_uses(tree, _telemetry_models())) == [(5, "GpuSeries._meta"), (6, "TelemetryBatch.objects")]


# --- telemetry through accounting's published modules ---------------------------------------

PUBLISHED_BY_ACCOUNTING = {
    "accounting.api.auth",
    "accounting.api.errors",
    "accounting.api.serializers",
    "accounting.domain.timebase",
    "accounting.models",
    "accounting.services.inventory",
    "accounting.services.work_queue",
}
ACCOUNTING_TABLE = re.compile(r"\baccounting_[a-z]\w*")


def test_the_accounting_contract_forbids_all_of_accounting_but_the_published_modules():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = [c for c in contracts if c.get("source_modules") == ["telemetry"]]
    assert len(contract) == 1
    assert contract[0]["forbidden_modules"] == ["accounting"]
    assert contract[0]["allow_indirect_imports"] is True
    allowed = {rule.removeprefix("telemetry.** -> ") for rule in contract[0]["ignore_imports"]}
    assert allowed == PUBLISHED_BY_ACCOUNTING
    for module in allowed:  # each exception names a real module
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module


def test_telemetry_names_no_accounting_table_in_sql():
    found: dict[str, list[str]] = {}
    for path in _sources("telemetry"):
        for line, text in _strings(ast.parse(path.read_text())):
            for table in ACCOUNTING_TABLE.findall(text):
                found.setdefault(str(path.relative_to(ROOT)), []).append(f"{line}: {table}")
    assert found == {}


def test_telemetry_uses_no_accounting_model_manager():
    models = _models("accounting")
    assert {"Host", "Device", "HardwareModel", "ApiToken"} <= models
    found = [
        f"{path.relative_to(ROOT)}:{line}: {use}"
        for path in _sources("telemetry")
        for line, use in _manager_uses(ast.parse(path.read_text()), models)
    ]
    assert found == []


def test_the_scans_find_an_accounting_table_in_sql_and_a_manager():
    tree = ast.parse(
        """def f(cursor, host_id):
    cursor.execute("SELECT hostname FROM accounting_host WHERE id = %s", [host_id])
    return Device.objects.filter(host_id=host_id), Host._meta.db_table
"""
    )
    tables = [(line, t) for line, text in _strings(tree) for t in ACCOUNTING_TABLE.findall(text)]
    assert tables == [(2, "accounting_host")]
    assert sorted(_manager_uses(tree, _models("accounting"))) == [(3, "Device.objects"), (3, "Host._meta")]
