"""What an access monitor reports: who opened, read or wrote which file, with which program.

Every platform's monitor (fanotify or inotify on Linux, the Security log on Windows) turns what
its OS tells into these records; the watcher turns them into ``open``/``read`` events and uses
them to attribute copies, moves, deletions and modifications to a user and a program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

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
