"""Local durable spool: every event is on disk (fsync'd) before any attempt to send it.

SQLite in WAL mode with ``synchronous=FULL``: a COMMIT returns only after the WAL is
fsync'd, so an event acknowledged by :meth:`Spool.append` survives kill -9 and power loss.
Each event gets the agent's next ``seq`` inside the same transaction that stores it; the
counter lives in the database, so it continues after a restart and is never reused, even
after the rows it numbered were sent and deleted.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from canhgac_common.events import Event, event_to_json_dict

PENDING = 0
REJECTED = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spool_events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    spooled_at REAL NOT NULL,
    reject_reason TEXT
);
CREATE INDEX IF NOT EXISTS spool_events_state ON spool_events (state, seq);
"""


class SpoolError(RuntimeError):
    """The spool database cannot be used."""


class SpoolFullError(SpoolError):
    """The disk (or the configured spool size limit) is full; nothing was written."""


class SpooledEvent(NamedTuple):
    """One stored event: its sequence number, id and JSON body."""

    seq: int
    id: str
    body: str


class RejectedEvent(NamedTuple):
    """An event the server refused; kept for the administrator, never resent."""

    seq: int
    id: str
    reason: str


def connect_database(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the agent's SQLite file in WAL mode, usable from several threads under a lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _translate(exc: sqlite3.Error) -> SpoolError:
    message = str(exc)
    if "full" in message.lower():
        return SpoolFullError(
            "Bộ đệm sự kiện đã đầy (ổ đĩa hoặc giới hạn spool_max_mb) / "
            f"event spool is full (disk or spool_max_mb limit): {message}"
        )
    return SpoolError(f"spool database error: {message}")


class Spool:
    """The agent's on-disk queue of events waiting for the server."""

    def __init__(self, path: str | Path, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # Set whenever events are added; the sender waits on it instead of polling.
        self.wakeup = threading.Event()
        try:
            self._conn = connect_database(self.path, synchronous="FULL")
            self._conn.executescript(_SCHEMA)
            if max_bytes:
                page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
                self._conn.execute(f"PRAGMA max_page_count={max(16, max_bytes // page_size)}")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back by itself (SQLITE_FULL does).
                    if self._conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    def append(
        self, events: Sequence[Event], *, also: Sequence[tuple[str, tuple]] = ()
    ) -> list[Event]:
        """Number and store events durably; return them with ``seq`` set.

        *also* holds SQL statements (e.g. the agent's index bookkeeping) committed in the
        same transaction, so a crash can neither lose the event nor report it twice.
        Raises SpoolFullError (nothing stored) when the disk or the size limit is full.
        """
        if not events:
            return []
        now = time.time()
        stored: list[Event] = []
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM spool_meta WHERE key = 'last_seq'").fetchone()
            last_seq = int(row[0]) if row else 0
            for event in events:
                last_seq += 1
                numbered = event.model_copy(update={"seq": last_seq})
                body = json.dumps(event_to_json_dict(numbered), ensure_ascii=False,
                                  separators=(",", ":"))
                conn.execute(
                    "INSERT INTO spool_events (seq, id, body, state, spooled_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (last_seq, str(numbered.id), body, PENDING, now),
                )
                stored.append(numbered)
            for sql, params in also:
                conn.execute(sql, params)
            conn.execute(
                "INSERT INTO spool_meta (key, value) VALUES ('last_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(last_seq),),
            )
        self.wakeup.set()
        return stored

    def pending(self, limit: int) -> list[SpooledEvent]:
        """Return up to *limit* unsent events, oldest first."""
        rows = self._read(
            "SELECT seq, id, body FROM spool_events WHERE state = ? ORDER BY seq LIMIT ?",
            (PENDING, limit),
        )
        return [SpooledEvent(*row) for row in rows]

    def delete(self, seqs: Sequence[int]) -> None:
        """Forget events the server has stored durably."""
        if not seqs:
            return
        with self._transaction() as conn:
            conn.executemany("DELETE FROM spool_events WHERE seq = ? AND state = ?",
                             [(seq, PENDING) for seq in seqs])

    def reject(self, seq: int, reason: str) -> None:
        """Mark one event as refused by the server: kept, counted, never sent again."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE spool_events SET state = ?, reject_reason = ? WHERE seq = ?",
                (REJECTED, reason[:500], seq),
            )

    def pending_count(self) -> int:
        """Return the number of events still waiting to be sent."""
        return self._read("SELECT count(*) FROM spool_events WHERE state = ?", (PENDING,))[0][0]

    def rejected_count(self) -> int:
        """Return the number of events the server refused."""
        return self._read("SELECT count(*) FROM spool_events WHERE state = ?", (REJECTED,))[0][0]

    def rejected(self) -> list[RejectedEvent]:
        """Return the events the server refused, oldest first."""
        rows = self._read(
            "SELECT seq, id, coalesce(reject_reason, '') FROM spool_events WHERE state = ? "
            "ORDER BY seq",
            (REJECTED,),
        )
        return [RejectedEvent(*row) for row in rows]

    def last_seq(self) -> int:
        """Return the highest sequence number ever assigned (0 before the first event)."""
        rows = self._read("SELECT value FROM spool_meta WHERE key = 'last_seq'")
        return int(rows[0][0]) if rows else 0

    def get_meta(self, key: str) -> str | None:
        """Return a small persisted agent setting or marker."""
        rows = self._read("SELECT value FROM spool_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Persist a small agent setting or marker."""
        if key == "last_seq":
            raise ValueError("last_seq is managed by append()")
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO spool_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
