"""What an access monitor reports: who opened, read or wrote which file, with which program.

Every platform's monitor (fanotify or inotify on Linux, the Security log on Windows) turns what
its OS tells into these records; the watcher turns them into ``open``/``read`` events and uses
them to attribute copies, moves, deletions and modifications to a user and a program.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

logger = logging.getLogger("canhgac.agent")

# "delete": the file's name was removed; "rename": it was renamed or moved away from its path.
AccessKind = Literal["open", "read", "write", "delete", "rename"]


@dataclass(frozen=True)
class ProcessInfo:
    """A program as the OS describes it: executable name, process id, path and user."""

    name: str
    pid: int | None = None
    path: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class AccessRecord:
    """One access to one file by one process, at an epoch time in seconds."""

    path: str
    kind: AccessKind
    process: ProcessInfo | None
    at: float


# A monitor hands what it saw to a sink, in batches, from its own thread. The sink must not
# block on anything a thread that opens files may hold (fanotify permission events wait for
# the monitor), and must not raise; the watcher's AccessTracker is one.
AccessSink = Callable[[list[AccessRecord]], None]


class AccessMonitor(Protocol):
    """What the watcher needs of a platform's access monitor (fanotify, inotify, Security log).

    ``mode`` is what the heartbeat reports as ``access_mode``: ``fanotify-perm``, ``fanotify``,
    ``inotify``, ``security-log`` or ``off`` (a monitor whose reader failed says ``off``).
    ``watch_tree`` is called from any thread: for every watched root before the first index
    scan, for each sub-folder created later, and for removable media as they are found
    (``is_mount`` when the root is a removable medium: the monitor may mark its whole mount).
    """

    mode: str

    def start(self, sink: AccessSink) -> None:
        """Begin reporting accesses to *sink*."""

    def watch_tree(self, path: str, role: str, *, is_mount: bool = False) -> None:
        """Watch a folder and its sub-folders; *role* is ``protected`` or ``egress``."""

    def stop(self) -> None:
        """Stop reporting and release every OS resource."""


class PollingReader:
    """The reading half the Linux monitors share: one thread polls their descriptors.

    The thread waits on the monitor's descriptors and a wake pipe, asks the monitor to read
    what is ready, and hands the records to the sink. A failing sink is counted and logged,
    never fatal; a failing reader sets ``mode`` to ``off`` (the heartbeat then says the PC's
    opens are no longer seen) and, like a normal stop, ends with ``close()``, which is what
    lets the kernel allow any fanotify permission request still pending.
    """

    mode: str
    thread_name = "canhgac-agent-reader"
    failure_message = "access reader failed, opens are no longer watched"

    def __init__(self) -> None:
        self._sink: AccessSink | None = None
        self._thread: threading.Thread | None = None
        self._is_stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.errors = 0

    def _reader_fds(self) -> Iterable[int]:
        """Return the descriptors to wait on (besides the wake pipe)."""
        raise NotImplementedError

    def _read_ready(self, ready: set[int]) -> list[AccessRecord]:
        """Read what the descriptors in *ready* hold and return it as records."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the monitor's descriptors; subclasses close their own, then call this."""
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def start(self, sink: AccessSink) -> None:
        """Read events in a background thread and hand records to *sink*."""
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close every descriptor once the thread has ended."""
        self._is_stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        # A thread stuck past the timeout still owns the descriptors: it closes them itself.
        if self._thread is None or not self._thread.is_alive():
            self.close()

    @staticmethod
    def read_fd(fd: int, size: int, handler: Callable[[bytes], list[AccessRecord]]
                ) -> list[AccessRecord]:
        """Read once from a non-blocking descriptor and parse it; nothing there is no records."""
        try:
            data = os.read(fd, size)
        except (BlockingIOError, InterruptedError):
            return []
        return handler(data)

    def _run(self) -> None:
        try:
            poller = select.poll()
            for fd in (*self._reader_fds(), self._wake_r):
                poller.register(fd, select.POLLIN)
            while not self._is_stopping:
                ready = {fd for fd, _flags in poller.poll(1000)}
                if self._is_stopping:
                    break
                records = self._read_ready(ready)
                if records and self._sink is not None:
                    try:
                        self._sink(records)
                    except Exception:
                        self.errors += 1
                        logger.exception("access sink failed")
        except Exception:
            logger.exception(self.failure_message)
            self.mode = "off"
        finally:
            self.close()
