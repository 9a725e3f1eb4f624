"""Index of protected files: path → (sha256, size, mtime, content fingerprint, data class).

The index lives in the agent's SQLite file (beside the spool), with indexes on the digest
columns; nothing per file is kept in Python memory, so watching 100,000 files costs a few
megabytes of page cache rather than a dict of 100,000 tuples. Digests are stored as 32-byte
blobs. A restart compares size and mtime with the stored row and rehashes only what changed.

The same file keeps a small table of files already examined in egress folders, so that the
several events one copy produces (created, modified, closed) and a restart of the agent
never report that copy twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from canhgac_agent import paths
from canhgac_agent.spool import connect_database

logger = logging.getLogger("canhgac.agent")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS protected_files (
    key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    root TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_fp BLOB,
    data_class TEXT,
    pii TEXT,
    record_count INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS protected_files_sha ON protected_files (sha256);
CREATE INDEX IF NOT EXISTS protected_files_cfp ON protected_files (content_fp)
    WHERE content_fp IS NOT NULL;
CREATE INDEX IF NOT EXISTS protected_files_root ON protected_files (root);
CREATE TABLE IF NOT EXISTS egress_seen (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    reported_at REAL
) WITHOUT ROWID;
"""
# Columns added after the first release: an agent upgraded in the field adds them in place.
_ADDED_COLUMNS = {"pii": "TEXT", "record_count": "INTEGER"}

_SELECT = (
    "SELECT path, sha256, size, mtime_ns, content_fp, data_class, pii, record_count "
    "FROM protected_files "
)
_UPSERT_SQL = (
    "INSERT INTO protected_files (key, path, root, sha256, size, mtime_ns, content_fp, "
    "data_class, pii, record_count) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
    "path=excluded.path, root=excluded.root, sha256=excluded.sha256, size=excluded.size, "
    "mtime_ns=excluded.mtime_ns, content_fp=excluded.content_fp, "
    "data_class=excluded.data_class, pii=excluded.pii, record_count=excluded.record_count"
)
_EGRESS_SEEN_SQL = (
    "INSERT INTO egress_seen (key, size, mtime_ns, sha256, reported_at) VALUES (?,?,?,?,?) "
    "ON CONFLICT(key) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
    "sha256=excluded.sha256, reported_at=excluded.reported_at"
)
_FLUSH_EVERY = 256


class Digest(NamedTuple):
    """What the agent learns by reading a file once: identities and PII counts."""

    sha256: str
    content_fingerprint: str | None
    pii_json: str | None
    record_count: int | None


class IndexedFile(NamedTuple):
    """One protected file as last seen by the agent.

    ``pii_json`` holds the PII counts by kind as compact JSON (counts only, never values):
    a byte-identical copy has the same counts, so a copy is reported without rescanning.
    """

    path: str
    sha256: str
    size: int
    mtime_ns: int
    content_fingerprint: str | None
    data_class: str | None
    pii_json: str | None = None
    record_count: int | None = None

    @property
    def pii(self) -> dict[str, int] | None:
        """Return the PII counts by kind, or None when the file was not scanned."""
        return json.loads(self.pii_json) if self.pii_json is not None else None


class SeenFile(NamedTuple):
    """An egress file already examined: its state then and when it was last reported."""

    size: int
    mtime_ns: int
    sha256: str
    reported_at: float | None


@dataclass
class ScanSummary:
    """What an initial scan found compared with the stored index."""

    files: int = 0
    hashed: int = 0
    changed: list[tuple[IndexedFile, IndexedFile]] = field(default_factory=list)
    removed: list[IndexedFile] = field(default_factory=list)
    seconds: float = 0.0


def scan_pii(
    path: str, *, max_bytes: int | None = None, max_seconds: float | None = None
) -> tuple[dict[str, int], int | None]:
    """Return (non-zero PII counts by kind, record count or None) using canhgac_common.pii."""
    counts, record_count, _ = _scan_pii(path, max_bytes=max_bytes, max_seconds=max_seconds)
    return counts, record_count


def _scan_pii(
    path: str, *, max_bytes: int | None, max_seconds: float | None
) -> tuple[dict[str, int], int | None, bool]:
    """Return the counts, the record count and whether the file could not be read at all."""
    from canhgac_common.pii.scanners import scan_file

    limits = _limits(max_bytes, max_seconds)
    try:
        result = scan_file(path, **limits)
    except Exception:  # the scanner promises not to raise; a bug there must not stop us
        logger.warning("Không quét được tệp / PII scan failed for %s",
                       paths.redact_for_log(path), exc_info=True)
        return {}, None, True
    counts = {
        str(kind): int(count) for kind, count in (getattr(result, "counts", None) or {}).items()
        if isinstance(count, int) and count > 0
    }
    record_count = getattr(result, "record_count", None)
    if not isinstance(record_count, int) or record_count < 0:
        record_count = None
    return counts, record_count, bool(getattr(result, "is_unreadable", False))


def fingerprint_file(
    path: str, *, max_bytes: int | None = None, max_seconds: float | None = None
) -> Digest:
    """Return the sha256, content fingerprint and PII counts of a file (canhgac_common.pii).

    A file the scanner cannot read (encrypted, corrupt, an unknown format) has no counts
    (``pii_json`` None: not scanned), never the empty counts of a file known to be clean.
    """
    from canhgac_common.pii.fingerprint import content_fingerprint, file_sha256

    digest = file_sha256(path)
    try:
        content = content_fingerprint(path, **_limits(max_bytes, max_seconds))
    except Exception:  # an unparsable document still has a byte hash
        logger.debug("content fingerprint failed", exc_info=True)
        content = None
    counts, record_count, is_unreadable = _scan_pii(
        path, max_bytes=max_bytes, max_seconds=max_seconds)
    if is_unreadable:
        return Digest(digest, content, None, None)
    return Digest(digest, content, _counts_json(counts), record_count)


def _limits(max_bytes: int | None, max_seconds: float | None) -> dict:
    return {key: value for key, value in
            (("max_bytes", max_bytes), ("max_seconds", max_seconds)) if value is not None}


def _counts_json(counts: dict[str, int]) -> str:
    return json.dumps(counts, sort_keys=True, separators=(",", ":"))


def _blob(hex_digest: str | None) -> bytes | None:
    return bytes.fromhex(hex_digest) if hex_digest else None


def _row_to_file(row: tuple) -> IndexedFile:
    path, sha, size, mtime_ns, cfp, data_class, pii_json, record_count = row
    return IndexedFile(path, sha.hex(), size, mtime_ns, cfp.hex() if cfp else None, data_class,
                       pii_json, record_count)


class FingerprintIndex:
    """Persistent index of protected files with lookups by sha256 and content fingerprint."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        platform: str | None = None,
        hasher: Callable[[str], Digest] = fingerprint_file,
    ) -> None:
        self.platform = platform or paths.current_platform()
        self._hasher = hasher
        self._lock = threading.Lock()
        # Losing the last rows of the index on power loss only costs a rehash: NORMAL is enough.
        self._conn = connect_database(Path(db_path), synchronous="NORMAL")
        self._conn.executescript(_SCHEMA)
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(protected_files)")}
        for column, sql_type in _ADDED_COLUMNS.items():
            if column not in present:
                self._conn.execute(f"ALTER TABLE protected_files ADD COLUMN {column} {sql_type}")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def wrap_hasher(self, wrapper: Callable[[Callable[[str], Digest]], Callable[[str], Digest]],
                    ) -> None:
        """Replace the hasher by *wrapper(hasher)* (the watcher marks its own reads with it)."""
        self._hasher = wrapper(self._hasher)

    def key(self, path: str) -> str:
        """Return the comparison key of a path on this platform."""
        return paths.compare_key(path, self.platform)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back by itself (SQLITE_FULL does).
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise

    # --- lookups ---

    def get(self, path: str) -> IndexedFile | None:
        """Return the indexed state of a protected file, or None."""
        rows = self._query(
            _SELECT + "WHERE key = ?",
            (self.key(path),),
        )
        return _row_to_file(rows[0]) if rows else None

    def find_by_sha256(self, sha256_hex: str) -> IndexedFile | None:
        """Return a protected file with exactly these bytes (the lowest path when several)."""
        rows = self._query(
            _SELECT + "WHERE sha256 = ? ORDER BY key LIMIT 1",
            (_blob(sha256_hex),),
        )
        return _row_to_file(rows[0]) if rows else None

    def all_by_sha256(self, sha256_hex: str, limit: int = 16) -> list[IndexedFile]:
        """Return protected files with exactly these bytes (a few, lowest paths first)."""
        rows = self._query(_SELECT + "WHERE sha256 = ? ORDER BY key LIMIT ?",
                           (_blob(sha256_hex), limit))
        return [_row_to_file(row) for row in rows]

    def all_by_content(self, fingerprint_hex: str, limit: int = 16) -> list[IndexedFile]:
        """Return protected files with this content fingerprint (a few, lowest paths first)."""
        rows = self._query(_SELECT + "WHERE content_fp = ? ORDER BY key LIMIT ?",
                           (_blob(fingerprint_hex), limit))
        return [_row_to_file(row) for row in rows]

    def find_by_content(self, fingerprint_hex: str) -> IndexedFile | None:
        """Return a protected file with the same content in another format, or None."""
        rows = self._query(
            _SELECT + "WHERE content_fp = ? ORDER BY key LIMIT 1",
            (_blob(fingerprint_hex),),
        )
        return _row_to_file(rows[0]) if rows else None

    def under(self, directory: str) -> list[IndexedFile]:
        """Return indexed files inside a directory (for a directory deleted or moved away)."""
        sep = "\\" if self.platform == paths.WINDOWS else "/"
        prefix = self.key(directory).rstrip(sep) + sep
        upper = prefix[:-1] + chr(ord(sep) + 1)
        rows = self._query(
            _SELECT + "WHERE key >= ? AND key < ?", (prefix, upper)
        )
        return [_row_to_file(row) for row in rows]

    def count(self) -> int:
        """Return the number of indexed protected files."""
        return self._query("SELECT count(*) FROM protected_files")[0][0]

    # --- updates ---

    def _upsert_rows(self, rows: list[tuple]) -> None:
        self._write(_UPSERT_SQL, rows)

    # Statements for Spool.append(also=...): bookkeeping committed with the event it explains.

    def upsert_statement(self, entry: IndexedFile, root: str) -> tuple[str, tuple]:
        """Return the SQL that stores *entry* (to commit together with an event)."""
        return _UPSERT_SQL, self._row(entry, root)

    def remove_statement(self, path: str) -> tuple[str, tuple]:
        """Return the SQL that forgets *path* (to commit together with an event)."""
        return "DELETE FROM protected_files WHERE key = ?", (self.key(path),)

    def egress_seen_statement(self, path: str, seen: SeenFile) -> tuple[str, tuple]:
        """Return the SQL that records an examined egress file (to commit with its event)."""
        return _EGRESS_SEEN_SQL, (self.key(path), seen.size, seen.mtime_ns, _blob(seen.sha256),
                                  seen.reported_at)

    def _row(self, entry: IndexedFile, root: str) -> tuple:
        return (self.key(entry.path), entry.path, self.key(root), _blob(entry.sha256), entry.size,
                entry.mtime_ns, _blob(entry.content_fingerprint), entry.data_class,
                entry.pii_json, entry.record_count)

    def upsert(self, entry: IndexedFile, root: str) -> None:
        """Store the state of one protected file."""
        self._upsert_rows([self._row(entry, root)])

    def remove(self, path: str) -> IndexedFile | None:
        """Forget a protected file and return what was stored for it."""
        with self._lock:
            key = self.key(path)
            rows = self._conn.execute(
                _SELECT + "WHERE key = ?", (key,)
            ).fetchall()
            if rows:
                self._conn.execute("DELETE FROM protected_files WHERE key = ?", (key,))
        return _row_to_file(rows[0]) if rows else None

    def measure(
        self, path: str, data_class: str | None, st: os.stat_result | None = None
    ) -> tuple[IndexedFile | None, IndexedFile | None]:
        """Return (stored entry, current state) of one file without storing anything.

        Hashes only when size or mtime differ from the stored row. The current state is None
        when the path is not a regular file or cannot be read.
        """
        previous = self.get(path)
        try:
            st = st or os.lstat(path)
        except OSError:
            return previous, None
        if not stat.S_ISREG(st.st_mode):
            return previous, None
        if (
            previous is not None
            and previous.size == st.st_size
            and previous.mtime_ns == st.st_mtime_ns
        ):
            return previous, previous._replace(path=path, data_class=data_class)
        try:
            digest = self._hasher(path)
        except OSError as exc:
            logger.info("Không đọc được tệp / cannot read %s: %s",
                        paths.redact_for_log(path), exc.strerror or exc)
            return previous, None
        return previous, IndexedFile(path, digest.sha256, st.st_size, st.st_mtime_ns,
                                     digest.content_fingerprint, data_class, digest.pii_json,
                                     digest.record_count)

    def rename(self, old_path: str, new_path: str, root: str) -> IndexedFile | None:
        """Move an entry to a new path within protected scope; return the moved entry."""
        entry = self.remove(old_path)
        if entry is not None:
            entry = entry._replace(path=new_path)
            self.upsert(entry, root)
        return entry

    def prune_roots(self, configured_roots: list[str]) -> int:
        """Drop entries of roots no longer configured (silently: no events for them)."""
        keys = {self.key(root) for root in configured_roots}
        stale = [row[0] for row in self._query("SELECT DISTINCT root FROM protected_files")
                 if row[0] not in keys]
        for root_key in stale:
            self._write("DELETE FROM protected_files WHERE root = ?", [(root_key,)])
        return len(stale)

    # --- initial scan ---

    def scan_root(
        self,
        root: str,
        data_class: str | None,
        *,
        on_changed: Callable[[IndexedFile, IndexedFile], None] = lambda old, new: None,
        is_ignored: Callable[[str], bool] = lambda name: False,
        prune_dir: Callable[[str], bool] = lambda path: False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ScanSummary:
        """Index every regular file under *root*; report changes and removals since last run.

        *on_changed(old, new)* runs before the new state is stored, so an event it spools is
        never lost to a crash between the two. Removed files are returned, not forgotten:
        the caller forgets them once it has reported them. Walks with scandir (no symlinks
        followed, one directory iterator open at a time) and writes rows in batches.
        """
        started = time.monotonic()
        summary = ScanSummary()
        pending_rows: list[tuple] = []
        for entry in walk_files(root, is_ignored, prune_dir, should_stop):
            summary.files += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            previous, current = self.measure(entry.path, data_class, st)
            if current is None or current == previous:
                continue
            if previous is None or previous.sha256 != current.sha256:
                summary.hashed += 1
            if previous is not None and previous.sha256 != current.sha256:
                summary.changed.append((previous, current))
                on_changed(previous, current)
            pending_rows.append(self._row(current, root))
            if len(pending_rows) >= _FLUSH_EVERY:
                self._upsert_rows(pending_rows)
                pending_rows = []
        if pending_rows:
            self._upsert_rows(pending_rows)
        if not should_stop():
            summary.removed = self._removed_under(root)
        summary.seconds = time.monotonic() - started
        return summary

    def _removed_under(self, root: str) -> list[IndexedFile]:
        # Stream the paths of this root; only the (few) whose file is gone are loaded fully.
        gone_paths: list[str] = []
        with self._lock:
            cursor = self._conn.execute("SELECT path FROM protected_files WHERE root = ?",
                                        (self.key(root),))
            for chunk in iter(cursor.fetchmany, []):
                for (path,) in chunk:
                    try:
                        is_gone = not stat.S_ISREG(os.lstat(path).st_mode)
                    except OSError:
                        is_gone = True
                    if is_gone:
                        gone_paths.append(path)
        return [entry for entry in map(self.get, gone_paths) if entry is not None]

    # --- egress bookkeeping ---

    def egress_seen(self, path: str) -> SeenFile | None:
        """Return the state of an egress file when the agent last examined it."""
        rows = self._query(
            "SELECT size, mtime_ns, sha256, reported_at FROM egress_seen WHERE key = ?",
            (self.key(path),),
        )
        if not rows:
            return None
        size, mtime_ns, sha, reported_at = rows[0]
        return SeenFile(size, mtime_ns, sha.hex(), reported_at)

    def mark_egress_seen(self, path: str, seen: SeenFile) -> None:
        """Remember that an egress file in this state was examined (and maybe reported)."""
        sql, params = self.egress_seen_statement(path, seen)
        self._write(sql, [params])

    def forget_egress_older_than(self, cutoff: float) -> None:
        """Drop egress bookkeeping older than *cutoff* (epoch seconds) to keep the file small."""
        self._write("DELETE FROM egress_seen WHERE coalesce(reported_at, 0) < ? AND "
                    "mtime_ns < ?", [(cutoff, int(cutoff * 1e9))])


def walk_files(
    root: str,
    is_ignored: Callable[[str], bool] = lambda name: False,
    prune_dir: Callable[[str], bool] = lambda path: False,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[os.DirEntry]:
    """Yield regular files under root depth-first, never following symlinks.

    Names for which *is_ignored* is true and directories for which *prune_dir* is true
    (another root nested inside this one) are skipped.
    """
    stack = [root]
    while stack and not should_stop():
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if is_ignored(entry.name):
                        continue
                    try:
                        if entry.is_symlink():
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            if not prune_dir(entry.path):
                                stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError as exc:
            logger.info("Không đọc được thư mục / cannot list %s: %s",
                        paths.redact_for_log(directory), exc.strerror or exc)

