"""Two people for power: granting police, leader or admin waits for a second person's approval.

An admin who could hand out these roles alone could make themselves (or a friend) the
police officer who reads the trail. So the web pages only *request* such a grant; a leader,
or an admin other than the requester, approves it, and nobody approves a grant they asked
for or one that would give them the role. Removing roles and granting ``official`` stay
one-person actions. ``canhgac user`` on the server still grants directly (bootstrap; it is
announced). Like every operation these only flush; the caller commits once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit.log import record
from service.auth import operations
from service.auth.models import PRIVILEGED_ROLES, Role, RoleGrant, User
from service.auth.operations import AccountError
from service.core.db import utcnow

GRANT_LIFETIME = timedelta(days=7)
PENDING, APPROVED, REFUSED, WITHDRAWN, EXPIRED = "pending", "approved", "refused", "withdrawn", "expired"
APPROVER_ROLES = (Role.LEADER.value, Role.ADMIN.value)


def split_roles(current: list[str], wanted: list[str]) -> tuple[list[str], list[str]]:
    """Split a wanted role set into what applies now and the privileged roles that need approval."""
    now_roles = sorted({r for r in wanted if r not in PRIVILEGED_ROLES or r in current})
    to_grant = sorted({r for r in wanted if r in PRIVILEGED_ROLES and r not in current})
    return now_roles, to_grant


def _summary(grant: RoleGrant) -> dict:
    return {"grant_id": grant.id, "user": grant.user.username, "roles": list(grant.roles),
            "drop_roles": list(grant.drop_roles), "requested_by": grant.requested_by.username,
            "expires_at": grant.expires_at.isoformat()}


def _roles_text(roles: list[str]) -> str:
    from service.notify.security import role_list

    return role_list(roles)


def request_grant(session: Session, user: User, roles: list[str], *, by: User,
                  drop_roles: list[str] | None = None, now: datetime | None = None) -> RoleGrant:
    """Ask for privileged roles for an account; audit and announce the request."""
    now = now or utcnow()
    roles = sorted(set(roles))
    if not roles or any(r not in PRIVILEGED_ROLES for r in roles):
        raise AccountError("Chỉ vai trò công an, lãnh đạo, quản trị cần phê duyệt")
    grant = RoleGrant(user=user, roles=roles, drop_roles=sorted(set(drop_roles or [])),
                      state=PENDING, requested_by=by, requested_at=now,
                      expires_at=now + GRANT_LIFETIME)
    session.add(grant)
    session.flush()
    record(session, "auth.grant_requested", {"by": by.username, **_summary(grant)},
           actor=by.username)
    operations._announce(
        session, f"Đề nghị cấp vai trò {_roles_text(roles)} cho tài khoản {user.username}",
        [f"Đề nghị số {grant.id}, chưa có hiệu lực: cần một lãnh đạo (hoặc một quản trị viên "
         "khác) phê duyệt trong 7 ngày.",
         f"Vai trò hiện có: {_roles_text(user.roles)}."], by=by.username)
    return grant


def change_roles(session: Session, user: User, wanted: list[str], *, by: User,
                 keep_session_id: int | None = None,
                 now: datetime | None = None) -> RoleGrant | None:
    """Apply a role change from the admin pages: removals and ``official`` at once, the rest requested.

    When nothing would remain now (``official`` replaced by ``leader``), the current roles stay
    until approval, which then takes away the ones not wanted.
    """
    now_roles, to_grant = split_roles(user.roles, wanted)
    drop: list[str] = []
    if now_roles:
        if now_roles != sorted(user.roles):
            operations.set_roles(session, user, now_roles, by=by.username,
                                 keep_session_id=keep_session_id)
    elif to_grant:
        drop = sorted(set(user.roles) - set(wanted))
    else:
        raise AccountError("Cần ít nhất một vai trò")
    if not to_grant:
        return None
    return request_grant(session, user, to_grant, by=by, drop_roles=drop, now=now)


def create_user(session: Session, *, roles: list[str], by: User, now: datetime | None = None,
                **fields) -> tuple[User, RoleGrant | None]:
    """Create an account from the admin pages: privileged roles become a pending grant.

    The account holds ``official`` meanwhile when nothing else is left; approval removes it
    again unless it was asked for.
    """
    now_roles, to_grant = split_roles([], roles)
    placeholder = [] if now_roles else [Role.OFFICIAL.value]
    user = operations.create_user(session, roles=now_roles or placeholder, by=by.username, **fields)
    grant = None
    if to_grant:
        grant = request_grant(session, user, to_grant, by=by, drop_roles=placeholder, now=now)
    return user, grant


def _locked(session: Session, grant_id: int) -> RoleGrant:
    # FOR UPDATE (PostgreSQL): two approvers at once must not both apply the grant.
    grant = session.scalar(select(RoleGrant).where(RoleGrant.id == grant_id).with_for_update()
                           .execution_options(populate_existing=True))
    if grant is None:
        raise LookupError(grant_id)
    return grant


def _require_open(grant: RoleGrant, now: datetime) -> None:
    if grant.state_at(now) == EXPIRED:
        raise AccountError(f"Đề nghị số {grant.id} đã hết hạn")
    if grant.state != PENDING:
        raise AccountError(f"Đề nghị số {grant.id} đã được xử lý")


def may_decide(grant: RoleGrant, user: User) -> bool:
    """Return whether ``user`` may approve or refuse: a leader or an admin, not the requester or the receiver."""
    return (user.has_role(*APPROVER_ROLES) and not user.is_disabled
            and user.id not in (grant.requested_by_id, grant.user_id))


def _decide(grant: RoleGrant, by: User, state: str, now: datetime) -> None:
    grant.state = state
    grant.decided_by = by
    grant.decided_at = now


def approve(session: Session, grant_id: int, *, by: User, now: datetime | None = None) -> RoleGrant:
    """Approve a pending grant and apply it through ``set_roles`` (sessions end, audit, announcement)."""
    now = now or utcnow()
    grant = _locked(session, grant_id)
    _require_open(grant, now)
    if by.id == grant.requested_by_id:
        raise AccountError("Người đề nghị không thể tự phê duyệt đề nghị của mình")
    if by.id == grant.user_id:
        raise AccountError("Không ai được phê duyệt vai trò cho chính mình")
    if not may_decide(grant, by):
        raise AccountError("Chỉ lãnh đạo hoặc một quản trị viên khác được phê duyệt")
    user = grant.user
    roles = sorted((set(user.roles) - set(grant.drop_roles)) | set(grant.roles))
    _decide(grant, by, APPROVED, now)
    operations.set_roles(
        session, user, roles, by=by.username,
        notes=(f"Theo đề nghị số {grant.id} của {grant.requested_by.username}, "
               f"được {by.username} phê duyệt.",))
    record(session, "auth.grant_approved", {"by": by.username, **_summary(grant)},
           actor=by.username)
    return grant


def _close(session: Session, grant: RoleGrant, kind: str, by: str, outcome: str,
           detail: str) -> None:
    # A grant that ends without being applied: its trail entry, and the notice to watchers.
    session.flush()
    body = _summary(grant) if by == "system" else {"by": by, **_summary(grant)}
    record(session, kind, body, actor=by)
    operations._announce(
        session, f"Đề nghị cấp vai trò {_roles_text(grant.roles)} cho tài khoản "
                 f"{grant.user.username} {outcome}", [detail], by=by)


def refuse(session: Session, grant_id: int, *, by: User, now: datetime | None = None) -> RoleGrant:
    """Refuse a pending grant (a leader or another admin); audit and announce it."""
    now = now or utcnow()
    grant = _locked(session, grant_id)
    _require_open(grant, now)
    if not may_decide(grant, by):
        raise AccountError("Chỉ lãnh đạo hoặc một quản trị viên khác được từ chối đề nghị này")
    _decide(grant, by, REFUSED, now)
    _close(session, grant, "auth.grant_refused", by.username, "đã bị từ chối",
           f"Đề nghị số {grant.id} của {grant.requested_by.username}.")
    return grant


def withdraw(session: Session, grant_id: int, *, by: User, now: datetime | None = None) -> RoleGrant:
    """Withdraw one's own pending grant; audit and announce it."""
    now = now or utcnow()
    grant = _locked(session, grant_id)
    _require_open(grant, now)
    if by.id != grant.requested_by_id:
        raise AccountError("Chỉ người đề nghị được rút lại đề nghị")
    _decide(grant, by, WITHDRAWN, now)
    _close(session, grant, "auth.grant_withdrawn", by.username, "đã được rút lại",
           f"Đề nghị số {grant.id}.")
    return grant


def expire_grants(session: Session, now: datetime | None = None) -> list[RoleGrant]:
    """Close every pending grant past its time with its own trail entry and announcement."""
    now = now or utcnow()
    # FOR UPDATE: an approver deciding at this moment either wins (state no longer pending)
    # or waits and then finds the grant expired — never both.
    due = list(session.scalars(
        select(RoleGrant).where(RoleGrant.state == PENDING, RoleGrant.expires_at <= now)
        .order_by(RoleGrant.id).with_for_update()))
    for grant in due:
        grant.state = EXPIRED
        grant.decided_at = now
        # Nobody decided: the entry names the service, so the trail shows the grant lapsed
        # rather than leaving a request that is silently gone from the pending list.
        _close(session, grant, "auth.grant_expired", "system", "đã hết hạn, không ai phê duyệt",
               f"Đề nghị số {grant.id} của {grant.requested_by.username}; vai trò không được cấp.")
    return due


def open_grants(session: Session, now: datetime | None = None,
                user: User | None = None) -> list[RoleGrant]:
    """Return the grants still waiting for a decision, oldest first (optionally of one account)."""
    query = select(RoleGrant).where(RoleGrant.state == PENDING,
                                    RoleGrant.expires_at > (now or utcnow()))
    if user is not None:
        query = query.where(RoleGrant.user_id == user.id)
    return list(session.scalars(query.order_by(RoleGrant.id)))


def recent_grants(session: Session, limit: int = 50) -> list[RoleGrant]:
    """Return the newest grants in any state (the page's history), newest first."""
    return list(session.scalars(select(RoleGrant).order_by(RoleGrant.id.desc()).limit(limit)))
