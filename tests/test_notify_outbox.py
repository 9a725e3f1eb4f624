"""Enqueueing notifications: recipients, audit entries, the signed checkpoint, masking, pruning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from service.audit import log as audit_log
from service.audit.checkpoint import open_checkpoint
from service.audit.keys import load_verifier_key
from service.audit.models import AuditEntry, Checkpoint
from service.auth.models import User
from service.config import load_settings
from service.incidents.models import Incident
from service.notify import templates
from service.notify.dispatcher import dispatch_pending, retry_delay
from service.notify.models import OutboxMessage
from service.notify.outbox import notify_incident, notify_users, outbox_summary, prune_delivered

CCCD = "020185123456"
PHONE = "0912345678"


def _incident(session, **fields) -> Incident:
    values = {"title": "Sao chép tệp dân cư sang USB", "summary": "Tệp DanCu_2025.xlsx bị chép",
              "origin": "report", "severity": "high",
              "detected_at": datetime(2026, 1, 5, 1, 30, tzinfo=UTC)}
    values.update(fields)
    incident = Incident(**values)
    session.add(incident)
    session.flush()
    return incident


def _entries(session, kind: str) -> list[dict]:
    rows = session.scalars(select(AuditEntry).where(AuditEntry.kind == kind)
                           .order_by(AuditEntry.seq))
    return [{"seq": r.seq, "incident_id": r.incident_id, **json.loads(r.body)} for r in rows]


@pytest.fixture
def people(app, make_user):
    """Two leaders, a police officer, an official and a disabled police account."""
    from service.core.db import new_session

    make_user("chu_tich", "leader")
    make_user("pho_chu_tich", "leader")
    make_user("cong_an_1", "police", unit="cong_an")
    make_user("can_bo", "official", unit="vh_xh")
    make_user("cong_an_cu", "police", unit="cong_an")
    s = new_session(app)
    s.scalar(select(User).where(User.username == "cong_an_cu")).is_disabled = True
    s.commit()
    s.close()
    return ["chu_tich", "pho_chu_tich", "cong_an_1"]


def test_created_goes_to_every_active_leader_and_police(app, session, people):
    incident = _incident(session)
    messages = notify_incident(session, incident, kind="created")
    session.commit()
    assert sorted(m.recipient_username for m in messages) == sorted(people)
    assert {m.channel for m in messages} == {"email"}
    assert all(m.address == f"{m.recipient_username}@nhanly.example" for m in messages)
    # Stable ids derived from the row, distinct per message.
    assert [m.message_id for m in messages] == [
        f"<outbox-{m.id}.{incident.id}@canhgac.nhanly.langson>" for m in messages]
    for m in messages:
        assert m.link == f"http://127.0.0.1:8080/incidents/{incident.id}/acknowledge"
        assert m.link in m.body
        assert m.subject.startswith(f"[Canh Gác] Sự cố mới #{incident.id} (mức cao)")
        assert "Sao chép tệp dân cư sang USB" in m.body
        # 01:30 UTC is 08:30 in Hà Nội; the 72-hour deadline three days later.
        assert "Phát hiện lúc: 05/01/2026 08:30 (giờ Việt Nam)" in m.body
        assert "(72 giờ): 08/01/2026 08:30 (giờ Việt Nam)" in m.body
        assert "Trạng thái: Mới báo cáo, chờ xác nhận" in m.body


def test_no_smtp_host_keeps_mail_pending_and_visible(app, session, people):
    settings = app.config["SETTINGS"]
    assert settings.smtp_host is None
    notify_incident(session, _incident(session), kind="created")
    session.commit()
    stats = dispatch_pending(session, settings)
    assert stats.attempted == 0
    assert stats.waiting_for_config == 3
    summary = outbox_summary(session)
    assert summary["pending"] == 3 and summary["by_channel"]["email"]["pending"] == 3
    assert summary["oldest_pending_at"] is not None
    assert not _entries(session, "notify.attempt")


def test_queued_audit_entries_name_recipient_and_channel_only(app, session, people):
    incident = _incident(session, summary=f"Lộ số {CCCD}, gọi {PHONE}")
    settings = app.config["SETTINGS"].model_copy(update={"webhook_url": "http://127.0.0.1:9/x"})
    messages = notify_incident(session, incident, kind="escalated", settings=settings)
    session.commit()
    queued = _entries(session, "notify.queued")
    assert len(queued) == len(messages) == 4  # three mails and one webhook for the event
    for entry, message in zip(queued, messages, strict=True):
        assert entry["incident_id"] == incident.id
        assert entry["body"] == {"message": message.id, "channel": message.channel,
                                 "recipient": message.recipient_username, "kind": "escalated",
                                 "incident_id": incident.id}
        raw = json.dumps(entry, ensure_ascii=False)
        assert CCCD not in raw and PHONE not in raw and "@" not in raw


def test_every_message_carries_a_checkpoint_covering_its_own_queuing(app, session, people):
    settings = app.config["SETTINGS"]
    incident = _incident(session)
    messages = notify_incident(session, incident, kind="created")
    session.commit()
    checkpoint = session.get(Checkpoint, messages[0].checkpoint_id)
    assert {m.checkpoint_id for m in messages} == {checkpoint.id}
    for m in messages:
        assert m.body.endswith(checkpoint.note)  # verbatim, last
    opened = open_checkpoint(checkpoint.note, settings.audit_origin,
                             [load_verifier_key(settings.keys_dir)])
    assert opened.size == audit_log.tree_size(session)
    assert opened.root == audit_log.root_at(session, opened.size)
    assert max(e["seq"] for e in _entries(session, "notify.queued")) < opened.size


@pytest.mark.parametrize("kind", ["dismissed", "deadline_reminder", "acknowledged"])
def test_other_kinds_link_to_the_incident_page(app, session, people, kind):
    incident = _incident(session)
    messages = notify_incident(session, incident, kind=kind, extra_text="Lý do: trùng lặp")
    assert messages
    for m in messages:
        assert m.link == f"http://127.0.0.1:8080/incidents/{incident.id}"
        assert "/acknowledge" not in m.body
        assert "Lý do: trùng lặp" in m.body


def test_unknown_kind_is_refused(app, session, people):
    with pytest.raises(ValueError, match="kind"):
        notify_incident(session, _incident(session), kind="deleted")


def test_no_identifiers_in_any_message(app, session, people, tmp_path):
    settings = app.config["SETTINGS"].model_copy(
        update={"webhook_url": "http://127.0.0.1:9/hook", "notify_command": "true"})
    incident = _incident(
        session, title=f"Lộ danh sách, liên hệ {PHONE}",
        summary=f"Bảng tính chứa CCCD {CCCD} và số điện thoại {PHONE}; +84 912 345 678.")
    messages = notify_incident(session, incident, kind="created", settings=settings,
                               extra_text=f"Người báo: {CCCD}")
    messages += notify_users(session, [session.scalar(select(User).where(User.username == "chu_tich"))],
                             subject=f"Nhắc báo cáo {PHONE}", text=f"Số {CCCD}", kind="report_reminder",
                             settings=settings)
    session.commit()
    assert {m.channel for m in messages} == {"email", "webhook", "command"}
    for m in messages:
        text = m.subject + m.body
        assert CCCD not in text and PHONE not in text and "912 345 678" not in text
    assert "[cccd]" in messages[0].body and "[phone]" in messages[0].subject


def test_notify_users_generic_message(app, session, people):
    users = list(session.scalars(select(User).where(User.username.in_(["cong_an_1", "can_bo"]))))
    messages = notify_users(session, users, subject="Nhắc nộp báo cáo tháng",
                            text="Đề nghị gửi báo cáo trước ngày 08.", kind="monthly_report",
                            link="http://127.0.0.1:8080/reports")
    session.commit()
    assert sorted(m.recipient_username for m in messages) == ["can_bo", "cong_an_1"]
    for m in messages:
        assert m.incident_id is None and m.kind == "monthly_report"
        assert m.subject == "Nhắc nộp báo cáo tháng"
        assert "Đề nghị gửi báo cáo trước ngày 08." in m.body
        assert "http://127.0.0.1:8080/reports" in m.body
        assert m.body.endswith(session.get(Checkpoint, m.checkpoint_id).note)
        assert m.message_id == f"<outbox-{m.id}.0@canhgac.nhanly.langson>"


def test_explicit_recipients_skip_disabled_accounts(app, session, people):
    users = list(session.scalars(select(User).where(User.username.in_(["cong_an_cu", "can_bo"]))))
    messages = notify_incident(session, _incident(session), kind="acknowledged", recipients=users)
    assert [m.recipient_username for m in messages] == ["can_bo"]


def test_rollback_leaves_no_message_and_no_entry(app, session, people):
    incident = _incident(session)
    session.commit()
    notify_incident(session, incident, kind="created")
    session.rollback()
    assert session.scalar(select(OutboxMessage.id)) is None
    assert not _entries(session, "notify.queued")


def test_prune_removes_old_delivered_rows_only(app, session, people):
    settings = app.config["SETTINGS"]
    messages = notify_incident(session, _incident(session), kind="created")
    now = datetime.now(UTC)
    old, recent, pending = messages
    old.state, old.delivered_at = "delivered", now - timedelta(days=91)
    recent.state, recent.delivered_at = "delivered", now - timedelta(days=89)
    session.commit()
    assert prune_delivered(session, settings, now=now) == 1
    session.commit()
    remaining = set(session.scalars(select(OutboxMessage.id)))
    assert remaining == {recent.id, pending.id}
    assert [e["body"]["count"] for e in _entries(session, "notify.pruned")] == [1]
    assert len(_entries(session, "notify.queued")) == 3  # the trail keeps every message
    assert prune_delivered(session, settings, now=now) == 0


def test_retry_delay_doubles_then_stays_at_the_cap():
    settings = load_settings({"notify_retry_base_seconds": 10, "notify_retry_max_seconds": 100,
                              "notify_failing_after_attempts": 6}, environ={})
    delays = [retry_delay(n, settings).total_seconds() for n in range(1, 10)]
    assert delays == [10, 20, 40, 80, 100, 100, 100, 100, 100]


_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)
_words = st.text(alphabet="abc đêư ,.;:()", max_size=20)


@hsettings(max_examples=60, deadline=None)
@given(before=_words, after=_words, tail=_digits, which=st.sampled_from(["cccd", "phone"]))
def test_rendered_mail_never_contains_an_identifier(before, after, tail, which):
    value = ("020" + tail) if which == "cccd" else ("09" + tail[:8])
    settings = load_settings({}, environ={})
    incident = SimpleNamespace(
        id=7, title=f"{before}{value}", summary=f"{before} {value}{after}", severity="high",
        state="reported", detected_at=datetime(2026, 3, 1, tzinfo=UTC), notice_due_at=None,
        involves_personal_data=True)
    mail = templates.render_incident_mail(
        "created", incident, settings, recipient_name="A", link="http://x/incidents/7/acknowledge",
        extra_text=f"{value}", checkpoint_note="o\n1\nAAAA\n\n— o sig\n", checkpoint_size=1)
    for text in (mail.subject, mail.body):
        assert value not in text
