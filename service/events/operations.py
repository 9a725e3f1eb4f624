"""Ingest: deduplicate, enrich from the policy, append to the trail, act on verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from canhgac_common.events import DestinationKind, Event
from service.audit.canonical import canonical_json_plain
from service.audit.log import PendingEntry, append_entries, lock_head, record
from service.core.db import utcnow
from service.devices.operations import mark_registered
from service.events.conflicts import check_event_ids
from service.events.identity import identity_key, same_identity
from service.events.masking import mask_agent_id, mask_event
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
    return _finish_body(body, source, classification)


_events_adapter = TypeAdapter(list[Event])


def event_bodies(events: list[Event], source: str,
                 classifications: list[Classification] | None = None) -> list[dict]:
    """Return the audit bodies of a batch, as ``event_body`` of each (one dump for all)."""
    bodies = _events_adapter.dump_python(events, mode="json", exclude_none=True)
    if classifications is None:
        return [_finish_body(body, source, None) for body in bodies]
    return [_finish_body(body, source, c) for body, c in zip(bodies, classifications, strict=True)]


def _finish_body(body: dict, source: str, classification: Classification | None) -> dict:
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
    # Strings from the dumped body: the model's UUID and enum would be formatted again.
    obj = body.get("object")
    return {
        "actor": body["actor"],
        "host": body["host"],
        "action": body["action"],
        "path": obj.get("path") if obj else None,
        "data_class": obj.get("data_class") if obj else None,
        "occurred_at": event.occurred_at,
        "event_id": body["id"],
    }


def ingest_events(session: Session, events: list[Event], *, source: str, processor=None) -> IngestResult:
    """Store a validated batch in the trail once each, track agents, and run the policy.

    Raise EventIdConflict (nothing stored) when an id is already stored, or repeated in the
    batch, with different content (service/events/conflicts.py).
    """
    # --- identifiers masked before anything is compared, hashed or judged (issue #15, item 1)
    events = [mask_event(e) for e in events]
    # ---
    seen: set[str] = set()
    fresh: list[Event] = []
    positions: list[int] = []
    # Held to the commit: no other request can store one of these ids between the lookup
    # below and our append (dedupe has no unique index to catch it; SQLite's BEGIN IMMEDIATE
    # already serializes writers, PostgreSQL needs the row lock).
    lock_head(session)
    ids = [str(event.id) for event in events]
    known = check_event_ids(session, events, ids)  # id conflicts (#15 item 3): see conflicts.py
    for index, (event, key) in enumerate(zip(events, ids, strict=True)):
        if key in known or key in seen:
            continue
        seen.add(key)
        fresh.append(event)
        positions.append(index)
    # Agents and hosts are checked before anything is written: a refused batch leaves no trace
    # but the refusal's own entry (written by the caller after its rollback).
    agents = _bind_agents(session, fresh, positions, source)
    # Whether each removable device is on the register, as of now: stored with the event, so
    # the policy (pure) and later replays judge the copy by the register of its day.
    fresh = mark_registered(session, fresh)
    if processor is not None:
        # The policy version that judges these events enters the trail before them.
        processor.record_version(session)
        classify = processor.classify
        bodies = event_bodies(fresh, source, [classify(e) for e in fresh])
    else:
        bodies = event_bodies(fresh, source)
    # A validated event's dump holds no floats and only ASCII keys: the C encoder gives its
    # RFC 8785 bytes (canonical_json_plain; tested equal to rfc8785 on events).
    rows = append_entries(session, [
        PendingEntry("event", body, _search(e, body), canonical_json_plain(body))
        for e, body in zip(fresh, bodies, strict=True)
    ])
    _track_agents(session, fresh, agents, processor)
    if processor is not None:
        processor.evaluate(session, list(zip(fresh, rows, strict=True)))
    return IngestResult(len(fresh), len(events) - len(fresh), [r.seq for r in rows])


class AgentSourceError(PermissionError):
    """An agent id first seen with one ingest token was used with another token."""


# ---------------------------------------------------------------- agent identity (#13 item 5)
# Agent ids and hosts are compared after service.events.identity.normalize_identifier: a
# look-alike of an id bound to another token is refused, the same token's look-alike is the
# same agent, and an agent's events and heartbeats must name the host bound on first contact.


class AgentIdentityRefused(PermissionError):
    """A request names an agent or host that conflicts with what the server has bound.

    Holds plain values only: the caller rolls back, then writes the refusal to the trail.
    """

    error: ClassVar[str]
    kind: ClassVar[str]
    detail: ClassVar[str]

    def __init__(self, *, claimed_agent_id: str, claimed_host: str | None, source: str,
                 bound_agent_id: str, bound_host: str | None, bound_source: str,
                 event_id: str | None = None, index: int | None = None) -> None:
        super().__init__(self.detail)
        self.claimed_agent_id, self.claimed_host, self.source = claimed_agent_id, claimed_host, source
        self.bound_agent_id, self.bound_host, self.bound_source = bound_agent_id, bound_host, bound_source
        self.event_id, self.index = event_id, index

    @property
    def status(self) -> int:
        """HTTP status of the refusal."""
        return 409

    def audit_body(self) -> dict:
        """Return the trail entry's body (agent ids, hosts, token sources: no personal data)."""
        body = {"agent_id": self.claimed_agent_id, "host": self.claimed_host, "source": self.source,
                "bound_agent_id": self.bound_agent_id, "bound_host": self.bound_host,
                "bound_source": self.bound_source}
        if self.event_id is not None:
            body["event_id"] = self.event_id
        return {k: v for k, v in body.items() if v is not None}


class AgentIdLookalikeError(AgentIdentityRefused):
    """An agent id differing from one bound to another token only in case, width, dashes, ..."""

    error = "agent_id_lookalike"
    kind = "agent.id_lookalike"
    detail = ("agent_id is a look-alike of an agent id bound to another token (it differs only "
              "in case, spaces, full-width letters, dashes or invisible characters)")


class HostMismatchError(AgentIdentityRefused):
    """An event or heartbeat names a host other than the one bound to its agent."""

    error = "host_mismatch"
    kind = "agent.host_mismatch"
    detail = "host is not the host bound to this agent_id on its first contact"

    @property
    def status(self) -> int:
        """400 for an event (the agent rejects that one event, sends the rest); 409 otherwise."""
        return 400 if self.index is not None else 409


def record_refusal(session: Session, refusal: AgentIdentityRefused) -> None:
    """Write a refused agent request to the trail and raise an alert unless one is still open."""
    from service.incidents.models import Alert, AlertState

    entry = record(session, refusal.kind, refusal.audit_body(), host=refusal.bound_host,
                   event_id=refusal.event_id)
    group_key = f"{refusal.kind}|{refusal.bound_agent_id}|{refusal.source}"[:512]
    is_open = session.scalar(select(Alert.id).where(
        Alert.group_key == group_key, Alert.state == AlertState.OPEN).limit(1))
    if is_open is not None:
        return  # one open alert says it; every refusal is still in the trail
    if isinstance(refusal, AgentIdLookalikeError):
        explanation = (f"Mã truy cập của nguồn {refusal.source} dùng mã tác tử gần giống tác tử "
                       f"của máy {refusal.bound_host or '?'} (nguồn khác): bị từ chối")
    else:
        explanation = (f"Tác tử của máy {refusal.bound_host or '?'} gửi dữ liệu nhân danh máy khác "
                       f"({refusal.claimed_host}): bị từ chối")
    session.add(Alert(rule_id=refusal.kind, severity="high", response="alert",
                      explanation=explanation, entry_seq=entry.seq, host=refusal.bound_host,
                      group_key=group_key))


def _get_agent(session: Session, agent_id: str, source: str) -> Agent:
    key = identity_key(agent_id)
    # The exact id first: look-alikes bound before revision 0004 each keep their own row.
    agent = session.scalar(select(Agent).where(Agent.agent_id == agent_id))
    if agent is None:
        agent = session.scalar(select(Agent).where(Agent.agent_key == key))
    if agent is None:
        agent = Agent(agent_id=agent_id, agent_key=key, source=source, missing_events=0)
        session.add(agent)
        session.flush()
    elif agent.source != source:
        if agent.agent_id != agent_id:
            raise AgentIdLookalikeError(
                claimed_agent_id=agent_id, claimed_host=None, source=source,
                bound_agent_id=agent.agent_id, bound_host=agent.host, bound_source=agent.source)
        # Otherwise any valid token could keep another PC looking alive and hide its silence.
        raise AgentSourceError(f"agent {agent_id!r} belongs to another source")
    return agent


def _check_host(agent: Agent, agent_id: str, host: str, source: str, *,
                event_id: str | None = None, index: int | None = None) -> None:
    if agent.host is None:  # first contact (or a row from before hosts were bound)
        agent.host = host
    elif not same_identity(agent.host, host):
        raise HostMismatchError(
            claimed_agent_id=agent_id, claimed_host=host, source=source,
            bound_agent_id=agent.agent_id, bound_host=agent.host, bound_source=agent.source,
            event_id=event_id, index=index)


def _bind_agents(session: Session, events: list[Event], positions: list[int],
                 source: str) -> dict[str, Agent]:
    agents: dict[str, Agent] = {}
    # An agent's batch names its host in every event: normalize and compare each pair once.
    checked: set[tuple[str, str]] = set()
    for index, event in zip(positions, events, strict=True):
        if not event.agent_id:
            continue
        if (event.agent_id, event.host) in checked:
            continue
        agent = agents.get(event.agent_id)
        if agent is None:
            agent = agents[event.agent_id] = _get_agent(session, event.agent_id, source)
        _check_host(agent, event.agent_id, event.host, source, event_id=str(event.id), index=index)
        checked.add((event.agent_id, event.host))
    return agents


def _heard_from(session: Session, agent: Agent) -> None:
    # Any accepted contact ends the silence: the next one is a new episode, judged afresh.
    agent.last_contact_at = utcnow()
    agent.silence_rules_fired = None
    if agent.is_silence_reported:
        agent.is_silence_reported = False
        record(session, "agent.back", {"agent_id": agent.agent_id, "host": agent.host},
               host=agent.host)


# ---------------------------------------------------------------- end of agent identity


def _track_agents(session: Session, events: list[Event], agents: dict[str, Agent],
                  processor=None) -> None:
    # Grouped by agent row: look-alike spellings of one id are one agent.
    by_agent: dict[int, tuple[Agent, list[Event]]] = {}
    for event in events:
        if event.agent_id:
            agent = agents[event.agent_id]
            by_agent.setdefault(agent.id, (agent, []))[1].append(event)
    for agent, agent_events in by_agent.values():
        _heard_from(session, agent)
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
                {"agent_id": agent.agent_id, "host": agent.host, "missing": missing,
                 "after_seq": agent.last_seq},
                host=agent.host,
            )
            if processor is not None:
                from service.policy.schemas import MonitoringSignal

                processor.evaluate_signal(session, MonitoringSignal(
                    kind="event_gap", agent_id=agent.agent_id, host=agent.host or "?",
                    missing=missing,
                ), entry.seq)
        agent.last_seq = max(agent.last_seq or -1, seqs[-1])


def _record_renumbering(session: Session, agent: Agent, first_seq: int, *,
                        heartbeat_last_seq: int | None = None) -> None:
    # New events numbered at or below what the server already has, or a heartbeat whose
    # last_seq went backwards: the agent's spool was reset or replaced, so whatever it held
    # before is lost to monitoring. Say so, loudly.
    from service.incidents.models import Alert

    body = {"agent_id": agent.agent_id, "host": agent.host, "first_seq": first_seq,
            "last_seq_before": agent.last_seq}
    if heartbeat_last_seq is not None:
        body["heartbeat_last_seq"] = heartbeat_last_seq
    entry = record(session, "agent.renumbered", body, host=agent.host)
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


# How well each access mode sees opens: user and program, only the file, nothing.
ACCESS_MODE_STRENGTH = {"fanotify-perm": 2, "fanotify": 2, "security-log": 2, "inotify": 1,
                        "off": 0}


def _record_access_mode_change(session: Session, agent: Agent, host: str, mode: str) -> None:
    from service.incidents.models import Alert

    entry = record(session, "agent.access_mode_changed",
                   {"agent_id": agent.agent_id, "host": host, "before": agent.access_mode,
                    "after": mode}, host=host)
    before = ACCESS_MODE_STRENGTH.get(agent.access_mode or "", 0)
    if ACCESS_MODE_STRENGTH.get(mode, 0) >= before:
        return  # a stronger or equal mode is written down, not alerted
    detail = ("không còn ghi được lượt mở tệp" if mode == "off" else
              "không còn biết người và chương trình mở tệp (tác tử mất quyền quản trị?)")
    session.add(Alert(
        rule_id="agent.access_mode_weaker", severity="high", response="alert",
        explanation=f"Tác tử trên máy {host} {detail}: {agent.access_mode} → {mode}",
        entry_seq=entry.seq, host=host, group_key=f"agent.access_mode|{agent.agent_id}"[:512],
    ))


def record_heartbeat(session: Session, *, source: str, agent_id: str, host: str,
                     last_seq: int | None, spool_depth: int | None, version: str | None,
                     config_hash: str | None = None, protected_roots: int | None = None,
                     access_mode: str | None = None) -> Agent:
    """Record an agent's heartbeat: last contact, spool depth, version and what it watches.

    The agent id and host are checked like an event's (AgentSourceError, AgentIdentityRefused);
    a ``last_seq`` below the highest the server has seen raises the renumbering alert.

    A watch configuration different from the last one reported is written to the trail and
    raised as an alert: narrowing what a PC reports is how an insider would go quiet. So is an
    access mode that sees less than before (the agent lost its rights, or opens were turned off).
    """
    agent_id = mask_agent_id(agent_id)  # as events store it (issue #15, item 1)
    agent = _get_agent(session, agent_id, source)
    _check_host(agent, agent_id, host, source)
    host = agent.host or host
    if last_seq is not None and agent.last_seq is not None and last_seq < agent.last_seq:
        # The agent's own count went back below what it already sent: spool reset or replaced.
        _record_renumbering(session, agent, last_seq + 1, heartbeat_last_seq=last_seq)
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
    if access_mode is not None and access_mode != agent.access_mode:
        if agent.access_mode is not None:
            _record_access_mode_change(session, agent, host, access_mode)
        agent.access_mode = access_mode
    _heard_from(session, agent)
    agent.spool_depth = spool_depth
    agent.version = version
    return agent
