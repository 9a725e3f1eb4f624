"""`canhgac serve` with several processes: they share the work, stop together, die together."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from tests.test_reliability_support import LiveServer, cli_env, init_data_dir, make_event, run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="secondaries are found through /proc")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _stored_events(db_url: str | None, data_dir: Path) -> int:
    from service.audit.models import AuditEntry

    engine = create_engine(db_url or f"sqlite:///{data_dir / 'canhgac.db'}")
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(AuditEntry)
                               .where(AuditEntry.kind == "event"))
    finally:
        engine.dispose()


@pytest.fixture
def served(tmp_path, db_url):
    data_dir = tmp_path / "data"
    env = cli_env(None if db_url.startswith("sqlite") else db_url)
    token = init_data_dir(data_dir, env)
    server = LiveServer(data_dir, env, processes=2)
    server.start()
    yield server, token, data_dir, (None if db_url.startswith("sqlite") else db_url)
    if server.is_running():
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)


def test_two_processes_share_the_requests_and_lose_none(served):
    server, token, data_dir, db_url = served
    [secondary] = server.secondary_pids()
    pids = (server.process.pid, secondary)
    before = [_cpu_seconds(pid) for pid in pids]
    rng = random.Random(7)
    batches = [[make_event(rng) for _ in range(25)] for _ in range(96)]
    statuses: list[int] = []

    def client(mine):
        for batch in mine:
            statuses.append(server.post_events(token, batch)[0])  # a connection per batch

    threads = [threading.Thread(target=client, args=(batches[k::8],)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(batches)
    assert _stored_events(db_url, data_dir) == 25 * len(batches)
    # The kernel spread the 96 connections over both processes: each did a real share of the
    # work (one process taking nearly all of them is what an inherited socket did).
    used = [_cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
    assert min(used) > 0.15 * sum(used), used


def test_a_killed_secondary_is_started_again(served):
    server, token, _data_dir, _db_url = served
    [secondary] = server.secondary_pids()
    os.kill(secondary, signal.SIGKILL)
    assert _wait(lambda: server.secondary_pids() not in ([], [secondary]), 30)
    assert server.post_events(token, [make_event(random.Random(1))])[0] == 200
    assert "secondary_exited" in server.log.read_text(errors="replace")


def test_killing_the_primary_takes_its_secondaries_with_it(served):
    server, token, data_dir, db_url = served
    [secondary] = server.secondary_pids()
    server.kill()  # SIGKILL: no clean shutdown, no chance to stop the others
    assert _wait(lambda: not _is_alive(secondary), 10), "a secondary outlived its primary"
    server.start()  # the same port at once
    assert server.post_events(token, [make_event(random.Random(2))])[0] == 200
    assert _stored_events(db_url, data_dir) == 1


def test_sigterm_stops_every_process_cleanly(served):
    server, _token, _data_dir, _db_url = served
    [secondary] = server.secondary_pids()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    assert _wait(lambda: not _is_alive(secondary), 10)


def test_processes_default_to_one_per_core_at_most_two(monkeypatch):
    from service.core import db, workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    assert workers.default_processes() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert workers.default_processes() == 1
    monkeypatch.setattr(db, "fcntl", None)  # Windows: no file gate, one process
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert workers.default_processes() == 1


def test_a_second_serve_on_the_same_port_is_refused_not_joined(served):
    server, token, data_dir, _db_url = served
    # Started by mistake on the port already served: it must stop, not share the port.
    second = run_cli(["serve", "--data-dir", str(data_dir), "--port", str(server.port),
                      "--processes", "2"], server.env, timeout=60)
    assert second.returncode != 0
    assert "Address already in use" in second.stderr
    assert server.post_events(token, [make_event(random.Random(3))])[0] == 200
