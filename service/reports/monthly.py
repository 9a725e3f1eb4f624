"""The monthly report: figures counted from the signed audit trail, and each unit's part.

Every figure is counted from audit entries covered by one signed checkpoint (the *basis*), so
Công an xã can recount it from an evidence bundle with docs/reports.md alone. Two independent
readings exist on purpose:

* ``build_monthly_report`` reads the trail the way the service stores it: indexed SQL
  selections by kind, sequence number and ``recorded_at`` column, then the entry bodies;
* ``recount_from_entries`` reads it the way police receive it: a flat run of canonical entries,
  one pass, times taken from the entry bytes, the Merkle root refolded with ``RootFolder``.

The tests require both to agree, and the recount's root to equal the basis root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from canhgac_common.pii.mask import mask_pii
from service.audit import log, merkle
from service.audit.canonical import canonical_json
from service.audit.models import AuditEntry, Checkpoint
from service.audit.verify import RootFolder, VerifyError, check_entry_body
from service.auth.models import UNITS
from service.config import Settings
from service.core.csvfile import SafeCSV
from service.core.db import utcnow
from service.reports.models import PART_FIELDS, UnitReportPart

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# Every unit files a part except the leadership, which receives the report.
REPORTING_UNITS = tuple(u for u in UNITS if u != "lanh_dao")
MAX_PART_TEXT = 20_000

# An access event: an "event" entry whose action touches data (not login, logout, heartbeat).
ACCESS_ACTIONS = frozenset(
    {"open", "read", "modify", "create", "delete", "move", "copy", "export", "print", "share", "view"}
)
# A copy or share: an event that sends data somewhere (its destination says where).
TRANSFER_ACTIONS = frozenset({"copy", "move", "export", "share", "print"})
ALERT_RAISED_KINDS = frozenset({"alert.raised"})
ALERT_DISMISSED_KINDS = frozenset({"alert.dismissed"})
NOTICE_KINDS = frozenset({"incident.notice_sent"})
SILENCE_KINDS = frozenset({"agent.silent"})
BACK_KINDS = frozenset({"agent.back"})
GAP_KIND = "agent.gap"
INCIDENT_STATES = ("reported", "acknowledged", "investigating", "contained", "resolved", "closed",
                   "dismissed")
# service.incidents.workflow writes one entry "incident.<state>" per transition; other
# incident.* kinds (joined, commented, evidence_attached, notice_sent, ...) change no state.
TRANSITION_KINDS = {f"incident.{state}": state for state in INCIDENT_STATES}


class ReportError(Exception):
    """The report cannot be built (bad month, or the trail does not match its checkpoint)."""


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """A calendar month in the commune's time zone, as UTC instants [start_at, end_at)."""

    month: str
    start_at: datetime
    end_at: datetime
    parts_due_at: datetime  # local 00:00 on the due day of the following month

    @property
    def label(self) -> str:
        """Return "01/2027"."""
        return f"{self.month[5:]}/{self.month[:4]}"


def parse_month(month: str) -> tuple[int, int]:
    """Return (year, month) from "YYYY-MM"; raise ReportError otherwise."""
    match = MONTH_RE.match(month or "")
    if not match:
        raise ReportError(f"month must be YYYY-MM, got {month!r}")
    return int(match.group(1)), int(match.group(2))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_period(month: str, timezone: str, due_day: int = 8) -> Period:
    """Return the period of a month in a time zone, with the parts' due instant."""
    year, mon = parse_month(month)
    zone = ZoneInfo(timezone)
    ny, nm = _next_month(year, mon)
    try:
        start = datetime(year, mon, 1, tzinfo=zone).astimezone(UTC)
        end = datetime(ny, nm, 1, tzinfo=zone).astimezone(UTC)
        due = datetime(ny, nm, due_day, tzinfo=zone).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # year 0, 0001-01 east of UTC, 9999-12's next month
        raise ReportError(f"month out of range: {month!r}") from exc
    return Period(month, start, end, due)


def month_of(moment: datetime, timezone: str) -> str:
    """Return the "YYYY-MM" a moment falls in, in the commune's time zone."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.year:04d}-{local.month:02d}"


def previous_month(moment: datetime, timezone: str) -> str:
    """Return the month before the one a moment falls in (the month usually reported on)."""
    local = moment.astimezone(ZoneInfo(timezone))
    year, mon = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{mon:02d}"


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """What the report counts; docs/reports.md says, for each field, which entries it counts."""

    access: dict = field(default_factory=dict)  # (data_class, unit) -> events
    access_by_action: dict = field(default_factory=dict)  # action -> events
    out_of_scope: dict = field(default_factory=dict)  # (data_class, destination_kind, action) -> events
    alerts_raised: dict = field(default_factory=dict)  # (rule_id, severity) -> alerts
    alerts_dismissed: dict = field(default_factory=dict)  # rule_id -> dismissals
    incidents_new: int = 0
    incidents_by_state: dict = field(default_factory=dict)  # state at period end -> incidents
    ack_seconds: list = field(default_factory=list)  # sorted
    resolve_seconds: list = field(default_factory=list)  # sorted
    notices_on_time: int = 0
    notices_late: int = 0
    notices_missing: int = 0
    agents_monitored: int = 0
    agents_active: int = 0
    agent_events: dict = field(default_factory=dict)  # agent_id -> events in the period
    gap_entries: int = 0
    missing_events: dict = field(default_factory=dict)  # agent_id -> events lost (gaps)
    silences: dict = field(default_factory=dict)  # agent_id -> silences begun in the period
    silent_seconds: dict = field(default_factory=dict)  # agent_id -> seconds silent in period

    @property
    def access_total(self) -> int:
        """Return the number of access events."""
        return sum(self.access.values())

    @property
    def out_of_scope_total(self) -> int:
        """Return the number of copies and shares outside official scope."""
        return sum(self.out_of_scope.values())

    @property
    def alerts_total(self) -> int:
        """Return the number of alerts raised."""
        return sum(self.alerts_raised.values())

    def coverage(self, period_seconds: float) -> float | None:
        """Return the share of agent-time not silent, over monitored agents (None: no agent)."""
        if not self.agents_monitored:
            return None
        silent = sum(self.silent_seconds.values())
        return max(0.0, 1.0 - silent / (self.agents_monitored * period_seconds))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _parse_stamp(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def transition_state(kind: str) -> str | None:
    """Return the incident state an entry kind moves to, or None if it is not a transition."""
    return TRANSITION_KINDS.get(kind)


# --------------------------------------------------------------------------- the basis


@dataclass(frozen=True)
class Basis:
    """The signed checkpoint whose entries the figures count."""

    size: int
    root: bytes
    checkpoint_id: int
    signed_at: datetime
    note: str
    covered: int  # entries recorded before the period end (all inside the basis)

    @property
    def root_b64(self) -> str:
        """Return the root hash in standard base64, as the checkpoint shows it."""
        return base64.b64encode(self.root).decode()


def _happened():
    """Return when an entry's thing happened: the event's own time, else when it was recorded."""
    return func.coalesce(AuditEntry.occurred_at, AuditEntry.recorded_at,
                         type_=AuditEntry.recorded_at.type)


def _entries_before(session: Session, end_at: datetime) -> int:
    # Accesses count in the month they happened in, even when the agent delivered them later
    # (offline PC, demo seeding): the basis must cover those entries too.
    last = session.scalar(select(func.max(AuditEntry.seq)).where(
        or_(AuditEntry.recorded_at < end_at, _happened() < end_at)))
    return 0 if last is None else last + 1


def choose_basis(session: Session, settings: Settings, period: Period, now: datetime) -> tuple[Basis, bool]:
    """Return the basis checkpoint and whether the report is provisional (month not over).

    A finished month uses the first signed checkpoint covering every entry recorded before the
    month's end, signing one now if none does yet; a running month uses the latest checkpoint.
    """
    from service.audit.operations import sign_checkpoint

    is_provisional = now < period.end_at
    covered = _entries_before(session, period.end_at)
    if is_provisional:
        cp = sign_checkpoint(session, settings)
    else:
        cp = session.scalar(
            select(Checkpoint).where(Checkpoint.size >= covered)
            .order_by(Checkpoint.size, Checkpoint.id).limit(1)
        )
        if cp is None:
            cp = sign_checkpoint(session, settings)
    _check_basis(session, settings, cp)
    return Basis(cp.size, bytes(cp.root_hash), cp.id, cp.signed_at, cp.note, covered), is_provisional


def _check_basis(session: Session, settings: Settings, cp: Checkpoint) -> None:
    from service.audit.checkpoint import NoteError, open_checkpoint
    from service.audit.keys import load_verifier_key

    try:
        parsed = open_checkpoint(cp.note, settings.audit_origin, [load_verifier_key(settings.keys_dir)])
    except (NoteError, ValueError) as exc:
        raise ReportError(f"checkpoint #{cp.id} does not verify: {exc}") from exc
    if parsed.size != cp.size or parsed.root != bytes(cp.root_hash):
        raise ReportError(f"checkpoint #{cp.id}: stored size/root differ from its signed note")
    if cp.size and log.root_at(session, cp.size) != parsed.root:
        raise ReportError(f"checkpoint #{cp.id}: the trail's tree does not match its root")


# --------------------------------------------------------------------------- reading 1: SQL


def _rows(session: Session, size: int, *conditions):
    query = (select(AuditEntry.seq, AuditEntry.kind, AuditEntry.recorded_at, AuditEntry.body,
                    AuditEntry.leaf_hash)
             .where(AuditEntry.seq < size, *conditions).order_by(AuditEntry.seq))
    for seq, kind, recorded_at, body, leaf in session.execute(query).yield_per(2000):
        try:
            check_entry_body(seq, body, leaf)
        except VerifyError as exc:
            raise ReportError(f"the trail does not hold: {exc}") from exc
        yield seq, kind, recorded_at, json.loads(body)["body"]


def _count_events(session: Session, basis: Basis, period: Period, fig: Figures) -> set[str]:
    access, by_action, oos, per_agent = Counter(), Counter(), Counter(), Counter()
    for _seq, _kind, _at, body in _rows(
        session, basis.size, AuditEntry.kind == "event",
        _happened() >= period.start_at, _happened() < period.end_at,
    ):
        action = body.get("action")
        obj = body.get("object") or {}
        data_class = obj.get("data_class") or ""
        if body.get("agent_id"):
            per_agent[body["agent_id"]] += 1
        if action in ACCESS_ACTIONS:
            access[(data_class, body.get("unit") or "")] += 1
            by_action[action] += 1
        dest = body.get("destination")
        if action in TRANSFER_ACTIONS and dest is not None and dest.get("kind") != "official":
            has_pii = sum(v for v in (body.get("pii") or {}).values() if isinstance(v, int)) > 0
            if data_class or has_pii:
                oos[(data_class, dest.get("kind") or "unknown", action)] += 1
    fig.access, fig.access_by_action, fig.out_of_scope = dict(access), dict(by_action), dict(oos)
    fig.agent_events = dict(per_agent)
    return set(per_agent)


def _count_alerts(session: Session, basis: Basis, period: Period, fig: Figures) -> None:
    raised, dismissed = Counter(), Counter()
    kinds = ALERT_RAISED_KINDS | ALERT_DISMISSED_KINDS
    for _seq, kind, _at, body in _rows(
        session, basis.size, AuditEntry.kind.in_(kinds),
        AuditEntry.recorded_at >= period.start_at, AuditEntry.recorded_at < period.end_at,
    ):
        rule = str(body.get("rule_id") or "")
        if kind in ALERT_RAISED_KINDS:
            raised[(rule, str(body.get("severity") or ""))] += 1
        else:
            dismissed[rule] += 1
    fig.alerts_raised, fig.alerts_dismissed = dict(raised), dict(dismissed)


@dataclass
class _IncidentTrack:
    created_at: datetime | None = None
    detected_at: datetime | None = None
    involves_personal_data: bool = True
    notice_due_at: datetime | None = None
    state: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    excused_at: datetime | None = None  # dismissed, or closed with a reason for no notice
    notice_recorded_at: datetime | None = None
    notice_sent_at: datetime | None = None
    notice_deadline: datetime | None = None


def _incident_figures(tracks: dict[int, _IncidentTrack], period: Period, notice_hours: int,
                      fig: Figures) -> None:
    by_state: Counter = Counter()
    ack, resolve = [], []
    on_time = late = missing = new = 0
    for track in tracks.values():
        if track.state:
            by_state[track.state] += 1
        created = track.created_at
        if created is None:
            continue
        if period.start_at <= created < period.end_at:
            new += 1
        if track.acknowledged_at and period.start_at <= track.acknowledged_at < period.end_at:
            ack.append((track.acknowledged_at - created).total_seconds())
        if track.resolved_at and period.start_at <= track.resolved_at < period.end_at:
            resolve.append((track.resolved_at - created).total_seconds())
        if track.notice_recorded_at is not None:
            if period.start_at <= track.notice_recorded_at < period.end_at:
                deadline = track.notice_deadline or _deadline(track, notice_hours)
                sent = track.notice_sent_at or track.notice_recorded_at
                if deadline is None or sent <= deadline:
                    on_time += 1
                else:
                    late += 1
            continue
        deadline = _deadline(track, notice_hours)
        if (deadline is not None and period.start_at <= deadline < period.end_at
                and track.excused_at is None):
            missing += 1
    fig.incidents_by_state = dict(by_state)
    fig.ack_seconds, fig.resolve_seconds = sorted(ack), sorted(resolve)
    fig.notices_on_time, fig.notices_late, fig.notices_missing = on_time, late, missing
    fig.incidents_new = new


def _deadline(track: _IncidentTrack, notice_hours: int) -> datetime | None:
    if track.notice_due_at is not None:
        return track.notice_due_at
    if not track.involves_personal_data or track.created_at is None:
        return None
    return (track.detected_at or track.created_at) + timedelta(hours=notice_hours)


def _track_incident(tracks: dict[int, _IncidentTrack], kind: str, body: dict,
                    at: datetime) -> None:
    incident_id = body.get("incident_id")
    if not isinstance(incident_id, int) or isinstance(incident_id, bool):
        return
    track = tracks.setdefault(incident_id, _IncidentTrack())
    due = _parse_stamp(body.get("notice_due_at"))
    if kind in NOTICE_KINDS:
        if track.notice_recorded_at is None:
            track.notice_recorded_at = at
            track.notice_sent_at = _parse_stamp(body.get("sent_at"))
            track.notice_deadline = due or track.notice_due_at
        return
    if due is not None:
        # The clock may restart when personal data shows up later ("incident.joined").
        track.notice_due_at = due
    state = transition_state(kind)
    if state is None:
        return
    track.state = state
    if state == "reported" and track.created_at is None:
        track.created_at = at
        track.detected_at = _parse_stamp(body.get("detected_at"))
        track.involves_personal_data = body.get("involves_personal_data") is not False
    elif state == "acknowledged" and track.acknowledged_at is None:
        track.acknowledged_at = at
    elif state == "resolved" and track.resolved_at is None:
        track.resolved_at = at
    elif track.excused_at is None and (
        state == "dismissed" or (state == "closed" and body.get("no_notice_reason"))
    ):
        track.excused_at = at


def _count_incidents(session: Session, basis: Basis, period: Period, notice_hours: int,
                     fig: Figures) -> None:
    tracks: dict[int, _IncidentTrack] = {}
    for _seq, kind, at, body in _rows(
        session, basis.size, AuditEntry.kind.like("incident.%"), AuditEntry.recorded_at < period.end_at,
    ):
        _track_incident(tracks, kind, body, at)
    _incident_figures(tracks, period, notice_hours, fig)


@dataclass
class _AgentTrack:
    silent_since: datetime | None = None
    silent_seconds: float = 0.0
    silences: int = 0


def _agent_step(agents: dict[str, _AgentTrack], fig_gaps: Counter, counters: list, kind: str,
                body: dict, at: datetime, period: Period) -> None:
    agent_id = body.get("agent_id")
    if not isinstance(agent_id, str):
        return
    track = agents.setdefault(agent_id, _AgentTrack())
    in_period = period.start_at <= at < period.end_at
    if kind == GAP_KIND:
        if in_period:
            counters[0] += 1
            missing = body.get("missing")
            fig_gaps[agent_id] += missing if isinstance(missing, int) else 0
    elif kind in SILENCE_KINDS:
        if track.silent_since is None:
            # The entry is written some minutes after the last contact; it says how many.
            silent = body.get("silent_seconds")
            lag = silent if isinstance(silent, int | float) and silent > 0 else 0
            track.silent_since = at - timedelta(seconds=lag)
            if in_period:
                track.silences += 1
    elif kind in BACK_KINDS and track.silent_since is not None:
        track.silent_seconds += _overlap(track.silent_since, at, period)
        track.silent_since = None


def _overlap(since: datetime, until: datetime, period: Period) -> float:
    start, end = max(since, period.start_at), min(until, period.end_at)
    return max(0.0, (end - start).total_seconds())


def _agent_figures(agents: dict[str, _AgentTrack], gaps: Counter, gap_entries: int,
                   active: set[str], period: Period, fig: Figures) -> None:
    for track in agents.values():
        if track.silent_since is not None:
            track.silent_seconds += _overlap(track.silent_since, period.end_at, period)
            track.silent_since = None
    fig.gap_entries = gap_entries
    fig.missing_events = {a: n for a, n in gaps.items() if n}
    fig.silences = {a: t.silences for a, t in agents.items() if t.silences}
    fig.silent_seconds = {a: t.silent_seconds for a, t in agents.items() if t.silent_seconds}
    fig.agents_active = len(active)
    fig.agents_monitored = len(active | set(agents))


def _count_agents(session: Session, basis: Basis, period: Period, active: set[str],
                  fig: Figures) -> None:
    agents: dict[str, _AgentTrack] = {}
    gaps: Counter = Counter()
    counters = [0]
    kinds = SILENCE_KINDS | BACK_KINDS | {GAP_KIND}
    for _seq, kind, at, body in _rows(
        session, basis.size, AuditEntry.kind.in_(kinds), AuditEntry.recorded_at < period.end_at,
    ):
        _agent_step(agents, gaps, counters, kind, body, at, period)
    _agent_figures(agents, gaps, counters[0], active, period, fig)


# --------------------------------------------------------------------------- reading 2: recount


@dataclass
class Recount:
    """The result of recounting from a run of entries: figures, size seen, and their root."""

    figures: Figures
    size: int
    root: bytes | None  # None unless the entries ran from 0 without a hole

    @property
    def root_b64(self) -> str | None:
        """Return the root in base64, or None."""
        return base64.b64encode(self.root).decode() if self.root is not None else None


def _entry_bytes(item) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, dict) and isinstance(item.get("body"), str):
        return item["body"].encode()  # a line of an evidence bundle's entries.jsonl
    raise TypeError("entries must be canonical entry bytes/str or bundle lines with 'body'")


def recount_from_entries(entries: Iterable, *, month: str, timezone: str = "Asia/Ho_Chi_Minh",
                         notice_hours: int = 72, size: int | None = None) -> Recount:
    """Recount a month's figures from canonical audit entries alone, in one pass.

    ``entries`` are the stored entry bytes (or an evidence bundle's lines) in sequence order;
    entries at or past ``size`` are ignored. Times come from each entry's own ``recorded_at``.
    """
    period = month_period(month, timezone)
    start, end = period.start_at, period.end_at
    fig = Figures()
    access, by_action, oos, per_agent = Counter(), Counter(), Counter(), Counter()
    raised, dismissed = Counter(), Counter()
    tracks: dict[int, _IncidentTrack] = {}
    agents: dict[str, _AgentTrack] = {}
    gaps: Counter = Counter()
    gap_counter = [0]
    folder = RootFolder()
    contiguous = True
    seen = 0
    for item in entries:
        data = _entry_bytes(item)
        entry = json.loads(data)
        seq = entry["seq"]
        if size is not None and seq >= size:
            continue
        if contiguous and seq == folder.count:
            folder.add(merkle.leaf_hash(data))
        else:
            contiguous = False
        seen += 1
        at = datetime.fromisoformat(entry["recorded_at"]).astimezone(UTC)
        kind, body = entry["kind"], entry["body"]
        if kind == "event":
            # Accesses count by when they happened (the event's own time), not when recorded.
            happened = _parse_stamp(body.get("occurred_at")) or at
            if not start <= happened < end:
                continue
        elif at >= end:
            continue
        in_period = at >= start
        if kind == "event":
            obj = body.get("object") or {}
            dc = obj.get("data_class") or ""
            action = body.get("action")
            if body.get("agent_id"):
                per_agent[body["agent_id"]] += 1
            if action in ACCESS_ACTIONS:
                access[dc, body.get("unit") or ""] += 1
                by_action[action] += 1
            dest = body.get("destination")
            if action in TRANSFER_ACTIONS and dest is not None and dest.get("kind") != "official":
                pii_total = sum(v for v in (body.get("pii") or {}).values() if isinstance(v, int))
                if dc or pii_total > 0:
                    oos[dc, dest.get("kind") or "unknown", action] += 1
        elif kind in ALERT_RAISED_KINDS and in_period:
            raised[str(body.get("rule_id") or ""), str(body.get("severity") or "")] += 1
        elif kind in ALERT_DISMISSED_KINDS and in_period:
            dismissed[str(body.get("rule_id") or "")] += 1
        elif kind.startswith("incident."):
            _track_incident(tracks, kind, body, at)
        elif kind in SILENCE_KINDS or kind in BACK_KINDS or kind == GAP_KIND:
            _agent_step(agents, gaps, gap_counter, kind, body, at, period)
    fig.access, fig.access_by_action, fig.out_of_scope = dict(access), dict(by_action), dict(oos)
    fig.agent_events = dict(per_agent)
    fig.alerts_raised, fig.alerts_dismissed = dict(raised), dict(dismissed)
    _incident_figures(tracks, period, notice_hours, fig)
    _agent_figures(agents, gaps, gap_counter[0], set(per_agent), period, fig)
    root = folder.root() if contiguous else None
    return Recount(fig, seen, root)


def recount_from_database(session: Session, basis_size: int, *, month: str, timezone: str,
                          notice_hours: int) -> Recount:
    """Recount from every stored entry below the basis size (what police do with a full export)."""
    def stream():
        last = -1
        while True:
            rows = session.execute(
                select(AuditEntry.seq, AuditEntry.body)
                .where(AuditEntry.seq > last, AuditEntry.seq < basis_size)
                .order_by(AuditEntry.seq).limit(5000)
            ).all()
            if not rows:
                return
            for seq, body in rows:
                yield body
                last = seq

    return recount_from_entries(stream(), month=month, timezone=timezone,
                                notice_hours=notice_hours, size=basis_size)


# --------------------------------------------------------------------------- unit parts


def part_text_sha256(texts: dict) -> str:
    """Return the SHA-256 (hex) of a part's five texts as canonical JSON (written to the trail)."""
    return hashlib.sha256(canonical_json({k: texts.get(k, "") for k in PART_FIELDS})).hexdigest()


def submit_unit_part(session: Session, settings: Settings, *, unit: str, month: str, texts: dict,
                     by: str, now: datetime | None = None) -> UnitReportPart:
    """File (or amend) a unit's part of a month's report; audit it; mark it late after the due day."""
    now = now or utcnow()
    period = month_period(month, settings.timezone, settings.report_due_day)
    if unit not in REPORTING_UNITS:
        raise ReportError(f"unit {unit!r} does not file a monthly part")
    if now < period.start_at:
        raise ReportError(f"month {month} has not started yet")
    clean = {}
    for name in PART_FIELDS:
        value = str(texts.get(name) or "").strip()
        if len(value) > MAX_PART_TEXT:
            raise ReportError(f"{name} is longer than {MAX_PART_TEXT} characters")
        clean[name] = value
    if not any(clean.values()):
        raise ReportError("the part is empty")
    digest = part_text_sha256(clean)
    part = session.scalar(
        select(UnitReportPart).where(UnitReportPart.unit == unit, UnitReportPart.month == month)
    )
    is_amendment = part is not None
    if part is None:
        part = UnitReportPart(unit=unit, month=month, submitted_at=now, submitted_by=by,
                              is_late=now >= period.parts_due_at)
        session.add(part)
    else:
        part.amended_at = now
        part.submitted_by = by
    for name, value in clean.items():
        setattr(part, name, value)
    part.text_sha256 = digest
    session.flush()
    log.record(session, "report.part_submitted",
               {"actor": by, "unit": unit, "month": month, "is_late": part.is_late,
                "is_amendment": is_amendment, "text_sha256": digest},
               actor=by)
    return part


def parts_for_month(session: Session, month: str) -> dict[str, UnitReportPart]:
    """Return the filed parts of a month by unit."""
    rows = session.scalars(select(UnitReportPart).where(UnitReportPart.month == month))
    return {p.unit: p for p in rows}


def missing_units(session: Session, month: str) -> list[str]:
    """Return the units that have not filed their part of a month."""
    filed = parts_for_month(session, month)
    return [u for u in REPORTING_UNITS if u not in filed]


# --------------------------------------------------------------------------- the report


@dataclass
class MonthlyReport:
    """A month's figures, their basis, and the units' parts."""

    period: Period
    basis: Basis
    figures: Figures
    parts: dict[str, UnitReportPart]
    is_provisional: bool
    generated_at: datetime
    timezone: str
    notice_hours: int

    @property
    def month(self) -> str:
        """Return "YYYY-MM"."""
        return self.period.month

    @property
    def missing_units(self) -> list[str]:
        """Return the units whose part is not filed."""
        return [u for u in REPORTING_UNITS if u not in self.parts]

    @property
    def period_seconds(self) -> float:
        """Return the length of the period in seconds."""
        return (self.period.end_at - self.period.start_at).total_seconds()


def build_monthly_report(session: Session, settings: Settings, month: str, *,
                         now: datetime | None = None) -> MonthlyReport:
    """Build a month's report from the entries covered by its basis checkpoint (flushes only)."""
    now = now or utcnow()
    period = month_period(month, settings.timezone, settings.report_due_day)
    basis, is_provisional = choose_basis(session, settings, period, now)
    fig = Figures()
    active = _count_events(session, basis, period, fig)
    _count_alerts(session, basis, period, fig)
    _count_incidents(session, basis, period, settings.breach_notice_hours, fig)
    _count_agents(session, basis, period, active, fig)
    return MonthlyReport(
        period=period, basis=basis, figures=fig, parts=parts_for_month(session, month),
        is_provisional=is_provisional, generated_at=now, timezone=settings.timezone,
        notice_hours=settings.breach_notice_hours,
    )


def record_report_output(session: Session, report: MonthlyReport, *, fmt: str, by: str) -> None:
    """Write the audit entry saying who produced which report, on which basis."""
    log.record(session, "report.generated",
               {"actor": by, "month": report.month, "format": fmt,
                "is_provisional": report.is_provisional, "basis_size": report.basis.size,
                "basis_root": report.basis.root_b64}, actor=by)


# --------------------------------------------------------------------------- labels & output

ACTION_LABELS = {
    "open": "Mở", "read": "Đọc", "modify": "Sửa", "create": "Tạo", "delete": "Xóa",
    "move": "Di chuyển", "copy": "Sao chép", "export": "Xuất", "print": "In", "share": "Chia sẻ",
    "view": "Xem",
}
DESTINATION_LABELS = {
    "removable": "Thiết bị lưu trữ di động", "cloud": "Lưu trữ đám mây",
    "messaging": "Ứng dụng nhắn tin", "email": "Thư điện tử", "print": "In ấn",
    "publishing": "Đăng tải công khai", "unknown": "Không xác định",
}
STATE_LABELS = {
    "reported": "Mới báo cáo", "acknowledged": "Đã xác nhận", "investigating": "Đang điều tra",
    "contained": "Đã ngăn chặn", "resolved": "Đã khắc phục", "closed": "Đã đóng",
    "dismissed": "Đã bác bỏ",
}
PART_LABELS = {
    "done_text": "Việc đã làm", "not_done_text": "Việc chưa làm",
    "difficulties_text": "Khó khăn, vướng mắc", "causes_text": "Nguyên nhân",
    "proposals_text": "Đề xuất, kiến nghị",
}
UNCLASSIFIED = "(chưa phân loại)"
NO_UNIT = "(không rõ bộ phận)"


def unit_label(unit: str) -> str:
    """Return a unit's name, or a placeholder for events that did not name one."""
    return UNITS.get(unit, unit) if unit else NO_UNIT


def duration_vi(seconds: float | None) -> str:
    """Return a duration like "2 giờ 05 phút" (or "—")."""
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days} ngày {hours} giờ {mins:02d} phút"
    if hours:
        return f"{hours} giờ {mins:02d} phút"
    return f"{mins} phút"


def report_context(report: MonthlyReport, settings: Settings, *,
                   data_class_labels: dict[str, str] | None = None,
                   issued_on: date | None = None) -> dict:
    """Return everything the report templates (web page and document) show."""
    from service.reports import charts
    from service.reports.documents import document_header, local_date, vn_number

    labels = data_class_labels or {}
    fig = report.figures

    def dc_label(dc: str) -> str:
        return labels.get(dc, dc) if dc else UNCLASSIFIED

    by_class: Counter = Counter()
    by_unit: Counter = Counter()
    for (dc, unit), n in fig.access.items():
        by_class[dc] += n
        by_unit[unit] += n
    access_rows = sorted(
        ((dc_label(dc), unit_label(unit), n) for (dc, unit), n in fig.access.items()),
        key=lambda r: (-r[2], r[0], r[1]),
    )
    oos_rows = sorted(
        ((dc_label(dc), DESTINATION_LABELS.get(kind, kind), ACTION_LABELS.get(a, a or "—"), n)
         for (dc, kind, a), n in fig.out_of_scope.items()),
        key=lambda r: (-r[3], r[0], r[1], r[2]),
    )
    from service.web.labels import label

    alert_rows = sorted(
        ((label(rule, "rule") if rule else "—", label(sev, "severity") if sev else "—", n,
          fig.alerts_dismissed.get(rule, 0))
         for (rule, sev), n in fig.alerts_raised.items()),
        key=lambda r: (-r[2], r[0], r[1]),
    )
    agent_ids = sorted(set(fig.agent_events) | set(fig.missing_events) | set(fig.silences)
                       | set(fig.silent_seconds))
    # Agent ids come from agents (older trail entries were stored before ingest masked them).
    agent_rows = [
        (mask_pii(a), fig.agent_events.get(a, 0), fig.missing_events.get(a, 0), fig.silences.get(a, 0),
         duration_vi(fig.silent_seconds.get(a)) if fig.silent_seconds.get(a) else "—")
        for a in agent_ids
    ]
    coverage = fig.coverage(report.period_seconds)
    parts = []
    for unit in REPORTING_UNITS:
        part = report.parts.get(unit)
        parts.append({"unit": unit, "label": UNITS[unit], "part": part,
                      "sections": [(PART_LABELS[f], getattr(part, f)) for f in PART_FIELDS]
                      if part else []})
    issued_on = issued_on or local_date(settings, report.generated_at)
    return {
        "report": report,
        "fig": fig,
        "action_labels": ACTION_LABELS,
        "settings": settings,
        "header": document_header(settings, "BC", issued_on),
        "signer_name": settings.signer_name,
        "period_label": report.period.label,
        "basis": report.basis,
        "access_rows": access_rows,
        "oos_rows": oos_rows,
        "alert_rows": alert_rows,
        "agent_rows": agent_rows,
        "state_rows": [(STATE_LABELS[s], fig.incidents_by_state.get(s, 0))
                       for s in INCIDENT_STATES if fig.incidents_by_state.get(s)],
        "incidents_total": sum(fig.incidents_by_state.values()),
        "ack": {"n": len(fig.ack_seconds), "median": duration_vi(_median(fig.ack_seconds)),
                "worst": duration_vi(max(fig.ack_seconds) if fig.ack_seconds else None)},
        "resolve": {"n": len(fig.resolve_seconds),
                    "median": duration_vi(_median(fig.resolve_seconds)),
                    "worst": duration_vi(max(fig.resolve_seconds) if fig.resolve_seconds else None)},
        "coverage_pct": None if coverage is None else vn_number(round(coverage * 100, 1)),
        "parts": parts,
        "missing_labels": [UNITS[u] for u in report.missing_units],
        "late_labels": [UNITS[u] for u, p in report.parts.items() if p.is_late],
        "chart_class": charts.bar_chart_svg(
            [(dc_label(dc), n) for dc, n in by_class.most_common(12)],
            title="Lượt truy cập theo loại dữ liệu"),
        "chart_unit": charts.bar_chart_svg(
            [(unit_label(u), n) for u, n in by_unit.most_common(12)],
            title="Lượt truy cập theo bộ phận"),
        "chart_states": charts.bar_chart_svg(
            [(STATE_LABELS[s], fig.incidents_by_state.get(s, 0)) for s in INCIDENT_STATES],
            title="Sự cố theo trạng thái cuối kỳ"),
        "generated_local": report.generated_at.astimezone(ZoneInfo(report.timezone)),
        "period_start_local": report.period.start_at.astimezone(ZoneInfo(report.timezone)),
        "period_end_local": report.period.end_at.astimezone(ZoneInfo(report.timezone)),
    }


def render_monthly_html(report: MonthlyReport, settings: Settings, **kwargs) -> str:
    """Render the report as a standalone HTML document (the PDF's source, styles inline)."""
    from service.reports.documents import STYLESHEET, render_document_html

    context = report_context(report, settings, **kwargs)
    context["inline_css"] = STYLESHEET.read_text(encoding="utf-8")
    return render_document_html("reports/monthly_document.html", context)


def render_monthly_pdf(report: MonthlyReport, settings: Settings, **kwargs) -> bytes:
    """Render the report as a PDF (BÁO CÁO, Decree 30 layout) with its basis printed."""
    from service.reports.documents import render_document_pdf

    return render_document_pdf("reports/monthly_document.html", report_context(report, settings, **kwargs))


def monthly_csv(report: MonthlyReport) -> str:
    """Return the figures as CSV rows: section, key, key2, key3, value (UTF-8 with BOM)."""
    fig = report.figures
    w = SafeCSV()  # agent ids, units and rule ids come from outside: no cell may run as a formula
    w.row(["section", "key", "key2", "key3", "value"])
    w.row(["period", "month", "", "", report.month])
    w.row(["period", "start_at", "", "", report.period.start_at.isoformat()])
    w.row(["period", "end_at", "", "", report.period.end_at.isoformat()])
    w.row(["period", "is_provisional", "", "", str(report.is_provisional).lower()])
    w.row(["basis", "tree_size", "", "", report.basis.size])
    w.row(["basis", "root_base64", "", "", report.basis.root_b64])
    w.row(["basis", "checkpoint_signed_at", "", "", report.basis.signed_at.isoformat()])
    for (dc, unit), n in sorted(fig.access.items()):
        w.row(["access", dc, unit, "", n])
    for action, n in sorted(fig.access_by_action.items()):
        w.row(["access_by_action", action, "", "", n])
    for (dc, kind, action), n in sorted(fig.out_of_scope.items()):
        w.row(["out_of_scope", dc, kind, action, n])
    for (rule, sev), n in sorted(fig.alerts_raised.items()):
        w.row(["alerts_raised", rule, sev, "", n])
    for rule, n in sorted(fig.alerts_dismissed.items()):
        w.row(["alerts_dismissed", rule, "", "", n])
    w.row(["incidents", "new", "", "", fig.incidents_new])
    for state in INCIDENT_STATES:
        w.row(["incidents_by_state", state, "", "", fig.incidents_by_state.get(state, 0)])
    for name, values in (("ack", fig.ack_seconds), ("resolve", fig.resolve_seconds)):
        w.row([f"time_to_{name}", "count", "", "", len(values)])
        w.row([f"time_to_{name}", "median_seconds", "", "",
                    "" if not values else round(_median(values), 3)])
        w.row([f"time_to_{name}", "worst_seconds", "", "",
                    "" if not values else round(max(values), 3)])
    w.row(["notices_72h", "on_time", "", "", fig.notices_on_time])
    w.row(["notices_72h", "late", "", "", fig.notices_late])
    w.row(["notices_72h", "missing", "", "", fig.notices_missing])
    w.row(["agents", "monitored", "", "", fig.agents_monitored])
    w.row(["agents", "active", "", "", fig.agents_active])
    w.row(["agents", "gap_entries", "", "", fig.gap_entries])
    cov = fig.coverage(report.period_seconds)
    w.row(["agents", "coverage", "", "", "" if cov is None else round(cov, 6)])
    for agent, n in sorted(fig.agent_events.items()):
        w.row(["agent_events", mask_pii(agent), "", "", n])
    for agent, n in sorted(fig.missing_events.items()):
        w.row(["agent_missing_events", mask_pii(agent), "", "", n])
    for agent, n in sorted(fig.silences.items()):
        w.row(["agent_silences", mask_pii(agent), "", "", n])
    for agent, s in sorted(fig.silent_seconds.items()):
        w.row(["agent_silent_seconds", mask_pii(agent), "", "", round(s, 3)])
    for unit in REPORTING_UNITS:
        part = report.parts.get(unit)
        status = "missing" if part is None else ("late" if part.is_late else "on_time")
        w.row(["unit_part", unit, status, "" if part is None else part.submitted_at.isoformat(),
                    "" if part is None else part.text_sha256])
    return w.text()
