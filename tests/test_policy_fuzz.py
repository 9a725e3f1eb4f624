"""Hypothesis: the loader only ever fails with a clean PolicyError; the engine never raises."""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canhgac_common.events import Action, DestinationKind, Event
from service.policy import (
    MonitoringSignal,
    Policy,
    PolicyError,
    WindowState,
    classify,
    default_policy_dir,
    enrich,
    evaluate,
    evaluate_signal,
    load_policy,
    load_policy_files,
    read_policy_files,
    run_policy_tests,
)

# The event schema refuses NUL (PostgreSQL cannot store it) and lone surrogates.
NO_NUL = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
DEFAULT_FILES = read_policy_files(default_policy_dir())
DEFAULT_DATA = {name: yaml.safe_load(data) for name, data in DEFAULT_FILES.items()}
POLICY = load_policy(default_policy_dir())
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- loader

WORDS = [
    "settings", "data_classes", "units", "scopes", "rules", "tests", "id", "label", "name",
    "kind", "paths", "targets", "owner", "sensitivity", "conditions", "action_in", "actions",
    "any_of", "not", "count_in_window", "window_seconds", "min_events", "steps", "event",
    "signal", "expect", "start", "repeat", "copy", "removable", "dan_cu", "cong_an", "07:00",
    "basic", "uses", "purposes", "timezone", "working_hours", "severity", "response",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.sampled_from(WORDS), st.text(max_size=12),
    st.dates(), st.datetimes(timezones=st.just(UTC)),
)
KEYS = st.one_of(st.sampled_from(WORDS), st.text(max_size=6), st.integers(-3, 3))
YAMLISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=25,
)


def dump(value: object) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False).encode("utf-8")


def check_clean_failure(files: dict[str, bytes]) -> Policy | None:
    """Load; on failure every problem names one of the files and a line inside it."""
    try:
        policy = load_policy_files(files)
    except PolicyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file in files, problem
            assert 1 <= problem.line <= files[problem.file].count(b"\n") + 2, problem
            assert problem.message and "\n" not in problem.field
            assert str(problem).startswith(f"{problem.file}:{problem.line}: ")
        return None
    run_policy_tests(policy)  # a policy that loads can always be tested
    return policy


@FUZZ
@given(st.dictionaries(st.sampled_from(["a.yaml", "rules.yaml", "tests/t.yaml", "tests/x/y.yml"]),
                       YAMLISH, min_size=1, max_size=3))
def test_loader_on_arbitrary_yaml_data(documents: dict[str, object]) -> None:
    check_clean_failure({name: dump(value) for name, value in documents.items()})


@FUZZ
@given(st.dictionaries(st.sampled_from(["a.yaml", "tests/t.yaml"]),
                       st.one_of(st.text(max_size=200).map(str.encode), st.binary(max_size=200)),
                       min_size=1, max_size=2))
def test_loader_on_arbitrary_text(files: dict[str, bytes]) -> None:
    check_clean_failure(files)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    value[head] = _replace(value[head], rest, new)  # type: ignore[index]
    return value


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(DEFAULT_DATA)), st.data())
def test_loader_on_the_default_policy_with_one_part_replaced(name: str, data: st.DataObject) -> None:
    """Deep mutations: everything valid except one subtree somewhere, in any file."""
    document = copy.deepcopy(DEFAULT_DATA[name])
    target = data.draw(st.sampled_from(_paths(document)))
    mutated = _replace(document, target, data.draw(YAMLISH))
    files = dict(DEFAULT_FILES)
    files[name] = dump(mutated)
    check_clean_failure(files)


# ---------------------------------------------------------------- engine

MARKERS = ("zzactorqq", "zzhostqq", "zzpathqq", "zzpurposeqq", "zztargetqq")
FOLDERS = ["DanCu", "Dân cư", "HoTich", "TTHC", "AnSinh", "DatDai", "OneDrive", "Zalo Received Files",
           "CongThongTin", "Documents", "Google Drive", "Telegram Desktop", "zzpathqq"]
PATH = st.builds(
    lambda root, parts, sep, name: root + sep.join([*parts, name]),
    st.sampled_from(["C:\\", "E:\\", "S:\\", "\\\\MAYCHU\\DungChung\\", "/home/u/", "/media/u/", "", "/"]),
    st.lists(st.sampled_from(FOLDERS) | st.text(NO_NUL, max_size=5), max_size=4),
    st.sampled_from(["\\", "/"]),
    st.text(NO_NUL, max_size=8).map(lambda t: t + ".xlsx") | st.just("zzpathqq.docx"),
)
TARGET = st.sampled_from([
    "ban@gmail.com", "vanthu@langson.gov.vn", "x@a.langson.gov.vn.evil.vn", "https://drive.google.com/x",
    "https://chat.zalo.me/", "https://dichvucong.gov.vn/", "zztargetqq", "@", "a@", "mailto:x@y.vn",
]) | st.text(NO_NUL, max_size=20)
OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
WHEN = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=OFFSETS)
EVENTS = st.builds(
    lambda when, action, obj, dest, pii, unit, purpose, actor: Event(
        id=uuid.uuid4(), occurred_at=when, host="PC-zzhostqq", actor=actor, action=action, object=obj,
        destination=dest, pii=pii, unit=unit, purpose=purpose,
    ),
    WHEN,
    st.sampled_from(list(Action)),
    st.none() | st.builds(
        dict,
        path=st.none() | PATH,
        record_count=st.none() | st.integers(0, 10**15),
        data_class=st.none() | st.sampled_from(["dan_cu", "ho_tich", "y_te", "an_sinh"]),
    ),
    st.none() | st.builds(
        dict, path=st.none() | PATH, target=st.none() | TARGET,
        kind=st.none() | st.sampled_from(list(DestinationKind)),
    ),
    st.dictionaries(st.sampled_from(["cccd", "phone", "email", "bhxh"])
                    | st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
                    st.integers(0, 10**13), max_size=3),
    st.none() | st.sampled_from(["cong_an", "kinh_te", "dv_cong_ich", "zzunitqq", ""]),
    st.none() | st.sampled_from(["", "  ", "xac_minh_dia_chi", "XAC_MINH_DIA_CHI", "zzpurposeqq 020190001234"]),
    st.sampled_from(["zzactorqq", "ca.zzactorqq"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, min_size=1, max_size=30), st.none() | WHEN)
def test_engine_never_raises_and_explanations_stay_clean(events: list[Event], now: datetime | None) -> None:
    state = WindowState()
    known = {rule.id for rule in POLICY.rules}
    for event in events:
        data_class, kind = classify(event, POLICY)
        assert data_class is None or data_class in POLICY.data_classes
        enriched = enrich(event, POLICY)
        assert enriched.id == event.id
        if kind is not None:
            assert enriched.destination.kind == kind
        for verdict in evaluate(event, POLICY, state, now=now):
            assert verdict.rule_id in known
            text = verdict.explanation
            assert text and "\n" not in text
            assert not re.search(r"\d{9,}", text), text
            assert not any(marker in text for marker in MARKERS), text
    restored = WindowState.from_snapshot(state.to_snapshot())
    assert restored.to_snapshot() == state.to_snapshot()


@settings(max_examples=200, deadline=None)
@given(
    st.builds(MonitoringSignal, kind=st.sampled_from(["agent_silent", "event_gap"]), agent_id=st.just("ag"),
              host=st.just("zzhostqq"), missing=st.integers(0, 2**53),
              silent_seconds=st.floats(0, 100 * 366 * 86400)),
    WHEN,
)
def test_signals_never_raise(signal: MonitoringSignal, now: datetime) -> None:
    for verdict in evaluate_signal(signal, POLICY, now=now):
        assert verdict.group_key.host == "zzhostqq"
        assert "zzhostqq" not in verdict.explanation
        assert not re.search(r"\d{9,}", verdict.explanation)
