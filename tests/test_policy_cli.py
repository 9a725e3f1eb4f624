"""``canhgac policy check|test`` through click."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.policy import default_policy_dir, load_policy
from service.policy.cli import policy_cli


def copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), target)
    return target


def run(*args: str):
    return CliRunner().invoke(policy_cli, list(args), catch_exceptions=False)


def test_check_ok_prints_summary_and_hash(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    result = run("check", "--dir", str(root))
    assert result.exit_code == 0, result.output
    assert load_policy(root).hash in result.output
    assert "quy tắc/rules" in result.output


def test_check_lists_problems_one_per_line_and_fails(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    rules = root / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace("severity: high", "severity: huge", 2),
                     encoding="utf-8")
    result = run("check", "--dir", str(root))
    assert result.exit_code == 1
    problem_lines = [line for line in result.output.splitlines() if "rules.yaml:" in line]
    assert len(problem_lines) == 2
    assert all(".severity:" in line for line in problem_lines)


def test_check_defaults_to_local_policies_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_default(tmp_path)
    (root / "units.yaml").write_text("units: [{id: x}]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.exit_code == 1 and "policies/units.yaml:1" in result.output


def test_check_falls_back_to_the_packaged_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.exit_code == 0
    assert load_policy(default_policy_dir()).hash in result.output


def test_test_command_passes_then_fails_on_a_mismatch(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    ok = run("test", "--dir", str(root))
    assert ok.exit_code == 0, ok.output
    assert "Đạt / passed" in ok.output
    path = root / "tests" / "dang_nhap.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("repeat: 4\n", "repeat: 5\n", 1), encoding="utf-8")
    bad = run("test", "--dir", str(root))
    assert bad.exit_code == 1
    fail_lines = [line for line in bad.output.splitlines() if line.startswith("FAIL ")]
    assert len(fail_lines) == 1
    assert "Sai ít lần" in fail_lines[0] and "dang_nhap_sai_roi_thanh_cong" in fail_lines[0]


def test_test_command_on_an_invalid_policy(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    (root / "broken.yaml").write_text("rules: [", encoding="utf-8")
    result = run("test", "--dir", str(root))
    assert result.exit_code == 1 and "broken.yaml:" in result.output
