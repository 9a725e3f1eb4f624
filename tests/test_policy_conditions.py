"""Each condition of the registry, used in a rule of its own, on hand-made events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from canhgac_common.events import Event
from service.policy import (
    CONDITIONS,
    MonitoringSignal,
    WindowState,
    default_policy_dir,
    evaluate,
    evaluate_signal,
    load_policy_files,
    read_policy_files,
)

VN = timezone(timedelta(hours=7))
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=VN)

RULES = {
    "c_record": "[{record_count_at_least: {min: 100}}]",
    "c_pii": "[{pii_at_least: {kinds: [cccd], min: 2}}]",
    "c_pii_any": "[{pii_at_least: {min: 3}}]",
    "c_purpose": "[{data_class_in: {}}, {purpose_missing: {}}]",
    "c_unit": "[{unit_in: {units: [kinh_te]}}]",
    "c_actor": "[{actor_in: {actors: ['ca.*']}}]",
    "c_host": "[{host_in: {hosts: ['pc-ca-*']}}]",
    "c_basic": "[{data_class_in: {sensitivity: [basic]}}]",
    "c_classes": "[{data_class_in: {classes: [dat_dai, an_sinh], sensitivity: [sensitive]}}]",
    "c_not_read": "[{data_class_in: {}}, {not: {action_in: {actions: [read, open]}}}]",
    "c_objkind": "[{object_path_kind_in: {kinds: [publishing, official]}}]",
    "c_dest": "[{destination_kind_in: {kinds: [unknown]}}]",
    "c_any": "[{any_of: [{unit_in: {units: [vh_xh]}}, {all_of: [{action_in: {actions: [print]}},"
             " {record_count_at_least: {min: 5}}]}]}]",
    "c_night": "[{outside_working_hours: {}}, {action_in: {actions: [view]}}]",
    "c_dev_reg": "[{action_in: {actions: [move]}}, {destination_device: {status: registered}}]",
    "c_dev_unreg": "[{action_in: {actions: [move]}}, {destination_device: {status: unregistered}}]",
    "c_dev_any": "[{action_in: {actions: [move]}}, {destination_device: {status: any}}]",
    "c_unit_use": "[{unit_use_not_permitted: {}}]",
    "c_records_window": "[{action_in: {actions: [export]}}, {count_in_window: {window_seconds: 60,"
                        " min_records: 10, key: [host]}}]",
    "c_failures": "[{failures_then_success: {failure_actions: [login_failed, logout],"
                  " success_actions: [login], min_failures: 2, window_seconds: 60, key: [host]}}]",
}
SIGNAL_RULES = {
    "s_host": "[{host_in: {hosts: ['pc-ca-*']}}]",
    "s_silent": "[{agent_silent: {min_seconds: 60}}]",
    "s_gap_night": "[{event_gap: {min_missing: 3}}, {outside_working_hours: {}}]",
}


def build_policy():
    files = {k: v for k, v in read_policy_files(default_policy_dir()).items() if not k.startswith("tests/")}
    lines = ["rules:"]
    for subject, rules in (("event", RULES), ("signal", SIGNAL_RULES)):
        for rule_id, conditions in rules.items():
            lines += [f"  - id: {rule_id}", f"    title: {rule_id}", "    severity: low",
                      "    response: record", "    description: test", f"    subject: {subject}",
                      f"    conditions: {conditions}"]
    files["z_conditions.yaml"] = "\n".join(lines).encode("utf-8")
    return load_policy_files(files)


POLICY = build_policy()


def ours(verdicts) -> set[str]:
    return {v.rule_id for v in verdicts if v.rule_id[:2] in ("c_", "s_")}


def event(**fields) -> Event:
    data = {"id": str(uuid.uuid4()), "occurred_at": MONDAY_9.isoformat(), "host": "PC-X", "actor": "x",
            "action": "read"}
    data.update(fields)
    return Event.model_validate(data)


def test_every_registered_condition_is_exercised_here() -> None:
    text = " ".join([*RULES.values(), *SIGNAL_RULES.values()])
    missing = [name for name in CONDITIONS if f"{name}:" not in text]
    assert missing == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"object": {"record_count": 100}}, {"c_record"}),
        ({"object": {"record_count": 99}, "pii": {"cccd": 1, "phone": 1}}, set()),
        ({"pii": {"cccd": 2}}, {"c_pii"}),
        ({"pii": {"phone": 2, "email": 1}}, {"c_pii_any"}),
        ({"object": {"path": "C:\\DuLieu\\DanCu\\a.xlsx"}, "unit": "cong_an"}, {"c_purpose"}),
        ({"object": {"path": "C:\\DuLieu\\DanCu\\a.xlsx"}, "unit": "cong_an", "purpose": "  "}, {"c_purpose"}),
        ({"object": {"path": "C:\\DuLieu\\DanCu\\a.xlsx"}, "unit": "cong_an", "purpose": "x"}, set()),
        ({"unit": "kinh_te"}, {"c_unit"}),
        ({"actor": "CA.hoangvanb"}, {"c_actor"}),
        ({"host": "pc-ca-01"}, {"c_host"}),
        ({"object": {"path": "/x/HoTich/a"}, "purpose": "p"}, {"c_basic"}),
        ({"object": {"path": "/x/AnSinh/a"}, "purpose": "p"}, {"c_classes"}),
        ({"object": {"path": "/x/DatDai/a"}, "purpose": "p"}, {"c_basic"}),  # dat_dai is basic
        ({"action": "view", "object": {"path": "/x/DanCu/a"}, "purpose": "p"}, {"c_not_read"}),
        ({"action": "create", "object": {"path": "D:\\CongThongTin\\a.docx"}}, {"c_objkind"}),
        ({"action": "create", "object": {"path": "S:\\a.docx"}}, {"c_objkind"}),
        ({"action": "copy", "destination": {"path": "C:\\Temp\\a"}}, {"c_dest"}),
        ({"action": "copy", "destination": {"path": "E:\\a"}}, set()),
        ({"unit": "vh_xh"}, {"c_any"}),
        ({"action": "print", "object": {"record_count": 5}}, {"c_any"}),
        ({"action": "print", "object": {"record_count": 4}}, set()),
        ({"action": "view", "occurred_at": MONDAY_9.replace(hour=20).isoformat()}, {"c_night"}),
        ({"object": {"path": "/x/DanCu/a"}, "unit": "kinh_te", "purpose": "xac_minh_dia_chi"}, {"c_unit"}),
        ({"object": {"path": "/x/DanCu/a"}, "unit": "van_phong", "purpose": "p"}, {"c_unit_use"}),
        ({"action": "move", "destination": {"path": "E:\\a", "device": {"serial": "S1", "is_registered": True}}},
         {"c_dev_reg", "c_dev_any"}),
        ({"action": "move", "destination": {"path": "E:\\a", "device": {"serial": "S1", "is_registered": False}}},
         {"c_dev_unreg", "c_dev_any"}),
        ({"action": "move", "destination": {"path": "E:\\a", "device": {"serial": "S1"}}},
         {"c_dev_unreg", "c_dev_any"}),  # not marked by the server: not registered
        ({"action": "move", "destination": {"path": "/media/x/a"}}, {"c_dev_unreg", "c_dev_any"}),
        ({"action": "move"}, set()),  # no destination at all
    ],
)
def test_single_events(fields: dict, expected: set[str]) -> None:
    assert ours(evaluate(event(**fields), POLICY, WindowState())) == expected


def test_records_window_keyed_by_host() -> None:
    state = WindowState()
    results = []
    for i, (host, records) in enumerate([("A", 4), ("B", 9), ("A", 5), ("A", 1), ("A", 9)]):
        e = event(action="export", host=host, actor=f"u{i}", object={"record_count": records},
                  occurred_at=(MONDAY_9 + timedelta(seconds=i)).isoformat())
        results.append(ours(evaluate(e, POLICY, state)))
    # A reaches 10 records on its 3rd export (4+5+1); counting restarts; 9 more is not enough
    assert results == [set(), set(), set(), {"c_records_window"}, set()]


def test_failures_then_success_with_custom_actions() -> None:
    state = WindowState()
    steps = [("login_failed", set()), ("logout", set()), ("login", {"c_failures"}),
             ("login_failed", set()), ("login", set())]
    for i, (action, expected) in enumerate(steps):
        e = event(action=action, occurred_at=(MONDAY_9 + timedelta(seconds=i)).isoformat())
        assert ours(evaluate(e, POLICY, state)) == expected, (i, action)


def test_signal_conditions() -> None:
    def signal(**fields) -> MonitoringSignal:
        return MonitoringSignal(**{"kind": "agent_silent", "agent_id": "a", "host": "PC-X", **fields})

    assert ours(evaluate_signal(signal(silent_seconds=60), POLICY, now=MONDAY_9)) == {"s_silent"}
    assert ours(evaluate_signal(signal(silent_seconds=59, host="PC-CA-2"), POLICY, now=MONDAY_9)) == {"s_host"}
    gap = signal(kind="event_gap", missing=3)
    assert ours(evaluate_signal(gap, POLICY, now=MONDAY_9)) == set()
    assert ours(evaluate_signal(gap, POLICY, now=MONDAY_9.replace(hour=3))) == {"s_gap_night"}
