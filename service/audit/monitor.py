"""The monitor: re-verify each newly signed stretch of the trail, and check kept checkpoints.

The monitor keeps its own compact range (the border hashes it computed from entry bodies),
not the stored merkle nodes: each run reads only the entries signed since the last run,
checks each body (number, canonical form, leaf hash), folds them onto its border and must
reproduce the root of every checkpoint signed meanwhile. A rewrite of an entry it already
verified changes nothing it reads again, but the next checkpoint's root will not match what
it extends, so the rewrite is caught at the next run: a critical alert.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log, merkle
from service.audit.alerts import raise_trail_alert
from service.audit.keys import load_verifier_key
from service.audit.models import Checkpoint, MonitorState
from service.audit.operations import latest_checkpoint
from service.audit.verify import (
    VerifyError,
    check_entry_body,
    extract_note,
    open_trusted_checkpoint,
)
from service.config import Settings
from service.core.db import utcnow

BATCH = 1000


@dataclass(frozen=True)
class MonitorResult:
    """What one monitor run covered."""

    from_size: int
    to_size: int
    checkpoints: int
    problem: str | None = None

    @property
    def is_ok(self) -> bool:
        """Return whether the stretch verified."""
        return self.problem is None


def monitor_state(session: Session) -> MonitorState | None:
    """Return the monitor's state row (None before its first run)."""
    return session.get(MonitorState, 1)


def _load(state: MonitorState | None) -> merkle.CompactRange:
    if state is None or state.verified_size == 0:
        return merkle.CompactRange()
    border = [base64.b64decode(line) for line in state.border.split()]
    return merkle.CompactRange(state.verified_size, border)


def verify_new_stretch(session: Session, settings: Settings) -> MonitorResult:
    """Verify the entries signed since the last run; on failure raise a critical alert."""
    state = monitor_state(session)
    tree = _load(state)
    start = tree.size
    latest = latest_checkpoint(session)
    if latest is None or (latest.size == start and latest.root_hash == tree.root()):
        return MonitorResult(start, start, 0)
    if state is not None and state.failed_size is not None:
        # Stay failed: the alert itself appends entries and signs checkpoints, which must not
        # raise one alert per run. A person clears it after the investigation (reset_monitor).
        return MonitorResult(start, start, 0, "already reported")
    try:
        if latest.size == start:
            raise VerifyError(f"checkpoint #{latest.id} signs another root for the {start} "
                              "entries already verified: history was rewritten")
        if latest.size < start:
            raise VerifyError(f"the newest checkpoint covers {latest.size} entries, fewer than "
                              f"the {start} already verified: entries or checkpoints were removed")
        keys = [load_verifier_key(settings.keys_dir)]
        targets = session.scalars(
            select(Checkpoint).where(Checkpoint.size > start, Checkpoint.size <= latest.size)
            .order_by(Checkpoint.size, Checkpoint.id)).all()
        opened = [(cp, open_trusted_checkpoint(cp.note, keys, settings.audit_origin,
                                               f"checkpoint #{cp.id}")) for cp in targets]
        position = start
        for cp, parsed in opened:
            while position < parsed.size:  # batches stop at every checkpoint's size
                end = min(parsed.size, position + BATCH)
                bodies = log.entry_range(session, position, end)
                stored = log.node_range(session, 0, position, end)
                tree.extend([check_entry_body(position + i, body, leaf)
                             for i, (body, leaf) in enumerate(zip(bodies, stored, strict=True))])
                position = end
            if tree.root() != parsed.root:
                raise VerifyError(f"checkpoint #{cp.id} (size {parsed.size}): its signed root is "
                                  "not the root of the entries: history was rewritten")
    except (VerifyError, LookupError) as exc:
        _fail(session, settings, state, start, latest.size, str(exc))
        return MonitorResult(start, latest.size, 0, str(exc))
    if state is None:
        state = MonitorState(id=1)
        session.add(state)
    state.verified_size, state.root_hash = tree.size, tree.root()
    state.border = "\n".join(base64.b64encode(h).decode() for _, _, h in tree.border())
    state.verified_at, state.failed_size = utcnow(), None
    session.flush()
    return MonitorResult(start, tree.size, len(opened))


def _fail(session: Session, settings: Settings, state: MonitorState | None, start: int,
          size: int, message: str) -> None:
    if state is None:
        state = MonitorState(id=1, verified_size=0, root_hash=merkle.EMPTY_ROOT, border="",
                             verified_at=utcnow())
        session.add(state)
    state.failed_size = size
    entry = log.record(session, "audit.monitor_failed",
                       {"verified_size": start, "checkpoint_size": size, "reason": message[:500]})
    raise_trail_alert(
        session, settings, rule_id="audit.monitor_failed",
        explanation="Kiểm tra liên tục nhật ký kiểm toán thất bại: nhật ký có thể đã bị sửa",
        group_key="audit.monitor_failed",
        details=[f"Đã kiểm tra đến mục {start}; checkpoint mới có {size} mục.",
                 f"Chi tiết: {message[:300]}"],
        entry_seq=entry.seq)
    session.flush()


def reset_monitor(session: Session, *, by: str) -> None:
    """Forget what the monitor verified, so its next run re-verifies the whole trail."""
    state = monitor_state(session)
    if state is not None:
        log.record(session, "audit.monitor_reset",
                   {"by": by, "verified_size": state.verified_size,
                    "failed_size": state.failed_size}, actor=by)
        session.delete(state)
        session.flush()


@dataclass(frozen=True)
class KeptVerdict:
    """Whether today's trail extends a checkpoint kept outside (from a mail, on paper)."""

    is_extended: bool
    message: str
    kept_size: int | None = None
    kept_origin: str | None = None
    latest_size: int | None = None
    monitor_size: int | None = None


def check_kept_checkpoint(session: Session, settings: Settings, text: str) -> KeptVerdict:
    """Check a pasted checkpoint or saved mail against today's trail (consistency proof)."""
    note = extract_note(text)
    try:
        kept = open_trusted_checkpoint(note, [load_verifier_key(settings.keys_dir)],
                                       settings.audit_origin, "kept checkpoint")
    except VerifyError as exc:
        return KeptVerdict(False, str(exc))
    latest = latest_checkpoint(session)
    state = monitor_state(session)
    monitor_size = state.verified_size if state is not None else None
    if latest is None or latest.size < kept.size:
        have = latest.size if latest is not None else 0
        return KeptVerdict(False, f"the kept checkpoint covers {kept.size} entries, the newest "
                           f"signed one only {have}: entries were removed", kept.size,
                           kept.origin, have, monitor_size)
    try:
        if kept.size == 0:
            pass  # the empty tree is extended by every tree
        elif kept.size == latest.size:
            if kept.root != latest.root_hash:
                raise merkle.ProofError("two different roots for the same size")
        else:
            proof = log.consistency_proof(session, kept.size, latest.size)
            merkle.verify_consistency(kept.size, latest.size, kept.root, latest.root_hash, proof)
    except (merkle.ProofError, LookupError) as exc:
        return KeptVerdict(False, f"today's trail does not extend the kept checkpoint: history "
                           f"was rewritten ({exc})", kept.size, kept.origin, latest.size,
                           monitor_size)
    return KeptVerdict(True, "today's trail extends the kept checkpoint", kept.size,
                       kept.origin, latest.size, monitor_size)
