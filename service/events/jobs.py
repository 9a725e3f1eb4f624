"""Background job: report agents that went silent (monitoring lost)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log
from service.core.db import utcnow
from service.core.jobs import job
from service.events.models import Agent
from service.policy.schemas import MonitoringSignal


def report_silent_agents(session: Session, settings, processor, *, now: datetime | None = None) -> int:
    """Record each agent silent beyond the limit once, and evaluate the policy on it."""
    now = now or utcnow()
    limit = now - timedelta(minutes=settings.agent_silence_minutes)
    silent = session.scalars(
        select(Agent).where(Agent.last_contact_at < limit, Agent.is_silence_reported.is_(False))
    ).all()
    for agent in silent:
        seconds = (now - agent.last_contact_at).total_seconds()
        entry = log.record(session, "agent.silent",
                           {"agent_id": agent.agent_id, "host": agent.host,
                            "silent_seconds": round(seconds)}, host=agent.host)
        agent.is_silence_reported = True
        if processor is not None:
            processor.evaluate_signal(session, MonitoringSignal(
                kind="agent_silent", agent_id=agent.agent_id, host=agent.host or "?",
                silent_seconds=seconds), entry.seq)
    return len(silent)


@job("events.agent_silence", every=lambda s: 60)
def agent_silence_job(app, session) -> None:
    """Report silent agents."""
    report_silent_agents(session, app.config["SETTINGS"], app.extensions.get("canhgac.processor"))
