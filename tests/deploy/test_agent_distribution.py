"""The carbonledger-agent distribution (packaging/agent) carries the agent and nothing of the
server: its metadata, the modules the agent imports, and the wheel setuptools actually builds.
scripts/agent_install_check.sh installs that wheel into a fresh venv and runs it."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT_PYPROJECT = ROOT / "packaging" / "agent" / "pyproject.toml"
SERVER_PACKAGES = {"django", "djangorestframework", "drf-spectacular", "celery", "plotly", "codecarbon", "pandas"}
# What a distribution name installs as a module: the agent's imports must come from these or stdlib.
AGENT_DIST_MODULES = {"nvidia-ml-py": "pynvml", "psutil": "psutil", "amdsmi": "amdsmi"}


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def _agent() -> dict:
    return tomllib.loads(AGENT_PYPROJECT.read_text())


def _agent_sources() -> list[Path]:
    return sorted(p for p in (ROOT / "telemetry" / "agent").rglob("*.py") if "__pycache__" not in p.parts)


def test_agent_distribution_depends_on_nvml_only_and_no_server_package():
    project = _agent()["project"]
    assert project["name"] == "carbonledger-agent"
    assert [_name(r) for r in project["dependencies"]] == ["nvidia-ml-py"]
    extras = {_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    assert extras == {"psutil", "amdsmi"}
    assert not ({_name(r) for r in project["dependencies"]} | extras) & SERVER_PACKAGES
    # The same entry point as the whole project's, so docs and unit files name one script.
    server_scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert project["scripts"] == {"carbonledger-agent": "telemetry.agent.cli:main"}
    assert server_scripts["carbonledger-agent"] == project["scripts"]["carbonledger-agent"]


def test_agent_distribution_packages_only_the_agent_from_this_checkout():
    config = _agent()["tool"]["setuptools"]
    assert (AGENT_PYPROJECT.parent / config["package-dir"][""]).resolve() == ROOT
    assert config["packages"] == ["telemetry.agent"]
    assert config["include-package-data"] is False
    assert _agent()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "telemetry.agent.__version__"}
    # The wheel leaves telemetry/__init__.py out ("telemetry" is a namespace package on a host):
    # nothing the agent needs may live there.
    init = ast.parse((ROOT / "telemetry" / "__init__.py").read_text())
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in init.body)


def test_agent_imports_only_stdlib_and_its_declared_dependencies():
    declared = {_name(r) for r in _agent()["project"]["dependencies"]}
    declared |= {_name(r) for reqs in _agent()["project"]["optional-dependencies"].values() for r in reqs}
    allowed = set(sys.stdlib_module_names) | {AGENT_DIST_MODULES[d] for d in declared}
    seen: dict[str, set[str]] = {}
    for path in _agent_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                seen.setdefault(name, set()).add(path.name)
    internal = {n for n in seen if n.split(".")[0] == "telemetry"}
    assert all(n == "telemetry.agent" or n.startswith("telemetry.agent.") for n in internal), internal
    outside = {n: sorted(files) for n, files in seen.items() if n.split(".")[0] not in allowed | {"telemetry"}}
    assert outside == {}
    assert "pynvml" in seen


def test_import_contract_forbids_every_telemetry_module_but_the_agent():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    strict = [
        c
        for c in contracts
        if c.get("source_modules") == ["telemetry.agent"] and "accounting" in c["forbidden_modules"]
    ]
    assert len(strict) == 1 and strict[0]["allow_indirect_imports"] is False
    forbidden = set(strict[0]["forbidden_modules"])
    server_modules = {
        f"telemetry.{p.stem}"
        for p in (ROOT / "telemetry").iterdir()
        if p.name not in {"agent", "__init__.py", "__pycache__"} and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert server_modules
    assert server_modules | {"accounting", "dashboard", "workers", "config"} <= forbidden
    assert {"codecarbon", "orjson"} <= forbidden


def test_built_wheel_holds_only_the_agent_and_requires_only_nvml(tmp_path):
    # Built from a copy of what the wheel takes (as scripts/agent_install_check.sh does): pip's
    # in-tree build would leave build/ and an egg-info in the checkout. ≈ 5 s with build isolation.
    src = tmp_path / "src"
    shutil.copytree(
        AGENT_PYPROJECT.parent, src / "packaging" / "agent", ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    for path in _agent_sources():
        target = src / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(src / "packaging" / "agent"),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "dist").glob("carbonledger_agent-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        record = zf.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    from telemetry.agent import __version__

    assert wheel.name == f"carbonledger_agent-{__version__}-py3-none-any.whl"
    code = sorted(n for n in names if ".dist-info/" not in n)
    assert code == sorted(p.relative_to(ROOT).as_posix() for p in _agent_sources())
    recorded = {line.split(",")[0] for line in record.splitlines() if line}
    assert not {r for r in recorded if r.split("/")[0] in {"accounting", "dashboard", "config", "workers"}}
    assert {r for r in recorded if ".dist-info/" not in r} == set(code)
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    assert requires == ["nvidia-ml-py>=12.570", 'psutil>=6; extra == "psutil"', 'amdsmi>=6.4; extra == "amd"']
    assert "carbonledger-agent = telemetry.agent.cli:main" in entry_points
