"""From access records to events and attributions: who opened, read or wrote which file.

The AccessTracker is the sink of every access monitor (fanotify, inotify, the Windows
Security log). It runs on the monitor's thread and does only memory work under one short
lock, so a monitor answering fanotify permission requests is never held up by a thread that
is itself waiting for an open. It

- folds repeated opens and reads of one file by one program into one summary (one ``open`` or
  ``read`` event with a ``count``), which the watcher's worker takes when due: a summary is due
  once the program has left the file alone for ``quiet`` seconds (so a single opening reaches
  the server within a fraction of a second) or ``window`` seconds after it began, whichever
  comes first; after that, further accesses by the same program within ``window`` are folded
  into one follow-up summary due at the window's end (at most two events a window, however
  often a program polls a file);
- remembers, for a while and for a bounded number of files, the last writer of each file, the
  last reader of each protected file and the last program that deleted or renamed it away,
  so that a copy, move, creation, modification or deletion is attributed to a user and a
  program;
- drops the agent's own accesses (by pid; without pids, by the moments it reads a file
  itself), ignored programs (virus scanners, backup tools), ignored names and the spool.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from canhgac_agent.access import AccessRecord, ProcessInfo

PROTECTED = "protected"
RECENT_SECONDS = 600.0
MAX_RECENT = 4096
MAX_PENDING = 50_000
TAKE_LIMIT = 1000
# An inotify record arrives a moment after the open it reports.
OWN_READ_GRACE_SECONDS = 0.5
# A program that has left a file alone this long is done with it for now.
QUIET_SECONDS = 0.05
# Stands in the writers' table for the agent itself: a copy the agent wrote is known to have
# no other writer, so nobody waits for one.
_AGENT = ProcessInfo(name="(canhgac-agent)")


@dataclass(frozen=True)
class AccessSummary:
    """Repeated accesses of one file by one program, folded into one event."""

    path: str
    process: ProcessInfo | None
    first_at: float
    opens: int
    is_read: bool


@dataclass
class _Pending:
    path: str
    process: ProcessInfo | None
    first_at: float
    due: float
    opens: int = 0
    is_read: bool = False
    # The latest the summary may wait (debouncing never pushes it past this).
    deadline: float = float("inf")
    # A follow-up inside a window that already produced an event: due at the window's end.
    is_follow_up: bool = False


class _Recent:
    """A bounded, time-limited table of the last process seen per file key."""

    def __init__(self, max_entries: int, max_age: float) -> None:
        self._max = max_entries
        self._max_age = max_age
        self._entries: OrderedDict[str, tuple[ProcessInfo, float]] = OrderedDict()

    def put(self, key: str, process: ProcessInfo, at: float) -> None:
        self._entries[key] = (process, at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def get(self, key: str, now: float) -> ProcessInfo | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if now - found[1] > self._max_age:
            del self._entries[key]
            return None
        return found[0]

    def pop(self, key: str) -> tuple[ProcessInfo, float] | None:
        return self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def program_matcher(programs: Iterable[str], *, casefold: bool = False) -> Callable[
        [ProcessInfo | None], bool]:
    """Return a test of whether a process is one of *programs* (full paths or bare names)."""
    norm = (lambda s: s.casefold()) if casefold else (lambda s: s)
    full = {norm(p) for p in programs if "/" in p or "\\" in p}
    names = {norm(p) for p in programs if "/" not in p and "\\" not in p}

    def matches(process: ProcessInfo | None) -> bool:
        if process is None or not (full or names):
            return False
        if process.path and norm(process.path) in full:
            return True
        if norm(process.name) in names:
            return True
        return bool(process.path) and norm(os.path.basename(process.path)) in names

    return matches


class AccessTracker:
    """Fold access records into summaries and keep who last wrote and read each file."""

    def __init__(
        self,
        *,
        window: float,
        classify: Callable[[str], str | None],
        key: Callable[[str], str],
        is_ignored_path: Callable[[str], bool] = lambda path: False,
        ignore_programs: Iterable[str] = (),
        casefold_programs: bool = False,
        own_pid: int | None = None,
        on_pending: Callable[[float], None] = lambda delay: None,
        quiet: float = QUIET_SECONDS,
        recent_seconds: float = RECENT_SECONDS,
        max_recent: int = MAX_RECENT,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.quiet = min(quiet, window)
        self._classify = classify
        self._key = key
        self._is_ignored_path = is_ignored_path
        self._is_ignored_program = program_matcher(ignore_programs, casefold=casefold_programs)
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._on_pending = on_pending
        self._max_pending = max_pending
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[tuple[int | None, str], _Pending] = {}
        # When a summary of each (pid, file) was last taken: later accesses within the window
        # wait for its end (bounded like the pending table; old marks are pruned as taken).
        self._taken_at: OrderedDict[tuple[int | None, str], float] = OrderedDict()
        self._armed_due: float | None = None
        self._writers = _Recent(max_recent, recent_seconds)
        self._readers = _Recent(max_recent, recent_seconds)
        self._removers = _Recent(max_recent, recent_seconds)
        self._own_reads: OrderedDict[str, list[float]] = OrderedDict()
        self.dropped = 0

    # --- intake (monitor thread) ---

    def add(self, records: list[AccessRecord]) -> None:
        """Take a batch of records from a monitor (the AccessSink)."""
        now = self._clock()
        arm_in: float | None = None
        with self._cond:
            for record in records:
                process = record.process
                if process is not None and process.pid == self._own_pid:
                    if record.kind == "write":
                        self._writers.put(self._key(record.path), _AGENT, now)
                        self._cond.notify_all()
                    continue
                if self._is_ignored_path(record.path):
                    continue
                key = self._key(record.path)
                if process is None and self._is_own_read(key, record.at):
                    continue
                if record.kind in ("write", "delete", "rename"):
                    if process is not None:
                        table = self._writers if record.kind == "write" else self._removers
                        table.put(key, process, now)
                        self._cond.notify_all()
                    continue
                if self._is_ignored_program(process):
                    continue
                if self._classify(record.path) != PROTECTED:
                    continue  # an open in an egress folder only taught the monitor the process
                if process is not None:
                    self._readers.put(key, process, now)
                slot = (process.pid if process is not None else None, key)
                pending = self._pending.get(slot)
                if pending is None:
                    if len(self._pending) >= self._max_pending:
                        self.dropped += 1
                        arm_in = 0.0
                        continue
                    taken_at = self._taken_at.get(slot)
                    if taken_at is not None and now - taken_at < self.window:
                        # This program's use of the file was reported a moment ago: fold
                        # what follows into one summary at the end of that window.
                        end = taken_at + self.window
                        pending = _Pending(record.path, process, record.at, end, deadline=end,
                                           is_follow_up=True)
                    else:
                        pending = _Pending(record.path, process, record.at, now + self.quiet,
                                           deadline=now + self.window)
                    self._pending[slot] = pending
                elif not pending.is_follow_up:
                    # Still busy with the file: wait for a quiet moment, not past the window.
                    pending.due = min(now + self.quiet, pending.deadline)
                if record.kind == "open":
                    pending.opens += 1
                else:
                    pending.is_read = True
                if self._armed_due is None or pending.due < self._armed_due:
                    self._armed_due = pending.due
                    arm_in = max(0.0, pending.due - now) if arm_in is None else 0.0
        if arm_in is not None:
            self._on_pending(arm_in)

    # --- summaries (worker thread) ---

    def take_due(self, *, force: bool = False, limit: int = TAKE_LIMIT) -> tuple[
            list[AccessSummary], float | None]:
        """Return the summaries whose window has ended, and the delay until the next one."""
        now = self._clock()
        full = len(self._pending) >= self._max_pending
        taken: list[AccessSummary] = []
        next_due: float | None = None
        with self._cond:
            for slot, pending in list(self._pending.items()):
                if len(taken) < limit and (force or full or pending.due <= now):
                    del self._pending[slot]
                    taken.append(AccessSummary(pending.path, pending.process, pending.first_at,
                                               max(pending.opens, 1), pending.is_read))
                    if not pending.is_follow_up:
                        self._taken_at[slot] = now
                        self._taken_at.move_to_end(slot)
                elif next_due is None or pending.due < next_due:
                    next_due = pending.due
            while self._taken_at and (
                len(self._taken_at) > self._max_pending
                or now - next(iter(self._taken_at.values())) >= self.window
            ):
                self._taken_at.popitem(last=False)
            self._armed_due = next_due
        return taken, (None if next_due is None else max(0.0, next_due - now))

    def restore(self, summaries: list[AccessSummary]) -> None:
        """Put back summaries that could not be stored (spool full); they are due at once."""
        now = self._clock()
        with self._cond:
            for summary in summaries:
                pid = summary.process.pid if summary.process is not None else None
                self._pending.setdefault((pid, self._key(summary.path)), _Pending(
                    summary.path, summary.process, summary.first_at, now, summary.opens,
                    summary.is_read, deadline=now))
            self._armed_due = now

    def pending_count(self) -> int:
        """Return how many summaries are still inside their window."""
        with self._cond:
            return len(self._pending)

    # --- attribution ---

    def writer_of(self, path: str, *, wait: float = 0.0) -> ProcessInfo | None:
        """Return the last process that wrote *path*, waiting up to *wait* s for its record."""
        key = self._key(path)
        deadline = self._clock() + wait
        with self._cond:
            while True:
                found = self._writers.get(key, self._clock())
                remaining = deadline - self._clock()
                if found is not None or remaining <= 0:
                    return None if found is _AGENT else found
                self._cond.wait(remaining)

    def reader_of(self, path: str) -> ProcessInfo | None:
        """Return the last process that opened or read the protected file *path*."""
        with self._cond:
            return self._readers.get(self._key(path), self._clock())

    def remover_of(self, path: str) -> ProcessInfo | None:
        """Return the last process that deleted *path* or renamed it away."""
        with self._cond:
            return self._removers.get(self._key(path), self._clock())

    def moved(self, src: str, dest: str) -> None:
        """Carry what is known of *src* over to *dest* (an editor's save by rename)."""
        with self._cond:
            for table in (self._writers, self._readers):
                found = table.pop(self._key(src))
                if found is not None:
                    table.put(self._key(dest), *found)

    # --- the agent's own reads, for monitors that give no pid ---

    @contextlib.contextmanager
    def own_read(self, path: str) -> Iterator[None]:
        """Mark the agent's own reading of *path*, so process-less records of it are dropped."""
        key = self._key(path)
        span = [time.time(), float("inf")]
        with self._cond:
            self._own_reads[key] = span
            self._own_reads.move_to_end(key)
            while len(self._own_reads) > MAX_RECENT:
                self._own_reads.popitem(last=False)
        try:
            yield
        finally:
            span[1] = time.time()

    def _is_own_read(self, key: str, at: float) -> bool:
        span = self._own_reads.get(key)
        return span is not None and span[0] - 0.05 <= at <= span[1] + OWN_READ_GRACE_SECONDS

    def wrap_reader(self, function: Callable) -> Callable:
        """Return *function* (which reads the file named by its first argument) marked as ours."""
        def wrapped(path, *args, **kwargs):
            with self.own_read(os.fsdecode(path)):
                return function(path, *args, **kwargs)

        return wrapped
