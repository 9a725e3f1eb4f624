"""The trail's fast paths give exactly what the plain ones give, and lose no check (both databases)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select, text

from service.audit import log, verify
from service.audit.canonical import CanonicalizationError
from service.audit.keys import load_verifier_key
from service.audit.models import AuditEntry
from service.audit.verify import VerifyError, verify_log
from tests.trail_support import signed_trail

SIZE = 37
CHECKPOINTS = (10, 25)  # signed while the trail grows; a kept copy of the first one too

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
KINDS = st.from_regex(log.KIND_PATTERN, fullmatch=True).filter(lambda k: len(k) <= 48)


def _outcome(build):
    try:
        return build()
    except (CanonicalizationError, ValueError) as exc:
        return type(exc)


@hsettings(max_examples=300, deadline=None)
@given(seq=st.integers(0, 2**60), kind=KINDS, body=JSON_VALUES,
       at=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_batch_entry_bytes_are_exactly_entry_bytes(seq, kind, body, at):
    stamp = log.recorded_at_text(at.replace(tzinfo=UTC))
    make = log._entry_bytes_maker(stamp)
    assert _outcome(lambda: make(seq, kind, body)) == _outcome(
        lambda: log.entry_bytes(seq, stamp, kind, body))


def test_batch_entry_bytes_refuse_what_entry_bytes_refuses():
    make = log._entry_bytes_maker("2026-03-02T01:15:00.412345Z")
    with pytest.raises(ValueError, match="kind"):
        make(1, "Event", {})
    with pytest.raises(CanonicalizationError):
        make(1, "event", {"n": float("nan")})
    # A stamp not of recorded_at_text's shape is escaped by JCS, like any string.
    odd = log._entry_bytes_maker('2026"\n')
    assert odd(3, "event", {}) == log.entry_bytes(3, '2026"\n', "event", {})


@hsettings(max_examples=300, deadline=None)
@given(at=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
       offset=st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                            max_value=timedelta(hours=23, minutes=59)))
def test_sqlite_times_are_written_as_the_orm_writes_them(at, offset):
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        orm = log._bind_processor(conn, "occurred_at")
        aware = at.replace(tzinfo=timezone(offset))
        assert log._sqlite_time_text(aware) == orm(aware)
        with pytest.raises(ValueError, match="naive"):
            log._sqlite_time_text(at)
    engine.dispose()


@pytest.fixture
def trail(app, session, runner):
    """A trail of SIZE entries, signed at each size of CHECKPOINTS; returns the first note."""
    return signed_trail(session, runner, CHECKPOINTS, SIZE)


def _verify(app, session, note, **kwargs):
    settings = app.config["SETTINGS"]
    report = verify_log(session, [load_verifier_key(settings.keys_dir)],
                        origin=settings.audit_origin, external_notes=[note], **kwargs)
    session.rollback()
    return report


def _set_body(session, seq: int, body: str) -> None:
    session.execute(text("UPDATE audit_entry SET body = :b WHERE seq = :s"), {"b": body, "s": seq})
    session.commit()


@pytest.mark.parametrize("batch", [1, 3, 8, 10, 64])
def test_the_fast_pass_alone_proves_an_untouched_trail(app, session, trail, monkeypatch, batch):
    def thorough(*args, **kwargs):
        raise AssertionError("the fast pass should have proved this trail")

    monkeypatch.setattr(verify, "_thorough_pass", thorough)
    seen: list[int] = []
    report = _verify(app, session, trail, batch=batch, progress=seen.append)
    assert report.size == SIZE and report.checkpoints == len(CHECKPOINTS)
    assert seen == sorted(seen) and seen[-1] == SIZE
    assert set(CHECKPOINTS) <= set(seen)  # a range ends at every checkpoint
    assert not [t for t in threading.enumerate() if t.name == "verify-reader"]


@pytest.mark.parametrize("seq", [0, 9, 10, 24, 30, SIZE - 1])
def test_a_change_in_any_range_is_named_while_the_reader_runs_ahead(app, session, trail, seq):
    original = session.execute(text("SELECT body FROM audit_entry WHERE seq = :s"),
                                {"s": seq}).scalar()
    session.commit()
    # A changed byte, then a raw newline (valid JSON whitespace, but not canonical, and it
    # would split the range's joined bodies into one piece too many).
    for altered in (original.replace('"i":', '"j":'), original.replace(',"kind"', ',\n"kind"')):
        assert altered != original
        _set_body(session, seq, altered)
        with pytest.raises(VerifyError) as caught:
            _verify(app, session, trail, batch=3)
        assert caught.value.seq == seq, str(caught.value)
        assert not [t for t in threading.enumerate() if t.name == "verify-reader"]
        _set_body(session, seq, original)
    assert _verify(app, session, trail, batch=3).size == SIZE


def test_the_reader_hands_back_the_connection_when_stopped_early(session, trail):
    conn = session.connection()
    reader = verify._RangeReader(conn, [(i, i + 1) for i in range(SIZE)], ahead=1)
    start, end, count, joined = next(iter(reader))
    assert (start, end, count) == (0, 1, 1) and joined.startswith(b'{"body":')
    reader.close()
    assert not reader._thread.is_alive()
    assert conn.exec_driver_sql("SELECT count(*) FROM audit_entry").scalar() == SIZE


def test_a_reading_error_reaches_the_verifier(session, trail, monkeypatch):
    conn = session.connection()
    p = log._placeholder(conn)
    monkeypatch.setattr(verify, "_fast_range_sql", lambda _conn: (
        f"SELECT count(*), no_such_column FROM audit_entry WHERE seq >= {p} AND seq < {p}"))  # noqa: S608
    reader = verify._RangeReader(conn, [(0, 5), (5, 10)])
    with pytest.raises(conn.dialect.loaded_dbapi.Error):
        list(reader)
    reader.close()
    assert not reader._thread.is_alive()
    session.rollback()


@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(0, SIZE - 1), batch=st.integers(1, SIZE + 2))
def test_a_body_swapped_with_a_neighbour_is_caught_at_any_batch(app, session, trail, seq, batch):
    other = (seq + 1) % SIZE
    bodies = dict(session.execute(text("SELECT seq, body FROM audit_entry WHERE seq IN (:a, :b)"),
                                  {"a": seq, "b": other}).all())
    session.commit()
    _set_body(session, seq, bodies[other])
    _set_body(session, other, bodies[seq])
    try:
        with pytest.raises(VerifyError) as caught:
            _verify(app, session, trail, batch=batch)
        assert caught.value.seq == min(seq, other)
    finally:
        _set_body(session, seq, bodies[seq])
        _set_body(session, other, bodies[other])


def test_appended_rows_are_what_the_orm_reads_back(session):
    long = "Nguyễn Văn A " * 30  # 390 characters: longer than every search column
    occurred = datetime(2026, 3, 2, 8, 15, 0, 0, tzinfo=timezone(timedelta(hours=7)))
    rows = log.append_entries(session, [
        log.PendingEntry("event", {"n": 1}, {"actor": long, "host": long, "action": long,
                                             "path": long, "data_class": long, "event_id": long,
                                             "incident_id": 7, "occurred_at": occurred}),
        log.PendingEntry("user.created", {"n": 2}, {"actor": "admin"}),
    ])
    session.commit()
    first = rows[0]
    assert (len(first.actor), len(first.host), len(first.action), len(first.data_class),
            len(first.event_id), first.path) == (255, 255, 32, 64, 36, long)
    assert rows[1].actor == "admin" and rows[1].occurred_at is None and rows[1].host is None
    for row in rows:
        stored = session.get(AuditEntry, row.seq)
        assert stored.recorded_at == row.recorded_at  # microseconds survive, as the ORM writes
        assert stored.occurred_at == row.occurred_at
        assert (stored.actor, stored.host, stored.action, stored.path, stored.data_class,
                stored.incident_id, stored.event_id, stored.body, bytes(stored.leaf_hash)) == (
            row.actor, row.host, row.action, row.path, row.data_class, row.incident_id,
            row.event_id, row.body, row.leaf_hash)
        assert row.body.encode() == log.entry_bytes(
            row.seq, log.recorded_at_text(row.recorded_at), row.kind, json.loads(row.body)["body"])
    # The ORM finds appended rows by time as it would rows it wrote itself.
    found = session.execute(select(AuditEntry.seq).where(AuditEntry.occurred_at == occurred))
    assert found.scalars().all() == [first.seq]
