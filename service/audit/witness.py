"""Witnessing other logs (C2SP tlog-witness ``add-checkpoint``) with our own witness key.

Each witnessed log is registered by its signed-note verifier key (its origin is the key's
name). A checkpoint is cosigned only when it is signed by that key and consistent with the
last one cosigned for the origin; checking the old size and storing the new checkpoint
happen under the row's lock, in one transaction, so two racing requests cannot roll it back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import merkle
from service.audit.checkpoint import (
    CheckpointError,
    InvalidSignatureError,
    NoteError,
    UnverifiedNoteError,
    parse_checkpoint,
    parse_verifier_key,
    verify_note,
)
from service.audit.cosign import cosign
from service.audit.keys import load_witness_signer
from service.audit.log import record
from service.audit.models import WitnessedLog
from service.config import Settings
from service.core.db import utcnow

MAX_PROOF_LINES = 63
EMPTY_ROOT = hashlib.sha256(b"").digest()
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")  # a uint64: at most 20 digits


class WitnessError(ValueError):
    """A log cannot be registered (bad key, already known)."""


@dataclass
class WitnessRefusal(Exception):
    """add-checkpoint refused: the HTTP status, a message and (409) the size we hold."""

    status: int
    message: str
    size: int | None = None

    def __str__(self) -> str:
        """Return the message."""
        return f"{self.status}: {self.message}"


def add_log(session: Session, verifier_key: str, *, by: str) -> WitnessedLog:
    """Register a log to witness by its verifier key; its origin is the key's name."""
    try:
        key = parse_verifier_key(verifier_key.strip())
    except NoteError as exc:
        raise WitnessError(f"not a log verifier key: {exc}") from None
    if session.scalar(select(WitnessedLog).where(WitnessedLog.origin == key.name)) is not None:
        raise WitnessError(f"log {key.name} is already witnessed")
    row = WitnessedLog(origin=key.name, verifier_key=str(key), size=0, added_at=utcnow())
    session.add(row)
    session.flush()
    record(session, "witness.log_added", {"by": by, "origin": key.name, "key": str(key)},
           actor=by)
    return row


def witnessed_logs(session: Session) -> list[WitnessedLog]:
    """Return every witnessed log, by origin."""
    return list(session.scalars(select(WitnessedLog).order_by(WitnessedLog.origin)))


def cosigned_note_for(session: Session, origin_hash: str) -> str | None:
    """Return the newest cosigned checkpoint (log and our signatures) of the log whose origin
    hashes (SHA-256, lowercase hex) to ``origin_hash``; None if we never cosigned one."""
    for row in witnessed_logs(session):
        if hashlib.sha256(row.origin.encode("utf-8")).hexdigest() == origin_hash:
            return row.note
    return None


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """Split an add-checkpoint body into old size, proof hashes and the checkpoint note."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessRefusal(400, "body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessRefusal(400, "no empty line before the checkpoint")
    old_line, *proof_lines = head.split("\n")
    match = _OLD_LINE.fullmatch(old_line)
    if match is None:
        raise WitnessRefusal(400, "the first line must be 'old <size>'")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessRefusal(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in proof_lines:
        try:
            value = base64.b64decode(line, validate=True)
        except (ValueError, binascii.Error):
            raise WitnessRefusal(400, "a proof line is not base64") from None
        if len(value) != 32 or base64.b64encode(value).decode() != line:
            raise WitnessRefusal(400, "a proof line is not one base64 SHA-256 hash")
        proof.append(value)
    return int(match.group(1)), proof, note


def add_checkpoint(session: Session, settings: Settings, body: bytes) -> list[str]:
    """Check and cosign a submitted checkpoint; return the cosignature lines or raise a refusal."""
    old_size, proof, note = _parse_request(body)
    text, sep, _sigs = note.partition("\n\n")
    if not sep:
        raise WitnessRefusal(400, "the checkpoint is not a signed note")
    try:
        checkpoint = parse_checkpoint(text + "\n")
    except CheckpointError as exc:
        raise WitnessRefusal(400, f"malformed checkpoint: {exc}") from None
    # The row lock makes check-then-store atomic (PostgreSQL FOR UPDATE; SQLite transactions
    # already hold the write lock from BEGIN IMMEDIATE).
    row = session.scalar(select(WitnessedLog).where(WitnessedLog.origin == checkpoint.origin)
                         .with_for_update())
    if row is None:
        raise WitnessRefusal(404, f"unknown log {checkpoint.origin}")
    try:
        verify_note(note, [row.verifier_key])
    except (UnverifiedNoteError, InvalidSignatureError):
        raise WitnessRefusal(403, "not signed by the log's trusted key") from None
    except NoteError as exc:
        raise WitnessRefusal(400, f"malformed note: {exc}") from None
    if old_size > checkpoint.size:
        raise WitnessRefusal(400, "old size is larger than the checkpoint size")
    if old_size != row.size:
        raise WitnessRefusal(409, "old size is not the latest cosigned size", size=row.size)
    problem = _inconsistency(row, old_size, proof, checkpoint.size, checkpoint.root)
    if problem:
        # Signed by the log yet inconsistent with what we cosigned: evidence of a rewrite.
        record(session, "witness.refused",
               {"origin": row.origin, "old_size": old_size, "size": checkpoint.size,
                "reason": problem, "note": note})
        raise WitnessRefusal(422, problem)
    # The exact text the log signed (extension lines included), as tlog-cosignature says.
    line = cosign(text + "\n", load_witness_signer(settings.keys_dir))
    row.size, row.root_hash = checkpoint.size, checkpoint.root
    row.note, row.cosigned_at = note + line + "\n", utcnow()
    record(session, "witness.cosigned",
           {"origin": row.origin, "old_size": old_size, "size": checkpoint.size,
            "root": base64.b64encode(checkpoint.root).decode()})
    session.flush()
    return [line]


def _inconsistency(row: WitnessedLog, old_size: int, proof: list[bytes], size: int,
                   root: bytes) -> str | None:
    """Return why the checkpoint does not extend the last cosigned one, or None."""
    if size == 0 and root != EMPTY_ROOT:
        return "a tree of size 0 must have the empty root"
    if old_size == 0:
        return "a proof from size 0 must be empty" if proof else None
    if old_size == size:
        if proof:
            return "a proof between equal sizes must be empty"
        return None if root == row.root_hash else "another root for the size already cosigned"
    try:
        merkle.verify_consistency(old_size, size, row.root_hash, root, proof)
    except merkle.ProofError as exc:
        return f"consistency proof does not verify: {exc}"
    return None
