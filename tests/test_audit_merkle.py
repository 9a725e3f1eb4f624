"""Tests for service.audit.merkle: published vectors, probes, and a naive RFC 6962 reference."""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.audit import merkle
from service.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    complete_nodes,
    consistency_proof,
    consistency_proof_from_nodes,
    consistency_proof_nodes,
    consistency_proof_size,
    inclusion_proof,
    inclusion_proof_from_nodes,
    inclusion_proof_nodes,
    inclusion_proof_size,
    leaf_hash,
    leaf_hashes,
    node_hash,
    root_from_nodes,
    root_hash,
    subtree_ranges_for_root,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import load_vectors


def _load_vectors(name: str) -> dict:
    """Load one published vector file (see tests/vectors/README.md)."""
    return load_vectors(name)


def _b64(value: str | None) -> bytes:
    """Decode a Go []byte JSON value (standard base64; null is empty)."""
    return base64.b64decode(value or "")


# --- A naive reference, transcribed from RFC 6962 §2.1 ------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Reference:
    """MTH, PATH and PROOF over leaf hashes, recursive exactly as the RFC writes them."""

    def __init__(self, hashes: list[bytes]) -> None:
        self.hashes = tuple(hashes)
        self.mth = functools.lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return _sha(b"")
        if n == 1:
            return self.hashes[lo]
        k = _largest_power_of_two_below(n)
        return _sha(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]


def _leaves(seed: int, n: int) -> list[bytes]:
    """Distinct pseudo-random leaf hashes (hypothesis draws the seed)."""
    return [leaf_hash(seed.to_bytes(8, "big") + i.to_bytes(4, "big")) for i in range(n)]


def _complete_nodes(ref: Reference, n: int) -> dict[tuple[int, int], bytes]:
    """Every complete subtree (level, index) of a tree of n leaves, from the reference."""
    nodes = {}
    level = 0
    while (1 << level) <= n:
        width = 1 << level
        for index in range(n // width):
            nodes[(level, index)] = ref.mth(index * width, (index + 1) * width)
        level += 1
    return nodes


def _flip(data: bytes, position: int) -> bytes:
    buf = bytearray(data)
    buf[position % len(buf)] ^= 0x01
    return bytes(buf)


# --- Published vectors ----------------------------------------------------------------------


def test_hasher_vectors() -> None:
    vectors = _load_vectors("merkle_vectors.json")
    assert root_hash([]) == EMPTY_ROOT
    checked = 0
    for case in vectors["hasher_vectors"]:
        if case["kind"] == "empty_tree_root":
            got = root_hash([])
        elif case["kind"] == "leaf":
            if "leaf_ascii" in case:
                got = leaf_hash(case["leaf_ascii"].encode())
            else:
                got = leaf_hash(bytes.fromhex(case["leaf_hex"]))
        else:
            if "left_ascii" in case:
                got = node_hash(case["left_ascii"].encode(), case["right_ascii"].encode())
            else:
                got = node_hash(bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"]))
        if "output_hex" in case:
            want = bytes.fromhex(case["output_hex"])
        else:
            want = _b64(case["output_b64"])
        assert got == want, case
        checked += 1
    assert checked == len(vectors["hasher_vectors"]) > 0


def test_roots_and_node_hashes_of_the_eight_classic_leaves() -> None:
    vectors = _load_vectors("merkle_vectors.json")
    hashes = leaf_hashes(bytes.fromhex(x) for x in vectors["leaves_hex"])
    assert len(vectors["roots"]) == 9
    for case in vectors["roots"]:
        assert root_hash(hashes[: case["size"]]).hex() == case["root_hex"], case
    appender = CompactRange()
    nodes = {(level, index): h for level, index, h in appender.append(hashes)}
    for level, row in enumerate(vectors["node_hashes_by_level"]["levels"]):
        for index, want in enumerate(row):
            assert nodes[(level, index)].hex() == want


def test_inclusion_vectors() -> None:
    vectors = _load_vectors("merkle_vectors.json")
    hashes = leaf_hashes(bytes.fromhex(x) for x in vectors["leaves_hex"])
    for case in vectors["inclusion"]:
        size, index = case["tree_size"], case["leaf_index"]
        proof = [bytes.fromhex(x) for x in case["proof_hex"]]
        assert hashes[index].hex() == case["leaf_hash_hex"]
        assert leaf_hash(bytes.fromhex(case["leaf_hex"])).hex() == case["leaf_hash_hex"]
        assert inclusion_proof(hashes[:size], index) == proof
        verify_inclusion(hashes[index], index, size, proof, bytes.fromhex(case["root_hex"]))
    for case in vectors["inclusion_invalid"]:
        # The historical "{0, 0, nil}" entry: leaf 0 of an empty tree has no proof.
        with pytest.raises(ProofError):
            verify_inclusion(EMPTY_ROOT, case["leaf_1based"], case["tree_size"], [], EMPTY_ROOT)
        with pytest.raises(ValueError):
            inclusion_proof([], case["leaf_1based"])


def test_consistency_vectors() -> None:
    vectors = _load_vectors("merkle_vectors.json")
    hashes = leaf_hashes(bytes.fromhex(x) for x in vectors["leaves_hex"])
    for case in vectors["consistency"]:
        proof = [bytes.fromhex(x) for x in case["proof_hex"]]
        assert consistency_proof(hashes[: case["size2"]], case["size1"]) == proof
        verify_consistency(
            case["size1"],
            case["size2"],
            bytes.fromhex(case["root1_hex"]),
            bytes.fromhex(case["root2_hex"]),
            proof,
        )


def test_tessera_golden_log_roots() -> None:
    log = _load_vectors("merkle_vectors.json")["tessera_golden_log"]
    hashes = leaf_hashes(word.encode("ascii") for word in log["leaves_ascii"])
    appender = CompactRange()
    assert appender.root() == _b64(log["roots_b64"][0]["root_b64"])
    for case in log["roots_b64"]:
        size = case["size"]
        assert root_hash(hashes[:size]) == _b64(case["root_b64"])
        if size:
            appender.extend(hashes[size - 1 : size])
        assert appender.size == size
        assert appender.root() == _b64(case["root_b64"])


def _probe_error(fn, *args) -> bool:
    try:
        fn(*args)
    except ProofError:
        return True
    return False


def test_inclusion_probes() -> None:
    probes = _load_vectors("merkle_probes.json")["inclusion"]
    assert len(probes) > 50
    for name, p in probes.items():
        got = _probe_error(
            verify_inclusion,
            _b64(p["leafHash"]),
            p["leafIdx"],
            p["treeSize"],
            [_b64(x) for x in p["proof"] or []],
            _b64(p["root"]),
        )
        assert got == p["wantErr"], name


def test_consistency_probes() -> None:
    probes = _load_vectors("merkle_probes.json")["consistency"]
    assert len(probes) > 50
    for name, p in probes.items():
        got = _probe_error(
            verify_consistency,
            p["size1"],
            p["size2"],
            _b64(p["root1"]),
            _b64(p["root2"]),
            [_b64(x) for x in p["proof"] or []],
        )
        assert got == p["wantErr"], name


# --- Against the reference, every size up to 64 and random sizes up to 300 -------------------


def test_every_proof_matches_the_reference_up_to_size_64() -> None:
    hashes = _leaves(7, 64)
    ref = Reference(hashes)
    for n in range(1, 65):
        nodes = _complete_nodes(ref, n)
        root = ref.mth(0, n)
        assert root_hash(hashes[:n]) == root
        assert root_from_nodes(n, lambda lv, i, nodes=nodes: nodes[(lv, i)]) == root
        for m in range(n):
            want = ref.path(m, 0, n)
            assert inclusion_proof(hashes[:n], m) == want
            assert inclusion_proof_size(m, n) == len(want)
            verify_inclusion(hashes[m], m, n, want, root)
        for m in range(1, n + 1):
            want = ref.proof(m, n)
            assert consistency_proof(hashes[:n], m) == want
            if m < n:
                assert consistency_proof_size(m, n) == len(want)
            verify_consistency(m, n, ref.mth(0, m), root, want)


def test_larger_sizes_around_powers_of_two_match_the_reference() -> None:
    hashes = _leaves(11, 300)
    ref = Reference(hashes)
    stored = {(lv, i): h for lv, i, h in CompactRange().append(hashes)}
    assert stored == _complete_nodes(ref, 300)

    def get_node(level: int, index: int) -> bytes:
        return stored[(level, index)]

    for n in (127, 128, 129, 255, 256, 257, 300):
        for m in range(n):
            want = ref.path(m, 0, n)
            assert inclusion_proof(hashes[:n], m) == want
            assert inclusion_proof_from_nodes(m, n, get_node) == want
        for m in range(1, n + 1):
            want = ref.proof(m, n)
            assert consistency_proof_from_nodes(m, n, get_node) == want
            verify_consistency(m, n, ref.mth(0, m), ref.mth(0, n), want)


heavy = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tree_and_index(draw):
    n = draw(st.integers(min_value=1, max_value=300))
    return draw(st.integers(min_value=0, max_value=2**32)), n, draw(st.integers(0, n - 1))


@st.composite
def tree_and_old_size(draw):
    n = draw(st.integers(min_value=1, max_value=300))
    return draw(st.integers(min_value=0, max_value=2**32)), n, draw(st.integers(1, n))


@heavy
@given(tree_and_index(), st.data())
def test_inclusion_matches_reference_and_rejects_tampering(case, data) -> None:
    seed, n, m = case
    hashes = _leaves(seed, n)
    ref = Reference(hashes)
    root = ref.mth(0, n)
    assert root_hash(hashes) == root
    proof = inclusion_proof(hashes, m)
    assert proof == ref.path(m, 0, n)
    verify_inclusion(hashes[m], m, n, proof, root)

    # Any single flipped bit in the leaf, the root or any proof hash is caught.
    position = data.draw(st.integers(0, 31))
    with pytest.raises(ProofError):
        verify_inclusion(_flip(hashes[m], position), m, n, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[m], m, n, proof, _flip(root, position))
    for k in range(len(proof)):
        bad = list(proof)
        bad[k] = _flip(bad[k], position)
        with pytest.raises(ProofError):
            verify_inclusion(hashes[m], m, n, bad, root)
    # Dropping or adding a hash is caught.
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(hashes[m], m, n, proof[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[m], m, n, [*proof, root], root)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[m], m, n, [root, *proof], root)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[m], n, n, proof, root)

    # Another index (with its own leaf) accepts this proof only if it is that index's real proof.
    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda i: i != m))
        with pytest.raises(ProofError):
            verify_inclusion(hashes[other], other, n, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(hashes[m], other, n, proof, root)

    # Another size, with that size's true root, accepts the proof only if it is the same path
    # there (RFC 9162 proofs do not bind the size, e.g. leaf 0 of sizes 3 and 4).
    longer = _leaves(seed, 301)
    longer[:n] = hashes
    longer_ref = Reference(longer)
    size = data.draw(st.integers(m + 1, 301).filter(lambda s: s != n))
    size_root = longer_ref.mth(0, size)
    accepted = not _probe_error(verify_inclusion, hashes[m], m, size, proof, size_root)
    assert accepted == (longer_ref.path(m, 0, size) == proof)


@heavy
@given(tree_and_old_size(), st.data())
def test_consistency_matches_reference_and_rejects_tampering(case, data) -> None:
    seed, n, m = case
    hashes = _leaves(seed, n)
    ref = Reference(hashes)
    old_root, new_root = ref.mth(0, m), ref.mth(0, n)
    proof = consistency_proof(hashes, m)
    assert proof == ref.proof(m, n)
    verify_consistency(m, n, old_root, new_root, proof)

    position = data.draw(st.integers(0, 31))
    with pytest.raises(ProofError):
        verify_consistency(m, n, _flip(old_root, position), new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, _flip(new_root, position), proof)
    for k in range(len(proof)):
        bad = list(proof)
        bad[k] = _flip(bad[k], position)
        with pytest.raises(ProofError):
            verify_consistency(m, n, old_root, new_root, bad)
    if proof:
        with pytest.raises(ProofError):
            verify_consistency(m, n, old_root, new_root, proof[:-1])
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, new_root, [*proof, new_root])
    if m < n:
        with pytest.raises(ProofError):
            verify_consistency(n, m, new_root, old_root, proof)  # swapped sizes
    with pytest.raises(ProofError):
        verify_consistency(0, n, EMPTY_ROOT, new_root, proof)

    # Other old sizes, with their true roots, accept the proof only if it is their real proof.
    if n > 1:
        other = data.draw(st.integers(1, n).filter(lambda s: s != m))
        other_root = ref.mth(0, other)
        accepted = not _probe_error(verify_consistency, other, n, other_root, new_root, proof)
        assert accepted == (ref.proof(other, n) == proof)
        with pytest.raises(ProofError):
            verify_consistency(other, n, old_root, new_root, proof)


def test_verifiers_reject_bad_arguments() -> None:
    hashes = _leaves(1, 5)
    root = root_hash(hashes)
    proof = inclusion_proof(hashes, 2)
    for bad_index in (-1, 5, 6, True, 2.0):
        with pytest.raises(ProofError):
            verify_inclusion(hashes[2], bad_index, 5, proof, root)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(hashes[2][:31], 2, 5, proof, root)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(hashes[2], 2, 5, [*proof[:-1], proof[-1] + b"\x00"], root)
    with pytest.raises(ProofError, match="must have 3 hashes, got 2"):
        verify_inclusion(hashes[2], 2, 5, proof[:2], root)
    with pytest.raises(ProofError, match="larger than new size"):
        verify_consistency(5, 4, root, root, [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(5, 5, root, root, [root])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(5, 5, root, hashes[0], [])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ValueError):
        consistency_proof(hashes, 0)
    with pytest.raises(ValueError):
        consistency_proof(hashes, 6)
    with pytest.raises(ValueError):
        inclusion_proof(hashes, -1)
    assert issubclass(ProofError, ValueError)


# --- Complete-subtree functions and the appender ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32),
    st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=8),
)
def test_compact_range_emits_every_complete_node_and_matches_roots(seed, batches) -> None:
    total = sum(batches)
    hashes = _leaves(seed, total)
    ref = Reference(hashes)
    appender = CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    done = 0
    for count in batches:
        # A fresh appender loaded from stored nodes must behave exactly like the live one.
        reloaded = CompactRange.from_nodes(done, lambda lv, i: stored[(lv, i)])
        assert reloaded.border() == appender.border()
        new_nodes = appender.append(hashes[done : done + count])
        assert reloaded.append(hashes[done : done + count]) == new_nodes
        keys = [(lv, i) for lv, i, _ in new_nodes]
        assert len(set(keys)) == len(keys)
        assert not set(keys) & set(stored), "a complete node was emitted twice"
        stored.update({(lv, i): h for lv, i, h in new_nodes})
        done += count
        assert appender.size == done
        assert appender.root() == reloaded.root() == ref.mth(0, done) == root_hash(hashes[:done])
        assert stored == _complete_nodes(ref, done)
        assert [(lv, i) for lv, i, _ in appender.border()] == subtree_ranges_for_root(done)


@given(st.integers(0, 2**32), st.lists(st.integers(min_value=1, max_value=90), min_size=1,
                                        max_size=6), st.integers(0, 9))
def test_compact_range_from_a_min_level_emits_exactly_the_nodes_at_and_above_it(
        seed, batches, min_level) -> None:
    hashes = _leaves(seed, sum(batches))
    everything, above = CompactRange(), CompactRange()
    done = 0
    for count in batches:
        batch = hashes[done : done + count]
        assert above.append(batch, min_level) == [
            node for node in everything.append(batch) if node[0] >= min_level]
        done += count
    assert above.border() == everything.border()


@given(st.integers(0, 2**32), st.integers(0, 8), st.integers(0, 5))
def test_complete_nodes_equal_the_naive_subtree_hashes(seed, level, runs) -> None:
    hashes = _leaves(seed, runs << level)
    ref = Reference(hashes)
    width = 1 << level
    assert complete_nodes(hashes, level) == [ref.mth(i * width, (i + 1) * width)
                                             for i in range(runs)]
    if level:
        with pytest.raises(ValueError, match="whole runs"):
            complete_nodes([*hashes, leaf_hash(b"")], level)


@heavy
@given(st.integers(0, 2**32), st.integers(1, 300), st.data())
def test_proofs_from_nodes_equal_leaf_based_proofs(seed, n, data) -> None:
    hashes = _leaves(seed, n)
    stored = {(lv, i): h for lv, i, h in CompactRange().append(hashes)}
    reads: list[tuple[int, int]] = []

    def get_node(level: int, index: int) -> bytes:
        reads.append((level, index))
        return stored[(level, index)]

    size = data.draw(st.integers(1, n))
    assert root_from_nodes(size, get_node) == root_hash(hashes[:size])
    assert reads == subtree_ranges_for_root(size)

    index = data.draw(st.integers(0, size - 1))
    reads.clear()
    want = inclusion_proof(hashes[:size], index)
    assert inclusion_proof_from_nodes(index, size, get_node) == want
    assert reads == inclusion_proof_nodes(index, size)
    assert len(reads) == len(set(reads))

    old = data.draw(st.integers(1, size))
    reads.clear()
    want = consistency_proof(hashes[:size], old)
    assert consistency_proof_from_nodes(old, size, get_node) == want
    assert reads == consistency_proof_nodes(old, size)
    assert len(reads) == len(set(reads))


def test_node_reads_stay_logarithmic_in_a_huge_tree() -> None:
    # No hashes needed: a tree of 10 million leaves has proofs that read only a few dozen nodes.
    size = 10_000_000
    for index in (0, 1, 4_999_999, size - 2, size - 1):
        nodes = inclusion_proof_nodes(index, size)
        assert len(nodes) <= 2 * size.bit_length()
        assert all((i + 1) << lv <= size for lv, i in nodes), "only complete subtrees are read"
    for old in (1, 3, 1_000_000, size - 1):
        nodes = consistency_proof_nodes(old, size)
        assert len(nodes) <= 3 * size.bit_length()
        assert all((i + 1) << lv <= size for lv, i in nodes)
    assert len(subtree_ranges_for_root(size)) == size.bit_count()


def _chunked_ranges(hashes: list[bytes], chunk: int):
    """Fold ``hashes`` as separate workers would: one local compact range per aligned chunk.

    Yields (end, global range of [0, chunk start), local tiles of [chunk start, end)) for every
    end inside every chunk.
    """
    done = CompactRange()
    for start in range(0, len(hashes), chunk):
        local = CompactRange()
        for end in range(start + 1, min(start + chunk, len(hashes)) + 1):
            local.extend([hashes[end - 1]])
            yield end, done, [(lv, h) for lv, _i, h in local.border()]
        for lv, _i, h in local.border():
            done.append_subtree(lv, h)


@heavy
@given(st.integers(0, 2**32), st.integers(1, 200), st.integers(0, 5))
def test_aligned_chunks_folded_apart_combine_into_the_reference_tree(seed, n, chunk_bits) -> None:
    hashes = _leaves(seed, n)
    ref = Reference(hashes)
    for end, done, tiles in _chunked_ranges(hashes, 1 << chunk_bits):
        combined = done.copy()
        for level, h in tiles:
            combined.append_subtree(level, h)
        assert combined.size == end
        assert combined.root() == ref.mth(0, end)
        nodes = _complete_nodes(ref, end)
        assert combined.border() == [(lv, i, nodes[(lv, i)])
                                     for lv, i in subtree_ranges_for_root(end)]
        # The copy is independent: the range of finished chunks is left as it was.
        assert done.size == end - (end - 1) % (1 << chunk_bits) - 1
    # And a combined range goes on growing like one built leaf by leaf.
    whole = CompactRange()
    whole.append_subtree(0, hashes[0])
    whole.extend(hashes[1:])
    assert whole.root() == ref.mth(0, n)


def test_append_subtree_needs_an_aligned_size() -> None:
    appender = CompactRange()
    appender.extend(_leaves(1, 6))
    with pytest.raises(ValueError, match="multiple"):
        appender.append_subtree(2, EMPTY_ROOT)  # 6 is not a multiple of 4
    with pytest.raises(ValueError):
        appender.append_subtree(1, b"short")
    assert appender.size == 6
    appender.append_subtree(1, EMPTY_ROOT)  # 6 is a multiple of 2
    assert appender.size == 8
    assert [lv for lv, _i, _h in appender.border()] == [3]


def test_compact_range_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(ValueError):
        CompactRange(1, [b"short"])
    appender = CompactRange()
    with pytest.raises(ValueError):
        appender.append([b"short"])
    assert appender.size == 0
    assert appender.append([]) == []
    assert appender.root() == EMPTY_ROOT


def test_module_imports_only_the_standard_library() -> None:
    source = Path(merkle.__file__).read_text(encoding="utf-8")
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {"__future__", "hashlib", "collections"}
