"""Append-only audit log on SQL: one leaf per entry, complete-subtree hashes, O(log n) proofs.

Appends run inside the caller's transaction: the entry and the change it records commit
together, or neither does. The head row is locked first, so concurrent writers (threads,
processes, service instances) append one after another with no gap and no duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.orm import Session

from service.audit import merkle
from service.audit.canonical import canonical_json
from service.audit.models import AuditEntry, AuditHead, MerkleNode
from service.core.db import utcnow

SEARCH_FIELDS = (
    "actor", "host", "action", "path", "data_class", "incident_id", "occurred_at", "event_id",
)


@dataclass(frozen=True)
class PendingEntry:
    """An entry to append: its kind, its body and the copied search columns."""

    kind: str
    body: dict
    search: dict


def border_positions(size: int) -> list[tuple[int, int]]:
    """Return the (level, index) of the complete subtrees on the right border of a tree."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


def _lock_head(session: Session) -> int:
    head = session.execute(
        select(AuditHead.size).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        session.execute(insert(AuditHead).values(id=1, size=0))
        return 0
    return head


def _load_nodes(session: Session, positions: Sequence[tuple[int, int]]) -> dict:
    if not positions:
        return {}
    rows = session.execute(
        select(MerkleNode.level, MerkleNode.index, MerkleNode.hash).where(
            tuple_(MerkleNode.level, MerkleNode.index).in_(positions)
        )
    )
    return {(level, index): bytes(h) for level, index, h in rows}


def append_entries(session: Session, entries: Iterable[PendingEntry]) -> list[AuditEntry]:
    """Append entries as leaves, store every new complete subtree, and return the rows."""
    entries = list(entries)
    if not entries:
        return []
    size = _lock_head(session)
    border = _load_nodes(session, border_positions(size))
    recorded_at = utcnow()
    stamp = recorded_at.isoformat().replace("+00:00", "Z")
    entry_rows: list[dict] = []
    node_rows: list[dict] = []
    leaf_hash = merkle.leaf_hash
    node_hash = merkle.node_hash
    for offset, pending in enumerate(entries):
        seq = size + offset
        data = canonical_json(
            {"seq": seq, "recorded_at": stamp, "kind": pending.kind, "body": pending.body}
        )
        h = leaf_hash(data)
        row = {"seq": seq, "recorded_at": recorded_at, "kind": pending.kind,
               "body": data.decode(), "leaf_hash": h}
        for name in SEARCH_FIELDS:
            row[name] = pending.search.get(name)
        entry_rows.append(row)
        node_rows.append({"level": 0, "index": seq, "hash": h})
        border[(0, seq)] = h
        level, index = 0, seq
        while index & 1:
            h = node_hash(border[(level, index - 1)], h)
            level, index = level + 1, index >> 1
            border[(level, index)] = h
            node_rows.append({"level": level, "index": index, "hash": h})
    session.execute(insert(AuditEntry), entry_rows)
    session.execute(insert(MerkleNode), node_rows)
    session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(size=size + len(entries))
    )
    return [AuditEntry(**row) for row in entry_rows]


def _search_from_body(body: dict, search: dict) -> dict:
    merged = {k: body.get(k) for k in ("actor", "host", "action") if isinstance(body.get(k), str)}
    merged.update({k: v for k, v in search.items() if v is not None})
    return merged


def record(session: Session, kind: str, body: dict, **search) -> AuditEntry:
    """Append one audit entry of the given kind in the caller's transaction."""
    unknown = set(search) - set(SEARCH_FIELDS)
    if unknown:
        raise TypeError(f"unknown search fields: {sorted(unknown)}")
    return append_entries(session, [PendingEntry(kind, body, _search_from_body(body, search))])[0]


def tree_size(session: Session) -> int:
    """Return the number of entries in the log."""
    return session.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0


def node_getter(session: Session, size: int):
    """Return a get_node(level, index) that reads complete-subtree hashes, cached per call."""
    cache: dict[tuple[int, int], bytes] = {}

    def get_node(level: int, index: int) -> bytes:
        key = (level, index)
        if key not in cache:
            value = session.scalar(
                select(MerkleNode.hash).where(MerkleNode.level == level, MerkleNode.index == index)
            )
            if value is None:
                raise LookupError(f"missing tree node level={level} index={index}")
            cache[key] = bytes(value)
        return cache[key]

    return get_node


def root_at(session: Session, size: int) -> bytes:
    """Return the root hash of the tree at a given size (O(log n) reads)."""
    return merkle.root_from_nodes(size, node_getter(session, size))


def inclusion_proof(session: Session, seq: int, size: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof of entry seq in the tree of the given size."""
    return merkle.inclusion_proof_from_nodes(seq, size, node_getter(session, size))


def consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof between two sizes of the tree."""
    return merkle.consistency_proof_from_nodes(old_size, new_size, node_getter(session, new_size))

