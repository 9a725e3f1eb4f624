"""Silence is always noticed, heartbeats are not taken on trust (#13 item 5).

The silence job is driven with explicit clocks (``now`` and the operations' ``utcnow``): no
sleeping. Times are chosen in Asia/Ho_Chi_Minh against the default policy's settings:
working hours Monday to Friday 07:00-17:30, 30/4 and 1/5 holidays; rule ``tac_tu_im_lang``
fires at two hours of silence in working hours.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from service.audit.models import AuditEntry
from service.core.db import new_session
from service.events.identity import identity_key, normalize_identifier, same_identity
from service.events.jobs import report_silent_agents
from service.events.models import Agent
from service.events.operations import record_heartbeat
from service.incidents.models import Alert, AlertState

SILENCE_RULE = "tac_tu_im_lang"
HANOI = timedelta(hours=7)


def hanoi(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """Return the aware UTC time of a wall-clock time in Hà Nội."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - HANOI


MONDAY_0900 = hanoi(2026, 3, 2, 9)


# ---------------------------------------------------------------- helpers


@pytest.fixture
def clock(monkeypatch):
    """The time the operations read (last contact); a list so tests can move it."""
    now = [MONDAY_0900]
    monkeypatch.setattr("service.events.operations.utcnow", lambda: now[0])
    return now


def _beat(session, agent_id="pc-ca-01", host="PC-CA-01", *, source="may-ca", last_seq=None):
    record_heartbeat(session, source=source, agent_id=agent_id, host=host, last_seq=last_seq,
                     spool_depth=0, version="1")
    session.commit()


def _judge(app, session, at: datetime, **settings_update) -> int:
    settings = app.config["SETTINGS"]
    if settings_update:
        settings = settings.model_copy(update=settings_update)
    reported = report_silent_agents(session, settings, app.extensions["canhgac.processor"], now=at)
    session.commit()
    return reported


def _alerts(session, rule_id=SILENCE_RULE) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.rule_id == rule_id).order_by(Alert.id)))


def _bodies(session, kind: str) -> list[dict]:
    rows = session.scalars(select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))
    return [json.loads(row.body)["body"] for row in rows]


# ---------------------------------------------------------------- silence


def test_policy_alert_fires_once_its_threshold_passes_after_the_first_report(app, session, clock):
    _beat(session)  # Monday 09:00
    assert _judge(app, session, MONDAY_0900 + timedelta(minutes=31)) == 1  # agent.silent, 31 min
    assert _alerts(session) == []  # the rule wants two hours
    _judge(app, session, MONDAY_0900 + timedelta(hours=1, minutes=59))
    assert _alerts(session) == []
    assert _judge(app, session, MONDAY_0900 + timedelta(hours=2, minutes=1)) == 0  # not a new silence
    (alert,) = _alerts(session)
    assert alert.host == "PC-CA-01" and "121 phút" in alert.explanation
    # Linked to an agent.silent entry that says how long and which rule fired.
    entry = session.scalar(select(AuditEntry).where(AuditEntry.seq == alert.entry_seq))
    body = json.loads(entry.body)["body"]
    assert entry.kind == "agent.silent" and body["silent_seconds"] == 121 * 60
    assert body["rules"] == [SILENCE_RULE]
    # Every later run of the same silence: nothing more (no alert, no entry).
    entries = len(_bodies(session, "agent.silent"))
    for minutes in (122, 123, 180, 300):
        _judge(app, session, MONDAY_0900 + timedelta(minutes=minutes))
    assert len(_alerts(session)) == 1 and len(_bodies(session, "agent.silent")) == entries == 2


def test_the_agent_speaking_again_starts_a_new_silence(app, session, clock):
    _beat(session)
    _judge(app, session, MONDAY_0900 + timedelta(hours=2, minutes=5))
    assert len(_alerts(session)) == 1
    clock[0] = MONDAY_0900 + timedelta(hours=3)  # 12:00: back
    _beat(session)
    assert [b["agent_id"] for b in _bodies(session, "agent.back")] == ["pc-ca-01"]
    _judge(app, session, clock[0] + timedelta(hours=1))
    assert len(_alerts(session)) == 1
    _judge(app, session, clock[0] + timedelta(hours=2, minutes=1))  # 14:01: a second silence
    assert len(_alerts(session)) == 2
    _judge(app, session, clock[0] + timedelta(hours=2, minutes=2))
    assert len(_alerts(session)) == 2


def test_events_also_end_a_silence(app, client, session, clock, runner):
    token = runner.invoke(["token", "create", "--source", "may-ca"]).output.strip().splitlines()[-1]
    _beat(session)
    _judge(app, session, MONDAY_0900 + timedelta(hours=2, minutes=5))
    clock[0] = MONDAY_0900 + timedelta(hours=3)
    response = client.post("/api/v1/events", json=[_event(agent_id="pc-ca-01", seq=1)],
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.json
    session.expire_all()
    assert len(_bodies(session, "agent.back")) == 1
    _judge(app, session, clock[0] + timedelta(hours=2, minutes=1))
    assert len(_alerts(session)) == 2


@pytest.mark.parametrize(("began", "quiet", "first_alert"), [
    # Monday 22:00: judged again at 07:00 on Tuesday, not before.
    (hanoi(2026, 3, 2, 22), [hanoi(2026, 3, 2, 22, 31), hanoi(2026, 3, 3, 3),
                             hanoi(2026, 3, 3, 6, 59)], hanoi(2026, 3, 3, 7)),
    # Friday 16:00: 1 h 30 by 17:30, then the weekend; Monday 07:00.
    (hanoi(2026, 3, 6, 16), [hanoi(2026, 3, 6, 17, 29), hanoi(2026, 3, 6, 18, 1),
                             hanoi(2026, 3, 7, 10), hanoi(2026, 3, 8, 10)], hanoi(2026, 3, 9, 7)),
    # Wednesday 29/4 evening: 30/4 and 1/5 are holidays (policy settings), then the weekend.
    (hanoi(2026, 4, 29, 18), [hanoi(2026, 4, 30, 9), hanoi(2026, 5, 1, 9), hanoi(2026, 5, 2, 9),
                              hanoi(2026, 5, 3, 9)], hanoi(2026, 5, 4, 7, 1)),
])
def test_a_silence_outside_working_hours_is_judged_when_they_begin(app, session, clock, began,
                                                                    quiet, first_alert):
    clock[0] = began
    _beat(session)
    for moment in quiet:
        _judge(app, session, moment)
        assert _alerts(session) == [], moment
    _judge(app, session, first_alert)
    (alert,) = _alerts(session)
    assert alert.severity == "medium"
    _judge(app, session, first_alert + timedelta(hours=1))
    assert len(_alerts(session)) == 1
    # Reported once (agent.silent at the first run), judged once more when the rule fired.
    assert len(_bodies(session, "agent.silent")) == 2


@pytest.mark.parametrize("silence_minutes", [1, 30, 119, 300, 24 * 60])
def test_the_policy_threshold_holds_whatever_agent_silence_minutes(app, session, clock,
                                                                   silence_minutes):
    _beat(session)
    _judge(app, session, MONDAY_0900 + timedelta(hours=1, minutes=59),
           agent_silence_minutes=silence_minutes)
    assert _alerts(session) == []
    _judge(app, session, MONDAY_0900 + timedelta(hours=2), agent_silence_minutes=silence_minutes)
    assert len(_alerts(session)) == 1
    # agent_silence_minutes still decides when the silence is first reported.
    reported = [b["silent_seconds"] for b in _bodies(session, "agent.silent")]
    assert reported[0] <= max(silence_minutes * 60, 7200)


@pytest.mark.parametrize("every_minutes", [1, 7, 45, 60, 170])
def test_the_alert_comes_at_the_first_run_past_the_threshold_whatever_the_interval(
        app, session, clock, every_minutes):
    _beat(session)
    step = timedelta(minutes=every_minutes)
    moment, raised_at = MONDAY_0900, None
    while moment < MONDAY_0900 + timedelta(hours=6):
        moment += step
        _judge(app, session, moment)
        if raised_at is None and _alerts(session):
            raised_at = moment
    assert raised_at is not None and len(_alerts(session)) == 1
    assert timedelta(hours=2) <= raised_at - MONDAY_0900 < timedelta(hours=2) + step


def test_the_scheduled_job_runs_the_same_judgement(app, session, clock):
    from service.core.jobs import run_job

    clock[0] = datetime.now(UTC) - timedelta(days=3)
    _beat(session)
    run_job(app, "events.agent_silence")
    session.expire_all()
    assert session.scalar(select(Agent)).is_silence_reported
    assert len(_bodies(session, "agent.silent")) >= 1


# ---------------------------------------------------------------- heartbeats and renumbering


def _event(**over) -> dict:
    base = {"id": str(uuid.uuid4()), "occurred_at": "2026-03-02T09:15:00+07:00", "host": "PC-CA-01",
            "actor": "ca.hoangvanb", "action": "open", "unit": "cong_an",
            "object": {"path": "C:\\DuLieu\\DanCu\\ds.xlsx", "record_count": 10}}
    base.update(over)
    return base


@pytest.fixture
def tokens(runner):
    def make(source):
        result = runner.invoke(["token", "create", "--source", source])
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[-1]

    return {"own": make("may-ca"), "other": make("may-khac")}


def _send(client, token, payload):
    return client.post("/api/v1/events", json=payload, headers={"Authorization": f"Bearer {token}"})


def _heartbeat(client, token, **body):
    body = {"agent_id": "PC-CA-01", "host": "PC-CA-01", **body}
    return client.post("/api/v1/agents/heartbeat", json=body,
                       headers={"Authorization": f"Bearer {token}"})


def _count(app, model=AuditEntry, *where) -> int:
    with app.app_context():
        s = new_session()
        try:
            return s.scalar(select(func.count()).select_from(model).where(*where))
        finally:
            s.close()


def _read(app, fn):
    with app.app_context():
        s = new_session()
        try:
            return fn(s)
        finally:
            s.close()


def test_a_heartbeat_whose_last_seq_goes_back_raises_the_renumbering_alert(app, client, tokens):
    own = tokens["own"]
    assert _send(client, own, [_event(agent_id="PC-CA-01", seq=n) for n in range(10)]).status_code == 200
    assert _heartbeat(client, own, last_seq=9).status_code == 200
    assert _heartbeat(client, own, last_seq=12).status_code == 200  # events still in the spool
    renumbered = Alert.rule_id == "agent.renumbered"
    assert _count(app, Alert, renumbered) == 0
    assert _heartbeat(client, own, last_seq=3).status_code == 200  # the spool was replaced
    assert _count(app, Alert, renumbered) == 1
    (body,) = _read(app, lambda s: _bodies(s, "agent.renumbered"))
    assert body == {"agent_id": "PC-CA-01", "host": "PC-CA-01", "first_seq": 4,
                    "last_seq_before": 9, "heartbeat_last_seq": 3}
    # Said once; the agent's new numbering then goes on without a gap or a second alert.
    assert _heartbeat(client, own, last_seq=3).status_code == 200
    assert _send(client, own, [_event(agent_id="PC-CA-01", seq=n) for n in (4, 5)]).status_code == 200
    assert _count(app, Alert, renumbered) == 1
    assert _count(app, AuditEntry, AuditEntry.kind == "agent.gap") == 0
    assert _read(app, lambda s: s.scalar(select(Agent.last_seq))) == 5


def test_a_heartbeat_at_or_above_the_servers_last_seq_raises_nothing(app, client, tokens):
    own = tokens["own"]
    assert _heartbeat(client, own, last_seq=0).status_code == 200  # before any event
    assert _send(client, own, [_event(agent_id="PC-CA-01", seq=n) for n in (1, 2)]).status_code == 200
    for last in (2, 2, 7):
        assert _heartbeat(client, own, last_seq=last).status_code == 200
    assert _count(app, AuditEntry, AuditEntry.kind == "agent.renumbered") == 0


# ---------------------------------------------------------------- agent ids compared normalised

LOOKALIKES = {
    "case": "pc-ca-01",
    "trailing space": "PC-CA-01 ",
    "full width": "ＰＣ-CA-01",
    "unicode hyphen": "PC\u2010CA\u201001",
    "zero-width space": "PC-CA\u200b-01",
    "all at once": "\u00a0ｐｃ\u2212ca\u2011０1\ufeff",
}


@pytest.mark.parametrize("lookalike", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_a_lookalike_of_another_tokens_agent_id_is_refused_and_trailed(app, client, tokens,
                                                                       lookalike):
    assert _heartbeat(client, tokens["own"], last_seq=0).status_code == 200
    events_before = _count(app, AuditEntry, AuditEntry.kind == "event")
    answers = [
        _heartbeat(client, tokens["other"], agent_id=lookalike, host="PC-KHAC"),
        _send(client, tokens["other"], [_event(agent_id=lookalike, host="PC-KHAC", seq=1)]),
    ]
    for answer in answers:
        assert answer.status_code == 409
        assert answer.json["error"] == "agent_id_lookalike" and answer.json["field"] == "agent_id"
        assert "look-alike" in answer.json["detail"]
        text = answer.get_data(as_text=True)
        # Nothing about the agent it resembles: not its id, host or token source.
        assert "PC-CA-01" not in text and "may-ca" not in text and "pc-ca-01" not in text
    assert _count(app, AuditEntry, AuditEntry.kind == "event") == events_before
    assert _count(app, Agent) == 1
    refusals = _read(app, lambda s: _bodies(s, "agent.id_lookalike"))
    assert len(refusals) == 2
    assert refusals[0] == {"agent_id": lookalike, "source": "may-khac", "bound_agent_id": "PC-CA-01",
                           "bound_host": "PC-CA-01", "bound_source": "may-ca"}
    # One open alert for the police, not one per refused request.
    alerts = _read(app, lambda s: _alerts(s, "agent.id_lookalike"))
    assert len(alerts) == 1 and alerts[0].state == AlertState.OPEN and alerts[0].severity == "high"


def test_the_exact_id_of_another_tokens_agent_is_still_forbidden(client, tokens):
    assert _heartbeat(client, tokens["own"]).status_code == 200
    assert _heartbeat(client, tokens["other"]).status_code == 403


@pytest.mark.parametrize("lookalike", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_the_same_token_with_a_lookalike_of_its_own_id_is_the_same_agent(app, client, tokens,
                                                                         lookalike):
    own = tokens["own"]
    assert _send(client, own, [_event(agent_id="PC-CA-01", seq=n) for n in (1, 2)]).status_code == 200
    assert _heartbeat(client, own, agent_id=lookalike, last_seq=2).status_code == 200
    batch = [_event(agent_id=lookalike, seq=3), _event(agent_id="PC-CA-01", seq=4)]
    assert _send(client, own, batch).status_code == 200
    agents = _read(app, lambda s: s.scalars(select(Agent)).all())
    assert [(a.agent_id, a.last_seq, a.missing_events) for a in agents] == [("PC-CA-01", 4, 0)]
    for kind in ("agent.renumbered", "agent.gap", "agent.id_lookalike"):
        assert _count(app, AuditEntry, AuditEntry.kind == kind) == 0, kind


# ---------------------------------------------------------------- an event's host is its agent's


def test_an_event_naming_another_host_is_refused_by_its_id_and_trailed(app, client, tokens):
    own = tokens["own"]
    assert _heartbeat(client, own, last_seq=0).status_code == 200  # binds PC-CA-01
    good, bad = _event(agent_id="PC-CA-01", host="pc-ca-01", seq=1), _event(
        agent_id="PC-CA-01", host="PC-KETOAN-02", seq=2)
    answer = _send(client, own, [good, bad])
    assert answer.status_code == 400
    assert answer.json == {"error": "host_mismatch", "index": 1, "field": "host", "event_id": bad["id"],
                           "detail": "host is not the host bound to this agent_id on its first contact"}
    assert _count(app, AuditEntry, AuditEntry.kind == "event") == 0
    (body,) = _read(app, lambda s: _bodies(s, "agent.host_mismatch"))
    assert body == {"agent_id": "PC-CA-01", "host": "PC-KETOAN-02", "source": "may-ca",
                    "bound_agent_id": "PC-CA-01", "bound_host": "PC-CA-01", "bound_source": "may-ca",
                    "event_id": bad["id"]}
    entry_event = _read(app, lambda s: s.scalar(select(AuditEntry.event_id).where(
        AuditEntry.kind == "agent.host_mismatch")))
    assert entry_event == bad["id"]
    # The agent marks that event rejected and sends the rest: accepted.
    assert _send(client, own, [good]).json == {"stored": 1, "duplicates": 0}


def test_the_first_contact_binds_the_host(app, client, tokens):
    own = tokens["own"]
    first = _event(agent_id="PC-CA-01", host="PC-CA-01", seq=1)
    other = _event(agent_id="PC-CA-01", host="PC-CA-02", seq=2)
    answer = _send(client, own, [first, other])  # the agent is new: its first event binds
    assert answer.status_code == 400 and answer.json["event_id"] == other["id"]
    assert _send(client, own, [first]).status_code == 200
    look_alike_host = _event(agent_id="PC-CA-01", host="ＰＣ\u2010ca-01 ", seq=2)
    assert _send(client, own, [look_alike_host]).status_code == 200
    assert _heartbeat(client, own, host="PC-CA-02").status_code == 409
    assert _heartbeat(client, own, host="PC-CA-02").json["error"] == "host_mismatch"
    assert _read(app, lambda s: s.scalar(select(Agent.host))) == "PC-CA-01"
    # Events of sources that are not agents (no agent_id) are not tied to a host.
    assert _send(client, own, [_event(host="PM-HOTICH")]).status_code == 200


# ---------------------------------------------------------------- normalisation itself


@given(st.text(max_size=40))
def test_normalisation_is_idempotent_and_keys_follow_it(text):
    once = normalize_identifier(text)
    assert normalize_identifier(once) == once
    assert identity_key(text) == identity_key(once)
    assert same_identity(text, once)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=20),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=20))
def test_distinct_plain_ids_stay_distinct(first, second):
    assert same_identity(first, second) == (first == second)


# ---------------------------------------------------------------- migration 0004


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_keys_existing_agents_even_lookalike_pairs(kind, tmp_path):
    from alembic import command
    from sqlalchemy import create_engine, text

    from service.core import migrate
    from tests.test_reliability_support import fresh_pg_schema

    place = (contextlib.nullcontext(f"sqlite:///{tmp_path / 'cu.db'}") if kind == "sqlite"
             else fresh_pg_schema())
    with place as url:
        engine = create_engine(url)
        try:
            cfg = migrate._config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0003")
                for agent_id, source in (("PC-1", "a"), ("pc-1 ", "b"), ("pc-2", "a")):
                    conn.execute(text(
                        "INSERT INTO agent (agent_id, source, missing_events, is_silence_reported) "
                        "VALUES (:i, :s, 0, :f)"), {"i": agent_id, "s": source, "f": False})
            migrate.upgrade(engine)
            migrate.check(engine)
            with engine.connect() as conn:
                keys = dict(conn.execute(text("SELECT agent_id, agent_key FROM agent")).all())
        finally:
            engine.dispose()
    assert keys["PC-1"] == identity_key("PC-1") and keys["pc-2"] == identity_key("pc-2")
    # The look-alike bound before 0004 keeps working under a key of its own.
    assert keys["pc-1 "].startswith(identity_key("pc-1") + ":")
