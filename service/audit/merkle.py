"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification (pure, stdlib only).

Terminology follows RFC 9162 §2.1. Leaves are numbered from 0. A *complete node* ``(level, index)``
is the hash of the perfect subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``;
level 0 nodes are leaf hashes. Every hash in an RFC 6962 tree of ``size`` leaves is either a
complete node or the root of a right-edge range, which folds from the complete nodes that tile it.
That is what lets a store keep only complete nodes and still answer any proof by reading
O(log n) of them (the ``*_from_nodes`` functions and :class:`CompactRange`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "GetNode",
    "NodeId",
    "ProofError",
    "complete_nodes",
    "consistency_proof",
    "consistency_proof_from_nodes",
    "consistency_proof_nodes",
    "consistency_proof_size",
    "inclusion_proof",
    "inclusion_proof_from_nodes",
    "inclusion_proof_nodes",
    "inclusion_proof_size",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "root_from_nodes",
    "root_hash",
    "subtree_ranges_for_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

GetNode = Callable[[int, int], bytes]
"""``get_node(level, index)`` returns the hash of that complete subtree."""

_sha256 = hashlib.sha256
# Copying a primed hash object is ~10% faster than hashing ``prefix + data``: no concatenation.
_LEAF_PREFIX = _sha256(b"\x00")
_NODE_PREFIX = _sha256(b"\x01")


class ProofError(ValueError):
    """Raised when a Merkle proof, or the sizes and hashes given with it, do not verify."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash SHA-256(0x00 || data)."""
    h = _LEAF_PREFIX.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash SHA-256(0x01 || left || right)."""
    h = _NODE_PREFIX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """Return the leaf hashes of many entries (a tight loop for batches)."""
    out: list[bytes] = []
    append = out.append
    copy = _LEAF_PREFIX.copy
    for data in entries:
        h = copy()
        h.update(data)
        append(h.digest())
    return out


def _pair_up(nodes: Sequence[bytes]) -> list[bytes]:
    """Hash adjacent pairs of ``nodes``; an odd last node is left out."""
    out: list[bytes] = []
    append = out.append
    copy = _NODE_PREFIX.copy
    it = iter(nodes)
    for left, right in zip(it, it, strict=False):
        h = copy()
        h.update(left)
        h.update(right)
        append(h.digest())
    return out


def complete_nodes(leaf_hashes: Sequence[bytes], level: int) -> list[bytes]:
    """Return the complete nodes of ``level`` over consecutive runs of ``2**level`` leaf hashes.

    ``leaf_hashes`` must start at a multiple of ``2**level`` and hold whole runs; level 0
    returns them as they are.
    """
    _check_size("level", level)
    if len(leaf_hashes) % (1 << level):
        raise ValueError(f"{len(leaf_hashes)} leaf hashes are not whole runs of 2**{level}")
    nodes = list(leaf_hashes)
    for _ in range(level):
        nodes = _pair_up(nodes)
    return nodes


def _next_level(nodes: Sequence[bytes]) -> list[bytes]:
    """Return the level above ``nodes``; an odd last node moves up unchanged.

    Promoting the lone right node gives exactly the RFC 6962 tree shape (split at the largest
    power of two below n), so level-by-level reduction computes MTH without recursion.
    """
    out = _pair_up(nodes)
    if len(nodes) & 1:
        out.append(nodes[-1])
    return out


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash (RFC 9162 MTH) of a sequence of leaf hashes."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def _lowest_set_bit(n: int) -> int:
    """Return the position of the lowest set bit of n > 0 (its count of trailing zeros)."""
    return (n & -n).bit_length() - 1


def _check_size(name: str, value: int) -> None:
    """Reject sizes and indexes that are not non-negative ints."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof (audit path, leaf level first) of leaf ``index``."""
    _check_size("index", index)
    size = len(leaf_hashes)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    level = list(leaf_hashes)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = _next_level(level)
        index >>= 1
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof from the first ``old_size`` leaves to all of them.

    ``old_size`` must be at least 1: every tree trivially extends the empty tree, and RFC 9162
    (like transparency-dev/merkle) defines no proof for it.
    """
    _check_size("old_size", old_size)
    new_size = len(leaf_hashes)
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        return []
    # The old tree's last complete subtree (level, index) ends exactly at old_size; the proof is
    # that node (omitted when it is the whole old tree) and then its audit path in the new tree.
    shift = _lowest_set_bit(old_size)
    index = (old_size - 1) >> shift
    level = list(leaf_hashes)
    for _ in range(shift):
        level = _next_level(level)
    proof = [level[index]] if index else []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = _next_level(level)
        index >>= 1
    return proof


def inclusion_proof_size(index: int, size: int) -> int:
    """Return how many hashes an inclusion proof of leaf ``index`` in a tree of ``size`` has."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """Return how many hashes a consistency proof between 0 < old_size < new_size has."""
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    shift = _lowest_set_bit(old_size)
    start = 0 if old_size == 1 << shift else 1
    return start + inner - shift + border


def _check_hash(name: str, value: bytes) -> None:
    """Reject anything but a 32-byte hash."""
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != HASH_SIZE:
        shown = len(value) if isinstance(value, bytes | bytearray | memoryview) else type(value)
        raise ProofError(f"{name} must be a {HASH_SIZE}-byte hash, got {shown}")


def _check_proof_size(name: str, value: int) -> None:
    """Reject sizes and indexes that are not non-negative ints, as a proof failure."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{name} must be a non-negative int, got {value!r}")


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof with the RFC 9162 §2.1.3.2 algorithm; raise ProofError if bad."""
    _check_proof_size("index", index)
    _check_proof_size("tree_size", tree_size)
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    for i, element in enumerate(proof):
        _check_hash(f"proof[{i}]", element)
    root = bytes(root)
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not in a tree of size {tree_size}")
    expected = inclusion_proof_size(index, tree_size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {tree_size} must have "
            f"{expected} hashes, got {len(proof)}"
        )
    fn, sn = index, tree_size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the given root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof with the RFC 9162 §2.1.4.2 algorithm; raise ProofError if bad.

    Equal sizes need an empty proof and equal roots. ``old_size == 0`` is refused (as in
    transparency-dev/merkle): a proof from the empty tree proves nothing.
    """
    _check_proof_size("old_size", old_size)
    _check_proof_size("new_size", new_size)
    for i, element in enumerate(proof):
        _check_hash(f"proof[{i}]", element)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if old_size == new_size:
        # Nothing is hashed: the two checkpoints must simply agree (transparency-dev/merkle
        # accepts equal roots of any length here, and its probes test that).
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if bytes(old_root) != bytes(new_root):
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    old_root, new_root = bytes(old_root), bytes(new_root)
    expected = consistency_proof_size(old_size, new_size)
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof from size {old_size} to {new_size} must have "
            f"{expected} hashes, got {len(proof)}"
        )
    path = [bytes(p) for p in proof]
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the new root")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the old root (size {old_size})")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the new root (size {new_size})")


# --- Working from stored complete subtrees -------------------------------------------------


def _tiling(start: int, end: int) -> list[NodeId]:
    """Return the complete nodes tiling leaves [start, end), largest (leftmost) first.

    ``start`` must be aligned to a power of two larger than ``end - start`` (0 always is), so
    the tiles follow the set bits of ``end - start``; their right fold is the range's RFC 6962
    hash.
    """
    nodes: list[NodeId] = []
    width = end - start
    level = width.bit_length() - 1
    pos = start
    while level >= 0:
        if width >> level & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
        level -= 1
    return nodes


def subtree_ranges_for_root(size: int) -> list[NodeId]:
    """Return the complete nodes ``(level, index)`` whose right fold is the root of ``size`` leaves.

    These are also the right border a :class:`CompactRange` keeps (one per set bit of ``size``,
    highest level first).
    """
    _check_size("size", size)
    return _tiling(0, size)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Fold hashes from the right: H(h0, H(h1, ... H(hk-1, hk)))."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_from_nodes(size: int, get_node: GetNode) -> bytes:
    """Return the root of a tree of ``size`` leaves from its O(log n) complete subtrees."""
    nodes = subtree_ranges_for_root(size)
    if not nodes:
        return EMPTY_ROOT
    return _fold([get_node(level, index) for level, index in nodes])


def _path_plan(level: int, index: int, size: int) -> list[list[NodeId]]:
    """Plan the audit path of complete node (level, index) in a tree of ``size`` leaves.

    Each element lists the complete nodes whose right fold is one proof hash: a single node,
    except for the one sibling that may cover the ragged right edge of the tree.
    """
    last = (size - 1) >> level  # the node at ``level`` holding the last leaf
    inner = (index ^ last).bit_length()
    plan: list[list[NodeId]] = []
    for k in range(inner):
        node_level = level + k
        sibling = (index >> k) ^ 1
        start = sibling << node_level
        end = start + (1 << node_level)
        if end <= size:
            plan.append([(node_level, sibling)])
        else:
            # Only the topmost inner sibling can be cut short by the end of the tree.
            plan.append(_tiling(start, size))
    # Above ``inner`` the path runs along the right border: it only has left siblings.
    index >>= inner
    node_level = level + inner
    while index:
        if index & 1:
            plan.append([(node_level, index - 1)])
        index >>= 1
        node_level += 1
    return plan


def _inclusion_plan(index: int, size: int) -> list[list[NodeId]]:
    """Plan an inclusion proof for leaf ``index``."""
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    return _path_plan(0, index, size)


def _consistency_plan(old_size: int, new_size: int) -> list[list[NodeId]]:
    """Plan a consistency proof between two sizes (see :func:`consistency_proof`)."""
    _check_size("old_size", old_size)
    _check_size("new_size", new_size)
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        return []
    shift = _lowest_set_bit(old_size)
    index = (old_size - 1) >> shift
    head = [[(shift, index)]] if index else []
    return head + _path_plan(shift, index, new_size)


def _flatten(plan: list[list[NodeId]]) -> list[NodeId]:
    """Return every node a plan reads, in order (the tiles are disjoint, so no repeats)."""
    return [node for group in plan for node in group]


def _realize(plan: list[list[NodeId]], get_node: GetNode) -> list[bytes]:
    """Turn a plan into proof hashes by reading and folding complete nodes."""
    proof: list[bytes] = []
    for group in plan:
        if len(group) == 1:
            proof.append(get_node(*group[0]))
        else:
            proof.append(_fold([get_node(level, index) for level, index in group]))
    return proof


def inclusion_proof_nodes(index: int, size: int) -> list[NodeId]:
    """Return the complete nodes an inclusion proof of leaf ``index`` reads (fetch them at once)."""
    return _flatten(_inclusion_plan(index, size))


def consistency_proof_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """Return the complete nodes a consistency proof between two sizes reads."""
    return _flatten(_consistency_plan(old_size, new_size))


def inclusion_proof_from_nodes(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` from stored complete nodes."""
    return _realize(_inclusion_plan(index, size), get_node)


def consistency_proof_from_nodes(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """Return the consistency proof between two sizes from stored complete nodes."""
    return _realize(_consistency_plan(old_size, new_size), get_node)


class CompactRange:
    """The right border of a tree: one complete-subtree hash per set bit of its size.

    Appending leaf hashes updates the border in O(k + log n) hashing and can report every
    complete node the batch creates, so a store can persist them and later serve proofs.
    """

    __slots__ = ("_border", "_size")

    def __init__(self, size: int = 0, border: Sequence[bytes] = ()) -> None:
        """Start from ``size`` leaves and their border hashes (in subtree_ranges_for_root order)."""
        _check_size("size", size)
        nodes = subtree_ranges_for_root(size)
        if len(border) != len(nodes):
            raise ValueError(
                f"a tree of size {size} has {len(nodes)} border hashes, got {len(border)}"
            )
        self._size = size
        # _border[level] is the hash of node (level, (size >> level) - 1) when bit ``level`` of
        # size is set, else None.
        self._border: list[bytes | None] = [None] * size.bit_length()
        for (level, _index), h in zip(nodes, border, strict=True):
            if len(h) != HASH_SIZE:
                raise ValueError(f"border hashes must be {HASH_SIZE} bytes")
            self._border[level] = bytes(h)

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> CompactRange:
        """Load the border of a stored tree of ``size`` leaves."""
        nodes = subtree_ranges_for_root(size)
        return cls(size, [get_node(level, index) for level, index in nodes])

    @property
    def size(self) -> int:
        """Return the number of leaves appended so far."""
        return self._size

    def border(self) -> list[tuple[int, int, bytes]]:
        """Return the border as ``(level, index, hash)``, highest level first."""
        out = []
        for level, index in subtree_ranges_for_root(self._size):
            h = self._border[level]
            assert h is not None
            out.append((level, index, h))
        return out

    def root(self) -> bytes:
        """Return the root hash of the tree so far."""
        acc: bytes | None = None
        for h in self._border:  # lowest level first: the rightmost subtree
            if h is not None:
                acc = h if acc is None else node_hash(h, acc)
        return EMPTY_ROOT if acc is None else acc

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append leaf hashes without reporting new nodes (the fast path for verification)."""
        self._append(leaf_hashes, None)

    def copy(self) -> CompactRange:
        """Return an independent copy (the border is a few immutable hashes)."""
        twin = CompactRange.__new__(CompactRange)
        twin._size = self._size
        twin._border = list(self._border)
        return twin

    def append_subtree(self, level: int, subtree_hash: bytes) -> None:
        """Append the hash of a complete subtree of ``2**level`` leaves, hashed elsewhere.

        The size must be a multiple of ``2**level``: the subtree is then the complete node
        ``(level, size >> level)`` of the grown tree, and merging it into the border is the same
        carry as appending that many leaves one by one. Appending the tiles of a range
        ``[start, end)`` (see ``subtree_ranges_for_root(end - start)``, highest level first) to a
        range of ``start`` leaves, with ``start`` a multiple of a power of two at least
        ``end - start``, gives the compact range of ``end`` leaves: what lets separate workers
        fold aligned chunks of one tree.
        """
        _check_size("level", level)
        if len(subtree_hash) != HASH_SIZE:
            raise ValueError(f"a subtree hash must be {HASH_SIZE} bytes")
        if self._size & ((1 << level) - 1):
            raise ValueError(f"a tree of size {self._size} cannot take a subtree of 2**{level} "
                             "leaves: it must end on a multiple of the subtree's width")
        new_size = self._size + (1 << level)
        border = self._border
        if len(border) < new_size.bit_length():
            border.extend([None] * (new_size.bit_length() - len(border)))
        carry = bytes(subtree_hash)
        while (left := border[level]) is not None:
            carry = node_hash(left, carry)
            border[level] = None
            level += 1
        border[level] = carry
        self._size = new_size

    def append(
        self, leaf_hashes: Sequence[bytes], min_level: int = 0
    ) -> list[tuple[int, int, bytes]]:
        """Append leaf hashes; return every new complete node as ``(level, index, hash)``.

        The list starts with the lowest level reported (``min_level``, the leaves themselves
        by default) and goes up level by level.
        """
        _check_size("min_level", min_level)
        out: list[tuple[int, int, bytes]] = []
        self._append(leaf_hashes, out, min_level)
        return out

    def _append(
        self, leaf_hashes: Sequence[bytes], out: list[tuple[int, int, bytes]] | None,
        min_level: int = 0,
    ) -> None:
        """Append level by level: the new nodes at each level are one contiguous run."""
        count = len(leaf_hashes)
        if not count:
            return
        if set(map(len, leaf_hashes)) != {HASH_SIZE}:  # C-speed check of the whole batch
            raise ValueError(f"leaf hashes must be {HASH_SIZE} bytes")
        new_size = self._size + count
        border = self._border
        if len(border) < new_size.bit_length():
            border.extend([None] * (new_size.bit_length() - len(border)))
        run: list[bytes] = list(leaf_hashes)
        first = self._size  # index of run[0] at this level
        level = 0
        while run:
            if out is not None and level >= min_level:
                out.extend([(level, first + i, h) for i, h in enumerate(run)])
            if first & 1:
                # The run's first node is a right child; its left sibling is the old border node.
                left = border[level]
                assert left is not None
                run.insert(0, left)
                first -= 1
            end = first + len(run)  # == new_size >> level
            border[level] = run[-1] if end & 1 else None
            run = _pair_up(run)
            first >>= 1
            level += 1
        self._size = new_size
