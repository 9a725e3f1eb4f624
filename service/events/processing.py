"""The policy in force, applied to ingested events: enrich, evaluate, raise alerts and incidents.

The policy engine is pure; this module owns the mutable parts around it: which version is in
force (hot-reloaded, last good version kept on failure), the sliding-window counters (rebuilt
from the trail at start, so they survive a restart), and what each verdict does in the database.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from canhgac_common.events import Event
from service.audit import log
from service.audit.log import AppendedEntry, PendingEntry
from service.audit.models import AuditEntry
from service.core.db import new_session, reading, utcnow
from service.incidents.models import Alert
from service.policy import engine
from service.policy.loader import load_policy, resolve_policy_dir
from service.policy.schemas import MonitoringSignal, PolicyError, Verdict
from service.policy.windows import WindowState

logger = structlog.get_logger("canhgac.policy")
WARMUP = timedelta(hours=24)  # longest window the default policy uses; counters older than this are moot


@dataclass
class PolicyState:
    """The policy in force and what the last load attempt said (shown to admins)."""

    policy: engine.Policy | None = None
    loaded_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    test_results: list = field(default_factory=list)
    directory: str | None = None


def _problems_text(exc: PolicyError) -> str:
    return "; ".join(str(p) for p in getattr(exc, "problems", [])) or str(exc)


def load_checked(directory) -> tuple[engine.Policy, list]:
    """Load a policy and run its own rule tests; raise PolicyError on any failure."""
    policy = load_policy(directory)
    failures = engine.run_policy_tests(policy)
    if failures:
        raise PolicyError([f"rule test failed: {f}" for f in failures[:10]])
    return policy, failures


# Who changed the policy files is not known: they are edited on the server, not through us.
POLICY_FILES_AUTHOR = "không xác định (tệp chính sách trên máy chủ đã được sửa)"


def policy_change_lines(previous: engine.Policy, current: engine.Policy) -> list[str]:
    """Return what a new policy version changes in its rules, one Vietnamese line each."""
    def enabled(policy: engine.Policy) -> dict[str, object]:
        return {rule.id: rule for rule in policy.rules if rule.enabled}

    before, after = enabled(previous), enabled(current)
    # Whole hashes: a 16-digit prefix can hold a run of 9 digits, which the masker would hide.
    lines = [f"Phiên bản trước: {previous.hash}; phiên bản mới: {current.hash}."]
    # Rules that stop applying are what an insider weakening the policy would do: first.
    for label, ids in (
        ("Quy tắc không còn áp dụng (bị xóa hoặc tắt)", sorted(before.keys() - after.keys())),
        ("Quy tắc mới áp dụng", sorted(after.keys() - before.keys())),
        ("Quy tắc được sửa", sorted(i for i in before.keys() & after.keys() if before[i] != after[i])),
    ):
        if ids:
            lines.append(f"{label}: {', '.join(ids)}.")
    # Weakening need not touch a rule: emptying a data class's paths or widening an official
    # scope silences rules just as well, so every other part that changed is named too.
    parts = (("lớp dữ liệu", "data_classes"), ("đơn vị", "units"), ("phạm vi", "scopes"))
    changed = [label for label, name in parts
               if getattr(previous, name) != getattr(current, name)]
    if previous.settings != current.settings:
        changed.append("cài đặt chung (giờ làm việc, ngày nghỉ, múi giờ)")
    if changed:
        lines.append(f"Phần khác đã thay đổi: {', '.join(changed)}.")
    if len(lines) == 1:
        lines.append("Các quy tắc và định nghĩa không đổi; chỉ bài kiểm thử hoặc chú thích đã thay đổi.")
    return lines


def _announce_policy_change(session: Session, previous: engine.Policy, current: engine.Policy) -> None:
    from service.notify.security import notify_security_change

    notify_security_change(
        session, headline="Chính sách phát hiện đã được thay đổi và đang áp dụng",
        details=policy_change_lines(previous, current), by=POLICY_FILES_AUTHOR,
    )


def _announce_recorded_change(session: Session, last: dict, current: engine.Policy) -> None:
    # Only the trail's record of the previous version is left: compare rule ids and hashes.
    from service.notify.security import notify_security_change

    before, after = set(last.get("rules") or ()), {r.id for r in current.rules}
    lines = [f"Phiên bản ghi lần trước: {last.get('hash')}; phiên bản đang áp dụng: "
             f"{current.hash}. Tệp chính sách đã đổi khi dịch vụ không chạy hoặc khi khởi động."]
    if before - after:
        lines.append(f"Quy tắc không còn trong tệp: {', '.join(sorted(before - after))}.")
    if after - before:
        lines.append(f"Quy tắc mới: {', '.join(sorted(after - before))}.")
    disabled = sorted(r.id for r in current.rules if not r.enabled)
    if disabled:
        lines.append(f"Quy tắc đang tắt: {', '.join(disabled)}.")
    notify_security_change(
        session, headline="Chính sách phát hiện đang áp dụng khác phiên bản được ghi lần trước",
        details=lines, by=POLICY_FILES_AUTHOR,
    )


def _verdict_body(verdict: Verdict, entry_seq: int | None) -> dict:
    g = verdict.group_key
    return {"rule_id": verdict.rule_id, "severity": str(verdict.severity),
            "response": str(verdict.response), "explanation": verdict.explanation,
            "entry_seq": entry_seq, "actor": g.actor, "host": g.host, "data_class": g.data_class}


def _verdict_search(verdict: Verdict) -> dict:
    g = verdict.group_key
    return {"actor": g.actor, "host": g.host, "data_class": g.data_class}


def group_key_text(verdict: Verdict) -> str:
    """Return the grouping key of a verdict as one string (rule, actor, host, class, object)."""
    g = verdict.group_key
    return "|".join([verdict.rule_id, g.actor or "*", g.host or "*", g.data_class or "*",
                     g.object_path or "*"])[:512]


def stored_event(body: str) -> Event | None:
    """Return the event of a stored ``event`` entry's body, or None if it no longer validates."""
    data = json.loads(body)["body"]
    data.pop("source", None)  # added by ingest next to the event, not part of it
    try:
        return Event.model_validate(data)
    except ValueError:
        return None


def _windowed_events(session: Session, policy: engine.Policy, *conditions) -> list:
    """Return (recorded_at, body) of the stored events a windowed rule counts, in seq order.

    Only an action some windowed rule counts can move a window: the others (opens, the bulk of
    what agents send) are not read back (bench/README.md, eighth session).
    """
    if not policy.windowed_actions:
        return []
    return session.execute(
        select(AuditEntry.recorded_at, AuditEntry.body)
        .where(AuditEntry.kind == "event", AuditEntry.action.in_(sorted(policy.windowed_actions)),
               *conditions)
        .order_by(AuditEntry.seq)
    ).all()


class PolicyProcessor:
    """Applies the policy in force to events and monitoring signals."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.settings = app.config["SETTINGS"]
        self.state = PolicyState()
        self.windows = WindowState()
        # The highest trail seq whose events are in the windows (None until warm_up or the
        # first batch); the events above it were appended by other processes, or not yet.
        self._seen_seq: int | None = None
        self._lock = threading.RLock()
        self._watcher = None
        self._recorded_hash: str | None = None
        # A secondary server process (core/workers.py) follows policy changes without
        # recording refusals or announcing: its primary does, once.
        self.is_primary = True

    # ------------------------------------------------------------------ loading

    def load_initial(self) -> None:
        """Load the configured policy at start; fall back to the packaged default on failure."""
        directory = resolve_policy_dir(self.settings.policy_dir)
        try:
            policy, results = load_checked(directory)
        except PolicyError as exc:
            self.state.last_error = _problems_text(exc)
            self.state.last_error_at = utcnow()
            logger.error("policy_rejected_at_start", directory=str(directory),
                         problems=self.state.last_error[:500])
            from service.policy.loader import default_policy_dir

            directory = default_policy_dir()
            policy, results = load_checked(directory)
        self._put_in_force(policy, results, str(directory))

    def _put_in_force(self, policy: engine.Policy, results: list, directory: str) -> None:
        with self._lock:
            self.state.policy = policy
            self.state.loaded_at = utcnow()
            self.state.test_results = results
            self.state.directory = directory

    def record_version(self, session: Session, *, announce: bool = False) -> None:
        """Write the policy version in force to the trail unless it is already the latest there.

        With ``announce`` (at start), a version different from the last one recorded is
        announced to leadership and police: the files were changed while the service was
        stopped. Reloads announce their own, more detailed, change.
        """
        policy = self.state.policy
        if policy is None or self._recorded_hash == policy.hash:
            return
        last = session.scalar(
            select(AuditEntry.body).where(AuditEntry.kind == "policy.loaded")
            .order_by(AuditEntry.seq.desc()).limit(1)
        )
        if last is None or f'"hash":"{policy.hash}"' not in last:
            log.record(session, "policy.loaded", {
                "hash": policy.hash, "files": list(policy.files),
                "rules": [r.id for r in policy.rules], "directory": self.state.directory,
            })
            if last is not None and announce:
                _announce_recorded_change(session, json.loads(last)["body"], policy)
        self._recorded_hash = policy.hash

    def on_reloaded(self, policy: engine.Policy) -> None:
        """Put a new, valid and tested policy in force, record its hash and announce the change."""
        previous = self.state.policy
        self._put_in_force(policy, [], str(policy.directory or self.state.directory))
        self.state.last_error = None
        if not self.is_primary:
            # Its hash enters the trail before this process's first verdict under it
            # (record_version at ingest); the primary announces the change.
            logger.info("policy_reloaded", hash=policy.hash, is_primary=False)
            return
        with self.app.app_context():
            session = new_session(self.app)
            try:
                self.record_version(session)
                if previous is not None and previous.hash != policy.hash:
                    _announce_policy_change(session, previous, policy)
                session.commit()
            finally:
                session.close()
        logger.info("policy_reloaded", hash=policy.hash)

    def on_rejected(self, reason: str) -> None:
        """Keep the last good policy, record why the new one was refused, and raise an alert."""
        self.state.last_error = reason[:2000]
        self.state.last_error_at = utcnow()
        logger.error("policy_rejected", problems=reason[:500])
        if not self.is_primary:
            return  # the primary records the refusal and raises the alert, once
        with self.app.app_context():
            session = new_session(self.app)
            try:
                self._record_rejection(session, reason)
                session.commit()
            finally:
                session.close()

    def _record_rejection(self, session: Session, reason: str, *, at_start: bool = False) -> None:
        what = ("Chính sách đã cấu hình bị từ chối khi khởi động, chính sách mặc định được áp dụng: "
                if at_start else "Chính sách mới bị từ chối, phiên bản cũ vẫn được áp dụng: ")
        entry = log.record(session, "policy.rejected", {
            "reason": reason[:2000],
            "in_force": self.state.policy.hash if self.state.policy else None,
        })
        session.add(Alert(
            rule_id="policy.rejected", severity="high", response="alert",
            explanation=what + reason[:300],
            entry_seq=entry.seq, group_key="policy.rejected",
        ))

    def start_watching(self) -> None:
        """Watch the policy directory and reload on change (the last good version stays)."""
        from service.policy.reload import PolicyWatcher

        directory = self.state.directory
        if directory is None:
            return
        self._watcher = PolicyWatcher(directory, on_loaded=self.on_reloaded,
                                      on_rejected=self.on_rejected, current=self.state.policy)
        self._watcher.start()

    def stop_watching(self) -> None:
        """Stop the policy watcher."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # ------------------------------------------------------------------ windows

    def warm_up(self, session: Session, now: datetime | None = None) -> int:
        """Rebuild the window counters from the trail's recent events; return how many it fed."""
        policy = self.state.policy
        if policy is None:
            return 0
        since = (now or utcnow()) - WARMUP
        # The size first, and only entries below it: on PostgreSQL each statement sees what
        # was committed when it began, so an append landing between the two reads is left
        # to the first batch's catch-up instead of being counted twice.
        last_seq = log.tree_size(session) - 1
        rows = _windowed_events(session, policy, AuditEntry.recorded_at >= since,
                                AuditEntry.seq <= last_seq)
        count = 0
        with self._lock:
            for _recorded_at, body in rows:
                event = stored_event(body)
                if event is None:
                    continue
                engine.evaluate(event, policy, self.windows)
                count += 1
            # The whole trail up to last_seq is accounted for, entries older than WARMUP too
            # (past every window). A batch evaluated meanwhile (above last_seq) is not fed again.
            self._seen_seq = last_seq if self._seen_seq is None else max(self._seen_seq, last_seq)
        return count

    def _catch_up(self, session: Session, policy: engine.Policy, before_seq: int) -> int:
        """Feed the windows the events appended since ours and before ``before_seq``; count them.

        Other processes (HTTP workers, the CLI, a second instance on PostgreSQL) append to the
        same trail; without their events a windowed rule sees only this process's share. The
        caller holds the trail's write lock, so every entry below ``before_seq`` is committed.
        Their verdicts are dropped: the process that stored those events acted on them.
        """
        seen = self._seen_seq
        if seen is None or before_seq <= seen + 1:
            return 0  # no starting point yet (no warm_up, no batch), or nothing in between
        # This runs under the write lock, where every microsecond holds up every other writer.
        rows = _windowed_events(session, policy, AuditEntry.seq > seen, AuditEntry.seq < before_seq)
        count = 0
        for recorded_at, body in rows:
            event = stored_event(body)
            if event is None:
                continue
            # Judged at its receive time, as by the process that stored it (which caps the
            # time of an event from a clock running ahead alike).
            engine.evaluate(event, policy, self.windows, now=recorded_at)
            count += 1
        self._seen_seq = before_seq - 1
        return count

    # ------------------------------------------------------------------ per batch

    def enrich(self, event: Event) -> Event:
        """Fill the object's data class and the destination kind from the policy."""
        policy = self.state.policy
        return engine.enrich(event, policy) if policy is not None else event

    def classify(self, event: Event) -> tuple[str | None, object]:
        """Return (data class, destination kind) of an event under the policy in force."""
        policy = self.state.policy
        return engine.classify(event, policy) if policy is not None else (None, None)

    def evaluate(self, session: Session, pairs: list[tuple[Event, AppendedEntry]]) -> list[Alert]:
        """Evaluate stored events; store alerts, open or join incidents; return the alerts."""
        policy = self.state.policy
        if policy is None:
            return []
        self.record_version(session)
        now = utcnow()
        with self._lock:
            if pairs:
                self._catch_up(session, policy, pairs[0][1].seq)
            hits = [(verdict, entry.seq, event) for event, entry in pairs
                    for verdict in engine.evaluate(event, policy, self.windows, now=now)]
            if pairs:
                # Set even when warm_up never ran: later batches then catch up from here.
                self._seen_seq = pairs[-1][1].seq
        unknown = self._unknown_classes(session, policy, pairs)
        return self._act(session, hits) + unknown

    def _unknown_classes(self, session: Session, policy: engine.Policy,
                         pairs: list[tuple[Event, AppendedEntry]]) -> list[Alert]:
        # A data class the policy does not know (an agent configured with `ho_ngheo` while the
        # policy says `an_sinh`, or a typo) matches no rule: that PC's copies of citizen data
        # would go unseen. Said once per sender and class while the alert stays open.
        first: dict[tuple[str, str], tuple[Event, int]] = {}
        for event, entry in pairs:
            supplied = event.object.data_class if event.object is not None else None
            if supplied is not None and supplied not in policy.data_classes:
                first.setdefault((event.host, supplied), (event, entry.seq))
        if not first:
            return []
        raised = []
        for (host, data_class), (event, seq) in first.items():
            key = f"policy.unknown_data_class|{host}|{data_class}"[:512]
            if session.scalar(select(Alert.id).where(Alert.group_key == key,
                                                     Alert.state == "open").limit(1)):
                continue
            entry = log.record(session, "policy.unknown_data_class", {
                "host": host, "data_class": data_class, "entry_seq": seq,
                "policy": policy.hash,
            })
            alert = Alert(
                rule_id="policy.unknown_data_class", severity="high", response="alert",
                explanation=(f"Máy {host} gửi sự kiện với loại dữ liệu “{data_class}” mà chính "
                             "sách không có: không quy tắc nào áp dụng cho các sự kiện này. Hãy "
                             "sửa cấu hình tác tử hoặc thêm loại dữ liệu vào chính sách."),
                entry_seq=entry.seq, actor=event.actor, host=host, data_class=data_class,
                group_key=key)
            session.add(alert)
            raised.append(alert)
        session.flush()
        return raised

    def evaluate_signal(self, session: Session, signal: MonitoringSignal, entry_seq: int | None,
                        *, now: datetime | None = None):
        """Evaluate a monitoring signal (silent agent, event gap) and act on its verdicts."""
        return self.act_on_signal(session, self.signal_verdicts(signal, now=now), entry_seq)

    def signal_verdicts(self, signal: MonitoringSignal, *, now: datetime | None = None) -> list[Verdict]:
        """Return the verdicts of the policy in force on a signal observed at ``now``; no effect."""
        policy = self.state.policy
        if policy is None:
            return []
        return engine.evaluate_signal(signal, policy, now=now or utcnow())

    def act_on_signal(self, session: Session, verdicts: list[Verdict], entry_seq: int | None) -> list[Alert]:
        """Store the alerts (or records) of a signal's verdicts, linked to its trail entry."""
        if not verdicts:
            return []
        return self._act(session, [(v, entry_seq, None) for v in verdicts])

    def _act(self, session: Session, hits: list[tuple[Verdict, int | None, Event | None]]) -> list[Alert]:
        # One append for all the verdicts of a batch: per-verdict appends would cost a
        # tree-border read each.
        pending: list[PendingEntry] = []
        alerts: list[tuple[Alert, Verdict, Event | None]] = []
        for verdict, entry_seq, event in hits:
            g = verdict.group_key
            if str(verdict.response) == "record":
                pending.append(PendingEntry("verdict.recorded", _verdict_body(verdict, entry_seq),
                                            _verdict_search(verdict)))
                continue
            alert = Alert(
                rule_id=verdict.rule_id, severity=str(verdict.severity),
                response=str(verdict.response), explanation=verdict.explanation,
                entry_seq=entry_seq, actor=g.actor, host=g.host, data_class=g.data_class,
                group_key=group_key_text(verdict),
            )
            session.add(alert)
            alerts.append((alert, verdict, event))
        if alerts:
            session.flush()
        for alert, verdict, _event in alerts:
            pending.append(PendingEntry(
                "alert.raised", {**_verdict_body(verdict, alert.entry_seq), "alert_id": alert.id},
                _verdict_search(verdict)))
        log.append_entries(session, pending)
        for alert, verdict, event in alerts:
            if str(verdict.response) == "incident":
                self._open_incident(session, alert, verdict, event)
        return [a for a, _, _ in alerts]

    def _open_incident(self, session: Session, alert: Alert, verdict: Verdict,
                       event: Event | None) -> None:
        from service.incidents.workflow import report_incident

        g = verdict.group_key
        pii = dict(event.pii) if event is not None else {}
        incident = report_incident(
            session, self.settings, origin="rule", title=verdict.title,
            summary=verdict.explanation, severity=str(verdict.severity),
            rule_id=verdict.rule_id, group_key=alert.group_key,
            data_classes=[g.data_class] if g.data_class else [], pii_counts=pii,
            detected_at=event.occurred_at if event is not None else None, alert=alert,
            involves_personal_data=bool(g.data_class or pii),
        )
        alert.incident_id = incident.id
        alert.state = "incident"

    def start(self, *, is_primary: bool = True) -> None:
        """Record the version in force, rebuild the windows from the trail, start watching.

        A secondary server process (``is_primary`` false) records no refusal and announces
        nothing: the primary that started it did both.
        """
        self.is_primary = is_primary
        session = new_session(self.app)
        try:
            with self.app.app_context():
                # Read beside the writers (SQLite: outside the write lock): a secondary started
                # again while the others serve must not hold up their writes meanwhile.
                with reading(session):
                    warmed = self.warm_up(session)
                if self.state.last_error and is_primary:
                    # the configured policy was refused at start: the default one runs instead
                    self._record_rejection(session, self.state.last_error, at_start=True)
                # a refused policy already raised its alert; the default it fell back to was
                # not "edited while stopped"
                self.record_version(session, announce=is_primary and not self.state.last_error)
                session.commit()
        finally:
            session.close()
        logger.info("policy_started", hash=self.state.policy.hash if self.state.policy else None,
                    warmed_events=warmed)
        if self.settings.policy_reload:
            self.start_watching()


def init_app(app: Flask) -> None:
    """Load the policy in force (no database work: that waits for start())."""
    processor = PolicyProcessor(app)
    processor.load_initial()
    app.extensions["canhgac.processor"] = processor
    app.extensions["canhgac.policy_state"] = processor.state
