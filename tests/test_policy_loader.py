"""Loading policy directories: validation with FILE:LINE:FIELD, references, hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.policy import (
    PolicyError,
    default_policy_dir,
    load_policy,
    policy_hash,
    read_policy_files,
)
from service.policy.loader import load_policy_files, resolve_policy_dir


def copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), target)
    return target


def line_of(text: str, marker: str) -> int:
    """1-based line of the first line containing ``marker``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in text")


def edit(path: Path, old: str, new: str) -> str:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return text


def problems_of(directory: Path) -> list:
    with pytest.raises(PolicyError) as caught:
        load_policy(directory)
    assert caught.value.problems, "a PolicyError must list its problems"
    return caught.value.problems


def test_default_policy_loads_with_every_section() -> None:
    policy = load_policy(default_policy_dir())
    assert set(policy.data_classes) == {"dan_cu", "ho_tich", "ho_so_tthc", "an_sinh", "dat_dai"}
    assert {"cong_an", "van_phong", "tt_hcc", "vh_xh", "kinh_te", "dv_cong_ich"} <= set(policy.units)
    assert policy.data_classes["dan_cu"].owner == "cong_an"
    assert policy.data_classes["ho_tich"].owner == "van_phong"
    assert policy.data_classes["ho_so_tthc"].owner == "tt_hcc"
    assert policy.data_classes["an_sinh"].owner == "vh_xh"
    assert policy.data_classes["dat_dai"].owner == "kinh_te"
    assert len(policy.rules) >= 10
    for rule in policy.rules:
        assert rule.title and rule.description and rule.conditions
    assert policy.settings.timezone == "Asia/Ho_Chi_Minh"
    assert len(policy.hash) == 64
    assert "rules.yaml" in policy.files and any(f.startswith("tests/") for f in policy.files)


def test_unknown_key_is_rejected_with_file_line_and_field(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "rules.yaml", "    severity: critical\n", "    severity: critical\n    severty: high\n")
    problems = problems_of(root)
    assert len(problems) == 1
    problem = problems[0]
    assert problem.file.endswith("rules.yaml")
    assert problem.line == line_of(text, "severty: high")
    assert problem.field == "rules[0].severty"
    assert str(problem).startswith(f"{problem.file}:{problem.line}: rules[0].severty: ")


def test_bad_enum_value_points_at_its_line(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "data_classes.yaml", "    sensitivity: basic\n", "    sensitivity: public\n")
    (problem,) = problems_of(root)
    assert problem.file.endswith("data_classes.yaml")
    assert problem.line == line_of(text, "sensitivity: public")
    assert problem.field.endswith(".sensitivity")


def test_condition_params_are_validated_through_the_registry(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "rules.yaml", "      - action_in: {actions: [copy, move, export]}\n",
                "      - action_in: {actions: [copy, teleport]}\n")
    (problem,) = problems_of(root)
    assert problem.line == line_of(text, "teleport")
    assert problem.field == "rules[0].conditions[0].action_in.actions[1]"


def test_unknown_condition_and_unknown_references_are_reported(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "rules.yaml", "      - destination_kind_in: {kinds: [removable]}\n",
                "      - destination_kind_is: {kinds: [removable]}\n")
    edit(root / "units.yaml", "{data_class: dan_cu, purposes: [xac_minh_dia_chi]}",
         "{data_class: dan_so, purposes: [xac_minh_dia_chi]}")
    edit(root / "data_classes.yaml", "    owner: kinh_te\n", "    owner: phong_kinh_te\n")
    problems = problems_of(root)
    by_file = {Path(p.file).name: p for p in problems}
    assert "destination_kind_is" in by_file["rules.yaml"].message
    assert by_file["rules.yaml"].line == line_of(text, "destination_kind_is")
    assert "dan_so" in by_file["units.yaml"].message
    assert by_file["units.yaml"].field.endswith("uses[0].data_class")
    assert "phong_kinh_te" in by_file["data_classes.yaml"].message


def test_condition_referring_to_a_missing_class(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "rules.yaml", "      - data_class_in: {}\n      - destination_kind_in: {kinds: [removable]}",
                "      - data_class_in: {classes: [dan_cu, y_te]}\n"
                "      - destination_kind_in: {kinds: [removable]}")
    (problem,) = problems_of(root)
    assert "y_te" in problem.message
    assert problem.field == "rules[0].conditions[1].data_class_in.classes[1]"
    assert problem.line == line_of(text, "y_te")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    (root / "zz_extra_rules.yaml").write_text(
        "rules:\n"
        "  - id: xoa_hang_loat\n"
        "    title: Trùng\n"
        "    severity: low\n"
        "    response: record\n"
        "    description: duplicate\n"
        "    conditions: [{action_in: {actions: [delete]}}]\n",
        encoding="utf-8",
    )
    (problem,) = problems_of(root)
    assert problem.file.endswith("zz_extra_rules.yaml")
    assert problem.line == 2 and "xoa_hang_loat" in problem.message
    assert "rules.yaml:" in problem.message  # where the first one is


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "scopes.yaml", "    kind: cloud\n", "    kind: [cloud\n")
    (problem,) = problems_of(root)
    assert problem.file.endswith("scopes.yaml")
    assert line_of(text, "kind: [cloud") <= problem.line <= line_of(text, "kind: [cloud") + 3


def test_duplicate_keys_and_aliases_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "a.yaml").write_text("settings:\n  timezone: Asia/Ho_Chi_Minh\n  timezone: UTC\n", encoding="utf-8")
    (root / "b.yaml").write_text("units:\n  - &u {id: x, name: X}\n  - *u\n", encoding="utf-8")
    problems = problems_of(root)
    lines = {(Path(p.file).name, p.line) for p in problems}
    assert ("a.yaml", 3) in lines
    assert any(name == "b.yaml" for name, _ in lines)
    assert any("alias" in p.message for p in problems)


def test_unquoted_time_and_bad_timezone(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "settings.yaml", '    end: "17:30"', "    end: 17:30")
    edit(root / "settings.yaml", "  timezone: Asia/Ho_Chi_Minh", "  timezone: Asia/Nhan_Ly")
    problems = problems_of(root)
    fields = {p.field: p for p in problems}
    assert fields["settings.working_hours.end"].line == line_of(text, "end: 17:30")
    assert "HH:MM" in fields["settings.working_hours.end"].message
    assert "settings.timezone" in fields


def test_a_bad_yearly_holiday_names_its_line(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "settings.yaml", '"04-30"', '"04-31"')
    problems = problems_of(root)
    bad = [p for p in problems if p.field.startswith("settings.yearly_holidays")]
    assert len(bad) == 1 and bad[0].field == "settings.yearly_holidays[1]"
    assert bad[0].line == line_of(text, '"04-31"') and "MM-DD" in bad[0].message


def test_not_utf8_reports_the_line(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "rules.yaml").write_bytes(b"rules: []\n# ok\n# bad \xff byte\n")
    (problem,) = problems_of(root)
    assert problem.line == 3 and "UTF-8" in problem.message


def test_windowed_condition_only_at_top_level(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "rules.yaml", "      - count_in_window: {window_seconds: 600, min_events: 20}",
                "      - any_of:\n          - count_in_window: {window_seconds: 600, min_events: 20}")
    (problem,) = problems_of(root)
    assert problem.field == "rules[8].conditions[2].any_of[0].count_in_window"
    assert problem.line == line_of(text, "- count_in_window: {window_seconds: 600")


def test_signal_conditions_need_a_signal_rule(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    edit(root / "rules.yaml", "      - event_gap: {min_missing: 1}", "      - event_gap: {min_missing: 1}\n"
         "      - action_in: {actions: [read]}")
    (problem,) = problems_of(root)
    assert "signal" in problem.message and problem.field.endswith("action_in")


def test_explanation_placeholders_are_checked(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    edit(root / "rules.yaml", 'explanation: "Thiếu {missing} sự kiện', 'explanation: "Thiếu {actor} sự kiện')
    (problem,) = problems_of(root)
    assert "{actor}" in problem.message and problem.field.endswith("explanation")


def test_explanation_may_not_carry_identifiers(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    edit(root / "rules.yaml", 'explanation: "Thiếu {missing} sự kiện', 'explanation: "CCCD 020190001234 {missing}')
    (problem,) = problems_of(root)
    assert "digit" in problem.message


def test_test_files_are_validated_too(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    text = edit(root / "tests" / "dang_nhap.yaml", "      - event: {action: login}\n        after_seconds: 20",
                "      - event: {action: login, colour: red}\n        after_seconds: 20")
    edit(root / "tests" / "giam_sat.yaml", "expect: [dut_quang_so_su_kien]", "expect: [khong_co]")
    problems = problems_of(root)
    by_file = {Path(p.file).name: p for p in problems}
    login = by_file["dang_nhap.yaml"]
    assert login.field == "tests[0].steps[1].event.colour"
    assert login.line == line_of(text, "colour: red")
    assert "khong_co" in by_file["giam_sat.yaml"].message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    edit(root / "rules.yaml", "    severity: critical\n", "    severity: severe\n")
    edit(root / "scopes.yaml", "    kind: messaging\n", "    kind: pigeon\n")
    files = {Path(p.file).name for p in problems_of(root)}
    assert files == {"rules.yaml", "scopes.yaml"}


def test_hash_covers_paths_and_bytes_and_ignores_other_files(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    first = load_policy(root).hash
    assert first == policy_hash(read_policy_files(root))
    (root / "README.md").write_text("docs change the docs, not the policy", encoding="utf-8")
    (root / ".rules.yaml.swp").write_bytes(b"\x00editor junk")
    assert load_policy(root).hash == first
    edit(root / "rules.yaml", "# Quy tắc", "#  Quy tắc")
    second = load_policy(root).hash
    assert second != first
    # same bytes under another name is another policy
    files = read_policy_files(root)
    files["rules2.yaml"] = files.pop("rules.yaml")
    assert policy_hash(files) != second
    assert load_policy_files(files).hash == policy_hash(files)


def test_only_top_level_and_tests_folders_are_read(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    (root / "drafts").mkdir()
    (root / "drafts" / "broken.yaml").write_text("rules: [oops", encoding="utf-8")
    assert load_policy(root).files == tuple(sorted(read_policy_files(default_policy_dir())))


def test_missing_directory() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("/nonexistent/policies")
    assert caught.value.problems[0].file == "/nonexistent/policies"


def test_resolve_policy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_policy_dir() == default_policy_dir()
    (tmp_path / "policies").mkdir()
    assert resolve_policy_dir() == Path("policies")
    assert resolve_policy_dir(tmp_path / "x") == tmp_path / "x"
