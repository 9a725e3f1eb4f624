"""The ingest API's whole-body validation accepts exactly what the step-by-step path accepts."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.events.api import _batch_adapter, _validate_whole_body

_TEXT = st.text(alphabet=st.sampled_from("aZ09 -_\\/\"\n\t\x00\x1fễ😀\ud800"), max_size=8)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**53 + 2), st.floats(allow_nan=False),
                   _TEXT, st.lists(st.integers(0, 3), max_size=2))
_TIMES = st.sampled_from(["2026-03-02T09:15:00+07:00", "2026-03-02T09:15:00", "0001-01-01T00:00:00Z",
                          "2026-13-02T09:15:00Z", "2026-03-02T02:15:00.123456Z"])


@st.composite
def _event(draw) -> dict:
    event = {"id": draw(st.sampled_from(["5f0c7f0e-8a1b-4c4c-9f7e-0a0b0c0d0e0f", "not-a-uuid",
                                          "5F0C7F0E8A1B4C4C9F7E0A0B0C0D0E0F"])),
             "occurred_at": draw(_TIMES), "host": draw(_TEXT), "actor": draw(_TEXT),
             "action": draw(st.sampled_from(["copy", "open", "COPY", "fly"]))}
    extra = draw(st.dictionaries(st.sampled_from(
        ["object", "destination", "purpose", "pii", "agent_id", "seq", "unit", "count", "schema_version",
         "bogus"]), st.one_of(_VALUE, st.dictionaries(
            st.sampled_from(["path", "kind", "size", "device", "cccd", "record_count"]), _VALUE, max_size=3)),
        max_size=4))
    event.update(extra)
    return event


def _step_by_step(raw: bytes):
    try:
        payload = json.loads(raw.decode("utf-8"))
        return _batch_adapter.validate_python(payload)
    except (ValueError, ValidationError):
        return None


@settings(max_examples=400, deadline=None)
@given(st.one_of(_event(), st.lists(_event(), max_size=3)))
def test_whole_body_validation_agrees_with_the_step_by_step_path(payload):
    raw = json.dumps(payload, ensure_ascii=bool(len(str(payload)) % 2)).encode("utf-8", "surrogatepass")
    fast = _validate_whole_body(raw)
    slow = _step_by_step(raw)
    if fast is None:
        return  # the request takes the step-by-step path and answers as it always did
    assert slow is not None, payload
    slow = slow if isinstance(slow, list) else [slow]
    assert [e.model_dump() for e in fast] == [e.model_dump() for e in slow]


def test_refused_bodies_fall_back_to_the_step_by_step_answers():
    for raw in (b"\xff", b"[", b"[" * 40 + b"]" * 40, b'{"id": NaN}', b'[{"actor": "x"}]'):
        assert _validate_whole_body(raw) is None
    valid = {"id": "5f0c7f0e-8a1b-4c4c-9f7e-0a0b0c0d0e0f", "occurred_at": "2026-03-02T09:15:00+07:00",
             "host": "PC", "actor": "a", "action": "copy"}
    assert [str(e.id) for e in _validate_whole_body(json.dumps(valid).encode())] == [valid["id"]]
    assert len(_validate_whole_body(json.dumps([valid, valid]).encode())) == 2


def test_batch_bodies_equal_each_event_body():
    """event_bodies (one dump per batch) gives exactly event_body of each event."""
    from canhgac_common.events import DestinationKind, Event
    from service.events.operations import event_bodies, event_body

    base = {"occurred_at": "2026-03-02T09:15:00+07:00", "host": "PC", "actor": "a", "action": "copy"}
    events = [Event.model_validate({**base, "id": f"5f0c7f0e-8a1b-4c4c-9f7e-0a0b0c0d0e{n:02x}", **extra})
              for n, extra in enumerate([
                  {}, {"object": {"path": "D:\\a.xlsx", "record_count": 3}},
                  {"destination": {"path": "E:\\a.xlsx", "device": {"serial": "X1", "is_registered": True}}},
                  {"pii": {"cccd": 2}, "agent_id": "PC", "seq": 4, "process": {"name": "cp", "pid": 7}}])]
    classes = [(None, None), ("dan_cu", None), (None, DestinationKind.REMOVABLE), ("ho_tich", DestinationKind.EMAIL)]
    assert event_bodies(events, "src", classes) == [event_body(e, "src", c) for e, c in zip(events, classes, strict=True)]
    assert event_bodies(events, "src") == [event_body(e, "src") for e in events]
