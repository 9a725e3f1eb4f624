"""Helpers for the reliability tests: the real `canhgac` commands and server as subprocesses.

Named test_reliability_*.py so it sits with those tests; it defines no tests itself.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, select

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "mat-khau-thu-nghiem-1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(database_url: str | None, **extra: str) -> dict[str, str]:
    """Return the environment every `canhgac` subprocess of these tests runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHGAC_")}
    env.update({
        "CANHGAC_ADMIN_PASSWORD": PASSWORD,
        "CANHGAC_SCHEDULER_ENABLED": "false",
        "CANHGAC_POLICY_RELOAD": "false",
        "CANHGAC_SECRET_KEY": "reliability-secret",
        "CANHGAC_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    if database_url:
        env["CANHGAC_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m service.cli ARGS` and return the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout)


def init_data_dir(data_dir: Path, env: dict[str, str]) -> str:
    """Run `canhgac init` and `canhgac token create`; return the ingest token."""
    init = run_cli(["init", "--data-dir", str(data_dir), "--non-interactive",
                    "--admin-email", "admin@nhanly.example"], env)
    assert init.returncode == 0, init.stderr[-2000:]
    token = run_cli(["token", "create", "--data-dir", str(data_dir), "--source", "do-tin-cay"], env)
    assert token.returncode == 0, token.stderr[-2000:]
    return token.stdout.strip().splitlines()[-1]


def verify(data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `canhgac verify` on a data directory."""
    return run_cli(["verify", "--data-dir", str(data_dir)], env)


class LiveServer:
    """`canhgac serve` as a real subprocess on 127.0.0.1; kill -9 and start again at will."""

    def __init__(self, data_dir: Path, env: dict[str, str], threads: int | None = None,
                 log_dir: Path | None = None, processes: int | None = None) -> None:
        """Remember how to start the server; a port is chosen once and kept across restarts.

        ``processes`` and ``threads`` None are `serve`'s defaults (two processes of two
        threads on a machine of two cores or more).
        """
        self.data_dir = data_dir
        self.env = env
        self.threads = threads
        self.processes = processes
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = (log_dir or data_dir.parent) / f"server-{self.port}.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--data-dir", str(self.data_dir),
                 "--port", str(self.port),
                 *(["--threads", str(self.threads)] if self.threads else []),
                 *(["--processes", str(self.processes)] if self.processes else [])],
                env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: "
                                     f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                status, _ = self.request("GET", "/api/v1/openapi.json", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server did not answer within {timeout}s")

    def secondary_pids(self) -> list[int]:
        """Return the pids of the server's secondary processes (service/core/workers.py)."""
        if self.process is None:
            return []
        pids = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        found = []
        for pid in pids:
            with contextlib.suppress(OSError):  # it exited meanwhile
                if b"service.core.workers" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return sorted(found)

    def is_running(self) -> bool:
        """Return whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill the server with SIGKILL (no clean shutdown) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
        """Send one HTTP request; return (status, body). Connection errors raise OSError."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as exc:  # a half-written answer from a killed server
            raise ConnectionError(str(exc)) from exc
        finally:
            conn.close()

    def post_events(self, token: str, events: list[dict], timeout: float = 30) -> tuple[int, dict]:
        """POST a batch; return (status, JSON answer or {})."""
        status, raw = self.request("POST", "/api/v1/events", json.dumps(events).encode(),
                                   {"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"}, timeout)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {}
        return status, answer


_ACTIONS = ("open", "read", "modify", "view", "print")


def make_event(rng: random.Random, **over) -> dict:
    """Return a valid event with a fresh id (some are copies to removable media)."""
    # One event in fifty copies citizen data to a USB stick: alerts and incidents are written in
    # the same transactions as the events, as in real use, without drowning the run in them.
    action = "copy" if rng.random() < 0.02 else rng.choice(_ACTIONS)
    event = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": "2026-03-02T09:15:00+07:00",
        "host": f"PC-VP-{rng.randint(1, 5):02d}",
        "actor": f"canbo{rng.randint(1, 9)}",
        "action": action,
        "object": {"path": f"C:\\DuLieu\\DanCu\\thon_{rng.randint(1, 20)}.xlsx",
                   "record_count": rng.randint(1, 50)},
    }
    if action == "copy":
        event["destination"] = {"path": f"E:\\USB\\thon_{rng.randint(1, 20)}.xlsx"}
    event.update(over)
    return event


@dataclass
class Ledger:
    """What the clients sent and which batches the server acknowledged (200)."""

    batches: dict[int, list[str]] = field(default_factory=dict)
    acknowledged: set[int] = field(default_factory=set)
    failures: Counter = field(default_factory=Counter)
    bad_answers: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_batch(self, events: list[dict]) -> int:
        """Register a batch before it is sent; return its number."""
        with self.lock:
            number = len(self.batches)
            self.batches[number] = [e["id"] for e in events]
            return number

    def unacknowledged(self) -> list[int]:
        """Return the batches never acknowledged."""
        with self.lock:
            return [n for n in self.batches if n not in self.acknowledged]

    def acknowledged_ids(self) -> set[str]:
        """Return every event id of an acknowledged batch."""
        with self.lock:
            return {i for n in self.acknowledged for i in self.batches[n]}

    def sent_ids(self) -> set[str]:
        """Return every event id ever sent."""
        with self.lock:
            return {i for ids in self.batches.values() for i in ids}


def send_and_record(server: LiveServer, token: str, ledger: Ledger, number: int,
                    events: list[dict], timeout: float = 30) -> int | None:
    """Send a registered batch; record a 200 (checking its counts); return the status or None."""
    try:
        status, answer = server.post_events(token, events, timeout)
    except OSError as exc:
        with ledger.lock:
            ledger.failures[type(exc).__name__] += 1
        return None
    if status == 200:
        if answer.get("stored", -1) + answer.get("duplicates", -1) != len(events):
            with ledger.lock:
                ledger.bad_answers.append(f"batch {number}: {answer}")
        with ledger.lock:
            ledger.acknowledged.add(number)
    else:
        with ledger.lock:
            ledger.failures[status] += 1
            if status < 500 and status != 429:
                ledger.bad_answers.append(f"batch {number}: HTTP {status} {answer}")
    return status


def client_loop(server: LiveServer, token: str, ledger: Ledger, stop: threading.Event,
                seed: int, batch_size: int, keep: dict[int, list[dict]]) -> None:
    """Post fresh batches until told to stop; keep every batch so it can be sent again."""
    rng = random.Random(seed)
    while not stop.is_set():
        events = [make_event(rng) for _ in range(batch_size)]
        number = ledger.new_batch(events)
        with ledger.lock:
            keep[number] = events
        if send_and_record(server, token, ledger, number, events, timeout=10) is None:
            time.sleep(0.05)  # the server is down: do not spin


def stored_event_ids(database_url: str) -> Counter:
    """Count the stored event entries by event id, straight from the database."""
    from service.audit.models import AuditEntry

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(AuditEntry.event_id).where(AuditEntry.kind == "event"))
            return Counter(r[0] for r in rows)
    finally:
        engine.dispose()


def event_ids_in_bodies(database_url: str) -> Counter:
    """Count event ids from the entry bodies themselves (the search column is a copy)."""
    from service.audit.models import AuditEntry

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(AuditEntry.body).where(AuditEntry.kind == "event"))
            return Counter(json.loads(r[0])["body"]["id"] for r in rows)
    finally:
        engine.dispose()


def assert_exactly_once(ledger: Ledger, database_url: str) -> int:
    """Every acknowledged event is stored once, nothing unsent is stored; return the count."""
    assert not ledger.bad_answers, ledger.bad_answers[:5]
    stored = event_ids_in_bodies(database_url)
    twice = [i for i, n in stored.items() if n > 1]
    assert not twice, f"{len(twice)} events stored more than once, e.g. {twice[:3]}"
    acknowledged = ledger.acknowledged_ids()
    lost = acknowledged - set(stored)
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:3]}"
    unknown = set(stored) - ledger.sent_ids()
    assert not unknown, f"{len(unknown)} stored events were never sent"
    return len(stored)


def resend(server: LiveServer, token: str, ledger: Ledger, kept: dict[int, list[dict]],
           numbers: Iterable[int], timeout: float = 30) -> None:
    """Send batches again (a client retrying); each must be acknowledged now."""
    for number in numbers:
        status = send_and_record(server, token, ledger, number, kept[number], timeout)
        assert status == 200, f"retry of batch {number} got {status}"


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """Yield the URL of a new, empty PostgreSQL schema (dropped afterwards); skip without PG."""
    import psycopg
    import pytest

    from tests.conftest import PG_URL, _pg_available

    reason = _pg_available()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    schema = "t_" + uuid.uuid4().hex[:16]
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
