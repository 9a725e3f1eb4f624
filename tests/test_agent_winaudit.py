"""Windows Security log reader: 4656/4663 event XML → access records, with a bookmark.

The XML below follows the documented schema of events 4656 and 4663
(http://schemas.microsoft.com/win/2004/08/events/event, EventData names as Microsoft lists them).
It was written by hand for these tests, not recorded on a Windows PC.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canhgac_agent import winaudit
from canhgac_agent.access import AccessRecord, ProcessInfo
from canhgac_agent.spool import Spool
from canhgac_agent.winaudit import (
    MalformedEventError,
    SecurityLogReader,
    decode_output,
    parse_event,
    parse_pid,
    parse_system_time,
    split_events,
    wevtutil_query,
)

SUCCESS = "0x8020000000000000"
FAILURE = "0x8010000000000000"
EXCEL = r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE"
ZALO = r"C:\Users\lan\AppData\Local\Programs\Zalo\Zalo.exe"
PROTECTED = r"D:\DuLieu\Hộ nghèo\danh-sach-2026.xlsx"

# One full 4663 as Windows 10/11 writes it (rendered with wevtutil /f:xml, no RenderingInfo).
EVENT_4663 = r"""<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Security-Auditing' Guid='{54849625-5478-4994-a5ba-3e3b0328c30d}'/><EventID>4663</EventID><Version>1</Version><Level>0</Level><Task>12800</Task><Opcode>0</Opcode><Keywords>0x8020000000000000</Keywords><TimeCreated SystemTime='2026-12-07T01:02:03.1234567Z'/><EventRecordID>184467</EventRecordID><Correlation/><Execution ProcessID='4' ThreadID='6184'/><Channel>Security</Channel><Computer>PC-VANPHONG.nhanly.local</Computer><Security/></System><EventData><Data Name='SubjectUserSid'>S-1-5-21-3623811015-3361044348-30300820-1013</Data><Data Name='SubjectUserName'>lan</Data><Data Name='SubjectDomainName'>NHANLY</Data><Data Name='SubjectLogonId'>0x5c7a1</Data><Data Name='ObjectServer'>Security</Data><Data Name='ObjectType'>File</Data><Data Name='ObjectName'>D:\DuLieu\Hộ nghèo\danh-sach-2026.xlsx</Data><Data Name='HandleId'>0x1f4</Data><Data Name='AccessList'>%%4416
				</Data><Data Name='AccessMask'>0x1</Data><Data Name='ProcessId'>0x1a2c</Data><Data Name='ProcessName'>C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE</Data><Data Name='ResourceAttributes'>S:AI</Data></EventData></Event>"""

# One full 4656 (a handle asked for read) with its extra fields.
EVENT_4656 = r"""<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Security-Auditing' Guid='{54849625-5478-4994-a5ba-3e3b0328c30d}'/><EventID>4656</EventID><Version>1</Version><Level>0</Level><Task>12800</Task><Opcode>0</Opcode><Keywords>0x8020000000000000</Keywords><TimeCreated SystemTime='2026-12-07T01:02:03.1200000Z'/><EventRecordID>184466</EventRecordID><Correlation/><Execution ProcessID='4' ThreadID='6184'/><Channel>Security</Channel><Computer>PC-VANPHONG.nhanly.local</Computer><Security/></System><EventData><Data Name='SubjectUserSid'>S-1-5-21-3623811015-3361044348-30300820-1013</Data><Data Name='SubjectUserName'>lan</Data><Data Name='SubjectDomainName'>NHANLY</Data><Data Name='SubjectLogonId'>0x5c7a1</Data><Data Name='ObjectServer'>Security</Data><Data Name='ObjectType'>File</Data><Data Name='ObjectName'>D:\DuLieu\Hộ nghèo\danh-sach-2026.xlsx</Data><Data Name='HandleId'>0x1f4</Data><Data Name='TransactionId'>{00000000-0000-0000-0000-000000000000}</Data><Data Name='AccessList'>%%1538
				%%1541
				%%4416
				%%4419
				%%4423
				</Data><Data Name='AccessReasons'>-</Data><Data Name='AccessMask'>0x120089</Data><Data Name='PrivilegeList'>-</Data><Data Name='RestrictedSidCount'>0</Data><Data Name='ProcessId'>0x1a2c</Data><Data Name='ProcessName'>C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE</Data><Data Name='ResourceAttributes'>S:AI</Data></EventData></Event>"""


def event_xml(record_id: int, *, event_id: int = 4663, mask: str = "0x1", pid: str = "0x1a2c",
              user: str = "lan", domain: str = "NHANLY", object_type: str = "File",
              path: str = PROTECTED, process: str = EXCEL, keywords: str = SUCCESS,
              handle: str = "0x1f4", time: str = "2026-12-07T01:02:03.5000000Z") -> str:
    """Return one event in the documented format (the fields the reader reads, and a few more)."""
    extra = ("<Data Name='TransactionId'>{00000000-0000-0000-0000-000000000000}</Data>"
             if event_id == 4656 else "")
    return (
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        "<Provider Name='Microsoft-Windows-Security-Auditing' "
        "Guid='{54849625-5478-4994-a5ba-3e3b0328c30d}'/>"
        f"<EventID>{event_id}</EventID><Version>1</Version><Level>0</Level><Task>12800</Task>"
        f"<Opcode>0</Opcode><Keywords>{keywords}</Keywords>"
        f"<TimeCreated SystemTime='{time}'/><EventRecordID>{record_id}</EventRecordID>"
        "<Correlation/><Execution ProcessID='4' ThreadID='6184'/><Channel>Security</Channel>"
        "<Computer>PC-VANPHONG.nhanly.local</Computer><Security/></System><EventData>"
        "<Data Name='SubjectUserSid'>S-1-5-21-3623811015-3361044348-30300820-1013</Data>"
        f"<Data Name='SubjectUserName'>{escape(user)}</Data>"
        f"<Data Name='SubjectDomainName'>{escape(domain)}</Data>"
        "<Data Name='SubjectLogonId'>0x5c7a1</Data><Data Name='ObjectServer'>Security</Data>"
        f"<Data Name='ObjectType'>{object_type}</Data>"
        f"<Data Name='ObjectName'>{escape(path)}</Data><Data Name='HandleId'>{handle}</Data>"
        f"{extra}<Data Name='AccessList'>%%4416\n\t\t\t\t</Data>"
        f"<Data Name='AccessMask'>{mask}</Data><Data Name='ProcessId'>{pid}</Data>"
        f"<Data Name='ProcessName'>{escape(process)}</Data>"
        "<Data Name='ResourceAttributes'>S:AI</Data></EventData></Event>"
    )


class RecordedLog:
    """A Security log as wevtutil answers queries on it: events after the bookmark, oldest first."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.queries: list[list[str]] = []

    def __call__(self, args) -> str:
        self.queries.append(list(args))
        if "/rd:true" in args:  # the newest event
            return "\r\n".join(self.events[-1:]) + "\r\n"
        after = int(re.search(r"EventRecordID>(\d+)", args[3]).group(1))
        limit = int(args[-1].removeprefix("/c:"))
        chosen = [e for e in self.events
                  if int(re.search(r"<EventRecordID>(\d+)<", e).group(1)) > after][:limit]
        return "".join(chosen) + "\r\n" if chosen else ""


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path / "agent-spool.sqlite3")
    yield spool
    spool.close()


# --- one event ---


def test_a_4663_read_becomes_a_read_record_by_the_user_and_program():
    event = parse_event(EVENT_4663)
    assert event.record_id == 184467 and event.event_id == 4663 and not event.is_failure
    expected_at = datetime(2026, 12, 7, 1, 2, 3, 123456, tzinfo=UTC).timestamp()
    assert event.access == AccessRecord(
        path=PROTECTED, kind="read",
        process=ProcessInfo(name="EXCEL.EXE", pid=0x1a2c, path=EXCEL, user="NHANLY\\lan"),
        at=expected_at)
    assert event.access.process.pid == 6700


def test_a_4656_is_the_open_with_the_same_handle():
    event = parse_event(EVENT_4656)
    assert event.access is not None and event.access.kind == "open"
    assert event.handle_id == parse_event(EVENT_4663).handle_id == "0x1f4"
    assert event.access.process.name == "EXCEL.EXE"


@pytest.mark.parametrize(("mask", "kind"), [
    ("0x1", "read"), ("0x2", "write"), ("0x4", "write"), ("0x10000", "write"),
    ("0x3", "write"),  # read and write on one handle: the write is what matters
    ("0x6", "write"), ("0x80", None), ("0x100000", None), ("0x0", None),
])
def test_the_access_mask_decides_read_or_write(mask, kind):
    event = parse_event(event_xml(1, mask=mask))
    assert (event.access.kind if event.access else None) == kind


@pytest.mark.parametrize("changes", [
    {"object_type": "Key"},  # a registry key, not a file
    {"user": "PC-VANPHONG$", "domain": "NHANLY"},  # the machine account: services, the system
    {"keywords": FAILURE, "event_id": 4656},  # access denied: nothing was opened
    {"path": ""},
    {"event_id": 4658},  # handle closed: not queried, skipped if it ever comes
])
def test_what_is_not_an_official_reading_a_file_is_skipped(changes):
    event = parse_event(event_xml(7, **changes))
    assert event.access is None and event.record_id == 7


def test_the_agents_own_reads_are_skipped():
    assert parse_event(event_xml(1, pid="0x2a"), own_pids={42}).access is None
    assert parse_event(event_xml(1, pid="0x2a"), own_pids={43}).access is not None


def test_a_local_account_without_domain_keeps_its_bare_name():
    event = parse_event(event_xml(1, domain="-", user="an", process=ZALO))
    assert event.access.process.user == "an" and event.access.process.name == "Zalo.exe"


@pytest.mark.parametrize("text", [
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>",
    "<Event><System><EventID>4663</EventID></System></Event>",  # wrong namespace
    event_xml(1).replace("<EventRecordID>1</EventRecordID>", "<EventRecordID>x</EventRecordID>"),
    event_xml(1).replace("SystemTime='2026-12-07T01:02:03.5000000Z'", "SystemTime='yesterday'"),
])
def test_malformed_events_raise_a_clear_error(text):
    with pytest.raises(MalformedEventError):
        parse_event(text)


def test_system_time_keeps_microseconds_and_offsets():
    assert parse_system_time("2026-12-07T01:02:03Z") == datetime(
        2026, 12, 7, 1, 2, 3, tzinfo=UTC).timestamp()
    assert parse_system_time("2026-12-07T08:02:03.9999999+07:00") == datetime(
        2026, 12, 7, 1, 2, 3, 999999, tzinfo=UTC).timestamp()


@given(st.integers(min_value=0, max_value=2**32))
def test_process_ids_in_hex_or_decimal(pid):
    assert parse_pid(hex(pid)) == pid == parse_pid(str(pid)) == parse_pid(f"0X{pid:X}")


def test_bad_process_ids_are_none():
    assert parse_pid("") is None and parse_pid(None) is None and parse_pid("0xZZ") is None


def test_output_is_split_into_events_and_decoded():
    output = f"{EVENT_4656}\r\n{EVENT_4663}\r\n"
    assert [parse_event(e).record_id for e in split_events(output)] == [184466, 184467]
    assert decode_output(output.encode("utf-16")) == output  # with a BOM
    assert decode_output(output.encode("utf-8")) == output
    assert PROTECTED in decode_output(output.encode("utf-8"))


# --- the reader ---


def test_the_query_asks_for_both_events_after_the_bookmark():
    assert wevtutil_query(41, 500) == [
        "wevtutil", "qe", "Security",
        "/q:*[System[(EventID=4663 or EventID=4656) and EventRecordID>41]]",
        "/f:xml", "/rd:false", "/c:500"]


def test_the_reader_feeds_the_sink_in_order_and_keeps_its_bookmark(spool, tmp_path):
    log = RecordedLog([
        event_xml(101, event_id=4656, mask="0x120089"),
        event_xml(102, mask="0x1"),
        event_xml(103, mask="0x1"),  # the same handle read again: one use
        event_xml(104, object_type="Key"),
        event_xml(105, user="PC-VANPHONG$"),
        event_xml(106, event_id=4656, keywords=FAILURE, user="an"),
        event_xml(107, mask="0x2", pid="0x99", handle="0x2c0", process=ZALO,
                  path=r"C:\Users\lan\Documents\Zalo Received Files\ds.xlsx"),
    ])
    received: list[AccessRecord] = []
    reader = SecurityLogReader(spool, received.append, run_command=log, batch_size=3,
                               own_pids={1})
    assert reader.mode == "security-log"
    assert reader.poll_once() == 3
    assert reader.bookmark == 103 and spool.get_meta(winaudit.BOOKMARK_KEY) == "103"
    assert reader.poll_once() == 3
    assert reader.poll_once() == 1
    assert reader.poll_once() == 0
    assert reader.bookmark == 107
    assert [(r.kind, r.process.pid, r.process.name) for r in received] == [
        ("open", 0x1a2c, "EXCEL.EXE"), ("read", 0x1a2c, "EXCEL.EXE"), ("write", 0x99, "Zalo.exe")]
    assert reader.stats.duplicates == 1 and reader.stats.denied == 1 and reader.stats.skipped == 2
    assert [q[3] for q in log.queries] == [
        f"/q:*[System[(EventID=4663 or EventID=4656) and EventRecordID>{n}]]"
        for n in (0, 103, 106, 107)]

    # After a restart the bookmark comes back from the spool file: nothing is read twice.
    reopened = Spool(tmp_path / "agent-spool.sqlite3")
    try:
        log.events.append(event_xml(108, mask="0x4"))
        again: list[AccessRecord] = []
        later = SecurityLogReader(reopened, again.append, run_command=log, own_pids={1})
        assert later.poll_once() == 1
        assert [(r.kind, r.path) for r in again] == [("write", PROTECTED)]
    finally:
        reopened.close()


def test_malformed_events_are_skipped_and_passed_over(spool):
    log = RecordedLog([event_xml(201)])
    broken = event_xml(202).replace("</EventData>", "<Data Name='x'></EventData>")  # unclosed
    log.events.append(broken)
    log.events.append(event_xml(203, mask="0x2"))
    received: list[AccessRecord] = []
    reader = SecurityLogReader(spool, received.append, run_command=log, own_pids=())
    assert reader.poll_once() == 3
    assert [r.kind for r in received] == ["read", "write"]
    assert reader.stats.malformed == 1
    assert reader.bookmark == 203  # the broken event's record id is still passed


def test_a_cleared_log_resets_the_bookmark(spool):
    spool.set_meta(winaudit.BOOKMARK_KEY, "5000")
    log = RecordedLog([event_xml(12)])
    reader = SecurityLogReader(spool, lambda record: None, run_command=log)
    assert reader.check_for_reset() is True and reader.bookmark == 0
    assert reader.poll_once() == 1 and reader.bookmark == 12
    assert reader.check_for_reset() is False and reader.bookmark == 12


def test_run_survives_a_failing_wevtutil_and_stops_when_asked(spool):
    stop = threading.Event()
    calls: list[int] = []

    def failing(args) -> str:
        calls.append(1)
        if len(calls) >= 3:
            stop.set()
        raise OSError("wevtutil exit 5: Access is denied.")

    reader = SecurityLogReader(spool, lambda record: None, run_command=failing,
                               poll_seconds=0.01)
    worker = threading.Thread(target=reader.run, args=(stop,))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert reader.stats.failed_polls == 3 and reader.bookmark == 0


def test_a_full_batch_is_followed_at_once(spool):
    log = RecordedLog([event_xml(n, handle=hex(n)) for n in range(1, 8)])
    stop = threading.Event()
    received: list[AccessRecord] = []

    def sink(record: AccessRecord) -> None:
        received.append(record)
        if len(received) == 7:
            stop.set()

    reader = SecurityLogReader(spool, sink, run_command=log, batch_size=2, poll_seconds=30,
                               own_pids=())
    worker = threading.Thread(target=reader.run, args=(stop,))
    worker.start()
    worker.join(timeout=10)  # would take minutes if it waited poll_seconds between full batches
    assert not worker.is_alive() and len(received) == 7


def test_start_reader_runs_in_its_own_thread_until_stopped(spool):
    log = RecordedLog([event_xml(1), event_xml(2, mask="0x2", handle="0x2")])
    stop = threading.Event()
    received: list[AccessRecord] = []
    reader, thread = winaudit.start_reader(spool, received.append, stop, run_command=log,
                                           poll_seconds=0.01, own_pids=())
    assert thread.name == "canhgac-agent-security-log" and thread.daemon
    deadline = threading.Event()
    for _ in range(500):
        if len(received) == 2:
            break
        deadline.wait(0.01)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [r.kind for r in received] == ["read", "write"] and reader.bookmark == 2


def test_the_security_log_monitor_feeds_the_watchers_sink_in_batches(spool):
    log = RecordedLog([event_xml(1), event_xml(2, mask="0x2", handle="0x2")])
    monitor = winaudit.SecurityLogMonitor(spool, run_command=log, poll_seconds=0.01, own_pids=())
    assert monitor.mode == "security-log"
    batches: list[list[AccessRecord]] = []
    monitor.start(batches.append)
    monitor.watch_tree(r"D:\DuLieu", "protected")  # the SACLs decide; nothing to do here
    for _ in range(500):
        if sum(len(b) for b in batches) == 2:
            break
        threading.Event().wait(0.01)
    monitor.stop()
    assert [[r.kind for r in b] for b in batches] == [["read"], ["write"]]
    assert monitor.reader is not None and monitor.reader.bookmark == 2


def test_on_windows_the_access_monitor_is_the_security_log(spool, monkeypatch):
    from canhgac_agent import monitors, paths

    monkeypatch.setattr(monitors.sys, "platform", "win32")
    chosen = monitors.open_access_monitor("auto", paths.WINDOWS, meta=spool)
    assert isinstance(chosen, winaudit.SecurityLogMonitor)
    assert monitors.open_access_monitor("off", paths.WINDOWS, meta=spool) is None
