"""Alerts (policy verdicts worth a look) and incidents with their comments and evidence."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.core.db import Base, UTCDateTime, utcnow


class AlertState(enum.StrEnum):
    """Where an alert stands in the police queue."""

    OPEN = "open"
    INCIDENT = "incident"  # turned into (or joined) an incident
    DISMISSED = "dismissed"


class Alert(Base):
    """A policy verdict with response alert or incident, linked to its audit entry."""

    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rule_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    response: Mapped[str] = mapped_column(String(16))
    explanation: Mapped[str] = mapped_column(Text)
    entry_seq: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    data_class: Mapped[str | None] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default=AlertState.OPEN)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"))
    dismissed_reason: Mapped[str | None] = mapped_column(Text)
    dismissed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    __table_args__ = (Index("ix_alert_state_created", "state", "created_at"),)


class IncidentState(enum.StrEnum):
    """Incident states (DESIGN.md): one operation moves between them."""

    REPORTED = "reported"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    CONTAINED = "contained"
    RESOLVED = "resolved"
    CLOSED = "closed"
    DISMISSED = "dismissed"


OPEN_STATES = (
    IncidentState.REPORTED, IncidentState.ACKNOWLEDGED, IncidentState.INVESTIGATING,
    IncidentState.CONTAINED, IncidentState.RESOLVED,
)


class Incident(Base):
    """A suspected or confirmed leak; never deleted, every change is an audit entry."""

    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default=IncidentState.REPORTED)
    severity: Mapped[str] = mapped_column(String(16), default="high")
    origin: Mapped[str] = mapped_column(String(16))  # report | rule | alert
    rule_id: Mapped[str | None] = mapped_column(String(64))
    group_key: Mapped[str | None] = mapped_column(String(512))
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    unit: Mapped[str | None] = mapped_column(String(64))
    data_classes: Mapped[list] = mapped_column(JSON, default=list)
    pii_counts: Mapped[dict] = mapped_column(JSON, default=dict)
    form_data: Mapped[dict] = mapped_column(JSON, default=dict)
    involves_personal_data: Mapped[bool] = mapped_column(Boolean, default=True)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    investigating_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    contained_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    containment_actions: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cause: Mapped[str | None] = mapped_column(Text)
    measures: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dismiss_reason: Mapped[str | None] = mapped_column(Text)
    notice_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notice_late_reason: Mapped[str | None] = mapped_column(Text)
    notice_channel: Mapped[str | None] = mapped_column(String(32))
    notice_reference: Mapped[str | None] = mapped_column(String(200))
    no_notice_reason: Mapped[str | None] = mapped_column(Text)  # closed without a notice: why
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    last_escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminders_sent: Mapped[list] = mapped_column(JSON, default=list)
    hit_count: Mapped[int] = mapped_column(Integer, default=1)
    last_hit_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    comments: Mapped[list[IncidentComment]] = relationship(
        back_populates="incident", order_by="IncidentComment.id"
    )
    evidence: Mapped[list[IncidentEvidence]] = relationship(
        back_populates="incident", order_by="IncidentEvidence.id"
    )

    __table_args__ = (Index("ix_incident_state", "state"), Index("ix_incident_group", "group_key"))

    @property
    def is_open(self) -> bool:
        """Return whether the incident is still being handled."""
        return self.state in OPEN_STATES


class IncidentComment(Base):
    """A comment on an incident, at any state."""

    __tablename__ = "incident_comment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    incident: Mapped[Incident] = relationship(back_populates="comments")


class IncidentEvidence(Base):
    """An evidence file, stored encrypted (AES-GCM) under the data directory."""

    __tablename__ = "incident_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    stored_name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    incident: Mapped[Incident] = relationship(back_populates="evidence")


class IncidentReceipt(Base):
    """A police officer's confirmation that they received an incident (not an acknowledgement)."""

    __tablename__ = "incident_receipt"
    __table_args__ = (UniqueConstraint("incident_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    channel: Mapped[str] = mapped_column(String(16), default="web")
