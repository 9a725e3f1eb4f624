"""SMS replies: read gammu-smsd's inbox folder, act on `XN <n> <code>`, answer every reply.

A right reply (the code of an SMS sent to that number, unused, unexpired) calls the same
operation as the web page: `acknowledge_incident` for a leader's code, `confirm_incident_receipt`
for a police code, with channel "sms". Anything else changes nothing. Every reply writes an
``sms.reply`` entry (outcome, incident, the account the number belongs to or "unknown"; never
the number) and, when the number is an account's, gets a short answer SMS.

Each file is handled in its own transaction that also records its name (``SmsReceived``, unique),
then moved to ``processed/``. A crash after the commit but before the move leaves a file whose
name is already recorded: the next run only moves it. A crash before the commit changed nothing:
the next run handles it again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.audit.log import record
from service.auth.models import User
from service.auth.phones import e164_or_none
from service.config import Settings
from service.core.db import utcnow
from service.notify import sms
from service.notify.models import SmsReceived
from service.notify.outbox import enqueue_sms_answer

log = structlog.get_logger("canhgac.notify.sms")

ANSWERS = {
    "acknowledged": "Canh Gác: đã ghi nhận xác nhận đã nhận sự cố #{n}. Cảm ơn.",
    "receipt_confirmed": "Canh Gác: đã ghi nhận Công an xã đã nhận tin về sự cố #{n}.",
    "not_understood": "Canh Gác: không hiểu tin nhắn. Để xác nhận, nhắn: XN <số sự cố> <mã>",
    "wrong_code": "Canh Gác: mã không đúng cho sự cố #{n}. Không có gì thay đổi.",
    # The same words as a wrong code: telling them apart would confirm a guessed code is valid.
    "wrong_number": "Canh Gác: mã không đúng cho sự cố #{n}. Không có gì thay đổi.",
    "code_used": "Canh Gác: mã này đã được dùng. Không có gì thay đổi.",
    "code_expired": "Canh Gác: mã đã hết hạn. Hãy xác nhận trên trang Canh Gác.",
    "already_acknowledged": "Canh Gác: sự cố #{n} đã được xác nhận trước đó. Không có gì thay đổi.",
    "already_confirmed": "Canh Gác: bạn đã xác nhận đã nhận tin về sự cố #{n} trước đó.",
    "too_many_wrong_codes": "Canh Gác: quá nhiều mã sai cho sự cố #{n}. "
                            "Hãy xác nhận trên trang Canh Gác.",
    "refused": "Canh Gác: không thể ghi nhận cho sự cố #{n}. Hãy xem trên trang Canh Gác.",
}
ACCEPTED = ("acknowledged", "receipt_confirmed")
WRONG = ("wrong_code", "wrong_number")
# Wrong codes an incident takes by SMS within a code's validity before it takes none (the web
# page still works). A code is one of 25^5; with this many guesses from any (spoofable)
# numbers, one live code is hit with a chance of about 2 in a million.
MAX_WRONG_CODES = 20


@dataclass(frozen=True)
class ReplyResult:
    """What one reply did."""

    outcome: str
    incident_id: int | None
    user: User | None


def _user_by_number(session: Session, number: str | None) -> User | None:
    if not number:
        return None
    users = session.scalars(select(User).where(User.phone == number, User.is_disabled.is_(False)))
    return next(iter(users), None)


def _wrong_codes(session: Session, settings: Settings, incident_id: int, now: datetime) -> int:
    from service.audit.models import AuditEntry
    from service.incidents.models import Incident

    incident = session.get(Incident, incident_id)
    if incident is None:
        return 0  # no codes to guess; and guesses at a number not yet used do not count later
    since = max(now - timedelta(hours=settings.sms_code_valid_hours), incident.created_at)
    bodies = session.scalars(select(AuditEntry.body).where(
        AuditEntry.incident_id == incident_id, AuditEntry.kind == "sms.reply",
        AuditEntry.recorded_at >= since))
    return sum(json.loads(body)["body"].get("outcome") in WRONG for body in bodies)


def _act(session: Session, settings: Settings, code_row, now: datetime) -> str:
    from service.incidents.models import Incident, IncidentState
    from service.incidents.workflow import (
        WorkflowError,
        acknowledge_incident,
        confirm_incident_receipt,
        has_confirmed_receipt,
    )

    incident = session.get(Incident, code_row.incident_id)
    user = session.get(User, code_row.user_id)
    if incident is None or user is None or user.is_disabled:
        return "refused"
    if code_row.purpose == sms.PURPOSE_ACKNOWLEDGE:
        if incident.state != IncidentState.REPORTED:
            return "already_acknowledged"
        operation, outcome = acknowledge_incident, "acknowledged"
    else:
        if has_confirmed_receipt(session, incident, user):
            return "already_confirmed"
        operation, outcome = confirm_incident_receipt, "receipt_confirmed"
    try:
        with session.begin_nested():
            operation(session, incident, user, now=now, channel="sms", settings=settings)
    except WorkflowError as exc:
        log.info("sms_reply_refused_by_workflow", reason=str(exc), incident_id=incident.id)
        return "refused"
    code_row.used_at = now
    return outcome


def handle_reply(session: Session, settings: Settings, sender: str, text: str,
                 now: datetime | None = None) -> ReplyResult:
    """Act on one SMS reply, write its audit entry and enqueue the answer (flush only)."""
    now = now or utcnow()
    number = e164_or_none(sender)
    user = _user_by_number(session, number)
    parsed = sms.parse_reply(text)
    incident_id = parsed[0] if parsed else None
    if parsed is None:
        outcome = "not_understood"
    elif _wrong_codes(session, settings, parsed[0], now) >= MAX_WRONG_CODES:
        outcome = "too_many_wrong_codes"
    else:
        rows = sms.find_codes(session, settings, parsed[0], parsed[1])
        mine = [r for r in rows if r.phone == number]
        if not rows:
            outcome = "wrong_code"
        elif not mine:
            outcome = "wrong_number"
        elif mine[0].used_at is not None:
            outcome = "code_used"
        elif mine[0].expires_at is None or mine[0].expires_at <= now:
            outcome = "code_expired"
        else:
            outcome = _act(session, settings, mine[0], now)
            user = session.get(User, mine[0].user_id)
    # The number itself never enters the trail: the account it belongs to, or "unknown".
    record(session, "sms.reply", {
        "outcome": outcome, "is_accepted": outcome in ACCEPTED, "incident_id": incident_id,
        "sender": user.username if user else "unknown", "length": len(text or ""),
    }, incident_id=incident_id, actor=user.username if user else None)
    # Only a number of an account is answered: an answer to any sender would let a spoofer
    # make the commune's modem text any number, and an autoresponder loop with it forever.
    if number and user is not None and user.phone == number:
        from service.incidents.models import Incident

        known = incident_id if incident_id and session.get(Incident, incident_id) else None
        enqueue_sms_answer(session, settings, number=number, user=user, incident_id=known,
                           text=ANSWERS[outcome].format(n=incident_id or "?"))
    session.flush()
    return ReplyResult(outcome, incident_id, user)


def _move_out(path: Path, settings: Settings) -> None:
    target = sms.processed_dir(settings)
    target.mkdir(parents=True, exist_ok=True)
    os.replace(path, target / path.name)


def read_inbox(session: Session, settings: Settings, now: datetime | None = None, *,
               settle_seconds: float = sms.INBOX_SETTLE_SECONDS) -> list[ReplyResult]:
    """Handle every IN file of sms_inbox_dir once; commits per file (use a dedicated session).

    Files younger than settle_seconds are left for the next run (gammu may still be writing).
    """
    if not settings.sms_inbox_dir:
        return []
    results = []
    for item in sms.list_inbox(Path(settings.sms_inbox_dir), settle_seconds):
        name = item.path.name
        if session.scalar(select(SmsReceived.id).where(SmsReceived.file_name == name)):
            _move_out(item.path, settings)  # handled before a crash; only the move was left
            continue
        result = handle_reply(session, settings, item.sender, item.text, now)
        session.add(SmsReceived(file_name=name, received_at=now or utcnow(),
                                sender_user_id=result.user.id if result.user else None,
                                outcome=result.outcome))
        try:
            session.commit()
        except IntegrityError:
            # Another reader took this file at the same moment; its transaction counts.
            session.rollback()
            continue
        _move_out(item.path, settings)
        results.append(result)
        log.info("sms_reply", outcome=result.outcome, incident_id=result.incident_id)
    return results
