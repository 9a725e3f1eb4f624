"""Who a Linux process is: program name, executable and real user, read from /proc.

The fanotify monitor asks this for every event; the answer is cached per pid for a moment
(reading ``comm`` alone proves the cached program is still the one running), and kept a
little longer after the process has exited, so that the close of a file by a program that
has just ended is still attributed to it.
"""

from __future__ import annotations

import os
import pwd
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from canhgac_agent.access import ProcessInfo

# comm is cut at 15 bytes by the kernel (TASK_COMM_LEN - 1)
COMM_MAX = 15
ALIVE_TTL_SECONDS = 2.0
DEAD_TTL_SECONDS = 30.0
USER_TTL_SECONDS = 300.0
MAX_PROCESSES = 4096


class _Cached(NamedTuple):
    comm: str
    info: ProcessInfo
    at: float


def _read_text(path: str, limit: int = 4096) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def real_uid_from_status(text: str) -> int | None:
    """Return the real UID from the text of /proc/<pid>/status (the first ``Uid:`` number)."""
    for line in text.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return None


def program_name(comm: str, exe: str | None) -> str:
    """Return the program's name: ``comm``, or the executable's name when comm was cut short."""
    if exe:
        base = os.path.basename(exe)
        if len(comm) >= COMM_MAX and base.startswith(comm):
            return base
    return comm or (os.path.basename(exe) if exe else "") or "?"


class UserNames:
    """Map UIDs to account names (password database), falling back to the number."""

    def __init__(self, ttl: float = USER_TTL_SECONDS) -> None:
        self._ttl = ttl
        self._names: dict[int, tuple[str, float]] = {}

    def name(self, uid: int) -> str:
        """Return the account name of *uid*, or the number as text when it has none."""
        now = time.monotonic()
        cached = self._names.get(uid)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        if len(self._names) > 1024:
            self._names.clear()
        self._names[uid] = (name, now)
        return name


class ProcessCache:
    """Snapshots of processes by pid, brief while they live and a while after they end."""

    def __init__(self, *, proc: str = "/proc", alive_ttl: float = ALIVE_TTL_SECONDS,
                 dead_ttl: float = DEAD_TTL_SECONDS, max_entries: int = MAX_PROCESSES) -> None:
        self._proc = proc
        self._alive_ttl = alive_ttl
        self._dead_ttl = dead_ttl
        self._max = max_entries
        self._entries: OrderedDict[int, _Cached] = OrderedDict()
        self._users = UserNames()
        self._lock = threading.Lock()

    def lookup(self, pid: int) -> ProcessInfo | None:
        """Return what is known of *pid*: a fresh snapshot, a recent one, or None."""
        if pid <= 0:
            return None
        now = time.monotonic()
        base = f"{self._proc}/{pid}"
        try:
            comm = _read_text(f"{base}/comm", 64).rstrip("\n")
        except OSError:
            comm = None
        with self._lock:
            cached = self._entries.get(pid)
        if comm is None:  # gone: a recent snapshot is still the best answer
            if cached is not None and now - cached.at < self._dead_ttl:
                return cached.info
            return None
        if cached is not None and cached.comm == comm and now - cached.at < self._alive_ttl:
            return cached.info
        info = self._snapshot(pid, base, comm)
        with self._lock:
            self._entries[pid] = _Cached(comm, info, now)
            self._entries.move_to_end(pid)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return info

    def _snapshot(self, pid: int, base: str, comm: str) -> ProcessInfo:
        try:
            exe = os.readlink(f"{base}/exe")
        except OSError:
            exe = None  # a kernel thread, a zombie, or no right to look
        if exe and exe.endswith(" (deleted)"):
            exe = exe[: -len(" (deleted)")]
        user = None
        try:
            uid = real_uid_from_status(_read_text(f"{base}/status"))
        except OSError:
            uid = None
        if uid is not None:
            user = self._users.name(uid)
        return ProcessInfo(name=program_name(comm, exe), pid=pid, path=exe, user=user)
