"""No Docker engine runs here: keep the deployment files honest by parsing them and checking
that every command they run exists in this codebase."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def _check_command(argv: list[str]) -> None:
    program = argv[0]
    if program == "sh":
        for part in re.split(r"&&|;", argv[2]):
            _check_command(shlex.split(part.strip()))
        return
    if program == "python" and argv[1] == "manage.py":
        assert argv[2] in get_commands(), f"manage.py {argv[2]} does not exist"
        return
    if program == "celery":
        assert argv[1:3] == ["-A", "config"], argv
        assert argv[3] in {"worker", "beat"}, argv
        return
    if program == "gunicorn":
        module, _, attr = argv[1].partition(":")
        assert (ROOT / (module.replace(".", "/") + ".py")).exists() and attr == "application"
        return
    if program == "carbonledger-agent":
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert 'carbonledger-agent = "telemetry.agent.cli:main"' in pyproject
        from telemetry.agent import cli

        assert argv[1] in {"run", "simulate", "status", "probe"}
        assert hasattr(cli, "main")
        return
    raise AssertionError(f"unknown program in compose command: {argv}")


def test_compose_brings_up_the_whole_stack_with_real_commands():
    services = _compose()["services"]
    assert {"postgres", "redis", "setup", "web", "worker", "beat", "agent-sim", "scheduler"} <= set(services)
    for name, service in services.items():
        command = service.get("command")
        if name in {"postgres", "redis"}:
            continue
        assert command, f"{name} has no command"
        _check_command(list(command))
    assert services["web"]["ports"] == ["8000:8000"]


def test_compose_requires_a_secret_instead_of_defaulting_one():
    text = (ROOT / "docker" / "compose.yaml").read_text()
    assert "DJANGO_SECRET_KEY: ${DJANGO_SECRET_KEY:?" in text


def test_dockerfile_is_multi_stage_non_root_and_copies_what_exists():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] != "root"
    for source in re.findall(r"^COPY (?:--chown=\S+ )?(?!--from)(\S+(?: \S+)*) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies missing {item}"


@pytest.mark.parametrize("path", ["docker/k8s/agent-daemonset.yaml"])
def test_kubernetes_manifests_parse(path):
    documents = [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]
    kinds = {d["kind"] for d in documents}
    assert "DaemonSet" in kinds
    daemonset = next(d for d in documents if d["kind"] == "DaemonSet")
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert "carbonledger-agent" in " ".join(container.get("command", []) + container.get("args", []))


def test_systemd_unit_runs_the_agent():
    unit = (ROOT / "docker" / "agent" / "carbonledger-agent.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    assert exec_start.split()[0].endswith("carbonledger-agent") and exec_start.split()[1] == "run"


def test_healthz_answers(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"
