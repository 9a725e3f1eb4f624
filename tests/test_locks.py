"""The lock files name every dependency the project declares, pinned and hashed."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"

# What only the server needs: none of it may reach an official's PC with the agent.
SERVER_ONLY = {"flask", "sqlalchemy", "alembic", "weasyprint", "psycopg", "psycopg-binary",
               "apscheduler", "hypercorn", "flask-login", "flask-wtf", "flask-babel"}


def _pins(lock: Path) -> dict[str, str]:
    """Return {name: version} for every `name==version` line of a lock file, checking hashes."""
    pins: dict[str, str] = {}
    text = lock.read_text(encoding="utf-8")
    # One requirement per block: the pin line, then its --hash lines (joined by backslashes).
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        requirement = Requirement(head)
        assert "--hash=sha256:" in block, f"{lock.name}: {requirement.name} has no hash"
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{lock.name}: {head} is not pinned"
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def _server_requirements(extras: tuple[str, ...] = ()) -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = cfg["options"]["install_requires"].split("\n")
    for extra in extras:
        lines += cfg["options.extras_require"][extra].split("\n")
    return [Requirement(line) for line in lines if line.strip()]


def _agent_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "agent" / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(line) for line in project["project"]["dependencies"]]


@pytest.mark.parametrize(("lock", "requirements"), [
    ("server.txt", _server_requirements()),
    ("test.txt", _server_requirements(("test", "bench"))),
    ("agent.txt", _agent_requirements()),
], ids=["server", "test", "agent"])
def test_every_declared_dependency_is_locked_within_its_range(lock, requirements):
    pins = _pins(REQUIREMENTS / lock)
    environment = default_environment()
    for requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is missing from requirements/{lock}: regenerate it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={pins[name]}, outside {requirement}")
    # The build back-end is locked too: the project installs with --no-build-isolation.
    assert {"setuptools", "wheel"} <= pins.keys()


def test_the_agent_lock_holds_no_server_package():
    assert SERVER_ONLY.isdisjoint(_pins(REQUIREMENTS / "agent.txt"))


def test_the_readme_and_ci_install_from_the_locks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install --require-hashes -r requirements/server.txt" in readme
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/test.txt" in script
    assert "--no-deps --no-build-isolation -e ." in script
