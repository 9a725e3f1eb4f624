"""Incident operations: report (three doors), one verb per transition, comments, evidence.

Every operation checks the user's role and the incident's state, changes the rows, writes its
audit entry (kind ``incident.<what happened>``, search field ``incident_id``) and flushes; the
caller (view, CLI command, job) commits once. Nothing is ever deleted.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from canhgac_common.pii.mask import mask_pii
from service.audit.log import record
from service.auth.models import User
from service.core.db import utcnow
from service.incidents.models import (
    OPEN_STATES,
    Alert,
    AlertState,
    Incident,
    IncidentComment,
    IncidentEvidence,
    IncidentReceipt,
    IncidentState,
)

ORIGINS = ("report", "rule", "alert")
SEVERITIES = ("low", "medium", "high", "critical")
NOTICE_CHANNELS = {
    "cong_thong_tin": "Cổng thông tin quốc gia về bảo vệ dữ liệu cá nhân",
    "van_ban": "Văn bản (Mẫu số 08) gửi cơ quan chuyên trách",
    "email": "Thư điện tử",
    "khac": "Khác",
}
MAX_TEXT = 10_000
CLOCK_SKEW = timedelta(minutes=5)  # a phone's clock may run a little ahead of the server's


class WorkflowError(Exception):
    """An operation was refused; the message says why, in Vietnamese."""


class WorkflowPermissionError(WorkflowError):
    """The user's role does not allow the operation (views answer 403)."""


# action -> (source states, target state, roles that may do it)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "acknowledge": ((IncidentState.REPORTED,), IncidentState.ACKNOWLEDGED, ("leader",)),
    "start_investigation": ((IncidentState.ACKNOWLEDGED,), IncidentState.INVESTIGATING, ("police",)),
    "contain": ((IncidentState.INVESTIGATING,), IncidentState.CONTAINED, ("police",)),
    "resolve": ((IncidentState.CONTAINED,), IncidentState.RESOLVED, ("police",)),
    "close": ((IncidentState.RESOLVED,), IncidentState.CLOSED, ("leader",)),
    "dismiss": (tuple(OPEN_STATES), IncidentState.DISMISSED, ("police",)),
}
ACTION_LABELS = {
    "acknowledge": "xác nhận đã nhận",
    "start_investigation": "bắt đầu điều tra",
    "contain": "ngăn chặn",
    "resolve": "khắc phục",
    "close": "đóng",
    "dismiss": "bác bỏ",
}
STATE_LABELS = {
    IncidentState.REPORTED: "Mới báo cáo",
    IncidentState.ACKNOWLEDGED: "Đã xác nhận",
    IncidentState.INVESTIGATING: "Đang điều tra",
    IncidentState.CONTAINED: "Đã ngăn chặn",
    IncidentState.RESOLVED: "Đã khắc phục",
    IncidentState.CLOSED: "Đã đóng",
    IncidentState.DISMISSED: "Đã bác bỏ",
}
ROLE_NAMES = {"leader": "lãnh đạo UBND xã", "police": "Công an xã"}

def redact_numbers(value: str | None) -> str | None:
    """Hide identifier-like numbers (ID, phone, BHXH) in free text before it enters the trail."""
    if value is None:
        return None
    return mask_pii(value)


# ---------------------------------------------------------------- small helpers


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise WorkflowError("Thời điểm phải có múi giờ (naive datetime refused)")
    return value.astimezone(UTC)


def _clean(value: str | None, what: str, *, required: bool, limit: int = MAX_TEXT) -> str | None:
    cleaned = (value or "").strip()
    if required and not cleaned:
        raise WorkflowError(f"Cần nhập {what}.")
    if len(cleaned) > limit:
        raise WorkflowError(f"{what[:1].upper()}{what[1:]} quá dài (tối đa {limit} ký tự).")
    return cleaned or None


def _username(user: User | None) -> str | None:
    return user.username if user is not None else None


def _require_role(user: User | None, roles: Sequence[str], action: str) -> None:
    if user is None or not user.is_active or not user.has_role(*roles):
        who = " hoặc ".join(ROLE_NAMES.get(r, r) for r in roles)
        raise WorkflowPermissionError(f"Chỉ {who} mới được {action}.")


def _audit(session: Session, incident: Incident, what: str, user: User | None, **details):
    body = {"incident_id": incident.id, "state": str(incident.state), "by": _username(user) or "system"}
    body.update({k: v for k, v in details.items() if v is not None})
    return record(session, f"incident.{what}", body, incident_id=incident.id, actor=_username(user))


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _lock(session: Session, incident: Incident) -> Incident:
    # Re-read the row under a lock so two people pressing a button at once cannot both pass
    # the state check (PostgreSQL); SQLite's BEGIN IMMEDIATE already serializes writers.
    session.flush()
    session.refresh(incident, with_for_update=True)
    return incident


def active_users_with_roles(session: Session, *roles: str) -> list[User]:
    """Return active users holding any of the roles, ordered by username."""
    users = session.scalars(select(User).where(User.is_disabled.is_(False)).order_by(User.username))
    return [u for u in users if u.has_role(*roles)]


def _notify(session: Session, incident: Incident, kind: str, recipients: list[User] | None,
            extra_text: str = "", settings=None, by_sms: bool | None = None) -> list:
    # Imported here: the outbox is its own subsystem and only needed when something is sent.
    from service.notify.outbox import notify_incident

    return notify_incident(session, incident, kind=kind, recipients=recipients or None,
                           extra_text=extra_text, settings=settings, by_sms=by_sms)


# ---------------------------------------------------------------- who may see what


def can_view(incident: Incident, user: User) -> bool:
    """Return whether the user may see the incident: police and leaders all, others their own."""
    if user.has_role("police", "leader"):
        return True
    return incident.reporter_id is not None and incident.reporter_id == user.id


def can_contribute(incident: Incident, user: User) -> bool:
    """Return whether the user may comment on the incident or add evidence to it."""
    return user.is_active and can_view(incident, user)


def allowed_actions(incident: Incident, user: User) -> list[str]:
    """Return the transitions the user may perform on the incident now, in workflow order."""
    return [
        action for action, (sources, _target, roles) in TRANSITIONS.items()
        if incident.state in sources and user.has_role(*roles)
    ]


def can_record_notice(incident: Incident, user: User) -> bool:
    """Return whether the user may record that the 72-hour notice was sent."""
    return user.has_role("leader") and incident.notice_sent_at is None and \
        incident.state != IncidentState.DISMISSED


# ---------------------------------------------------------------- report: three doors


def _lock_group(session: Session, group_key: str) -> None:
    # Two ingest requests with verdicts for the same group must not both open an incident.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                        {"k": zlib.crc32(b"incident-group:" + group_key.encode())})


def find_joinable_incident(session: Session, settings, *, group_key: str, rule_id: str | None,
                           detected_at: datetime) -> Incident | None:
    """Return the open incident a verdict of this rule and group joins, if any."""
    window = timedelta(hours=settings.incident_join_hours)
    if not window:
        return None
    query = select(Incident).where(
        Incident.group_key == group_key,
        Incident.state.in_([str(s) for s in OPEN_STATES]),
        Incident.detected_at >= detected_at - window,
        Incident.detected_at <= detected_at + window,
    )
    if rule_id is not None:
        query = query.where(Incident.rule_id == rule_id)
    return session.scalars(query.order_by(Incident.id.desc()).limit(1)).first()


def _join(session: Session, incident: Incident, settings, *, now: datetime, detected_at: datetime,
          data_classes: Iterable[str], pii_counts: dict | None, alert: Alert | None,
          involves_personal_data: bool, reporter: User | None) -> Incident:
    _lock(session, incident)
    incident.hit_count = (incident.hit_count or 1) + 1
    incident.last_hit_at = now
    incident.data_classes = sorted(set(incident.data_classes or []) | set(data_classes))
    if pii_counts:
        merged = dict(incident.pii_counts or {})
        for kind, count in pii_counts.items():
            merged[kind] = int(merged.get(kind, 0)) + int(count)
        incident.pii_counts = merged
    if involves_personal_data and not incident.involves_personal_data:
        # Personal data shows up only now: the 72-hour clock starts at this detection.
        incident.involves_personal_data = True
        incident.notice_due_at = detected_at + timedelta(hours=settings.breach_notice_hours)
    if alert is not None:
        alert.incident_id = incident.id
        alert.state = AlertState.INCIDENT
    _audit(session, incident, "joined", reporter, hit_count=incident.hit_count,
           rule_id=incident.rule_id, alert_id=alert.id if alert is not None else None,
           detected_at=_stamp(detected_at), pii_counts=dict(pii_counts or {}) or None,
           notice_due_at=_stamp(incident.notice_due_at))
    session.flush()
    return incident


def report_incident(
    session: Session,
    settings,
    *,
    origin: str,
    title: str,
    summary: str = "",
    severity: str = "high",
    reporter: User | None = None,
    rule_id: str | None = None,
    group_key: str | None = None,
    data_classes: Iterable[str] = (),
    pii_counts: dict | None = None,
    detected_at: datetime | None = None,
    form_data: dict | None = None,
    alert: Alert | None = None,
    involves_personal_data: bool = True,
    now: datetime | None = None,
) -> Incident:
    """Open an incident (report form, policy rule or alert), or join the open one of its group."""
    if origin not in ORIGINS:
        raise WorkflowError(f"Nguồn sự cố không hợp lệ: {origin!r}")
    if severity not in SEVERITIES:
        raise WorkflowError(f"Mức độ không hợp lệ: {severity!r}")
    if origin == "report" and reporter is None:
        raise WorkflowError("Báo cáo của cán bộ phải có người báo cáo.")
    if reporter is not None and not reporter.is_active:
        raise WorkflowPermissionError("Tài khoản đã bị khóa.")
    # Cut rather than refuse: a long rule explanation must never make an ingest batch fail.
    title = (title or "").strip() or (f"Quy tắc {rule_id}" if rule_id else "")
    if not title:
        raise WorkflowError("Cần nhập tiêu đề.")
    title = title[:300]
    summary = (summary or "").strip()[:MAX_TEXT]
    now = _as_utc(now) or utcnow()
    detected_at = _as_utc(detected_at) or now
    if origin == "report" and detected_at > now + CLOCK_SKEW:
        raise WorkflowError("Thời điểm phát hiện không thể ở tương lai.")
    data_classes = sorted(set(data_classes))
    pii_counts = {str(k): int(v) for k, v in (pii_counts or {}).items() if int(v) > 0}

    if group_key:
        _lock_group(session, group_key)
        joinable = find_joinable_incident(session, settings, group_key=group_key, rule_id=rule_id,
                                          detected_at=detected_at)
        if joinable is not None:
            return _join(session, joinable, settings, now=now, detected_at=detected_at,
                         data_classes=data_classes, pii_counts=pii_counts, alert=alert,
                         involves_personal_data=involves_personal_data, reporter=reporter)

    incident = Incident(
        title=title, summary=summary, state=IncidentState.REPORTED, severity=severity,
        origin=origin, rule_id=rule_id, group_key=group_key,
        reporter_id=reporter.id if reporter is not None else None,
        unit=reporter.unit if reporter is not None else None,
        data_classes=data_classes, pii_counts=pii_counts, form_data=dict(form_data or {}),
        involves_personal_data=involves_personal_data, detected_at=detected_at, created_at=now,
        notice_due_at=(detected_at + timedelta(hours=settings.breach_notice_hours)
                       if involves_personal_data else None),
        escalation_level=0, hit_count=1, last_hit_at=now,
        # Reminder marks already past when it is filed are not mailed afterwards: the incident
        # shows as overdue (page, list and the "created" mail) instead of a burst of reminders.
        reminders_sent=sorted(h for h in settings.breach_reminder_hours
                              if detected_at + timedelta(hours=h) <= now)
        if involves_personal_data else [],
    )
    session.add(incident)
    session.flush()
    if alert is not None:
        alert.incident_id = incident.id
        alert.state = AlertState.INCIDENT
    _audit(
        session, incident, "reported", reporter, origin=origin, title=redact_numbers(title),
        severity=severity, rule_id=rule_id, group_key=group_key, unit=incident.unit,
        alert_id=alert.id if alert is not None else None, data_classes=data_classes,
        pii_counts=pii_counts or None, involves_personal_data=involves_personal_data,
        detected_at=_stamp(detected_at), notice_due_at=_stamp(incident.notice_due_at),
        form_fields=sorted(k for k, v in (form_data or {}).items() if v not in (None, "", [])) or None,
    )
    _notify(session, incident, "created", active_users_with_roles(session, "leader", "police"),
            settings=settings)
    session.flush()
    return incident


def open_incident_from_alert(session: Session, settings, alert: Alert, user: User, *,
                             involves_personal_data: bool | None = None,
                             now: datetime | None = None) -> Incident:
    """Turn an open alert into an incident (police); it joins an open incident of its group."""
    _require_role(user, ("police",), "mở sự cố từ cảnh báo")
    session.flush()
    session.refresh(alert, with_for_update=True)
    if alert.state != AlertState.OPEN:
        raise WorkflowError("Cảnh báo này đã được xử lý.")
    explanation = (alert.explanation or "").strip()
    title = explanation.splitlines()[0][:200] if explanation else f"Cảnh báo theo quy tắc {alert.rule_id}"
    if involves_personal_data is None:
        involves_personal_data = bool(alert.data_class)
    severity = alert.severity if alert.severity in SEVERITIES else "high"
    incident = report_incident(
        session, settings, origin="alert", title=title, summary=explanation, severity=severity,
        reporter=user, rule_id=alert.rule_id, group_key=alert.group_key or None,
        data_classes=[alert.data_class] if alert.data_class else [],
        detected_at=alert.created_at, alert=alert, involves_personal_data=involves_personal_data,
        now=now,
    )
    record(session, "alert.incident", {"alert_id": alert.id, "incident_id": incident.id,
                                       "by": user.username, "rule_id": alert.rule_id},
           actor=user.username)
    return incident


def dismiss_alert(session: Session, alert: Alert, user: User, reason: str) -> Alert:
    """Dismiss an open alert with a reason (police); the alert is kept."""
    _require_role(user, ("police",), "bác bỏ cảnh báo")
    reason = _clean(reason, "lý do bác bỏ", required=True, limit=2000)
    session.flush()
    session.refresh(alert, with_for_update=True)
    if alert.state != AlertState.OPEN:
        raise WorkflowError("Cảnh báo này đã được xử lý.")
    alert.state = AlertState.DISMISSED
    alert.dismissed_reason = reason
    alert.dismissed_by_id = user.id
    record(session, "alert.dismissed", {"alert_id": alert.id, "rule_id": alert.rule_id,
                                        "by": user.username, "reason": redact_numbers(reason)},
           actor=user.username)
    session.flush()
    return alert


# ---------------------------------------------------------------- transitions


def _transition(session: Session, incident: Incident, user: User, action: str,
                acting: bool = False) -> str:
    sources, target, roles = TRANSITIONS[action]
    if not acting:
        _require_role(user, roles, ACTION_LABELS[action] + " sự cố")
    _lock(session, incident)
    if incident.state not in sources:
        state = STATE_LABELS.get(incident.state, incident.state)
        raise WorkflowError(
            f"Không thể {ACTION_LABELS[action]} sự cố #{incident.id} ở trạng thái “{state}”."
        )
    return target


def _acting_for(session: Session, user: User, role: str, settings, now: datetime) -> list[User]:
    """Return the absent holders of `role` the user stands in for today (service.auth.substitutes)."""
    from service.auth.substitutes import local_today, standing_in_for

    if user is None or not user.is_active or settings is None:
        return []
    return [u for u in standing_in_for(session, user, local_today(settings, now)) if u.has_role(role)]


def _settings_or_none(settings):
    if settings is not None:
        return settings
    from flask import current_app, has_app_context

    return current_app.config["SETTINGS"] if has_app_context() else None


CHANNELS = ("web", "sms", "cli")


def can_acknowledge(session: Session, incident: Incident, user: User, settings=None) -> bool:
    """Return whether the user may acknowledge now: a leader, or a leader's substitute today."""
    if incident.state != IncidentState.REPORTED or user is None or not user.is_active:
        return False
    return user.has_role("leader") or bool(
        _acting_for(session, user, "leader", _settings_or_none(settings), utcnow()))


def acknowledge_incident(session: Session, incident: Incident, user: User, *,
                         now: datetime | None = None, channel: str = "web",
                         settings=None) -> Incident:
    """Acknowledge a reported incident (leader or a leader's substitute); stops the escalation.

    channel says how it came (web page, SMS reply): the audit entry names it.
    """
    now = _as_utc(now) or utcnow()
    if channel not in CHANNELS:
        raise WorkflowError(f"Kênh không hợp lệ: {channel!r}")
    standing_for = [] if user is not None and user.has_role("leader") else _acting_for(
        session, user, "leader", _settings_or_none(settings), now)
    target = _transition(session, incident, user, "acknowledge", acting=bool(standing_for))
    incident.state = target
    incident.acknowledged_at = now
    incident.acknowledged_by_id = user.id
    minutes = max(0, int((now - incident.created_at).total_seconds() // 60))
    _audit(session, incident, "acknowledged", user, minutes_after_report=minutes,
           escalation_level=incident.escalation_level, channel=channel,
           standing_in_for=[u.username for u in standing_for] or None)
    others = [u for u in active_users_with_roles(session, "leader", "police") if u.id != user.id]
    if others:
        _notify(session, incident, "acknowledged", others,
                extra_text=f"{user.full_name or user.username} đã xác nhận đã nhận sự cố.",
                settings=settings)
    session.flush()
    return incident


def has_confirmed_receipt(session: Session, incident: Incident, user: User) -> bool:
    """Return whether this user already confirmed receiving the incident."""
    return session.scalar(select(IncidentReceipt.id).where(
        IncidentReceipt.incident_id == incident.id, IncidentReceipt.user_id == user.id)) is not None


def can_confirm_receipt(session: Session, incident: Incident, user: User, settings=None) -> bool:
    """Return whether the user may confirm receipt now (police or their substitute, once)."""
    if user is None or not user.is_active or incident.state not in OPEN_STATES:
        return False
    is_police = user.has_role("police") or bool(
        _acting_for(session, user, "police", _settings_or_none(settings), utcnow()))
    return is_police and not has_confirmed_receipt(session, incident, user)


def receipts(session: Session, incident: Incident) -> list[IncidentReceipt]:
    """Return the police receipt confirmations of an incident, oldest first."""
    return list(session.scalars(select(IncidentReceipt).where(
        IncidentReceipt.incident_id == incident.id).order_by(IncidentReceipt.id)))


def confirm_incident_receipt(session: Session, incident: Incident, user: User, *,
                             now: datetime | None = None, channel: str = "web",
                             settings=None) -> IncidentReceipt:
    """Record that a police officer (or their substitute) received the incident; no state change.

    This is not the leader's acknowledgement: the incident stays where it is and escalation
    goes on until a leader acknowledges.
    """
    now = _as_utc(now) or utcnow()
    if channel not in CHANNELS:
        raise WorkflowError(f"Kênh không hợp lệ: {channel!r}")
    standing_for = [] if user is not None and user.has_role("police") else _acting_for(
        session, user, "police", _settings_or_none(settings), now)
    if not standing_for:
        _require_role(user, ("police",), "xác nhận đã nhận tin về sự cố")
    _lock(session, incident)
    if incident.state not in OPEN_STATES:
        raise WorkflowError(f"Sự cố #{incident.id} đã kết thúc, không cần xác nhận đã nhận tin.")
    if has_confirmed_receipt(session, incident, user):
        raise WorkflowError(f"Bạn đã xác nhận đã nhận tin về sự cố #{incident.id} trước đó.")
    receipt = IncidentReceipt(incident_id=incident.id, user_id=user.id, confirmed_at=now,
                              channel=channel)
    session.add(receipt)
    session.flush()
    minutes = max(0, int((now - incident.created_at).total_seconds() // 60))
    _audit(session, incident, "receipt_confirmed", user, minutes_after_report=minutes,
           channel=channel, standing_in_for=[u.username for u in standing_for] or None)
    return receipt


def start_investigation(session: Session, incident: Incident, user: User, *,
                        now: datetime | None = None) -> Incident:
    """Start investigating an acknowledged incident (police)."""
    target = _transition(session, incident, user, "start_investigation")
    incident.state = target
    incident.investigating_at = _as_utc(now) or utcnow()
    _audit(session, incident, "investigating", user)
    session.flush()
    return incident


def contain_incident(session: Session, incident: Incident, user: User, *, actions: str,
                     now: datetime | None = None) -> Incident:
    """Record that the leak is contained and what was done (police; actions required)."""
    target = _transition(session, incident, user, "contain")
    actions = _clean(actions, "các biện pháp ngăn chặn đã thực hiện", required=True)
    incident.state = target
    incident.contained_at = _as_utc(now) or utcnow()
    incident.containment_actions = actions
    _audit(session, incident, "contained", user, actions=redact_numbers(actions))
    session.flush()
    return incident


def resolve_incident(session: Session, incident: Incident, user: User, *, cause: str,
                     measures: str, now: datetime | None = None) -> Incident:
    """Record the cause and the remedial measures (police; both required)."""
    target = _transition(session, incident, user, "resolve")
    cause = _clean(cause, "nguyên nhân", required=True)
    measures = _clean(measures, "biện pháp khắc phục", required=True)
    incident.state = target
    incident.resolved_at = _as_utc(now) or utcnow()
    incident.cause = cause
    incident.measures = measures
    _audit(session, incident, "resolved", user, cause=redact_numbers(cause),
           measures=redact_numbers(measures))
    session.flush()
    return incident


def close_incident(session: Session, incident: Incident, user: User, *, note: str = "",
                   no_notice_reason: str | None = None, now: datetime | None = None) -> Incident:
    """Close a resolved incident (leader); personal-data incidents need the notice or a reason."""
    target = _transition(session, incident, user, "close")
    note = _clean(note, "ghi chú", required=False)
    no_notice_reason = _clean(no_notice_reason, "lý do không gửi thông báo", required=False)
    if incident.involves_personal_data and incident.notice_sent_at is None and not no_notice_reason:
        raise WorkflowError(
            "Sự cố có liên quan dữ liệu cá nhân: hãy ghi nhận việc đã gửi thông báo vi phạm "
            "(Mẫu số 08) hoặc nêu lý do không gửi trước khi đóng."
        )
    incident.state = target
    incident.closed_at = _as_utc(now) or utcnow()
    if incident.notice_sent_at is None and no_notice_reason:
        incident.no_notice_reason = no_notice_reason
    _audit(session, incident, "closed", user, note=redact_numbers(note),
           no_notice_reason=redact_numbers(incident.no_notice_reason))
    session.flush()
    return incident


def dismiss_incident(session: Session, incident: Incident, user: User, *, reason: str,
                     now: datetime | None = None) -> Incident:
    """Dismiss an open incident with a reason (police); leaders are told."""
    target = _transition(session, incident, user, "dismiss")
    reason = _clean(reason, "lý do bác bỏ", required=True)
    previous = incident.state
    incident.state = target
    incident.dismissed_at = _as_utc(now) or utcnow()
    incident.dismiss_reason = reason
    _audit(session, incident, "dismissed", user, reason=redact_numbers(reason),
           from_state=str(previous))
    _notify(session, incident, "dismissed", active_users_with_roles(session, "leader"),
            extra_text=f"Lý do: {redact_numbers(reason)}")
    session.flush()
    return incident


def record_breach_notice_sent(session: Session, incident: Incident, user: User, *,
                              sent_at: datetime, channel: str, reference: str,
                              late_reason: str | None = None,
                              now: datetime | None = None) -> Incident:
    """Record that the 72-hour notice went to the authority (leader); late needs a reason."""
    _require_role(user, ("leader",), "ghi nhận việc gửi thông báo vi phạm")
    _lock(session, incident)
    if incident.state == IncidentState.DISMISSED:
        raise WorkflowError("Sự cố đã bị bác bỏ, không cần thông báo vi phạm.")
    if incident.notice_sent_at is not None:
        raise WorkflowError("Việc gửi thông báo vi phạm đã được ghi nhận trước đó.")
    if channel not in NOTICE_CHANNELS:
        raise WorkflowError(f"Kênh gửi không hợp lệ: {channel!r}")
    reference = _clean(reference, "số văn bản hoặc mã tiếp nhận", required=True, limit=200)
    late_reason = _clean(late_reason, "lý do gửi muộn", required=False)
    now = _as_utc(now) or utcnow()
    sent_at = _as_utc(sent_at)
    if sent_at is None:
        raise WorkflowError("Cần nhập thời điểm gửi.")
    if sent_at > now + CLOCK_SKEW:
        raise WorkflowError("Thời điểm gửi không thể ở tương lai.")
    if sent_at < incident.detected_at - CLOCK_SKEW:
        raise WorkflowError("Thời điểm gửi không thể trước khi phát hiện sự cố.")
    is_late = incident.notice_due_at is not None and sent_at > incident.notice_due_at
    if is_late and not late_reason:
        raise WorkflowError("Thông báo được gửi sau thời hạn 72 giờ: cần nêu lý do gửi muộn.")
    incident.notice_sent_at = sent_at
    incident.notice_channel = channel
    incident.notice_reference = reference
    incident.notice_late_reason = late_reason if is_late else None
    _audit(session, incident, "notice_sent", user, sent_at=_stamp(sent_at), channel=channel,
           reference=redact_numbers(reference), is_late=is_late,
           notice_due_at=_stamp(incident.notice_due_at),
           late_reason=redact_numbers(late_reason) if is_late else None)
    session.flush()
    return incident


# ---------------------------------------------------------------- comments and evidence


def _require_contributor(incident: Incident, user: User, action: str) -> None:
    if user is None or not can_contribute(incident, user):
        raise WorkflowPermissionError(
            f"Chỉ người báo cáo, Công an xã hoặc lãnh đạo UBND xã mới được {action}."
        )


def add_comment(session: Session, incident: Incident, user: User, body: str, *,
                now: datetime | None = None) -> IncidentComment:
    """Add a comment at any state (reporter, police, leader); its hash goes into the trail."""
    _require_contributor(incident, user, "bình luận")
    body = _clean(body, "nội dung bình luận", required=True)
    comment = IncidentComment(incident_id=incident.id, author_id=user.id, body=body,
                              created_at=_as_utc(now) or utcnow())
    session.add(comment)
    session.flush()
    # The text stays in the comment row; the trail gets its hash, so an edit would show.
    _audit(session, incident, "commented", user, comment_id=comment.id, length=len(body),
           sha256=hashlib.sha256(body.encode()).hexdigest())
    return comment


def evidence_dir(settings) -> Path:
    """Return the folder that holds encrypted evidence files."""
    return Path(settings.data_dir) / "evidence"


def _associated(incident_id: int, stored_name: str) -> bytes:
    # Binds the ciphertext to its incident: a file moved to another incident will not decrypt.
    return f"canhgac-evidence:{incident_id}:{stored_name}".encode()


def safe_filename(name: str) -> str:
    """Return a display file name without folders or control characters (max 200 chars)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().strip(".") or "tep-dinh-kem"
    return base[-200:]


def attach_evidence(session: Session, settings, incident: Incident, user: User, *, filename: str,
                    data: bytes, content_type: str | None = None,
                    now: datetime | None = None) -> IncidentEvidence:
    """Store an evidence file encrypted under data_dir/evidence; SHA-256 and size go to the trail."""
    from service.core.files import write_private
    from service.incidents.evidence import encrypt_evidence

    _require_contributor(incident, user, "thêm bằng chứng")
    if not data:
        raise WorkflowError("Tệp bằng chứng rỗng.")
    if len(data) > settings.evidence_max_bytes:
        limit_mb = settings.evidence_max_bytes / (1024 * 1024)
        raise WorkflowError(f"Tệp bằng chứng quá lớn (tối đa {limit_mb:.0f} MB).")
    filename = safe_filename(filename)
    content_type = (content_type or "application/octet-stream")[:128]
    stored_name = uuid.uuid4().hex
    sealed, sha256 = encrypt_evidence(settings.keys_dir, data,
                                      associated=_associated(incident.id, stored_name))
    folder = evidence_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(folder / stored_name, sealed)
    evidence = IncidentEvidence(
        incident_id=incident.id, uploaded_by_id=user.id, filename=filename,
        content_type=content_type, size=len(data), sha256=sha256, stored_name=stored_name,
        created_at=_as_utc(now) or utcnow(),
    )
    session.add(evidence)
    session.flush()
    _audit(session, incident, "evidence_attached", user, evidence_id=evidence.id,
           filename=redact_numbers(filename), size=len(data), sha256=sha256,
           content_type=content_type)
    return evidence


def read_evidence(session: Session, settings, evidence: IncidentEvidence, user: User) -> bytes:
    """Decrypt an evidence file for police or leaders; the download is recorded in the trail."""
    from service.incidents.evidence import decrypt_evidence

    _require_role(user, ("police", "leader"), "tải bằng chứng")
    stored = (evidence_dir(settings) / evidence.stored_name).read_bytes()
    data = decrypt_evidence(settings.keys_dir, stored,
                            associated=_associated(evidence.incident_id, evidence.stored_name))
    if hashlib.sha256(data).hexdigest() != evidence.sha256:
        raise ValueError("evidence does not match its recorded SHA-256")
    _audit(session, evidence.incident, "evidence_downloaded", user, evidence_id=evidence.id,
           sha256=evidence.sha256, size=evidence.size)
    return data


def record_document_download(session: Session, incident: Incident, user: User, *,
                             document: str, data: bytes) -> None:
    """Record that a generated document (Mẫu số 08, biên bản) of the incident was downloaded."""
    _require_role(user, ("police", "leader"), "tải văn bản của sự cố")
    _audit(session, incident, "document_downloaded", user, document=document, size=len(data),
           sha256=hashlib.sha256(data).hexdigest())
