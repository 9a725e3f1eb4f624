"""Linux fanotify through ctypes: who opened, read or wrote a watched file, and with what.

fanotify (root only) reports, unlike inotify, the pid of the process that touched the file.
In a ``FAN_CLASS_CONTENT`` group, ``FAN_OPEN_PERM`` makes the opener wait until we answer,
so the process is certainly alive while /proc/<pid> is read. We never deny: the answer is
always ``FAN_ALLOW``, given straight after the snapshot, in a ``finally`` so that no error
can leave an open hanging; if the reader thread fails, the group's file descriptor is closed,
and the kernel then allows every pending request itself (as it does if the agent dies).

Protected folders are marked per directory (inode marks with ``FAN_EVENT_ON_CHILD``; new
sub-folders are marked when the watcher sees them created) for opens, reads and writes.
Egress folders are marked for writes (and opens, only to learn the writer while it lives);
a removable medium that is a mount point gets one mount mark.

A second, notification-only group reports deletions and renames away from protected folders
with the directory's file handle and the name (``FAN_REPORT_DFID_NAME``): that is who deleted
or moved a protected file, when the program is still there to be looked at.
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
from typing import NamedTuple

from canhgac_agent.access import (
    AccessKind,
    AccessRecord,
    AccessSink,
    PollingReader,
    ProcessInfo,
)
from canhgac_agent.paths import redact_for_log
from canhgac_agent.procinfo import ProcessCache

logger = logging.getLogger("canhgac.agent")

# <linux/fanotify.h>
FAN_ACCESS = 0x00000001
FAN_MODIFY = 0x00000002
FAN_CLOSE_WRITE = 0x00000008
FAN_CLOSE_NOWRITE = 0x00000010
FAN_OPEN = 0x00000020
FAN_MOVED_FROM = 0x00000040
FAN_DELETE = 0x00000200
FAN_Q_OVERFLOW = 0x00004000
FAN_OPEN_PERM = 0x00010000
FAN_ACCESS_PERM = 0x00020000
FAN_OPEN_EXEC_PERM = 0x00040000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000
PERM_EVENTS = FAN_OPEN_PERM | FAN_ACCESS_PERM | FAN_OPEN_EXEC_PERM

FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_CLASS_CONTENT = 0x00000004
FAN_UNLIMITED_QUEUE = 0x00000010
FAN_UNLIMITED_MARKS = 0x00000020
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_EVENT_INFO_TYPE_DFID_NAME = 2

FAN_MARK_ADD = 0x00000001
FAN_MARK_REMOVE = 0x00000002
FAN_MARK_DONT_FOLLOW = 0x00000004
FAN_MARK_ONLYDIR = 0x00000008
FAN_MARK_MOUNT = 0x00000010

FAN_ALLOW = 0x01
FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100

# struct fanotify_event_metadata: __u32 event_len; __u8 vers; __u8 reserved;
# __u16 metadata_len; __aligned_u64 mask; __s32 fd; __s32 pid
METADATA = struct.Struct("=IBBHQii")
# struct fanotify_response: __s32 fd; __u32 response
RESPONSE = struct.Struct("=iI")
# struct fanotify_event_info_header: __u8 info_type; __u8 pad; __u16 len; then for the FID
# records __kernel_fsid_t fsid (8 bytes) and struct file_handle: __u32 handle_bytes;
# int handle_type; unsigned char f_handle[handle_bytes] (then the name, for DFID_NAME)
INFO_HEADER = struct.Struct("=BBH")
FSID_SIZE = 8
HANDLE_HEADER = struct.Struct("=Ii")
MAX_HANDLE_SZ = 128

# Each event read carries an open file descriptor; if the process runs out of descriptors the
# kernel *denies* the pending permission request. A small read buffer bounds how many
# descriptors one read can create (128), far below the limit.
READ_BUFFER = METADATA.size * 128

PROTECTED = "protected"
EGRESS = "egress"

# An opener waits for our answer, and our reader thread first waits for the GIL, which a busy
# thread (the PII scan of a large table) keeps for up to the switch interval (5 ms by
# default). At 0.5 ms, measured while indexing a 22 MB table: a user's open waited 0.7 ms
# (median) and 8 ms (p99) instead of 5 ms and 47 ms; indexing was no slower.
PERM_SWITCH_INTERVAL = 0.0005


class FanotifyError(OSError):
    """fanotify is missing, not permitted, or refused a mark."""


class EventMetadata(NamedTuple):
    """One ``struct fanotify_event_metadata`` as read from the group's descriptor."""

    event_len: int
    vers: int
    metadata_len: int
    mask: int
    fd: int
    pid: int
    info: bytes = b""  # the information records that follow (FID groups)


def parse_events(data: bytes) -> list[EventMetadata]:
    """Split what one read() returned into event records (FAN_EVENT_OK/FAN_EVENT_NEXT).

    A record of another metadata version raises FanotifyError: its layout is unknown.
    """
    events: list[EventMetadata] = []
    offset = 0
    while len(data) - offset >= METADATA.size:
        event = EventMetadata(*(
            value for i, value in enumerate(METADATA.unpack_from(data, offset)) if i != 2))
        if event.vers != FANOTIFY_METADATA_VERSION:
            raise FanotifyError(errno.EPROTO,
                                f"fanotify metadata version {event.vers}, expected "
                                f"{FANOTIFY_METADATA_VERSION}")
        if event.event_len < METADATA.size or event.event_len > len(data) - offset:
            break  # FAN_EVENT_OK is false: the rest is not a whole event
        if event.event_len > event.metadata_len:
            event = event._replace(info=bytes(
                data[offset + event.metadata_len:offset + event.event_len]))
        events.append(event)
        offset += event.event_len
    return events


def parse_dfid_name(info: bytes) -> tuple[tuple[int, bytes], str] | None:
    """Return ((handle type, handle bytes), name) from the info records after one metadata."""
    offset = 0
    while len(info) - offset >= INFO_HEADER.size:
        info_type, _pad, length = INFO_HEADER.unpack_from(info, offset)
        if length < INFO_HEADER.size or offset + length > len(info):
            return None
        if info_type == FAN_EVENT_INFO_TYPE_DFID_NAME:
            start = offset + INFO_HEADER.size + FSID_SIZE
            handle_bytes, handle_type = HANDLE_HEADER.unpack_from(info, start)
            handle_start = start + HANDLE_HEADER.size
            handle = bytes(info[handle_start:handle_start + handle_bytes])
            raw_name = info[handle_start + handle_bytes:offset + length].split(b"\0", 1)[0]
            return (handle_type, handle), os.fsdecode(raw_name)
        offset += length
    return None


def kinds_of(mask: int) -> list[AccessKind]:
    """Return the access kinds one event mask stands for (merged events carry several)."""
    kinds: list[AccessKind] = []
    if mask & (FAN_OPEN | FAN_OPEN_PERM):
        kinds.append("open")
    if mask & (FAN_ACCESS | FAN_ACCESS_PERM):
        kinds.append("read")
    if mask & (FAN_CLOSE_WRITE | FAN_MODIFY):
        kinds.append("write")
    if mask & FAN_DELETE:
        kinds.append("delete")
    if mask & FAN_MOVED_FROM:
        kinds.append("rename")
    return kinds


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint32), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.init = libc.fanotify_init
        self.init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        self.init.restype = ctypes.c_int
        self.mark = libc.fanotify_mark
        self.mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                              ctypes.c_char_p]
        self.mark.restype = ctypes.c_int
        self.name_to_handle_at = libc.name_to_handle_at
        self.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p,
                                           ctypes.POINTER(_FileHandle),
                                           ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.name_to_handle_at.restype = ctypes.c_int


_libc: _Libc | None = None


def _lib() -> _Libc:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise FanotifyError(errno.ENOSYS, "fanotify exists on Linux only")
        try:
            _libc = _Libc()
        except (OSError, AttributeError) as exc:
            raise FanotifyError(errno.ENOSYS, f"no fanotify in the C library: {exc}") from None
    return _libc


def fanotify_init(flags: int, event_f_flags: int) -> int:
    """Create a fanotify group; return its file descriptor."""
    fd = _lib().init(flags, event_f_flags)
    if fd < 0:
        err = ctypes.get_errno()
        raise FanotifyError(err, f"fanotify_init: {os.strerror(err)}")
    return fd


def fanotify_mark(fd: int, flags: int, mask: int, path: str, dirfd: int = AT_FDCWD) -> None:
    """Add, change or remove a mark on *path*."""
    if _lib().mark(fd, flags, mask, dirfd, os.fsencode(path)) < 0:
        err = ctypes.get_errno()
        raise FanotifyError(err, f"fanotify_mark: {os.strerror(err)}")


def directory_handle(path: str) -> tuple[int, bytes]:
    """Return (handle type, handle bytes) of a directory, as FID events report it."""
    handle = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    if _lib().name_to_handle_at(AT_FDCWD, os.fsencode(path), ctypes.byref(handle),
                                ctypes.byref(mount_id), 0) < 0:
        err = ctypes.get_errno()
        raise FanotifyError(err, f"name_to_handle_at: {os.strerror(err)}")
    return handle.handle_type, bytes(handle.f_handle[:handle.handle_bytes])


def open_name_group() -> int:
    """Open a notification group that reports directory entry changes with names."""
    return fanotify_init(
        FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME
        | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS, os.O_RDONLY | os.O_CLOEXEC)


def open_group() -> tuple[int, bool]:
    """Open a group for content (permission events) or, failing that, for notifications.

    Return (descriptor, whether FAN_OPEN_PERM works). Raise FanotifyError when neither works
    (not root, no fanotify in the kernel).
    """
    event_flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_LARGEFILE", 0)
    unlimited = FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS
    base = FAN_CLOEXEC | FAN_NONBLOCK | unlimited
    try:
        fd = fanotify_init(base | FAN_CLASS_CONTENT, event_flags)
    except FanotifyError:
        fd = fanotify_init(base | FAN_CLASS_NOTIF, event_flags)
        return fd, False
    try:
        # A kernel without CONFIG_FANOTIFY_ACCESS_PERMISSIONS refuses the mask (EINVAL).
        fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_ONLYDIR, FAN_OPEN_PERM, "/")
        fanotify_mark(fd, FAN_MARK_REMOVE | FAN_MARK_ONLYDIR, FAN_OPEN_PERM, "/")
    except FanotifyError:
        return fd, False
    return fd, True


def _raise_nofile_limit() -> None:
    # Every event read is an open descriptor until we close it; keep clear of the limit.
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class FanotifyMonitor(PollingReader):
    """Report opens, reads and writes of watched files with the process and its real user.

    ``snapshot`` (pid → ProcessInfo or None) is replaceable for tests; whatever it does,
    permission requests are answered.
    """

    thread_name = "canhgac-agent-fanotify"
    failure_message = ("Lỗi đọc fanotify, ngừng theo dõi lượt mở tệp / fanotify reader "
                       "failed, opens are no longer watched")

    def __init__(self, *, use_permission_events: bool = True,
                 processes: ProcessCache | None = None) -> None:
        fd, has_perm = open_group()
        if not use_permission_events and has_perm:
            os.close(fd)
            fd, has_perm = fanotify_init(
                FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_NOTIF | FAN_UNLIMITED_QUEUE
                | FAN_UNLIMITED_MARKS,
                os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_LARGEFILE", 0),
            ), False
        _raise_nofile_limit()
        self._fd = fd
        self.has_permission_events = has_perm
        self.mode = "fanotify-perm" if has_perm else "fanotify"
        self._processes = processes or ProcessCache()
        self.snapshot = self._processes.lookup
        self._own_pid = os.getpid()
        self._own_process = ProcessInfo(name="canhgac-agent", pid=self._own_pid)
        super().__init__()
        self._fd_lock = threading.Lock()
        self._marked: set[str] = set()
        try:
            self._names_fd = open_name_group()
        except FanotifyError as exc:  # kernels before 5.9: deletions stay unattributed
            logger.debug("no fanotify name events: %s", exc.strerror)
            self._names_fd = -1
        self._dirs: dict[tuple[int, bytes], str] = {}
        self.overflows = 0
        self.events_read = 0

    # --- marks ---

    def _masks(self, role: str) -> int:
        opens = FAN_OPEN_PERM if self.has_permission_events else FAN_OPEN
        if role == PROTECTED:
            return opens | FAN_ACCESS | FAN_CLOSE_WRITE
        # Egress: the close after writing names the writer; the open (a permission event,
        # cheap to answer) is where that writer is seen alive. Without permission events,
        # writes are the next best moment to find it alive.
        return opens | FAN_CLOSE_WRITE | (0 if self.has_permission_events else FAN_MODIFY)

    def watch_tree(self, path: str, role: str, *, is_mount: bool = False) -> None:
        """Mark *path* and every directory below it (or the whole mount when *is_mount*)."""
        mask = self._masks(role)
        if is_mount and os.path.ismount(path):
            self._mark(path, FAN_MARK_MOUNT, mask, is_root=True)
            return
        # os.walk does not descend into symlinked folders: nothing outside the tree is marked.
        for directory, _subdirs, _files in os.walk(path, onerror=lambda exc: None):
            self._mark(directory, FAN_MARK_ONLYDIR | FAN_MARK_DONT_FOLLOW,
                       mask | FAN_EVENT_ON_CHILD, is_root=directory == path)
            if role == PROTECTED:
                self._mark_names(directory)
            if self._is_stopping:
                return

    def _mark_names(self, directory: str) -> None:
        with self._fd_lock:
            if self._names_fd < 0:
                return
            try:
                handle = directory_handle(directory)
                fanotify_mark(self._names_fd, FAN_MARK_ADD | FAN_MARK_ONLYDIR
                              | FAN_MARK_DONT_FOLLOW, FAN_DELETE | FAN_MOVED_FROM, directory)
            except FanotifyError as exc:
                logger.debug("no deletion events for a folder: %s", exc.strerror)
                return
            self._dirs[handle] = directory  # a renamed folder is marked again: new path

    def _mark(self, path: str, flags: int, mask: int, *, is_root: bool = False) -> None:
        with self._fd_lock:
            if self._fd < 0:
                return
            try:
                fanotify_mark(self._fd, FAN_MARK_ADD | flags, mask, path)
            except FanotifyError as exc:
                # Some file systems (network shares, some FUSE) take no marks: say so once
                # per watched folder, not per sub-folder.
                log = logger.warning if is_root else logger.debug
                log("Không theo dõi được lượt mở trong / cannot watch opens in %s: %s",
                    redact_for_log(path), exc.strerror)
                return
            self._marked.add(path)

    @property
    def marked_count(self) -> int:
        """Return how many folders (or mounts) carry a mark."""
        return len(self._marked)

    # --- reading ---

    def start(self, sink: AccessSink) -> None:
        """Read events in a background thread and hand records to *sink*."""
        self._previous_switch_interval = sys.getswitchinterval()
        if self.has_permission_events and self._previous_switch_interval > PERM_SWITCH_INTERVAL:
            sys.setswitchinterval(PERM_SWITCH_INTERVAL)
        super().start(sink)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; closing the group lets the kernel allow anything still pending."""
        super().stop(timeout)
        previous = getattr(self, "_previous_switch_interval", None)
        if previous is not None and sys.getswitchinterval() == PERM_SWITCH_INTERVAL:
            sys.setswitchinterval(previous)

    def close(self) -> None:
        """Close both groups (the kernel then allows every pending request) and the wake pipe."""
        with self._fd_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._names_fd >= 0:
                os.close(self._names_fd)
                self._names_fd = -1
            super().close()

    def _reader_fds(self) -> list[int]:
        return [self._fd] + ([self._names_fd] if self._names_fd >= 0 else [])

    def _read_ready(self, ready: set[int]) -> list[AccessRecord]:
        # Permission events first, always: openers are waiting for them.
        records = self.read_fd(self._fd, READ_BUFFER, self.handle)
        if self._names_fd in ready:
            records += self.read_fd(self._names_fd, 64 * 1024, self.handle_names)
        return records

    def handle_names(self, data: bytes) -> list[AccessRecord]:
        """Turn deletion and rename events (directory handle + name) into records."""
        records: list[AccessRecord] = []
        for event in parse_events(data):
            self.events_read += 1
            if event.mask & FAN_Q_OVERFLOW:
                self.overflows += 1
                continue
            if event.pid == self._own_pid or event.mask & FAN_ONDIR:
                continue
            try:
                found = parse_dfid_name(event.info)
                directory = self._dirs.get(found[0]) if found else None
                if directory is None or not found[1]:
                    continue
                process = self.snapshot(event.pid)
                at = time.time()
                path = os.path.join(directory, found[1])
                records.extend(AccessRecord(path, kind, process, at)
                               for kind in kinds_of(event.mask))
            except Exception:
                self.errors += 1
                logger.debug("fanotify name event not handled", exc_info=True)
        return records

    def handle(self, data: bytes) -> list[AccessRecord]:
        """Answer, attribute and close every event in *data*; return what was seen."""
        try:
            events = parse_events(data)
        except FanotifyError:
            self._is_stopping = True  # unknown layout: stop; closing the group allows all
            raise
        records: list[AccessRecord] = []
        for event in events:
            self.events_read += 1
            is_pending = bool(event.mask & PERM_EVENTS) and event.fd >= 0
            try:
                if event.fd == FAN_NOFD:
                    if event.mask & FAN_Q_OVERFLOW:
                        self.overflows += 1
                        logger.warning("hàng đợi fanotify tràn / fanotify queue overflow")
                    continue
                if event.mask & FAN_ONDIR:
                    continue  # folders are not files
                if event.pid == self._own_pid:
                    # Our own hashing and scans make nothing; our own writes are said, so
                    # that nobody waits for another writer of that file.
                    if event.mask & (FAN_CLOSE_WRITE | FAN_MODIFY):
                        records.append(AccessRecord(os.readlink(f"/proc/self/fd/{event.fd}"),
                                                    "write", self._own_process, time.time()))
                    continue
                process = self.snapshot(event.pid)
                if is_pending:
                    self._allow(event.fd)
                    is_pending = False
                path = os.readlink(f"/proc/self/fd/{event.fd}")
                if path.endswith(" (deleted)") and os.fstat(event.fd).st_nlink == 0:
                    path = path[: -len(" (deleted)")]
                at = time.time()
                records.extend(AccessRecord(path, kind, process, at)
                               for kind in kinds_of(event.mask))
            except Exception:
                self.errors += 1
                logger.debug("fanotify event not handled", exc_info=True)
            finally:
                if is_pending:
                    self._allow(event.fd)
                if event.fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(event.fd)
        return records

    def _allow(self, event_fd: int) -> None:
        for _attempt in range(3):
            try:
                os.write(self._fd, RESPONSE.pack(event_fd, FAN_ALLOW))
                return
            except InterruptedError:
                continue
            except OSError as exc:
                # ENOENT: already answered; anything else is logged, and the group's closing
                # (at the latest when the agent ends) answers for us.
                if exc.errno != errno.ENOENT:
                    logger.warning("fanotify answer failed: %s", exc.strerror)
                return
