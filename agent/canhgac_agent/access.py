"""What an access monitor reports: who opened, read or wrote which file, with which program.

Every platform's monitor (fanotify or inotify on Linux, the Security log on Windows) turns what
its OS tells into these records; the watcher turns them into ``open``/``read`` events and uses
them to attribute copies, moves, deletions and modifications to a user and a program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AccessKind = Literal["open", "read", "write"]


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
