"""Background jobs: remind units of their monthly part, announce the due day, review retention."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from service.audit import log
from service.auth.models import UNITS, User
from service.config import Settings
from service.core.db import utcnow
from service.core.jobs import job
from service.reports.models import ReportReminder

logger = structlog.get_logger("canhgac.reports")

REMINDER_HOUR = 7  # local time: no reminders in the middle of the night
ROLES_FILING_PARTS = ("official", "police")
ROLES_RECEIVING_REPORT = ("police", "leader")


def _active_users(session: Session, *, unit: str | None, roles: tuple[str, ...]) -> list[User]:
    query = select(User).where(User.is_disabled.is_(False))
    if unit is not None:
        query = query.where(User.unit == unit)
    return [u for u in session.scalars(query.order_by(User.id)) if u.has_role(*roles)]


def _notify(session: Session, users: list[User], **message) -> None:
    # Resolved at call time: the outbox belongs to the notify package.
    from service.notify.outbox import notify_users

    notify_users(session, users, **message)


def _reminded(session: Session, month: str, kind: str, unit: str, day: date) -> bool:
    return session.scalar(
        select(func.count()).select_from(ReportReminder).where(
            ReportReminder.month == month, ReportReminder.kind == kind,
            ReportReminder.unit == unit, ReportReminder.sent_on == day,
        )
    ) > 0


def send_part_reminders(session: Session, settings: Settings, now: datetime) -> list[str]:
    """Remind every unit without a part for last month, once a day from the 1st to the due day.

    On the due day also tell police and leaders the report is due. Returns the units reminded.
    """
    from service.reports.monthly import missing_units, month_period, previous_month

    local = now.astimezone(ZoneInfo(settings.timezone))
    if local.day > settings.report_due_day or local.hour < REMINDER_HOUR:
        return []
    month = previous_month(now, settings.timezone)
    period = month_period(month, settings.timezone, settings.report_due_day)
    today = local.date()
    due_label = period.parts_due_at.astimezone(ZoneInfo(settings.timezone)).strftime("%d/%m/%Y")
    link = f"{settings.base_url.rstrip('/')}/reports/{month}/part"
    reminded = []
    for unit in missing_units(session, month):
        if _reminded(session, month, "part", unit, today):
            continue
        users = _active_users(session, unit=unit, roles=ROLES_FILING_PARTS)
        if users:
            overdue = now >= period.parts_due_at
            subject = (f"[Canh Gác] {'QUÁ HẠN' if overdue else 'Nhắc'} báo cáo tháng {period.label} — "
                       f"{UNITS.get(unit, unit)}")
            text = (f"Bộ phận {UNITS.get(unit, unit)} chưa gửi kết quả tháng {period.label} "
                    f"(việc đã làm, chưa làm, khó khăn, nguyên nhân, đề xuất). Hạn gửi: trước ngày "
                    f"{due_label}. Gửi tại: {link}\n"
                    f"Unit {unit} has not filed its part of the {month} report; due before {due_label}.")
            _notify(session, users, subject=subject, text=text, kind="report.reminder", link=link)
        _record_reminder(session, month, "part", unit, today, now, len(users))
        reminded.append(unit)
    if now >= period.parts_due_at and not _reminded(session, month, "due", "", today):
        missing = missing_units(session, month)
        users = _active_users(session, unit=None, roles=ROLES_RECEIVING_REPORT)
        report_link = f"{settings.base_url.rstrip('/')}/reports/{month}"
        names = "; ".join(UNITS.get(u, u) for u in missing) or "không"
        if users:
            _notify(session, users, subject=f"[Canh Gác] Đến hạn tổng hợp báo cáo tháng {period.label}",
                    text=(f"Đến hạn tổng hợp báo cáo tháng {period.label}. Bộ phận chưa gửi: {names}. "
                          f"Xem: {report_link}\nThe {month} report is due; units missing: "
                          f"{', '.join(missing) or 'none'}."),
                    kind="report.due", link=report_link)
        _record_reminder(session, month, "due", "", today, now, len(users))
    return reminded


def _record_reminder(session: Session, month: str, kind: str, unit: str, day: date,
                     now: datetime, recipients: int) -> None:
    session.add(ReportReminder(month=month, kind=kind, unit=unit, sent_on=day, sent_at=now,
                               recipients=recipients))
    session.flush()
    log.record(session, "report.reminder",
               {"month": month, "kind": kind, "unit": unit, "day": day.isoformat(),
                "recipients": recipients})
    if not recipients:
        logger.warning("report_reminder_no_recipients", month=month, kind=kind, unit=unit)


def retention_horizon(now: datetime, years: int) -> datetime:
    """Return the instant `years` calendar years before `now` (29 February → 28 February)."""
    if years < 5:
        raise ValueError("evidence is kept at least 5 years (Decree 356/2025 Art. 29)")
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def evidence_past_retention(session: Session, horizon: datetime) -> int:
    """Count evidence files of incidents closed or dismissed before the horizon."""
    from service.incidents.models import Incident, IncidentEvidence

    ended = or_(Incident.closed_at < horizon, Incident.dismissed_at < horizon)
    return session.scalar(
        select(func.count()).select_from(IncidentEvidence)
        .join(Incident, Incident.id == IncidentEvidence.incident_id).where(ended)
    ) or 0


def review_retention(session: Session, settings: Settings, now: datetime) -> int:
    """Record how much evidence has passed its retention horizon; delete nothing.

    The audit trail is never pruned. Evidence older than the horizon may be disposed of only
    by a person's decision (Decree 356 sets a minimum, not a duty to destroy), so this job only
    reports it; it returns the count.
    """
    horizon = retention_horizon(now, settings.evidence_retention_years)
    count = evidence_past_retention(session, horizon)
    log.record(session, "retention.reviewed",
               {"horizon": horizon.isoformat(), "years": settings.evidence_retention_years,
                "evidence_past_horizon": count, "deleted": 0})
    return count


@job("reports.part_reminders", every=lambda s: 3600)
def part_reminders_job(app, session, now: datetime | None = None) -> None:
    """Remind units of their monthly part and announce the due day (hourly, once a day each)."""
    send_part_reminders(session, app.config["SETTINGS"], now or utcnow())


@job("reports.retention_review", every=lambda s: 86400)
def retention_review_job(app, session, now: datetime | None = None) -> None:
    """Review evidence retention once a day (reports, never deletes)."""
    review_retention(session, app.config["SETTINGS"], now or utcnow())
