"""Account and token operations; they flush, the caller commits."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.audit.log import record
from service.auth import sessions
from service.auth.models import (
    TOKEN_SCOPE_INGEST,
    TOKEN_SCOPE_MONITOR,
    TOKEN_SCOPES,
    UNITS,
    IngestToken,
    LoginThrottle,
    Role,
    User,
)
from service.auth.passwords import hash_password, verify_password
from service.core.db import utcnow

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TOKEN_PREFIX = "cg_"  # noqa: S105 - a public prefix that makes leaked tokens greppable


class AccountError(ValueError):
    """A user or token operation was refused; the message says why (Vietnamese)."""


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a login attempt."""

    user: User | None
    reason: str | None  # None on success; "bad_credentials", "locked", "disabled"


def _check_password(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise AccountError(f"Mật khẩu phải có ít nhất {min_length} ký tự")


def _normalize_phone(phone: str | None) -> str | None:
    from service.auth.phones import PhoneError, normalize_mobile

    try:
        return normalize_mobile(phone)
    except PhoneError as exc:
        raise AccountError(str(exc)) from None


def set_phone(session: Session, user: User, phone: str | None, *, by: str) -> User:
    """Set or clear a user's mobile number (validated, stored as E.164); the trail says only that."""
    normalized = _normalize_phone(phone)
    if normalized == user.phone:
        return user
    had_phone = bool(user.phone)
    user.phone = normalized
    session.flush()
    # Whose number changed, never the number itself.
    record(session, "user.phone_changed", {"by": by, "username": user.username,
                                           "had_phone": had_phone, "has_phone": bool(normalized)},
           actor=by)
    return user


def _user_summary(user: User) -> dict:
    # Audit bodies name accounts and roles, never phone numbers.
    return {"username": user.username, "roles": sorted(user.roles), "unit": user.unit}


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    roles: list[str],
    email: str,
    unit: str | None = None,
    phone: str | None = None,
    full_name: str = "",
    min_password_length: int = 10,
    by: str = "system",
    is_seeding: bool = False,
) -> User:
    """Create a user with the given roles, write the audit entry, announce a privileged one.

    ``is_seeding``: the first accounts of a new installation (``init`` on an empty table, the
    demo, test fixtures), made before anyone watches; nothing is announced for them.
    """
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise AccountError("Tên đăng nhập chỉ gồm chữ thường, số, dấu chấm, gạch (2–64 ký tự)")
    if not roles:
        raise AccountError("Cần ít nhất một vai trò")
    bad = [r for r in roles if r not in {x.value for x in Role}]
    if bad:
        raise AccountError(f"Vai trò không tồn tại: {', '.join(bad)}")
    if not _EMAIL.match(email or ""):
        raise AccountError("Địa chỉ email không hợp lệ")
    if unit is not None and unit not in UNITS:
        raise AccountError(f"Đơn vị không tồn tại: {unit}")
    _check_password(password, min_password_length)
    if session.scalar(select(func.count()).select_from(User).where(User.username == username)):
        raise AccountError(f"Tên đăng nhập đã tồn tại: {username}")
    user = User(
        username=username,
        full_name=full_name,
        email=email,
        unit=unit,
        phone=_normalize_phone(phone),
        roles=sorted(set(roles)),
        password_hash=hash_password(password),
    )
    session.add(user)
    session.flush()
    record(session, "user.created", {"by": by, "user": _user_summary(user)}, actor=by)
    # After seeding, a new admin, leader or police account is a change of who may do what.
    if not is_seeding and user.has_role(Role.ADMIN, Role.LEADER, Role.POLICE):
        _announce(session, f"Đã tạo tài khoản {user.username} có vai trò {_roles_text(user.roles)}",
                  [f"Đơn vị: {user.unit or 'không'}."], by=by)
    return user


def get_user(session: Session, username: str) -> User:
    """Return the user with this name or raise AccountError."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise AccountError(f"Không có người dùng: {username}")
    return user


def _announce(session: Session, headline: str, details: list[str], *, by: str,
              concerns: User | None = None, was_watcher: bool = False) -> None:
    # Resolved at call time: the outbox belongs to the notify package, which imports ours.
    from service.notify.security import notify_security_change

    also = [concerns] if concerns is not None and was_watcher else []
    notify_security_change(session, headline=headline, details=details, by=by, also=also)


def active_lockouts(session: Session, user: User) -> list[LoginThrottle]:
    """Return the source addresses currently locked out of this account, soonest end first."""
    return list(session.scalars(
        select(LoginThrottle).where(LoginThrottle.username == user.username,
                                    LoginThrottle.locked_until_at > utcnow())
        .order_by(LoginThrottle.locked_until_at)))


def unlock_user(session: Session, user: User, *, by: str) -> None:
    """Lift every lockout of an account (all sources and account-wide), audit and announce it.

    The account-wide failure count is kept: unlocking between rounds of guesses must not
    reset the budget (only a successful login or a new password does). Announced because an
    admin unlocking again and again is how they would guess a leader's password.
    """
    sources = [row.remote_addr for row in active_lockouts(session, user)]
    was_locked = _is_locked(user, None, utcnow())
    user.locked_until_at = None
    session.execute(delete(LoginThrottle).where(LoginThrottle.username == user.username))
    session.flush()
    record(session, "user.unlocked",
           {"by": by, "user": user.username, "sources": sources, "account_wide": was_locked},
           actor=by)
    if sources or was_locked:
        scope = "toàn tài khoản" if was_locked else f"{len(sources)} địa chỉ"
        _announce(session, f"Đã gỡ khóa đăng nhập của tài khoản {user.username}",
                  [f"Phạm vi khóa được gỡ: {scope}.",
                   f"Vai trò của tài khoản: {_roles_text(user.roles)}."], by=by)


def _clear_lockouts(session: Session, user: User) -> None:
    user.failed_logins = 0
    user.locked_until_at = None
    session.execute(delete(LoginThrottle).where(LoginThrottle.username == user.username))


def _is_watcher(user: User) -> bool:
    return user.has_role(Role.LEADER, Role.POLICE)


def change_password(
    session: Session, user: User, password: str, *, min_password_length: int = 10, by: str,
    keep_session_id: int | None = None,
) -> None:
    """Set a new password, clear any lockout, end the user's sessions, audit; announce a reset.

    A reset by someone else (an admin, the CLI) is announced to leadership and police: it
    is how an insider would take over the account of the person who watches them. Every
    session of the user ends except ``keep_session_id`` (the one that changed its own password).
    """
    _check_password(password, min_password_length)
    user.password_hash = hash_password(password)
    _clear_lockouts(session, user)
    sessions.end_user_sessions(session, user, reason=sessions.PASSWORD_CHANGED,
                               keep_id=keep_session_id)
    session.flush()
    record(session, "user.password_changed", {"by": by, "user": user.username}, actor=by)
    if by != user.username:
        _announce(session, f"Mật khẩu của tài khoản {user.username} đã được đặt lại",
                  [f"Vai trò của tài khoản: {_roles_text(user.roles)}."], by=by)


def disable_user(session: Session, user: User, *, by: str) -> None:
    """Disable an account (it is never deleted), write the audit entry and announce it."""
    if user.is_disabled:
        return
    user.is_disabled = True
    sessions.end_user_sessions(session, user, reason=sessions.DISABLED)
    session.flush()
    record(session, "user.disabled", {"by": by, "user": user.username}, actor=by)
    _announce(session, f"Tài khoản {user.username} đã bị vô hiệu hóa",
              [f"Vai trò của tài khoản: {_roles_text(user.roles)}."], by=by,
              concerns=user, was_watcher=_is_watcher(user))


def enable_user(session: Session, user: User, *, by: str) -> None:
    """Enable a disabled account again with a cleared lockout, audit it and announce it."""
    if not user.is_disabled:
        return
    user.is_disabled = False
    _clear_lockouts(session, user)
    session.flush()
    record(session, "user.enabled", {"by": by, "user": user.username}, actor=by)
    _announce(session, f"Tài khoản {user.username} đã được kích hoạt lại",
              [f"Vai trò của tài khoản: {_roles_text(user.roles)}."], by=by)


def _roles_text(roles: list[str]) -> str:
    from service.notify.security import role_list

    return role_list(roles)


def set_roles(session: Session, user: User, roles: list[str], *, by: str,
              keep_session_id: int | None = None, notes: tuple[str, ...] = ()) -> None:
    """Replace a user's roles, end their sessions on a real change, audit it and announce it.

    ``keep_session_id`` keeps the session that made the change (an admin changing their own
    roles stays signed in there); every other session of the user signs in again. ``notes``
    are extra lines for the announcement (an approved grant names who asked for it).
    This applies the change at once: web pages reach it for a grant of police, leader or
    admin only through an approved request (service.auth.grants).
    """
    bad = [r for r in roles if r not in {x.value for x in Role}]
    if bad or not roles:
        raise AccountError("Vai trò không hợp lệ")
    before = sorted(user.roles)
    was_watcher = _is_watcher(user) and not user.is_disabled
    user.roles = sorted(set(roles))
    if before != user.roles:
        sessions.end_user_sessions(session, user, reason=sessions.ROLES_CHANGED,
                                   keep_id=keep_session_id)
    session.flush()
    record(
        session,
        "user.roles_changed",
        {"by": by, "user": user.username, "before": before, "after": user.roles},
        actor=by,
    )
    if before != user.roles:
        _announce(session, f"Vai trò của tài khoản {user.username} đã thay đổi",
                  [f"Trước: {_roles_text(before)}.", f"Sau: {_roles_text(user.roles)}.", *notes],
                  by=by, concerns=user, was_watcher=was_watcher)


# A lockout is per (account, source address); across all sources an account locks only after
# this many times the per-source limit, so a guesser must spread over many addresses to lock
# it, and one with a few addresses gets few guesses.
ACCOUNT_LOCK_FACTOR = 4


def source_key(remote_addr: str | None) -> str:
    """Return the throttle key of a client address: IPv6 by its /64, anything else as given.

    One IPv6 host usually holds a whole /64: counting single addresses would hand it a fresh
    budget of guesses (and a new row) for every one of them.
    """
    text = (remote_addr or "-").strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def prune_login_throttle(session: Session, idle_since) -> int:
    """Delete throttle rows not locked now and without a failure since ``idle_since``."""
    now = utcnow()
    result = session.execute(delete(LoginThrottle).where(
        (LoginThrottle.locked_until_at.is_(None)) | (LoginThrottle.locked_until_at < now),
        (LoginThrottle.last_failure_at.is_(None)) | (LoginThrottle.last_failure_at < idle_since),
    ))
    return result.rowcount or 0


def _throttle(session: Session, username: str, remote_addr: str) -> LoginThrottle:
    # FOR UPDATE: concurrent failures must add up, not overwrite each other (PostgreSQL;
    # SQLite already runs one writer at a time).
    query = select(LoginThrottle).where(
        LoginThrottle.username == username, LoginThrottle.remote_addr == remote_addr
    ).with_for_update().execution_options(populate_existing=True)
    row = session.scalar(query)
    if row is None:
        # Two first failures from one address at once (PostgreSQL): one insert wins, the other
        # does nothing and reads the winner's row, so neither attempt errors or goes unaudited.
        insert = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)
        session.execute(insert(LoginThrottle).values(
            username=username, remote_addr=remote_addr, failures=0).on_conflict_do_nothing())
        row = session.scalar(query)
    return row


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    remote_addr: str | None,
    max_failures: int = 5,
    lockout_seconds: int = 900,
) -> LoginResult:
    """Check a login, apply per-source and per-account lockout, and audit the attempt.

    ``max_failures`` wrong passwords from one address lock the account for that address
    only; ``ACCOUNT_LOCK_FACTOR`` times as many from anywhere lock it everywhere. A locked
    attempt is refused even with the right password and does not count as a failure.
    """
    now = utcnow()
    name = (username or "").strip().lower()[:64]
    source = source_key(remote_addr)
    # Locked (PostgreSQL) so that concurrent attempts count every failure; user first, then
    # the throttle row, always in that order.
    user = session.scalar(select(User).where(User.username == name).with_for_update()
                          .execution_options(populate_existing=True))
    is_ok = verify_password(user.password_hash if user else None, password or "")
    reason: str | None = None
    # Rows only for accounts that exist (guessed names must not grow the table); a successful
    # login deletes its pair's row.
    throttle = _throttle(session, name, source) if user is not None else None
    if user is None:
        reason = "bad_credentials"
    elif user.is_disabled:
        reason = "disabled"
    elif _is_locked(user, throttle, now):
        reason = "locked"
    elif not is_ok:
        reason = "bad_credentials"
        _count_failure(session, user, throttle, now, max_failures, lockout_seconds)
    if reason is None:
        assert user is not None and throttle is not None
        user.failed_logins = 0
        user.locked_until_at = None
        user.last_login_at = now
        session.delete(throttle)
        session.flush()
        record(
            session,
            "auth.login",
            {"actor": user.username, "action": "login", "remote_addr": remote_addr},
            actor=user.username,
            action="login",
        )
        return LoginResult(user, None)
    session.flush()
    record(
        session,
        "auth.login_failed",
        {"actor": name, "action": "login_failed", "reason": reason, "remote_addr": remote_addr},
        actor=name,
        action="login_failed",
    )
    return LoginResult(None, reason)


def check_current_password(
    session: Session, user: User, password: str, *, remote_addr: str | None,
    max_failures: int = 5, lockout_seconds: int = 900,
) -> str | None:
    """Check a signed-in user's password again; return None if right, else the reason.

    Wrong answers count like failed logins (same per-address and account-wide lockouts)
    and are audited: a signed-in, unattended PC must not become a free password oracle.
    """
    now = utcnow()
    source = source_key(remote_addr)
    # Locked and re-read: the request's own copy (current_user) may predate failures that
    # other requests committed since.
    user = session.scalar(select(User).where(User.id == user.id).with_for_update()
                          .execution_options(populate_existing=True))
    throttle = _throttle(session, user.username, source)
    if _is_locked(user, throttle, now):
        reason = "locked"
    elif verify_password(user.password_hash, password or ""):
        if not throttle.failures and throttle.locked_until_at is None:
            session.delete(throttle)  # nothing to remember
        return None
    else:
        _count_failure(session, user, throttle, now, max_failures, lockout_seconds)
        reason = "locked" if _is_locked(user, throttle, now) else "bad_credentials"
    session.flush()
    record(session, "auth.password_check_failed",
           {"actor": user.username, "reason": reason, "remote_addr": remote_addr},
           actor=user.username)
    return reason


def _is_locked(user: User, throttle: LoginThrottle | None, now) -> bool:
    """Tell whether the account, or this address's attempts on it, are locked out at ``now``."""
    return any(row is not None and row.locked_until_at is not None and row.locked_until_at > now
               for row in (user, throttle))


def _count_failure(session: Session, user: User, throttle: LoginThrottle, now, max_failures: int,
                   lockout_seconds: int) -> None:
    until = now + timedelta(seconds=lockout_seconds)
    throttle.failures += 1
    throttle.last_failure_at = now
    user.failed_logins += 1
    if throttle.failures >= max_failures:
        throttle.locked_until_at = until
        throttle.failures = 0
        record(
            session,
            "user.locked",
            {"user": user.username, "until": until.isoformat(), "scope": "source",
             "remote_addr": throttle.remote_addr},
            actor=user.username,
        )
    if user.failed_logins >= max_failures * ACCOUNT_LOCK_FACTOR:
        user.locked_until_at = until
        user.failed_logins = 0
        record(
            session,
            "user.locked",
            {"user": user.username, "until": until.isoformat(), "scope": "account"},
            actor=user.username,
        )


def record_logout(session: Session, user: User, remote_addr: str | None) -> None:
    """Write the audit entry for a logout."""
    record(
        session,
        "auth.logout",
        {"actor": user.username, "action": "logout", "remote_addr": remote_addr},
        actor=user.username,
        action="logout",
    )


def _token_hash(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a plain SHA-256 is enough (no slow KDF needed).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, source: str, *, by: str,
                 scope: str = TOKEN_SCOPE_INGEST) -> tuple[IngestToken, str]:
    """Create a token for a source and announce it; return the row and the token (shown once).

    ``scope`` "ingest" sends events; "monitor" only reads the trail's checkpoint, tiles and
    entry bundles (witnesses, the province).
    """
    source = source.strip()
    if not source or len(source) > 128:
        raise AccountError("Tên nguồn phải có từ 1 đến 128 ký tự")
    if scope not in TOKEN_SCOPES:
        raise AccountError(f"Phạm vi mã không hợp lệ: {scope} (ingest hoặc monitor)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = IngestToken(source=source, token_hash=_token_hash(token), prefix=token[:10], scope=scope)
    session.add(row)
    session.flush()
    record(
        session,
        "token.created",
        {"by": by, "source": source, "token_id": row.id, "prefix": row.prefix, "scope": scope},
        actor=by,
    )
    if scope == TOKEN_SCOPE_MONITOR:
        # A monitor token reads every entry of the trail (kinds, hosts, masked events).
        _announce(session, f"Đã tạo mã giám sát số {row.id} cho {source}",
                  ["Mã này cho phép đọc toàn bộ nhật ký kiểm toán (không gửi được sự kiện)."],
                  by=by)
        return row, token
    # A token lets its holder write events as that source: a forged "all quiet" stream.
    _announce(session, f"Đã tạo mã truy cập số {row.id} cho nguồn {source}",
              ["Mã này cho phép gửi sự kiện vào hệ thống dưới tên nguồn trên."], by=by)
    return row, token


def revoke_token(session: Session, token_id: int, *, by: str) -> IngestToken:
    """Revoke an ingest token, write the audit entry and announce it."""
    row = session.get(IngestToken, token_id)
    if row is None:
        raise AccountError(f"Không có mã truy cập số {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        record(
            session, "token.revoked", {"by": by, "source": row.source, "token_id": row.id}, actor=by
        )
        # Revoking an agent's token silences that machine's monitoring.
        _announce(session, f"Đã thu hồi mã truy cập số {row.id} của nguồn {row.source}",
                  ["Nguồn này không gửi được sự kiện nữa cho đến khi có mã mới."], by=by)
    return row


# Admins see a token's last use to the minute: noting it at most once a minute spares a row
# update, and on SQLite the write lock, for every request of an agent or a monitor.
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def note_token_use(row: IngestToken) -> None:
    """Record that a token was just used, unless that was already noted within the minute."""
    now = utcnow()
    # A time ahead of now (a clock set wrong, then corrected) is replaced at once: kept, it
    # would hide every real use until the clock caught up with it.
    if row.last_used_at is None or not timedelta(0) <= now - row.last_used_at <= TOKEN_USE_RESOLUTION:
        row.last_used_at = now


def find_token(session: Session, token: str) -> IngestToken | None:
    """Return the active token row matching a presented bearer token."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = session.scalar(select(IngestToken).where(IngestToken.token_hash == _token_hash(token)))
    if row is None or row.is_revoked:
        return None
    return row
