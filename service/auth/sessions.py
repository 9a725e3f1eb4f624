"""Server-side sessions: one row per signed-in browser, checked on every request.

The signed Flask cookie carries only a random token (and flask-login's user id); whether that
token still opens anything is decided here, so ending a session takes effect at once, even for
a copy of the cookie saved before. Operations only flush; the caller commits.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from service.audit.log import record
from service.auth.models import User, UserSession
from service.core.db import utcnow

# Why a session ended (user_session.end_reason).
LOGOUT = "logout"
PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason name, not a password
ROLES_CHANGED = "roles_changed"
DISABLED = "disabled"
SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
ENDED_BY_ADMIN = "ended_by_admin"
IDLE = "idle"
EXPIRED = "expired"
LOCKED = "locked"  # wrong current passwords locked the account while signed in
REPLACED = "replaced"  # the same browser signed in again


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, *, remote_addr: str | None) -> tuple[UserSession, str]:
    """Start a session for a user who just signed in; return the row and the cookie's token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = UserSession(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                      last_seen_at=now, remote_addr=(remote_addr or "")[:64] or None)
    session.add(row)
    session.flush()
    return row, token


def find_session(session: Session, token: object) -> UserSession | None:
    """Return the session row a cookie's token names (ended or not), or None."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    return session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))


def expiry_reason(row: UserSession, now: datetime, *, idle: timedelta, max_life: timedelta) -> str | None:
    """Return why an open session may no longer be used (idle, expired), or None."""
    if now - row.last_seen_at > idle:
        return IDLE
    if now - row.created_at > max_life:
        return EXPIRED
    return None


def end_session(row: UserSession, reason: str, now: datetime | None = None) -> None:
    """End one session (no-op when already ended)."""
    if row.ended_at is None:
        row.ended_at = now or utcnow()
        row.end_reason = reason


def end_user_sessions(session: Session, user: User, *, reason: str,
                      keep_id: int | None = None) -> int:
    """End every open session of a user, except ``keep_id``; return how many were ended."""
    query = (update(UserSession)
             .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
             .values(ended_at=utcnow(), end_reason=reason)
             .execution_options(synchronize_session="fetch"))
    if keep_id is not None:
        query = query.where(UserSession.id != keep_id)
    return session.execute(query).rowcount or 0


def open_sessions(session: Session, user: User, *, idle: timedelta, max_life: timedelta,
                  now: datetime | None = None) -> list[UserSession]:
    """Return a user's sessions that would still open pages now, newest first."""
    now = now or utcnow()
    rows = session.scalars(select(UserSession).where(
        UserSession.user_id == user.id, UserSession.ended_at.is_(None),
        UserSession.last_seen_at >= now - idle, UserSession.created_at >= now - max_life,
    ).order_by(UserSession.created_at.desc(), UserSession.id.desc()))
    return list(rows)


def sign_out_everywhere(session: Session, user: User, *, by: str) -> int:
    """End every session of a user (the user's own request or an admin's) and audit it."""
    reason = SIGNED_OUT_EVERYWHERE if by == user.username else ENDED_BY_ADMIN
    count = end_user_sessions(session, user, reason=reason)
    session.flush()
    record(session, "auth.sessions_ended",
           {"by": by, "user": user.username, "reason": reason, "sessions": count}, actor=by)
    return count


def prune_sessions(session: Session, before: datetime) -> int:
    """Delete sessions ended, or started, before a moment (pass one past the maximum life).

    Such rows can never open anything again; their ends are in the trail where it matters
    (logout, sign-out everywhere, account changes).
    """
    result = session.execute(delete(UserSession).where(or_(
        UserSession.ended_at < before, UserSession.created_at < before)))
    return result.rowcount or 0
