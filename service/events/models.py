"""Agents seen by the ingest API: last contact and event-number gaps."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime


class Agent(Base):
    """An endpoint agent (or app instance) that numbers its events."""

    __tablename__ = "agent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(32))
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    missing_events: Mapped[int] = mapped_column(BigInteger, default=0)
    spool_depth: Mapped[int | None] = mapped_column(BigInteger)
    is_silence_reported: Mapped[bool] = mapped_column(default=False)
    # What the agent watches (its heartbeat's config_hash) and how many protected folders.
    config_hash: Mapped[str | None] = mapped_column(String(64))
    protected_roots: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("agent_id", name="uq_agent_agent_id"),)
