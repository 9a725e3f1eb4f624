"""Opens and reads of protected files, with the user and the program (fanotify / inotify).

The end-to-end tests run a real Agent as root on real folders and make ANOTHER user (nobody,
via setpriv) open, read, copy and write files; the agent's own reads happen in this process.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from canhgac_agent import paths
from canhgac_agent.access import AccessRecord, ProcessInfo
from canhgac_agent.attribution import (
    OWN_READ_GRACE_SECONDS,
    QUIET_SECONDS,
    AccessTracker,
    program_matcher,
)
from canhgac_agent.config import AgentConfig
from canhgac_agent.runner import Agent, heartbeat_payload
from canhgac_agent.watcher import UNATTRIBUTED, unattributed_actor
from canhgac_common.pii.fingerprint import file_sha256

try:
    from test_agent_support import TOKEN, RecordingServer, free_port, wait_until
except ImportError:  # tests/ turned into a package
    from tests.test_agent_support import TOKEN, RecordingServer, free_port, wait_until

IS_LINUX = sys.platform.startswith("linux")
OTHER_UID = 65534
WINDOW = 0.3


def _fanotify_problem() -> str | None:
    if not IS_LINUX:
        return "fanotify exists on Linux only"
    if os.geteuid() != 0:
        return "fanotify needs root (CAP_SYS_ADMIN); run the tests as root"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is needed to act as another user"
    try:
        pwd.getpwuid(OTHER_UID)
    except KeyError:
        return f"no account with uid {OTHER_UID} to act as another user"
    from canhgac_agent.fanotify import FanotifyMonitor

    try:
        FanotifyMonitor().stop()
    except OSError as exc:
        return f"fanotify unavailable here: {exc}"
    return None


FANOTIFY_PROBLEM = _fanotify_problem()
needs_fanotify = pytest.mark.skipif(FANOTIFY_PROBLEM is not None,
                                    reason=FANOTIFY_PROBLEM or "")
OTHER_USER = pwd.getpwuid(OTHER_UID).pw_name if FANOTIFY_PROBLEM is None else "nobody"


def as_other_user(*argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run a command as uid/gid 65534 with no supplementary groups."""
    return subprocess.run(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", "--",
         *argv], capture_output=True, timeout=timeout, check=True)


# --- pure parts --------------------------------------------------------------------------


def test_fanotify_metadata_bytes_are_parsed():
    from canhgac_agent import fanotify as fa

    first = fa.METADATA.pack(24, 3, 0, 24, fa.FAN_OPEN_PERM, 7, 4242)
    second = fa.METADATA.pack(24, 3, 0, 24, fa.FAN_ACCESS | fa.FAN_CLOSE_WRITE, 8, 99)
    overflow = fa.METADATA.pack(24, 3, 0, 24, fa.FAN_Q_OVERFLOW, fa.FAN_NOFD, 0)
    events = fa.parse_events(first + second + overflow + b"\x18\x00")  # a torn tail is left
    assert [(e.mask, e.fd, e.pid) for e in events] == [
        (fa.FAN_OPEN_PERM, 7, 4242), (fa.FAN_ACCESS | fa.FAN_CLOSE_WRITE, 8, 99),
        (fa.FAN_Q_OVERFLOW, -1, 0)]
    assert all(e.event_len == 24 and e.metadata_len == 24 for e in events)
    assert fa.kinds_of(events[0].mask) == ["open"]
    assert fa.kinds_of(events[1].mask) == ["read", "write"]
    assert fa.kinds_of(fa.FAN_OPEN | fa.FAN_ACCESS) == ["open", "read"]
    # an event announcing more bytes than were read is not taken
    assert fa.parse_events(fa.METADATA.pack(48, 3, 0, 24, fa.FAN_OPEN, 5, 1)) == []
    with pytest.raises(fa.FanotifyError, match="version 2"):
        fa.parse_events(fa.METADATA.pack(24, 2, 0, 24, fa.FAN_OPEN, 5, 1))
    # the response is two native 32-bit integers: fd, FAN_ALLOW
    assert fa.RESPONSE.pack(7, fa.FAN_ALLOW) == struct.pack("=iI", 7, 1)


def test_fanotify_name_event_bytes_are_parsed():
    from canhgac_agent import fanotify as fa

    handle = bytes(range(8))
    name = b"ho-ngheo.xlsx\0\0\0"
    body = (struct.pack("=ii", 11, 22) + fa.HANDLE_HEADER.pack(len(handle), 1) + handle + name)
    info = fa.INFO_HEADER.pack(fa.FAN_EVENT_INFO_TYPE_DFID_NAME, 0,
                               fa.INFO_HEADER.size + len(body)) + body
    meta = fa.METADATA.pack(fa.METADATA.size + len(info), 3, 0, fa.METADATA.size,
                            fa.FAN_DELETE, fa.FAN_NOFD, 77)
    [event] = fa.parse_events(meta + info)
    assert (event.mask, event.fd, event.pid, event.info) == (fa.FAN_DELETE, -1, 77, info)
    assert fa.parse_dfid_name(event.info) == ((1, handle), "ho-ngheo.xlsx")
    assert fa.kinds_of(fa.FAN_DELETE | fa.FAN_MOVED_FROM) == ["delete", "rename"]
    assert fa.parse_dfid_name(info[:5]) is None


def test_inotify_event_bytes_are_parsed():
    from canhgac_agent import inotify as ino

    name = b"ho-ngheo.xlsx\0\0\0"
    data = (ino.HEADER.pack(3, ino.IN_OPEN, 0, len(name)) + name
            + ino.HEADER.pack(3, ino.IN_ACCESS | ino.IN_ISDIR, 0, 0))
    assert ino.parse_inotify(data) == [(3, ino.IN_OPEN, "ho-ngheo.xlsx"),
                                       (3, ino.IN_ACCESS | ino.IN_ISDIR, "")]
    assert ino.inotify_kinds(ino.IN_OPEN | ino.IN_ACCESS | ino.IN_CLOSE_WRITE) == [
        "open", "read", "write"]


def test_process_snapshot_reads_proc():
    if not IS_LINUX:
        pytest.skip("/proc is Linux's")
    from canhgac_agent.procinfo import ProcessCache, program_name, real_uid_from_status

    assert real_uid_from_status("Name:\tcat\nUid:\t65534\t0\t0\t0\n") == 65534
    assert program_name("soffice.bin", "/usr/lib/libreoffice/program/soffice.bin") == "soffice.bin"
    assert program_name("Web Content_Thr", "/usr/lib/firefox/Web Content_Thread") == (
        "Web Content_Thread")
    child = subprocess.Popen(["sleep", "5"])
    try:
        # vfork returns before the kernel renames the child (exe first, comm a moment later)
        wait_until(lambda: Path(f"/proc/{child.pid}/comm").read_text().strip() == "sleep")
        info = ProcessCache().lookup(child.pid)
    finally:
        child.kill()
        child.wait()
    assert info == ProcessInfo(name="sleep", pid=child.pid, path=shutil.which("sleep") and
                               os.path.realpath(shutil.which("sleep")),
                               user=pwd.getpwuid(os.getuid()).pw_name)
    assert ProcessCache().lookup(child.pid) is None  # gone and never seen


def _tracker(clock, pending_delays, **kw) -> AccessTracker:
    return AccessTracker(
        window=5.0, classify=lambda p: "protected" if p.startswith("/p/") else "egress",
        key=lambda p: p, is_ignored_path=lambda p: p.endswith(".tmp"),
        own_pid=1, on_pending=pending_delays.append, clock=clock, **kw)


def test_tracker_folds_repeated_opens_and_remembers_writers_and_readers():
    now = [100.0]
    delays: list[float] = []
    tracker = _tracker(lambda: now[0], delays, ignore_programs=["/usr/bin/clamscan", "updatedb"],
                       max_recent=2)
    excel = ProcessInfo("EXCEL.EXE", 40, "/opt/excel", "lan")
    agent = ProcessInfo("python3", 1, "/usr/bin/python3", "root")
    clam = ProcessInfo("clamscan", 41, "/usr/bin/clamscan", "root")
    updatedb = ProcessInfo("updatedb.plocat", 42, "/usr/bin/updatedb", "root")
    records = [AccessRecord("/p/a.xlsx", "open", excel, 1000.0 + i) for i in range(30)]
    records += [AccessRecord("/p/a.xlsx", "read", excel, 1031.0),
                AccessRecord("/p/b.xlsx", "open", None, 1032.0),
                AccessRecord("/p/a.xlsx", "open", agent, 1033.0),
                AccessRecord("/p/a.xlsx", "open", clam, 1034.0),
                AccessRecord("/p/a.xlsx", "open", updatedb, 1035.0),
                AccessRecord("/p/~a.tmp", "open", excel, 1036.0),
                AccessRecord("/usb/a.xlsx", "open", excel, 1037.0),
                AccessRecord("/usb/a.xlsx", "write", excel, 1038.0)]
    tracker.add(records)
    tracker.add([AccessRecord("/p/b.xlsx", "open", None, 1039.0)])
    # Due once the program has left the file alone for a moment: armed once, for then.
    assert delays == [pytest.approx(QUIET_SECONDS)]
    assert tracker.take_due() == ([], pytest.approx(QUIET_SECONDS))
    now[0] += QUIET_SECONDS
    summaries, next_delay = tracker.take_due()
    assert next_delay is None and tracker.pending_count() == 0
    by_path = {(s.path, s.process): s for s in summaries}
    assert set(by_path) == {("/p/a.xlsx", excel), ("/p/b.xlsx", None)}
    assert by_path["/p/a.xlsx", excel].opens == 30 and by_path["/p/a.xlsx", excel].is_read
    assert by_path["/p/a.xlsx", excel].first_at == 1000.0
    assert by_path["/p/b.xlsx", None].opens == 2 and not by_path["/p/b.xlsx", None].is_read
    # The same program back at the file within the window: one follow-up at the window's end.
    reported_at = now[0]
    for step in range(10):
        now[0] = reported_at + 0.5 + step * 0.3
        tracker.add([AccessRecord("/p/a.xlsx", "open", excel, 1100.0 + step)])
    assert tracker.take_due()[0] == []
    now[0] = reported_at + 5.0
    [follow_up], _ = tracker.take_due()
    assert follow_up.opens == 10 and follow_up.first_at == 1100.0
    assert tracker.writer_of("/usb/a.xlsx") == excel
    assert tracker.reader_of("/p/a.xlsx") == excel  # neither the agent nor the scanners
    tracker.moved("/usb/a.xlsx", "/usb/b.xlsx")
    assert tracker.writer_of("/usb/a.xlsx") is None and tracker.writer_of("/usb/b.xlsx") == excel
    # bounded and time-limited
    for name in ("c", "d"):
        tracker.add([AccessRecord(f"/usb/{name}", "write", excel, 1040.0)])
    assert tracker.writer_of("/usb/b.xlsx") is None
    now[0] += 601
    assert tracker.writer_of("/usb/d") is None
    # waiting for a writer ends at the deadline, or at once when the agent wrote the file
    real = AccessTracker(window=1.0, classify=lambda p: None, key=lambda p: p, own_pid=1)
    started = time.monotonic()
    assert real.writer_of("/usb/x", wait=0.2) is None
    assert 0.15 <= time.monotonic() - started < 2
    real.add([AccessRecord("/usb/y", "write", agent, 1.0)])
    started = time.monotonic()
    assert real.writer_of("/usb/y", wait=5.0) is None
    assert time.monotonic() - started < 1


def test_a_program_busy_with_a_file_is_summed_up_when_quiet_or_at_the_window():
    now = [0.0]
    tracker = _tracker(lambda: now[0], [])
    cat = ProcessInfo("cat", 7, "/usr/bin/cat", "lan")
    # Accesses every 30 ms keep the summary open (each one pushes it a quiet moment further)...
    for step in range(400):
        now[0] = step * 0.03
        tracker.add([AccessRecord("/p/a.xlsx", "read", cat, 1000.0 + step)])
        summaries, _ = tracker.take_due()
        if summaries:
            break
    # ...but never past the window: one summary, due at 5 s, holding every access until then.
    [summary] = summaries
    assert now[0] == pytest.approx(5.01, abs=0.03)
    assert summary.first_at == 1000.0 and summary.is_read


def test_tracker_drops_process_less_records_of_the_agents_own_reads():
    delays: list[float] = []
    tracker = _tracker(time.monotonic, delays)
    read = tracker.wrap_reader(lambda path: f"digest of {path}")
    assert read("/p/own.xlsx") == "digest of /p/own.xlsx"
    tracker.add([AccessRecord("/p/own.xlsx", "open", None, time.time()),
                 AccessRecord("/p/other.xlsx", "open", None, time.time())])
    summaries, _ = tracker.take_due(force=True)
    assert [s.path for s in summaries] == ["/p/other.xlsx"]


def test_tracker_gives_back_summaries_that_could_not_be_stored():
    now = [0.0]
    delays: list[float] = []
    tracker = _tracker(lambda: now[0], delays)
    excel = ProcessInfo("EXCEL.EXE", 40, "/opt/excel", "lan")
    tracker.add([AccessRecord("/p/a.xlsx", "open", excel, 10.0),
                 AccessRecord("/p/a.xlsx", "open", excel, 11.0)])
    now[0] = 6.0
    taken, _ = tracker.take_due()
    tracker.restore(taken)  # the spool was full
    again, next_delay = tracker.take_due()
    assert again == taken and next_delay is None
    assert (again[0].opens, again[0].first_at) == (2, 10.0)


def test_program_matcher_by_full_path_or_name():
    matches = program_matcher(["/usr/bin/clamscan", "MsMpEng.exe"], casefold=True)
    assert matches(ProcessInfo("clamscan", 1, "/usr/bin/clamscan"))
    assert not matches(ProcessInfo("clamscan", 1, "/tmp/clamscan"))
    assert matches(ProcessInfo("msmpeng.exe", 2, r"C:\ProgramData\Defender\MsMpEng.exe"))
    assert not matches(ProcessInfo("cat", 3, "/usr/bin/cat")) and not matches(None)


# --- the real agent ------------------------------------------------------------------------


class AccessHarness:
    """Folders another user can reach, and agents started on them (server down: the spool)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        # pytest's tmp folders are private to root; these must be traversable by nobody.
        self.shared = Path(tempfile.mkdtemp(prefix="canhgac-access-", dir="/tmp"))
        self.shared.chmod(0o755)
        self.protected = self.shared / "DuLieu"
        self.usb = self.shared / "usb"
        self.protected.mkdir(mode=0o755)
        self.usb.mkdir(mode=0o777)
        self.usb.chmod(0o777)
        self.server: RecordingServer | None = None
        self.agents: list[Agent] = []

    def file(self, name: str, text: str = "STT,Ho ten,So CCCD\n1,Nguyen Van A,020185000001\n",
             mode: int = 0o644) -> Path:
        path = self.protected / name
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    def start_agent(self, *, with_server: bool = False, watcher_options: dict | None = None,
                    **overrides) -> Agent:
        if with_server:
            self.server = RecordingServer().start()
        fields = {
            "server_url": self.server.url if self.server else f"http://127.0.0.1:{free_port()}",
            "token": TOKEN,
            "allow_insecure_http": True,
            "agent_id": "pc-vhxh-01",
            "spool_path": self.tmp / "state" / "agent.sqlite3",
            "protected_roots": [{"path": self.protected, "data_class": "ho_ngheo"}],
            "egress_roots": [{"path": self.usb, "kind": "removable"}],
            "include_default_egress": False,
            "auto_detect_removable": False,
            "settle_seconds": 0.1,
            "delete_settle_seconds": 0.5,
            "heartbeat_seconds": 0.3,
            "backoff_initial_seconds": 5,
            "backoff_max_seconds": 5,
            "request_timeout_seconds": 2,
            "access_window_seconds": WINDOW,
        }
        fields.update(overrides)
        agent = Agent(AgentConfig.model_validate(fields), watcher_options=watcher_options)
        agent.start()
        self.agents.append(agent)
        assert agent.wait_ready(10)
        return agent

    def events(self, agent: Agent) -> list[dict]:
        if self.server is not None:
            return self.server.all_events()
        return [json.loads(row.body) for row in agent.spool.pending(10_000)]

    def wait_for(self, agent: Agent, predicate, timeout: float = 10.0) -> list[dict]:
        return wait_until(lambda: [e for e in self.events(agent) if predicate(e)], timeout)

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.shared, ignore_errors=True)


@pytest.fixture
def env(tmp_path):
    harness = AccessHarness(tmp_path)
    yield harness
    harness.close()


def _about(path: Path, *actions: str):
    return lambda e: e["action"] in actions and e.get("object", {}).get("path") == str(path)


@needs_fanotify
def test_another_users_cat_and_cp_are_recorded_with_user_and_program(env):
    """Issue #13 item 1, done when: a read by another user and their copy to a USB stick."""
    source = env.file("ho-ngheo-2025.csv")
    agent = env.start_agent()
    assert agent.watcher.access_mode == "fanotify-perm"

    assert as_other_user("cat", str(source)).stdout == source.read_bytes()
    [read] = env.wait_for(agent, _about(source, "open", "read"))
    assert read["action"] == "read"
    assert read["actor"] == OTHER_USER
    assert read["process"]["name"] == "cat"
    assert read["process"]["path"] == os.path.realpath(shutil.which("cat"))
    assert read["process"]["pid"] > 0
    assert "count" not in read  # one open
    # what the index already knew, without reading the file again
    assert read["object"]["sha256"] == file_sha256(source)
    assert read["object"]["data_class"] == "ho_ngheo"
    assert read["pii"] == {"cccd": 1}
    assert read["host"] and read["agent_id"] == "pc-vhxh-01"

    as_other_user("cp", str(source), str(env.usb / "mang-ve.csv"))
    [copy] = env.wait_for(agent, lambda e: e["action"] == "copy")
    assert copy["actor"] == OTHER_USER
    assert copy["process"]["name"] == "cp"
    assert copy["object"]["path"] == str(source)
    assert copy["destination"]["path"] == str(env.usb / "mang-ve.csv")
    assert copy["destination"]["kind"] == "removable"
    # cp read the source too: that is its own event, by cp (`open` where the file system
    # clones instead of reading)
    [cp_read] = env.wait_for(agent, lambda e: _about(source, "open", "read")(e)
                             and e["process"]["name"] == "cp")
    assert cp_read["actor"] == OTHER_USER and cp_read["process"]["pid"] == copy["process"]["pid"]


@needs_fanotify
def test_many_opens_by_one_program_within_the_window_are_one_event(env):
    source = env.file("dan-cu.csv")
    agent = env.start_agent(access_window_seconds=1.0)
    opens = 40
    # one shell process opens (and reads) the file 40 times
    as_other_user("sh", "-c", f'i=0; while [ $i -lt {opens} ]; do read x < "{source}"; '
                              f'i=$((i+1)); done')
    [event] = env.wait_for(agent, _about(source, "open", "read"))
    time.sleep(1.5)  # a second event would be here by now
    events = [e for e in env.events(agent) if _about(source, "open", "read")(e)]
    assert events == [event]
    assert event["count"] == opens  # permission events are never merged by the kernel
    assert event["process"]["name"] == "sh" and event["actor"] == OTHER_USER


@needs_fanotify
def test_the_agents_own_reads_and_ignored_programs_make_no_event(env):
    own = env.file("own.csv")
    scanned = env.file("scanned.csv")
    sentinel = env.file("sentinel.csv")
    cat = os.path.realpath(shutil.which("cat"))
    agent = env.start_agent(access_ignore_programs=[cat, "tail"])
    for _ in range(5):
        own.read_bytes()  # this process is the agent
    as_other_user("cat", str(scanned))
    as_other_user("tail", "-n1", str(scanned))
    time.sleep(WINDOW)
    as_other_user("head", "-n1", str(sentinel))
    # the sentinel's window ends after every other one: anything else would be here too
    env.wait_for(agent, _about(sentinel, "read"))
    assert [e for e in env.events(agent) if e["action"] in ("open", "read")
            and e["object"]["path"] != str(sentinel)] == []


@needs_fanotify
def test_a_modification_names_the_writer(env):
    target = env.file("ho-tich.csv", mode=0o666)
    agent = env.start_agent()
    as_other_user("sh", "-c", f'echo "2,Tran Thi B,020185000002" >> "{target}"')
    [modify] = env.wait_for(agent, lambda e: e["action"] == "modify")
    assert modify["object"]["path"] == str(target)
    assert modify["actor"] == OTHER_USER and modify["process"]["name"] == "sh"
    assert modify["object"]["sha256"] == file_sha256(target)


@needs_fanotify
@pytest.mark.skipif(shutil.which("perl") is None, reason="perl plays a program that lingers")
def test_a_deletion_and_a_move_name_the_program_that_did_them(env):
    gone = env.file("xoa.csv", text="1,Le Van D,020185000004\n")
    moved = env.file("chuyen.csv", text="1,Pham Thi E,020185000005\n")
    env.protected.chmod(0o777)  # nobody may remove names from it
    agent = env.start_agent()
    # `rm` and `mv` end before anyone can look at them; a program that lingers a moment (as
    # a file manager does) is named.
    as_other_user("perl", "-e", "unlink $ARGV[0] or die; sleep 1", str(gone))
    as_other_user("perl", "-e", "rename $ARGV[0], $ARGV[1] or die; sleep 1", str(moved),
                  str(env.usb / "chuyen.csv"))
    [delete] = env.wait_for(agent, lambda e: e["action"] == "delete")
    [move] = env.wait_for(agent, lambda e: e["action"] == "move")
    assert delete["object"]["path"] == str(gone)
    assert delete["actor"] == OTHER_USER and delete["process"]["name"] == "perl"
    assert move["object"]["path"] == str(moved)
    assert move["destination"]["path"] == str(env.usb / "chuyen.csv")
    assert move["actor"] == OTHER_USER and move["process"]["name"] == "perl"
    assert move["process"]["pid"] != delete["process"]["pid"]


@needs_fanotify
def test_a_new_sub_folder_is_watched_for_opens(env):
    agent = env.start_agent()
    folder = env.protected / "2026"
    folder.mkdir(mode=0o755)
    inner = folder / "moi.csv"
    inner.write_text("1,Nguyen Van C\n", encoding="utf-8")
    inner.chmod(0o644)

    def opened_by_cat():
        as_other_user("cat", str(inner))
        time.sleep(WINDOW + 0.2)
        return [e for e in env.events(agent) if _about(inner, "read")(e)]

    [event] = wait_until(opened_by_cat, timeout=10)
    assert event["process"]["name"] == "cat" and event["actor"] == OTHER_USER
    assert event["object"]["data_class"] == "ho_ngheo"


@needs_fanotify
def test_inotify_fallback_records_opens_with_the_agents_user_and_says_so(env):
    indexed_only = env.file("chi-lap-chi-muc.csv")
    opened = env.file("mo.csv")
    agent = env.start_agent(with_server=True, watcher_options={"access_mode": "inotify"})
    assert agent.watcher.access_mode == "inotify"
    # Without pids, opens just after the agent's own reading of the same file are taken for
    # its own (a documented limit of inotify): let that moment pass.
    time.sleep(OWN_READ_GRACE_SECONDS + 0.2)
    as_other_user("cat", str(opened))
    [event] = env.wait_for(agent, _about(opened, "open", "read"))
    assert event["action"] == "read"
    # Running as root (a service account), the agent never names itself: the person is unknown.
    assert event["actor"] == agent.watcher.actor == unattributed_actor()
    assert "process" not in event
    beat = wait_until(lambda: [h for h in env.server.heartbeats if h.get("access_mode")])[-1]
    assert beat["access_mode"] == "inotify"
    # the agent hashed both files at start-up: its own reads made no event
    assert [e["object"]["path"] for e in env.events(agent)
            if e["action"] in ("open", "read")] == [str(opened)]
    assert indexed_only.exists()


def test_opens_are_off_when_asked_and_the_heartbeat_says_so(env):
    agent = env.start_agent(watch_opens=False)
    assert agent.watcher.access_mode == "off"
    assert heartbeat_payload(agent.config, agent.spool, agent.watcher.access_mode)[
        "access_mode"] == "off"


@needs_fanotify
def test_permission_requests_are_answered_even_when_handling_fails(env):
    from canhgac_agent.fanotify import FanotifyMonitor

    target = env.file("khoa.csv")
    monitor = FanotifyMonitor()
    assert monitor.has_permission_events
    calls: list[int] = []

    def broken_snapshot(pid):
        calls.append(pid)
        raise RuntimeError("snapshot failed")

    def broken_sink(records):
        raise RuntimeError("sink failed")

    monitor.snapshot = broken_snapshot
    monitor.watch_tree(str(env.protected), "protected")
    monitor.start(broken_sink)
    try:
        for _ in range(3):
            started = time.monotonic()
            assert as_other_user("cat", str(target), timeout=5).stdout == target.read_bytes()
            assert time.monotonic() - started < 3
        assert calls and monitor.errors >= 3
    finally:
        monitor.stop()
    # closed: the marks are gone with the group, opens go on
    assert as_other_user("cat", str(target), timeout=5).returncode == 0


@needs_fanotify
def test_a_failed_reader_lets_every_open_through(env):
    from canhgac_agent.fanotify import FanotifyError, FanotifyMonitor

    target = env.file("hong.csv")
    monitor = FanotifyMonitor()

    def unknown_layout(data):
        raise FanotifyError(71, "fanotify metadata version 9, expected 3")

    monitor.handle = unknown_layout
    monitor.watch_tree(str(env.protected), "protected")
    monitor.start(lambda records: None)
    try:
        # the first open meets the failure: the reader ends and closing the group answers it
        started = time.monotonic()
        assert as_other_user("cat", str(target), timeout=5).stdout == target.read_bytes()
        assert time.monotonic() - started < 3
        wait_until(lambda: monitor.mode == "off", timeout=5)
        assert as_other_user("cat", str(target), timeout=5).returncode == 0
    finally:
        monitor.stop()


@needs_fanotify
def test_without_root_the_agent_falls_back_to_inotify_by_itself(env):
    reachable = subprocess.run(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", "--",
         sys.executable, "-c", "import canhgac_agent.monitors"], capture_output=True, timeout=30)
    if reachable.returncode != 0:
        pytest.skip("this Python or its packages are not readable by another user")
    code = ("from canhgac_agent.monitors import open_access_monitor\n"
            "monitor = open_access_monitor('auto')\n"
            "print(monitor.mode)\n"
            "monitor.stop()\n")
    # fanotify_init refuses (EPERM) an unprivileged user: the same call gives inotify
    assert as_other_user(sys.executable, "-c", code, timeout=30).stdout.split() == [b"inotify"]


def _fanotify_mount_marks() -> list[str]:
    """Return the mount-mark lines the kernel lists for this process's fanotify groups."""
    lines = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[fanotify]":
                continue
            text = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        lines += [line for line in text.splitlines() if line.startswith("fanotify mnt_id:")]
    return lines


@needs_fanotify
def test_a_removable_medium_that_is_a_mount_gets_one_mount_mark(env):
    stick = env.shared / "stick"
    stick.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0777", "canhgac-test",
                              str(stick)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        source = env.file("gui-usb.csv")
        before = len(_fanotify_mount_marks())
        agent = env.start_agent(egress_roots=[{"path": stick, "kind": "removable"}])
        assert len(_fanotify_mount_marks()) == before + 1
        as_other_user("cp", str(source), str(stick / "gui.csv"))
        [copy] = env.wait_for(agent, lambda e: e["action"] == "copy")
        assert copy["destination"] == {"path": str(stick / "gui.csv"), "kind": "removable"}
        assert copy["actor"] == OTHER_USER and copy["process"]["name"] == "cp"
        agent.stop()
    finally:
        subprocess.run(["umount", "-l", str(stick)], capture_output=True)


class PluggedMonitor:
    """A monitor from elsewhere (as the Windows Security-log reader plugs in)."""

    mode = "security-log"

    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails
        self.trees: list[tuple[str, str, bool]] = []
        self.sink = None
        self.is_stopped = False

    def start(self, sink) -> None:
        if self.fails:
            raise RuntimeError("no audit policy")
        self.sink = sink

    def watch_tree(self, path: str, role: str, *, is_mount: bool = False) -> None:
        self.trees.append((path, role, is_mount))

    def stop(self) -> None:
        self.is_stopped = True


def test_a_plugged_monitor_feeds_open_events_and_attributes_copies(env):
    source = env.file("ho-ngheo.csv")
    monitor = PluggedMonitor()
    agent = env.start_agent(watcher_options={"access_monitor": monitor})
    assert agent.watcher.access_mode == "security-log"
    assert sorted(monitor.trees) == sorted([(str(env.protected), "protected", False),
                                            (str(env.usb), "egress", True)])
    excel = ProcessInfo("EXCEL.EXE", 4242, r"C:\Program Files\Microsoft Office\EXCEL.EXE",
                        "UBND\\lan")
    now = time.time()
    monitor.sink([AccessRecord(str(source), "open", excel, now),
                  AccessRecord(str(source), "read", excel, now),
                  AccessRecord(str(source), "open", excel, now + 0.01)])
    [read] = env.wait_for(agent, _about(source, "read"))
    assert read["actor"] == "UBND\\lan" and read["count"] == 2
    assert read["process"] == {"name": "EXCEL.EXE", "pid": 4242, "path": excel.path}
    # the copy's writer was reported before the watcher looked at the copy
    destination = env.usb / "ho-ngheo.csv"
    monitor.sink([AccessRecord(str(destination), "write", excel, time.time())])
    shutil.copyfile(source, destination)
    [copy] = env.wait_for(agent, lambda e: e["action"] == "copy")
    assert copy["actor"] == "UBND\\lan" and copy["process"]["name"] == "EXCEL.EXE"
    agent.stop()
    assert monitor.is_stopped


def test_a_monitor_that_fails_to_start_leaves_the_rest_running(env):
    source = env.file("ho-ngheo.csv")
    monitor = PluggedMonitor(fails=True)
    agent = env.start_agent(watcher_options={"access_monitor": monitor})
    assert agent.watcher.access_mode == "off" and monitor.is_stopped
    shutil.copyfile(source, env.usb / "ban-sao.csv")
    [copy] = env.wait_for(agent, lambda e: e["action"] == "copy")
    assert copy["actor"] == agent.watcher.actor and "process" not in copy


def test_unattributed_events_name_the_official_or_nobody_never_the_service_account():
    assert unattributed_actor(is_service=False) == paths.current_os_user()
    assert unattributed_actor(is_service=True) == UNATTRIBUTED == "unknown"
