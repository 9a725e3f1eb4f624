"""Background duties: escalate unacknowledged incidents; remind of the 72-hour notice.

Both are idempotent and catch up when run late: state that says what was already done
(``escalation_level``, ``reminders_sent``) lives on the incident and changes in the same
transaction as the notification and the audit entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.models import User
from service.core.db import utcnow
from service.core.jobs import job
from service.incidents.models import OPEN_STATES, Incident, IncidentState
from service.incidents.workflow import _as_utc, _audit, _notify, _stamp, active_users_with_roles

ROLE_PREFIX = "role:"
# In a step, "sms" names the channel, not a person: from that step on, notices go by SMS too.
SMS_STEP = "sms"


def _locked_rows(session: Session, query):
    # PostgreSQL: skip rows someone is changing right now (e.g. a leader acknowledging);
    # the next run sees them with their new state. SQLite serializes writers anyway.
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def step_recipients(session: Session, names: list[str]) -> tuple[list[User], list[str]]:
    """Resolve one escalation step ("role:leader", usernames) to active users and unknown names."""
    if not [n for n in names if n != SMS_STEP]:
        return active_users_with_roles(session, "leader", "police"), []
    users: dict[int, User] = {}
    unknown: list[str] = []
    for name in names:
        if name == SMS_STEP:
            continue
        if name.startswith(ROLE_PREFIX):
            found = active_users_with_roles(session, name.removeprefix(ROLE_PREFIX))
        else:
            user = session.scalar(select(User).where(User.username == name))
            found = [user] if user is not None and user.is_active else []
        if not found:
            unknown.append(name)
        users.update((u.id, u) for u in found)
    return sorted(users.values(), key=lambda u: u.username), unknown


def escalation_recipients(session: Session, settings, level: int) -> tuple[list[User], list[str]]:
    """Return who hears of escalation `level` (1-based): all leaders and police plus that step."""
    steps = list(settings.escalation_steps)
    base = active_users_with_roles(session, "leader", "police")
    # Beyond the last configured step the last step is repeated; no steps: leaders and police.
    step = steps[min(level, len(steps)) - 1] if steps else []
    extra, unknown = step_recipients(session, step)
    everyone = {u.id: u for u in [*base, *extra]}
    return sorted(everyone.values(), key=lambda u: u.username), unknown


def is_sms_step(settings, level: int) -> bool | None:
    """Return whether escalation `level` goes by SMS: None when no step names SMS (always SMS)."""
    steps = list(settings.escalation_steps)
    if not any(SMS_STEP in step for step in steps):
        return None
    return SMS_STEP in steps[min(level, len(steps)) - 1]


def escalate_overdue(session: Session, settings, *, now: datetime | None = None) -> list[Incident]:
    """Escalate each incident still unacknowledged one SLA period after the last step."""
    now = _as_utc(now) or utcnow()
    sla = timedelta(minutes=settings.ack_sla_minutes)
    rows = _locked_rows(session, select(Incident).where(
        Incident.state == IncidentState.REPORTED, Incident.created_at <= now - sla,
    ).order_by(Incident.id))
    escalated = []
    for incident in rows:
        due_level = int((now - incident.created_at) / sla)
        if due_level <= (incident.escalation_level or 0):
            continue  # already escalated for this period (a second run, or a run too early)
        skipped = due_level - (incident.escalation_level or 0) - 1
        recipients, unknown = escalation_recipients(session, settings, due_level)
        incident.escalation_level = due_level
        incident.last_escalated_at = now
        minutes = int((now - incident.created_at).total_seconds() // 60)
        _audit(session, incident, "escalated", None, level=due_level, skipped_levels=skipped or None,
               minutes_unacknowledged=minutes, recipients=[u.username for u in recipients],
               unknown_recipients=unknown or None)
        _notify(session, incident, "escalated", recipients, extra_text=(
            f"Sự cố chưa được lãnh đạo UBND xã xác nhận sau {minutes} phút "
            f"(báo động lần {due_level})."
        ), settings=settings, by_sms=is_sms_step(settings, due_level))
        escalated.append(incident)
    session.flush()
    return escalated


def _local(settings, value: datetime) -> str:
    return value.astimezone(ZoneInfo(settings.timezone)).strftime("%H:%M ngày %d/%m/%Y")


def send_deadline_reminders(session: Session, settings, *,
                            now: datetime | None = None) -> list[tuple[Incident, int]]:
    """Remind of the notice to the authority at each configured hour after detection, once each."""
    now = _as_utc(now) or utcnow()
    marks = sorted(settings.breach_reminder_hours)
    if not marks:
        return []
    rows = _locked_rows(session, select(Incident).where(
        Incident.involves_personal_data.is_(True),
        Incident.notice_sent_at.is_(None),
        Incident.state.in_([str(s) for s in OPEN_STATES]),
        Incident.detected_at <= now - timedelta(hours=marks[0]),
    ).order_by(Incident.id))
    sent: list[tuple[Incident, int]] = []
    for incident in rows:
        done = set(incident.reminders_sent or [])
        due = [h for h in marks if h not in done and incident.detected_at + timedelta(hours=h) <= now]
        if not due:
            continue
        # Run late past several marks: one reminder for the latest, the older ones count as done.
        hour = due[-1]
        incident.reminders_sent = sorted(done | set(due))
        deadline = incident.notice_due_at or incident.detected_at + timedelta(
            hours=settings.breach_notice_hours)
        left = deadline - now
        if left.total_seconds() > 0:
            hours_left = int(left.total_seconds() // 3600)
            text = (f"Còn khoảng {hours_left} giờ đến hạn thông báo vi phạm cho cơ quan chuyên "
                    f"trách bảo vệ dữ liệu cá nhân (Bộ Công an): hạn {_local(settings, deadline)}.")
        else:
            text = (f"Đã quá hạn thông báo vi phạm cho cơ quan chuyên trách bảo vệ dữ liệu cá "
                    f"nhân (hạn {_local(settings, deadline)}): gửi ngay và nêu lý do gửi muộn.")
        recipients = active_users_with_roles(session, "leader", "police")
        _audit(session, incident, "deadline_reminder", None, hour=hour,
               skipped_hours=[h for h in due if h != hour] or None,
               notice_due_at=_stamp(deadline), recipients=[u.username for u in recipients])
        _notify(session, incident, "deadline_reminder", recipients, extra_text=text,
                settings=settings)
        sent.append((incident, hour))
    session.flush()
    return sent


@job("incidents.escalate", every=lambda settings: 60)
def escalation_job(app, session: Session) -> None:
    """Escalate unacknowledged incidents (every minute)."""
    escalate_overdue(session, app.config["SETTINGS"])


@job("incidents.deadline", every=lambda settings: 300)
def deadline_job(app, session: Session) -> None:
    """Send the 72-hour notice reminders that are due (every five minutes)."""
    send_deadline_reminders(session, app.config["SETTINGS"])
