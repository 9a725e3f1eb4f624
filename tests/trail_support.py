"""Trail helpers the audit tests share: grow the trail, sign it, and rewrite it as an insider would."""

from __future__ import annotations

import json
from collections.abc import Callable

from service.audit import log, merkle


def grow(app, count: int, kind: str = "test.entry",
         body: Callable[[int], dict] = lambda i: {"n": i}) -> None:
    """Append ``count`` entries of ``kind`` (in batches of 500) and commit."""
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        try:
            for start in range(0, count, 500):
                log.append_entries(s, [log.PendingEntry(kind, body(i))
                                       for i in range(start, min(count, start + 500))])
            s.commit()
        finally:
            s.close()


def sign(app) -> tuple[int, bytes, str]:
    """Sign a checkpoint of the trail as it stands; return (size, root hash, note)."""
    from service.audit.operations import sign_checkpoint
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        try:
            cp = sign_checkpoint(s, app.config["SETTINGS"])
            s.commit()
            return cp.size, cp.root_hash, cp.note
        finally:
            s.close()


def grow_and_sign(app, count: int, kind: str = "test.entry") -> tuple[int, bytes, str]:
    """Append ``count`` entries and sign a checkpoint covering them."""
    grow(app, count, kind)
    return sign(app)


def rewrite_entry(app, seq: int, new_body: dict, *, re_sign: bool) -> None:
    """Do what whoever holds the database (and, with ``re_sign``, the key) can do.

    Entry ``seq`` gets ``new_body``; its leaf hash and every stored node are recomputed, so
    the trail is consistent with itself again; with ``re_sign`` a checkpoint of the rewritten
    tree is signed with the server's own key.
    """
    from service.audit.checkpoint import format_checkpoint, sign_note
    from service.audit.keys import load_signer_key
    from service.audit.models import AuditEntry, AuditHead, Checkpoint, MerkleNode
    from service.core.db import new_session

    settings = app.config["SETTINGS"]
    with app.app_context():
        s = new_session(app)
        try:
            row = s.get(AuditEntry, seq)
            entry = json.loads(row.body)
            data = log.entry_bytes(seq, entry["recorded_at"], entry["kind"], new_body)
            row.body, row.leaf_hash = data.decode(), merkle.leaf_hash(data)
            s.flush()
            s.query(MerkleNode).delete()
            # The head's stored border is derived from the old tree: a thorough forger drops it.
            s.query(AuditHead).update({AuditHead.border: None})
            size = log.tree_size(s)
            nodes = merkle.CompactRange().append(log.node_range(s, 0, 0, size),
                                                 log.MIN_STORED_LEVEL)
            s.add_all([MerkleNode(level=lv, index=i, hash=h) for lv, i, h in nodes])
            s.flush()
            if re_sign:
                root = log.root_at(s, size)
                note = sign_note(format_checkpoint(settings.audit_origin, size, root),
                                 load_signer_key(settings.keys_dir))
                s.add(Checkpoint(size=size, root_hash=root, note=note, signed_at=row.recorded_at))
            s.commit()
        finally:
            s.close()


def signed_trail(session, runner, checkpoints: tuple[int, ...], size: int) -> str:
    """Append ``size`` event entries, signing with ``canhgac checkpoint`` at each of
    ``checkpoints``; return the first checkpoint's note."""
    notes, start = [], 0
    for end in (*checkpoints, size):
        log.append_entries(session, [
            log.PendingEntry("event", {"actor": f"canbo{i % 4}", "i": i, "path": "C:\\DuLieu"},
                             {"actor": f"canbo{i % 4}"}) for i in range(start, end)])
        session.commit()
        if end in checkpoints:
            result = runner.invoke(["checkpoint"])
            assert result.exit_code == 0, result.output
            notes.append(result.stdout)
        start = end
    return notes[0]
