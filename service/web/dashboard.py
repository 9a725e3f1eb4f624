"""Read-only queries behind the leadership dashboard (no workflow calls, no writes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from service.audit import log
from service.audit.models import AuditEntry, Checkpoint
from service.audit.operations import latest_checkpoint
from service.config import Settings
from service.events.models import Agent
from service.incidents.models import OPEN_STATES, Alert, Incident, IncidentState

LIST_LIMIT = 50

# Which parts of the page each role sees (DESIGN.md roles): leaders and police handle
# incidents; the alert queue is police work; admins look after agents and never read
# incident or trail content, so they get counts only.
SECTIONS = {
    "incidents": {"leader", "police"},
    "alerts": {"police"},
    "alert_count": {"leader"},
    "incident_counts": {"admin"},
    "agents": {"police", "admin"},
    "trail": {"leader", "police", "admin"},
}


@dataclass
class TrailState:
    """The trail's size and its last signed checkpoint."""

    size: int
    checkpoint: Checkpoint | None
    verifier_key: str | None
    # The newest checkpoint witnesses cosigned, and (witness name, cosigned at) beside it.
    cosigned: Checkpoint | None = None
    cosigners: list = field(default_factory=list)
    witnesses: int = 0
    monitor_size: int | None = None
    is_monitor_failed: bool = False


@dataclass
class Dashboard:
    """Everything the dashboard shows; sections a role may not see stay empty."""

    now: datetime
    visible: set[str]
    unacknowledged: list[Incident] = field(default_factory=list)
    open_incidents: list[Incident] = field(default_factory=list)
    deadlines: list[Incident] = field(default_factory=list)
    alerts_today: list[Alert] = field(default_factory=list)
    alert_happened: dict[int, datetime] = field(default_factory=dict)
    alert_count_today: int = 0
    open_alert_count_today: int = 0
    incident_counts: dict[str, int] = field(default_factory=dict)
    silent_agents: list[Agent] = field(default_factory=list)
    agent_count: int = 0
    trail: TrailState | None = None
    # Leaders and police on leave today and who stands in (service.auth.substitutes).
    substitutions: list = field(default_factory=list)


def local_midnight(now: datetime, timezone: str) -> datetime:
    """Return the start of the commune's current day as an aware datetime."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def visible_sections(roles: list[str]) -> set[str]:
    """Return the dashboard sections open to a user with these roles."""
    return {name for name, allowed in SECTIONS.items() if allowed & set(roles)}


def read_verifier_key(settings: Settings) -> str | None:
    """Return the checkpoint verifier key text, or None if the key file is missing."""
    from service.audit.keys import load_verifier_key

    try:
        return load_verifier_key(settings.keys_dir)
    except FileNotFoundError:
        return None


def build_dashboard(session: Session, settings: Settings, roles: list[str], now: datetime) -> Dashboard:
    """Query the dashboard's content for a user with the given roles."""
    board = Dashboard(now=now, visible=visible_sections(roles))
    open_states = [str(s) for s in OPEN_STATES]
    if "incidents" in board.visible:
        board.unacknowledged = list(session.scalars(
            select(Incident).where(Incident.state == IncidentState.REPORTED)
            .order_by(Incident.created_at, Incident.id).limit(LIST_LIMIT)))
        board.open_incidents = list(session.scalars(
            select(Incident)
            .where(Incident.state.in_(open_states), Incident.state != IncidentState.REPORTED)
            .order_by(Incident.created_at.desc(), Incident.id.desc()).limit(LIST_LIMIT)))
        # A notice is owed until it is sent, whatever the handling state, unless dismissed.
        board.deadlines = list(session.scalars(
            select(Incident)
            .where(Incident.notice_due_at.is_not(None), Incident.notice_sent_at.is_(None),
                   Incident.state != IncidentState.DISMISSED)
            .order_by(Incident.notice_due_at, Incident.id).limit(LIST_LIMIT)))
    if "incidents" in board.visible:
        from service.auth.substitutes import local_today, substitutions_on

        board.substitutions = substitutions_on(session, local_today(settings, now))
    if board.visible & {"alerts", "alert_count"}:
        since = local_midnight(now, settings.timezone)
        # "Today" is when the access happened, not when the agent's batch reached the server.
        happened = _alert_happened()
        today = (select(func.count()).select_from(Alert)
                 .outerjoin(AuditEntry, AuditEntry.seq == Alert.entry_seq).where(happened >= since))
        board.alert_count_today = session.scalar(today) or 0
        board.open_alert_count_today = session.scalar(today.where(Alert.state == "open")) or 0
        if "alerts" in board.visible:
            rows = session.execute(
                select(Alert, happened).outerjoin(AuditEntry, AuditEntry.seq == Alert.entry_seq)
                .where(happened >= since)
                .order_by(happened.desc(), Alert.id.desc()).limit(LIST_LIMIT)).all()
            board.alerts_today = [alert for alert, _ in rows]
            board.alert_happened = {alert.id: at for alert, at in rows}
    if "incident_counts" in board.visible:
        rows = session.execute(select(Incident.state, func.count()).group_by(Incident.state))
        counts = dict(rows.all())
        board.incident_counts = {
            "unacknowledged": counts.get(IncidentState.REPORTED.value, 0),
            "open": sum(counts.get(s, 0) for s in open_states),
        }
    if "agents" in board.visible:
        cutoff = now - timedelta(minutes=settings.agent_silence_minutes)
        board.silent_agents = list(session.scalars(
            select(Agent).where(or_(Agent.last_contact_at.is_(None), Agent.last_contact_at < cutoff))
            .order_by(Agent.last_contact_at, Agent.agent_id).limit(LIST_LIMIT)))
        board.agent_count = session.scalar(select(func.count()).select_from(Agent)) or 0
    if "trail" in board.visible:
        board.trail = TrailState(size=log.tree_size(session), checkpoint=latest_checkpoint(session),
                                 verifier_key=read_verifier_key(settings))
        _add_witness_state(session, board.trail)
    return board


def _add_witness_state(session, trail: TrailState) -> None:
    """Fill in the cosigned checkpoint, who cosigned it, and how far the monitor verified."""
    from service.audit.models import Cosignature, LogWitness
    from service.audit.monitor import monitor_state
    from service.audit.operations import latest_cosigned_checkpoint

    trail.witnesses = session.scalar(select(func.count()).select_from(LogWitness)) or 0
    trail.cosigned = latest_cosigned_checkpoint(session)
    if trail.cosigned is not None:
        trail.cosigners = list(session.execute(
            select(LogWitness.name, Cosignature.cosigned_at)
            .join(LogWitness, LogWitness.id == Cosignature.witness_id)
            .where(Cosignature.checkpoint_id == trail.cosigned.id).order_by(LogWitness.name)))
    state = monitor_state(session)
    if state is not None:
        trail.monitor_size = state.verified_size
        trail.is_monitor_failed = state.failed_size is not None

def _alert_happened():
    """Return the SQL expression for when an alert's access happened (else when it was raised)."""
    return func.coalesce(AuditEntry.occurred_at, Alert.created_at, type_=Alert.created_at.type)


def alert_happened_at(session: Session, alerts: list[Alert]) -> dict[int, datetime]:
    """Return when the access behind each alert happened, by alert id (only where known)."""
    seqs = {a.entry_seq: a.id for a in alerts if a.entry_seq is not None}
    if not seqs:
        return {}
    rows = session.execute(select(AuditEntry.seq, AuditEntry.occurred_at)
                           .where(AuditEntry.seq.in_(seqs), AuditEntry.occurred_at.is_not(None)))
    return {seqs[seq]: at for seq, at in rows}
