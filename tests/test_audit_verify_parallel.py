"""verify's parallel fast pass gives exactly what one process gives, and fails loudly (both databases).

Chunks are made tiny (a few entries) so that a 37-entry trail is split between this process and
worker processes, with checkpoints inside chunks and on their boundaries.
"""

from __future__ import annotations

import ast
import itertools
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from service.audit import log, verify
from service.audit.keys import load_verifier_key
from tests.trail_support import signed_trail

SIZE = 37
CHECKPOINTS = (10, 25)
THREADS = ("verify-reader", "verify-fold", "verify-worker")


@pytest.fixture
def trail(app, session, runner):
    """A trail of SIZE entries signed at each size of CHECKPOINTS; returns the first note."""
    return signed_trail(session, runner, CHECKPOINTS, SIZE)


@pytest.fixture
def pools(monkeypatch):
    """Split trails into chunks of 8 on any machine; return every worker pool started."""
    monkeypatch.setattr(verify, "PARALLEL_CHUNK", 8)
    monkeypatch.setattr(verify, "PARALLEL_MIN_CHUNKS", {})  # two chunks, the least there is
    monkeypatch.setattr(verify, "_usable_cpus", lambda: 2)
    started: list[verify._Workers] = []
    real = verify._start_workers

    def start(conn, size):
        workers = real(conn, size)
        started.append(workers)
        return workers

    monkeypatch.setattr(verify, "_start_workers", start)
    return started


def _keys(app):
    settings = app.config["SETTINGS"]
    return [load_verifier_key(settings.keys_dir)], settings.audit_origin


def _fast(app, session, note, *, parallel: bool, batch: int):
    """Run the fast pass alone; return (root or "mismatch", proven sizes and borders)."""
    keys, origin = _keys(app)
    conn = session.connection()
    size = log.tree_size(session)
    targets, _count, _external = verify._collect_targets(conn, keys, origin, [note], size)
    proven: list = []
    workers = verify._start_workers(conn, size) if parallel else None
    assert (workers is not None) == parallel
    try:
        outcome = verify._fast_pass(conn, size, targets, None, batch, proven, workers)
    except verify._Mismatch:
        outcome = "mismatch"
    finally:
        if workers is not None:
            workers.close()
    session.rollback()
    return outcome, [(n, tree.border()) for n, tree in proven]


def _verify(app, session, note):
    keys, origin = _keys(app)
    try:
        return verify.verify_log(session, keys, origin=origin, external_notes=[note])
    finally:
        session.rollback()  # on SQLite the session holds the write lock (BEGIN IMMEDIATE)


def _set_body(session, seq: int, body: str) -> None:
    session.execute(text("UPDATE audit_entry SET body = :b WHERE seq = :s"), {"b": body, "s": seq})
    session.commit()


def _assert_all_ended(started) -> None:
    assert started and all(w is not None for w in started)
    for workers in started:
        assert workers._procs, "no worker process was started"
        assert all(proc.returncode is not None for proc in workers._procs)
    assert not [t for t in threading.enumerate() if t.name in THREADS]


@pytest.mark.parametrize("chunk", [1, 2, 4, 8, 16])
def test_an_untouched_trail_gives_the_same_root_and_proofs(app, session, trail, pools,
                                                           monkeypatch, chunk):
    monkeypatch.setattr(verify, "PARALLEL_CHUNK", chunk)  # 1, 2: checkpoints on chunk boundaries
    one = _fast(app, session, trail, parallel=False, batch=3)
    many = _fast(app, session, trail, parallel=True, batch=3)
    assert one == many
    assert one[0] == log.root_at(session, SIZE)
    assert [n for n, _border in many[1]] == list(CHECKPOINTS)
    session.rollback()
    _assert_all_ended(pools)


def test_verify_log_is_proved_by_the_fast_pass_with_workers(app, session, trail, pools, monkeypatch):
    def thorough(*args, **kwargs):
        raise AssertionError("the fast pass should have proved this trail")

    monkeypatch.setattr(verify, "_thorough_pass", thorough)
    seen: list[int] = []
    keys, origin = _keys(app)
    report = verify.verify_log(session, keys, origin=origin, external_notes=[trail],
                               progress=seen.append)
    session.rollback()
    assert report.size == SIZE and report.root == log.root_at(session, SIZE)
    assert seen == sorted(seen) and seen[-1] == SIZE and set(CHECKPOINTS) <= set(seen)
    session.rollback()
    _assert_all_ended(pools)


@pytest.mark.parametrize("seq", [0, 7, 8, 9, 10, 24, 25, 30, SIZE - 1])
def test_a_change_anywhere_stops_both_passes_at_the_same_proven_point(app, session, trail, pools,
                                                                      seq):
    original = session.execute(text("SELECT body FROM audit_entry WHERE seq = :s"),
                               {"s": seq}).scalar()
    session.commit()
    # A changed byte, then a raw newline (one piece too many when a range is split).
    for altered in (original.replace('"i":', '"j":'), original.replace(',"kind"', ',\n"kind"')):
        _set_body(session, seq, altered)
        one = _fast(app, session, trail, parallel=False, batch=3)
        many = _fast(app, session, trail, parallel=True, batch=3)
        assert one == many
        assert many[0] == "mismatch" or seq >= 25  # past the last target: the stored root decides
        with pytest.raises(verify.VerifyError) as caught:
            _verify(app, session, trail)
        assert caught.value.seq == seq, str(caught.value)
        _set_body(session, seq, original)
    assert _verify(app, session, trail).size == SIZE
    _assert_all_ended(pools)


def _slow_here(monkeypatch, seconds: float) -> None:
    """Slow this process's share, so that workers surely take chunks before it is done."""
    real = verify.split_range

    def slow(*args):
        time.sleep(seconds)
        return real(*args)

    monkeypatch.setattr(verify, "split_range", slow)


def _setup_with(monkeypatch, **changes) -> None:
    real = verify._worker_setup
    monkeypatch.setattr(verify, "_worker_setup",
                        lambda conn, size: {**real(conn, size), **changes})


def test_a_worker_that_cannot_connect_is_a_clear_error(app, session, trail, pools, monkeypatch,
                                                       runner, tmp_path):
    if session.bind.dialect.name == "sqlite":
        _setup_with(monkeypatch, dsn=str(tmp_path / "no-such.db"))
    else:
        _setup_with(monkeypatch, dsn="postgresql://postgres@127.0.0.1:5432/no_such_database")
    _slow_here(monkeypatch, 0.5)
    with pytest.raises(verify.VerifyWorkerError, match="failed to start") as caught:
        _verify(app, session, trail)
    assert "unable to open" in str(caught.value) or "no_such_database" in str(caught.value)
    _assert_all_ended(pools)
    result = runner.invoke(["verify"])
    assert result.exit_code == 1 and "could not verify" in result.output, result.output
    assert "INVALID" not in result.output  # a broken verifier is not a tampered trail


def test_a_database_error_in_a_worker_names_its_entries(app, session, trail, pools, monkeypatch):
    p = log._placeholder(session.connection())
    session.rollback()
    _setup_with(monkeypatch, sql=f"SELECT count(*), no_such_column FROM audit_entry "  # noqa: S608
                                 f"WHERE seq >= {p} AND seq < {p}")
    _slow_here(monkeypatch, 0.5)
    with pytest.raises(verify.VerifyWorkerError, match=r"failed on entries \d+\.\.\d+: ") as caught:
        _verify(app, session, trail)
    assert "no_such_column" in str(caught.value)
    _assert_all_ended(pools)


def test_a_worker_that_dies_is_an_error_not_a_hang(app, session, trail, pools, monkeypatch,
                                                   tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import marshal, os, sys\n"
                      "marshal.load(sys.stdin.buffer)\n"
                      "marshal.dump({'ready': True}, sys.stdout.buffer); sys.stdout.flush()\n"
                      "marshal.load(sys.stdin.buffer)\n"
                      "sys.stderr.write('Segmentation fault, say\\n'); os._exit(3)\n")
    monkeypatch.setattr(verify, "_WORKER_SCRIPT", script)
    _slow_here(monkeypatch, 0.5)
    with pytest.raises(verify.VerifyWorkerError, match=r"exited with status 3 \(Segmentation"):
        _verify(app, session, trail)
    _assert_all_ended(pools)


def test_one_process_when_workers_would_not_pay_or_cannot_see(session, trail, monkeypatch):
    conn = session.connection()
    name = conn.dialect.name
    monkeypatch.setattr(verify, "PARALLEL_CHUNK", 8)
    monkeypatch.setattr(verify, "_usable_cpus", lambda: 2)
    assert verify._worker_setup(conn, SIZE) is None  # under the measured minimum
    assert verify._worker_setup(conn, 8 * verify.PARALLEL_MIN_CHUNKS[name]) is not None
    monkeypatch.setattr(verify, "PARALLEL_MIN_CHUNKS", {name: 1})
    assert verify._worker_setup(conn, SIZE) is not None
    assert verify._worker_setup(conn, 15) is None  # under two chunks: never
    monkeypatch.setattr(verify, "_usable_cpus", lambda: 1)
    assert verify._worker_setup(conn, SIZE) is None  # one core: never
    monkeypatch.setattr(verify, "_usable_cpus", lambda: 2)
    if conn.dialect.name == "postgresql":
        # This transaction's own writes are invisible to the workers' connections.
        conn.exec_driver_sql("UPDATE audit_head SET size = size")
        assert verify._worker_setup(conn, SIZE) is None
    session.rollback()
    memory = create_engine("sqlite://")
    with memory.connect() as mem:
        assert verify._worker_setup(mem, SIZE) is None
    memory.dispose()


def test_chunk_jobs_cover_the_trail_and_cut_at_every_target() -> None:
    jobs = verify._chunk_jobs(37, [0, 10, 25, 37, 16], batch=3, chunk=8)
    assert [job["chunk"] for job in jobs] == list(range(5))
    ranges = [r for job in jobs for r in job["ranges"]]
    assert ranges[0][0] == 0 and ranges[-1][1] == 37
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    ends = {end for _start, end in ranges}
    assert {10, 16, 25, 8, 24, 3, 6, 9} <= ends
    assert [job["report"] for job in jobs] == [[8], [10, 16], [24], [25, 32], [37]]
    for i, job in enumerate(jobs):
        assert all(i * 8 <= start < end <= (i + 1) * 8 for start, end in job["ranges"])


def test_the_worker_script_imports_neither_the_service_nor_flask() -> None:
    source = Path(verify._WORKER_SCRIPT).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "marshal", "os", "sys", "sqlite3", "psycopg", "merkle"}
    assert imported - {"psycopg", "merkle"} <= set(sys.stdlib_module_names) | {"__future__"}


def test_workers_end_when_the_signatures_fail_before_any_chunk(app, session, trail, pools):
    keys, origin = _keys(app)
    forged = trail.replace("\n\n", "\nforged line\n\n", 1)
    with pytest.raises(verify.VerifyError, match="signature does not verify"):
        try:
            verify.verify_log(session, keys, origin=origin, external_notes=[forged])
        finally:
            session.rollback()
    _assert_all_ended(pools)
    assert all(proc.returncode == 0 for workers in pools for proc in workers._procs)
