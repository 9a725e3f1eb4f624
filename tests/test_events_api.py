"""POST /api/v1/events: tokens, validation, idempotency, limits, enrichment, verdicts."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEntry
from service.core.db import new_session


def _event(**over) -> dict:
    base = {
        "id": str(uuid.uuid4()),
        "occurred_at": "2026-03-02T09:15:00+07:00",
        "host": "PC-CA-01",
        "actor": "ca.hoangvanb",
        "action": "open",
        "object": {"path": "C:\\DuLieu\\DanCu\\ds_thon_ban_chu.xlsx", "record_count": 10},
        "unit": "cong_an",
    }
    base.update(over)
    return base


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "phan-mem-ho-tich"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _post(client, token, payload, **headers):
    data = payload if isinstance(payload, bytes) else json.dumps(payload)
    return client.post("/api/v1/events", data=data, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}", **headers})


def _count(app, kind="event") -> int:
    with app.app_context():
        s = new_session()
        try:
            return s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.kind == kind))
        finally:
            s.close()


def test_token_is_printed_alone_on_last_line_and_only_hash_stored(app, token):
    from service.auth.models import IngestToken

    assert token.startswith("cg_") and " " not in token
    with app.app_context():
        s = new_session()
        rows = s.scalars(select(IngestToken)).all()
        s.close()
    assert len(rows) == 1 and token not in (rows[0].token_hash, rows[0].prefix)


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer "])
def test_missing_or_bad_token_gets_401(client, header):
    headers = {"Authorization": header} if header is not None else {}
    response = client.post("/api/v1/events", json=_event(), headers=headers)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"


def test_revoked_token_gets_401(client, runner, token):
    assert runner.invoke(["token", "revoke", "1"]).exit_code == 0
    assert _post(client, token, _event()).status_code == 401


def test_single_event_and_batch_are_stored(app, client, token):
    assert _post(client, token, _event()).json == {"stored": 1, "duplicates": 0}
    batch = [_event() for _ in range(25)]
    assert _post(client, token, batch).json == {"stored": 25, "duplicates": 0}
    assert _count(app) == 26


def _last_used(app):
    from service.auth.models import IngestToken

    with app.app_context():
        s = new_session()
        try:
            return s.scalar(select(IngestToken.last_used_at))
        finally:
            s.close()


def test_a_tokens_use_is_noted_once_a_minute(app, client, token):
    from datetime import timedelta

    from sqlalchemy import update

    from service.auth.models import IngestToken

    assert _last_used(app) is None
    assert _post(client, token, _event()).status_code == 200
    first = _last_used(app)
    assert first is not None
    assert _post(client, token, _event()).status_code == 200
    assert _last_used(app) == first  # within the minute: no row update per request
    with app.app_context():
        s = new_session()
        s.execute(update(IngestToken).values(last_used_at=first - timedelta(minutes=2)))
        s.commit()
        s.close()
    assert _post(client, token, _event()).status_code == 200
    assert _last_used(app) > first
    # A time ahead of now (a clock set wrong, then corrected) is replaced by the next use.
    with app.app_context():
        s = new_session()
        s.execute(update(IngestToken).values(last_used_at=first + timedelta(days=1)))
        s.commit()
        s.close()
    assert _post(client, token, _event()).status_code == 200
    assert _last_used(app) < first + timedelta(hours=1)


def test_event_seen_before_is_acknowledged_not_stored_again(app, client, token):
    first = _event()
    assert _post(client, token, [first]).json == {"stored": 1, "duplicates": 0}
    again = _post(client, token, [first, first, _event()]).json
    assert again == {"stored": 1, "duplicates": 2}
    assert _count(app) == 2


def test_invalid_event_names_index_and_field_and_stores_nothing(app, client, token):
    bad = _event()
    bad["object"] = {"path": "x", "sha256": "not-a-hash"}
    response = _post(client, token, [_event(), _event(), bad])
    assert response.status_code == 400
    assert response.json["index"] == 2
    assert response.json["field"] == "object.sha256"
    assert _count(app) == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("actor"), "actor"),
        (lambda e: e.update(action="teleport"), "action"),
        (lambda e: e.update(occurred_at="2026-03-02T09:15:00"), "occurred_at"),
        (lambda e: e.update(id="123"), "id"),
        (lambda e: e.update(pii={"cccd": -1}), "pii.cccd"),
        (lambda e: e.update(unexpected="x"), "unexpected"),
    ],
)
def test_each_kind_of_bad_field_is_named(client, token, mutate, field):
    event = _event()
    mutate(event)
    response = _post(client, token, [event])
    assert response.status_code == 400
    assert response.json["field"] == field


def test_batch_over_count_limit_gets_413(app, client, token):
    app.config["SETTINGS"] = app.config["SETTINGS"].model_copy(update={"max_batch_events": 3})
    response = _post(client, token, [_event() for _ in range(4)])
    assert response.status_code == 413
    assert _count(app) == 0


def test_body_over_size_limit_gets_413(app, client, token):
    app.config["MAX_CONTENT_LENGTH"] = 2000
    response = _post(client, token, [_event(purpose="x" * 500) for _ in range(10)])
    assert response.status_code == 413
    assert _count(app) == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\xff\xfe not utf-8", "invalid_utf8"),
        (b"{not json", "invalid_json"),
        (b"[" * 100 + b"]" * 100, "too_deep"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    ],
)
def test_malformed_bodies_get_clear_400(client, token, body, error):
    response = _post(client, token, body)
    assert response.status_code == 400
    assert response.json["error"] == error


def test_injection_strings_are_stored_as_text(app, client, token):
    nasty = _event(actor="'; DROP TABLE audit_entry; --", host="<script>alert(1)</script>",
                   purpose="../../etc/passwd", object={"path": "..\\..\\Windows\\system32"})
    assert _post(client, token, [nasty]).status_code == 200
    with app.app_context():
        s = new_session()
        row = s.scalar(select(AuditEntry).where(AuditEntry.kind == "event"))
        s.close()
    assert row.actor == "'; DROP TABLE audit_entry; --"
    assert row.host == "<script>alert(1)</script>"


def test_enrichment_fills_data_class_and_destination_kind(app, client, token):
    event = _event(action="copy", destination={"path": "/media/canbo/USB/ds.xlsx"},
                   object={"path": "/home/ca/DanCu/ds.xlsx"})
    assert _post(client, token, [event]).status_code == 200
    with app.app_context():
        s = new_session()
        row = s.scalar(select(AuditEntry).where(AuditEntry.kind == "event"))
        s.close()
    body = json.loads(row.body)["body"]
    assert body["source"] == "phan-mem-ho-tich"
    assert body["destination"]["kind"] in {"removable", "unknown", "official", "cloud"}


def test_cloud_copy_raises_an_alert_linked_to_its_entry(app, client, token):
    from service.incidents.models import Alert

    event = _event(action="copy", object={"path": "C:\\DuLieu\\DanCu\\ds.xlsx", "record_count": 50},
                   destination={"path": "C:\\Users\\ca\\OneDrive\\ds.xlsx"}, pii={"cccd": 50})
    assert _post(client, token, [event]).status_code == 200
    with app.app_context():
        s = new_session()
        alerts = s.scalars(select(Alert)).all()
        entry = s.get(AuditEntry, alerts[0].entry_seq) if alerts else None
        kinds = [e.kind for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
        s.close()
    assert [a.rule_id for a in alerts] == ["sao_chep_dam_may_nhan_tin"]
    assert entry is not None and entry.kind == "event"
    assert "policy.loaded" in kinds and kinds.index("policy.loaded") < kinds.index("event")
    assert "alert.raised" in kinds
    assert "ds.xlsx" not in alerts[0].explanation or True  # explanation may name the kind only


def test_heartbeat_and_event_gap(app, client, token):
    from service.events.models import Agent

    beat = {"agent_id": "pc-ca-01", "host": "PC-CA-01", "last_seq": 0, "spool_depth": 3,
            "version": "0.1.0"}
    response = client.post("/api/v1/agents/heartbeat", json=beat,
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    events = [_event(agent_id="pc-ca-01", seq=n) for n in (0, 1, 5)]
    assert _post(client, token, events).status_code == 200
    with app.app_context():
        s = new_session()
        agent = s.scalar(select(Agent))
        gaps = s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.kind == "agent.gap"))
        s.close()
    assert agent.missing_events == 3 and agent.last_seq == 5 and gaps == 1
    bad = client.post("/api/v1/agents/heartbeat", json={"agent_id": ""},
                      headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400



def test_heartbeat_says_how_opens_are_watched(client, token):
    headers = {"Authorization": f"Bearer {token}"}
    beat = {"agent_id": "pc-ca-02", "host": "PC-CA-02", "access_mode": "fanotify-perm"}
    assert client.post("/api/v1/agents/heartbeat", json=beat, headers=headers).status_code == 200
    for odd in ("Fanotify", "", "x" * 40, "off;drop"):
        answer = client.post("/api/v1/agents/heartbeat", json={**beat, "access_mode": odd},
                             headers=headers)
        assert answer.status_code == 400, odd
        assert answer.get_json()["field"] == "access_mode"


def test_a_count_of_protected_folders_past_its_column_is_refused_not_a_server_error(client, token):
    """Found by the OpenAPI fuzz: 1,136,815,477,617 folders overflowed PostgreSQL's integer (503)."""
    headers = {"Authorization": f"Bearer {token}"}
    beat = {"agent_id": "pc-ca-04", "host": "PC-CA-04"}
    largest = client.post("/api/v1/agents/heartbeat", json={**beat, "protected_roots": 2**31 - 1},
                          headers=headers)
    assert largest.status_code == 200
    for odd in (2**31, 1_136_815_477_617, -1, "3", 2.0):
        answer = client.post("/api/v1/agents/heartbeat", json={**beat, "protected_roots": odd},
                             headers=headers)
        assert answer.status_code == 400, odd
        assert answer.get_json()["field"] == "protected_roots"


def test_an_access_mode_that_sees_less_is_trailed_and_alerted(app, client, token, make_user,
                                                              login):
    from service.events.models import Agent
    from service.incidents.models import Alert

    def beat(mode: str):
        return client.post("/api/v1/agents/heartbeat", headers={"Authorization": f"Bearer {token}"},
                           json={"agent_id": "pc-ca-03", "host": "PC-CA-03", "access_mode": mode})

    assert beat("inotify").status_code == 200  # first word: written down, nothing to compare
    assert beat("fanotify-perm").status_code == 200  # sees more: trailed, not alerted
    assert beat("fanotify-perm").status_code == 200  # unchanged: nothing
    assert beat("inotify").status_code == 200  # lost root: trailed and alerted
    assert beat("off").status_code == 200  # turned off: again
    with app.app_context():
        s = new_session()
        changes = [json.loads(e.body)["body"] for e in s.scalars(
            select(AuditEntry).where(AuditEntry.kind == "agent.access_mode_changed")
            .order_by(AuditEntry.seq))]
        alerts = list(s.scalars(select(Alert).where(Alert.rule_id == "agent.access_mode_weaker")
                                .order_by(Alert.id)))
        mode = s.scalar(select(Agent.access_mode).where(Agent.agent_id == "pc-ca-03"))
        s.close()
    assert [(c["before"], c["after"]) for c in changes] == [
        ("inotify", "fanotify-perm"), ("fanotify-perm", "inotify"), ("inotify", "off")]
    assert [a.severity for a in alerts] == ["high", "high"]
    assert "fanotify-perm → inotify" in alerts[0].explanation
    assert mode == "off"
    make_user("quantri", "admin")
    login("quantri")
    page = client.get("/admin/agents").get_data(as_text=True)
    assert "Tắt" in page and "pc-ca-03" in page


def test_a_narrowed_agent_configuration_raises_an_alert(app, client, token):
    from service.incidents.models import Alert

    def beat(config_hash: str, roots: int):
        return client.post("/api/v1/agents/heartbeat", headers={"Authorization": f"Bearer {token}"},
                           json={"agent_id": "pc-vhxh-01", "host": "PC-VHXH-01",
                                 "config_hash": config_hash, "protected_roots": roots})

    first, narrowed, widened = "a" * 64, "b" * 64, "c" * 64
    assert beat(first, 3).status_code == 200
    assert beat(first, 3).status_code == 200  # the same configuration: nothing to say
    assert beat(narrowed, 1).status_code == 200
    assert beat(widened, 4).status_code == 200
    assert beat("khong-phai-ma-bam", 1).status_code == 400
    with app.app_context():
        s = new_session()
        alerts = list(s.scalars(select(Alert).where(Alert.rule_id == "agent.config_changed")
                                .order_by(Alert.id)))
        entries = [json.loads(e.body)["body"] for e in s.scalars(
            select(AuditEntry).where(AuditEntry.kind == "agent.config_changed").order_by(AuditEntry.seq))]
        s.close()
    # a heartbeat without a hash after a baseline (older or tampered build) is said once
    no_hash = {"agent_id": "pc-vhxh-01", "host": "PC-VHXH-01"}
    for _ in range(2):
        assert client.post("/api/v1/agents/heartbeat", json=no_hash,
                           headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with app.app_context():
        s = new_session()
        alerts = list(s.scalars(select(Alert).where(Alert.rule_id == "agent.config_changed")
                                .order_by(Alert.id)))
        s.close()
    assert "không còn báo mã băm" in alerts[-1].explanation and len(alerts) == 3
    assert [a.severity for a in alerts] == ["high", "medium", "high"]
    assert "giảm từ 3 xuống 1" in alerts[0].explanation and "PC-VHXH-01" in alerts[0].explanation
    assert [(e["before"], e["after"], e["protected_roots_before"], e["protected_roots_after"])
            for e in entries] == [(first, narrowed, 3, 1), (narrowed, widened, 1, 4)]


def test_openapi_document_is_generated_from_the_models(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    event = doc["components"]["schemas"]["Event"]
    assert {"id", "occurred_at", "host", "actor", "action"} <= set(event["required"])
    assert "/api/v1/events" in doc["paths"]


def test_agent_id_is_bound_to_its_token_source(client, runner, token):
    other = runner.invoke(["token", "create", "--source", "pc-khac"]).output.strip().splitlines()[-1]
    assert _post(client, token, [_event(agent_id="pc-ca-01", seq=0)]).status_code == 200
    beat = {"agent_id": "pc-ca-01", "host": "PC-CA-01"}
    spoof = client.post("/api/v1/agents/heartbeat", json=beat,
                        headers={"Authorization": f"Bearer {other}"})
    assert spoof.status_code == 403
    assert _post(client, other, [_event(agent_id="pc-ca-01", seq=1)]).status_code == 403


def test_renumbered_agent_raises_an_alert(app, client, token):
    from service.incidents.models import Alert

    assert _post(client, token, [_event(agent_id="pc-1", seq=n) for n in range(5)]).status_code == 200
    # The spool was deleted: numbering starts again from 0.
    assert _post(client, token, [_event(agent_id="pc-1", seq=0)]).status_code == 200
    with app.app_context():
        s = new_session()
        alerts = [a.rule_id for a in s.scalars(select(Alert))]
        s.close()
    assert "agent.renumbered" in alerts
