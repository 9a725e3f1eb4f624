"""The outbox: one row per message to deliver on one channel to one recipient."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime, utcnow


class Channel(enum.StrEnum):
    """How a message leaves the service."""

    EMAIL = "email"
    WEBHOOK = "webhook"
    COMMAND = "command"
    SMS = "sms"


class OutboxState(enum.StrEnum):
    """Where a message stands; a claim (lease) is a column, not a state."""

    PENDING = "pending"
    DELIVERED = "delivered"


class OutboxMessage(Base):
    """A notification waiting for (or done with) delivery; retried until it is delivered."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(48))
    channel: Mapped[str] = mapped_column(String(16))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    # Copied at enqueue so the row says where it went even if the account changes later.
    recipient_username: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(500))
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoint.id"))
    # Set right after the row gets its id; stable across retries so mail clients hide duplicates.
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    is_failing: Mapped[bool] = mapped_column(Boolean, default=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_outbox_message_due", "state", "next_attempt_at"),
        Index("ix_outbox_message_claim", "claim_token"),
        Index("ix_outbox_message_incident", "incident_id"),
    )

    @property
    def is_delivered(self) -> bool:
        """Return whether the message has been accepted by its channel."""
        return self.state == OutboxState.DELIVERED


class SmsCode(Base):
    """The one-time reply code of one SMS to one person: only its keyed hash is kept.

    The code is drawn when the SMS file is written (the stored body holds a placeholder), so
    it exists in clear only in the SMS itself. ``purpose`` is what a right reply does:
    ``acknowledge`` (leaders) or ``confirm_receipt`` (police).
    """

    __tablename__ = "sms_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox_message.id", ondelete="CASCADE"),
                                            unique=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    phone: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(24))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_sms_code_incident", "incident_id"),)


class SmsReceived(Base):
    """An SMS file read from gammu-smsd's inbox folder; the unique name makes it read once."""

    __tablename__ = "sms_received"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sender_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    outcome: Mapped[str] = mapped_column(String(32))
