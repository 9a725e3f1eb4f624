"""The agent's durable spool: numbering, durability under kill -9, full disk."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from canhgac_agent.spool import Spool, SpoolFullError
from canhgac_common.events import Action, Event, EventObject


def make_event(**overrides) -> Event:
    fields = {
        "id": uuid.uuid4(),
        "occurred_at": datetime.now(UTC),
        "host": "pc-vhxh-01",
        "actor": "lan",
        "action": Action.COPY,
        "object": EventObject(path="/home/lan/DuLieu/ho-ngheo.xlsx", size=10),
        "pii": {"cccd": 3},
    }
    fields.update(overrides)
    return Event(**fields)


def test_append_numbers_events_and_stores_the_number_in_the_body(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3")
    stored = spool.append([make_event(), make_event()])
    assert [e.seq for e in stored] == [1, 2]
    pending = spool.pending(10)
    assert [p.seq for p in pending] == [1, 2]
    body = json.loads(pending[0].body)
    assert body["seq"] == 1 and body["id"] == str(stored[0].id)
    assert Event.model_validate(body) == stored[0]  # the body is a valid schema v1 event
    assert spool.last_seq() == 2 and spool.pending_count() == 2
    spool.close()


def test_sequence_continues_after_delete_and_reopen(tmp_path):
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    spool.append([make_event() for _ in range(3)])
    spool.delete([1, 2, 3])
    assert spool.pending_count() == 0
    spool.close()
    spool = Spool(path)
    assert spool.append([make_event()])[0].seq == 4
    spool.close()


def test_rejected_events_are_kept_counted_and_never_pending(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event() for _ in range(3)])
    spool.reject(2, "400 invalid (field host)")
    assert [p.seq for p in spool.pending(10)] == [1, 3]
    assert spool.rejected_count() == 1
    assert spool.rejected()[0].seq == 2 and "host" in spool.rejected()[0].reason
    spool.delete([1, 2, 3])  # delete never removes a rejected event
    assert spool.rejected_count() == 1
    spool.close()


def test_append_wakes_the_sender(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3")
    assert not spool.wakeup.is_set()
    spool.append([make_event()])
    assert spool.wakeup.is_set()
    spool.close()


def test_meta_values_persist_but_last_seq_is_protected(tmp_path):
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    spool.set_meta("egress_alive_at", "123.5")
    with pytest.raises(ValueError):
        spool.set_meta("last_seq", "0")
    spool.close()
    assert Spool(path).get_meta("egress_alive_at") == "123.5"


WRITER = r"""
import sys, uuid
from datetime import UTC, datetime
from canhgac_agent.spool import Spool
from canhgac_common.events import Event

spool = Spool(sys.argv[1])
while True:
    event = Event(id=uuid.uuid4(), occurred_at=datetime.now(UTC), host="h", actor="a",
                  action="copy")
    stored = spool.append([event])[0]
    print(stored.seq, stored.id, flush=True)
"""


def test_acknowledged_events_survive_sigkill(tmp_path):
    path = tmp_path / "spool.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    acknowledged: dict[int, str] = {}
    try:
        assert writer.stdout is not None
        while len(acknowledged) < 40:
            line = writer.stdout.readline()
            assert line, "writer died"
            seq, event_id = line.split()
            acknowledged[int(seq)] = event_id
    finally:
        writer.send_signal(signal.SIGKILL)
        rest, _ = writer.communicate(timeout=10)
    # Lines still in the pipe were printed after their commit: acknowledged too.
    for line in rest.splitlines():
        if line.strip():
            seq, event_id = line.split()
            acknowledged[int(seq)] = event_id
    assert writer.returncode == -signal.SIGKILL

    spool = Spool(path)
    stored = {p.seq: p.id for p in spool.pending(100_000)}
    for seq, event_id in acknowledged.items():
        assert stored[seq] == event_id
    # Numbers are contiguous from 1 and continue where the killed writer stopped.
    assert sorted(stored) == list(range(1, len(stored) + 1))
    assert spool.last_seq() == max(stored)
    assert spool.append([make_event()])[0].seq == max(stored) + 1
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    spool.close()


def test_full_disk_raises_a_clear_error_and_corrupts_nothing(tmp_path):
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path, max_bytes=96 * 1024)
    written = 0
    with pytest.raises(SpoolFullError, match="spool is full"):
        for _ in range(10_000):
            spool.append([make_event(purpose="x" * 500)])
            written += 1
    assert written > 10
    assert spool.pending_count() == written  # the failed append left nothing behind
    assert spool.last_seq() == written
    spool.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    # With room again (a larger limit), numbering continues without a gap.
    spool = Spool(path, max_bytes=10 * 1024 * 1024)
    assert spool.append([make_event()])[0].seq == written + 1
    spool.close()
