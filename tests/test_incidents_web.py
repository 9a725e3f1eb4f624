"""Incident pages over HTTP: the report form with CSRF, who sees what, buttons, downloads."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEntry
from service.auth.models import User
from service.auth.passwords import hash_password
from service.incidents import workflow as W
from service.incidents.models import Alert, AlertState, Incident, IncidentEvidence, IncidentState
from tests.conftest import PASSWORD, csrf_token_from

_HASH: dict[str, str] = {}


@pytest.fixture
def people(app):
    """Accounts that can log in; one password hash shared (argon2 is slow on purpose)."""
    from service.core.db import new_session

    if "hash" not in _HASH:
        _HASH["hash"] = hash_password(PASSWORD)
    specs = [("can-bo", "official", "van_phong"), ("can-bo-khac", "official", "kinh_te"),
             ("cong-an", "police", "cong_an"), ("chu-tich", "leader", "lanh_dao"),
             ("quan-tri", "admin", None)]
    with app.app_context():
        s = new_session()
        for username, role, unit in specs:
            s.add(User(username=username, email=f"{username}@nhanly.example", roles=[role],
                       unit=unit, password_hash=_HASH["hash"], full_name=""))
        s.commit()
        s.close()
    return {role: username for username, role, _ in specs if username != "can-bo-khac"} | {
        "official2": "can-bo-khac"}


def client_for(app, login, username):
    c = app.test_client()
    assert login(username, c=c).status_code == 302
    return c


def db(app):
    from service.core.db import new_session

    return new_session(app)


def report_form_data(client, **overrides):
    token = csrf_token_from(client, "/incidents/report")
    data = {"csrf_token": token, "kind": "sao_chep_chia_se",
            "what_happened": "Thấy danh sách hộ nghèo bị gửi vào nhóm Zalo thôn Bản Trại",
            "noticed_at": "2026-03-02T08:15", "personal_data": "yes",
            "data_classes": ["an_sinh"], "location": "Thôn Bản Trại", "affected_people": "40",
            # March is more than 30 days back: the reporter confirms that the date is meant.
            "confirm_old_detection": "y"}
    data.update(overrides)
    return data


def test_official_files_a_report_through_the_form(app, people, login):
    c = client_for(app, login, people["official"])
    page = c.get("/incidents/report")
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.text and 'type="datetime-local"' in page.text
    assert "Chuyện gì đã xảy ra?" in page.text
    data = report_form_data(c)
    data["attachment"] = (io.BytesIO(b"anh chup man hinh Zalo"), "zalo.png", "image/png")
    response = c.post("/incidents/report", data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    incident_id = int(re.search(r"/incidents/(\d+)$", response.headers["Location"]).group(1))
    s = db(app)
    try:
        incident = s.get(Incident, incident_id)
        assert incident.origin == "report" and incident.state == IncidentState.REPORTED
        assert incident.title == ("Sao chép, chia sẻ dữ liệu ra ngoài phạm vi công vụ — Thôn Bản Trại"
                                  " — Người có công, bảo trợ xã hội, hộ nghèo")
        # 08:15 in Asia/Ho_Chi_Minh is 01:15 UTC; the 72 hours start there.
        assert incident.detected_at == datetime(2026, 3, 2, 1, 15, tzinfo=UTC)
        assert incident.notice_due_at == incident.detected_at + timedelta(hours=72)
        assert incident.data_classes == ["an_sinh"] and incident.involves_personal_data
        assert incident.form_data["affected_people"] == 40
        assert incident.form_data["location"] == "Thôn Bản Trại"
        [evidence] = s.scalars(select(IncidentEvidence)).all()
        assert evidence.incident_id == incident_id and evidence.filename == "zalo.png"
        kinds = [e.kind for e in s.scalars(select(AuditEntry).where(
            AuditEntry.incident_id == incident_id).order_by(AuditEntry.seq))]
        assert kinds[0] == "incident.reported" and "incident.evidence_attached" in kinds
    finally:
        s.close()
    detail = c.get(f"/incidents/{incident_id}")
    assert detail.status_code == 200 and "Thôn Bản Trại" in detail.text
    mine = c.get("/incidents/mine")
    assert f"/incidents/{incident_id}" in mine.text


def test_report_without_csrf_token_is_refused(app, people, login):
    c = client_for(app, login, people["official"])
    data = report_form_data(c)
    del data["csrf_token"]
    assert c.post("/incidents/report", data=data).status_code == 400
    s = db(app)
    assert s.scalar(select(func.count()).select_from(Incident)) == 0
    s.close()


def test_report_requires_what_happened_and_refuses_future_times(app, people, login):
    c = client_for(app, login, people["official"])
    response = c.post("/incidents/report", data=report_form_data(c, what_happened="  "))
    assert response.status_code == 400 and "field-error" in response.text
    future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = c.post("/incidents/report", data=report_form_data(c, noticed_at=future))
    assert response.status_code == 400 and "tương lai" in response.text
    response = c.post("/incidents/report", data=report_form_data(c, kind="khong-co"))
    assert response.status_code == 400
    s = db(app)
    assert s.scalar(select(func.count()).select_from(Incident)) == 0
    s.close()


def test_minimal_report_uses_the_defaults(app, people, login):
    # The quickest path on a phone: only "what happened" typed, defaults for the rest.
    c = client_for(app, login, people["official"])
    page = c.get("/incidents/report")
    now_value = re.search(r'name="noticed_at"[^>]*value="([^"]+)"', page.text).group(1)
    token = csrf_token_from(c, "/incidents/report")
    response = c.post("/incidents/report", data={
        "csrf_token": token, "kind": "lo_lot_du_lieu", "personal_data": "unknown",
        "noticed_at": now_value, "what_happened": "Máy tính một cửa bị mở khi không có người"})
    assert response.status_code == 302
    s = db(app)
    incident = s.scalars(select(Incident)).one()
    assert incident.involves_personal_data  # "not sure" starts the 72-hour clock
    assert abs(incident.detected_at - datetime.now(UTC)) < timedelta(minutes=2)
    s.close()


def test_officials_see_only_their_own_reports(app, people, login):
    own = client_for(app, login, people["official"])
    response = own.post("/incidents/report", data=report_form_data(own))
    incident_id = int(response.headers["Location"].rsplit("/", 1)[1])
    other = client_for(app, login, people["official2"])
    assert other.get(f"/incidents/{incident_id}").status_code == 404
    assert other.get("/incidents/").status_code == 403
    assert f"/incidents/{incident_id}" not in other.get("/incidents/mine").text
    token = csrf_token_from(other, "/incidents/report")
    assert other.post(f"/incidents/{incident_id}/comments",
                      data={"csrf_token": token, "body": "xem trộm"}).status_code == 404
    admin = client_for(app, login, people["admin"])
    assert admin.get(f"/incidents/{incident_id}").status_code == 404
    # The reporter may comment on and add evidence to their own report.
    token = csrf_token_from(own, f"/incidents/{incident_id}")
    assert own.post(f"/incidents/{incident_id}/comments",
                    data={"csrf_token": token, "body": "Tôi đã nhắc gỡ tin"}).status_code == 302
    page = own.get(f"/incidents/{incident_id}")
    assert "Tôi đã nhắc gỡ tin" in page.text
    assert "/transition/" not in page.text  # no workflow buttons for officials


def test_leader_acknowledges_in_one_click_from_the_mail_link(app, people, login):
    reporter = client_for(app, login, people["official"])
    incident_id = int(reporter.post("/incidents/report", data=report_form_data(reporter))
                      .headers["Location"].rsplit("/", 1)[1])
    anonymous = app.test_client()
    response = anonymous.get(f"/incidents/{incident_id}/acknowledge")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    police = client_for(app, login, people["police"])
    page = police.get(f"/incidents/{incident_id}/acknowledge")
    assert page.status_code == 200 and "chờ lãnh đạo" in page.text
    token = csrf_token_from(police, f"/incidents/{incident_id}")
    assert police.post(f"/incidents/{incident_id}/acknowledge",
                       data={"csrf_token": token}).status_code == 403
    leader = client_for(app, login, people["leader"])
    page = leader.get(f"/incidents/{incident_id}/acknowledge")
    assert page.status_code == 200
    assert page.text.count('type="submit" class="primary big"') == 1
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    assert leader.post(f"/incidents/{incident_id}/acknowledge").status_code == 400  # no CSRF
    response = leader.post(f"/incidents/{incident_id}/acknowledge", data={"csrf_token": token})
    assert response.status_code == 302
    s = db(app)
    incident = s.get(Incident, incident_id)
    assert incident.state == IncidentState.ACKNOWLEDGED
    assert s.get(User, incident.acknowledged_by_id).username == people["leader"]
    s.close()
    assert "đã được xác nhận" in leader.get(f"/incidents/{incident_id}/acknowledge").text


def test_police_work_the_incident_through_the_buttons(app, people, login):
    reporter = client_for(app, login, people["official"])
    incident_id = int(reporter.post("/incidents/report", data=report_form_data(reporter))
                      .headers["Location"].rsplit("/", 1)[1])
    leader = client_for(app, login, people["leader"])
    police = client_for(app, login, people["police"])
    base = f"/incidents/{incident_id}"

    def post(c, action, **fields):
        token = csrf_token_from(c, base)
        return c.post(f"{base}/transition/{action}", data={"csrf_token": token, **fields})

    assert post(police, "acknowledge").status_code == 403  # leaders acknowledge
    assert post(leader, "acknowledge").status_code == 302
    page = police.get(base)
    assert f"{base}/transition/start_investigation" in page.text
    assert f"{base}/transition/contain" not in page.text
    assert post(police, "contain", actions="x").status_code == 409  # wrong state
    assert post(police, "start_investigation").status_code == 302
    response = post(police, "contain", actions="")
    assert response.status_code == 400
    assert post(police, "contain", actions="Đã yêu cầu quản trị nhóm Zalo gỡ tin").status_code == 302
    assert post(police, "resolve", cause="Chia sẻ nhầm nhóm", measures="").status_code == 400
    assert post(police, "resolve", cause="Chia sẻ nhầm nhóm",
                measures="Nhắc nhở, tập huấn").status_code == 302
    assert post(leader, "close").status_code == 409  # personal data: notice or a reason first
    token = csrf_token_from(leader, base)
    response = leader.post(f"{base}/notice-sent", data={
        "csrf_token": token, "sent_at": "2026-03-02T20:00", "channel": "cong_thong_tin",
        "reference": "CTT-2026-001"})
    assert response.status_code == 302
    assert post(leader, "close", note="Hoàn tất").status_code == 302
    assert post(police, "dismiss", reason="muộn").status_code == 409
    s = db(app)
    incident = s.get(Incident, incident_id)
    assert incident.state == IncidentState.CLOSED and incident.notice_reference == "CTT-2026-001"
    kinds = [e.kind for e in s.scalars(select(AuditEntry).where(
        AuditEntry.incident_id == incident_id, AuditEntry.kind.like("incident.%"))
        .order_by(AuditEntry.seq))]
    s.close()
    assert kinds == ["incident.reported", "incident.acknowledged", "incident.investigating",
                     "incident.contained", "incident.resolved", "incident.notice_sent",
                     "incident.closed"]
    page = leader.get(base)
    for text in ("Sự cố được báo cáo", "Lãnh đạo xác nhận đã nhận", "Đã ngăn chặn",
                 "Nhắc nhở, tập huấn", "CTT-2026-001"):
        assert text in page.text
    # Looking at the timeline is itself in the trail.
    s = db(app)
    looks = s.scalars(select(AuditEntry).where(AuditEntry.kind == "audit.viewed")).all()
    assert any(json.loads(e.body)["body"].get("incident") == incident_id for e in looks)
    s.close()


def test_incident_list_puts_unacknowledged_first_with_the_deadline(app, people, login):
    from service.core.db import new_session

    with app.app_context():
        s = new_session()
        official = s.scalar(select(User).where(User.username == people["official"]))
        leader = s.scalar(select(User).where(User.username == people["leader"]))
        settings = app.config["SETTINGS"]
        old = W.report_incident(s, settings, origin="report", title="Sự cố cũ đã xác nhận",
                                reporter=official)
        W.acknowledge_incident(s, old, leader)
        W.report_incident(s, settings, origin="report", title="Sự cố mới chưa xác nhận",
                          reporter=official)
        late = W.report_incident(s, settings, origin="report", title="Sự cố quá hạn",
                                 reporter=official,
                                 detected_at=datetime.now(UTC) - timedelta(hours=80))
        W.acknowledge_incident(s, late, leader)
        s.commit()
        s.close()
    page = client_for(app, login, people["police"]).get("/incidents/")
    assert page.status_code == 200
    assert page.text.index("Sự cố mới chưa xác nhận") < page.text.index("Sự cố quá hạn") \
        < page.text.index("Sự cố cũ đã xác nhận")
    assert "Còn 71 giờ" in page.text or "Còn 72 giờ" in page.text
    assert "Quá hạn 8 giờ" in page.text or "Quá hạn 7 giờ" in page.text


def test_evidence_upload_and_audited_download(app, people, login):
    police = client_for(app, login, people["police"])
    reporter = client_for(app, login, people["official"])
    incident_id = int(reporter.post("/incidents/report", data=report_form_data(reporter))
                      .headers["Location"].rsplit("/", 1)[1])
    content = b"%PDF-1.4 bien ban lam viec voi can bo"
    token = csrf_token_from(police, f"/incidents/{incident_id}")
    response = police.post(f"/incidents/{incident_id}/evidence", content_type="multipart/form-data",
                           data={"csrf_token": token,
                                 "file": (io.BytesIO(content), "bien-ban.pdf", "application/pdf")})
    assert response.status_code == 302
    s = db(app)
    evidence = s.scalars(select(IncidentEvidence)).one()
    s.close()
    assert reporter.get(f"/incidents/evidence/{evidence.id}").status_code == 403
    download = police.get(f"/incidents/evidence/{evidence.id}")
    assert download.status_code == 200 and download.data == content
    assert "attachment" in download.headers["Content-Disposition"]
    s = db(app)
    kinds = [e.kind for e in s.scalars(select(AuditEntry).where(
        AuditEntry.incident_id == incident_id).order_by(AuditEntry.seq))]
    s.close()
    assert kinds.count("incident.evidence_downloaded") == 1


def test_breach_notice_pdf_download_is_audited(app, people, login):
    reporter = client_for(app, login, people["official"])
    incident_id = int(reporter.post("/incidents/report", data=report_form_data(reporter))
                      .headers["Location"].rsplit("/", 1)[1])
    assert reporter.get(f"/incidents/{incident_id}/documents/mau_08.pdf").status_code == 403
    leader = client_for(app, login, people["leader"])
    response = leader.get(f"/incidents/{incident_id}/documents/mau_08.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert leader.get(f"/incidents/{incident_id}/documents/khac.pdf").status_code == 404
    s = db(app)
    [entry] = s.scalars(select(AuditEntry).where(AuditEntry.kind == "incident.document_downloaded"))
    body = json.loads(entry.body)["body"]
    s.close()
    assert body["document"] == "mau_08" and body["size"] == len(response.data)


def test_police_alert_queue_opens_and_dismisses(app, people, login):
    from service.core.db import new_session

    with app.app_context():
        s = new_session()
        for n in range(2):
            s.add(Alert(rule_id="usb_copy", severity="high", response="alert",
                        explanation=f"Sao chép tệp dân cư ra USB lần {n}", actor="can-bo",
                        host="MC-01", data_class="dan_cu", group_key=f"usb_copy|can-bo|{n}"))
        s.commit()
        alert_ids = [a.id for a in s.scalars(select(Alert).order_by(Alert.id))]
        s.close()
    assert client_for(app, login, people["leader"]).get("/incidents/alerts").status_code == 403
    police = client_for(app, login, people["police"])
    page = police.get("/incidents/alerts")
    assert "Sao chép tệp dân cư ra USB lần 0" in page.text
    token = csrf_token_from(police, "/incidents/alerts")
    response = police.post(f"/incidents/alerts/{alert_ids[0]}/open", data={"csrf_token": token})
    assert response.status_code == 302 and "/incidents/" in response.headers["Location"]
    response = police.post(f"/incidents/alerts/{alert_ids[1]}/dismiss",
                           data={"csrf_token": token, "reason": ""})
    s = db(app)
    assert s.get(Alert, alert_ids[1]).state == AlertState.OPEN  # a reason is required
    s.close()
    police.post(f"/incidents/alerts/{alert_ids[1]}/dismiss",
                data={"csrf_token": token, "reason": "Sao lưu theo kế hoạch của Công an xã"})
    s = db(app)
    first, second = s.get(Alert, alert_ids[0]), s.get(Alert, alert_ids[1])
    assert first.state == AlertState.INCIDENT and first.incident_id is not None
    assert second.state == AlertState.DISMISSED
    s.close()
    assert "Không có cảnh báo nào" in police.get("/incidents/alerts").text


def test_printable_blank_form(app, people, login):
    page = client_for(app, login, people["official"]).get("/incidents/report/print")
    assert page.status_code == 200
    assert "BÁO CÁO SỰ CỐ, NGHI NGỜ LỘ LỌT DỮ LIỆU" in page.text
    assert "incidents.css" in page.text and "<script>" not in page.text
    assert "Người báo cáo" in page.text


def test_no_personal_data_in_incident_urls(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("incidents."):
            assert set(rule.arguments) <= {"incident_id", "alert_id", "evidence_id", "action",
                                           "document"}
