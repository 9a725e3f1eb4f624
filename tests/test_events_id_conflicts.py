"""Event id conflicts: the same id with other content is refused and recorded, not a duplicate."""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select

from canhgac_agent.client import Sender, ServerClient
from canhgac_agent.spool import Spool
from canhgac_common.events import Event
from service.audit.models import AuditEntry
from service.core.db import new_session
from service.events.conflicts import EventIdConflict, check_event_ids, comparable
from service.events.operations import event_body, ingest_events
from tests.test_reliability_support import LiveServer, cli_env, init_data_dir, verify


def _event(**over) -> dict:
    base = {
        "id": str(uuid.uuid4()),
        "occurred_at": "2026-03-02T09:15:00+07:00",
        "host": "PC-VHXH-01",
        "actor": "lan.nt",
        "action": "copy",
        "object": {"path": "D:\\DuLieu\\HoNgheo\\ds_2026.xlsx", "record_count": 312},
        "destination": {"path": "E:\\ds_2026.xlsx"},
        "pii": {"cccd": 312},
        "unit": "vh_xh",
        "agent_id": "PC-VHXH-01",
        "seq": 7,
    }
    base.update(over)
    return base


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "may-vhxh"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _post(client, token, payload):
    return client.post("/api/v1/events", data=json.dumps(payload), content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


def _entries(app, kind: str) -> list[dict]:
    with app.app_context():
        s = new_session()
        try:
            rows = s.scalars(select(AuditEntry.body).where(AuditEntry.kind == kind)
                             .order_by(AuditEntry.seq)).all()
        finally:
            s.close()
    return [json.loads(row)["body"] for row in rows]


def test_same_id_other_content_across_batches_is_409_and_recorded(app, client, token):
    first = _event()
    assert _post(client, token, [first]).json == {"stored": 1, "duplicates": 0}
    # The policy enriched the stored copy (data_class, destination.kind, source): a true retry
    # is still a duplicate.
    stored = _entries(app, "event")[0]
    assert stored["source"] == "may-vhxh" and "kind" in stored["destination"]
    assert _post(client, token, [first]).json == {"stored": 0, "duplicates": 1}
    fresh = _event()
    changed = copy.deepcopy(first)
    changed["object"]["path"] = "D:\\DuLieu\\HoNgheo\\ds_khac.xlsx"
    answer = _post(client, token, [fresh, changed])
    assert answer.status_code == 409
    assert answer.json == {
        "error": "id_conflict", "index": 1, "field": "id", "event_id": first["id"],
        "detail": f"event id {first['id']} is already stored with different content (fields: object)"}
    # Nothing of the refused batch went in; the refusal did.
    ids = [e["id"] for e in _entries(app, "event")]
    assert ids == [first["id"]]
    (conflict,) = _entries(app, "event.conflict")
    assert conflict == {"event_id": first["id"], "source": "may-vhxh", "index": 1, "batch_size": 2,
                        "stored_seq": conflict["stored_seq"], "is_within_batch": False,
                        "fields": ["object"], "agent_id": "PC-VHXH-01", "host": "PC-VHXH-01"}
    assert isinstance(conflict["stored_seq"], int)
    assert "ds_khac" not in json.dumps(conflict)  # names of fields, never their content
    # The batch without the conflicting event goes in; an identical retry is still a duplicate.
    assert _post(client, token, [fresh, first]).json == {"stored": 1, "duplicates": 1}


def test_same_id_other_content_within_a_batch_is_400(app, client, token):
    event = _event()
    twin = {**event, "actor": "nguoi.khac", "occurred_at": "2026-03-02T10:15:00+07:00"}
    answer = _post(client, token, [_event(), event, twin])
    assert answer.status_code == 400
    assert answer.json["error"] == "id_conflict" and answer.json["index"] == 2
    assert answer.json["event_id"] == event["id"]
    assert "repeated earlier in this batch" in answer.json["detail"]
    assert "(fields: actor, occurred_at)" in answer.json["detail"]
    assert _entries(app, "event") == []
    (conflict,) = _entries(app, "event.conflict")
    assert conflict["is_within_batch"] and conflict["stored_seq"] is None
    # The same event twice in a batch stays a duplicate.
    assert _post(client, token, [event, dict(event)]).json == {"stored": 1, "duplicates": 1}


def _mutations() -> list[tuple[str, dict]]:
    return [
        ("occurred_at", {"occurred_at": "2026-03-02T09:15:01+07:00"}),
        ("occurred_at", {"occurred_at": "2026-03-02T02:15:00+00:00"}),  # same instant, other text
        ("actor", {"actor": "lan.nt2"}),
        ("action", {"action": "move"}),
        ("pii", {"pii": {"cccd": 311}}),
        ("pii", {"pii": {"cccd": 312, "phone": 1}}),
        ("destination", {"destination": {"path": "F:\\khac.xlsx"}}),
        ("destination", {"destination": None}),
        ("unit", {"unit": None}),
        ("purpose", {"purpose": "ra soat"}),
        ("seq", {"seq": 8}),
        ("agent_id", {"agent_id": "PC-VHXH-02"}),
    ]


def test_every_field_counts_except_what_the_server_writes(app, session):
    processor = app.extensions.get("canhgac.processor")
    original = _event(object={"path": "D:\\a.xlsx", "record_count": 3, "data_class": "an_sinh"},
                      destination={"path": "E:\\a.xlsx", "kind": "removable"})
    ingest_events(session, [Event.model_validate(original)], source="a", processor=processor)
    session.commit()
    for field, change in _mutations():
        payload = {k: v for k, v in {**original, **change}.items() if v is not None}
        with pytest.raises(EventIdConflict) as caught:
            check_event_ids(session, [Event.model_validate(payload)])
        assert caught.value.fields == [field], (field, caught.value.fields)
        assert caught.value.stored_seq is not None and caught.value.index == 0
    # What the server writes may differ: another source, data class or destination kind.
    same = copy.deepcopy(original)
    same["object"]["data_class"] = "dan_cu"
    same["destination"]["kind"] = "cloud"
    assert check_event_ids(session, [Event.model_validate(same)]) == {original["id"]}
    session.rollback()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["actor", "host", "purpose"]),
                       st.text(alphabet="abc ", min_size=1, max_size=6), max_size=3))
def test_retry_is_a_duplicate_and_only_a_real_change_conflicts(app, change):
    with app.app_context():
        s = new_session(app)
        try:
            original = _event()
            ingest_events(s, [Event.model_validate(original)], source="src")
            s.commit()
            other = {**original, **change}
            is_same = all(original.get(k) == v for k, v in change.items())
            body_same = comparable(event_body(Event.model_validate(other), "x")) == comparable(
                event_body(Event.model_validate(original), "y"))
            assert is_same == body_same
            if is_same:
                result = ingest_events(s, [Event.model_validate(other)], source="src")
                assert (result.stored, result.duplicates) == (0, 1)
            else:
                with pytest.raises(EventIdConflict):
                    ingest_events(s, [Event.model_validate(other)], source="src")
            s.rollback()
        finally:
            s.close()


def test_fresh_batches_read_no_stored_bodies(app, session, monkeypatch):
    """Bodies are read only for ids already stored: a batch of new events reads none."""
    from service.events import conflicts

    read: list[int] = []
    real = json.loads

    def counting_loads(text, *args, **kwargs):
        read.append(1)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(conflicts.json, "loads", counting_loads)
    events = [Event.model_validate(_event(seq=n)) for n in range(50)]
    assert check_event_ids(session, events) == set()
    assert read == []
    session.rollback()


def test_ids_sharing_their_first_half_are_different_events(app, session):
    """The dedupe key hashes the whole id: a sender's fixed prefix and counter do not collide."""
    from service.audit.log import event_key

    ids = [str(uuid.UUID(int=(7 << 64) + n)) for n in range(300)]
    assert len({event_key(i) for i in ids}) == len(ids)
    events = [Event.model_validate(_event(id=i, seq=n)) for n, i in enumerate(ids)]
    assert ingest_events(session, events, source="a").stored == 300
    session.commit()
    again = ingest_events(session, [*events[::7], Event.model_validate(_event(seq=400))], source="a")
    assert (again.stored, again.duplicates) == (1, len(events[::7]))
    session.commit()
    assert session.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.kind == "event")) == 301


def test_two_writers_with_one_new_id_store_it_once(app):
    """Without a unique index, the head lock taken before the lookup keeps dedupe exact."""
    import threading

    payload = _event()
    results: list = []
    with app.app_context():
        first = new_session(app)
        ingest_events(first, [Event.model_validate(payload)], source="a")  # holds the write lock

        def second_writer() -> None:
            with app.app_context():
                s = new_session(app)
                try:
                    results.append(ingest_events(s, [Event.model_validate(payload)], source="a"))
                    s.commit()
                finally:
                    s.close()

        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the first writer's lock, not looking already
        first.commit()
        first.close()
        thread.join(30)
        assert not thread.is_alive()
        assert (results[0].stored, results[0].duplicates) == (0, 1)
        s = new_session(app)
        try:
            assert s.scalar(select(func.count()).select_from(AuditEntry)
                            .where(AuditEntry.event_id == payload["id"])) == 1
        finally:
            s.close()


# ------------------------------------------------------------------ over real HTTP


def _count(db_url: str, kind: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(AuditEntry)
                               .where(AuditEntry.kind == kind))
    finally:
        engine.dispose()


def test_conflicts_over_http_with_the_real_server_and_agent(tmp_path, db_url):
    data_dir = tmp_path / "data"
    env = cli_env(db_url)
    token = init_data_dir(data_dir, env)
    server = LiveServer(data_dir, env, threads=4)
    server.start()
    try:
        first = _event()
        assert server.post_events(token, [first]) == (200, {"stored": 1, "duplicates": 0})
        assert server.post_events(token, [first]) == (200, {"stored": 0, "duplicates": 1})
        status, answer = server.post_events(token, [{**first, "actor": "nguoi.khac"}])
        assert status == 409 and answer["event_id"] == first["id"] and answer["error"] == "id_conflict"
        twin = _event()
        status, answer = server.post_events(token, [twin, {**twin, "pii": {"cccd": 1}}])
        assert status == 400 and answer["index"] == 1 and answer["event_id"] == twin["id"]
        assert answer["error"] == "id_conflict"
        assert _count(db_url, "event.conflict") == 2

        # The agent sets the conflicting event aside and delivers the rest of its batch.
        spool = Spool(tmp_path / "spool.sqlite3")
        reused = Event.model_validate({**first, "object": {"path": "C:\\khac.xlsx"}})
        others = [Event.model_validate(_event(seq=n)) for n in (20, 21, 22)]
        spool.append([others[0], reused, others[1], others[2]])
        with ServerClient(f"http://127.0.0.1:{server.port}", token, allow_insecure_http=True,
                          timeout=10) as client:
            Sender(spool, client, batch_size=10).send_pending()
        assert spool.pending_count() == 0
        assert [r.reason for r in spool.rejected()] == ["409 id_conflict (field id)"]
        spool.close()
        assert _count(db_url, "event") == 4
        assert _count(db_url, "event.conflict") == 3
    finally:
        server.kill()
    checked = verify(data_dir, env)
    assert checked.returncode == 0, checked.stderr[-2000:]


def test_a_dedupe_key_collision_drops_nothing_and_refuses_nothing(app, client, token, monkeypatch):
    """Two ids whose 64-bit keys collide (2^32 work for a sender choosing its ids) are two events."""
    from service.audit import log
    from service.events import conflicts

    def colliding_key(event_id: str) -> int:
        return -42  # every id shares one key: the worst collision a sender could make

    monkeypatch.setattr(log, "event_key", colliding_key)
    monkeypatch.setattr(conflicts, "event_key", colliding_key)
    first, second = _event(seq=1), _event(seq=2, actor="khac.nv")
    response = _post(client, token, [first])
    assert response.status_code == 200, response.text
    # A different event under a colliding key: stored, neither a duplicate nor a conflict.
    response = _post(client, token, [second])
    assert response.status_code == 200, response.text
    assert (response.json["stored"], response.json["duplicates"]) == (1, 0)
    # The real duplicate under the shared key is still recognised as one.
    response = _post(client, token, [first, second])
    assert (response.json["stored"], response.json["duplicates"]) == (0, 2)
    events = _entries(app, "event")
    assert sorted(e["id"] for e in events) == sorted([first["id"], second["id"]])
    assert _entries(app, "event.conflict") == []
