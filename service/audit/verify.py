"""Recompute the whole trail: every leaf, the tree, every checkpoint's signature and root."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.audit import log, merkle
from service.audit.canonical import canonical_json
from service.audit.checkpoint import NoteError, open_note, parse_checkpoint
from service.audit.models import AuditEntry, Checkpoint


class VerifyError(Exception):
    """The trail does not hold; the message names the first bad entry or checkpoint."""


@dataclass
class VerifyReport:
    """What a successful verification covered."""

    size: int
    root: bytes
    checkpoints: int
    external: list[int] = field(default_factory=list)


class RootFolder:
    """Fold leaf hashes left to right, keeping only the right border (O(log n) memory)."""

    __slots__ = ("count", "stack")

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.count = 0

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        node_hash = merkle.node_hash
        stack = self.stack
        h = leaf
        n = self.count
        while n & 1:
            h = node_hash(stack.pop(), h)
            n >>= 1
        stack.append(h)
        self.count += 1

    def root(self) -> bytes:
        """Return the root of the leaves added so far."""
        if not self.stack:
            return merkle.root_hash([])
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = merkle.node_hash(left, h)
        return h


def check_entry_body(seq: int, body: str, stored_leaf: bytes) -> bytes:
    """Check one stored entry against its canonical form and leaf hash; return the leaf hash."""
    data = body.encode()
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise VerifyError(f"entry {seq}: body is not JSON") from exc
    if not isinstance(parsed, dict) or parsed.get("seq") != seq:
        raise VerifyError(f"entry {seq}: body names sequence {parsed.get('seq')!r} (moved or reordered)")
    if canonical_json(parsed) != data:
        raise VerifyError(f"entry {seq}: body is not in canonical form (altered)")
    leaf = merkle.leaf_hash(data)
    if leaf != bytes(stored_leaf):
        raise VerifyError(f"entry {seq}: leaf hash does not match its body (altered)")
    return leaf


def verify_log(
    session: Session,
    verifier_keys: list[str],
    *,
    external_notes: list[str] = (),
    progress: Callable[[int], None] | None = None,
    batch: int = 5000,
) -> VerifyReport:
    """Verify every entry, the stored checkpoints and any kept checkpoints; raise VerifyError."""
    size = log.tree_size(session)
    count = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    targets: dict[int, list[tuple[str, bytes]]] = {}
    stored = list(session.scalars(select(Checkpoint).order_by(Checkpoint.size, Checkpoint.id)))
    for cp in stored:
        label = f"checkpoint #{cp.id} (size {cp.size})"
        body = _open(cp.note, verifier_keys, label)
        parsed = parse_checkpoint(body)
        if parsed.size != cp.size or parsed.root != bytes(cp.root_hash):
            raise VerifyError(f"{label}: stored size/root differ from its signed note")
        targets.setdefault(parsed.size, []).append((label, parsed.root))
    external_sizes = []
    for i, note in enumerate(external_notes):
        label = f"kept checkpoint {i + 1}"
        parsed = parse_checkpoint(_open(note, verifier_keys, label))
        targets.setdefault(parsed.size, []).append((f"{label} (size {parsed.size})", parsed.root))
        external_sizes.append(parsed.size)
    max_target = max(targets, default=0)
    if max_target > size or count != size:
        raise VerifyError(
            f"log holds {count} entries, head says {size}, a checkpoint covers {max_target}: "
            "entries were removed or inserted"
        )
    folder = RootFolder()
    _check_target(0, folder, targets)
    expected = 0
    last = 0
    while expected < size:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.body, AuditEntry.leaf_hash)
            .where(AuditEntry.seq >= last)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for seq, body, stored_leaf in rows:
            if seq != expected:
                raise VerifyError(f"entry {expected}: missing (next present is {seq})")
            folder.add(check_entry_body(seq, body, stored_leaf))
            expected += 1
            if expected in targets:
                _check_target(expected, folder, targets)
        last = expected
        if progress:
            progress(expected)
    if expected != size:
        raise VerifyError(f"entry {expected}: missing (log ends at {expected}, head says {size})")
    root = folder.root()
    if size and log.root_at(session, size) != root:
        raise VerifyError("stored tree nodes do not match the entries (node table altered)")
    return VerifyReport(size=size, root=root, checkpoints=len(stored), external=external_sizes)


def _open(note: str, keys: list[str], label: str) -> str:
    try:
        return open_note(note, keys)
    except NoteError as exc:
        raise VerifyError(f"{label}: signature does not verify ({exc})") from exc
    except ValueError as exc:
        raise VerifyError(f"{label}: malformed ({exc})") from exc


def _check_target(size: int, folder: RootFolder, targets: dict) -> None:
    root = folder.root()
    for label, expected_root in targets.get(size, []):
        if root != expected_root:
            raise VerifyError(f"{label}: root does not match the entries it covers (log rewritten)")
