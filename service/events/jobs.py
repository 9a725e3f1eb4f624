"""Background job: report agents that went silent (monitoring lost) and judge each silence.

A silence is judged at every run, not only when it is first reported: the policy's rule
(two hours in working hours, by default) must fire once its threshold has passed, even when
that is hours after ``agent_silence_minutes`` or the next morning for a silence that began
at night. Each signal rule fires at most once per silence (``Agent.silence_rules_fired``);
any accepted contact from the agent starts a new one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log
from service.core.db import utcnow
from service.core.jobs import job
from service.events.models import Agent
from service.policy.conditions import AgentSilent
from service.policy.schemas import MonitoringSignal


def silence_floor_seconds(policy) -> float | None:
    """Return the shortest silence any signal rule of the policy asks about (None: none)."""
    if policy is None:
        return None
    found: list[float] = []
    stack = [condition for rule in policy.signal_rules for condition in rule.conditions]
    while stack:
        condition = stack.pop()
        if isinstance(condition, AgentSilent):
            found.append(condition.params.min_seconds)
        stack.extend(condition.children())
    return min(found) if found else None


def report_silent_agents(session: Session, settings, processor, *, now: datetime | None = None) -> int:
    """Report each silence once, judge every silence against the policy; return new reports.

    An agent silent beyond ``agent_silence_minutes`` gets one ``agent.silent`` entry; a signal
    rule that matches at ``now`` (threshold passed, working hours, ...) and has not fired for
    this silence gets its verdict, linked to a new ``agent.silent`` entry saying how long.
    """
    now = now or utcnow()
    report_after = timedelta(minutes=settings.agent_silence_minutes)
    policy = processor.state.policy if processor is not None else None
    floor = silence_floor_seconds(policy)
    look_after = report_after if floor is None else min(report_after, timedelta(seconds=floor))
    silent = session.scalars(
        select(Agent).where(Agent.last_contact_at <= now - look_after).order_by(Agent.id)
    ).all()
    reported = 0
    for agent in silent:
        silence = now - agent.last_contact_at
        seconds = silence.total_seconds()
        is_new = not agent.is_silence_reported and silence > report_after
        fired = set((agent.silence_rules_fired or "").split())
        verdicts = []
        if processor is not None:
            signal = MonitoringSignal(kind="agent_silent", agent_id=agent.agent_id,
                                      host=agent.host or "?", silent_seconds=seconds)
            verdicts = [v for v in processor.signal_verdicts(signal, now=now)
                        if v.rule_id not in fired]
        if not is_new and not verdicts:
            continue
        body = {"agent_id": agent.agent_id, "host": agent.host, "silent_seconds": round(seconds)}
        if verdicts:
            body["rules"] = sorted({v.rule_id for v in verdicts})
        entry = log.record(session, "agent.silent", body, host=agent.host)
        reported += not agent.is_silence_reported
        agent.is_silence_reported = True
        if verdicts:
            processor.act_on_signal(session, verdicts, entry.seq)
            agent.silence_rules_fired = " ".join(sorted(fired | set(body["rules"])))
    return reported


@job("events.agent_silence", every=lambda s: 60)
def agent_silence_job(app, session) -> None:
    """Report silent agents and judge their silence against the policy."""
    report_silent_agents(session, app.config["SETTINGS"], app.extensions.get("canhgac.processor"))
