"""The default policy's own YAML rule tests, and the rule-test runner itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.policy import default_policy_dir, load_policy, run_policy_tests

DEFAULT = load_policy(default_policy_dir())


def copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), target)
    return target


def test_default_policy_passes_its_rule_tests() -> None:
    failures = run_policy_tests(DEFAULT)
    assert failures == [], "\n".join(str(f) for f in failures)


@pytest.mark.parametrize("rule", [r.id for r in DEFAULT.rules])
def test_every_rule_has_a_firing_step_and_a_near_miss(rule: str) -> None:
    fires = [s for t in DEFAULT.tests for s in t.steps if rule in s.expect]
    near = [s for t in DEFAULT.tests if t.rule == rule for s in t.steps if rule not in s.expect]
    assert fires and near


def test_windowed_and_signal_rules_are_tested_with_sequences() -> None:
    for rule in ("xuat_in_hang_loat", "xoa_hang_loat", "dang_nhap_sai_roi_thanh_cong"):
        assert any(s.repeat > 1 for t in DEFAULT.tests if t.rule == rule for s in t.steps)
    for rule in ("tac_tu_im_lang", "dut_quang_so_su_kien"):
        assert all(s.signal is not None for t in DEFAULT.tests if t.rule == rule for s in t.steps)


def test_a_wrong_expectation_is_reported_with_file_line_and_step(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    path = root / "tests" / "hang_loat.yaml"
    text = path.read_text(encoding="utf-8")
    # the first 19 deletions are now expected to fire: they must not (the 20th still does)
    text = text.replace("        repeat: 19\n        interval_seconds: 10\n        expect: []",
                        "        repeat: 19\n        interval_seconds: 10\n        expect: [xoa_hang_loat]", 1)
    path.write_text(text, encoding="utf-8")
    failures = run_policy_tests(load_policy(root))
    (first,) = failures
    assert first.test == "Xóa 20 hồ sơ trong mười phút"
    assert (first.step, first.expected, first.actual) == (1, ("xoa_hang_loat",), ())
    assert first.file.endswith("hang_loat.yaml")
    lines = text.splitlines()
    assert lines[first.line - 1].strip().startswith("- event:")
    assert "xoa_hang_loat" in str(first) and f"hang_loat.yaml:{first.line}" in str(first)


def test_a_rule_change_breaks_its_tests(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    rules = root / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace(
        "{window_seconds: 600, min_events: 20}", "{window_seconds: 600, min_events: 25}"), encoding="utf-8")
    failures = run_policy_tests(load_policy(root))
    assert {f.test for f in failures} == {"Xóa 20 hồ sơ trong mười phút"}


def test_untested_rules_fail_coverage(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    (root / "extra.yaml").write_text(
        "rules:\n"
        "  - id: in_ngoai_gio\n"
        "    title: In ngoài giờ\n"
        "    severity: low\n"
        "    response: record\n"
        "    description: Printing outside working hours.\n"
        "    conditions: [{action_in: {actions: [print]}}, {outside_working_hours: {}}]\n",
        encoding="utf-8",
    )
    failures = run_policy_tests(load_policy(root))
    (failure,) = failures
    assert failure.test == "(coverage) in_ngoai_gio" and failure.step is None
    assert failure.file.endswith("extra.yaml") and failure.line == 2
    # a firing test alone is not enough: a near miss is required too
    (root / "tests" / "extra.yaml").write_text(
        "tests:\n"
        "  - name: in lúc nửa đêm\n"
        "    start: 2026-03-02T23:00:00+07:00\n"
        "    defaults: {host: PC-1, actor: a}\n"
        "    steps:\n"
        "      - event: {action: print}\n"
        "        expect: [in_ngoai_gio]\n",
        encoding="utf-8",
    )
    (failure,) = run_policy_tests(load_policy(root))
    assert "near-miss" in failure.message
    text = (root / "tests" / "extra.yaml").read_text(encoding="utf-8")
    (root / "tests" / "extra.yaml").write_text(
        text.replace("  - name: in lúc nửa đêm\n", "  - name: in lúc nửa đêm\n    rule: in_ngoai_gio\n")
        + "      - event: {action: print}\n        at: 2026-03-03T10:00:00+07:00\n        expect: []\n",
        encoding="utf-8",
    )
    assert run_policy_tests(load_policy(root)) == []


def test_disabled_rules_never_fire_and_need_no_tests(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    rules = root / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace(
        "  - id: xoa_hang_loat\n", "  - id: xoa_hang_loat\n    enabled: false\n"), encoding="utf-8")
    policy = load_policy(root)
    assert "xoa_hang_loat" not in {r.spec.id for r in policy.compiled_rules}
    failures = run_policy_tests(policy)
    assert failures and {f.test for f in failures} == {"Xóa 20 hồ sơ trong mười phút"}
