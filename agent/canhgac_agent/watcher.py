"""Watch protected and egress folders; turn file-system noise into attributed events.

Observer threads (watchdog) only record *that* something happened to a path. One worker
thread then looks at the file as it is now and decides what it means:

- a file that appears in an egress folder (USB stick, cloud sync, Zalo, Downloads, ...) and
  has the bytes (sha256) or the content (content fingerprint) of a protected file becomes
  ONE ``copy`` event naming the protected source — or ``move`` when the source just
  disappeared from protected scope; an unmatched file that holds personal data becomes a
  ``create`` event; everything else is ignored;
- a protected file whose bytes change → ``modify``; one that disappears and does not
  reappear (editors save by rename) or turn up in an egress folder within
  ``delete_settle_seconds`` → ``delete``.

One copy raises several OS events (created, modified×n, closed); they share one pending
task per path, and the egress bookkeeping (size, mtime, sha256 already examined) makes the
result exactly one event, also across restarts.

An access monitor (fanotify as root, inotify otherwise; ``canhgac_agent.monitors``) reports
opens, reads and writes into an AccessTracker: repeated opens of a protected file by one
program become one ``open``/``read`` event with a ``count``, and copies, moves, creations and
modifications name the user and program that wrote the file (or last read its source).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import stat
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from canhgac_agent import paths
from canhgac_agent.access import AccessMonitor, ProcessInfo
from canhgac_agent.attribution import AccessSummary, AccessTracker
from canhgac_agent.config import AgentConfig
from canhgac_agent.fingerprints import (
    FingerprintIndex,
    IndexedFile,
    SeenFile,
    scan_pii,
    walk_files,
)
from canhgac_agent.spool import Spool, SpoolFullError
from canhgac_common.events import (
    Action,
    Destination,
    DestinationKind,
    Device,
    Event,
    EventObject,
    Process,
)

logger = logging.getLogger("canhgac.agent")

# The actor of an event the OS did not attribute, when the agent runs as a service account.
UNATTRIBUTED = "unknown"


def unattributed_actor(is_service: bool | None = None) -> str:
    """Return who an event is put on when the OS does not say: the agent's own user when it
    runs as the official, "unknown" when it runs as root or SYSTEM — the service account never
    copies citizen files itself, and naming it would hide that the person is unknown."""
    from canhgac_agent.permissions import is_service_mode

    if is_service_mode() if is_service is None else is_service:
        return UNATTRIBUTED
    return paths.current_os_user()

PROTECTED = "protected"
EGRESS = "egress"

# Events the agent needs; opens, reads and close-without-write are left out of the kernel
# mask entirely, so reading files (ours or the user's) costs nothing.
EVENT_FILTER = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]
MOUNT_BASE_FILTER = [DirCreatedEvent, DirDeletedEvent]

# A second identical copy to the same place within this window is the same act.
REPORT_DEDUPE_SECONDS = 300.0
# Catch-up after a restart looks this much further back than the last "alive" mark.
CATCH_UP_MARGIN_SECONDS = 120.0
CATCH_UP_MAX_FILES = 50_000
ALIVE_EVERY_SECONDS = 60.0
SPOOL_FULL_RETRY_SECONDS = 30.0
MAX_RETRIES = 20
ALIVE_META_KEY = "egress_alive_at"
# How long an examined copy or modification waits for the monitor's record of its writer
# (fanotify and the watcher's inotify watch report the same close on two threads; the
# fanotify record is usually first, and later by tens of ms at worst while the agent scans).
WRITER_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class WatchRoot:
    """A watched folder: protected (official scope) or egress (data leaves scope here)."""

    path: str
    key: str
    role: str
    kind: str | None = None
    data_class: str | None = None
    is_auto: bool = False


@dataclass
class _Task:
    kind: str
    path: str
    due: float
    first_seen_at: float
    token: int = 0
    retries: int = 0
    moved_to: str | None = None


@dataclass
class _Tombstone:
    entry: IndexedFile
    gone_at: float


@dataclass
class WatcherStats:
    """Counters for logs and tests."""

    events: Counter = field(default_factory=Counter)
    tasks: int = 0
    hashed_egress: int = 0


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def _as_utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(min(epoch_seconds, time.time()), UTC)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher.on_fs_event(event)


class _MountBaseHandler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        # A mount point was created or removed under /media: look for media now and again
        # shortly after, since the directory appears just before the mount completes.
        self._watcher.request_removable_poll()


class Watcher:
    """Observers + one worker thread that turns file changes into spooled events."""

    def __init__(
        self,
        config: AgentConfig,
        spool: Spool,
        index: FingerprintIndex,
        *,
        platform: str | None = None,
        actor: str | None = None,
        removable_lister=None,
        mount_bases: list[str] | None = None,
        default_egress=None,
        access_mode: str = "auto",
        access_monitor: AccessMonitor | None = None,
        device_identifier=None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.index = index
        self.platform = platform or paths.current_platform()
        self.actor = _clip(actor or unattributed_actor(), 255) or UNATTRIBUTED
        self.host = config.host
        self._removable_lister = removable_lister or (lambda: paths.removable_media(self.platform))
        if mount_bases is None:
            mount_bases = self._default_mount_bases()
        self._mount_bases = mount_bases
        self._default_egress = default_egress or paths.existing_default_egress_folders
        # identity of removable media (vendor, model, serial, fs UUID): root path -> Device | None
        if device_identifier is None:
            from canhgac_agent.devices import DeviceIdentifier

            device_identifier = DeviceIdentifier(self.platform)
        self._devices = device_identifier
        self.stats = WatcherStats()
        self.ready = threading.Event()
        self._cond = threading.Condition()
        self._tasks: dict[tuple[str, str], _Task] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._counter = 0
        self._is_stopping = False
        self._is_busy = False
        self._tombstones: dict[str, _Tombstone] = {}
        self._recent_new: dict[str, tuple[str, float]] = {}
        self._roots: list[WatchRoot] = []
        self._watches: dict[str, object] = {}
        self._observer = Observer()
        self._worker = threading.Thread(target=self._run, name="canhgac-agent-worker", daemon=True)
        self._last_poll_at = time.time()
        spool_key = self._key(str(Path(config.spool_path).resolve()))
        self._own_keys = {spool_key + suffix for suffix in ("", "-wal", "-shm", "-journal")}
        self._access_mode_requested = access_mode
        self._access_dropped_said = 0
        self._monitor: AccessMonitor | None = access_monitor
        self.tracker = AccessTracker(
            window=config.access_window_seconds,
            classify=lambda path: getattr(self.classify(path), "role", None),
            key=self._key,
            is_ignored_path=self._is_ignored_path,
            ignore_programs=config.access_ignore_programs,
            casefold_programs=self.platform == paths.WINDOWS,
            on_pending=lambda delay: self._schedule("access", "", delay),
        )

    # --- set-up ---

    def _key(self, path: str) -> str:
        return paths.compare_key(path, self.platform)

    def _default_mount_bases(self) -> list[str]:
        if self.platform == paths.WINDOWS or not self.config.auto_detect_removable:
            return []
        user = paths.current_os_user()
        return [base for base in ("/media", f"/media/{user}", f"/run/media/{user}")
                if os.path.isdir(base)]

    def _make_root(self, path: str | Path, role: str, *, kind: str | None = None,
                   data_class: str | None = None, is_auto: bool = False) -> WatchRoot:
        resolved = os.path.abspath(str(path))
        return WatchRoot(resolved, self._key(resolved), role, kind, data_class, is_auto)

    def _configured_roots(self) -> list[WatchRoot]:
        roots = [self._make_root(r.path, PROTECTED, data_class=r.data_class)
                 for r in self.config.protected_roots]
        roots += [self._make_root(r.path, EGRESS, kind=r.kind) for r in self.config.egress_roots]
        if self.config.include_default_egress:
            roots += [self._make_root(path, EGRESS, kind=kind)
                      for path, kind in self._default_egress()]
        if self.config.auto_detect_removable:
            roots += [self._make_root(path, EGRESS, kind="removable", is_auto=True)
                      for path in self._removable_lister()]
        unique: dict[str, WatchRoot] = {}
        for root in roots:
            # First mention wins: protected before egress, configured before defaults.
            unique.setdefault(root.key, root)
        return list(unique.values())

    def start(self) -> None:
        """Start observers and the worker; the initial index scan runs beside the worker."""
        self._roots = self._configured_roots()
        self._start_access_monitor()
        for root in sorted(self._roots, key=lambda r: len(r.key)):
            self._schedule_watch(root)
        for base in self._mount_bases:
            try:
                self._observer.schedule(_MountBaseHandler(self), base, recursive=False,
                                        event_filter=MOUNT_BASE_FILTER)
            except OSError as exc:
                logger.info("cannot watch mount base %s: %s", base, exc)
        self._observer.start()
        self._worker.start()
        protected = sum(1 for r in self._roots if r.role == PROTECTED)
        logger.info(
            "Đang theo dõi %d thư mục được bảo vệ và %d nơi dữ liệu có thể ra ngoài / "
            "watching %d protected and %d egress folders",
            protected, len(self._roots) - protected, protected, len(self._roots) - protected,
        )

    def _start_access_monitor(self) -> None:
        if not self.config.watch_opens:
            self._monitor = None
            return
        try:
            if self._monitor is None:
                from canhgac_agent.monitors import open_access_monitor

                self._monitor = open_access_monitor(self._access_mode_requested, self.platform,
                                                    meta=self.spool)
            if self._monitor is None:
                return
            if self._monitor.mode == "inotify":
                # No pid to tell our own reads apart: the moments we read a file ourselves are.
                self.index.wrap_hasher(self.tracker.wrap_reader)
            self._monitor.start(self.tracker.add)
        except Exception:
            # Opens are one part of the watch: never a reason for the rest not to run.
            logger.exception("Không theo dõi được lượt mở tệp / cannot watch opens")
            monitor, self._monitor = self._monitor, None
            if monitor is not None:
                with contextlib.suppress(Exception):
                    monitor.stop()
            return
        logger.info("Theo dõi lượt mở tệp / watching opens: %s", self._monitor.mode)

    @property
    def access_mode(self) -> str:
        """Return how opens are watched: fanotify-perm, fanotify, inotify, ... or off."""
        return self._monitor.mode if self._monitor is not None else "off"

    @property
    def is_attributing(self) -> bool:
        """Tell whether the monitor names the process behind an access (fanotify, Security log)."""
        return self.access_mode not in ("off", "inotify")

    def _monitor_tree(self, path: str, root: WatchRoot | None = None) -> None:
        monitor = self._monitor
        root = root or self.classify(path)
        if monitor is None or root is None:
            return
        try:
            monitor.watch_tree(path, root.role,
                               is_mount=root.kind == "removable" and path == root.path)
        except Exception:
            logger.warning("Không theo dõi được lượt mở / cannot watch opens in %s",
                           paths.redact_for_log(path), exc_info=True)

    def _schedule_watch(self, root: WatchRoot) -> None:
        for other_key in self._watches:
            if paths.key_is_under(root.key, other_key, self.platform):
                return  # a recursive watch on an enclosing root already sees this one
        if not os.path.isdir(root.path):
            logger.warning("Thư mục không tồn tại, bỏ qua / folder missing, not watched: %s",
                           paths.redact_for_log(root.path))
            return
        try:
            watch = self._observer.schedule(_Handler(self), root.path, recursive=True,
                                            event_filter=EVENT_FILTER)
        except OSError as exc:
            logger.warning("Không theo dõi được / cannot watch %s: %s",
                           paths.redact_for_log(root.path), exc)
            return
        self._watches[root.key] = watch

    def _unschedule_watch(self, root: WatchRoot) -> None:
        watch = self._watches.pop(root.key, None)
        if watch is None:
            return
        # The emitter may already have stopped when the medium went away.
        with contextlib.suppress(KeyError, OSError):
            self._observer.unschedule(watch)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop observers and the worker; flush pending deletions; record the alive mark."""
        with self._cond:
            self._is_stopping = True
            self._cond.notify_all()
        if self._monitor is not None:
            self._monitor.stop()
        try:
            self._observer.stop()
            self._observer.join(timeout)
        except RuntimeError:
            pass  # never started
        if self._worker.is_alive():
            self._worker.join(timeout)
        if self._worker.is_alive():
            return  # stuck in a long hash: leave the marker as is, catch-up covers it
        for key in list(self._tombstones):
            self._expire(key, force=True)
        try:
            self._flush_access(force=True)
        except Exception:
            logger.warning("opens not stored at stop", exc_info=True)
        self._mark_alive()

    def is_idle(self) -> bool:
        """Tell whether no file is waiting to be examined (periodic chores aside)."""
        with self._cond:
            has_work = any(t.kind not in ("poll", "alive") for t in self._tasks.values())
        return self.ready.is_set() and not has_work and not self._is_busy

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the initial index scan is done."""
        return self.ready.wait(timeout)

    @property
    def roots(self) -> list[WatchRoot]:
        """Return the folders currently watched (protected and egress)."""
        return list(self._roots)

    # --- classification ---

    def classify(self, path: str) -> WatchRoot | None:
        """Return the most specific root containing *path* (protected wins a tie)."""
        key = self._key(path)
        best: WatchRoot | None = None
        for root in self._roots:
            if not paths.key_is_under(key, root.key, self.platform):
                continue
            if (
                best is None
                or len(root.key) > len(best.key)
                or (len(root.key) == len(best.key) and root.role == PROTECTED)
            ):
                best = root
        return best

    def _is_ignored_name(self, name: str) -> bool:
        return paths.is_ignored_name(name, self.config.ignore_patterns)

    def _is_ignored_path(self, path: str) -> bool:
        return self._key(path) in self._own_keys or self._is_ignored_name(os.path.basename(path))

    # --- event intake (observer threads) ---

    def on_fs_event(self, event: FileSystemEvent) -> None:
        """Record a watchdog event as a pending task (called from observer threads)."""
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        settle = self.config.settle_seconds
        kind = event.event_type
        if event.is_directory:
            if kind == "deleted":
                self._schedule("dirgone", src, 0)
            elif kind == "moved":
                self._schedule("dirgone", src, 0)
                if dest:
                    self._monitor_tree(dest)
                    self._schedule("dir", dest, settle)
            elif kind == "created":
                self._monitor_tree(src)  # fanotify/inotify marks are per folder
                self._schedule("dir", src, settle)
            return
        if kind == "closed":
            # inotify IN_CLOSE_WRITE: the writer is done, no need to wait.
            self._schedule("check", src, 0)
        elif kind in ("created", "modified"):
            self._schedule("check", src, settle)
        elif kind == "deleted":
            self._schedule("check", src, 0)
        elif kind == "moved":
            if src and dest:
                self.tracker.moved(src, dest)  # an editor saved by renaming its temp file
            if src:
                self._schedule("check", src, 0, moved_to=dest or None)
            if dest:
                self._schedule("check", dest, 0)

    def request_removable_poll(self) -> None:
        """Look for newly mounted media now and once more a moment later."""
        self._schedule("poll", "", 0.2)

    def _schedule(self, kind: str, path: str, delay: float, *, moved_to: str | None = None,
                  first_seen_at: float | None = None, retries: int = 0) -> None:
        key = (kind, self._key(path) if path else "")
        now = time.monotonic()
        with self._cond:
            self._counter += 1
            task = self._tasks.get(key)
            if task is None:
                task = _Task(kind, path, now + delay, first_seen_at or time.time(),
                             retries=retries)
                self._tasks[key] = task
            elif kind == "access":
                # The tracker's summaries fall due at different times: wake for the earliest
                # (a wake-up with nothing due just schedules the next one).
                task.due = min(task.due, now + delay)
            else:
                # A later event for the same path re-arms the settle timer; the first event
                # time stays, it is when the copy began.
                task.due = now + delay
                task.retries = max(task.retries, retries)
                if first_seen_at is not None:
                    task.first_seen_at = min(task.first_seen_at, first_seen_at)
            if moved_to:
                task.moved_to = moved_to
            task.token = self._counter
            heapq.heappush(self._heap, (task.due, self._counter, key))
            self._cond.notify()

    def _next_task(self) -> _Task | None:
        with self._cond:
            while not self._is_stopping:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, token, key = self._heap[0]
                task = self._tasks.get(key)
                if task is None or task.token != token:
                    heapq.heappop(self._heap)
                    continue
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                del self._tasks[key]
                self._is_busy = True  # under the lock: is_idle() never sees a gap
                return task
        return None

    # --- worker ---

    def _run_initial_scan(self) -> None:
        try:
            self._initial_scan()
        except Exception:
            logger.exception("Lỗi khi quét ban đầu / initial scan failed")
        finally:
            self.ready.set()

    def _run(self) -> None:
        # The first index build may take minutes (hashing and scanning every protected file);
        # it runs beside the worker so that egress files are looked at meanwhile.
        threading.Thread(target=self._run_initial_scan, name="canhgac-agent-scan",
                         daemon=True).start()
        while True:
            task = self._next_task()
            if task is None:
                return
            self.stats.tasks += 1
            try:
                self._process(task)
            except SpoolFullError as exc:
                logger.error("%s", exc)
                self._schedule(task.kind, task.path, SPOOL_FULL_RETRY_SECONDS,
                               first_seen_at=task.first_seen_at)
            except Exception:
                logger.exception("Lỗi khi xử lý / error while handling %s",
                                 paths.redact_for_log(task.path))
            finally:
                self._is_busy = False

    def _initial_scan(self) -> None:
        for root in list(self._roots):
            self._monitor_tree(root.path, root)
        protected = [r for r in self._roots if r.role == PROTECTED]
        self.index.prune_roots([r.path for r in protected])
        now = time.time()
        for root in protected:
            if not os.path.isdir(root.path):
                continue
            summary = self.index.scan_root(
                root.path,
                root.data_class,
                on_changed=lambda old, new, root=root: self._emit_modify(
                    new, new.mtime_ns / 1e9, root),
                is_ignored=self._is_ignored_name,
                prune_dir=lambda d, root=root: self.classify(d) is not root,
                should_stop=lambda: self._is_stopping,
            )
            for entry in summary.removed:
                # The worker owns pending deletions: let it look at the path itself.
                self._schedule("check", entry.path, 0, first_seen_at=now)
            logger.info(
                "Đã lập chỉ mục %d tệp (%d băm mới) trong %.1fs / indexed %d files "
                "(%d hashed) in %.1fs", summary.files, summary.hashed, summary.seconds,
                summary.files, summary.hashed, summary.seconds,
            )
        alive_at = self.spool.get_meta(ALIVE_META_KEY)
        if alive_at is not None:
            since = float(alive_at) - CATCH_UP_MARGIN_SECONDS
            for root in self._roots:
                if root.role == EGRESS:
                    self._catch_up(root, since)
        else:
            # First run: what is already in Downloads or on a stick predates the agent and
            # is not reported; from now on a crash is covered by the catch-up above.
            self._mark_alive()
        self._schedule("alive", "", ALIVE_EVERY_SECONDS)
        if self.config.auto_detect_removable:
            self._schedule("poll", "", self.config.removable_poll_seconds)

    def _catch_up(self, root: WatchRoot, since: float) -> None:
        # Files written into an egress folder while the agent was not watching it.
        examined = 0
        for entry in walk_files(root.path, self._is_ignored_name,
                                lambda d: self.classify(d) is not root,
                                lambda: self._is_stopping):
            examined += 1
            if examined > CATCH_UP_MAX_FILES:
                logger.warning("catch-up stopped after %d files", CATCH_UP_MAX_FILES)
                return
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            changed_at = max(st.st_mtime, st.st_ctime)
            if changed_at >= since:
                self._schedule("check", entry.path, 0, first_seen_at=changed_at)

    def _process(self, task: _Task) -> None:
        if task.kind == "check":
            self._check(task)
        elif task.kind == "expire":
            self._expire(self._key(task.path))
        elif task.kind == "dir":
            for entry in walk_files(task.path, self._is_ignored_name,
                                    should_stop=lambda: self._is_stopping):
                self._schedule("check", entry.path, self.config.settle_seconds,
                               first_seen_at=task.first_seen_at)
        elif task.kind == "dirgone":
            for entry in self.index.under(task.path):
                self._schedule("check", entry.path, 0, first_seen_at=task.first_seen_at)
        elif task.kind == "poll":
            self._refresh_removable()
            self._schedule("poll", "", self.config.removable_poll_seconds)
        elif task.kind == "alive":
            self._mark_alive()
            self._schedule("alive", "", ALIVE_EVERY_SECONDS)
        elif task.kind == "access":
            self._flush_access()

    def _check(self, task: _Task) -> None:
        if self._is_ignored_path(task.path):
            return
        root = self.classify(task.path)
        if root is None:
            return
        if root.role == PROTECTED:
            self._check_protected(task, root)
        else:
            self._check_egress(task, root)

    def _retry(self, task: _Task) -> None:
        if task.retries < MAX_RETRIES:
            self._schedule(task.kind, task.path, max(self.config.settle_seconds, 0.2),
                           first_seen_at=task.first_seen_at, retries=task.retries + 1)

    # --- protected files ---

    def _check_protected(self, task: _Task, root: WatchRoot) -> None:
        path = task.path
        key = self._key(path)
        if task.moved_to and not os.path.lexists(path):
            target = self.classify(task.moved_to)
            if (
                target is not None
                and target.role == PROTECTED
                and not self._is_ignored_path(task.moved_to)
            ):
                # A rename inside official scope: carry the entry over, no rehash, no event.
                self.index.rename(path, task.moved_to, target.path)
                return
        previous, current = self.index.measure(path, root.data_class)
        if current is None:
            try:
                is_regular_file = stat.S_ISREG(os.lstat(path).st_mode)
            except OSError:
                is_regular_file = False
            if is_regular_file:
                self._retry(task)  # exists but unreadable right now (locked by an editor)
            elif previous is not None and key not in self._tombstones:
                self._bury(previous, task.first_seen_at)
            return
        tombstone = self._tombstones.pop(key, None)
        if tombstone is not None and previous is None:
            previous = tombstone.entry
        if previous is None:
            # New in protected scope; if it is a file that just left another protected
            # path, that was a rename/move within scope: forget the old path quietly.
            moved = self._pop_tombstone(sha256=current.sha256)
            if moved is not None:
                self.index.remove(moved.entry.path)
            else:
                self._note_new_protected(current)
        elif previous.sha256 != current.sha256:
            self._emit_modify(current, task.first_seen_at, root)
            return
        if current != previous:
            self.index.upsert(current, root.path)

    def _note_new_protected(self, entry: IndexedFile) -> None:
        now = time.monotonic()
        horizon = now - max(30.0, 4 * self.config.delete_settle_seconds)
        self._recent_new = {sha: seen for sha, seen in self._recent_new.items()
                            if seen[1] >= horizon}
        self._recent_new[entry.sha256] = (entry.path, now)

    def _bury(self, entry: IndexedFile, gone_at: float) -> None:
        recent = self._recent_new.get(entry.sha256)
        if recent is not None and recent[0] != entry.path and os.path.lexists(recent[0]):
            # The same bytes just appeared elsewhere in scope: a rename whose "created" half
            # arrived first (a new sub-folder is watched a moment after it is made).
            del self._recent_new[entry.sha256]
            self.index.remove(entry.path)
            return
        # Wait before calling it a deletion: an editor's safe-save or a move to a USB stick
        # shows up as "gone" first.
        self._tombstones[self._key(entry.path)] = _Tombstone(entry, gone_at)
        self._schedule("expire", entry.path, self.config.delete_settle_seconds)

    def _pop_tombstone(self, *, sha256: str | None = None,
                       content_fingerprint: str | None = None) -> _Tombstone | None:
        for key, tombstone in self._tombstones.items():
            if (sha256 and tombstone.entry.sha256 == sha256) or (
                content_fingerprint and tombstone.entry.content_fingerprint == content_fingerprint
            ):
                del self._tombstones[key]
                return tombstone
        return None

    def _expire(self, key: str, *, force: bool = False) -> None:
        tombstone = self._tombstones.get(key)
        if tombstone is None:
            return
        path = tombstone.entry.path
        if os.path.lexists(path):
            if force:  # stopping: the next start-up scan compares it with the index
                del self._tombstones[key]
            else:
                self._schedule("check", path, 0)  # back again: the check decides
            return
        del self._tombstones[key]
        self._emit(Action.DELETE, self._object(tombstone.entry), pii=tombstone.entry.pii,
                   at=tombstone.gone_at, also=[self.index.remove_statement(path)],
                   process=self.tracker.remover_of(path))

    # --- egress folders ---

    def _check_egress(self, task: _Task, root: WatchRoot) -> None:
        path = task.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError:
            self._retry(task)
            return
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return  # symlinks are not followed; an empty file carries nothing (yet)
        seen = self.index.egress_seen(path)
        if seen is not None and (seen.size, seen.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return  # this state was already examined (the other events of the same copy)
        from canhgac_common.pii.fingerprint import content_fingerprint, file_sha256

        try:
            sha = file_sha256(path)
            after = os.lstat(path)
        except OSError:
            self._retry(task)  # still being written, or locked by the copying program
            return
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            self._retry(task)
            return
        self.stats.hashed_egress += 1
        now = time.time()
        if (
            seen is not None
            and seen.sha256 == sha
            and seen.reported_at is not None
            and now - seen.reported_at < REPORT_DEDUPE_SECONDS
        ):
            self.index.mark_egress_seen(path, SeenFile(st.st_size, st.st_mtime_ns, sha,
                                                       seen.reported_at))
            return
        action, source, tombstone = self._match(sha=sha)
        if source is None and not self.ready.is_set():
            # The index is still being built: the source may not be in it yet. Look again.
            self._schedule(task.kind, task.path, 1.0, first_seen_at=task.first_seen_at)
            return
        dest_fingerprint = None
        is_exact = source is not None
        if source is None:
            try:
                dest_fingerprint = content_fingerprint(
                    path, max_bytes=self.config.scan.max_bytes,
                    max_seconds=self.config.scan.max_seconds)
            except Exception:
                logger.debug("content fingerprint failed", exc_info=True)
            if dest_fingerprint:
                action, source, tombstone = self._match(content_fingerprint=dest_fingerprint)
        if is_exact and source.pii is not None:
            # Same bytes, same counts: no need to read the copy again (fast path).
            counts, record_count = source.pii, source.record_count
        else:
            counts, record_count = scan_pii(path, max_bytes=self.config.scan.max_bytes,
                                            max_seconds=self.config.scan.max_seconds)
        event_object: EventObject | None = None
        if source is not None:
            event_object = self._object(source, record_count=record_count)
        elif counts:
            action = Action.CREATE
            event_object = EventObject(path=_clip(path, 4096), sha256=sha, size=st.st_size,
                                       record_count=record_count,
                                       content_fingerprint=dest_fingerprint)
        if event_object is None:
            reported_at = seen.reported_at if seen is not None and seen.sha256 == sha else None
            self.index.mark_egress_seen(path, SeenFile(st.st_size, st.st_mtime_ns, sha,
                                                       reported_at))
            return
        # The event, "this file was examined" and (for a move) forgetting the source commit
        # together: a crash can neither lose the event nor report the copy twice.
        also = [self.index.egress_seen_statement(
            path, SeenFile(st.st_size, st.st_mtime_ns, sha, now))]
        if tombstone is not None:
            also.append(self.index.remove_statement(tombstone.entry.path))
        process = self._attribute(action, path, source)
        device = self._devices.identify(root.path) if root.kind == "removable" else None
        self._emit(action, event_object, destination=path, kind=root.kind, pii=counts,
                   at=task.first_seen_at, also=also, process=process, device=device)

    def _match(
        self, *, sha: str | None = None, content_fingerprint: str | None = None
    ) -> tuple[Action, IndexedFile | None, _Tombstone | None]:
        if sha:
            candidates = self.index.all_by_sha256(sha)
        else:
            candidates = self.index.all_by_content(content_fingerprint or "")
        # A protected file that still exists was copied...
        for entry in candidates:
            if self._key(entry.path) not in self._tombstones and os.path.lexists(entry.path):
                return Action.COPY, entry, None
        # ...one pending deletion that shows up here was moved...
        tombstone = self._pop_tombstone(sha256=sha, content_fingerprint=content_fingerprint)
        if tombstone is not None:
            return Action.MOVE, tombstone.entry, tombstone
        # ...and so was one that left before its own deletion event was handled (moves
        # between two watches arrive as "created here" + "deleted there", in either order).
        for entry in candidates:
            if self._key(entry.path) not in self._tombstones:
                return Action.MOVE, entry, _Tombstone(entry, time.time())
        return Action.COPY, None, None

    # --- removable media ---

    def _refresh_removable(self) -> None:
        if not self.config.auto_detect_removable:
            return
        poll_started = time.time()
        mounted = {self._key(p): p for p in self._removable_lister()}
        known = {r.key: r for r in self._roots if r.is_auto}
        # Replace the list instead of changing it: other threads iterate over it.
        for key, root in known.items():
            if key not in mounted:
                self._roots = [r for r in self._roots if r is not root]
                self._unschedule_watch(root)
                self._devices.forget(root.path)
                logger.info("Thiết bị đã rút / removable medium removed: %s",
                            paths.redact_for_log(root.path))
        configured = {r.key for r in self._roots}
        for key, path in mounted.items():
            if key in known or key in configured:
                continue
            root = self._make_root(path, EGRESS, kind="removable", is_auto=True)
            self._roots = [*self._roots, root]
            self._schedule_watch(root)
            self._monitor_tree(root.path, root)
            logger.info("Phát hiện thiết bị lưu trữ di động / removable medium found: %s",
                        paths.redact_for_log(path))
            # Files copied between the mount and this poll were not seen by a watch.
            self._catch_up(root, self._last_poll_at - 5.0)
        self._last_poll_at = poll_started

    def _mark_alive(self) -> None:
        # Everything changed before this moment has been examined (pending tasks excepted).
        with self._cond:
            oldest = min((t.first_seen_at for t in self._tasks.values() if t.kind == "check"),
                         default=time.time())
        try:
            self.spool.set_meta(ALIVE_META_KEY, repr(min(oldest, time.time())))
        except Exception:
            logger.warning("cannot record alive mark", exc_info=True)

    # --- events ---

    def _object(self, entry: IndexedFile, *, record_count: int | None = None) -> EventObject:
        return EventObject(
            path=_clip(entry.path, 4096), sha256=entry.sha256, size=entry.size,
            record_count=record_count if record_count is not None else entry.record_count,
            data_class=entry.data_class, content_fingerprint=entry.content_fingerprint,
        )

    def _attribute(self, action: Action, path: str, source: IndexedFile | None,
                   ) -> ProcessInfo | None:
        # A move names the program that took the file away (a rename writes nothing); a
        # copy names the writer of the copy; failing both, the last reader of the source.
        if source is None:
            return self._writer(path)
        if action == Action.MOVE:
            process = self.tracker.remover_of(source.path) or self._writer(path)
        else:
            process = self._writer(path)
        return process or self.tracker.reader_of(source.path)

    def _writer(self, path: str) -> ProcessInfo | None:
        # Only a monitor that names processes is worth waiting for.
        wait = WRITER_WAIT_SECONDS if self.is_attributing and self.ready.is_set() else 0.0
        return self.tracker.writer_of(path, wait=wait)

    def _emit_modify(self, entry: IndexedFile, at: float, root: WatchRoot) -> None:
        self._emit(Action.MODIFY, self._object(entry), pii=entry.pii, at=at,
                   also=[self.index.upsert_statement(entry, root.path)],
                   process=self._writer(entry.path))

    def _flush_access(self, *, force: bool = False) -> None:
        summaries, next_delay = self.tracker.take_due(force=force)
        try:
            events: list[Event] = []
            for summary in summaries:
                try:
                    event = self._access_event(summary)
                except Exception:  # one odd record must not stop the others
                    logger.warning("open/read event dropped", exc_info=True)
                    continue
                if event is not None:
                    events.append(event)
            try:
                self._store(events)
            except SpoolFullError:
                self.tracker.restore(summaries)  # the worker retries this task later
                raise
            if events:
                logger.debug("%d open/read events stored", len(events))
            dropped = self.tracker.dropped - self._access_dropped_said
            if dropped:
                logger.warning("%d lượt mở bị bỏ vì quá nhiều tệp đang chờ / %d opens dropped: "
                               "too many files pending", dropped, dropped)
                self._access_dropped_said += dropped
        finally:
            # Whatever happened, the summaries still inside their window get their turn.
            if next_delay is not None and not force:
                self._schedule("access", "", next_delay)

    def _access_event(self, summary: AccessSummary) -> Event | None:
        root = self.classify(summary.path)
        if root is None or root.role != PROTECTED:
            return None
        # The index already knows the digest and the data class: no file is read here.
        entry = self.index.get(summary.path)
        if entry is not None:
            event_object, pii = self._object(entry), entry.pii
        else:
            event_object, pii = EventObject(path=_clip(summary.path, 4096),
                                            data_class=root.data_class), None
        return self._event(Action.READ if summary.is_read else Action.OPEN, event_object,
                           pii=pii, at=summary.first_at, process=summary.process,
                           count=summary.opens if summary.opens > 1 else None)

    def _emit(self, action: Action, event_object: EventObject, *, destination: str | None = None,
              kind: str | None = None, pii: dict[str, int] | None = None, at: float,
              also: list[tuple[str, tuple]] | None = None, process: ProcessInfo | None = None,
              count: int | None = None, device: Device | None = None) -> Event:
        event = self._event(action, event_object, destination=destination, kind=kind, pii=pii,
                            at=at, process=process, count=count, device=device)
        stored = self._store([event], also=also)[0]
        logger.info("Sự kiện / event %s seq=%s kind=%s pii=%s", action.value, stored.seq,
                    kind or "-", sum((pii or {}).values()))
        return stored

    def _store(self, events: list[Event], *, also: list[tuple[str, tuple]] | None = None,
               ) -> list[Event]:
        stored = self.spool.append(events, also=also or ())
        for event in stored:
            self.stats.events[event.action.value] += 1
        return stored

    def _event(self, action: Action, event_object: EventObject, *,
               destination: str | None = None, kind: str | None = None,
               pii: dict[str, int] | None = None, at: float,
               process: ProcessInfo | None = None, count: int | None = None,
               device: Device | None = None) -> Event:
        # The program's user is the actor when the monitor knows it; otherwise the agent's own
        # user when it runs as the official, "unknown" when it runs as a service account.
        actor = (_clip(process.user, 255) if process is not None and process.user else None)
        return Event(
            id=uuid.uuid4(),
            occurred_at=_as_utc(at),
            host=_clip(self.host, 255) or "unknown",
            actor=actor or self.actor,
            action=action,
            object=event_object,
            destination=(
                Destination(path=_clip(destination, 4096),
                            kind=DestinationKind(kind or "unknown"), device=device)
                if destination else None
            ),
            pii=pii or {},
            agent_id=self.config.agent_id,
            unit=self.config.unit,
            process=(
                Process(name=_clip(process.name, 255) or "?", pid=process.pid,
                        path=_clip(process.path, 4096))
                if process is not None else None
            ),
            count=count,
        )
