"""PostgreSQL restarted under ingest load: 5xx during the restart, then ingest works again.

The real server keeps running while `pg_ctlcluster … restart` stops and starts this machine's
PostgreSQL (127.0.0.1:5432). Requests caught by the restart may get a 5xx JSON error; once the
database is back, the same server process takes every batch again (stale pooled connections
are replaced: ``pool_pre_ping``), retried batches are stored once, nothing acknowledged is
lost, and `canhgac verify` passes. PostgreSQL is started again at the end even on failure.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.test_reliability_support import (
    Ledger,
    LiveServer,
    assert_exactly_once,
    cli_env,
    init_data_dir,
    make_event,
    resend,
    verify,
)

CLIENTS = 2
BATCH = 50


def _cluster_version() -> str | None:
    root = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not root.is_dir():
        return None
    versions = sorted(p.name for p in root.iterdir() if (p / "main").is_dir())
    return versions[0] if versions else None


def _pg_ready() -> bool:
    if shutil.which("pg_isready") is None:
        import psycopg

        try:
            psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                            connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"],
                          timeout=10).returncode == 0


def _wait_ready(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pg_ready():
            return True
        time.sleep(0.2)
    return False


def _cluster(version: str, action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.heavy
@pytest.mark.timeout(240)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_restart_under_load(tmp_path, db_url):
    version = _cluster_version()
    if version is None:
        pytest.skip("pg_ctlcluster or /etc/postgresql/<version>/main is absent")
    data_dir = tmp_path / "data"
    env = cli_env(db_url)
    token = init_data_dir(data_dir, env)
    server = LiveServer(data_dir, env)
    ledger = Ledger()
    kept: dict[int, list[dict]] = {}
    outcomes: list[tuple[float, int | None, dict]] = []  # (request start, status, answer)
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            events = [make_event(rng) for _ in range(BATCH)]
            number = ledger.new_batch(events)
            with ledger.lock:
                kept[number] = events
            started = time.monotonic()
            try:
                status, answer = server.post_events(token, events, timeout=60)
            except OSError:
                status, answer = None, {}
            with ledger.lock:
                outcomes.append((started, status, answer))
                if status == 200:
                    ledger.acknowledged.add(number)
            if status != 200:
                time.sleep(0.05)

    server.start()
    pid = server.process.pid
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    restarted = False
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(ledger.acknowledged) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ledger.acknowledged, "no batch went in before the restart"
        result = _cluster(version, "restart")
        assert result.returncode == 0, result.stderr
        restarted = True
        assert _wait_ready(60), "PostgreSQL did not come back"
        ready_at = time.monotonic()
        with ledger.lock:
            acked_at_ready = len(ledger.acknowledged)
        deadline = time.monotonic() + 30
        while len(ledger.acknowledged) < acked_at_ready + 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
            assert not thread.is_alive()
        assert len(ledger.acknowledged) >= acked_at_ready + 10, "ingest did not resume"
        assert server.is_running() and server.process.pid == pid  # never restarted
        for started, status, answer in outcomes:
            # Clients may see 5xx while the database is away, never a 4xx or a dropped answer.
            assert status is not None, "the server dropped a connection"
            assert status == 200 or (500 <= status < 600 and answer.get("error")), (status, answer)
            if started > ready_at + 1.0:
                assert status == 200, f"a request after the restart failed: {status} {answer}"
        resend(server, token, ledger, kept, ledger.unacknowledged())
    finally:
        stop.set()
        server.kill()
        if not _pg_ready():
            _cluster(version, "start")
            _wait_ready(60)
    assert restarted
    stored = assert_exactly_once(ledger, db_url)
    assert stored == len(ledger.sent_ids())
    result = verify(data_dir, env)
    assert result.returncode == 0, result.stderr[-2000:]
    refused = sum(1 for _, status, _ in outcomes if status != 200)
    print(f"batches: {len(outcomes)}, refused during the restart: {refused}")
