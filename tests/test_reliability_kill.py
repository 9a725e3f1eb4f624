"""kill -9 of the real server during batch ingest, many times: no acknowledged event is lost.

Each round starts `canhgac serve`, lets client threads post batches, kills the server with
SIGKILL at a random moment, and starts it again. Clients retry unacknowledged batches (and a
few acknowledged ones): the server deduplicates by event id, so nothing is stored twice. At the
end every event of every acknowledged batch is in the trail exactly once and `canhgac verify`
exits 0. Runs on SQLite and on PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import pytest
from sqlalchemy.engine import make_url

from tests.test_reliability_support import (
    Ledger,
    LiveServer,
    assert_exactly_once,
    cli_env,
    client_loop,
    init_data_dir,
    resend,
    verify,
)

ROUNDS = 10
CLIENTS = 3
BATCH = 50


@pytest.mark.heavy
@pytest.mark.timeout(180)
def test_sigkill_during_ingest_loses_no_acknowledged_event(tmp_path, db_url):
    rng = random.Random(20260302)
    data_dir = tmp_path / "data"
    env = cli_env(db_url)
    token = init_data_dir(data_dir, env)
    server = LiveServer(data_dir, env)
    ledger = Ledger()
    kept: dict[int, list[dict]] = {}
    kills_mid_flight = 0
    try:
        for round_number in range(ROUNDS):
            server.start()
            # A client that lost its answer sends the batch again; so may a confused one.
            pending = ledger.unacknowledged()
            again = rng.sample(sorted(ledger.acknowledged), min(2, len(ledger.acknowledged)))
            resend(server, token, ledger, kept, pending[:20])
            with ledger.lock:
                before = len(ledger.acknowledged)
            for number in again:
                status, answer = server.post_events(token, kept[number])
                assert (status, answer.get("stored")) == (200, 0), (number, status, answer)
            stop = threading.Event()
            clients = [threading.Thread(target=client_loop, daemon=True,
                                        args=(server, token, ledger, stop,
                                              round_number * 100 + i, BATCH, kept))
                       for i in range(CLIENTS)]
            for client in clients:
                client.start()
            # Kill at a random moment once this round has made progress.
            deadline = time.monotonic() + 30
            while len(ledger.acknowledged) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 1.0))
            server.kill()
            stop.set()
            for client in clients:
                client.join(timeout=30)
                assert not client.is_alive()
            with ledger.lock:
                kills_mid_flight += len(ledger.batches) > len(ledger.acknowledged)
                progressed = len(ledger.acknowledged) > before
            assert progressed, f"round {round_number}: no batch acknowledged before the kill"
        server.start()
        resend(server, token, ledger, kept, ledger.unacknowledged())
    finally:
        server.kill()
    stored = assert_exactly_once(ledger, db_url)
    assert stored == len(ledger.sent_ids())  # every batch was acknowledged in the end
    assert kills_mid_flight >= ROUNDS // 2, "the kills should land while batches are in flight"
    result = verify(data_dir, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HỢP LỆ / VALID" in result.stdout
    if db_url.startswith("sqlite"):
        with sqlite3.connect(make_url(db_url).database) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
