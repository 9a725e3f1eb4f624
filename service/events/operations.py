"""Ingest: deduplicate, enrich from the policy, append to the trail, act on verdicts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from canhgac_common.events import DestinationKind, Event
from service.audit.canonical import canonical_json_plain
from service.audit.log import PendingEntry, append_entries, record
from service.core.db import utcnow
from service.events.conflicts import check_event_ids
from service.events.models import Agent


@dataclass(frozen=True)
class IngestResult:
    """How many events of a batch were stored and how many were seen before."""

    stored: int
    duplicates: int
    entry_seqs: list[int]


Classification = tuple[str | None, DestinationKind | None]


def event_body(event: Event, source: str, classification: Classification | None = None) -> dict:
    """Return the audit body of an event: the event as JSON, enriched, plus its source.

    ``classification`` (data class, destination kind) from the policy is written in the way
    ``engine.enrich`` would (tested equal), on the dumped dict: copying the pydantic model
    instead cost a fifth of the ingest time.
    """
    body = event.model_dump(mode="json", exclude_none=True)
    if classification is not None:
        data_class, kind = classification
        obj = body.get("object")
        if obj is not None and data_class is not None:
            obj["data_class"] = data_class
        if kind is not None:
            body.setdefault("destination", {})["kind"] = kind.value
    body["source"] = source
    return body


def _search(event: Event, body: dict) -> dict:
    obj = body.get("object")
    return {
        "actor": event.actor,
        "host": event.host,
        "action": event.action.value,
        "path": obj.get("path") if obj else None,
        "data_class": obj.get("data_class") if obj else None,
        "occurred_at": event.occurred_at,
        "event_id": str(event.id),
    }


def ingest_events(session: Session, events: list[Event], *, source: str, processor=None) -> IngestResult:
    """Store a validated batch in the trail once each, track agents, and run the policy.

    Raise EventIdConflict (nothing stored) when an id is already stored, or repeated in the
    batch, with different content (service/events/conflicts.py).
    """
    seen: set[str] = set()
    fresh: list[Event] = []
    known = check_event_ids(session, events)  # id conflicts (#15 item 3): see conflicts.py
    for event in events:
        key = str(event.id)
        if key in known or key in seen:
            continue
        seen.add(key)
        fresh.append(event)
    if processor is not None:
        # The policy version that judges these events enters the trail before them.
        processor.record_version(session)
        bodies = [event_body(e, source, processor.classify(e)) for e in fresh]
    else:
        bodies = [event_body(e, source) for e in fresh]
    # A validated event's dump holds no floats and only ASCII keys: the C encoder gives its
    # RFC 8785 bytes (canonical_json_plain; tested equal to rfc8785 on events).
    rows = append_entries(session, [
        PendingEntry("event", body, _search(e, body), canonical_json_plain(body))
        for e, body in zip(fresh, bodies, strict=True)
    ])
    _track_agents(session, fresh, source, processor)
    if processor is not None:
        processor.evaluate(session, list(zip(fresh, rows, strict=True)))
    return IngestResult(len(fresh), len(events) - len(fresh), [r.seq for r in rows])


class AgentSourceError(PermissionError):
    """An agent id first seen with one ingest token was used with another token."""


def _get_agent(session: Session, agent_id: str, source: str) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.agent_id == agent_id))
    if agent is None:
        agent = Agent(agent_id=agent_id, source=source, missing_events=0)
        session.add(agent)
        session.flush()
    elif agent.source != source:
        # Otherwise any valid token could keep another PC looking alive and hide its silence.
        raise AgentSourceError(f"agent {agent_id!r} belongs to another source")
    return agent


def _track_agents(session: Session, events: list[Event], source: str, processor=None) -> None:
    now = utcnow()
    by_agent: dict[str, list[Event]] = {}
    for event in events:
        if event.agent_id:
            by_agent.setdefault(event.agent_id, []).append(event)
    for agent_id, agent_events in by_agent.items():
        agent = _get_agent(session, agent_id, source)
        agent.last_contact_at = now
        agent.host = agent_events[-1].host
        agent.is_silence_reported = False
        seqs = sorted(e.seq for e in agent_events if e.seq is not None)
        if not seqs:
            continue
        if agent.last_seq is not None and seqs[0] <= agent.last_seq:
            _record_renumbering(session, agent, seqs[0])
        expected = (agent.last_seq + 1) if agent.last_seq is not None else seqs[0]
        missing = 0
        for seq in seqs:
            if seq > expected:
                missing += seq - expected
            expected = max(expected, seq + 1)
        if missing:
            agent.missing_events += missing
            entry = record(
                session, "agent.gap",
                {"agent_id": agent_id, "host": agent.host, "missing": missing,
                 "after_seq": agent.last_seq},
                host=agent.host,
            )
            if processor is not None:
                from service.policy.schemas import MonitoringSignal

                processor.evaluate_signal(session, MonitoringSignal(
                    kind="event_gap", agent_id=agent_id, host=agent.host or "?", missing=missing,
                ), entry.seq)
        agent.last_seq = max(agent.last_seq or -1, seqs[-1])


def _record_renumbering(session: Session, agent: Agent, first_seq: int) -> None:
    # New events numbered at or below what the server already has: the agent's spool was
    # reset or replaced, so whatever it held before is lost to monitoring. Say so, loudly.
    from service.incidents.models import Alert

    entry = record(session, "agent.renumbered",
                   {"agent_id": agent.agent_id, "host": agent.host, "first_seq": first_seq,
                    "last_seq_before": agent.last_seq}, host=agent.host)
    session.add(Alert(
        rule_id="agent.renumbered", severity="high", response="alert",
        explanation="Tác tử đánh số lại sự kiện (bộ đệm bị xóa hoặc thay): có thể mất dữ liệu giám sát",
        entry_seq=entry.seq, host=agent.host, group_key=f"agent.renumbered|{agent.agent_id}"[:512],
    ))
    agent.last_seq = first_seq - 1


def _record_config_change(session: Session, agent: Agent, host: str, config_hash: str | None,
                          protected_roots: int | None) -> None:
    from service.incidents.models import Alert

    fewer = (protected_roots is not None and agent.protected_roots is not None
             and protected_roots < agent.protected_roots)
    entry = record(session, "agent.config_changed",
                   {"agent_id": agent.agent_id, "host": host, "before": agent.config_hash,
                    "after": config_hash, "protected_roots_before": agent.protected_roots,
                    "protected_roots_after": protected_roots}, host=host)
    if config_hash is None:
        detail = "tác tử không còn báo mã băm cấu hình (phiên bản cũ hoặc bị sửa)"
    elif fewer:
        detail = f"số thư mục được bảo vệ giảm từ {agent.protected_roots} xuống {protected_roots}"
    else:
        detail = "phạm vi theo dõi đã khác trước"
    session.add(Alert(
        rule_id="agent.config_changed", severity="high" if fewer or config_hash is None else "medium",
        response="alert",
        explanation=f"Cấu hình theo dõi của tác tử trên máy {host} đã thay đổi: {detail}",
        entry_seq=entry.seq, host=host, group_key=f"agent.config_changed|{agent.agent_id}"[:512],
    ))


def record_heartbeat(session: Session, *, source: str, agent_id: str, host: str,
                     last_seq: int | None, spool_depth: int | None, version: str | None,
                     config_hash: str | None = None, protected_roots: int | None = None) -> Agent:
    """Record an agent's heartbeat: last contact, spool depth, version and what it watches.

    A watch configuration different from the last one reported is written to the trail and
    raised as an alert: narrowing what a PC reports is how an insider would go quiet.
    """
    agent = _get_agent(session, agent_id, source)
    if config_hash is not None:
        if agent.config_hash is not None and agent.config_hash != config_hash:
            _record_config_change(session, agent, host, config_hash, protected_roots)
        agent.config_hash = config_hash
        if protected_roots is not None:
            agent.protected_roots = protected_roots
    elif agent.config_hash is not None:
        # An agent that reported its configuration stops doing so: an older build or a
        # tampered one, either way its watch can no longer be checked. Said once.
        _record_config_change(session, agent, host, None, protected_roots)
        agent.config_hash = None
    agent.last_contact_at = utcnow()
    agent.host = host
    agent.spool_depth = spool_depth
    agent.version = version
    if agent.is_silence_reported:
        agent.is_silence_reported = False
        record(session, "agent.back", {"agent_id": agent_id, "host": host}, host=host)
    return agent
