"""Citizens' identifiers never leave raw: ingest, trail, policy keys, mails, search, CSV, pages.

Each test posts or stores the numbers the way communes write them (issue #15, item 1) and looks
for them wherever the text goes next.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.audit import log
from service.audit.models import AuditEntry
from service.audit.operations import sign_checkpoint
from service.audit.search import SearchFilter, search_query
from service.core.db import new_session, utcnow
from service.events.models import Agent
from service.incidents.models import Alert, Incident
from service.notify.channels import MessageSnapshot, build_email, payload
from service.notify.models import OutboxMessage
from tests.conftest import csrf_token_from

SHA = "0123456789012345678901234567890123456789012345678901234567abcdef"
# Raw forms that must appear nowhere once stored; each holds the number's digits.
RAW = ("001-203-004-567", "001203004567", "001 203 004 567", "001.203.004.567",
       "912 345 678", "912345678", "0987654321", "098 765 4321")


def _leaks(text: str) -> list[str]:
    return [raw for raw in RAW if raw in text]


def _event(**over) -> dict:
    base = {
        "id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "host": "PC-CA-01",
        "actor": "nv 0912.345.678",
        "action": "copy",
        "object": {"path": "/srv/CCCD 001-203-004-567.xlsx", "sha256": SHA,
                   "content_fingerprint": SHA, "record_count": 3},
        "destination": {"path": "/media/usb/001 203 004 567.xlsx", "kind": "removable",
                        "target": "+84 (0) 912 345 678"},
        "purpose": "gọi lại (+84) 912 345 678 về hồ sơ 001.203.004.567",
        "agent_id": "may-0987654321",
        "seq": 1,
        "process": {"name": "cp", "path": "/home/0912345678/bin/cp"},
        "pii": {"cccd": 3},
        "unit": "cong_an",
    }
    base.update(over)
    return base


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "may-tram"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _post(client, token, events) -> dict:
    answer = client.post("/api/v1/events", data=json.dumps(events), content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.get_json()


def _entries(app, kind: str | None = None) -> list[AuditEntry]:
    s = new_session(app)
    try:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        if kind:
            query = query.where(AuditEntry.kind == kind)
        rows = s.scalars(query).all()
        s.expunge_all()
        return rows
    finally:
        s.close()


def test_ingest_masks_text_fields_before_they_are_hashed(app, client, token, runner):
    assert _post(client, token, [_event()]) == {"stored": 1, "duplicates": 0}
    [entry] = _entries(app, "event")
    assert _leaks(entry.body) == []
    body = json.loads(entry.body)["body"]
    assert body["object"]["path"] == "/srv/CCCD [cccd].xlsx"
    assert body["destination"]["path"] == "/media/usb/[cccd].xlsx"
    assert body["destination"]["target"] == "[phone]"
    assert body["actor"] == "nv [phone]"
    assert body["purpose"] == "gọi lại [phone] về hồ sơ [cccd]"
    assert body["agent_id"] == "may-[phone]"
    assert body["process"]["path"] == "/home/[phone]/bin/cp"
    # Hashes of the content are evidence, not text: untouched.
    assert body["object"]["sha256"] == SHA and body["object"]["content_fingerprint"] == SHA
    # The search columns are copies of the masked body.
    assert (entry.actor, entry.path) == ("nv [phone]", "/srv/CCCD [cccd].xlsx")
    # The stored, masked body is what was hashed: the trail verifies (against a checkpoint
    # signed now, as the running service signs one every minute).
    assert runner.invoke(["checkpoint"]).exit_code == 0
    result = runner.invoke(["verify"])
    assert result.exit_code == 0, result.output
    s = new_session(app)
    try:
        assert [a.agent_id for a in s.scalars(select(Agent))] == ["may-[phone]"]
        # Searching by the number, however written, finds the masked entry.
        flt = SearchFilter.from_strings("Asia/Ho_Chi_Minh", path_contains="CCCD 001 203 004 567",
                                        actor="nv 0912345678")
        assert flt.describe() == {"path_contains": "CCCD [cccd]", "actor": "nv [phone]"}
        assert [e.seq for e in s.scalars(search_query(flt))] == [entry.seq]
    finally:
        s.close()


def test_a_retry_of_the_same_raw_event_is_still_a_duplicate(app, client, token):
    event = _event()
    assert _post(client, token, [event]) == {"stored": 1, "duplicates": 0}
    assert _post(client, token, [event, event]) == {"stored": 0, "duplicates": 2}


def test_heartbeat_agent_id_is_masked_like_the_events(app, client, token):
    _post(client, token, [_event()])
    answer = client.post("/api/v1/agents/heartbeat", json={
        "agent_id": "may-0987654321", "host": "PC-CA-01", "sent_at": datetime.now(UTC).isoformat(),
        "last_seq": 1, "spool_depth": 0, "version": "1.0"},
        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    s = new_session(app)
    try:
        assert [a.agent_id for a in s.scalars(select(Agent))] == ["may-[phone]"]
    finally:
        s.close()


def test_alert_incident_and_mails_from_the_default_policy_are_masked(app, client, token,
                                                                      make_user):
    make_user("ca.1", "police", unit="cong_an", email="ca1@nhanly.example")
    make_user("ct.1", "leader", unit="lanh_dao", email="ct1@nhanly.example")
    event = _event(object={"path": "C:\\DuLieu\\DanCu\\CCCD 001-203-004-567.xlsx",
                           "record_count": 40, "sha256": SHA})
    _post(client, token, [event])
    s = new_session(app)
    try:
        alerts = s.scalars(select(Alert)).all()
        incidents = s.scalars(select(Incident)).all()
        messages = s.scalars(select(OutboxMessage)).all()
        assert alerts and incidents and messages, "the default policy makes an incident of it"
        for alert in alerts:
            assert _leaks(" ".join(filter(None, (alert.group_key, alert.actor, alert.host,
                                                 alert.explanation)))) == []
        assert "[cccd]" in alerts[0].group_key and "[phone]" in alerts[0].group_key
        for incident in incidents:
            assert _leaks(" ".join(filter(None, (incident.group_key, incident.title,
                                                 incident.summary)))) == []
        for message in messages:
            assert _leaks(message.subject + message.body) == []
    finally:
        s.close()
    for entry in _entries(app):
        assert _leaks(entry.body) == [], entry.kind


def _login_as(client, login, username):
    answer = login(username, c=client)
    assert answer.status_code == 302


def test_reported_text_stays_as_written_but_leaves_masked(app, client, login, make_user):
    make_user("vp.1", "official", unit="van_phong")
    make_user("ca.1", "police", unit="cong_an", email="ca1@nhanly.example")
    make_user("ct.1", "leader", unit="lanh_dao", email="ct1@nhanly.example")
    _login_as(client, login, "vp.1")
    form = {"csrf_token": csrf_token_from(client, "/incidents/report"),
            "kind": "sao_chep_chia_se",
            "what_happened": "Ảnh CCCD 001.203.004.567 bị gửi Zalo; người gửi: +84 (0) 912 345 678",
            "noticed_at": (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "personal_data": "yes", "data_classes": ["dan_cu"],
            "location": "nhà ông A, SĐT 0912\u200b345\u200b678", "affected_people": "1",
            "attachment": (io.BytesIO(b"anh"), "CCCD 001-203-004-567.png", "image/png")}
    answer = client.post("/incidents/report", data=form, content_type="multipart/form-data")
    assert answer.status_code == 302, answer.text
    s = new_session(app)
    try:
        incident = s.scalars(select(Incident)).one()
        # The incident's own text stays as the official wrote it (police and leadership read it).
        assert "001.203.004.567" in incident.summary and "0912\u200b345\u200b678" in incident.title
        messages = s.scalars(select(OutboxMessage)).all()
        assert messages
        for message in messages:
            assert _leaks(message.subject + message.body) == [], message.subject
            assert "912\u200b345" not in message.subject + message.body
            snapshot = MessageSnapshot(
                id=message.id, kind=message.kind, channel=message.channel,
                incident_id=message.incident_id, recipient_username=message.recipient_username,
                address=message.address or "x@nhanly.example", subject=message.subject,
                body=message.body, link=message.link, message_id="<m@nhanly.example>",
                created_at=message.created_at, attempts=0)
            mail = build_email(snapshot, app.config["SETTINGS"])
            assert _leaks(mail.as_string() + json.dumps(payload(snapshot, "0"),
                                                        ensure_ascii=False)) == []
        assert any("[phone]" in m.subject for m in messages)
        assert any("[cccd]" in m.body for m in messages)
    finally:
        s.close()
    for entry in _entries(app):
        assert _leaks(entry.body) == [], entry.kind


def _old_raw_entries(app) -> None:
    """Store entries the way the trail held them before ingest masked (appended directly)."""
    s = new_session(app)
    try:
        now = utcnow()
        for n in range(2):
            log.record(s, "event", {
                "id": str(uuid.uuid4()), "occurred_at": now.isoformat(), "host": "PC-CA-02",
                "actor": "0987654321", "action": "open", "agent_id": "pc-0987654321",
                "object": {"path": f"/srv/CCCD 001-203-004-567 ({n}).xlsx"}, "source": "cu",
            }, actor="0987654321", host="PC-CA-02", action="open",
                path=f"/srv/CCCD 001-203-004-567 ({n}).xlsx", occurred_at=now)
        s.add(Agent(agent_id="pc-0987654321", source="cu", missing_events=0, host="PC-CA-02",
                    last_contact_at=now))
        sign_checkpoint(s, app.config["SETTINGS"], force=True)
        s.commit()
    finally:
        s.close()


def test_trail_csv_search_and_pages_mask_entries_stored_raw(app, client, login, make_user):
    _old_raw_entries(app)
    make_user("ca.1", "police", unit="cong_an")
    make_user("qt.1", "admin")
    _login_as(client, login, "ca.1")
    token = csrf_token_from(client, "/audit/")
    csv_answer = client.post("/audit/export.csv", data={"csrf_token": token})
    assert csv_answer.status_code == 200
    assert _leaks(csv_answer.text) == [] and "/srv/CCCD [cccd] (0).xlsx" in csv_answer.text
    # Searching by the number finds what ingest masked, and the search written to the trail
    # (audit.viewed) does not hold the number either.
    found = client.get("/audit/", query_string={"actor": "098-765-4321"})
    assert found.status_code == 200 and _leaks(found.text) == []
    _post_masked = _entries(app, "audit.viewed")
    assert _post_masked and all(_leaks(e.body) == [] for e in _post_masked)
    page = client.get("/", follow_redirects=True)
    assert page.status_code == 200 and _leaks(page.text) == []
    client.get("/logout")
    _login_as(client, login, "qt.1")
    agents = client.get("/admin/agents")
    assert agents.status_code == 200
    assert _leaks(agents.text) == [] and "pc-[phone]" in agents.text


def test_monthly_report_masks_agent_ids_stored_raw(app, client, login, make_user):
    from service.reports import monthly

    _old_raw_entries(app)
    make_user("ct.1", "leader", unit="lanh_dao")
    _login_as(client, login, "ct.1")
    month = monthly.month_of(utcnow(), "Asia/Ho_Chi_Minh")
    answer = client.get(f"/reports/{month}/report.csv")
    assert answer.status_code == 200, answer.text
    assert "agent_events,pc-[phone],,,2" in answer.text.replace("\r\n", "\n")
    assert _leaks(answer.text) == []
    page = client.get(f"/reports/{month}")
    assert page.status_code == 200 and _leaks(page.text) == []
    s = new_session(app)
    try:
        report = monthly.build_monthly_report(s, app.config["SETTINGS"], month)
        html = monthly.render_monthly_html(report, app.config["SETTINGS"])
        s.rollback()
    finally:
        s.close()
    assert _leaks(html) == [] and "pc-[phone]" in html


def test_masked_bodies_replay_and_warm_up_like_any_event(app, client, token, runner):
    from service.events.replay import replay

    _old_raw_entries(app)  # two entries stored raw before masking: read as they always were
    _post(client, token, [_event(), _event(seq=2)])
    processor = app.extensions["canhgac.processor"]
    s = new_session(app)
    try:
        report = replay(s, processor.state.policy, utcnow() - timedelta(days=1))
        assert (report.events, report.skipped) == (4, 0)
        # warm_up reads back only actions a windowed rule counts (not copies and opens); what it
        # reads goes through stored_event, which all four bodies pass, raw or masked.
        assert processor.warm_up(s) == 0
        from service.events.processing import stored_event

        bodies = s.scalars(select(AuditEntry.body).where(AuditEntry.kind == "event")).all()
        assert len(bodies) == 4 and all(stored_event(body) is not None for body in bodies)
    finally:
        s.close()
    assert runner.invoke(["checkpoint"]).exit_code == 0
    result = runner.invoke(["verify"])
    assert result.exit_code == 0, result.output


def test_an_over_long_masked_field_is_cut_to_the_schema_limit(app, client, token):
    # NFKC can lengthen text ("㎞" is "km"): a masked field must still fit its column.
    actor = "\u3392" * 240 + " 0912345678"
    _post(client, token, [_event(actor=actor)])
    [entry] = _entries(app, "event")
    body = json.loads(entry.body)["body"]
    assert len(body["actor"]) <= 255 and len(entry.actor) <= 255
    assert not re.search(r"912345678", entry.body)
