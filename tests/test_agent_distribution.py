"""The agent's own distribution installs alone: no server package reaches an official's PC."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent"

# Distributions only the server installs (none may be installed with the agent)...
SERVER_ONLY_DISTRIBUTIONS = {"flask", "sqlalchemy", "alembic", "weasyprint", "psycopg",
                             "psycopg-binary", "apscheduler", "cheroot", "flask-login",
                             "flask-wtf", "flask-babel", "structlog"}
# ... and the modules they provide (none may be imported by the agent).
SERVER_ONLY_MODULES = {"flask", "sqlalchemy", "alembic", "weasyprint", "psycopg", "apscheduler",
                       "cheroot", "flask_login", "flask_wtf", "flask_babel", "structlog",
                       "service", "argon2", "rfc8785", "yaml", "aiosmtpd"}
# Import names of what agent/pyproject.toml declares (pywin32 gives several modules).
# The PII scanner's readers and mobile prefixes: python-calamine, olefile, lxml, phonenumbers.
DECLARED_MODULES = {"watchdog", "pydantic", "click", "openpyxl", "docx", "pypdf",
                    "python_calamine", "olefile", "lxml", "phonenumbers",
                    "win32service", "win32serviceutil", "win32security", "servicemanager",
                    "pywintypes", "win32api", "win32event"}
OWN_PACKAGES = {"canhgac_agent", "canhgac_common"}


def _imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _agent_sources() -> list[Path]:
    return sorted(AGENT.rglob("*.py"))


def test_the_agent_imports_only_the_standard_library_and_what_it_declares():
    declared = {Requirement(line).name for line in tomllib.loads(
        (AGENT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]}
    assert {"watchdog", "pydantic", "click", "openpyxl", "python-docx", "pypdf",
            "python-calamine", "olefile", "lxml", "phonenumbers", "pywin32"} == declared, "update DECLARED_MODULES with the new dependency's modules"
    allowed = set(sys.stdlib_module_names) | DECLARED_MODULES | OWN_PACKAGES | {"__future__"}
    problems = {}
    for path in _agent_sources():
        imported = _imported_top_level_modules(path)
        if imported & SERVER_ONLY_MODULES or imported - allowed:
            problems[str(path.relative_to(ROOT))] = sorted(
                (imported & SERVER_ONLY_MODULES) | (imported - allowed))
    assert len(_agent_sources()) > 10
    assert not problems, f"the agent imports what it does not declare: {problems}"


def test_the_static_check_catches_a_server_import(tmp_path):
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nfrom sqlalchemy.orm import Session\n"
                      "def f():\n    import flask_login\n", encoding="utf-8")
    assert _imported_top_level_modules(sample) & SERVER_ONLY_MODULES == {"sqlalchemy",
                                                                          "flask_login"}


def _venv_python(folder: Path) -> Path:
    return folder / ("Scripts" if os.name == "nt" else "bin") / (
        "python.exe" if os.name == "nt" else "python")


def _run(args: list[str], cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=cwd,
                            **kwargs)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.mark.heavy
def test_the_agent_installs_alone_from_its_lock(tmp_path):
    folder = tmp_path / "agent-venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = str(_venv_python(folder))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    _run([python, "-m", "pip", "install", "-q", "--require-hashes", "-r",
          "requirements/agent.txt"], env=env)
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "./agent"],
         env=env)

    # Checks run outside the repository: its folder on sys.path would show the server's metadata.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = Path(python).parent / ("canhgac-agent.exe" if os.name == "nt" else "canhgac-agent")
    helped = _run([str(script), "--help"], cwd=outside, env=env)
    assert "install-service" in helped.stdout and "--config" in helped.stdout

    listed = _run([python, "-c", (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))")],
        cwd=outside, env=env)
    installed = set(json.loads(listed.stdout))
    assert "canhgac-agent" in installed
    assert not installed & SERVER_ONLY_DISTRIBUTIONS, installed & SERVER_ONLY_DISTRIBUTIONS
    assert "canhgac" not in installed  # the server's distribution

    imported = _run([python, "-c", (
        "import json, sys, canhgac_agent.runner, canhgac_agent.watcher, canhgac_agent.winaudit, "
        "canhgac_agent.winservice, canhgac_agent.linux_service, canhgac_agent.cli; "
        "print(json.dumps([canhgac_agent.__file__, sorted({m.split('.')[0] for m in sys.modules})]))"
    )], cwd=outside, env=env)
    location, modules = json.loads(imported.stdout)
    assert Path(location).is_relative_to(folder)  # the installed copy, not the repository's
    loaded = set(modules)
    assert not loaded & SERVER_ONLY_MODULES, loaded & SERVER_ONLY_MODULES

    # The unit and the Windows script are inside the installed package.
    shipped = _run([python, "-c", (
        "from importlib import resources; d = resources.files('canhgac_agent') / 'deploy'; "
        "print(sorted(p.name for p in d.iterdir()))")], cwd=outside, env=env)
    assert "canhgac-agent.service" in shipped.stdout and "install-agent.ps1" in shipped.stdout
