"""Who gets SMS: phone numbers (validated), substitutes on leave, police receipt confirmation."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.core.db import new_session
from tests.conftest import PASSWORD, csrf_token_from


@pytest.fixture
def settings_overrides(settings_overrides, tmp_path):
    """SMS folders without a daemon: these tests read the OUT files themselves."""
    return {**settings_overrides, "sms_outbox_dir": tmp_path / "sms-out",
            "sms_inbox_dir": tmp_path / "sms-in"}


def _user(app, username, *roles, phone=None, full_name=""):
    from service.auth.operations import create_user

    with app.app_context():
        s = new_session()
        create_user(s, username=username, password=PASSWORD, roles=list(roles),
                    email=f"{username}@nhanly.example", phone=phone, full_name=full_name,
                    is_seeding=True)
        s.commit()
        s.close()


def _entries(app, kind):
    from service.audit.models import AuditEntry

    with app.app_context():
        s = new_session()
        try:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))
            return [json.loads(r.body)["body"] for r in rows]
        finally:
            s.close()


def _phone_of(app, username):
    from service.auth.models import User

    with app.app_context():
        s = new_session()
        try:
            return s.scalar(select(User.phone).where(User.username == username))
        finally:
            s.close()


# ---------------------------------------------------------------- phone numbers


@pytest.mark.parametrize(("raw", "expected"), [
    ("0912345678", "+84912345678"), ("+84 912 345 678", "+84912345678"),
    ("0386.123.456", "+84386123456"), ("84912345678", "+84912345678"),
])
def test_vietnamese_mobiles_are_kept_as_e164(raw, expected):
    from service.auth.phones import normalize_mobile

    assert normalize_mobile(raw) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("0243 8234567", "di động"),  # Hà Nội landline: no SMS
    ("+1 202 555 0182", "Việt Nam"),
    ("091234", "không hợp lệ"),
    ("abc", "không hợp lệ"),
])
def test_other_numbers_are_refused_in_vietnamese(raw, message):
    from service.auth.phones import PhoneError, normalize_mobile

    with pytest.raises(PhoneError, match=message):
        normalize_mobile(raw)


def test_cli_user_add_and_phone_validate(app, runner):
    env = {"CANHGAC_USER_PASSWORD": PASSWORD}
    bad = runner.invoke(["user", "add", "ke-toan", "--role", "official", "--email",
                         "kt@nhanly.example", "--phone", "0243 8234567"], env=env)
    assert bad.exit_code != 0 and "di động" in bad.output
    good = runner.invoke(["user", "add", "ke-toan", "--role", "official", "--email",
                          "kt@nhanly.example", "--phone", "0912 345 678"], env=env)
    assert good.exit_code == 0, good.output
    assert _phone_of(app, "ke-toan") == "+84912345678"
    changed = runner.invoke(["user", "phone", "ke-toan", "0987654321"])
    assert changed.exit_code == 0, changed.output
    assert _phone_of(app, "ke-toan") == "+84987654321"
    refused = runner.invoke(["user", "phone", "ke-toan", "12345"])
    assert refused.exit_code != 0 and "không hợp lệ" in refused.output
    assert _phone_of(app, "ke-toan") == "+84987654321"
    entries = _entries(app, "user.phone_changed")
    assert entries[-1] == {"by": "cli", "username": "ke-toan", "had_phone": True,
                           "has_phone": True}
    assert "987654321" not in json.dumps(_entries(app, "user.phone_changed"))


def test_admin_sets_and_refuses_phone(app, client, login):
    from service.auth.models import User

    _user(app, "quan-tri", "admin")
    _user(app, "chu-tich", "leader")
    with app.app_context():
        s = new_session()
        uid = s.scalar(select(User.id).where(User.username == "chu-tich"))
        s.close()
    login("quan-tri")
    token = csrf_token_from(client, f"/admin/users/{uid}")
    bad = client.post(f"/admin/users/{uid}/phone", data={"phone": "0243 8234567", "csrf_token": token})
    assert bad.status_code == 400 and "Cần số điện thoại di động" in bad.text
    assert _phone_of(app, "chu-tich") is None
    good = client.post(f"/admin/users/{uid}/phone", data={"phone": "091 234 5678", "csrf_token": token})
    assert good.status_code == 302
    assert _phone_of(app, "chu-tich") == "+84912345678"
    assert "+84912345678" in client.get(f"/admin/users/{uid}").text


# ---------------------------------------------------------------- substitutes


def _report(app):
    from service.incidents.workflow import report_incident

    with app.app_context():
        s = new_session()
        incident = report_incident(s, app.config["SETTINGS"], origin="rule", rule_id="r1",
                                   title="Sao chép tệp dân cư", severity="high",
                                   pii_counts={"cccd": 4})
        s.commit()
        number = incident.id
        s.close()
        return number


def _dispatch(app):
    from service.notify.dispatcher import dispatch_pending

    with app.app_context():
        s = new_session()
        try:
            dispatch_pending(s, app.config["SETTINGS"])
        finally:
            s.close()


def _out_texts(app, number):
    from service.notify.sms import decode_sms_file

    folder = app.config["SETTINGS"].sms_outbox_dir
    return [decode_sms_file(p.read_bytes()) for p in sorted(folder.glob(f"OUT*_{number}_*.txt"))]


def test_substitute_named_for_today_gets_the_notice_and_acknowledges(app, runner, client, login):
    from service.auth.substitutes import local_today

    _user(app, "chu-tich", "leader", phone="0912345678", full_name="Hoàng Văn Chủ")
    _user(app, "cong-an", "police", phone="0987654321", full_name="Lò Văn Công")
    today = local_today(app.config["SETTINGS"])
    named = runner.invoke(["user", "substitute", "chu-tich", "--by", "cong-an", "--from",
                           today.isoformat(), "--to", (today + timedelta(days=2)).isoformat()])
    assert named.exit_code == 0, named.output
    assert _entries(app, "user.substitute_named")[-1]["substitute"] == "cong-an"

    # The dashboard says who is away and who stands in.
    login("chu-tich")
    board = client.get("/dashboard").text
    assert "Hoàng Văn Chủ nghỉ đến hết" in board and "Lò Văn Công nhận thông báo" in board

    number = _report(app)
    _dispatch(app)
    police_sms = _out_texts(app, "+84987654321")
    assert len(police_sms) == 1
    # The police officer stands in for the leader: the SMS asks to acknowledge, not only confirm.
    assert "(Thay Hoàng Văn Chủ đang nghỉ.)" in police_sms[0]
    assert re.search(rf"Xác nhận đã nhận: nhắn XN {number} [A-Z0-9]{{5}}$", police_sms[0])

    # The substitute acknowledges on the web page, as a leader would.
    police = app.test_client()
    login("cong-an", c=police)
    token = csrf_token_from(police, f"/incidents/{number}/acknowledge")
    assert "Xác nhận đã nhận" in police.get(f"/incidents/{number}/acknowledge").text
    done = police.post(f"/incidents/{number}/acknowledge", data={"csrf_token": token})
    assert done.status_code == 302
    entry = _entries(app, "incident.acknowledged")[-1]
    assert entry["by"] == "cong-an" and entry["standing_in_for"] == ["chu-tich"]
    assert entry["channel"] == "web"


def test_substitute_acknowledges_by_sms_reply(app, runner):
    from service.auth.substitutes import local_today
    from service.notify.replies import handle_reply

    _user(app, "chu-tich", "leader", phone="0912345678")
    _user(app, "van-phong", "official", phone="0977000111")
    today = local_today(app.config["SETTINGS"]).isoformat()
    assert runner.invoke(["user", "substitute", "chu-tich", "--by", "van-phong", "--from", today,
                          "--to", today]).exit_code == 0
    number = _report(app)
    _dispatch(app)
    text = _out_texts(app, "+84977000111")[0]
    code = re.search(rf"XN {number} ([A-Z0-9]{{5}})$", text).group(1)
    with app.app_context():
        s = new_session()
        result = handle_reply(s, app.config["SETTINGS"], "+84977000111", f"XN {number} {code}")
        s.commit()
        s.close()
    assert result.outcome == "acknowledged"
    entry = _entries(app, "incident.acknowledged")[-1]
    assert entry["by"] == "van-phong" and entry["channel"] == "sms"
    assert entry["standing_in_for"] == ["chu-tich"]


def test_substitution_outside_its_dates_changes_nothing(app, runner):
    from service.auth.substitutes import local_today

    _user(app, "chu-tich", "leader", phone="0912345678")
    _user(app, "van-phong", "official", phone="0977000111")
    tomorrow = local_today(app.config["SETTINGS"]) + timedelta(days=1)
    assert runner.invoke(["user", "substitute", "chu-tich", "--by", "van-phong", "--from",
                          tomorrow.isoformat(), "--to", tomorrow.isoformat()]).exit_code == 0
    _report(app)
    _dispatch(app)
    assert _out_texts(app, "+84977000111") == []
    assert len(_out_texts(app, "+84912345678")) == 1


def test_substitutes_page_self_service_and_limits(app, client, login):
    from service.auth.substitutes import local_today

    _user(app, "chu-tich", "leader")
    _user(app, "pho-chu-tich", "leader")
    _user(app, "can-bo", "official")
    today = local_today(app.config["SETTINGS"])
    login("chu-tich")
    page = client.get("/account/substitutes")
    assert page.status_code == 200
    token = csrf_token_from(client, "/account/substitutes")
    ids = dict(re.findall(r'<option[^>]*value="(\d+)"[^>]*>[^<]*\(([a-z-]+)\)', page.text))
    by_name = {v: k for k, v in ids.items()}
    backwards = client.post("/account/substitutes", data={
        "csrf_token": token, "absent": by_name["chu-tich"], "substitute": by_name["pho-chu-tich"],
        "starts_on": today.isoformat(), "ends_on": (today - timedelta(days=1)).isoformat()})
    assert backwards.status_code == 400 and "Ngày kết thúc" in backwards.text
    made = client.post("/account/substitutes", data={
        "csrf_token": token, "absent": by_name["chu-tich"], "substitute": by_name["pho-chu-tich"],
        "starts_on": today.isoformat(), "ends_on": today.isoformat()})
    assert made.status_code == 302
    assert "Đang thay" in client.get("/account/substitutes").text
    # An official is not reached about incidents and cannot name a substitute for others.
    other = app.test_client()
    login("can-bo", c=other)
    token = csrf_token_from(other, "/account/substitutes")
    refused = other.post("/account/substitutes", data={
        "csrf_token": token, "absent": by_name["chu-tich"], "substitute": by_name["can-bo"],
        "starts_on": today.isoformat(), "ends_on": today.isoformat()})
    assert refused.status_code == 400
    assert len(_entries(app, "user.substitute_named")) == 1


# ---------------------------------------------------------------- police receipt


def test_police_confirm_receipt_on_the_page_once(app, client, login):
    _user(app, "chu-tich", "leader")
    _user(app, "cong-an", "police")
    number = _report(app)
    login("cong-an")
    page = client.get(f"/incidents/{number}").text
    assert "Xác nhận Công an xã đã nhận tin" in page
    token = csrf_token_from(client, f"/incidents/{number}")
    assert client.post(f"/incidents/{number}/receipt", data={"csrf_token": token}).status_code == 302
    entries = _entries(app, "incident.receipt_confirmed")
    assert len(entries) == 1 and entries[0]["by"] == "cong-an" and entries[0]["channel"] == "web"
    # Distinct from the acknowledgement: the incident still waits for a leader.
    assert entries[0]["state"] == "reported"
    page = client.get(f"/incidents/{number}").text
    assert "Xác nhận Công an xã đã nhận tin</button>" not in page
    assert "đã xác nhận đã nhận tin lúc" in page
    again = client.post(f"/incidents/{number}/receipt", data={"csrf_token": token})
    assert again.status_code == 302
    assert len(_entries(app, "incident.receipt_confirmed")) == 1
    # A leader acknowledges; confirming receipt is for police.
    leader = app.test_client()
    login("chu-tich", c=leader)
    token = csrf_token_from(leader, f"/incidents/{number}")
    assert leader.post(f"/incidents/{number}/receipt", data={"csrf_token": token}).status_code == 403


def test_replies_that_change_nothing_are_recorded_and_answered(app):
    from service.auth.models import User
    from service.core.db import utcnow
    from service.incidents.models import Incident
    from service.incidents.workflow import acknowledge_incident
    from service.notify.models import OutboxMessage, SmsCode
    from service.notify.replies import handle_reply

    _user(app, "chu-tich", "leader", phone="0912345678")
    _user(app, "pho-chu-tich", "leader", phone="0912000111")
    number = _report(app)
    _dispatch(app)
    codes = {}
    for phone in ("+84912345678", "+84912000111"):
        codes[phone] = re.search(rf"XN {number} ([A-Z0-9]{{5}})$", _out_texts(app, phone)[0]).group(1)
    settings = app.config["SETTINGS"]
    with app.app_context():
        s = new_session()
        assert handle_reply(s, settings, "+84912345678", "đã nhận").outcome == "not_understood"
        # The deputy's code runs out; then the chairman acknowledges on the web page.
        s.execute(SmsCode.__table__.update().where(SmsCode.phone == "+84912000111")
                  .values(expires_at=utcnow() - timedelta(minutes=1)))
        assert handle_reply(s, settings, "+84912000111",
                            f"XN {number} {codes['+84912000111']}").outcome == "code_expired"
        incident = s.get(Incident, number)
        leader = s.scalar(select(User).where(User.username == "chu-tich"))
        acknowledge_incident(s, incident, leader, settings=settings)
        s.commit()
        assert handle_reply(s, settings, "+84912345678",
                            f"XN {number} {codes['+84912345678']}").outcome == "already_acknowledged"
        s.commit()
        answers = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "sms_answer")
                            .order_by(OutboxMessage.id)).all()
        assert [a.address for a in answers] == ["+84912345678", "+84912000111", "+84912345678"]
        assert "không hiểu" in answers[0].body and "hết hạn" in answers[1].body
        assert "đã được xác nhận trước đó" in answers[2].body
        s.close()
    entries = _entries(app, "sms.reply")
    assert [e["outcome"] for e in entries] == ["not_understood", "code_expired",
                                              "already_acknowledged"]
    assert all(not e["is_accepted"] for e in entries)
    acks = _entries(app, "incident.acknowledged")
    assert len(acks) == 1 and acks[0]["channel"] == "web"


@pytest.mark.parametrize("kind", ["created", "escalated", "dismissed", "deadline_reminder",
                                  "acknowledged"])
def test_without_diacritics_every_notice_fits_one_sms_with_its_code(kind):
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from service.config import load_settings
    from service.notify import sms

    settings = load_settings({"sms_without_diacritics": True}, environ={})
    incident = SimpleNamespace(
        id=987654, severity="critical", pii_counts={"cccd": 123456, "sdt": 99}, data_classes=[
            "dan_cu", "an_sinh", "y_te"], involves_personal_data=True,
        notice_due_at=datetime(2026, 12, 9, 1, 30, tzinfo=UTC), detected_at=None)
    text = sms.render_incident_sms(
        kind, incident, settings, purpose=sms.PURPOSE_ACKNOWLEDGE if kind in (
            "created", "escalated") else None,
        standing_in_for="Nguyễn Thị Phương Thảo Hoàng Đức Quyết Chủ tịch")
    sent = text.replace(sms.CODE_PLACEHOLDER, sms.new_code())
    assert sms.gsm7_length(sent) is not None and sms.gsm7_length(sent) <= 160
    assert sent.startswith("Canh Gac")
    if kind in ("created", "escalated"):
        assert re.search(r"XN 987654 [A-Z0-9]{5}$", sent)  # the reply line always stays


def test_escalation_step_naming_sms_keeps_sms_for_that_step(app, settings_overrides):
    from service.config import load_settings
    from service.core.db import utcnow
    from service.incidents import jobs as J
    from service.notify.models import OutboxMessage

    # Step 1: leaders and police by mail; step 2 onwards: SMS as well.
    settings = load_settings({**settings_overrides, "escalation_steps": "role:leader;role:leader,sms",
                              "ack_sla_minutes": 15}, environ={})
    app.config["SETTINGS"] = settings
    _user(app, "chu-tich", "leader", phone="0912345678")
    number = _report(app)

    def channels(kind):
        with app.app_context():
            s = new_session()
            try:
                return sorted(m.channel for m in s.scalars(
                    select(OutboxMessage).where(OutboxMessage.kind == kind)))
            finally:
                s.close()

    assert channels("created") == ["email"]
    with app.app_context():
        s = new_session()
        J.escalate_overdue(s, settings, now=utcnow() + timedelta(minutes=16))
        s.commit()
        assert channels("escalated") == ["email"]
        J.escalate_overdue(s, settings, now=utcnow() + timedelta(minutes=31))
        s.commit()
        s.close()
    assert channels("escalated") == ["email", "email", "sms"]
    _dispatch(app)
    text = _out_texts(app, "+84912345678")[0]
    assert text.startswith(f"Canh Gác KHẨN: sự cố #{number}")
    assert re.search(rf"XN {number} [A-Z0-9]{{5}}$", text)
    # "sms" is a channel, not an account: it is not reported as an unknown recipient.
    assert all("unknown_recipients" not in e for e in _entries(app, "incident.escalated"))
