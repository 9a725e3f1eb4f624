"""Recompute the whole trail: every leaf, the tree, every checkpoint's signature and root.

Two passes share one set of checks on the checkpoints:

* the *fast pass* reads entries in ranges (one aggregate row per range: its row count and the
  bodies joined by "\\n", which canonical JSON never contains raw), hashes every leaf and folds
  the tree with ``merkle.CompactRange``; it proves everything when every root matches. A large
  trail (``PARALLEL_MIN_CHUNKS`` chunks of ``PARALLEL_CHUNK`` entries, aligned) on a database
  other processes can open, on a machine with more than one usable core, is split between this
  process and worker processes (``verify_worker.py``), one per further core: each
  folds whole chunks and returns their subtree hashes, which are combined in order
  (``CompactRange.append_subtree``). Otherwise this process alone reads on a second thread a
  few ranges ahead of the hashing;
* the *thorough pass* reads row by row and checks everything an entry carries (its number inside
  its body, canonical form, kind and time columns, stored leaf hash, every stored tree node —
  levels ≥ 8: the lower ones are not stored, log.MIN_STORED_LEVEL). It
  runs with ``deep=True``, and otherwise only when the fast pass found a mismatch, to name the
  first bad entry or checkpoint. It starts from the last checkpoint the fast pass proved.

Nothing is written: a verification is read-only (the CLI rolls its transaction back).
"""

from __future__ import annotations

import collections
import contextlib
import json
import marshal
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.audit import log, merkle
from service.audit.canonical import CanonicalizationError, canonical_json
from service.audit.checkpoint import (
    CheckpointError,
    InvalidSignatureError,
    NoteError,
    UnverifiedNoteError,
    VerifierKey,
    open_note,
    parse_checkpoint,
)
from service.audit.models import AuditEntry
from service.audit.verify_worker import split_range

__all__ = [
    "ENTRY_FIELDS",
    "RootFolder",
    "VerifyError",
    "VerifyReport",
    "VerifyWorkerError",
    "check_entry_body",
    "extract_note",
    "open_trusted_checkpoint",
    "stored_node_count",
    "verify_log",
]

ENTRY_FIELDS = frozenset({"seq", "recorded_at", "kind", "body"})
# Entries per range read of the fast pass. 1,024 rather than 4,096 (bench/README.md, "Verify
# in smaller ranges"): a range's joined bodies stay small (0.6 MB), so SQLite joins them, and
# this process splits and hashes them, with fewer page faults and cache misses (CPU of a
# 50,000-entry pass 9-18 % lower, its first range is read sooner); PostgreSQL was no slower.
FAST_BATCH = 1_024
# Entries per chunk of the parallel fast pass (a power of two), and how many chunks a trail needs
# before worker processes pay, per database. Measured on 2 shared cores (bench/README.md, "Verify
# on every core"): SQLite lost below 200,000 entries (a worker's boot and cold cache against one
# process that already reads on the second core) and was 0.93-1.21x one process from 200,000
# (median 1.05x); PostgreSQL, whose server reads in one backend per worker, was 0.92x at 200,000
# and 1.45x at 600,000 (a worker's boot imports psycopg: 0.15-0.3 s).
PARALLEL_CHUNK = 1 << 13
PARALLEL_MIN_CHUNKS = {"sqlite": 32, "postgresql": 64}
_WORKER_SCRIPT = Path(__file__).with_name("verify_worker.py")
THOROUGH_BATCH = 5_000

# A signed checkpoint inside other text (a saved e-mail): origin, size, root, optional extension
# lines, a blank line, then signature lines.
# At most MAX_EXTENSION_LINES extension lines: an unbounded lazy run let every line of a
# crafted mail start a scan to its end (quadratic: 48 KB took 3 s, 2 MB over an hour).
MAX_EXTENSION_LINES = 16
_NOTE_IN_TEXT = re.compile(
    r"^(?P<text>[^\n]+\n(?:0|[1-9][0-9]*)\n[A-Za-z0-9+/]+={0,2}\n"
    rf"(?:[^\n]+\n){{0,{MAX_EXTENSION_LINES}}}?)\n"
    r"(?P<sigs>(?:\u2014 [^\n]+(?:\n|\Z))+)",
    re.MULTILINE,
)


class VerifyError(Exception):
    """The trail does not hold; the message names the first bad entry or checkpoint.

    ``str()`` is the English reason (logs, tests); ``vi`` the same reason in Vietnamese, which
    the CLI prints first.
    """

    def __init__(self, message: str, *, vi: str | None = None, seq: int | None = None,
                 checkpoint: str | None = None):
        """Keep which entry (seq) or checkpoint (label) failed, for callers and tests."""
        super().__init__(message)
        self.vi = vi
        self.seq = seq
        self.checkpoint = checkpoint


_LABEL_VI = ((re.compile(r"^kept checkpoint (.*) \(size (\d+)\)$"), r"checkpoint đã giữ \1 (kích thước \2)"),
             (re.compile(r"^kept checkpoint (.*)$"), r"checkpoint đã giữ \1"),
             (re.compile(r"^checkpoint #(\d+) \(size (\d+)\)$"), r"checkpoint #\1 (kích thước \2)"))


def vi_label(label: str) -> str:
    """Return a checkpoint's label ("kept checkpoint cp.txt (size 7)") in Vietnamese."""
    for pattern, replacement in _LABEL_VI:
        if pattern.match(label):
            return pattern.sub(replacement, label)
    return label


@dataclass
class VerifyReport:
    """What a successful verification covered."""

    size: int
    root: bytes
    checkpoints: int
    external: list[int] = field(default_factory=list)
    is_deep: bool = False
    # The largest size any signed checkpoint (stored or kept) covers: entries below it are
    # anchored to a signature; entries at or past it are checked only against each other.
    last_signed_size: int = 0

    @property
    def entries_past_last_checkpoint(self) -> int:
        """Return how many entries no signed checkpoint covers yet."""
        return self.size - self.last_signed_size

    @property
    def is_anchored(self) -> bool:
        """Return whether some signed checkpoint covers the trail (an empty trail needs none).

        A trail with entries but no signed checkpoint proves only that it agrees with itself:
        whoever rewrites the database and deletes the checkpoints leaves exactly that.
        """
        return self.size == 0 or self.last_signed_size > 0


@dataclass
class _Target:
    """A signed root the recomputed tree must reproduce at ``size``."""

    size: int
    root: bytes
    label: str


class RootFolder:
    """Fold leaf hashes one at a time (a thin wrapper over merkle.CompactRange)."""

    __slots__ = ("_tree",)

    def __init__(self) -> None:
        """Start from the empty tree."""
        self._tree = merkle.CompactRange()

    @property
    def count(self) -> int:
        """Return how many leaves were added."""
        return self._tree.size

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        self._tree.extend([leaf])

    def root(self) -> bytes:
        """Return the root of the leaves added so far."""
        return self._tree.root()


class VerifyWorkerError(RuntimeError):
    """A worker process of the fast pass failed (a database error, a crash): not tampering."""


class _Mismatch(Exception):
    """The fast pass saw something wrong; the thorough pass will name it."""


def _mail_text(text: str) -> str:
    """Return the decoded plain-text body when ``text`` is a saved mail (.eml), else the text."""
    head = text[:4096]
    if "\nMessage-ID:" not in head and "\nMIME-Version:" not in head and not head.startswith(
            ("Message-ID:", "MIME-Version:", "Received:", "Return-Path:", "From:")):
        return text
    from email import message_from_string
    from email import policy as email_policy

    message = message_from_string(text, policy=email_policy.default)
    body = message.get_body(preferencelist=("plain",))
    # Mails travel quoted-printable or base64; the note must be read as the mail shows it.
    return body.get_content() if body is not None else text


def extract_note(text: str) -> str:
    """Return the signed checkpoint inside ``text`` (e.g. a saved e-mail), or the text itself."""
    text = _mail_text(text).replace("\r\n", "\n")
    found = list(_NOTE_IN_TEXT.finditer(text))
    if not found:
        return text
    match = found[-1]
    sigs = match.group("sigs")
    return match.group("text") + "\n" + (sigs if sigs.endswith("\n") else sigs + "\n")


def open_trusted_checkpoint(note: str, keys: Sequence[str | VerifierKey], origin: str | None,
                            label: str):
    """Check a signed checkpoint against the trusted keys and parse it; raise VerifyError."""
    try:
        text = open_note(note, keys)
    except UnverifiedNoteError as exc:
        signers = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in exc.note.unverified) or "none"
        raise VerifyError(
            f"{label}: not signed by a trusted key (signed by: {signers}); the signing key "
            "was replaced, or the checkpoint is from another log",
            vi=f"{vi_label(label)}: không được ký bằng khóa bạn tin (ký bởi: {signers}); khóa ký "
               "đã bị thay, hoặc checkpoint thuộc một nhật ký khác",
            checkpoint=label,
        ) from exc
    except InvalidSignatureError as exc:
        raise VerifyError(f"{label}: signature does not verify: the note was altered ({exc})",
                          vi=f"{vi_label(label)}: chữ ký không khớp: nội dung đã bị sửa",
                          checkpoint=label) from exc
    except NoteError as exc:
        raise VerifyError(f"{label}: not a signed note ({exc})",
                          vi=f"{vi_label(label)}: không phải văn bản có chữ ký", checkpoint=label) from exc
    try:
        return parse_checkpoint(text, origin=origin)
    except CheckpointError as exc:
        raise VerifyError(f"{label}: not a checkpoint of this log ({exc})",
                          vi=f"{vi_label(label)}: không phải checkpoint của nhật ký này",
                          checkpoint=label) from exc


def _trusted_keys(verifier_keys: Iterable[str | VerifierKey]) -> list[str | VerifierKey]:
    keys = [verifier_keys] if isinstance(verifier_keys, str | VerifierKey) else list(verifier_keys)
    if not keys:
        raise VerifyError("no trusted verifier key given", vi="không có khóa xác minh nào được tin")
    return keys


def _collect_targets(conn: Connection, keys, origin, external_notes, size) -> tuple[
        list[_Target], int, list[int]]:
    """Open every stored and kept checkpoint; return the roots to reproduce, in size order."""
    targets: list[_Target] = []
    stored = conn.exec_driver_sql(
        "SELECT id, size, root_hash, note FROM checkpoint ORDER BY size, id"
    ).all()
    for cp_id, cp_size, cp_root, note in stored:
        label = f"checkpoint #{cp_id} (size {cp_size})"
        parsed = open_trusted_checkpoint(note, keys, origin, label)
        if parsed.size != cp_size or parsed.root != bytes(cp_root):
            raise VerifyError(f"{label}: the stored size or root differs from its signed note",
                              vi=f"{vi_label(label)}: kích thước hoặc gốc lưu trong cơ sở dữ liệu "
                                 "khác với bản đã ký", checkpoint=label)
        targets.append(_Target(parsed.size, parsed.root, label))
    external_sizes = []
    for i, item in enumerate(external_notes, 1):
        name, note = item if isinstance(item, tuple) else (f"kept checkpoint {i}", item)
        parsed = open_trusted_checkpoint(extract_note(note), keys, origin, name)
        targets.append(_Target(parsed.size, parsed.root, f"{name} (size {parsed.size})"))
        external_sizes.append(parsed.size)
    for target in targets:
        if target.size > size:
            raise VerifyError(
                f"{target.label}: it covers {target.size} entries but the log now has {size}: "
                "entries were removed (the tail was truncated)",
                vi=f"{vi_label(target.label)}: checkpoint bao gồm {target.size} mục nhưng nhật ký "
                   f"nay chỉ có {size}: các mục cuối đã bị xóa (nhật ký bị cắt bớt)",
                seq=size, checkpoint=target.label,
            )
    targets.sort(key=lambda t: t.size)
    return targets, len(stored), external_sizes


def _check_numbering(conn: Connection, size: int) -> None:
    """Entries must be exactly 0 .. size-1; name the first missing or extra one."""
    # Three scalar subqueries, not one SELECT count(*), min(seq), max(seq): each is then
    # answered on its own (SQLite counts B-tree cells and reads min/max off the key) instead of
    # one scan of every row.
    count, low, high = conn.exec_driver_sql(
        "SELECT (SELECT count(*) FROM audit_entry), (SELECT min(seq) FROM audit_entry), "
        "(SELECT max(seq) FROM audit_entry)"
    ).one()
    if count == size and (size == 0 or (low == 0 and high == size - 1)):
        return  # seq is the primary key: no duplicates, so this range is gap-free
    expected = 0
    p = log._placeholder(conn)
    while True:
        seqs = conn.exec_driver_sql(
            f"SELECT seq FROM audit_entry WHERE seq >= {p} ORDER BY seq LIMIT 50000", (expected,)  # noqa: S608
        ).scalars().all()
        for seq in seqs:
            if seq >= size:
                raise VerifyError(f"entry {seq}: present beyond the end of the log (size {size}): "
                                  "an entry was inserted",
                                  vi=f"mục {seq}: nằm ngoài cuối nhật ký (kích thước {size}): "
                                     "một mục đã bị chèn thêm", seq=seq)
            if seq != expected:
                raise VerifyError(f"entry {expected}: missing (removed); the next entry present "
                                  f"is {seq}", vi=f"mục {expected}: bị mất (đã bị xóa); mục kế tiếp "
                                  f"còn lại là {seq}", seq=expected)
            expected += 1
        if len(seqs) < 50000:
            break
    if expected < size:
        raise VerifyError(f"entry {expected}: missing; entries {expected}..{size - 1} were "
                          "removed (the tail was truncated)",
                          vi=f"mục {expected}: bị mất; các mục {expected}..{size - 1} đã bị xóa "
                             "(nhật ký bị cắt bớt)", seq=expected)


def _fast_range_sql(conn: Connection) -> str:
    """Return the query of one range: its row count and its bodies joined by "\\n", as bytes."""
    # No min(seq)/max(seq): the numbering check proved seq 0..size-1 with no duplicates (the
    # primary key), so a count of end - start rows in [start, end) is every one of them.
    p = log._placeholder(conn)
    if conn.dialect.name == "postgresql":
        return (
            "SELECT count(*), convert_to(string_agg(body, chr(10) ORDER BY seq), 'UTF8') "  # noqa: S608
            f"FROM audit_entry WHERE seq >= {p} AND seq < {p}"
        )
    # SQLite before 3.44 has no ORDER BY inside aggregates; it aggregates in scan order, and a
    # range on the INTEGER PRIMARY KEY (the rowid) is scanned in seq order. Were that ever not
    # so, the roots would not match and the thorough pass would decide: the fast pass can raise
    # false alarms, never false passes.
    return (
        "SELECT count(*), CAST(group_concat(body, char(10)) AS BLOB) "  # noqa: S608
        f"FROM audit_entry WHERE seq >= {p} AND seq < {p}"
    )


_END = object()


class _RangeReader:
    """Read the ranges of the fast pass on a second thread, a few ranges ahead of the hashing.

    Both drivers release the GIL while the database runs a statement, and the aggregate query
    does a range's reading and joining in one statement, so reading range k + 1 overlaps hashing
    range k on the other core (measured on an idle 2-core machine: 50,000 entries read, hashed
    and folded in 64 ms instead of 78 ms; no loss when the other core is busy). The connection
    belongs to the reader thread until ``close`` returns; the caller must not use it meanwhile.
    """

    def __init__(self, conn: Connection, ranges: Iterable[tuple[int, int]], ahead: int = 2) -> None:
        """Start reading ``ranges`` (start, end) in order (an iterator runs on the thread)."""
        self._sql = _fast_range_sql(conn)
        self._cursor = conn.connection.cursor()  # the driver's own: same transaction, no events
        self._ranges = ranges
        self._queue: queue.Queue = queue.Queue(ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="verify-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Queue an item unless the consumer stopped; return whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for start, end in self._ranges:
                if self._stop.is_set():
                    return
                self._cursor.execute(self._sql, (start, end))
                count, joined = self._cursor.fetchone()
                if not self._put((start, end, count, None if joined is None else bytes(joined))):
                    return
            self._put(_END)
        except BaseException as exc:  # any failure is the consumer's to raise, in its thread
            self._put(exc)

    def __iter__(self):
        """Yield (start, end, row count, joined bodies or None) per range, in order."""
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading and wait for the thread: the connection is the caller's again."""
        self._stop.set()
        self._thread.join()
        self._cursor.close()


def _fast_cuts(size: int, targets: list[_Target], batch: int) -> list[tuple[int, int]]:
    """Return the ranges to read: every ``batch`` entries and at every target's size."""
    cuts = sorted({t.size for t in targets if t.size > 0} | set(range(batch, size, batch)) | {size})
    ranges, start = [], 0
    for end in cuts:
        if end > start:
            ranges.append((start, end))
            start = end
    return ranges


def _fast_pass(conn: Connection, size: int, targets: list[_Target], progress, batch: int,
               proven: list, workers: _Workers | None = None) -> bytes:
    """Hash and fold every entry by ranges; raise _Mismatch at the first disagreement.

    ``proven`` receives (size, CompactRange copy) for each target reproduced, so a thorough pass
    can resume from the last proven point. With ``workers`` the chunks are folded by them.
    """
    tree = merkle.CompactRange()
    by_size: dict[int, list[_Target]] = {}
    for target in targets:
        by_size.setdefault(target.size, []).append(target)
    _fast_check(tree, by_size.get(0, ()), proven)
    if workers is not None:
        return _parallel_fast_pass(conn, workers, size, by_size, progress, batch, proven)
    reader = _RangeReader(conn, _fast_cuts(size, targets, batch))
    try:
        for start, end, count, joined in reader:
            bodies = split_range(start, end, count, joined)
            if bodies is None:
                raise _Mismatch
            tree.extend(merkle.leaf_hashes(bodies))
            _fast_check(tree, by_size.get(end, ()), proven)
            if progress:
                progress(end)
    finally:
        reader.close()
    return tree.root()


def _chunk_jobs(size: int, target_sizes: Iterable[int], batch: int, chunk: int) -> list[dict]:
    """Return the workers' jobs: per aligned chunk, its ranges and the ends to report tiles at.

    Ranges are cut every ``batch`` entries and at every target, as in the single-process pass,
    so a bad range leaves the targets before it proven exactly as there.
    """
    sizes = {s for s in target_sizes if s > 0}
    jobs = []
    for first in range(0, size, chunk):
        last = min(first + chunk, size)
        cuts = sorted({s for s in sizes if first < s < last}
                      | set(range((first // batch + 1) * batch, last, batch)) | {last})
        jobs.append({"chunk": len(jobs), "ranges": list(zip([first, *cuts[:-1]], cuts, strict=True)),
                     "report": sorted({s for s in sizes if first < s <= last} | {last})})
    return jobs


def _parallel_fast_pass(conn: Connection, workers: _Workers, size: int,
                        by_size: dict[int, list[_Target]], progress, batch: int,
                        proven: list) -> bytes:
    """Combine the workers' chunk tiles in order, checking every target inside each chunk."""
    tree = merkle.CompactRange()  # the chunks combined so far: its size is a chunk boundary
    jobs = _chunk_jobs(size, by_size, batch, workers.chunk)
    for job, (tiles, bad) in zip(jobs, workers.results(conn, jobs), strict=True):
        first = job["ranges"][0][0]
        if len(tiles) > len(job["report"]):
            raise VerifyWorkerError(f"a verify worker answered chunk {job['chunk']} wrongly")
        grown = tree
        for end, hashes in zip(job["report"], tiles, strict=False):
            levels = [level for level, _index in merkle.subtree_ranges_for_root(end - first)]
            if len(levels) != len(hashes):
                raise VerifyWorkerError(f"a verify worker answered chunk {job['chunk']} wrongly")
            # [0, first) then the tiles of [first, end) is the compact range of [0, end): first
            # is a multiple of the chunk width, which is a power of two at least end - first.
            grown = tree.copy()
            for level, h in zip(levels, hashes, strict=True):
                grown.append_subtree(level, h)
            _fast_check(grown, by_size.get(end, ()), proven)
            if progress:
                progress(end)
        if bad:
            raise _Mismatch
        tree = grown  # the last reported end is the chunk's end
    return tree.root()


def _usable_cpus() -> int:
    """Return how many cores this process may run on (taskset and cgroups' cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_setup(conn: Connection, size: int) -> dict | None:
    """Return how workers reach the trail, or None when one process should do the fast pass."""
    url = conn.engine.url
    backend = url.get_backend_name()
    chunks = max(2, PARALLEL_MIN_CHUNKS.get(backend, 2))
    if size < chunks * PARALLEL_CHUNK or _usable_cpus() < 2 or not sys.executable:
        return None
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:") or url.query:
            return None  # in memory, or a URI form a path cannot carry: only this process sees it
        dsn = os.path.abspath(database)
    elif backend == "postgresql" and url.get_driver_name() == "psycopg":
        # Other connections do not see this transaction's own writes: if it made any (a caller
        # verifying before it commits), only this process can verify what it sees.
        if conn.exec_driver_sql("SELECT txid_current_if_assigned()").scalar() is not None:
            return None
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    else:
        return None
    # Workers run without site (-S): give them the directory their driver imports from.
    path = []
    if backend == "postgresql":
        import importlib.util

        path.append(os.path.dirname(os.path.dirname(importlib.util.find_spec("psycopg").origin)))
    return {"dialect": backend, "dsn": dsn, "sql": _fast_range_sql(conn), "path": path}


class _Workers:
    """Chunks of the trail folded by worker processes (``verify_worker.py``) and by this one.

    The workers are fresh interpreters, not forks: the server has threads, and a fork copies
    their locks in whatever state they are. They are started early, to boot while this process
    checks the signatures and the numbering. This process folds chunks too, on the caller's
    connection, from the first moment (a worker is ready 20 ms after its start on a quiet
    machine, 70 ms or more under load: the time to fold 10,000-30,000 entries), so with n usable
    cores there are n - 1 workers. ``close`` always ends them.
    """

    def __init__(self, count: int, setup: dict, chunk: int) -> None:
        """Start ``count`` worker processes and send each the connection to open."""
        if chunk < 1 or chunk & (chunk - 1):
            raise ValueError(f"chunks must be a power of two entries, not {chunk}")
        self.chunk = chunk
        self._stop = threading.Event()
        self._finished = False  # every job answered: the workers are idle
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        message = marshal.dumps(setup)
        try:
            for _ in range(count):
                # -I: no user site, no PYTHON* variables, no script directory on the path;
                # -S: no site at all (its editable-install finders cost half of a boot).
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(_WORKER_SCRIPT)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                self._procs.append(proc)
                proc.stdin.write(message)
                proc.stdin.flush()
        except BaseException:
            self.close()
            raise

    def results(self, conn: Connection, jobs: list[dict]):
        """Fold ``jobs`` here and in the workers; yield (tiles, bad) per job, in job order.

        This process takes chunks from the start, on ``conn`` (a reader thread stays a few
        ranges ahead of the folding thread, as in the single-process pass); workers take them
        from the end, one at a time, as they come free. The threads stop at the first failure,
        and when the caller stops reading.
        """
        cond = threading.Condition()
        answers: dict[int, tuple[list[list[bytes]], bool]] = {}
        failures: list[BaseException] = []
        pending = collections.deque(range(len(jobs)))

        def take(from_start: bool) -> int | None:
            with cond:
                if failures or self._stop.is_set() or not pending:
                    return None
                return pending.popleft() if from_start else pending.pop()

        def give(i: int, answer: tuple | None, failure: BaseException | None) -> None:
            with cond:
                if failure is not None:
                    failures.append(failure)
                else:
                    answers[i] = answer
                cond.notify_all()

        def claimed_ranges():
            while (i := take(True)) is not None:
                yield from jobs[i]["ranges"]

        def serve_here() -> None:
            reader = _RangeReader(conn, claimed_ranges())
            try:
                tree, tiles, report, last = merkle.CompactRange(), [], set(), -1
                for start, end, count, joined in reader:
                    i = start // self.chunk
                    if start == jobs[i]["ranges"][0][0]:  # a new chunk
                        tree, tiles = merkle.CompactRange(), []
                        report, last = set(jobs[i]["report"]), jobs[i]["ranges"][-1][1]
                    bodies = split_range(start, end, count, joined)
                    if bodies is None:
                        give(i, (tiles, True), None)
                        return  # what follows is for the thorough pass
                    tree.extend(merkle.leaf_hashes(bodies))
                    if end in report:
                        tiles.append([h for _level, _index, h in tree.border()])
                    if end == last:
                        give(i, (tiles, False), None)
            except BaseException as exc:  # the database's own error, raised as in one process
                give(-1, None, exc)
            finally:
                reader.close()

        def receive(proc: subprocess.Popen) -> dict | None:
            try:
                answer = marshal.load(proc.stdout)  # noqa: S302 - our own child, a private pipe
            except (OSError, EOFError, ValueError, TypeError):  # it died, or close() ended it
                return None
            return answer if isinstance(answer, dict) else None

        def serve(proc: subprocess.Popen) -> None:
            # Take chunks only once connected: a worker still booting holds none back.
            ready = receive(proc)
            if ready is None or "error" in ready:
                if not self._stop.is_set():  # else the pass is over without it anyway
                    give(-1, None, VerifyWorkerError(self._describe(proc, ready, None)))
                return
            while (i := take(False)) is not None:
                try:
                    marshal.dump(jobs[i], proc.stdin)
                    proc.stdin.flush()
                except (OSError, ValueError):
                    pass  # receive() sees the end of its output
                answer = receive(proc)
                if answer is None or "error" in answer or answer.get("chunk") != i:
                    give(i, None, VerifyWorkerError(self._describe(proc, answer, jobs[i])))
                    return
                give(i, (answer["tiles"], answer["bad"]), None)

        threads = [threading.Thread(target=serve_here, name="verify-fold", daemon=True)]
        threads += [threading.Thread(target=serve, args=(proc,), name="verify-worker", daemon=True)
                    for proc in self._procs]
        self._threads += threads
        for thread in threads:
            thread.start()
        try:
            for i in range(len(jobs)):
                with cond:
                    while i not in answers and not failures and any(t.is_alive() for t in threads):
                        cond.wait(1.0)
                    if i not in answers:
                        if failures:
                            raise failures[0]
                        raise VerifyWorkerError("the verify workers stopped before the end")
                    answer = answers.pop(i)
                yield answer
            self._finished = True
        finally:
            self._stop.set()
            threads[0].join()  # the connection is the caller's again

    def _describe(self, proc: subprocess.Popen, answer: dict | None, job: dict | None) -> str:
        """Say which worker failed on which entries, and why."""
        if job is None:
            where = "a verify worker process failed to start"
        else:
            first, last = job["ranges"][0][0], job["ranges"][-1][1] - 1
            where = f"a verify worker process failed on entries {first}..{last}"
        if answer is not None and "error" in answer:
            return f"{where}: {answer['error']}"
        if answer is not None:
            return f"{where}: it answered for another chunk"
        try:
            status = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return f"{where}: it stopped answering"
        if self._stop.is_set():
            return f"{where}: it was stopped"
        err = (proc.stderr.read() or b"").decode("utf-8", "replace").strip().splitlines()
        return f"{where}: it exited with status {status}" + (f" ({err[-1]})" if err else "")

    def close(self) -> None:
        """End every worker and thread: idle workers at the end of their input, busy ones killed.

        Workers never given a chunk (the signatures or the numbering failed first) are idle too:
        a PostgreSQL server then sees a client leave, not a connection cut.
        """
        self._stop.set()
        for proc in self._procs:
            if self._threads and not self._finished:
                proc.kill()  # it may be in the middle of a chunk nobody will read
            with contextlib.suppress(OSError):  # it is gone already
                proc.stdin.close()
        for thread in self._threads:
            thread.join()  # each sees its worker's end of output, or finishes its chunk
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()


def _start_workers(conn: Connection, size: int) -> _Workers | None:
    """Start the fast pass's workers when the trail is large enough and they can reach it."""
    setup = _worker_setup(conn, size)
    if setup is None:
        return None
    chunks = -(-size // PARALLEL_CHUNK)
    return _Workers(min(_usable_cpus(), chunks) - 1, setup, PARALLEL_CHUNK)


def _fast_check(tree: merkle.CompactRange, targets: Iterable[_Target], proven: list) -> None:
    targets = list(targets)
    if not targets:
        return
    root = tree.root()
    if any(root != t.root for t in targets):
        raise _Mismatch
    proven.append((tree.size, merkle.CompactRange(tree.size, [h for _, _, h in tree.border()])))


def _describe_node_mismatch(level: int, index: int) -> VerifyError:
    first = index << level
    last = ((index + 1) << level) - 1
    return VerifyError(
        f"entries {first}-{last}: the stored tree node (level {level}, index {index}) does not "
        "match them: entries were changed and rehashed, or the node table was altered",
        vi=f"các mục {first}-{last}: nút cây lưu (tầng {level}, vị trí {index}) không khớp: các mục "
           "đã bị sửa rồi băm lại, hoặc bảng nút đã bị sửa", seq=first)


def check_entry_body(seq: int, body: str | bytes, stored_leaf: bytes) -> bytes:
    """Check one stored entry: its number, canonical form and leaf hash; return the leaf hash."""
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    _check_body(seq, data, stored_leaf)
    return merkle.leaf_hash(data)


def _check_body(seq: int, data: bytes, stored_leaf: bytes) -> dict:
    """Check an entry's bytes against its number and stored leaf hash; return them parsed."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise VerifyError(f"entry {seq}: body is not JSON (altered)",
                          vi=f"mục {seq}: nội dung không phải JSON (đã bị sửa)", seq=seq) from exc
    if not isinstance(parsed, dict) or set(parsed) != ENTRY_FIELDS:
        raise VerifyError(f"entry {seq}: body is not an entry object (altered)",
                          vi=f"mục {seq}: nội dung không phải một mục nhật ký (đã bị sửa)", seq=seq)
    if parsed["seq"] != seq:
        raise VerifyError(f"entry {seq}: its body is entry {parsed['seq']!r}: entries were moved, "
                          "reordered or inserted",
                          vi=f"mục {seq}: nội dung là của mục {parsed['seq']!r}: các mục đã bị dời, "
                             "đổi thứ tự hoặc chèn thêm", seq=seq)
    try:
        is_canonical = canonical_json(parsed) == data
    except CanonicalizationError:
        is_canonical = False
    if not is_canonical:
        raise VerifyError(f"entry {seq}: body is not canonical JSON (altered)",
                          vi=f"mục {seq}: nội dung không ở dạng JSON chuẩn tắc (đã bị sửa)", seq=seq)
    leaf = merkle.leaf_hash(data)
    if leaf != bytes(stored_leaf):
        raise VerifyError(f"entry {seq}: body does not match its stored leaf hash (altered)",
                          vi=f"mục {seq}: nội dung không khớp mã băm lá đã lưu (đã bị sửa)", seq=seq)
    return parsed


def _check_row(seq: int, body: str, stored_leaf: bytes, kind: str, recorded_at) -> bytes:
    """Check everything one entry row carries, columns included; return its leaf hash."""
    data = body.encode("utf-8")
    parsed = _check_body(seq, data, stored_leaf)
    if parsed["kind"] != kind or parsed["recorded_at"] != log.recorded_at_text(recorded_at):
        raise VerifyError(f"entry {seq}: the kind or time column differs from the body (altered)",
                          vi=f"mục {seq}: cột loại mục hoặc thời gian khác với nội dung (đã bị sửa)",
                          seq=seq)
    return merkle.leaf_hash(data)


def _stored_nodes(conn: Connection, level: int, first: int, end: int) -> list[tuple[int, bytes]]:
    p = log._placeholder(conn)
    index = log._q(conn, "index")
    rows = conn.exec_driver_sql(
        f"SELECT {index}, hash FROM merkle_node WHERE level = {p} AND {index} >= {p} "  # noqa: S608
        f"AND {index} < {p} ORDER BY {index}", (level, first, end)
    ).all()
    return [(int(i), bytes(h)) for i, h in rows]


def _check_nodes(conn: Connection, new_nodes: list[tuple[int, int, bytes]]) -> None:
    """Compare the stored nodes (levels ≥ 8) a range of leaves created with the stored rows.

    An entry changed together with its leaf hash shows here as the level-8 node over it
    (entries 256·k … 256·k + 255); the last partial 256 entries have no stored node yet and
    rest on the next signed checkpoint (docs/audit-log.md, "Storage").
    """
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for level, index, h in new_nodes:
        if level >= log.MIN_STORED_LEVEL:
            by_level.setdefault(level, []).append((index, h))
    bad: set[tuple[int, int]] = set()
    for level, nodes in by_level.items():
        stored = dict(_stored_nodes(conn, level, nodes[0][0], nodes[-1][0] + 1))
        bad.update((level, index) for index, h in nodes if stored.get(index) != h)
    # A changed node changes every node above it: blame the nodes no bad child explains,
    # and name the earliest entries among them.
    causes = [(index << level, level, index) for level, index in bad
              if (level - 1, 2 * index) not in bad and (level - 1, 2 * index + 1) not in bad]
    if causes:
        _first, level, index = min(causes)
        raise _describe_node_mismatch(level, index)


def _thorough_pass(session: Session, size: int, targets: list[_Target], progress, batch: int,
                   start: int, tree: merkle.CompactRange) -> bytes:
    """Check every row, leaf, node and target from ``start``; raise VerifyError at the first fault."""
    conn = session.connection()
    by_size: dict[int, list[_Target]] = {}
    for target in targets:
        by_size.setdefault(target.size, []).append(target)
    previous = start
    cuts = sorted({t.size for t in targets if t.size > start}
                  | set(range(start + batch, size, batch)) | {size})
    _thorough_check(tree, by_size.get(start, ()), previous)
    e = AuditEntry
    for end in cuts:
        if end <= start:
            continue
        rows = session.execute(
            select(e.seq, e.body, e.leaf_hash, e.kind, e.recorded_at)
            .where(e.seq >= start, e.seq < end).order_by(e.seq)
        ).all()
        expected = start
        leaves = []
        for seq, body, stored_leaf, kind, recorded_at in rows:
            if seq != expected:
                raise VerifyError(f"entry {expected}: missing (removed)",
                              vi=f"mục {expected}: bị mất (đã bị xóa)", seq=expected)
            leaves.append(_check_row(seq, body, stored_leaf, kind, recorded_at))
            expected += 1
        if expected != end:
            raise VerifyError(f"entry {expected}: missing (removed)",
                              vi=f"mục {expected}: bị mất (đã bị xóa)", seq=expected)
        _check_nodes(conn, tree.append(leaves, log.MIN_STORED_LEVEL))
        if end in by_size:
            _thorough_check(tree, by_size[end], previous)
            previous = end
        start = end
        if progress:
            progress(end)
    return tree.root()


def _thorough_check(tree: merkle.CompactRange, targets: Iterable[_Target], previous: int) -> None:
    root = tree.root()
    for target in targets:
        if root != target.root:
            raise VerifyError(
                f"{target.label}: the entries do not reproduce its signed root: the log was "
                f"rewritten after it was signed (somewhere in entries {previous}..{tree.size - 1},"
                " with every hash recomputed)",
                vi=f"{vi_label(target.label)}: các mục không tái tạo được gốc đã ký: nhật ký đã bị "
                   f"viết lại sau khi ký (ở đâu đó trong các mục {previous}..{tree.size - 1}, mọi "
                   "mã băm được tính lại)", checkpoint=target.label, seq=previous,
            )


def _check_border(conn: Connection, tree: merkle.CompactRange) -> None:
    """Name the stored border node that differs from the recomputed one."""
    border = tree.border()
    stored = log.fetch_nodes(conn, [(level, index) for level, index, _h in border])
    for level, index, h in border:
        if stored.get((level, index)) != h:
            if level < log.MIN_STORED_LEVEL:
                # Computed from the stored leaf hashes under it: name the one that is wrong.
                _check_leaf_hashes(conn, index << level, (index + 1) << level)
            raise _describe_node_mismatch(level, index)
    raise VerifyError("the stored tree border does not match the entries: the node table was "
                      "altered", vi="đường biên cây lưu không khớp các mục: bảng nút đã bị sửa")


def _check_head_border(conn: Connection, size: int) -> None:
    """Refuse a head whose kept border (``audit_head.border``) is not the verified tree's.

    The next append would build its nodes, roots and checkpoints on it. Run last: by then the
    stored nodes of the border are known to match the entries. A border kept for another size
    is ignored, as appends ignore it.
    """
    blob = conn.exec_driver_sql("SELECT border FROM audit_head WHERE id = 1").scalar()
    kept = log.border_from_blob(None if blob is None else bytes(blob), size)
    if kept is None:
        return
    ids = merkle.subtree_ranges_for_root(size)
    stored = log.fetch_nodes(conn, ids)
    if [stored.get(node) for node in ids] != kept:
        raise VerifyError(
            "the tree border kept on the head row does not match the entries: it was altered, and "
            "the next append would build on it",
            vi="đường biên cây giữ ở dòng đầu nhật ký không khớp các mục: đã bị sửa, và lần ghi "
               "tiếp theo sẽ dựng trên nó")


def stored_node_count(size: int) -> int:
    """Return how many merkle_node rows a trail of ``size`` entries has (levels ≥ 8).

    Level L holds size >> L complete nodes; with m = size >> 7 the sum over L ≥ 8 is the sum
    over k ≥ 1 of m >> k, which is m - popcount(m).
    """
    top = size >> (log.MIN_STORED_LEVEL - 1)
    return top - top.bit_count()


def _check_leaf_hashes(conn: Connection, start: int, end: int) -> None:
    """Raise VerifyError at the first entry in [start, end) whose stored leaf hash is not its body's."""
    p = log._placeholder(conn)
    rows = conn.exec_driver_sql(
        f"SELECT seq, body, leaf_hash FROM audit_entry WHERE seq >= {p} AND seq < {p} "  # noqa: S608
        "ORDER BY seq", (start, end)).all()
    for seq, body, stored_leaf in rows:
        if merkle.leaf_hash(body.encode("utf-8")) != bytes(stored_leaf):
            raise VerifyError(f"entry {seq}: its stored leaf hash does not match its body "
                              "(altered)", vi=f"mục {seq}: mã băm lá đã lưu không khớp nội "
                              "dung (đã bị sửa)", seq=seq)


def _count_nodes(conn: Connection, size: int) -> None:
    """The node table must hold exactly the complete nodes of level ≥ 8, no more, no fewer."""
    count = conn.exec_driver_sql("SELECT count(*) FROM merkle_node").scalar_one()
    expected = stored_node_count(size)
    if count != expected:
        raise VerifyError(f"the node table holds {count} tree nodes, a tree of {size} entries "
                          f"has {expected}: nodes were added or removed",
                          vi=f"bảng nút có {count} nút, cây {size} mục phải có {expected}: nút đã "
                             "bị thêm hoặc xóa")


def _stored_root(session: Session, size: int) -> bytes | None:
    """Return the root the stored nodes give (what the next checkpoint would sign), or None."""
    try:
        return log.root_at(session, size)
    except LookupError:
        return None


def verify_log(
    session: Session,
    verifier_keys: Iterable[str | VerifierKey],
    *,
    origin: str | None = None,
    external_notes: Sequence[str | tuple[str, str]] = (),
    progress: Callable[[int], None] | None = None,
    deep: bool = False,
    batch: int = FAST_BATCH,
) -> VerifyReport:
    """Verify every entry, the tree, the stored checkpoints and any kept ones; raise VerifyError.

    ``verifier_keys`` are the only keys trusted; ``origin`` (the log's name) is required of
    every checkpoint when given. ``external_notes`` are checkpoints kept outside the server,
    as note text or (label, text). ``deep`` adds the row-by-row checks of every entry's body,
    columns and every stored tree node.
    """
    keys = _trusted_keys(verifier_keys)
    conn = session.connection()
    size = log.tree_size(session)
    workers = None if deep else _start_workers(conn, size)
    proven: list[tuple[int, merkle.CompactRange]] = []
    root: bytes | None = None
    try:
        targets, stored_count, external_sizes = _collect_targets(
            conn, keys, origin, external_notes, size
        )
        _check_numbering(conn, size)
        if not deep:
            try:
                root = _fast_pass(conn, size, targets, progress, batch, proven, workers)
                if _stored_root(session, size) != root:
                    raise _Mismatch
            except _Mismatch:
                root = None
    finally:
        if workers is not None:
            workers.close()
    if root is None:
        start, tree = proven[-1] if proven else (0, merkle.CompactRange())
        root = _thorough_pass(session, size, targets, progress, THOROUGH_BATCH, start, tree)
        if deep:
            _count_nodes(conn, size)
        if _stored_root(session, size) != root:
            _check_border(conn, tree)
    _check_head_border(conn, size)
    return VerifyReport(size=size, root=root, checkpoints=stored_count, external=external_sizes,
                        is_deep=deep, last_signed_size=max((t.size for t in targets), default=0))
