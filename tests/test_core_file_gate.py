"""The writer gate across processes: a flock beside the SQLite file (service/core/db.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from service.core import db

pytestmark = pytest.mark.skipif(db.fcntl is None, reason="no flock on this system")

HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


@contextmanager
def _held_in_another_process(path, seconds: float) -> Iterator[subprocess.Popen]:
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline().strip() == "held"
        try:
            yield holder
        finally:
            holder.kill()


def test_a_writer_waits_for_another_process_then_goes_at_once(tmp_path):
    gate = db._FileGate(tmp_path / "x.db-writer.lock")
    with _held_in_another_process(gate.path, 0.5):
        started = time.monotonic()
        assert gate.acquire(time.monotonic() + 10)
        waited = time.monotonic() - started
        gate.release()
    # Held about 0.5 s after "held" was printed; taken within a few ms of its release.
    assert 0.3 < waited < 2.0


def test_a_writer_gives_up_at_its_deadline(tmp_path):
    gate = db._FileGate(tmp_path / "x.db-writer.lock")
    with _held_in_another_process(gate.path, 5):
        started = time.monotonic()
        assert not gate.acquire(time.monotonic() + 0.2)
        assert time.monotonic() - started < 1.5
    assert gate.acquire(time.monotonic() + 5)  # a killed holder's lock is gone with it
    gate.release()


def test_a_directory_that_takes_no_lock_file_leaves_sqlite_alone_to_decide(tmp_path):
    gate = db._FileGate(tmp_path / "missing" / "x.db-writer.lock")
    assert not gate.acquire(time.monotonic() + 1)
    assert gate._is_unusable


def test_an_engine_on_a_file_takes_the_gate_beside_it_and_memory_none(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
        assert (tmp_path / "gate.db-writer.lock").exists()
    finally:
        engine.dispose()
    assert db._file_gate_of(db.make_engine("sqlite://")) is None
    assert db._file_gate_of(db.make_engine("sqlite:///:memory:")) is None


def test_writers_of_two_engines_on_one_file_follow_each_other_without_busy_errors(tmp_path):
    # Two engines as two processes would have: each its own in-process lock, one file gate.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engines = [db.make_engine(url), db.make_engine(url)]
    try:
        with engines[0].begin() as conn:
            conn.execute(text("CREATE TABLE t (who INTEGER, n INTEGER)"))
        errors: list[BaseException] = []

        def write(index: int) -> None:
            try:
                for n in range(40):
                    with engines[index % 2].begin() as conn:
                        conn.execute(text("INSERT INTO t VALUES (:w, :n)"), {"w": index, "n": n})
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with engines[1].connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM t")) == 6 * 40
    finally:
        for engine in engines:
            engine.dispose()
