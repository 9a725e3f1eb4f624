"""Windows: who opened, read or wrote a protected file, from the Security event log.

Windows tells nothing about reads to an ordinary program; it writes object-access audit events
when the "File System" audit subcategory is on and a folder carries a SACL (install-agent.ps1
sets both). Two events matter, in the format Microsoft documents
(namespace ``http://schemas.microsoft.com/win/2004/08/events/event``):

- 4656 "A handle to an object was requested": the open, with the rights asked for. A failed one
  (access denied) opened nothing and is counted, not reported.
- 4663 "An attempt was made to access an object": the use of the handle; ``AccessMask`` says
  which rights were used (0x1 ReadData → read; 0x2 WriteData, 0x4 AppendData, 0x10000 DELETE →
  write, deletion being the watcher's business).

:class:`SecurityLogReader` polls ``wevtutil`` for events newer than a bookmark kept in the spool's
meta table and hands :class:`~canhgac_agent.access.AccessRecord` objects to a sink. The command
runner is injectable, so everything here but the real ``wevtutil`` call runs on any OS.
"""

from __future__ import annotations

import logging
import ntpath
import os
import re
import subprocess
import threading
import xml.etree.ElementTree as ET  # wevtutil's local output; expat refuses entity bombs
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from canhgac_agent.access import AccessKind, AccessRecord, ProcessInfo

logger = logging.getLogger("canhgac.agent")

MODE = "security-log"
EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
HANDLE_REQUESTED = 4656
OBJECT_ACCESSED = 4663
BOOKMARK_KEY = "security_log_record_id"

READ_DATA = 0x1
WRITE_DATA = 0x2
APPEND_DATA = 0x4
DELETE = 0x10000
WRITE_BITS = WRITE_DATA | APPEND_DATA | DELETE
# Keywords bit 52 is "Audit Failure" (0x8010000000000000); 53 "Audit Success".
AUDIT_FAILURE = 0x0010000000000000

_NS = {"e": EVENT_NS}
_EVENT_CHUNK = re.compile(r"<Event[\s>].*?</Event>", re.DOTALL)
_RECORD_ID = re.compile(r"<EventRecordID>\s*(\d+)\s*</EventRecordID>")
_SYSTEM_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


class MetaStore(Protocol):
    """Where the bookmark lives: the agent's spool (``Spool.get_meta`` / ``set_meta``)."""

    def get_meta(self, key: str) -> str | None:
        """Return a stored value."""

    def set_meta(self, key: str, value: str) -> None:
        """Store a value durably."""


@dataclass(frozen=True)
class SecurityEvent:
    """One parsed Security log event: its record id and, when it is worth reporting, the access."""

    record_id: int
    event_id: int
    is_failure: bool
    access: AccessRecord | None
    handle_id: str | None = None


class MalformedEventError(ValueError):
    """An event's XML cannot be read or lacks what every 4656/4663 event carries."""


def parse_system_time(value: str) -> float:
    """Return the epoch seconds of a ``TimeCreated/@SystemTime`` (100-ns digits are cut to µs)."""
    match = _SYSTEM_TIME.match(value.strip())
    if not match:
        raise MalformedEventError(f"bad SystemTime {value!r}")
    stamp, fraction, zone = match.groups()
    text = stamp + (f".{(fraction or '0')[:6]:0<6}") + ("+00:00" if zone in (None, "Z") else zone)
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def parse_pid(value: str | None) -> int | None:
    """Return a process id written as hex (``0x1a2c``) or decimal; None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def access_kind(event_id: int, mask: int) -> AccessKind | None:
    """Return what an event's access mask means for the watcher, or None when it means nothing.

    4656 is the open (whatever was asked for); 4663 is a read or a write by the rights used.
    """
    if event_id == HANDLE_REQUESTED:
        return "open"
    if mask & WRITE_BITS:
        return "write"
    if mask & READ_DATA:
        return "read"
    return None


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse_event(xml_text: str, *, own_pids: Iterable[int] = ()) -> SecurityEvent:
    """Parse one ``<Event>`` element into a SecurityEvent; raise MalformedEventError if unreadable.

    ``access`` is None for what is not reported: other object types (keys, ...), machine accounts
    (``NAME$``: services and the system itself), the agent's own process, failed opens and masks
    without read or write rights.
    """
    try:
        root = ET.fromstring(xml_text)  # noqa: S314 - trusted local wevtutil output, see import
    except ET.ParseError as exc:
        raise MalformedEventError(f"not XML: {exc}") from exc
    system = root.find("e:System", _NS)
    if root.tag != f"{{{EVENT_NS}}}Event" or system is None:
        raise MalformedEventError("not an event of the documented schema")
    try:
        event_id = int(_text(system.find("e:EventID", _NS)))
        record_id = int(_text(system.find("e:EventRecordID", _NS)))
        keywords = int(_text(system.find("e:Keywords", _NS)) or "0", 16)
    except ValueError as exc:
        raise MalformedEventError(f"bad EventID/EventRecordID/Keywords: {exc}") from exc
    is_failure = bool(keywords & AUDIT_FAILURE)
    data = {item.get("Name", ""): (item.text or "").strip()
            for item in root.iterfind("e:EventData/e:Data", _NS)}
    handle_id = data.get("HandleId") or None

    def skipped() -> SecurityEvent:
        return SecurityEvent(record_id, event_id, is_failure, None, handle_id)

    if event_id not in (HANDLE_REQUESTED, OBJECT_ACCESSED) or data.get("ObjectType") != "File":
        return skipped()
    user_name = data.get("SubjectUserName", "")
    if not user_name or user_name.endswith("$"):
        return skipped()
    if is_failure:
        return skipped()  # access denied: nothing was opened or read
    pid = parse_pid(data.get("ProcessId"))
    if pid is not None and pid in set(own_pids):
        return skipped()
    try:
        mask = int(data.get("AccessMask", "0") or "0", 16)
    except ValueError:
        mask = 0
    kind = access_kind(event_id, mask)
    path = data.get("ObjectName", "")
    if kind is None or not path:
        return skipped()
    time_created = system.find("e:TimeCreated", _NS)
    if time_created is None:
        raise MalformedEventError("no TimeCreated")
    at = parse_system_time(time_created.get("SystemTime", ""))
    domain = data.get("SubjectDomainName", "")
    user = f"{domain}\\{user_name}" if domain and domain != "-" else user_name
    process_path = data.get("ProcessName") or None
    process = ProcessInfo(
        name=ntpath.basename(process_path) if process_path else "unknown",
        pid=pid, path=process_path, user=user)
    return SecurityEvent(record_id, event_id, False, AccessRecord(path, kind, process, at),
                         handle_id)


def split_events(output: str) -> list[str]:
    """Split wevtutil's XML output (events one after another, no root element) into events."""
    return _EVENT_CHUNK.findall(output)


def wevtutil_query(after_record_id: int, batch_size: int) -> list[str]:
    """Return the wevtutil arguments for 4656/4663 events after a record id, oldest first."""
    return ["wevtutil", "qe", "Security",
            f"/q:*[System[(EventID={OBJECT_ACCESSED} or EventID={HANDLE_REQUESTED}) "
            f"and EventRecordID>{after_record_id}]]",
            "/f:xml", "/rd:false", f"/c:{batch_size}"]


def newest_record_query() -> list[str]:
    """Return the wevtutil arguments for the newest Security event (any id)."""
    return ["wevtutil", "qe", "Security", "/f:xml", "/rd:true", "/c:1"]


def decode_output(raw: bytes) -> str:
    """Decode wevtutil output: UTF-16 with a BOM, else UTF-8, else the Windows ANSI code page."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("mbcs" if os.name == "nt" else "cp1258", errors="replace")


def run_wevtutil(args: Sequence[str]) -> str:  # pragma: no cover - needs Windows
    """Run wevtutil (from System32, never from the current folder) and return its output."""
    system_root = os.environ.get("SYSTEMROOT", r"C:\Windows")
    program = ntpath.join(system_root, "System32", "wevtutil.exe")
    result = subprocess.run([program, *args[1:]], capture_output=True, timeout=120, check=False)
    if result.returncode != 0:
        raise OSError(f"wevtutil exit {result.returncode}: "
                      f"{decode_output(result.stderr).strip()[:300]}")
    return decode_output(result.stdout)


@dataclass
class ReaderStats:
    """What the reader saw, for logs and tests (counts only, never paths)."""

    forwarded: int = 0
    skipped: int = 0
    denied: int = 0
    malformed: int = 0
    duplicates: int = 0
    failed_polls: int = 0
    resets: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class SecurityLogReader:
    """Poll the Security log for file access events and feed them, in order, to a sink.

    The bookmark (the last EventRecordID handed on) is stored in *meta* after the sink took a
    batch, so a crash repeats at most one batch and never skips one. *run_command* takes wevtutil
    arguments and returns its output (tests feed recorded XML through it).
    """

    mode = MODE

    def __init__(
        self,
        meta: MetaStore,
        sink: Callable[[AccessRecord], None],
        *,
        run_command: Callable[[Sequence[str]], str] = run_wevtutil,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        own_pids: Iterable[int] | None = None,
        bookmark_key: str = BOOKMARK_KEY,
    ) -> None:
        self.meta = meta
        self.sink = sink
        self.run_command = run_command
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.own_pids = frozenset(own_pids if own_pids is not None else (os.getpid(),))
        self.bookmark_key = bookmark_key
        self.stats = ReaderStats()
        # (process id, handle id, kind, path) of recent 4663 events: one handle used twice the
        # same way is one use, however often the SACL made Windows write it.
        self._recent: OrderedDict[tuple, None] = OrderedDict()
        self._empty_polls = 0

    @property
    def bookmark(self) -> int:
        """Return the last EventRecordID handed on (0 before the first)."""
        value = self.meta.get_meta(self.bookmark_key)
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    def poll_once(self) -> int:
        """Read one batch after the bookmark, feed the sink; return the number of events read."""
        after = self.bookmark
        output = self.run_command(wevtutil_query(after, self.batch_size))
        chunks = split_events(output)
        newest = after
        for chunk in chunks:
            try:
                event = parse_event(chunk, own_pids=self.own_pids)
            except MalformedEventError as exc:
                self.stats.malformed += 1
                logger.warning("Bỏ qua sự kiện Security không đọc được / skipped an unreadable "
                               "Security event: %s", str(exc)[:200])
                found = _RECORD_ID.search(chunk)
                if found:
                    newest = max(newest, int(found.group(1)))
                continue
            newest = max(newest, event.record_id)
            self._forward(event)
        if newest > after:
            self.meta.set_meta(self.bookmark_key, str(newest))
        return len(chunks)

    def _forward(self, event: SecurityEvent) -> None:
        if event.access is None:
            if event.is_failure:
                self.stats.denied += 1
            else:
                self.stats.skipped += 1
            return
        access = event.access
        pid = access.process.pid if access.process else None
        if access.kind != "open" and event.handle_id:
            # Each 4656 is a new handle; a 4663 repeated on one handle is the same use.
            key = (pid, event.handle_id, access.kind, access.path)
            if key in self._recent:
                self.stats.duplicates += 1
                return
            self._recent[key] = None
            while len(self._recent) > 4096:
                self._recent.popitem(last=False)
        self.sink(access)
        self.stats.forwarded += 1
        self.stats.by_kind[access.kind] = self.stats.by_kind.get(access.kind, 0) + 1

    def check_for_reset(self) -> bool:
        """Reset the bookmark when the log now ends before it (log cleared); tell whether it did."""
        chunks = split_events(self.run_command(newest_record_query()))
        found = _RECORD_ID.search(chunks[0]) if chunks else None
        newest = int(found.group(1)) if found else 0
        if newest < self.bookmark:
            logger.warning("Nhật ký Security đã bị xoá hoặc đặt lại; đọc lại từ đầu / the Security "
                           "log was cleared or reset; reading it from the start")
            self.meta.set_meta(self.bookmark_key, "0")
            self.stats.resets += 1
            return True
        return False

    def run(self, stop_event: threading.Event) -> None:
        """Poll until *stop_event* is set; a full batch is followed at once by the next."""
        was_failing = False
        while not stop_event.is_set():
            try:
                count = self.poll_once()
                if count == 0:
                    self._empty_polls += 1
                    if self._empty_polls % 60 == 0:
                        self.check_for_reset()
                else:
                    self._empty_polls = 0
                was_failing = False
            except Exception as exc:  # a broken poll must not stop the agent
                self.stats.failed_polls += 1
                if not was_failing:
                    logger.warning("Không đọc được nhật ký Security / cannot read the Security "
                                   "log: %s", exc)
                was_failing = True
                count = 0
            if count < self.batch_size:
                stop_event.wait(self.poll_seconds)


def start_reader(meta: MetaStore, sink: Callable[[AccessRecord], None],
                 stop_event: threading.Event, **options) -> tuple[SecurityLogReader,
                                                                  threading.Thread]:
    """Start a SecurityLogReader in a daemon thread; return it and its thread (join on stop)."""
    reader = SecurityLogReader(meta, sink, **options)
    thread = threading.Thread(target=reader.run, args=(stop_event,),
                              name="canhgac-agent-security-log", daemon=True)
    thread.start()
    return reader, thread


class SecurityLogMonitor:
    """The Security log reader as the watcher's access monitor (mode ``security-log``).

    Which folders are audited is set by the SACLs that install-agent.ps1 writes, not here, so
    ``watch_tree`` has nothing to do; the watcher's tracker keeps only protected paths.
    """

    mode = MODE

    def __init__(self, meta: MetaStore, **options) -> None:
        self._meta = meta
        self._options = options
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.reader: SecurityLogReader | None = None

    def start(self, sink: Callable[[list[AccessRecord]], None]) -> None:
        """Start polling the log in a thread of its own, handing each record to *sink*."""
        self.reader, self._thread = start_reader(
            self._meta, lambda record: sink([record]), self._stop_event, **self._options)

    def watch_tree(self, path: str, role: str, *, is_mount: bool = False) -> None:
        """Do nothing: the audit rules (SACLs) on the folders decide what Windows logs."""

    def stop(self) -> None:
        """Stop polling and wait for the reader thread."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

