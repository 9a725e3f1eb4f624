"""The policy and the incident form ship inside the wheel and are found where pip puts them."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from service.core import shipped

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_wins_over_an_installed_copy(tmp_path: Path) -> None:
    (tmp_path / "share" / "canhgac" / "policies").mkdir(parents=True)
    assert shipped.shipped_dir("policies", prefixes=(str(tmp_path),)) == ROOT / "policies"


def test_an_installed_copy_is_found_when_there_is_no_checkout(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site-packages"
    (site / "incident_forms").mkdir(parents=True)  # another package's folder: not ours
    monkeypatch.setattr(shipped, "PROJECT_ROOT", site)
    installed = tmp_path / "share" / "canhgac" / "incident_forms"
    installed.mkdir(parents=True)
    assert shipped.shipped_dir("incident_forms", prefixes=(str(tmp_path),)) == installed
    # nothing anywhere: the project path is named, so the error says where it looked first
    assert shipped.shipped_dir("nothing", prefixes=(str(tmp_path),)) == tmp_path / "site-packages" / "nothing"


def test_the_interpreters_data_path_is_searched() -> None:
    assert sysconfig.get_path("data") in shipped._prefixes()


@pytest.mark.heavy
def test_a_wheel_install_loads_the_default_policy_and_form(tmp_path: Path) -> None:
    """Build the wheel, install it under a prefix, and load both from that install alone."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"),
                    str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "w").glob("canhgac-*.whl")
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first uninstalls the developer's own editable install
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
                    "--prefix", str(prefix), str(wheel)], check=True, capture_output=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    script = (
        "import sys; from service.core import shipped\n"
        f"assert shipped.__file__.startswith({str(site)!r}), shipped.__file__\n"
        f"policies = shipped.shipped_dir('policies', prefixes=({str(prefix)!r},))\n"
        f"forms = shipped.shipped_dir('incident_forms', prefixes=({str(prefix)!r},))\n"
        f"assert str(policies).startswith({str(prefix)!r}), policies\n"
        "from service.policy.loader import load_policy\n"
        "from service.policy.engine import run_policy_tests\n"
        "policy = load_policy(policies)\n"
        "assert not run_policy_tests(policy)\n"
        "from service.incidents.schemas import load_form\n"
        "print(len(policy.rules), load_form(forms).title)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    rules, title = done.stdout.split(" ", 1)
    assert int(rules) >= 11 and title.strip()
