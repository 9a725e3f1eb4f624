"""Substitutes: a leader or police officer on leave names who stands in for them, and when.

Dates are local calendar days (the settings' time zone), inclusive. During the range the
notices and escalations sent to the absent person also go to the substitute, and the
substitute may do what the absent person's leader/police role does with a new incident:
acknowledge it, confirm its receipt. Operations flush; the caller commits.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit.log import record
from service.auth.models import Role, Substitution, User
from service.core.db import utcnow

# Roles whose holders are reached about incidents and may name a substitute.
COVERED_ROLES = (Role.LEADER.value, Role.POLICE.value)
MAX_DAYS = 366


class SubstitutionError(ValueError):
    """A substitution was refused; the message says why, in Vietnamese."""


def local_today(settings, now: datetime | None = None) -> date:
    """Return today's date where the commune is."""
    return (now or utcnow()).astimezone(ZoneInfo(settings.timezone)).date()


def name_substitute(session: Session, user: User, substitute: User, *, starts_on: date,
                    ends_on: date, by: User | None) -> Substitution:
    """Record that `substitute` stands in for `user` from starts_on to ends_on (admin or self).

    by None is the server's command line (whoever runs it administers the server).
    """
    if by is not None and by.id != user.id and not by.has_role(Role.ADMIN.value):
        raise SubstitutionError("Chỉ người nghỉ hoặc quản trị hệ thống mới được chỉ định người thay.")
    if not user.has_role(*COVERED_ROLES):
        raise SubstitutionError("Chỉ lãnh đạo UBND xã và Công an xã mới cần người thay khi nghỉ.")
    if substitute.id == user.id:
        raise SubstitutionError("Người thay phải là người khác.")
    if substitute.is_disabled:
        raise SubstitutionError("Tài khoản người thay đã bị vô hiệu hóa.")
    if ends_on < starts_on:
        raise SubstitutionError("Ngày kết thúc phải từ ngày bắt đầu trở đi.")
    if (ends_on - starts_on).days >= MAX_DAYS:
        raise SubstitutionError(f"Thời gian nghỉ tối đa {MAX_DAYS} ngày cho một lần chỉ định.")
    row = Substitution(user_id=user.id, substitute_id=substitute.id, starts_on=starts_on,
                       ends_on=ends_on, created_by_id=by.id if by else None,
                       created_at=utcnow())
    session.add(row)
    session.flush()
    record(session, "user.substitute_named", {
        "substitution": row.id, "username": user.username, "substitute": substitute.username,
        "starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat(),
        "by": by.username if by else "cli",
    }, actor=by.username if by else "cli")
    return row


def cancel_substitution(session: Session, row: Substitution, *, by: User | None) -> Substitution:
    """Cancel a substitution (admin, the absent person or the CLI); the row stays for the record."""
    if by is not None and by.id != row.user_id and not by.has_role(Role.ADMIN.value):
        raise SubstitutionError("Chỉ người nghỉ hoặc quản trị hệ thống mới được hủy việc chỉ định.")
    if row.cancelled_at is not None:
        raise SubstitutionError("Việc chỉ định này đã được hủy.")
    row.cancelled_at = utcnow()
    session.flush()
    record(session, "user.substitute_cancelled", {
        "substitution": row.id, "username": row.user.username,
        "substitute": row.substitute.username, "by": by.username if by else "cli",
    }, actor=by.username if by else "cli")
    return row


def substitutions_on(session: Session, day: date) -> list[Substitution]:
    """Return the substitutions in force on a day, absent person first by name."""
    rows = session.scalars(select(Substitution).where(
        Substitution.cancelled_at.is_(None), Substitution.starts_on <= day,
        Substitution.ends_on >= day).order_by(Substitution.id))
    return [r for r in rows if not r.substitute.is_disabled]


def substitutions_of(session: Session, user: User) -> list[Substitution]:
    """Return the substitutions a user named or stands in, newest first."""
    return list(session.scalars(select(Substitution).where(
        (Substitution.user_id == user.id) | (Substitution.substitute_id == user.id))
        .order_by(Substitution.id.desc())))


def standing_in_for(session: Session, user: User, day: date) -> list[User]:
    """Return the absent people this user stands in for on the day."""
    return [r.user for r in substitutions_on(session, day)
            if r.substitute_id == user.id and not r.user.is_disabled]


def acts_as(session: Session, user: User, role: str, day: date) -> bool:
    """Return whether the user holds the role or stands in for someone who does, on the day."""
    if user.has_role(role):
        return True
    return any(absent.has_role(role) for absent in standing_in_for(session, user, day))


def add_substitutes(session: Session, users: list[User], day: date) -> list[tuple[User, User | None]]:
    """Return (recipient, absent person they stand in for or None) with substitutes added."""
    by_absent: dict[int, list[User]] = {}
    for row in substitutions_on(session, day):
        by_absent.setdefault(row.user_id, []).append(row.substitute)
    result: dict[int, tuple[User, User | None]] = {}
    for user in users:
        result.setdefault(user.id, (user, None))
    for user in users:
        for substitute in by_absent.get(user.id, []):
            # A substitute already reached in their own right still learns they stand in.
            if result.get(substitute.id, (None, None))[1] is None:
                result[substitute.id] = (substitute, user)
    return list(result.values())
