"""Opens and reads of protected files without privileges: a tiny inotify reader (ctypes).

inotify says *that* a file was opened or read, not by whom: every record it gives has no
process, and the watcher names the agent's own OS user as the actor. It is the fallback when
fanotify is not permitted (the agent is not root) or not available.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import sys
import threading
import time

from canhgac_agent.access import AccessKind, AccessRecord, PollingReader

logger = logging.getLogger("canhgac.agent")

IN_ACCESS = 0x00000001
IN_CLOSE_WRITE = 0x00000008
IN_OPEN = 0x00000020
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# struct inotify_event: int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[len]
HEADER = struct.Struct("=iIII")
READ_BUFFER = 64 * 1024
PROTECTED = "protected"


class InotifyError(OSError):
    """inotify is missing or refused a watch."""


def parse_inotify(data: bytes) -> list[tuple[int, int, str]]:
    """Split what one read() returned into (watch descriptor, mask, name) triples."""
    events: list[tuple[int, int, str]] = []
    offset = 0
    while len(data) - offset >= HEADER.size:
        wd, mask, _cookie, length = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if start + length > len(data):
            break
        raw = data[start:start + length].split(b"\0", 1)[0]
        events.append((wd, mask, os.fsdecode(raw)))
        offset = start + length
    return events


def inotify_kinds(mask: int) -> list[AccessKind]:
    """Return the access kinds of one inotify mask."""
    kinds: list[AccessKind] = []
    if mask & IN_OPEN:
        kinds.append("open")
    if mask & IN_ACCESS:
        kinds.append("read")
    if mask & IN_CLOSE_WRITE:
        kinds.append("write")
    return kinds


class InotifyMonitor(PollingReader):
    """Report opens and reads of files in protected folders, with no process (inotify)."""

    mode = "inotify"
    thread_name = "canhgac-agent-inotify"
    failure_message = "inotify reader failed, opens are no longer watched"

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise InotifyError(errno.ENOSYS, "inotify exists on Linux only")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add_watch = libc.inotify_add_watch
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add_watch.restype = ctypes.c_int
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyError(err, f"inotify_init1: {os.strerror(err)}")
        super().__init__()
        self._fd = fd
        self._dirs: dict[int, str] = {}
        self._lock = threading.Lock()
        self.overflows = 0
        self._said_full = False

    def watch_tree(self, path: str, role: str, *, is_mount: bool = False) -> None:
        """Watch the opens and reads of *path*'s files and its sub-folders' (protected only).

        Egress folders are left to the watcher's own watch: without a process, inotify tells
        nothing more about who wrote there.
        """
        if role != PROTECTED:
            return
        # Writes are left out: without a process they attribute nothing.
        mask = IN_OPEN | IN_ACCESS | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
        for directory, _subdirs, _files in os.walk(path, onerror=lambda exc: None):
            with self._lock:
                if self._fd < 0:
                    return
                wd = self._add_watch(self._fd, os.fsencode(directory), mask)
                if wd < 0:
                    err = ctypes.get_errno()
                    if err == errno.ENOSPC and not self._said_full:
                        self._said_full = True
                        logger.warning(
                            "Hết giới hạn inotify (fs.inotify.max_user_watches): một số thư mục "
                            "không được theo dõi lượt mở / inotify watch limit reached "
                            "(fs.inotify.max_user_watches): some folders' opens are not watched")
                    else:
                        logger.debug("inotify_add_watch failed: %s", os.strerror(err))
                    continue
                self._dirs[wd] = directory

    @property
    def marked_count(self) -> int:
        """Return how many folders are watched."""
        return len(self._dirs)

    def close(self) -> None:
        """Close the inotify instance and the wake pipe."""
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
            super().close()

    def _reader_fds(self) -> list[int]:
        return [self._fd]

    def _read_ready(self, ready: set[int]) -> list[AccessRecord]:
        return self.read_fd(self._fd, READ_BUFFER, self.handle)

    def handle(self, data: bytes) -> list[AccessRecord]:
        """Turn what one read() returned into access records (no process)."""
        records: list[AccessRecord] = []
        at = time.time()
        for wd, mask, name in parse_inotify(data):
            if mask & IN_Q_OVERFLOW:
                self.overflows += 1
                continue
            if mask & IN_IGNORED:
                with self._lock:
                    self._dirs.pop(wd, None)  # folder removed or unmounted
                continue
            if mask & IN_ISDIR or not name:
                continue
            directory = self._dirs.get(wd)
            if directory is None:
                continue
            path = os.path.join(directory, name)
            records.extend(AccessRecord(path, kind, None, at) for kind in inotify_kinds(mask))
        return records
