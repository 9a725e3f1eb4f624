"""The report form definition (YAML + pydantic), its mapping to report_incident, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canhgac_common.pii.mask import MASK_TOKENS
from service.incidents.forms import report_arguments
from service.incidents.schemas import (
    FormDefinitionError,
    default_forms_dir,
    load_form,
    parse_form,
)
from service.incidents.workflow import redact_numbers


def test_the_shipped_report_form_is_valid_and_quick_to_fill():
    definition = load_form(default_forms_dir())
    names = [f.name for f in definition.fields]
    for wanted in ("what_happened", "noticed_at", "location", "device", "data_classes",
                   "affected_people", "involved", "actions_taken", "contact"):
        assert wanted in names
    required = [f for f in definition.fields if f.required]
    # Few required fields, and all but "what happened" come with a default.
    assert len(required) <= 3
    assert [f.name for f in required if f.default is None] == ["what_happened"]
    assert definition.by_role("detected_at").default == "now"
    assert {o.value for o in definition.by_role("data_classes").options} == {
        "dan_cu", "ho_tich", "ho_so_tthc", "an_sinh", "dat_dai"}
    types = {f.type for f in definition.fields}
    assert types == {"text", "textarea", "select", "datetime", "checkboxes", "number", "file"}
    for spec in definition.fields:
        assert spec.label.vi and spec.label.en


def test_data_class_options_match_the_default_policy():
    import yaml

    policy = yaml.safe_load((Path(__file__).parents[1] / "policies" / "data_classes.yaml")
                            .read_text(encoding="utf-8"))
    ids = {c["id"] for c in policy["data_classes"]}
    definition = load_form(default_forms_dir())
    assert {o.value for o in definition.by_role("data_classes").options} <= ids


MINIMAL = """
id: report
version: 1
title: {vi: Báo cáo, en: Report}
fields:
  - name: what
    type: textarea
    role: summary
    required: true
    label: {vi: Chuyện gì, en: What}
"""


@pytest.mark.parametrize(("change", "expected"), [
    ("  - name: when\n    type: datetime\n    default: yesterday\n    label: {vi: Khi, en: When}\n",
     "fields[1] (when): default: the only default of a datetime field is 'now'"),
    ("  - name: kind\n    type: select\n    label: {vi: Loại, en: Kind}\n",
     "fields[1] (kind): options: a select field needs options"),
    ("  - name: what\n    type: text\n    label: {vi: Lại, en: Again}\n",
     "fields: duplicate field names: what"),
    ("  - name: n\n    type: number\n    role: summary\n    label: {vi: Số, en: Number}\n",
     "role: role summary needs a field of type text or textarea"),
    ("  - name: Bad-Name\n    type: text\n    label: {vi: X, en: X}\n",
     "fields[1] (Bad-Name).name: String should match pattern"),
    ("  - name: c\n    type: checkboxes\n    default: [zz]\n    options: [{value: a, label: {vi: A, en: A}}]\n    label: {vi: C, en: C}\n",
     "default: a checkboxes default is a list of option values"),
    ("  - name: t\n    type: colour\n    label: {vi: Màu, en: Colour}\n",
     "fields[1] (t).type: Input should be"),
    ("  - name: l\n    type: text\n    label: {vi: Chỉ tiếng Việt}\n",
     "fields[1] (l).label.en: Field required"),
])
def test_a_bad_definition_names_the_file_and_the_field(change, expected):
    with pytest.raises(FormDefinitionError) as caught:
        parse_form(MINIMAL + change, "incident_forms/report.yaml")
    message = str(caught.value)
    assert message.startswith("incident_forms/report.yaml: ")
    assert expected in message


def test_broken_yaml_and_missing_files_are_clear(tmp_path):
    with pytest.raises(FormDefinitionError, match=r"report.yaml: line \d+ not valid YAML"):
        parse_form("id: report\nfields: [\n", "report.yaml")
    with pytest.raises(FormDefinitionError, match="cannot read"):
        load_form(tmp_path)
    (tmp_path / "report.yaml").write_text(MINIMAL.replace("id: report", "id: other"))
    with pytest.raises(FormDefinitionError, match="the file name says 'report'"):
        load_form(tmp_path)


def test_a_changed_file_is_reloaded(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_form(tmp_path).title.vi == "Báo cáo"
    path.write_text(MINIMAL.replace("vi: Báo cáo", "vi: Phiếu mới"), encoding="utf-8")
    import os

    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert load_form(tmp_path).title.vi == "Phiếu mới"


def test_form_values_map_to_report_arguments():
    definition = load_form(default_forms_dir())
    values = {"kind": "mat_thiet_bi", "what_happened": "  Mất USB  ", "location": "Thôn Nà Lầu",
              "noticed_at": datetime(2026, 1, 5, 7, 0), "personal_data": "no",
              "data_classes": ["ho_tich"], "affected_people": 12, "attachment": object()}
    args = report_arguments(definition, values, "Asia/Ho_Chi_Minh")
    assert args["title"] == "Mất máy tính, điện thoại, USB có dữ liệu — Thôn Nà Lầu — Hộ tịch, chứng thực"
    assert args["summary"] == "Mất USB"
    assert args["detected_at"] == datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
    assert args["involves_personal_data"] is False
    assert args["data_classes"] == ["ho_tich"]
    assert "attachment" not in args["form_data"]
    assert args["form_data"]["noticed_at"] == "2026-01-05T00:00:00+00:00"
    for answer in ("yes", "unknown"):
        values["personal_data"] = answer
        assert report_arguments(definition, values, "Asia/Ho_Chi_Minh")["involves_personal_data"]


@given(st.lists(st.integers(0, 9), min_size=9, max_size=12),
       st.sampled_from(["", " ", "."]), st.text(alphabet="abc xyz,;", max_size=10))
def test_identifier_shaped_numbers_never_survive_redaction(digits, separator, prefix):
    number = "".join(str(d) for d in digits)
    grouped = separator.join(number[i:i + 3] for i in range(0, len(number), 3))
    redacted = redact_numbers(f"{prefix} {grouped} xong")
    assert number not in redacted.replace(" ", "").replace(".", "")
    assert any(token in redacted for token in MASK_TOKENS)


def test_redaction_keeps_dates_times_and_short_numbers():
    text = "Ngày 2026-03-02 lúc 10:30, 40 người, công văn 125/UBND"
    assert redact_numbers(text) == text


def test_incident_cli_lists_and_shows(app, runner, session):
    from sqlalchemy import select

    from service.auth.models import User
    from service.incidents import workflow as W

    reporter = User(username="can-bo", email="can-bo@nhanly.example", roles=["official"],
                    password_hash="!", full_name="")
    session.add(reporter)
    session.flush()
    settings = app.config["SETTINGS"]
    first = W.report_incident(session, settings, origin="report", title="Mất USB hộ tịch",
                              reporter=reporter)
    second = W.report_incident(session, settings, origin="rule", title="Gửi tệp qua Zalo",
                               rule_id="zalo_share", group_key="g", involves_personal_data=False)
    police = User(username="cong-an", email="ca@nhanly.example", roles=["police"],
                  password_hash="!", full_name="")
    session.add(police)
    session.flush()
    W.dismiss_incident(session, second, police, reason="Không phải dữ liệu cá nhân")
    session.commit()
    listed = runner.invoke(["incident", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"#{first.id}" in listed.output and "Mất USB hộ tịch" in listed.output
    assert f"#{second.id}\t" not in listed.output  # dismissed: only with --all
    assert f"#{second.id}\t" in runner.invoke(["incident", "list", "--all"]).output
    shown = runner.invoke(["incident", "show", str(first.id)])
    assert shown.exit_code == 0, shown.output
    assert "incident.reported" in shown.output and "Mất USB hộ tịch" in shown.output
    missing = runner.invoke(["incident", "show", "999"])
    assert missing.exit_code != 0 and "999" in missing.output
    from service.audit.models import AuditEntry

    session.expire_all()
    looks = session.scalars(select(AuditEntry).where(AuditEntry.kind == "audit.viewed")).all()
    assert len(looks) == 1


def test_readme_documents_every_field_key():
    readme = (default_forms_dir() / "README.md").read_text(encoding="utf-8")
    schema_keys = ("name", "type", "label", "help", "required", "role", "section", "options",
                   "default", "max_length", "min", "max", "print_lines")
    for key in schema_keys:
        assert f"`{key}`" in readme
    definition = load_form(default_forms_dir())
    for spec in definition.fields:
        if spec.type != "file":
            assert f"`{spec.name}`" in readme, f"form_data key {spec.name} not documented"
