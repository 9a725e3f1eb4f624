"""Tests for service.audit.canonical: RFC 8785 examples and equality with the rfc8785 package."""

from __future__ import annotations

import enum
import json
import struct
import unicodedata
from datetime import UTC, datetime

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from canhgac_common.events import Action, Event
from service.audit.canonical import (
    CanonicalizationError,
    FloatDomainError,
    IntegerDomainError,
    canonical_json,
    canonical_json_plain,
)


def test_rfc8785_section_3_2_2_example() -> None:
    # RFC 8785 §3.2.2 input (JSON text) and §3.2.3/3.2.4 canonical output.
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    want = (
        r'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        r'"string":"€$\u000f\nA' + "'" + r'B\"\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == want.encode("utf-8")


def test_rfc8785_section_3_2_3_sorts_by_utf16_code_units() -> None:
    source = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    out = canonical_json(json.loads(source))
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert list(json.loads(out)) == order
    # Code point order would put U+FB33 before the emoji: the difference UTF-16 makes.
    assert sorted(["\U0001f600", "\ufb33"]) == ["\ufb33", "\U0001f600"]
    assert out.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control"')


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "want"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, want: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(number) == want.encode("ascii")
    assert canonical_json([number]) == f"[{want}]".encode("ascii")


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(FloatDomainError):
        canonical_json({"x": number})


def test_vietnamese_text_is_raw_utf8_and_keys_sort_by_code_unit() -> None:
    entry = {
        "địa_chỉ": "xã Nhân Lý, Lạng Sơn",
        "họ_tên": "Nguyễn Văn Ánh",
        "a": 1,
        "ă": "á",
        "â": "ấ",
        "b": "Phường",
    }
    want = (
        '{"a":1,"b":"Phường","họ_tên":"Nguyễn Văn Ánh","â":"ấ","ă":"á",'
        '"địa_chỉ":"xã Nhân Lý, Lạng Sơn"}'
    )
    assert canonical_json(entry) == want.encode("utf-8")
    # JCS does not normalize Unicode: NFC and NFD spellings are different entries.
    nfc = unicodedata.normalize("NFC", "Nguyễn")
    nfd = unicodedata.normalize("NFD", "Nguyễn")
    assert canonical_json(nfc) != canonical_json(nfd)
    assert canonical_json(nfc) == '"Nguyễn"'.encode()


def test_escapes_only_what_jcs_escapes() -> None:
    text = "tab\t nl\n cr\r bs\b ff\f unit\x1f nul\x00 quote\" back\\ slash/ del\x7f ls\u2028 é"
    want = (
        r'"tab\t nl\n cr\r bs\b ff\f unit\u001f nul\u0000 quote\" back\\ slash/ '
        + "del\x7f ls\u2028 é"
        + '"'
    )
    assert canonical_json(text) == want.encode("utf-8")


def test_integers_are_limited_to_the_ieee_double_range() -> None:
    assert canonical_json(2**53 - 1) == b"9007199254740991"
    assert canonical_json(-(2**53) + 1) == b"-9007199254740991"
    with pytest.raises(IntegerDomainError):
        canonical_json({"n": 2**53})
    with pytest.raises(IntegerDomainError):
        canonical_json([-(2**53)])


def test_unsupported_values_are_refused() -> None:
    for bad in ({1: "x"}, {"a": 1, 2: "b"}, {"x": {1, 2}}, b"bytes", object(), {"x": "\ud800"}):
        with pytest.raises(CanonicalizationError):
            canonical_json(bad)
    with pytest.raises(CanonicalizationError):
        canonical_json({"\udc00": 1})
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(CanonicalizationError):
        canonical_json(nested)


def test_subclasses_serialize_as_their_base_values() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    value = {"action": Action.COPY, "level": Level.HIGH, "items": ("a", 1.5, True)}
    assert canonical_json(value) == b'{"action":"copy","items":["a",1.5,true],"level":3}'
    assert canonical_json(value) == rfc8785.dumps(value)


# Text including astral characters, private-use and high-BMP characters (where UTF-16 and
# code point order differ) and, sometimes, lone surrogates (which must be refused).
_chars = st.characters(codec=None, exclude_categories=())
_text = st.text(_chars, max_size=12) | st.sampled_from(["\ue000", "\U0001f600", "\uffff", "ệ", ""])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**54), max_value=2**54)
    | st.floats()
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.tuples(inner, inner)
    | st.dictionaries(_text, inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_same_bytes_as_the_rfc8785_package(value) -> None:
    try:
        want = rfc8785.dumps(value)
    except ValueError:  # CanonicalizationError, or UnicodeEncodeError for lone surrogate keys
        with pytest.raises(CanonicalizationError):
            canonical_json(value)
        return
    got = canonical_json(value)
    assert got == want
    parsed = json.loads(got, parse_int=float)  # JSON numbers are IEEE doubles in JCS
    assert canonical_json(parsed) == got, "canonical form must be a fixed point"


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip(number: float) -> None:
    text = canonical_json(number)
    assert float(text) == number


# ---------------------------------------------------------------- the C fast path for events

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
EVENT_BODIES = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "occurred_at": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                                    timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        "host": TEXT.filter(bool), "actor": TEXT.filter(bool),
        "action": st.sampled_from([a.value for a in Action]),
    },
    optional={
        "object": st.fixed_dictionaries({}, optional={
            "path": TEXT, "record_count": st.integers(0, 2**53 - 1),
            "size": st.integers(0, 2**53 - 1), "data_class": st.sampled_from(["dan_cu", "an_sinh"]),
            "sha256": st.text("0123456789abcdef", min_size=64, max_size=64)}),
        "destination": st.fixed_dictionaries({}, optional={"path": TEXT, "target": TEXT,
                                                           "kind": st.sampled_from(["removable", "email"])}),
        "purpose": TEXT, "unit": TEXT, "agent_id": TEXT, "seq": st.integers(0, 2**53 - 1),
        "pii": st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
                               st.integers(0, 2**53 - 1), max_size=4),
    },
)


@settings(max_examples=300, deadline=None)
@given(EVENT_BODIES, TEXT)
def test_plain_encoder_equals_rfc8785_on_every_event(data: dict, source: str) -> None:
    """What ingest writes for an event is exactly its RFC 8785 form."""
    from service.events.operations import event_body

    body = event_body(Event.model_validate(data), source)
    assert canonical_json_plain(body) == rfc8785.dumps(body) == canonical_json(body)


def _schema_types(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            found.add(node["type"])
        for value in node.values():
            found |= _schema_types(value)
    elif isinstance(node, list):
        for value in node:
            found |= _schema_types(value)
    return found


def test_the_event_schema_keeps_the_fast_path_valid() -> None:
    """A float field or free-form keys in Event would make canonical_json_plain wrong: refuse."""
    schema = Event.model_json_schema()
    assert "number" not in _schema_types(schema)
    assert list(schema["properties"]["pii"]["patternProperties"]) == [r"^[a-z][a-z0-9_]{0,31}$"]
    assert schema.get("additionalProperties") is False  # no free-form members at the top
