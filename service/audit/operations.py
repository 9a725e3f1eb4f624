"""Audit trail operations: sign checkpoints and find the latest one."""

from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log
from service.audit.checkpoint import format_checkpoint, sign_note
from service.audit.keys import load_signer_key
from service.audit.models import Checkpoint
from service.config import Settings
from service.core.db import utcnow


def latest_checkpoint(session: Session) -> Checkpoint | None:
    """Return the newest stored checkpoint."""
    return session.scalar(select(Checkpoint).order_by(Checkpoint.size.desc(), Checkpoint.id.desc()))


def sign_checkpoint(session: Session, settings: Settings, *, force: bool = False) -> Checkpoint:
    """Sign and store a checkpoint of the current tree unless one already covers it.

    Call it whenever a checkpoint leaves the server (the schedule, `canhgac checkpoint`, every
    notification, every export): the signed note is ``.note``. It signs the tree as this
    transaction sees it, so entries appended earlier in the same transaction are covered;
    commit before the note is shown to anyone.
    """
    size = log.tree_size(session)
    last = latest_checkpoint(session)
    if last is not None and last.size == size and not force:
        return last
    root = log.root_at(session, size)
    body = format_checkpoint(settings.audit_origin, size, root)
    note = sign_note(body, load_signer_key(settings.keys_dir))
    checkpoint = Checkpoint(size=size, root_hash=root, note=note, signed_at=utcnow())
    session.add(checkpoint)
    session.flush()
    return checkpoint


def root_b64(root: bytes) -> str:
    """Return a root hash in standard base64, as checkpoints show it."""
    return base64.b64encode(root).decode()


def cosignature_lines(session: Session, checkpoint: Checkpoint) -> list[str]:
    """Return the stored witness cosignature lines of a checkpoint (by witness name)."""
    from service.audit.models import Cosignature, LogWitness

    rows = session.execute(
        select(Cosignature.line).join(LogWitness, LogWitness.id == Cosignature.witness_id)
        .where(Cosignature.checkpoint_id == checkpoint.id).order_by(LogWitness.name)
    ).scalars().all()
    return list(rows)


def served_note(session: Session, checkpoint: Checkpoint) -> str:
    """Return the checkpoint's signed note with the witnesses' cosignature lines appended."""
    lines = cosignature_lines(session, checkpoint)
    return checkpoint.note + "".join(line + "\n" for line in lines)


def latest_cosigned_checkpoint(session: Session) -> Checkpoint | None:
    """Return the newest checkpoint that at least one witness cosigned."""
    from service.audit.models import Cosignature

    return session.scalar(
        select(Checkpoint).where(Checkpoint.id.in_(select(Cosignature.checkpoint_id)))
        .order_by(Checkpoint.size.desc(), Checkpoint.id.desc())
    )
