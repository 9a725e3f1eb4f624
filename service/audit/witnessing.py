"""Being witnessed: send each new checkpoint to the configured witnesses, keep their cosignatures.

The witnesses (URL and cosignature verifier key) live in ``log_witness``; what each has
cosigned is durable state (``log_witness.size``, the ``cosignature`` rows), so the background
job simply retries until every witness holds the latest checkpoint; nothing is sent from a
request. Transactions are committed before each HTTP call: no lock is held while a witness
answers. A witness that refuses a checkpoint as inconsistent (422), or claims to have seen a
larger tree than we ever signed, is a critical alert: someone rewrote or forked the trail.
"""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.audit import log
from service.audit.alerts import raise_trail_alert
from service.audit.checkpoint import KeyFormatError
from service.audit.cosign import (
    CosignatureError,
    CosignerVerifier,
    find_cosignature,
    parse_cosigner_verifier,
)
from service.audit.models import Checkpoint, Cosignature, LogWitness
from service.audit.operations import latest_checkpoint
from service.config import Settings
from service.core.db import utcnow

logger = structlog.get_logger("canhgac.witnessing")

# (url, body, timeout) -> (status, content type, body)
Poster = Callable[[str, bytes, float], tuple[int, str, bytes]]


class WitnessingError(ValueError):
    """A witness cannot be added (bad URL or key, already configured)."""


def add_witness(session: Session, url: str, verifier_key: str, *, by: str) -> LogWitness:
    """Configure a witness of this log by its submission prefix and cosignature key."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise WitnessingError("the witness URL must start with http:// or https://")
    try:
        key = parse_cosigner_verifier(verifier_key)
    except KeyFormatError as exc:
        raise WitnessingError(str(exc)) from None
    if session.scalar(select(LogWitness).where(LogWitness.name == key.name)) is not None:
        raise WitnessingError(f"witness {key.name} is already configured")
    row = LogWitness(name=key.name, url=url, verifier_key=str(key), size=0, added_at=utcnow())
    session.add(row)
    session.flush()
    log.record(session, "witness.added", {"by": by, "name": key.name, "url": url,
                                          "key": str(key)}, actor=by)
    return row


def reset_witness(session: Session, name: str, *, by: str) -> LogWitness:
    """Send checkpoints to a witness again after its refusal was investigated."""
    row = session.scalar(select(LogWitness).where(LogWitness.name == name))
    if row is None:
        raise WitnessingError(f"no witness named {name}")
    log.record(session, "witness.reset", {"by": by, "name": name,
                                          "refused_size": row.refused_size}, actor=by)
    row.refused_size, row.last_error = None, None
    session.flush()
    return row


def log_witnesses(session: Session) -> list[LogWitness]:
    """Return the configured witnesses of this log, by name."""
    return list(session.scalars(select(LogWitness).order_by(LogWitness.name)))


def _post(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    """POST with urllib; return (status, content type, body) for any HTTP answer."""
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - http(s) only, checked at add_witness
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - as above
            return answer.status, answer.headers.get("Content-Type", ""), answer.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read(65536)


_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_TREE_SIZE = 2**63 - 1


@dataclass
class _Job:
    witness_id: int
    name: str
    url: str
    key: CosignerVerifier
    old_size: int
    checkpoint_id: int
    size: int
    body: str
    note: str


def note_body(note: str) -> str:
    """Return the text of a signed note (what its signatures and cosignatures sign)."""
    return note[: note.index("\n\n") + 1]


def request_body(old_size: int, proof: list[bytes], note: str) -> bytes:
    """Return an add-checkpoint request body: old size, proof lines, empty line, checkpoint."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


def submit_checkpoints(session: Session, settings: Settings, *, post: Poster | None = None) -> int:
    """Send the latest checkpoint to every witness that has not cosigned it; return cosignatures.

    Commits (use a dedicated session, as the job does).
    """
    post = post or _post
    cp = latest_checkpoint(session)
    if cp is None:
        session.commit()
        return 0
    done = set(session.scalars(select(Cosignature.witness_id)
                               .where(Cosignature.checkpoint_id == cp.id)))
    body = note_body(cp.note)
    jobs = [_Job(w.id, w.name, w.url, parse_cosigner_verifier(w.verifier_key), w.size, cp.id,
                 cp.size, body, cp.note)
            for w in log_witnesses(session)
            # A witness that refused stays refused until a person clears it (reset_witness):
            # the alert itself grows the trail, so retrying would alert again every minute.
            if w.id not in done and w.refused_size is None]
    session.commit()
    received = 0
    for item in jobs:
        received += _submit_one(session, settings, item, post)
    return received


def _submit_one(session: Session, settings: Settings, item: _Job, post: Poster,
                retries: int = 1) -> int:
    """Submit one checkpoint to one witness, handling a 409 (we knew a stale size) once."""
    if item.old_size > item.size:
        _refused(session, settings, item, f"the witness cosigned size {item.old_size} of this "
                 f"log, larger than the newest checkpoint ({item.size}): history was cut back")
        return 0
    proof = (log.consistency_proof(session, item.old_size, item.size)
             if 0 < item.old_size < item.size else [])
    session.commit()
    url = item.url + "/add-checkpoint"
    try:
        status, content_type, answer = post(url, request_body(item.old_size, proof, item.note),
                                            settings.witness_timeout_seconds)
    except OSError as exc:
        _failed(session, item, f"unreachable: {type(exc).__name__}")
        return 0
    text = answer.decode("utf-8", "replace")
    if status == 409 and content_type.startswith("text/x.tlog.size") and retries:
        # A tree size as tlog-witness writes it (decimal, no sign), within our BIGINT columns:
        # anything else would fail the commit and stop every witness after this one.
        known = int(text.strip()) if _SIZE.fullmatch(text.strip()) else None
        if known is None or known > MAX_TREE_SIZE:
            _failed(session, item, f"409 without a valid size: {text.strip()[:40]!r}")
            return 0
        witness = session.get(LogWitness, item.witness_id)
        witness.size = known
        session.commit()
        item.old_size = known
        return _submit_one(session, settings, item, post, retries - 1)
    if status == 422:
        _refused(session, settings, item, f"the witness refused the checkpoint of size "
                 f"{item.size} as inconsistent with size {item.old_size} it cosigned "
                 f"({text.strip()[:200]})")
        return 0
    if status != 200:
        _failed(session, item, f"HTTP {status}: {text.strip()[:200]}")
        return 0
    try:
        lines = [line for line in text.splitlines() if line]
        stamp = find_cosignature("\n".join(lines), item.body, item.key)
    except CosignatureError as exc:
        _failed(session, item, f"bad cosignature: {exc}")
        return 0
    if stamp is None:
        _failed(session, item, "no cosignature by the configured key in the answer")
        return 0
    line = next(line for line in lines if line.startswith(f"\u2014 {item.name} "))
    witness = session.get(LogWitness, item.witness_id)
    witness.size, witness.last_error = item.size, None
    # Not written to the trail: an entry per cosignature would grow the tree, so sign a new
    # checkpoint, so be sent again, forever. The cosignature is its own signed evidence.
    try:
        # Committed before each call, this job is not under its advisory lock on PostgreSQL
        # for the whole run: another instance may have stored the same cosignature meanwhile.
        with session.begin_nested():
            session.add(Cosignature(checkpoint_id=item.checkpoint_id,
                                    witness_id=item.witness_id, line=line, cosigned_at=utcnow()))
    except IntegrityError:
        logger.info("witness_cosignature_already_stored", witness=item.name, size=item.size)
    session.commit()
    logger.info("witness_cosigned", witness=item.name, size=item.size)
    return 1


def _failed(session: Session, item: _Job, message: str) -> None:
    witness = session.get(LogWitness, item.witness_id)
    witness.last_error = message[:500]
    session.commit()
    logger.warning("witness_submit_failed", witness=item.name, size=item.size, error=message)


def _refused(session: Session, settings: Settings, item: _Job, message: str) -> None:
    witness = session.get(LogWitness, item.witness_id)
    witness.refused_size, witness.last_error = item.size, message[:500]
    entry = log.record(session, "witness.refused_ours",
                       {"witness": item.name, "size": item.size, "old_size": item.old_size,
                        "reason": message[:500]})
    raise_trail_alert(
        session, settings, rule_id="audit.witness_refused",
        explanation=f"Nhân chứng {item.name} từ chối checkpoint của nhật ký kiểm toán "
                    "(không nhất quán với lịch sử đã chứng kiến)",
        group_key=f"audit.witness_refused|{item.name}",
        details=[f"Kích thước checkpoint: {item.size}; kích thước nhân chứng đã ký: "
                 f"{item.old_size}.", "Nhật ký có thể đã bị viết lại hoặc phân nhánh."],
        entry_seq=entry.seq)
    session.commit()
    logger.error("witness_refused_checkpoint", witness=item.name, size=item.size)


def cosigned_anchor(session: Session, keys: list[CosignerVerifier],
                    quorum: int) -> tuple[Checkpoint, str] | None:
    """Return the newest checkpoint cosigned by ``quorum`` of ``keys`` and its cosigned note.

    Raises CosignatureError when a stored line by one of the keys does not verify: a
    cosignature was forged, or the checkpoint under it was changed.
    """
    from service.audit.operations import served_note

    rows = session.scalars(
        select(Checkpoint).where(Checkpoint.id.in_(select(Cosignature.checkpoint_id)))
        .order_by(Checkpoint.size.desc(), Checkpoint.id.desc())).all()
    for cp in rows:
        note = served_note(session, cp)
        body = note_body(cp.note)
        valid = 0
        for key in keys:
            try:
                valid += find_cosignature(note, body, key) is not None
            except CosignatureError as exc:
                raise CosignatureError(f"checkpoint #{cp.id} (size {cp.size}): {exc}") from None
        if valid >= quorum:
            return cp, note
    return None


def last_cosigned_size(session: Session) -> int | None:
    """Return the size of the newest checkpoint any configured witness validly cosigned."""
    keys = [parse_cosigner_verifier(w.verifier_key) for w in log_witnesses(session)]
    if not keys:
        return None
    try:
        found = cosigned_anchor(session, keys, 1)
    except CosignatureError:
        return None
    return found[0].size if found else 0
