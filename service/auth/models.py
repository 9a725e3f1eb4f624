"""User accounts and ingest tokens."""

from __future__ import annotations

import enum
from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.core.db import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """What a user may do (DESIGN.md, roles)."""

    OFFICIAL = "official"
    POLICE = "police"
    LEADER = "leader"
    ADMIN = "admin"


ROLE_LABELS = {
    Role.OFFICIAL: "Cán bộ, công chức",
    Role.POLICE: "Công an xã",
    Role.LEADER: "Lãnh đạo UBND xã",
    Role.ADMIN: "Quản trị hệ thống",
}

# Units of Xã Nhân Lý (DOMAIN.md); ids shared with the policy files.
UNITS = {
    "cong_an": "Công an xã",
    "van_phong": "Văn phòng HĐND và UBND xã",
    "tt_hcc": "Trung tâm Phục vụ hành chính công xã",
    "vh_xh": "Phòng Văn hóa - Xã hội",
    "kinh_te": "Phòng Kinh tế",
    "dv_cong_ich": "Trung tâm Dịch vụ công ích xã",
    "lanh_dao": "Lãnh đạo UBND xã",
}


class User(UserMixin, Base):
    """A person who logs in: official, police, leader or admin."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str | None] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_active(self) -> bool:  # flask-login refuses inactive users
        """Return whether the account may log in."""
        return not self.is_disabled

    def has_role(self, *roles: str) -> bool:
        """Return whether the user holds any of the given roles."""
        return any(role in self.roles for role in roles)


TOKEN_SCOPE_INGEST = "ingest"  # noqa: S105 - a scope name, not a secret
TOKEN_SCOPE_MONITOR = "monitor"  # noqa: S105 - a scope name, not a secret
TOKEN_SCOPES = (TOKEN_SCOPE_INGEST, TOKEN_SCOPE_MONITOR)


class IngestToken(Base):
    """A per-source bearer token for the ingest API; only its hash is stored."""

    __tablename__ = "ingest_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    # "ingest": an agent or business software sending events; "monitor": a witness or the
    # province reading the trail's tiles, which can never write events.
    scope: Mapped[str] = mapped_column(String(16), default="ingest", server_default="ingest")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_revoked(self) -> bool:
        """Return whether the token has been revoked."""
        return self.revoked_at is not None

    @property
    def can_ingest(self) -> bool:
        """Return whether the token may send events and heartbeats."""
        return self.scope == TOKEN_SCOPE_INGEST


class LoginThrottle(Base):
    """Failed logins of one account from one source address since its last success.

    A lockout normally applies to that pair only, so someone on the LAN typing wrong
    passwords for the chairman locks out their own machine, not the chairman.
    """

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("username", "remote_addr"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; this row decides whether it opens anything.

    Only the token's SHA-256 is stored. Logout, a password change, a role change, disabling the
    account and "sign out everywhere" set ``ended_at``: a saved copy of the cookie then opens
    nothing, although its signature is still good.
    """

    __tablename__ = "user_session"
    __table_args__ = (Index("ix_user_session_user_ended", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(32))
    remote_addr: Mapped[str | None] = mapped_column(String(64))

    @property
    def is_ended(self) -> bool:
        """Return whether the session was ended (it never opens anything again)."""
        return self.ended_at is not None


# Roles that decide who watches whom: granting one takes two people (see service.auth.grants).
PRIVILEGED_ROLES = frozenset({Role.POLICE.value, Role.LEADER.value, Role.ADMIN.value})


class RoleGrant(Base):
    """A request to give an account police, leader or admin; it waits for a second person.

    ``roles`` are added on approval; ``drop_roles`` are taken away then (the ``official``
    role a new account holds only as a placeholder while its real role waits). A pending
    grant past ``expires_at`` can no longer be approved.
    """

    __tablename__ = "role_grant"
    __table_args__ = (Index("ix_role_grant_state_expires", "state", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    drop_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    def is_open(self, now: datetime) -> bool:
        """Return whether the grant still waits for a decision at ``now`` (pending, not expired)."""
        return self.state == "pending" and self.expires_at > now

    def state_at(self, now: datetime) -> str:
        """Return the state to show at ``now``: a pending grant past its time reads "expired"."""
        if self.state == "pending" and self.expires_at <= now:
            return "expired"
        return self.state


class Substitution(Base):
    """A leader or police officer on leave from ``starts_on`` to ``ends_on`` (local dates, inclusive).

    Notices and escalations in that range also go to the substitute, who may acknowledge
    (or confirm receipt) in the absent person's place. Cancelled rows are kept for the record.
    """

    __tablename__ = "substitution"
    __table_args__ = (Index("ix_substitution_user_dates", "user_id", "starts_on", "ends_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    substitute_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    substitute: Mapped[User] = relationship(foreign_keys=[substitute_id])

    def covers(self, day: date) -> bool:
        """Return whether the substitution is in force on the given local date."""
        return self.cancelled_at is None and self.starts_on <= day <= self.ends_on
