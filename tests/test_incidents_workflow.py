"""Incident workflow: the three doors, every transition by role and state, trail, evidence."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEntry
from service.auth.models import User
from service.incidents import workflow as W
from service.incidents.models import (
    Alert,
    AlertState,
    Incident,
    IncidentComment,
    IncidentEvidence,
    IncidentState,
)
from service.notify.models import OutboxMessage

T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
ROLES = ("official", "police", "leader", "admin")


def add_users(session, *specs) -> dict[str, User]:
    """Add accounts that never log in (no password hashing: argon2 is slow on purpose)."""
    users = {}
    for username, role, unit in specs:
        user = User(username=username, email=f"{username}@nhanly.example", roles=[role],
                    unit=unit, password_hash="!", full_name="")
        session.add(user)
        users[username] = user
    session.commit()
    return users


@pytest.fixture
def people(app, session):
    """Create one user per role (plus a second official and a second leader); return them."""
    users = add_users(
        session, ("can-bo", "official", "van_phong"), ("can-bo-khac", "official", "kinh_te"),
        ("cong-an", "police", "cong_an"), ("chu-tich", "leader", "lanh_dao"),
        ("pho-chu-tich", "leader", "lanh_dao"), ("quan-tri", "admin", None),
    )
    return {
        "official": users["can-bo"], "official2": users["can-bo-khac"],
        "police": users["cong-an"], "leader": users["chu-tich"], "leader2": users["pho-chu-tich"],
        "admin": users["quan-tri"],
    }


@pytest.fixture
def settings(app):
    return app.config["SETTINGS"]


def report(session, settings, people, **overrides):
    args = {"origin": "report", "title": "USB có dữ liệu hộ tịch bị mất",
            "summary": "Mất USB ở bộ phận một cửa", "reporter": people["official"],
            "detected_at": T0, "now": T0}
    args.update(overrides)
    return W.report_incident(session, settings, **args)


def trail(session, incident_id=None, kind=None) -> list[tuple[str, dict]]:
    query = select(AuditEntry).order_by(AuditEntry.seq)
    if incident_id is not None:
        query = query.where(AuditEntry.incident_id == incident_id)
    if kind is not None:
        query = query.where(AuditEntry.kind == kind)
    return [(e.kind, json.loads(e.body)["body"]) for e in session.scalars(query)]


def messages(session, incident_id, kind=None) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    return list(session.scalars(query.order_by(OutboxMessage.id)))


# ---------------------------------------------------------------- reporting


def test_report_writes_trail_sets_deadline_and_notifies_leaders_and_police(session, settings, people):
    incident = report(session, settings, people, data_classes=["ho_tich"])
    session.commit()
    assert incident.state == IncidentState.REPORTED
    assert incident.notice_due_at == T0 + timedelta(hours=settings.breach_notice_hours)
    assert incident.unit == "van_phong" and incident.reporter_id == people["official"].id
    [(_, body)] = trail(session, incident.id, "incident.reported")
    assert body["incident_id"] == incident.id and body["by"] == "can-bo"
    assert body["data_classes"] == ["ho_tich"] and body["origin"] == "report"
    created = messages(session, incident.id, "created")
    assert {m.recipient_username for m in created} == {"cong-an", "chu-tich", "pho-chu-tich"}


def test_report_without_personal_data_has_no_deadline(session, settings, people):
    incident = report(session, settings, people, involves_personal_data=False)
    assert incident.notice_due_at is None


def test_report_refuses_bad_input(session, settings, people):
    with pytest.raises(W.WorkflowError, match="tiêu đề"):
        report(session, settings, people, title="   ")
    with pytest.raises(W.WorkflowError, match="người báo cáo"):
        report(session, settings, people, reporter=None)
    with pytest.raises(W.WorkflowError, match="tương lai"):
        report(session, settings, people, detected_at=T0 + timedelta(hours=1))
    with pytest.raises(W.WorkflowError):
        report(session, settings, people, origin="email")
    assert session.scalar(select(func.count()).select_from(Incident)) == 0


def rule_verdict(session, settings, detected_at, **overrides):
    args = {"origin": "rule", "title": "Sao chép dữ liệu dân cư ra USB",
            "rule_id": "usb_copy", "group_key": "usb_copy|can-bo|/DanCu/ds.xlsx",
            "data_classes": ["dan_cu"], "pii_counts": {"cccd": 120}, "detected_at": detected_at,
            "now": detected_at}
    args.update(overrides)
    return W.report_incident(session, settings, **args)


def test_repeated_verdicts_join_within_the_window(session, settings, people):
    first = rule_verdict(session, settings, T0)
    created_before = len(messages(session, first.id))
    second = rule_verdict(session, settings, T0 + timedelta(hours=3), pii_counts={"cccd": 5})
    assert second.id == first.id
    assert first.hit_count == 2 and first.pii_counts == {"cccd": 125}
    assert len(messages(session, first.id)) == created_before  # joining notifies nobody
    [(_, body)] = trail(session, first.id, "incident.joined")
    assert body["hit_count"] == 2
    other_group = rule_verdict(session, settings, T0 + timedelta(hours=4),
                               group_key="usb_copy|can-bo|/DanCu/khac.xlsx")
    assert other_group.id != first.id
    later = rule_verdict(session, settings, T0 + timedelta(hours=settings.incident_join_hours + 1))
    assert later.id != first.id and later.hit_count == 1
    assert session.scalar(select(func.count()).select_from(Incident)) == 3


def test_a_dismissed_incident_is_not_joined(session, settings, people):
    first = rule_verdict(session, settings, T0)
    W.dismiss_incident(session, first, people["police"], reason="Sao chép theo công văn 12/UBND",
                       now=T0)
    again = rule_verdict(session, settings, T0 + timedelta(minutes=5))
    assert again.id != first.id


def test_join_window_zero_never_joins(app, session, people):
    from service.config import Settings

    settings = Settings(**{**app.config["SETTINGS"].model_dump(), "incident_join_hours": 0})
    first = rule_verdict(session, settings, T0)
    assert rule_verdict(session, settings, T0 + timedelta(minutes=1)).id != first.id


# ---------------------------------------------------------------- transitions × roles × states


def bring_to(session, settings, people, state: str) -> Incident:
    """Return a fresh incident in the given state, reached through the real operations."""
    incident = report(session, settings, people)
    police, leader = people["police"], people["leader"]
    if state == IncidentState.DISMISSED:
        return W.dismiss_incident(session, incident, police, reason="Báo nhầm")
    steps = [
        (IncidentState.ACKNOWLEDGED, lambda: W.acknowledge_incident(session, incident, leader)),
        (IncidentState.INVESTIGATING, lambda: W.start_investigation(session, incident, police)),
        (IncidentState.CONTAINED, lambda: W.contain_incident(session, incident, police,
                                                             actions="Đã thu hồi USB")),
        (IncidentState.RESOLVED, lambda: W.resolve_incident(
            session, incident, police, cause="Cán bộ mang USB về nhà",
            measures="Cấm dùng USB cá nhân")),
        (IncidentState.CLOSED, lambda: W.close_incident(session, incident, leader,
                                                        no_notice_reason="Không gây thiệt hại")),
    ]
    for reached, step in steps:
        if incident.state == state:
            break
        step()
        assert incident.state == reached
    assert incident.state == state
    return incident


def perform(session, action, incident, user):
    if action == "acknowledge":
        return W.acknowledge_incident(session, incident, user)
    if action == "start_investigation":
        return W.start_investigation(session, incident, user)
    if action == "contain":
        return W.contain_incident(session, incident, user, actions="Đã khóa tài khoản")
    if action == "resolve":
        return W.resolve_incident(session, incident, user, cause="Lộ mật khẩu",
                                  measures="Đổi mật khẩu, bật xác thực hai lớp")
    if action == "close":
        return W.close_incident(session, incident, user, no_notice_reason="Không gây thiệt hại")
    return W.dismiss_incident(session, incident, user, reason="Không phải sự cố")


EXPECTED = {  # action -> (allowed source states, roles allowed, target state)
    "acknowledge": ({"reported"}, {"leader"}, "acknowledged"),
    "start_investigation": ({"acknowledged"}, {"police"}, "investigating"),
    "contain": ({"investigating"}, {"police"}, "contained"),
    "resolve": ({"contained"}, {"police"}, "resolved"),
    "close": ({"resolved"}, {"leader"}, "closed"),
    "dismiss": ({"reported", "acknowledged", "investigating", "contained", "resolved"},
                {"police"}, "dismissed"),
}


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_each_transition_is_allowed_only_for_its_role_and_source_state(
        session, settings, people, action):
    sources, roles, target = EXPECTED[action]
    for state in IncidentState:
        for role in ROLES:
            incident = bring_to(session, settings, people, state)
            entries_before = len(trail(session, incident.id))
            allowed = state in sources and role in roles
            if allowed:
                perform(session, action, incident, people[role])
                assert incident.state == target
                kinds = [k for k, _ in trail(session, incident.id)]
                assert kinds[-1] == f"incident.{target}" or (
                    # acknowledging and dismissing also queue notifications after the entry
                    f"incident.{target}" in kinds[entries_before:])
            else:
                error = W.WorkflowPermissionError if role not in roles else W.WorkflowError
                with pytest.raises(error) as caught:
                    perform(session, action, incident, people[role])
                assert caught.value.args[0]  # a message for people, in Vietnamese
                assert incident.state == state
                assert len(trail(session, incident.id)) == entries_before
    session.commit()


def test_allowed_actions_match_the_operations(session, settings, people):
    incident = bring_to(session, settings, people, IncidentState.REPORTED)
    assert W.allowed_actions(incident, people["leader"]) == ["acknowledge"]
    assert W.allowed_actions(incident, people["police"]) == ["dismiss"]
    assert W.allowed_actions(incident, people["official"]) == []
    W.acknowledge_incident(session, incident, people["leader"])
    assert W.allowed_actions(incident, people["police"]) == ["start_investigation", "dismiss"]


def test_required_fields_are_enforced(session, settings, people):
    police, leader = people["police"], people["leader"]
    incident = bring_to(session, settings, people, IncidentState.INVESTIGATING)
    with pytest.raises(W.WorkflowError, match="ngăn chặn"):
        W.contain_incident(session, incident, police, actions="  ")
    W.contain_incident(session, incident, police, actions="Rút USB")
    with pytest.raises(W.WorkflowError, match="nguyên nhân"):
        W.resolve_incident(session, incident, police, cause="", measures="Đổi mật khẩu")
    with pytest.raises(W.WorkflowError, match="khắc phục"):
        W.resolve_incident(session, incident, police, cause="Sơ suất", measures=" ")
    W.resolve_incident(session, incident, police, cause="Sơ suất", measures="Tập huấn lại")
    with pytest.raises(W.WorkflowError, match="Mẫu số 08"):
        W.close_incident(session, incident, leader)
    assert incident.state == IncidentState.RESOLVED
    other = bring_to(session, settings, people, IncidentState.REPORTED)
    with pytest.raises(W.WorkflowError, match="lý do"):
        W.dismiss_incident(session, other, police, reason="")
    assert other.state == IncidentState.REPORTED


def test_closing_after_the_notice_needs_no_reason(session, settings, people):
    incident = bring_to(session, settings, people, IncidentState.RESOLVED)
    W.record_breach_notice_sent(session, incident, people["leader"], sent_at=T0 + timedelta(hours=20),
                                channel="cong_thong_tin", reference="TB-01", now=T0 + timedelta(hours=21))
    W.close_incident(session, incident, people["leader"], note="Đã xong")
    assert incident.state == IncidentState.CLOSED and incident.no_notice_reason is None


def test_full_lifecycle_leaves_one_entry_per_step_and_deletes_nothing(session, settings, people):
    incident = bring_to(session, settings, people, IncidentState.CLOSED)
    W.add_comment(session, incident, people["police"], "Đã lập biên bản")
    session.commit()
    kinds = [k for k, _ in trail(session, incident.id) if k.startswith("incident.")]
    assert kinds == ["incident.reported", "incident.acknowledged", "incident.investigating",
                     "incident.contained", "incident.resolved", "incident.closed",
                     "incident.commented"]
    assert all(body["incident_id"] == incident.id for _, body in trail(session, incident.id))
    assert incident.acknowledged_by_id == people["leader"].id
    for stamp in ("acknowledged_at", "investigating_at", "contained_at", "resolved_at", "closed_at"):
        assert getattr(incident, stamp) is not None
    # Nothing is deleted: the rows and the whole trail are still there and the trail verifies.
    assert session.scalar(select(func.count()).select_from(Incident)) == 1
    assert session.scalar(select(func.count()).select_from(IncidentComment)) == 1
    from service.audit import log

    size = log.tree_size(session)
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == size
    assert [e.seq for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))] == list(range(size))
    assert not [name for name in dir(W) if name.startswith(("delete", "remove", "purge"))]


def test_a_disabled_user_can_do_nothing(session, settings, people):
    incident = report(session, settings, people)
    people["leader"].is_disabled = True
    with pytest.raises(W.WorkflowPermissionError):
        W.acknowledge_incident(session, incident, people["leader"])


# ---------------------------------------------------------------- comments and evidence


def test_comments_at_any_state_by_reporter_police_and_leader(session, settings, people):
    for state in (IncidentState.REPORTED, IncidentState.CLOSED, IncidentState.DISMISSED):
        incident = bring_to(session, settings, people, state)
        for who in ("official", "police", "leader"):
            W.add_comment(session, incident, people[who], f"Ghi chú của {who}")
        for who in ("official2", "admin"):
            with pytest.raises(W.WorkflowPermissionError):
                W.add_comment(session, incident, people[who], "Không được phép")
        with pytest.raises(W.WorkflowError):
            W.add_comment(session, incident, people["police"], "   ")
        entries = trail(session, incident.id, "incident.commented")
        assert len(entries) == 3
        body = entries[0][1]
        assert body["sha256"] == hashlib.sha256("Ghi chú của official".encode()).hexdigest()
        assert "Ghi chú" not in json.dumps(body, ensure_ascii=False)


def test_evidence_is_encrypted_on_disk_and_hashed_in_the_trail(session, settings, people):
    incident = bring_to(session, settings, people, IncidentState.CLOSED)
    plaintext = ("Danh sách hộ nghèo thôn Bản Trại — bản chụp màn hình\n" * 50).encode()
    evidence = W.attach_evidence(session, settings, incident, people["police"],
                                 filename="../../etc/chup-man-hinh.png", data=plaintext,
                                 content_type="image/png")
    session.commit()
    assert evidence.filename == "chup-man-hinh.png"
    stored = (settings.data_dir / "evidence" / evidence.stored_name).read_bytes()
    assert plaintext not in stored and b"Danh s" not in stored
    assert len(stored) >= len(plaintext) + 16  # ciphertext plus the GCM tag
    assert (settings.data_dir / "evidence" / evidence.stored_name).stat().st_mode & 0o077 == 0
    [(_, body)] = trail(session, incident.id, "incident.evidence_attached")
    assert body["sha256"] == hashlib.sha256(plaintext).hexdigest() == evidence.sha256
    assert body["size"] == len(plaintext) and body["evidence_id"] == evidence.id
    assert W.read_evidence(session, settings, evidence, people["leader"]) == plaintext
    [(_, body)] = trail(session, incident.id, "incident.evidence_downloaded")
    assert body["by"] == "chu-tich" and body["sha256"] == evidence.sha256
    with pytest.raises(W.WorkflowPermissionError):
        W.read_evidence(session, settings, evidence, people["official"])


def test_altered_evidence_is_detected(session, settings, people):
    incident = report(session, settings, people)
    evidence = W.attach_evidence(session, settings, incident, people["official"],
                                 filename="anh.jpg", data=b"\xff\xd8 anh chup")
    path = settings.data_dir / "evidence" / evidence.stored_name
    stored = bytearray(path.read_bytes())
    stored[-1] ^= 1
    path.write_bytes(bytes(stored))
    with pytest.raises(ValueError):
        W.read_evidence(session, settings, evidence, people["police"])


def test_evidence_limits_and_permissions(session, settings, people):
    incident = report(session, settings, people)
    with pytest.raises(W.WorkflowError, match="quá lớn"):
        W.attach_evidence(session, settings, incident, people["police"], filename="lon.bin",
                          data=b"x" * (settings.evidence_max_bytes + 1))
    with pytest.raises(W.WorkflowError, match="rỗng"):
        W.attach_evidence(session, settings, incident, people["police"], filename="rong.txt",
                          data=b"")
    with pytest.raises(W.WorkflowPermissionError):
        W.attach_evidence(session, settings, incident, people["official2"], filename="a.txt",
                          data=b"abc")
    assert session.scalar(select(func.count()).select_from(IncidentEvidence)) == 0
    assert trail(session, incident.id, "incident.evidence_attached") == []


# ---------------------------------------------------------------- the 72-hour notice


def test_breach_notice_is_recorded_by_leaders_and_late_needs_a_reason(session, settings, people):
    incident = report(session, settings, people)
    due = incident.notice_due_at
    with pytest.raises(W.WorkflowPermissionError):
        W.record_breach_notice_sent(session, incident, people["police"], sent_at=T0,
                                    channel="van_ban", reference="01/TB-UBND", now=T0)
    late = due + timedelta(hours=2)
    with pytest.raises(W.WorkflowError, match="muộn"):
        W.record_breach_notice_sent(session, incident, people["leader"], sent_at=late,
                                    channel="van_ban", reference="01/TB-UBND", now=late)
    with pytest.raises(W.WorkflowError, match="tương lai"):
        W.record_breach_notice_sent(session, incident, people["leader"], sent_at=late,
                                    channel="van_ban", reference="01/TB-UBND", now=T0)
    with pytest.raises(W.WorkflowError, match="Kênh"):
        W.record_breach_notice_sent(session, incident, people["leader"], sent_at=T0,
                                    channel="fax", reference="01/TB-UBND", now=T0)
    W.record_breach_notice_sent(session, incident, people["leader"], sent_at=late,
                                channel="van_ban", reference="01/TB-UBND", now=late,
                                late_reason="Mất điện toàn xã hai ngày")
    assert incident.notice_sent_at == late and incident.notice_late_reason
    [(_, body)] = trail(session, incident.id, "incident.notice_sent")
    assert body["is_late"] is True and body["channel"] == "van_ban"
    with pytest.raises(W.WorkflowError, match="trước đó"):
        W.record_breach_notice_sent(session, incident, people["leader"], sent_at=late,
                                    channel="van_ban", reference="02/TB-UBND", now=late)


def test_on_time_notice_drops_a_late_reason(session, settings, people):
    incident = report(session, settings, people)
    W.record_breach_notice_sent(session, incident, people["leader"], sent_at=T0 + timedelta(hours=1),
                                channel="email", reference="abc", late_reason="không cần",
                                now=T0 + timedelta(hours=1))
    assert incident.notice_late_reason is None


# ---------------------------------------------------------------- alerts


def make_alert(session, **overrides) -> Alert:
    values = {"rule_id": "zalo_share", "severity": "high", "response": "alert",
              "explanation": "Tệp hồ sơ TTHC được gửi qua Zalo", "actor": "can-bo",
              "host": "MC-02", "data_class": "ho_so_tthc", "group_key": "zalo_share|can-bo|x",
              "created_at": T0}
    values.update(overrides)
    alert = Alert(**values)
    session.add(alert)
    session.flush()
    return alert


def test_police_open_an_incident_from_an_alert(session, settings, people):
    alert = make_alert(session)
    with pytest.raises(W.WorkflowPermissionError):
        W.open_incident_from_alert(session, settings, alert, people["leader"])
    incident = W.open_incident_from_alert(session, settings, alert, people["police"], now=T0)
    assert incident.origin == "alert" and incident.detected_at == T0
    assert alert.state == AlertState.INCIDENT and alert.incident_id == incident.id
    assert incident.data_classes == ["ho_so_tthc"] and incident.involves_personal_data
    with pytest.raises(W.WorkflowError, match="đã được xử lý"):
        W.open_incident_from_alert(session, settings, alert, people["police"])
    # A second alert of the same group joins the open incident.
    second = make_alert(session, created_at=T0 + timedelta(minutes=10))
    joined = W.open_incident_from_alert(session, settings, second, people["police"],
                                        now=T0 + timedelta(minutes=10))
    assert joined.id == incident.id and joined.hit_count == 2
    assert second.incident_id == incident.id
    assert [k for k, _ in trail(session, kind="alert.incident")] == ["alert.incident"] * 2


def test_dismissing_an_alert_needs_police_and_a_reason(session, settings, people):
    alert = make_alert(session)
    with pytest.raises(W.WorkflowPermissionError):
        W.dismiss_alert(session, alert, people["leader"], "Không phải vi phạm")
    with pytest.raises(W.WorkflowError, match="lý do"):
        W.dismiss_alert(session, alert, people["police"], "  ")
    W.dismiss_alert(session, alert, people["police"], "Gửi cho Sở theo công văn")
    assert alert.state == AlertState.DISMISSED and alert.dismissed_by_id == people["police"].id
    [(_, body)] = trail(session, kind="alert.dismissed")
    assert body["alert_id"] == alert.id and body["reason"] == "Gửi cho Sở theo công văn"
    with pytest.raises(W.WorkflowError):
        W.dismiss_alert(session, alert, people["police"], "lần nữa")


def test_dismissal_tells_the_leaders(session, settings, people):
    incident = report(session, settings, people)
    W.dismiss_incident(session, incident, people["police"], reason="Báo nhầm")
    dismissed = messages(session, incident.id, "dismissed")
    assert {m.recipient_username for m in dismissed} == {"chu-tich", "pho-chu-tich"}


# ---------------------------------------------------------------- identifiers stay out of the trail


def test_identifier_numbers_in_free_text_do_not_reach_the_trail(session, settings, people):
    incident = report(session, settings, people,
                      title="Lộ danh sách có số 020185123456 và 0912 345 678")
    W.dismiss_incident(session, incident, people["police"],
                       reason="Gọi lại số 0912.345.678 của ông A, CCCD 020185123456")
    text = json.dumps([b for _, b in trail(session, incident.id)], ensure_ascii=False)
    for number in ("020185123456", "0912 345 678", "0912.345.678", "912345678"):
        assert number not in text
    assert "[cccd]" in text and "[phone]" in text
    assert incident.dismiss_reason.endswith("020185123456")  # the row keeps what was typed
