"""What commune users read: names instead of codes, times of the access, answers in Vietnamese.

Issue #14, items 1, 2, 4 and 5, through the real pages (Flask test client, real database,
real workflow and trail).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.audit import log
from service.core.db import new_session, utcnow
from service.incidents.jobs import send_deadline_reminders
from service.incidents.models import Alert, Incident
from service.notify.models import OutboxMessage
from tests.conftest import csrf_token_from

# Codes of the policy, workflow and notification vocabulary that must never reach a page.
CODES = re.compile(r"\b(high|critical|medium|low|truy_cap_ngoai_gio|an_sinh|vh_xh|dan_cu|"
                   r"notify\.attempt|notify\.queued|incident\.[a-z_]+|reported|acknowledged)\b")


def _text(page) -> str:
    """Return the visible text of a page (tags, attributes, scripts and styles removed)."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page.text, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def _switch(client, lang: str, back_to: str) -> None:
    token = csrf_token_from(client, back_to)
    assert client.post(f"/lang/{lang}", data={"csrf_token": token, "next": back_to}).status_code == 302


def _report_data(client, **overrides) -> dict:
    token = csrf_token_from(client, "/incidents/report")
    data = {"csrf_token": token, "kind": "lo_lot_du_lieu", "what_happened": "Danh sách bị gửi ra ngoài",
            "noticed_at": (datetime.now(UTC) + timedelta(hours=7) - timedelta(hours=1))
            .strftime("%Y-%m-%dT%H:%M"),
            "personal_data": "unknown", "data_classes": ["an_sinh"]}
    data.update(overrides)
    return data


@pytest.fixture
def official(make_user, login, client):
    make_user("can-bo", "official", unit="vh_xh")
    make_user("chu-tich", "leader", unit="lanh_dao")
    make_user("cong-an", "police", unit="cong_an")
    assert login("can-bo").status_code == 302
    return client


def test_an_empty_or_wrong_report_form_answers_in_vietnamese(official):
    empty = official.post("/incidents/report", data={"csrf_token": csrf_token_from(official, "/incidents/report")})
    assert empty.status_code == 400
    assert "Cần điền mục này." in empty.text and "This field is required" not in empty.text
    wrong = official.post("/incidents/report", data=_report_data(official, noticed_at="abc"))
    assert wrong.status_code == 400
    # A wrong date says it is wrong, not that it is missing.
    assert "Ngày giờ không hợp lệ" in wrong.text
    too_long = official.post("/incidents/report", data=_report_data(official, what_happened="x" * 5001))
    assert "Không được dài quá 5000 ký tự." in too_long.text
    _switch(official, "en", "/incidents/report")
    english = official.post("/incidents/report", data={"csrf_token": csrf_token_from(official, "/incidents/report")})
    assert "This field is required." in english.text


def test_a_detection_time_far_back_needs_a_confirmation(official, app):
    old = _report_data(official, noticed_at="1999-01-01T08:00")
    refused = official.post("/incidents/report", data=old)
    assert refused.status_code == 400
    assert "cách đây hơn 30 ngày" in refused.text and 'name="confirm_old_detection"' in refused.text
    s = new_session(app)
    try:
        assert s.scalar(select(Incident.id)) is None
    finally:
        s.close()
    accepted = official.post("/incidents/report", data={**old, "confirm_old_detection": "y"})
    assert accepted.status_code == 302


def test_a_deadline_already_past_when_filed_shows_overdue_once(official, app):
    settings = app.config["SETTINGS"]
    four_days_ago = (datetime.now(UTC) + timedelta(hours=7) - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M")
    response = official.post("/incidents/report", data=_report_data(official, noticed_at=four_days_ago,
                                                                   location="Thôn Bản Trại"))
    assert response.status_code == 302
    incident_id = int(response.headers["Location"].rsplit("/", 1)[1])
    s = new_session(app)
    try:
        incident = s.get(Incident, incident_id)
        # Place and data tell this report from the others in lists and mail subjects.
        assert incident.title == ("Lộ, lọt dữ liệu — Thôn Bản Trại — "
                                  "Người có công, bảo trợ xã hội, hộ nghèo")
        # The "created" mail says it is overdue ...
        mails = s.scalars(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)).all()
        assert mails and all("Đã quá hạn này" in m.body for m in mails)
        # ... and no burst of reminders for marks that were past when it was filed.
        assert send_deadline_reminders(s, settings, now=utcnow()) == []
        s.commit()
    finally:
        s.close()
    page = official.get(f"/incidents/{incident_id}")
    assert "Chưa rõ" in _text(page)  # the reporter's "not sure" stays "not sure"
    assert "Bước tiếp theo" in page.text


def test_staff_pages_show_names_not_codes(official, app, login, client):
    response = official.post("/incidents/report", data=_report_data(official))
    incident_id = int(response.headers["Location"].rsplit("/", 1)[1])
    s = new_session(app)
    try:
        entry = log.append_entries(s, [log.PendingEntry(
            "event", {"action": "open", "actor": "Nguyễn Văn An"},
            {"actor": "Nguyễn Văn An", "action": "open", "data_class": "an_sinh",
             "host": "PC-VH_XH-01", "occurred_at": datetime.now(UTC) - timedelta(hours=30)})])[0]
        s.add(Alert(rule_id="truy_cap_ngoai_gio", severity="high", response="alert",
                    explanation="Truy cập ngoài giờ", entry_seq=entry.seq, actor="Nguyễn Văn An",
                    host="PC-VH_XH-01", data_class="an_sinh", group_key="g-1", created_at=utcnow()))
        s.commit()
    finally:
        s.close()
    for who, pages in (("chu-tich", ["/dashboard", f"/incidents/{incident_id}", "/incidents/"]),
                       ("cong-an", ["/dashboard", f"/incidents/{incident_id}", "/incidents/",
                                    "/incidents/alerts"])):
        c = app.test_client()
        assert login(who, c=c).status_code == 302
        for path in pages:
            page = c.get(path)
            assert page.status_code == 200, path
            text = _text(page)
            assert not CODES.search(text), (who, path, CODES.search(text).group(0))
        if who == "chu-tich":
            detail = _text(c.get(f"/incidents/{incident_id}"))
            assert "Bước tiếp theo" in detail and "xác nhận đã nhận sự cố" in detail
            # The two queued mails fold into one line of the timeline.
            assert "Báo có sự cố mới: đang chờ gửi cho" in detail
            assert detail.count("Báo có sự cố mới:") == 1
    # "Today" counts by the access: the alert's access happened yesterday or before.
    police = app.test_client()
    login("cong-an", c=police)
    board = _text(police.get("/dashboard"))
    assert re.search(r"Cảnh báo hôm nay\s+0\b", board)
    queue = _text(police.get("/incidents/alerts"))
    assert "Truy cập lúc" in queue and "ghi nhận lúc" in queue


def test_trail_list_shows_the_time_of_the_access_and_filters_loosely(app, make_user, login, client):
    make_user("cong-an", "police", unit="cong_an")
    happened = datetime(2026, 11, 3, 15, 32, 47, tzinfo=UTC)  # 22:32:47 in the commune
    with app.app_context():
        s = new_session(app)
        log.append_entries(s, [
            log.PendingEntry("event", {"action": "read", "i": i},
                             {"actor": actor, "action": "read", "data_class": "an_sinh",
                              "host": "PC-01", "occurred_at": happened,
                              "path": f"C:\\DuLieu\\{folder}\\danh_sach_{i}.xlsx"})
            for i, (actor, folder) in enumerate([("Nguyễn Văn An", "Dân cư"), ("NGUYEN THI BINH", "DAN CU"),
                                                 ("Trần Văn Cường", "Hộ tịch")])])
        s.commit()
        s.close()
    assert login("cong-an").status_code == 302
    page = client.get("/audit/")
    text = _text(page)
    assert "03/11/2026 22:32:47" in text and "ghi nhận lúc" in text
    assert "Người có công, bảo trợ xã hội, hộ nghèo" in text and "Truy cập tệp" in text
    assert not re.search(r"\ban_sinh\b", text)
    # The data-class filter is a choice with Vietnamese names.
    assert '<option value="an_sinh"' in page.text
    # "nguyen" finds both Nguyễn and NGUYEN, not Trần.
    found = _text(client.get("/audit/?actor=nguyen"))
    assert "Tìm thấy 2 mục." in found
    # Paths too: "dan cu" finds "Dân cư" and "DAN CU", not "Hộ tịch"; "%" is a character.
    assert "Tìm thấy 2 mục." in _text(client.get("/audit/?path_contains=dan cu"))
    assert "Tìm thấy 1 mục." in _text(client.get("/audit/?path_contains=Hộ TỊCH"))
    assert "Tìm thấy 0 mục." in _text(client.get("/audit/?path_contains=d%25n"))
    bad = client.get("/audit/?since=abc")
    assert "không phải ngày hợp lệ" in _text(bad)


def test_the_folded_timeline_says_who_got_the_mail(official, app, login):
    response = official.post("/incidents/report", data=_report_data(official))
    incident_id = int(response.headers["Location"].rsplit("/", 1)[1])
    s = new_session(app)
    try:
        messages = s.scalars(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)).all()
        # Record delivery the way the dispatcher does: one notify.attempt entry per message.
        for message in messages:
            log.record(s, "notify.attempt", {
                "message": message.id, "channel": message.channel,
                "recipient": message.recipient_username, "kind": "created", "attempt": 1,
                "outcome": "delivered", "error": None, "failing": False},
                incident_id=incident_id)
        s.commit()
        count = len(messages)
    finally:
        s.close()
    police = app.test_client()
    login("cong-an", c=police)
    detail = _text(police.get(f"/incidents/{incident_id}"))
    assert re.search(rf"Báo có sự cố mới: đã gửi cho {count} người lúc \d\d/\d\d/\d{{4}}", detail)
    assert "Chi tiết gửi" in detail and "đã nhận lúc" in detail
    assert "notify.attempt" not in detail and "Lần gửi thư thông báo" not in detail


def test_after_acknowledging_the_leaders_next_step_is_the_notice(official, app, login):
    from service.auth.models import User
    from service.incidents import workflow as W

    response = official.post("/incidents/report", data=_report_data(official))
    incident_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        s = new_session(app)
        try:
            leader = s.scalar(select(User).where(User.username == "chu-tich"))
            W.acknowledge_incident(s, s.get(Incident, incident_id), leader)
            s.commit()
        finally:
            s.close()
    c = app.test_client()
    login("chu-tich", c=c)
    page = c.get(f"/incidents/{incident_id}")
    text = _text(page)
    step = re.search(r"Bước tiếp theo:\s*(.*?)\n", text).group(1)
    assert "gửi thông báo vi phạm (Mẫu số 08)" in step
    assert "không có bước xử lý nào" not in text
    # Nothing pre-filled: the time is the one the notice was really sent.
    sent_at = re.search(r'<input[^>]*name="sent_at"[^>]*>', page.text).group(0)
    assert 'value="' not in sent_at or 'value=""' in sent_at


def test_trail_list_names_the_recording_time_only_when_its_minute_differs(app, make_user, login, client,
                                                                        monkeypatch):
    make_user("cong-an", "police", unit="cong_an")
    recorded = datetime(2026, 11, 3, 15, 32, 50, tzinfo=UTC)  # 22:32:50 in the commune
    monkeypatch.setattr(log, "utcnow", lambda: recorded)
    with app.app_context():
        s = new_session(app)
        log.append_entries(s, [
            # Same minute, other seconds: the time of the access alone.
            log.PendingEntry("event", {"i": 0}, {"actor": "a", "occurred_at": recorded - timedelta(seconds=40)}),
            # No time of access: the recording time is the time shown, once.
            log.PendingEntry("event", {"i": 1}, {"actor": "b"}),
            # Two minutes earlier: both times.
            log.PendingEntry("event", {"i": 2}, {"actor": "c", "occurred_at": recorded - timedelta(minutes=2)}),
        ])
        s.commit()
        s.close()
    assert login("cong-an").status_code == 302
    text = _text(client.get("/audit/"))
    assert text.count("ghi nhận lúc") == 1
    assert re.search(r"22:30:50\s*ghi nhận lúc 03/11/2026 22:32:50", text), text[text.find("22:30"):][:80]
    assert "03/11/2026 22:32:10" in text and "03/11/2026 22:32:50" in text
