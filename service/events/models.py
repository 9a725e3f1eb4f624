"""Agents seen by the ingest API: last contact and event-number gaps."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime
from service.events.identity import identity_key


def _key_of_agent_id(context) -> str:
    return identity_key(context.get_current_parameters()["agent_id"])


class Agent(Base):
    """An endpoint agent (or app instance) that numbers its events."""

    __tablename__ = "agent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(128))
    # identity_key(agent_id): look-alike ids (case, width, dashes, invisible characters) share
    # it, so one of them cannot be bound to a second token.
    agent_key: Mapped[str] = mapped_column(String(80), default=_key_of_agent_id)
    source: Mapped[str] = mapped_column(String(128))
    # The host bound on first contact: events and heartbeats naming another host are refused.
    host: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(32))
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    missing_events: Mapped[int] = mapped_column(BigInteger, default=0)
    spool_depth: Mapped[int | None] = mapped_column(BigInteger)
    is_silence_reported: Mapped[bool] = mapped_column(default=False)
    # Signal rules already raised for the current silence (space-separated rule ids), so each
    # fires once per silence; cleared when the agent is heard from again.
    silence_rules_fired: Mapped[str | None] = mapped_column(Text)
    # What the agent watches (its heartbeat's config_hash) and how many protected folders.
    config_hash: Mapped[str | None] = mapped_column(String(64))
    protected_roots: Mapped[int | None] = mapped_column(Integer)
    # How the agent sees opens (its heartbeat's access_mode): fanotify-perm, fanotify,
    # security-log (user and program known), inotify (only that a file was opened), off.
    access_mode: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        UniqueConstraint("agent_id", name="uq_agent_agent_id"),
        UniqueConstraint("agent_key", name="uq_agent_agent_key"),
    )
