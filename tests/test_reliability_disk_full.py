"""A full disk under the server's SQLite data directory: clear 5xx answers, no corruption.

The data directory lives on a 2 MB tmpfs mounted for the test (this needs root; the test is
skipped with the reason when mounting is not permitted). Batches go in until the disk is full;
the server must answer 5xx with a JSON error, stay up, and lose nothing it acknowledged. The
database must pass ``PRAGMA integrity_check`` and ``canhgac verify`` while full, and after the
disk grows the same server process takes events again.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import time

import pytest

from tests.test_reliability_support import (
    Ledger,
    LiveServer,
    assert_exactly_once,
    cli_env,
    init_data_dir,
    make_event,
    resend,
    send_and_record,
    verify,
)


def _mount_tmpfs(path, size: str) -> str | None:
    """Mount a tmpfs of the given size; return why it failed, or None."""
    if shutil.which("mount") is None:
        return "no mount command"
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                                 str(path)], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return str(exc)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def _unmount(path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.mark.heavy
@pytest.mark.timeout(180)
def test_full_disk_gives_clear_errors_and_no_corruption(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    problem = _mount_tmpfs(disk, "2m")
    if problem:
        pytest.skip(f"cannot mount a small tmpfs for the data directory (needs root): {problem}")
    server = None
    try:
        data_dir = disk / "data"
        env = cli_env(None)  # SQLite under the data directory, on the small disk
        token = init_data_dir(data_dir, env)
        server = LiveServer(data_dir, env, log_dir=tmp_path)
        server.start()
        pid = server.process.pid
        rng = random.Random(5)
        ledger = Ledger()
        kept: dict[int, list[dict]] = {}
        refusals: list[tuple[int, dict]] = []
        deadline = time.monotonic() + 60
        while len(refusals) < 3 and time.monotonic() < deadline:
            events = [make_event(rng, purpose="x" * 200) for _ in range(200)]
            number = ledger.new_batch(events)
            kept[number] = events
            status = send_and_record(server, token, ledger, number, events)
            assert status is not None, "the server dropped the connection"
            if status != 200:
                refusals.append(server.post_events(token, events))
        assert refusals, "the 2 MB disk never filled up"
        assert ledger.acknowledged, "nothing fitted before the disk was full"
        for status, answer in refusals:
            assert 500 <= status < 600, (status, answer)
            assert isinstance(answer, dict) and answer.get("error"), answer
        assert server.is_running() and server.process.pid == pid
        status, _ = server.request("GET", "/api/v1/openapi.json")
        assert status == 200  # still serving while the disk is full

        database = data_dir / "canhgac.db"
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        full = verify(data_dir, env)
        assert full.returncode == 0, full.stderr[-2000:]
        assert_exactly_once(ledger, f"sqlite:///{database}")

        # More room: the same process takes events again; the refused batches go in once.
        grown = subprocess.run(["mount", "-o", "remount,size=32m", str(disk)],
                               capture_output=True, text=True, timeout=30)
        assert grown.returncode == 0, grown.stderr
        resend(server, token, ledger, kept, ledger.unacknowledged())
        fresh = [make_event(rng) for _ in range(100)]
        number = ledger.new_batch(fresh)
        status, answer = server.post_events(token, fresh)
        assert (status, answer) == (200, {"stored": 100, "duplicates": 0})
        ledger.acknowledged.add(number)
        assert server.process.pid == pid
        server.kill()
        with sqlite3.connect(database) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert assert_exactly_once(ledger, f"sqlite:///{database}") == len(ledger.sent_ids())
        after = verify(data_dir, env)
        assert after.returncode == 0, after.stderr[-2000:]
    finally:
        if server is not None:
            server.kill()
        _unmount(disk)
