"""The stored trail: appends, roots and proofs from storage, locking across processes, durability."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import event, select, text

from service.audit import log, merkle
from service.audit.canonical import canonical_json
from service.audit.keys import load_verifier_key
from service.audit.models import AuditEntry, MerkleNode
from service.audit.verify import stored_node_count, verify_log
from service.core.db import get_engine
from tests.test_audit_merkle import Reference


def _leaves(session) -> list[bytes]:
    rows = session.execute(select(AuditEntry.leaf_hash).order_by(AuditEntry.seq)).scalars()
    return [bytes(h) for h in rows]


def _pending(n: int, tag: str = "t") -> list[log.PendingEntry]:
    return [log.PendingEntry("event", {"tag": tag, "i": i, "note": "Xã Nhân Lý"},
                             {"actor": f"canbo{i % 3}", "host": "PC-01"}) for i in range(n)]


def _verify(app, session):
    settings = app.config["SETTINGS"]
    return verify_log(session, [load_verifier_key(settings.keys_dir)],
                      origin=settings.audit_origin)


@hsettings(max_examples=12, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=5))
def test_root_from_storage_equals_root_over_all_leaves(session, batches):
    # The log only grows across examples, so every example checks a bigger, different tree.
    before = log.tree_size(session)
    for n in batches:
        rows = log.append_entries(session, _pending(n))
        assert [r.seq for r in rows] == list(range(before, before + n))
        before += n
        session.commit()
    leaves = _leaves(session)
    assert len(leaves) == log.tree_size(session) == before
    for size in {1, len(leaves) // 2 or 1, len(leaves)}:
        assert log.root_at(session, size) == merkle.root_hash(leaves[:size])
    # Storage keeps exactly the complete nodes of level 8 and up.
    count = session.query(MerkleNode).count()
    assert count == stored_node_count(len(leaves))
    assert session.query(MerkleNode).filter(MerkleNode.level < log.MIN_STORED_LEVEL).count() == 0


def test_proofs_from_storage_verify(session):
    for n in (1, 2, 5, 9, 20, 4):
        log.append_entries(session, _pending(n))
    session.commit()
    leaves = _leaves(session)
    size = len(leaves)
    roots = [merkle.root_hash(leaves[:m]) for m in range(size + 1)]
    assert log.root_at(session, 0) == merkle.EMPTY_ROOT
    for tree in (size, 33, 17, 1):
        for index in range(tree):
            proof = log.inclusion_proof(session, index, tree)
            assert proof == merkle.inclusion_proof(leaves[:tree], index)
            merkle.verify_inclusion(leaves[index], index, tree, proof, roots[tree])
        for old in range(1, tree + 1):
            proof = log.consistency_proof(session, old, tree)
            assert proof == merkle.consistency_proof(leaves[:tree], old)
            merkle.verify_consistency(old, tree, roots[old], roots[tree], proof)
    many = log.inclusion_proofs(session, list(range(size)), size)
    assert many == [merkle.inclusion_proof(leaves, i) for i in range(size)]


def _naive_node(reference: Reference, level: int, index: int) -> bytes:
    """The complete node (level, index) by the RFC's recursive definition."""
    return reference.mth(index << level, (index + 1) << level)


def test_nodes_below_level_8_are_rebuilt_from_the_leaves(session):
    # Odd batches, so appends cross the 256-leaf boundaries of stored level-8 nodes midway.
    for n in (3, 250, 1, 300, 7, 512, 200, 60):
        log.append_entries(session, _pending(n))
        session.commit()
    leaves = _leaves(session)
    size = len(leaves)
    assert size == 1333
    ref = Reference(leaves)
    conn = session.connection()
    every = [(level, i) for level in range(size.bit_length()) for i in range(size >> level)]
    found = log.fetch_nodes(conn, every[:400])
    found.update(log.fetch_nodes(conn, every[400:]))
    assert found == {(level, i): _naive_node(ref, level, i) for level, i in every}
    for level in range(size.bit_length()):
        count = size >> level
        assert log.node_range(session, level, 0, count) == [
            _naive_node(ref, level, i) for i in range(count)]
        if level and count > 1:
            assert log.node_range(session, level, 1, count) == [
                _naive_node(ref, level, i) for i in range(1, count)]
    with pytest.raises(LookupError, match="level 3"):
        log.node_range(session, 3, 160, 167)  # (3, 166) would need leaves up to 1335
    with pytest.raises(LookupError, match="missing tree node"):
        log.node_getter(session, size + 8)(3, 166)  # the same node, beyond the stored leaves
    roots = {m: merkle.root_hash(leaves[:m]) for m in (1, 255, 256, 257, 511, 512, 513, 1024,
                                                      1279, 1280, 1332, size)}
    for tree, root in roots.items():
        assert log.root_at(session, tree) == root == ref.mth(0, tree)
        for index in {0, tree // 3, tree // 2, tree - 1, min(255, tree - 1), min(256, tree - 1)}:
            proof = log.inclusion_proof(session, index, tree)
            assert proof == merkle.inclusion_proof(leaves[:tree], index)
            merkle.verify_inclusion(leaves[index], index, tree, proof, root)
        for old, old_root in roots.items():
            if old <= tree:
                proof = log.consistency_proof(session, old, tree)
                assert proof == merkle.consistency_proof(leaves[:tree], old)
                merkle.verify_consistency(old, tree, old_root, root, proof)


def test_a_proof_is_one_query(app, session):
    log.append_entries(session, _pending(1000))
    session.commit()
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):  # not SQLite's BEGIN IMMEDIATE
            statements.append(statement)

    engine = get_engine(app)
    event.listen(engine, "before_cursor_execute", count)
    try:
        log.inclusion_proof(session, 777, 1000)
        proof_queries = len(statements)
        statements.clear()
        log.consistency_proof(session, 300, 999)
        consistency_queries = len(statements)
        statements.clear()
        log.root_at(session, 999)
        root_queries = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (proof_queries, consistency_queries, root_queries) == (1, 1, 1)


def test_entry_is_canonical_json_of_seq_time_kind_body(session):
    occurred = datetime(2026, 3, 2, 1, 2, 3, tzinfo=UTC)
    row = log.record(session, "user.created", {"by": "admin", "user": {"name": "Lê Thị B"}},
                     actor="admin", occurred_at=occurred, incident_id=7)
    session.commit()
    stored = session.get(AuditEntry, row.seq)
    data = stored.body.encode()
    parsed = json.loads(data)
    assert set(parsed) == {"seq", "recorded_at", "kind", "body"}
    assert parsed["seq"] == row.seq and parsed["kind"] == "user.created"
    assert parsed["body"] == {"by": "admin", "user": {"name": "Lê Thị B"}}
    assert canonical_json(parsed) == data
    assert bytes(stored.leaf_hash) == merkle.leaf_hash(data) == row.leaf_hash
    # recorded_at: fixed-width UTC text in the body, the same instant in the column.
    assert parsed["recorded_at"] == log.recorded_at_text(stored.recorded_at)
    assert len(parsed["recorded_at"]) == len("2026-01-01T00:00:00.000000Z")
    assert stored.recorded_at.tzinfo is not None and stored.recorded_at == row.recorded_at
    assert (stored.actor, stored.incident_id, stored.occurred_at) == ("admin", 7, occurred)


def test_record_takes_actor_host_action_from_the_body(session):
    row = log.record(session, "auth.login", {"actor": "an", "host": "PC-7", "action": "login"})
    assert (row.actor, row.host, row.action) == ("an", "PC-7", "login")
    row = log.record(session, "auth.login", {"actor": "an"}, actor="binh")
    assert row.actor == "binh"
    # A long value in the body fits its search column; the body keeps it whole.
    long_action = "cập nhật hồ sơ " * 10
    row = log.record(session, "incident.commented", {"action": long_action})
    session.commit()
    stored = session.get(AuditEntry, row.seq)
    assert stored.action == long_action[:32]
    assert json.loads(stored.body)["body"]["action"] == long_action


@pytest.mark.parametrize("kind", ["", "Event", "event/x", "a" * 49, "x..y", None])
def test_bad_kinds_are_refused(session, kind):
    with pytest.raises(ValueError, match="kind"):
        log.record(session, kind, {})
    assert log.tree_size(session) == 0


def test_unknown_search_fields_are_refused(session):
    with pytest.raises(TypeError, match="unknown search fields"):
        log.record(session, "event", {}, actr="typo")
    with pytest.raises(TypeError, match="unknown search fields"):
        log.append_entries(session, [log.PendingEntry("event", {}, {"user": "x"})])


def test_append_commits_with_the_caller_or_not_at_all(session):
    log.append_entries(session, _pending(300))
    session.commit()
    log.append_entries(session, _pending(300))
    assert log.tree_size(session) == 600  # this transaction sees its own appends
    assert session.query(MerkleNode).count() == 3  # (8, 0), (8, 1), (9, 0)
    session.rollback()
    assert log.tree_size(session) == 300
    assert session.query(AuditEntry).count() == 300
    assert session.query(MerkleNode).count() == 1  # the one stored node of 300 leaves: (8, 0)
    log.append_entries(session, _pending(3))
    session.commit()
    assert log.root_at(session, 303) == merkle.root_hash(_leaves(session))


def test_sqlite_commits_are_durable(app, session):
    if get_engine(app).dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    conn = session.connection()
    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


_WORKER = textwrap.dedent("""
    import os, sys, time
    from sqlalchemy.orm import Session
    from service.audit import log
    from service.core.db import make_engine

    url, worker, total, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    engine = make_engine(url)
    while not os.path.exists(go):
        time.sleep(0.01)
    sizes = [1, 37, 200, 5, 120, 64, 2, 90]
    done = 0
    turn = 0
    with Session(engine) as session:
        while done < total:
            n = min(sizes[turn % len(sizes)], total - done)
            turn += 1
            log.append_entries(session, [
                log.PendingEntry("event", {"worker": worker, "i": done + k}, {"actor": worker})
                for k in range(n)])
            session.commit()
            done += n
    engine.dispose()
""")


@pytest.mark.heavy
def test_four_processes_append_one_consistent_tree(app, session, settings_overrides, tmp_path):
    workers, per_worker = 4, 5000
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, settings_overrides["database_url"],
                          f"w{w}", str(per_worker), str(go)], env=env)
        for w in range(workers)
    ]
    time.sleep(0.5)
    go.touch()  # start together: the first appends also race to create the head row
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    session.rollback()
    total = workers * per_worker
    assert log.tree_size(session) == total
    seqs = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert seqs == list(range(total))  # no gap, no duplicate
    seen = set()
    for seq, body in session.execute(select(AuditEntry.seq, AuditEntry.body)):
        entry = json.loads(body)
        assert entry["seq"] == seq
        seen.add((entry["body"]["worker"], entry["body"]["i"]))
    assert seen == {(f"w{w}", i) for w in range(workers) for i in range(per_worker)}
    assert log.root_at(session, total) == merkle.root_hash(_leaves(session))
    report = _verify(app, session)
    assert report.size == total


def _head_border(session) -> bytes | None:
    return session.connection().exec_driver_sql("SELECT border FROM audit_head WHERE id = 1").scalar()


def _set_head_border(session, blob: bytes | None) -> None:
    session.execute(text("UPDATE audit_head SET border = :b WHERE id = 1"), {"b": blob})


def test_the_head_keeps_the_border_of_the_size_it_counts(session):
    for n in (1, 7, 300, 2, 511):
        log.append_entries(session, _pending(n))
        session.commit()
        leaves = _leaves(session)
        tree = merkle.CompactRange()
        tree.extend(leaves)
        blob = bytes(_head_border(session))
        assert int.from_bytes(blob[:8], "big") == len(leaves)
        assert blob[8:] == b"".join(h for _, _, h in tree.border())


@pytest.mark.parametrize("stale", ["none", "other_size", "short"])
def test_a_border_that_does_not_belong_to_the_size_is_read_from_the_tree(app, session, stale):
    log.append_entries(session, _pending(37))
    session.commit()
    blob = bytes(_head_border(session))
    replacement = {"none": None, "other_size": (36).to_bytes(8, "big") + blob[8:],
                   "short": blob[:-1]}[stale]
    _set_head_border(session, replacement)
    session.commit()
    log.append_entries(session, _pending(20))
    session.commit()
    leaves = _leaves(session)
    assert log.root_at(session, len(leaves)) == merkle.root_hash(leaves)
    assert _verify(app, session).size == len(leaves)


def test_a_forged_border_poisons_only_what_verify_then_refuses(app, session):
    from service.audit.verify import VerifyError

    log.append_entries(session, _pending(300))
    session.commit()
    blob = bytes(_head_border(session))
    forged = blob[:8] + bytes(32) + blob[40:]  # right size, wrong top hash
    _set_head_border(session, forged)
    session.commit()
    log.append_entries(session, _pending(300))  # builds level-8+ nodes on the forged border
    session.commit()
    settings = app.config["SETTINGS"]
    with pytest.raises(VerifyError):
        verify_log(session, [load_verifier_key(settings.keys_dir)], origin=settings.audit_origin,
                   deep=True)


def test_verify_refuses_a_forged_border_before_any_append_builds_on_it(app, session):
    from service.audit.verify import VerifyError

    log.append_entries(session, _pending(300))
    session.commit()
    blob = bytes(_head_border(session))
    forged = blob[:8] + bytes(32) + blob[40:]
    _set_head_border(session, forged)
    session.commit()
    with pytest.raises(VerifyError, match="head row"):
        _verify(app, session)
