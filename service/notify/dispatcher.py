"""Deliver pending outbox messages: claim one at a time, send outside any transaction, record.

`dispatch_pending` is the one function the per-app dispatcher thread and the catch-up job
both call. It commits on its own, in short transactions, because a transaction must never
stay open while a mail server or webhook answers (SQLite would hold its write lock for the
whole send). Give it a session of its own.

Claims: a dispatcher holds at most ONE message, the one it is sending. It is taken with
``UPDATE ... WHERE id = ? AND state='pending' AND next_attempt_at <= now AND (claimed_until
IS NULL OR claimed_until < now)``, setting a random claim token and ``claimed_until = now +
lease``. PostgreSQL re-checks that condition after a concurrent claim commits, SQLite
serializes writers, so two dispatchers (threads or service instances) never both hold a
message. Each outcome is committed as soon as the send returns, so a dispatcher killed
mid-pass re-sends at most the message in flight (after its lease, with the same Message-ID,
which mail clients show once); the messages it had not reached were never claimed and the
next pass, on any instance, sends them at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from service.audit import log as audit_log
from service.config import Settings
from service.core.db import utcnow
from service.core.logging import mask_text
from service.notify.channels import Deliverer, MessageSnapshot, configured_channels
from service.notify.models import OutboxMessage, OutboxState

log = structlog.get_logger("canhgac.notify")
# Upper bound on batches per call, so one call cannot run forever while messages keep coming.
MAX_BATCHES = 1000


@dataclass
class DispatchStats:
    """What one dispatch_pending call did."""

    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    lost_claims: int = 0  # due messages another dispatcher claimed first
    waiting_for_config: int = 0  # pending on a channel with no setting (e.g. no smtp_host)
    next_due_at: datetime | None = None  # earliest retry still pending on a configured channel


def retry_delay(attempts: int, settings: Settings) -> timedelta:
    """Return the wait after the given number of failed attempts: doubling, then the cap."""
    if attempts >= settings.notify_failing_after_attempts:
        return timedelta(seconds=settings.notify_retry_max_seconds)
    seconds = settings.notify_retry_base_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.notify_retry_max_seconds))


def _claimable(now: datetime, channels: list[str]):
    return (
        OutboxMessage.state == OutboxState.PENDING,
        OutboxMessage.next_attempt_at <= now,
        OutboxMessage.channel.in_(channels),
        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
    )


def _snapshot(row: OutboxMessage) -> MessageSnapshot:
    return MessageSnapshot(
        id=row.id, kind=row.kind, channel=row.channel, incident_id=row.incident_id,
        recipient_username=row.recipient_username, address=row.address, subject=row.subject,
        body=row.body, link=row.link, message_id=row.message_id or f"<outbox-{row.id}@canhgac>",
        created_at=row.created_at, attempts=row.attempts,
    )


def due_message_ids(
    session: Session, now: datetime, channels: list[str], limit: int,
) -> list[int]:
    """Return the ids of up to *limit* messages due now on the given channels, oldest first."""
    return list(session.scalars(
        select(OutboxMessage.id).where(*_claimable(now, channels))
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    ))


def claim_message(
    session: Session, settings: Settings, now: datetime, channels: list[str], message_id: int,
) -> tuple[str, MessageSnapshot | None]:
    """Claim one due message for this sender (committed); return token and snapshot.

    The snapshot is None when the message is no longer claimable: another dispatcher took it
    or recorded it first.
    """
    token = secrets.token_hex(16)
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, *_claimable(now, channels))
        .values(claim_token=token,
                claimed_until=now + timedelta(seconds=settings.notify_lease_seconds))
        .execution_options(synchronize_session=False)
    )
    row = None
    if result.rowcount:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.claim_token == token)
            .execution_options(populate_existing=True)
        ).one()
    snapshot = _snapshot(row) if row is not None else None
    session.commit()
    return token, snapshot


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {mask_text(str(exc))}"[:500]


def record_result(
    session: Session, settings: Settings, snapshot: MessageSnapshot, token: str,
    now: datetime, error: BaseException | None,
) -> bool:
    """Store one attempt's outcome and its audit entry (flush only); return is_failing."""
    attempt = snapshot.attempts + 1
    mine = (OutboxMessage.id == snapshot.id, OutboxMessage.claim_token == token)
    is_failing = error is not None and attempt >= settings.notify_failing_after_attempts
    if error is None:
        values = {"state": OutboxState.DELIVERED, "delivered_at": now, "last_error": None,
                  "is_failing": False}
    else:
        values = {"next_attempt_at": now + retry_delay(attempt, settings),
                  "last_error": _error_text(error), "is_failing": is_failing}
    result = session.execute(
        update(OutboxMessage).where(*mine)
        .values(attempts=attempt, last_attempt_at=now, claimed_until=None, claim_token=None,
                **values)
        .execution_options(synchronize_session=False)
    )
    body = {
        "message": snapshot.id, "channel": snapshot.channel,
        "recipient": snapshot.recipient_username, "kind": snapshot.kind,
        "attempt": attempt, "outcome": "delivered" if error is None else "failed",
        "error": type(error).__name__ if error is not None else None,
        "failing": is_failing,
    }
    if not result.rowcount:
        # The lease ran out during the send and another dispatcher took the message over.
        body["lease_lost"] = True
    audit_log.record(session, "notify.attempt", body, incident_id=snapshot.incident_id)
    return is_failing


def _log_outcome(snapshot: MessageSnapshot, error: BaseException | None, failing: bool) -> None:
    fields = {"message": snapshot.id, "channel": snapshot.channel,
              "recipient": snapshot.recipient_username, "attempt": snapshot.attempts + 1,
              "incident_id": snapshot.incident_id}
    if error is None:
        log.info("notify_delivered", **fields)
    elif failing:
        log.error("notify_failing", error=type(error).__name__, **fields)
    else:
        log.warning("notify_attempt_failed", error=type(error).__name__, **fields)


def _finish_stats(
    session: Session, stats: DispatchStats, channels: list[str], now: datetime,
) -> None:
    pending = OutboxMessage.state == OutboxState.PENDING
    stats.waiting_for_config = session.scalar(
        select(func.count()).select_from(OutboxMessage)
        .where(pending, OutboxMessage.channel.not_in(channels) if channels else pending)
    ) or 0
    if channels:
        on_channel = (pending, OutboxMessage.channel.in_(channels))
        free = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)
        # A message another dispatcher holds is worth a look only when its claim runs out.
        candidates = [
            session.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(*on_channel, free)),
            session.scalar(select(func.min(OutboxMessage.claimed_until))
                           .where(*on_channel, OutboxMessage.claimed_until >= now)),
        ]
        stats.next_due_at = min((c for c in candidates if c is not None), default=None)
    session.commit()


def dispatch_pending(
    session: Session, settings: Settings, now: datetime | None = None,
) -> DispatchStats:
    """Deliver every due message on a configured channel; commits (use a dedicated session).

    now fixes the clock (tests of backoff); by default the real time is read per batch.
    Failures are retried with exponential backoff; after notify_failing_after_attempts the
    message is marked failing and retried at the cap interval, never dropped.
    """
    stats = DispatchStats()
    channels = configured_channels(settings)
    deliverer = Deliverer(settings, session)
    try:
        for _ in range(MAX_BATCHES if channels else 0):
            ids = due_message_ids(session, now or utcnow(), channels, settings.notify_batch_size)
            session.commit()  # end the read: nothing may stay open while a server answers
            if not ids:
                break
            for message_id in ids:
                token, snapshot = claim_message(session, settings, now or utcnow(), channels,
                                                message_id)
                if snapshot is None:
                    stats.lost_claims += 1
                    continue
                error: BaseException | None = None
                try:
                    deliverer.deliver(snapshot, now or utcnow())
                except Exception as exc:  # every failure is retried and audited
                    error = exc
                # Recorded and committed before the next send: a crash from here on never
                # sends this message again.
                failing = record_result(session, settings, snapshot, token, now or utcnow(),
                                        error)
                session.commit()
                stats.attempted += 1
                stats.delivered += error is None
                stats.failed += error is not None
                _log_outcome(snapshot, error, failing)
    finally:
        deliverer.close()
    _finish_stats(session, stats, channels, now or utcnow())
    return stats
