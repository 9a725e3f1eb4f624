"""The pure engine: classification precedence, glob matching, evaluate/enrich/signals."""

from __future__ import annotations

import fnmatch
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canhgac_common.events import Action, DestinationKind, Event
from service.policy import (
    CONDITIONS,
    MonitoringSignal,
    Response,
    Severity,
    WindowState,
    classify,
    default_policy_dir,
    enrich,
    evaluate,
    evaluate_signal,
    load_policy,
)
from service.policy.conditions import PathMatcher, WorkingHoursClock, match_key
from service.policy.engine import _EVENT_FACTS, EVENT_FIELDS, EventContext, _event_verdict

POLICY = load_policy(default_policy_dir())
VN = timezone(timedelta(hours=7))
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=VN)


def make_event(**fields) -> Event:
    data = {
        "id": str(uuid.uuid4()),
        "occurred_at": MONDAY_9.isoformat(),
        "host": "PC-CA-01",
        "actor": "ca.hoangvanb",
        "action": "read",
    }
    data.update(fields)
    return Event.model_validate(data)


def fired(event: Event, state: WindowState | None = None) -> list[str]:
    return [v.rule_id for v in evaluate(event, POLICY, WindowState() if state is None else state)]


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("C:\\DuLieu\\DanCu\\ds.xlsx", "dan_cu"),
        ("c:\\dulieu\\dancu\\DS.XLSX", "dan_cu"),
        ("D:\\Khac\\Dân cư\\2026\\a.docx", "dan_cu"),
        (unicodedata.normalize("NFD", "/home/a/Dân cư/b.ods"), "dan_cu"),
        ("/home/vp/HoTich/ks.xlsx", "ho_tich"),
        ("\\\\MAYCHU\\DungChung\\TTHC\\hs.pdf", "ho_so_tthc"),
        ("C:/Users/x/AnSinh/chi_tra.xlsx", "an_sinh"),
        ("C:\\DuLieu\\DatDai\\so.xlsx", "dat_dai"),
        ("C:\\Users\\x\\Documents\\lich.docx", None),
        ("DanCu\\a.xlsx", None),  # "*/DanCu/*" needs a folder before
        ("C:\\DuLieu\\DanCu", None),  # ... and something after
        ("C:\\DuLieu\\DanCuCu\\a.xlsx", None),
    ],
)
def test_data_class_from_path(path: str, expected: str | None) -> None:
    assert classify(make_event(object={"path": path}), POLICY)[0] == expected


def test_application_class_wins_over_path_and_unknown_class_is_ignored() -> None:
    event = make_event(object={"path": "C:\\DuLieu\\DanCu\\a.xlsx", "data_class": "ho_tich"})
    assert classify(event, POLICY)[0] == "ho_tich"
    event = make_event(object={"path": "C:\\DuLieu\\DanCu\\a.xlsx", "data_class": "y_te"})
    assert classify(event, POLICY)[0] == "dan_cu"
    assert classify(make_event(object={"data_class": "y_te"}), POLICY)[0] is None


@pytest.mark.parametrize(
    ("action", "destination", "expected"),
    [
        ("copy", {"path": "E:\\ds.xlsx"}, DestinationKind.REMOVABLE),
        ("copy", {"path": "e:"}, DestinationKind.REMOVABLE),
        ("copy", {"path": "/run/media/u/KINGSTON/ds.xlsx"}, DestinationKind.REMOVABLE),
        ("copy", {"path": "C:\\Users\\u\\Google Drive\\ds.xlsx"}, DestinationKind.CLOUD),
        ("copy", {"path": "C:\\Users\\u\\OneDrive - UBND\\ds.xlsx"}, DestinationKind.CLOUD),
        ("copy", {"path": "C:\\Users\\u\\Documents\\ZaloPC\\ds.xlsx"}, DestinationKind.MESSAGING),
        ("copy", {"path": "D:\\CongThongTin\\bai.docx"}, DestinationKind.PUBLISHING),
        ("copy", {"path": "S:\\ChiaSe\\ds.xlsx"}, DestinationKind.OFFICIAL),
        ("copy", {"path": "\\\\maychu\\dungchung\\ds.xlsx"}, DestinationKind.OFFICIAL),
        ("copy", {"path": "C:\\Users\\u\\Documents\\ds.xlsx"}, DestinationKind.UNKNOWN),
        ("share", {"target": "ban@gmail.com"}, DestinationKind.EMAIL),
        ("share", {"target": "VanThu@LangSon.gov.vn"}, DestinationKind.OFFICIAL),
        ("share", {"target": "a@nhanly.langson.gov.vn"}, DestinationKind.OFFICIAL),
        ("share", {"target": "a@xlangson.gov.vn"}, DestinationKind.EMAIL),
        ("share", {"target": "https://drive.google.com/drive/u/0"}, DestinationKind.CLOUD),
        ("share", {"target": "https://user@example.org/x"}, DestinationKind.UNKNOWN),
        ("share", {"target": "https://dichvucong.gov.vn/p"}, DestinationKind.OFFICIAL),
        # official scope wins over the agent's kind; the agent's kind wins over patterns
        ("copy", {"path": "S:\\a.xlsx", "kind": "removable"}, DestinationKind.OFFICIAL),
        ("copy", {"path": "C:\\Users\\u\\OneDrive\\a.xlsx", "kind": "removable"}, DestinationKind.REMOVABLE),
        ("copy", {"path": "E:\\a.xlsx", "kind": "unknown"}, DestinationKind.REMOVABLE),
        ("print", {"target": "HP LaserJet phòng 2"}, DestinationKind.PRINT),
    ],
)
def test_destination_kind_precedence(action: str, destination: dict, expected: DestinationKind) -> None:
    event = make_event(action=action, object={"path": "C:\\DuLieu\\DanCu\\a.xlsx"}, destination=destination)
    assert classify(event, POLICY)[1] == expected


def test_no_destination_is_none_except_print() -> None:
    assert classify(make_event(action="read"), POLICY)[1] is None
    assert classify(make_event(action="print"), POLICY)[1] == DestinationKind.PRINT


def test_enrich_fills_a_copy_and_leaves_the_original() -> None:
    event = make_event(action="copy", object={"path": "C:\\DuLieu\\HoTich\\a.xlsx"},
                       destination={"path": "F:\\a.xlsx"})
    enriched = enrich(event, POLICY)
    assert enriched.object.data_class == "ho_tich"
    assert enriched.destination.kind == DestinationKind.REMOVABLE
    assert event.object.data_class is None and event.destination.kind is None
    assert enriched.id == event.id and enriched.object.path == event.object.path
    printed = enrich(make_event(action="print", object={"path": "C:\\DuLieu\\HoTich\\a.xlsx"}), POLICY)
    assert printed.destination.kind == DestinationKind.PRINT
    plain = make_event(object={"data_class": "y_te"})
    assert enrich(plain, POLICY).object.data_class == "y_te"  # kept, although not in the policy


# ---------------------------------------------------------------- globs


GLOB_ALPHABET = st.sampled_from([*list("ab/\\*?.[]!"), "Đ", "đ", "ư"])
SEGMENT = st.text(st.sampled_from(list("abĐđư.")), min_size=1, max_size=3)
# the shapes PathMatcher special-cases, and anything else
GLOB = st.one_of(
    st.text(GLOB_ALPHABET, min_size=1, max_size=8),
    SEGMENT.map(lambda seg: f"*/{seg}/*"),
    SEGMENT.map(lambda seg: f"*\\{seg.upper()}\\*"),
    SEGMENT.map(lambda seg: f"{seg}*"),
    SEGMENT.map(lambda seg: f"*{seg}*"),
    SEGMENT,
)
PATH = st.one_of(
    st.text(st.sampled_from([*list("ab/\\.[]!"), "Đ", "đ", "ư"]), max_size=12),
    st.lists(SEGMENT, max_size=5).flatmap(
        lambda parts: st.sampled_from(["/", "\\"]).map(lambda sep: sep.join(parts))
    ),
)


@settings(max_examples=300, deadline=None)
@given(groups=st.lists(st.lists(GLOB, min_size=1, max_size=4), min_size=1, max_size=4), path=PATH)
def test_path_matcher_agrees_with_fnmatch(groups: list[list[str]], path: str) -> None:
    matcher = PathMatcher([(str(i), patterns) for i, patterns in enumerate(groups)])

    def reference() -> int | None:
        key = match_key(path)
        for index, patterns in enumerate(groups):
            for pattern in patterns:
                if re.match(fnmatch.translate(match_key(pattern)), key):
                    return index
        return None

    assert matcher.match(match_key(path)) == reference()


def test_path_matcher_first_group_wins() -> None:
    matcher = PathMatcher([("a", ["*/x/*"]), ("b", ["*/y/*", "c:/*"])])
    assert matcher.match_name(match_key("C:\\y\\x\\f")) == "a"
    assert matcher.match_name(match_key("C:\\y\\f")) == "b"
    assert matcher.match_name(match_key("/q/f")) is None


# ---------------------------------------------------------------- evaluate


def test_copy_to_usb_is_an_incident_with_a_clean_explanation() -> None:
    event = make_event(action="copy", object={"path": "C:\\DuLieu\\DanCu\\020190001234.xlsx",
                                              "record_count": 1234567890},
                       destination={"path": "E:\\0912345678.xlsx"}, pii={"cccd": 120, "phone": 37},
                       purpose="gửi ông A, CCCD 020190001234")
    (verdict,) = evaluate(event, POLICY, WindowState())
    assert verdict.rule_id == "sao_chep_thiet_bi_di_dong"
    assert verdict.severity is Severity.CRITICAL and verdict.response is Response.INCIDENT
    assert verdict.group_key == ("ca.hoangvanb", "PC-CA-01", "dan_cu", "C:\\DuLieu\\DanCu\\020190001234.xlsx")
    text = verdict.explanation
    assert "\n" not in text and not re.search(r"\d{9,}", text)
    assert "1.234.567.890" in text and "120" in text and "37" in text
    assert "020190001234" not in text and "0912345678" not in text and "ông A" not in text


def test_ordinary_work_fires_nothing() -> None:
    state = WindowState()
    assert fired(make_event(unit="cong_an", object={"path": "C:\\DuLieu\\DanCu\\a.xlsx"}), state) == []
    assert fired(make_event(action="copy", unit="cong_an", object={"path": "C:\\DuLieu\\DanCu\\a.xlsx"},
                            destination={"path": "S:\\CongAn\\a.xlsx"}), state) == []
    assert fired(make_event(action="heartbeat"), state) == []
    assert len(state) == 0


def test_several_rules_can_fire_together_in_rule_order() -> None:
    night = datetime(2026, 3, 2, 23, 0, tzinfo=VN).isoformat()
    event = make_event(action="copy", unit="kinh_te", occurred_at=night,
                       object={"path": "C:\\DuLieu\\DanCu\\a.xlsx"}, destination={"path": "E:\\a.xlsx"})
    order = [rule.id for rule in POLICY.rules]
    result = fired(event)
    assert set(result) == {"sao_chep_thiet_bi_di_dong", "truy_cap_ngoai_gio", "don_vi_dung_du_lieu_khong_quan_ly"}
    assert result == sorted(result, key=order.index)


def test_working_hours_in_other_offsets_and_zones() -> None:
    clock = WorkingHoursClock(POLICY.env)
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    for hour in range(24):
        utc_time = datetime(2026, 3, 3, hour, 15, tzinfo=UTC)
        local = utc_time.astimezone(zone)
        expected = not (7 * 60 <= local.hour * 60 + local.minute < 17 * 60 + 30) or local.weekday() > 4
        assert clock.is_outside(utc_time) == expected
        assert clock.is_outside(utc_time.astimezone(VN)) == expected
        assert clock.is_outside(utc_time.astimezone(zone)) == expected
    # before the zone's constant-offset span the exact conversion is used: in 1970 the zone
    # was +08:00, so 06:30 stamped +07:00 is 07:30 local time, inside working hours
    assert zone.utcoffset(datetime(1970, 1, 5)) == timedelta(hours=8)
    assert clock.is_outside(datetime(1970, 1, 5, 6, 30, tzinfo=VN)) is False
    assert clock.is_outside(datetime(1970, 1, 5, 5, 30, tzinfo=VN)) is True
    assert clock.is_outside(datetime(2026, 3, 2, 6, 30, tzinfo=VN)) is True


def test_yearly_holidays_hold_every_year_and_in_local_time() -> None:
    clock = WorkingHoursClock(POLICY.env)
    for year in (2026, 2027, 2031):
        for month, day in ((1, 1), (4, 30), (5, 1), (9, 2)):
            when = datetime(year, month, day, 9, 0, tzinfo=VN)
            assert clock.is_outside(when), when  # even on a weekday at nine
    assert clock.is_outside(datetime(2027, 3, 2, 9, 0, tzinfo=VN)) is False  # an ordinary Tuesday
    # 1 January 01:30 local is still 31 December in UTC: the local date decides
    assert clock.is_outside(datetime(2026, 12, 31, 18, 30, tzinfo=UTC)) is True
    assert clock.is_outside(datetime(2027, 1, 4, 2, 0, tzinfo=UTC)) is False  # Monday 09:00 local


def test_windowed_rule_through_evaluate_and_state_none() -> None:
    event = make_event(action="delete", unit="tt_hcc", object={"path": "D:\\HoSoTTHC\\a.pdf"})
    for _ in range(25):  # without a state every call starts from nothing
        assert evaluate(event, POLICY, None) == []
    state = WindowState()
    results = []
    for second in range(20):
        results.append(fired(event.model_copy(update={"occurred_at": MONDAY_9 + timedelta(seconds=second)}),
                             state))
    assert results[:19] == [[]] * 19 and results[19] == ["xoa_hang_loat"]
    assert len(state) == 0  # the key was cleared when the rule fired


def test_future_clock_is_capped_at_now() -> None:
    state = WindowState()
    now = MONDAY_9
    future = make_event(action="delete", unit="tt_hcc", object={"path": "D:\\HoSoTTHC\\a.pdf"},
                        occurred_at=(now + timedelta(days=365)).isoformat())
    for _ in range(19):
        evaluate(future, POLICY, state, now=now)
    honest = make_event(action="delete", unit="tt_hcc", object={"path": "D:\\HoSoTTHC\\b.pdf"},
                        occurred_at=(now + timedelta(seconds=1)).isoformat())
    # had the wrong clock set the high-water mark a year ahead, this event would be "too late"
    assert [v.rule_id for v in evaluate(honest, POLICY, state, now=now)] == ["xoa_hang_loat"]


def test_windowed_verdict_groups_by_window_key() -> None:
    state = WindowState()
    verdicts = []
    for i in range(30):
        event = make_event(action="export", unit="vh_xh", object={"path": f"C:\\DuLieu\\AnSinh\\{i}.xlsx"},
                           occurred_at=(MONDAY_9 + timedelta(seconds=i)).isoformat())
        verdicts += evaluate(event, POLICY, state)
    (verdict,) = verdicts
    assert verdict.group_key == ("ca.hoangvanb", "PC-CA-01", "an_sinh", None)
    assert "30 lần" in verdict.explanation and "60 phút" in verdict.explanation


def test_signals() -> None:
    silent = MonitoringSignal(kind="agent_silent", agent_id="ag-1", host="PC-1", silent_seconds=3 * 3600)
    (verdict,) = evaluate_signal(silent, POLICY, now=MONDAY_9)
    assert verdict.rule_id == "tac_tu_im_lang" and "180 phút" in verdict.explanation
    assert verdict.group_key == (None, "PC-1", None, None)
    assert evaluate_signal(silent, POLICY, now=MONDAY_9.replace(hour=21)) == []
    gap = MonitoringSignal(kind="event_gap", agent_id="ag-1", host="PC-1", missing=5)
    assert [v.rule_id for v in evaluate_signal(gap, POLICY, now=MONDAY_9)] == ["dut_quang_so_su_kien"]
    with pytest.raises(ValueError):
        MonitoringSignal(kind="agent_silent", agent_id="a", host="h", silent_seconds=float("inf"))


def test_registry_and_facts_are_consistent() -> None:
    assert set(_EVENT_FACTS) | {"title"} == EVENT_FIELDS
    for name, cls in CONDITIONS.items():
        assert cls.name == name
        assert cls.__doc__, f"{name} needs a docstring: docs/policy.md is written from them"


def test_actions_index_skips_unrelated_rules() -> None:
    by_action = POLICY.rules_by_action
    assert by_action[Action.HEARTBEAT] == ()
    assert {r.spec.id for r in by_action[Action.LOGIN]} == {"dang_nhap_sai_roi_thanh_cong"}
    assert "xoa_hang_loat" in {r.spec.id for r in by_action[Action.DELETE]}


# ---------------------------------------------------------------- fast path == reference


def reference_evaluate(event: Event, policy, state: WindowState) -> list:
    """Evaluate the slow, obvious way: every rule, every written condition, no prefilter."""
    data_class, dest_kind = classify(event, policy)
    ctx = EventContext(event, policy.classifier, state, None, data_class, dest_kind)
    verdicts = []
    for rule in policy.compiled_rules:
        if rule.spec.subject.value != "event":
            continue
        stateless = [c for c in rule.written if not c.is_stateful]
        windowed = [c for c in rule.written if c.is_stateful]
        # a windowed condition counts only events that passed the rule's other conditions
        if all(c.matches(ctx) for c in stateless) and all(c.matches(ctx) for c in windowed):
            verdicts.append(_event_verdict(rule, ctx, policy))
    return verdicts


OBJECT_PATHS = [
    "C:\\DuLieu\\DanCu\\ds.xlsx", "/home/vp/HoTich/ks.xlsx", "C:/Users/x/AnSinh/chi_tra.xlsx",
    "\\\\MAYCHU\\DungChung\\TTHC\\hs.pdf", "C:\\DuLieu\\DatDai\\so.xlsx",
    "C:\\Users\\x\\Documents\\lich.docx", "D:\\CongThongTin\\bai.docx", "E:\\ds.xlsx",
]
DESTINATIONS = [
    None, {"path": "E:\\ds.xlsx"}, {"path": "S:\\ChiaSe\\a.xlsx"},
    {"path": "C:\\Users\\x\\OneDrive\\a.xlsx"}, {"path": "C:\\Users\\x\\Zalo Received Files\\a"},
    {"path": "D:\\CongThongTin\\a.docx"}, {"target": "ban@gmail.com"},
    {"target": "vanthu@langson.gov.vn"}, {"target": "https://example.org/x"},
    {"path": "C:\\tmp\\a", "kind": "removable"}, {"path": "S:\\a", "kind": "cloud"},
]
EVENT_DATA = st.fixed_dictionaries(
    {
        "action": st.sampled_from([a.value for a in Action]),
        "minutes": st.integers(0, 7 * 24 * 60),
        "actor": st.sampled_from(["a", "b"]),
        "host": st.sampled_from(["PC-1", "PC-2"]),
        "unit": st.sampled_from([None, "cong_an", "van_phong", "vh_xh", "kinh_te", "la"]),
        "purpose": st.sampled_from([None, "", "tiep_nhan_ho_so", "khac"]),
        "path": st.sampled_from([None, *OBJECT_PATHS]),
        "data_class": st.sampled_from([None, None, "dan_cu", "an_sinh", "khong_ro"]),
        "records": st.sampled_from([None, 1, 40, 999, 5000]),
        "pii": st.sampled_from([{}, {"phone": 2}, {"cccd": 1}, {"email": 3}]),
        "destination": st.sampled_from(DESTINATIONS),
    }
)


def _event_from(data: dict, index: int) -> Event:
    fields: dict = {
        "id": str(uuid.UUID(int=index + 1)),
        "occurred_at": (MONDAY_9 + timedelta(minutes=data["minutes"])).isoformat(),
        "host": data["host"], "actor": data["actor"], "action": data["action"],
        "unit": data["unit"], "purpose": data["purpose"], "pii": data["pii"],
    }
    if data["path"] is not None or data["data_class"] is not None:
        fields["object"] = {"path": data["path"], "data_class": data["data_class"],
                            "record_count": data["records"]}
    if data["destination"] is not None:
        fields["destination"] = data["destination"]
    return Event.model_validate(fields)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENT_DATA, min_size=1, max_size=40))
def test_evaluate_equals_the_reference_evaluation(steps: list[dict]) -> None:
    """The prefiltered hot path gives exactly the verdicts of checking every condition."""
    fast, slow = WindowState(), WindowState()
    for index, data in enumerate(steps):
        event = _event_from(data, index)
        assert evaluate(event, POLICY, fast) == reference_evaluate(event, POLICY, slow)


@settings(max_examples=200, deadline=None)
@given(EVENT_DATA)
def test_ingest_body_equals_the_enriched_event(data: dict) -> None:
    """Ingest patches the dumped dict instead of copying the model: same body either way."""
    from service.events.operations import event_body

    event = _event_from(data, 0)
    expected = event_body(enrich(event, POLICY), "nguon")
    assert event_body(event, "nguon", classify(event, POLICY)) == expected
