"""Enqueue notifications in the caller's transaction (flush only); the dispatcher delivers them.

Each enqueued message writes a "notify.queued" audit entry, and one checkpoint is signed
after those entries so every message carries a checkpoint that covers its own queuing: the
recipients' mailboxes become independent witnesses of the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from canhgac_common.pii.mask import mask_pii
from service.audit import log as audit_log
from service.audit.models import Checkpoint
from service.audit.operations import latest_cosigned_checkpoint, served_note, sign_checkpoint
from service.auth.models import Role, User
from service.auth.substitutes import add_substitutes, local_today
from service.config import Settings
from service.core.db import utcnow
from service.notify import sms, templates
from service.notify.models import Channel, OutboxMessage, OutboxState, SmsCode

log = structlog.get_logger("canhgac.notify")

# Set on the session when messages were enqueued; wiring wakes the dispatcher after commit.
WAKE_KEY = "canhgac.notify.wake"
INCIDENT_KINDS = templates.INCIDENT_KINDS
DEFAULT_ROLES = (Role.LEADER, Role.POLICE)
# Greeting of the single webhook / command message of an event (it has no one recipient).
GROUP_RECIPIENT = "Lãnh đạo UBND xã và Công an xã"


@dataclass(frozen=True)
class _Planned:
    channel: Channel
    user: User | None
    address: str | None
    # The absent leader or officer this recipient stands in for (service.auth.substitutes).
    standing_in_for: User | None = None
    # What a reply to this SMS does: sms.PURPOSE_ACKNOWLEDGE / PURPOSE_CONFIRM_RECEIPT / None.
    purpose: str | None = None


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from flask import current_app

    return current_app.config["SETTINGS"]


def default_recipients(session: Session) -> list[User]:
    """Return every active user with role leader or police, by id."""
    users = session.scalars(select(User).where(User.is_disabled.is_(False)).order_by(User.id))
    return [user for user in users if user.has_role(*DEFAULT_ROLES)]


def _plan(users: Iterable[User | tuple[User, User | None]], settings: Settings,
          sms_purpose=None) -> list[_Planned]:
    """Plan one mail per recipient (and one SMS per recipient with a phone when sms_purpose).

    users are User rows or (recipient, absent person they stand in for) pairs; sms_purpose
    maps (recipient, absent) to what a reply does, or is None when this notice has no SMS.
    """
    planned: list[_Planned] = []
    seen: set[int] = set()
    for entry in users:
        user, absent = entry if isinstance(entry, tuple) else (entry, None)
        if user.is_disabled or user.id in seen:
            continue
        seen.add(user.id)
        email = (user.email or "").strip()
        if email:
            # Enqueued even without smtp_host: the message waits, visible, until SMTP is set.
            planned.append(_Planned(Channel.EMAIL, user, email, absent))
        else:
            log.warning("notify_recipient_without_email", recipient=user.username)
        if sms_purpose is not None and settings.sms_outbox_dir and user.phone:
            planned.append(_Planned(Channel.SMS, user, user.phone, absent,
                                    sms_purpose(user, absent)))
    if settings.webhook_url:
        planned.append(_Planned(Channel.WEBHOOK, None, None))
    if settings.notify_command:
        planned.append(_Planned(Channel.COMMAND, None, None))
    return planned


def message_domain(settings: Settings) -> str:
    """Return the right-hand side of our Message-IDs: the host part of the audit origin."""
    host = settings.audit_origin.split("/", 1)[0].strip().lower()
    return "".join(ch for ch in host if ch.isalnum() or ch in ".-") or "canhgac"


def message_id_for(row_id: int, incident_id: int | None, settings: Settings) -> str:
    """Return the stable Message-ID of an outbox row (the same on every retry)."""
    return f"<outbox-{row_id}.{incident_id or 0}@{message_domain(settings)}>"


def incident_link(incident_id: int, kind: str, settings: Settings) -> str:
    """Return the link a notification carries: acknowledge for new or escalated incidents."""
    base = settings.base_url.rstrip("/")
    if kind in templates.ACK_KINDS:
        return f"{base}/incidents/{incident_id}/acknowledge"
    return f"{base}/incidents/{incident_id}"


def _enqueue(
    session: Session, settings: Settings, planned: Sequence[_Planned], *, kind: str,
    incident_id: int | None, link: str | None, render,
) -> list[OutboxMessage]:
    if not planned:
        log.warning("notify_no_recipient", kind=kind, incident_id=incident_id)
        return []
    now = utcnow()
    messages = [
        OutboxMessage(
            created_at=now, kind=kind, channel=item.channel, incident_id=incident_id,
            recipient_id=item.user.id if item.user else None,
            recipient_username=item.user.username if item.user else None,
            address=item.address, subject="", body="", link=link,
            state=OutboxState.PENDING, attempts=0, next_attempt_at=now, is_failing=False,
        )
        for item in planned
    ]
    session.add_all(messages)
    session.flush()
    for message in messages:
        message.message_id = message_id_for(message.id, incident_id, settings)
    audit_log.append_entries(session, [
        audit_log.PendingEntry(
            "notify.queued",
            {"message": m.id, "channel": m.channel, "recipient": m.recipient_username,
             "kind": kind, "incident_id": incident_id},
            {"incident_id": incident_id},
        )
        for m in messages
    ])
    # Signed after the queued entries, so the checkpoint in the mail covers them too.
    checkpoint: Checkpoint = sign_checkpoint(session, settings)
    # The newest checkpoint witnesses cosigned travels too: a reader holding it needs no
    # trust in this server at all (the fresh one is cosigned only a minute later).
    cosigned_cp = latest_cosigned_checkpoint(session)
    cosigned = ({"cosigned_note": served_note(session, cosigned_cp),
                 "cosigned_size": cosigned_cp.size}
                if cosigned_cp is not None and cosigned_cp.id != checkpoint.id else {})
    for message, item in zip(messages, planned, strict=True):
        name = (item.user.full_name or item.user.username) if item.user else GROUP_RECIPIENT
        rendered = render(name, checkpoint, item, cosigned)
        if item.channel == Channel.SMS and item.purpose and incident_id is not None:
            # The code itself is drawn when the file is written (service.notify.sms).
            session.add(SmsCode(message_id=message.id, incident_id=incident_id,
                                user_id=item.user.id, phone=item.address, purpose=item.purpose,
                                created_at=now))
        # Every channel (mail, webhook, command/SMS) sends these two texts: whatever a
        # template put in, no identifier leaves (issue #15, item 1).
        message.subject = mask_pii(rendered.subject)
        message.body = mask_pii(rendered.body)
        message.checkpoint_id = checkpoint.id
    session.flush()
    session.info[WAKE_KEY] = True
    return messages


def sms_by_default(settings: Settings) -> bool:
    """Return whether a notice of this kind goes by SMS when the caller does not say.

    When an escalation step names "sms" (escalation_steps), SMS is kept for those steps: the
    other notices go by mail only. Otherwise every notice goes by SMS too.
    """
    names_sms = any("sms" in step for step in settings.escalation_steps)
    return not names_sms


def notify_incident(
    session: Session, incident, *, kind: str, recipients: list[User] | None = None,
    extra_text: str = "", settings: Settings | None = None, by_sms: bool | None = None,
) -> list[OutboxMessage]:
    """Enqueue one message per recipient per configured channel about an incident event.

    kind is one of created, escalated, dismissed, deadline_reminder, acknowledged.
    recipients None means every active leader and police user; disabled users are skipped.
    by_sms None follows `sms_by_default`. Flushes only: the messages leave after the caller commits.
    """
    if kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident notification kind {kind!r}")
    settings = _settings(settings)
    if incident.id is None:
        session.flush()
    users = default_recipients(session) if recipients is None else recipients
    link = incident_link(incident.id, kind, settings)
    # Whoever is on leave today: their substitute hears of it too (and may act on it).
    pairs = add_substitutes(session, [u for u in users if not u.is_disabled],
                            local_today(settings))

    def render(name: str, checkpoint: Checkpoint, item: _Planned,
               cosigned: dict) -> templates.RenderedMail:
        absent = item.standing_in_for
        absent_name = (absent.full_name or absent.username) if absent else None
        if item.channel == Channel.SMS:
            text = sms.render_incident_sms(kind, incident, settings, purpose=item.purpose,
                                           standing_in_for=absent_name)
            return templates.RenderedMail(f"SMS sự cố #{incident.id}", text)
        extra = extra_text
        if absent_name:
            extra = (f"Bạn nhận thư này vì đang thay {absent_name} trong thời gian nghỉ. "
                     + extra_text).strip()
        return templates.render_incident_mail(
            kind, incident, settings, recipient_name=name, link=link, extra_text=extra,
            checkpoint_note=checkpoint.note, checkpoint_size=checkpoint.size, **cosigned,
        )

    def purpose(user: User, absent: User | None) -> str | None:
        if kind not in templates.ACK_KINDS:
            return None
        acting = [user, absent] if absent is not None else [user]
        if any(u.has_role(Role.LEADER) for u in acting):
            return sms.PURPOSE_ACKNOWLEDGE
        if any(u.has_role(Role.POLICE) for u in acting):
            return sms.PURPOSE_CONFIRM_RECEIPT
        return None

    if by_sms is None:
        by_sms = sms_by_default(settings)
    return _enqueue(session, settings, _plan(pairs, settings,
                                             sms_purpose=purpose if by_sms else None),
                    kind=kind, incident_id=incident.id, link=link, render=render)


def notify_users(
    session: Session, users: Iterable[User], *, subject: str, text: str, kind: str,
    incident_id: int | None = None, link: str | None = None, settings: Settings | None = None,
) -> list[OutboxMessage]:
    """Enqueue a generic notification (e.g. the monthly report reminder) to the given users."""
    settings = _settings(settings)

    def render(name: str, checkpoint: Checkpoint, item: _Planned,
               cosigned: dict) -> templates.RenderedMail:
        return templates.render_user_mail(
            subject, text, settings, recipient_name=name, link=link,
            checkpoint_note=checkpoint.note, checkpoint_size=checkpoint.size, **cosigned,
        )

    return _enqueue(session, settings, _plan(users, settings), kind=kind,
                    incident_id=incident_id, link=link, render=render)


def prune_delivered(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Delete delivered rows older than the retention; their audit entries stay. Flush only."""
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.notify_retention_days)
    result = session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.state == OutboxState.DELIVERED, OutboxMessage.delivered_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    count = result.rowcount or 0
    if count:
        audit_log.record(session, "notify.pruned",
                         {"count": count, "delivered_before": cutoff.isoformat()})
    return count


def outbox_summary(session: Session) -> dict:
    """Return counts of pending, failing and delivered messages per channel, and the oldest wait."""
    rows = session.execute(
        select(OutboxMessage.channel, OutboxMessage.state, OutboxMessage.is_failing,
               func.count(), func.min(OutboxMessage.created_at))
        .group_by(OutboxMessage.channel, OutboxMessage.state, OutboxMessage.is_failing)
    )
    summary: dict = {"pending": 0, "failing": 0, "delivered": 0, "by_channel": {},
                     "oldest_pending_at": None}
    for channel, state, is_failing, count, oldest in rows:
        per = summary["by_channel"].setdefault(channel, {"pending": 0, "failing": 0,
                                                         "delivered": 0})
        if state == OutboxState.DELIVERED:
            summary["delivered"] += count
            per["delivered"] += count
            continue
        summary["pending"] += count
        per["pending"] += count
        if is_failing:
            summary["failing"] += count
            per["failing"] += count
        if oldest is not None and (summary["oldest_pending_at"] is None
                                   or oldest < summary["oldest_pending_at"]):
            summary["oldest_pending_at"] = oldest
    return summary


def enqueue_sms_answer(
    session: Session, settings: Settings, *, number: str, text: str, user: User | None,
    incident_id: int | None,
) -> OutboxMessage | None:
    """Enqueue the short answer to an SMS reply (flush only); None when SMS is not set up."""
    if not settings.sms_outbox_dir:
        return None
    now = utcnow()
    message = OutboxMessage(
        created_at=now, kind="sms_answer", channel=Channel.SMS, incident_id=incident_id,
        recipient_id=user.id if user else None,
        recipient_username=user.username if user else None, address=number,
        subject="SMS trả lời", body=mask_pii(sms.render_answer(text, settings)), link=None,
        state=OutboxState.PENDING, attempts=0, next_attempt_at=now, is_failing=False,
    )
    session.add(message)
    session.flush()
    message.message_id = message_id_for(message.id, incident_id, settings)
    # The recipient is named only when the number belongs to an account (never the number).
    audit_log.record(session, "notify.queued", {
        "message": message.id, "channel": Channel.SMS.value,
        "recipient": message.recipient_username, "kind": "sms_answer",
        "incident_id": incident_id}, incident_id=incident_id)
    session.info[WAKE_KEY] = True
    return message
