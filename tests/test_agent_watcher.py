"""The agent end to end: real files, real watchdog observers, a real local HTTP server."""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
from pathlib import Path

import openpyxl
import pytest

from canhgac_agent.config import AgentConfig
from canhgac_agent.runner import Agent
from canhgac_common.pii.fingerprint import file_sha256

try:
    from test_agent_support import TOKEN, RecordingServer, wait_until
except ImportError:  # tests/ turned into a package
    from tests.test_agent_support import TOKEN, RecordingServer, wait_until

ROWS = 20


def make_sheet(path: Path, rows: int = ROWS, start: int = 0) -> list[list[object]]:
    """Write a household list with 12-digit ID numbers and phone numbers (synthetic)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    table: list[list[object]] = [["STT", "Họ và tên", "Số CCCD", "Số điện thoại", "Thôn"]]
    table += [
        [i + 1, f"Nguyễn Văn {i}", f"0201850{i:05d}", f"09123{i:05d}", "Nà Lý"]
        for i in range(start, start + rows)
    ]
    for row in table:
        sheet.append(row)
    workbook.save(path)
    return table


class Harness:
    """Folders, a server and agents started against them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.protected = tmp_path / "DuLieu"
        self.usb = tmp_path / "usb"
        self.zalo = tmp_path / "Zalo Received Files"
        for folder in (self.protected, self.usb, self.zalo):
            folder.mkdir()
        self.server = RecordingServer()
        self.agents: list[Agent] = []

    def config(self, **overrides) -> AgentConfig:
        fields = {
            "server_url": self.server.url,
            "token": TOKEN,
            "allow_insecure_http": True,
            "agent_id": "pc-vhxh-01",
            "spool_path": self.tmp / "state" / "agent.sqlite3",
            "protected_roots": [{"path": self.protected, "data_class": "ho_ngheo"}],
            "egress_roots": [{"path": self.usb, "kind": "removable"},
                             {"path": self.zalo, "kind": "messaging"}],
            "include_default_egress": False,  # never watch the real Downloads of this machine
            "auto_detect_removable": False,
            "settle_seconds": 0.2,
            "delete_settle_seconds": 0.6,
            "heartbeat_seconds": 0.5,
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.2,
            "request_timeout_seconds": 3,
        }
        fields.update(overrides)
        return AgentConfig.model_validate(fields)

    def start_agent(self, **overrides) -> Agent:
        watcher_options = overrides.pop("watcher_options", None)
        agent = Agent(self.config(**overrides), watcher_options=watcher_options)
        agent.start()
        self.agents.append(agent)
        assert agent.wait_ready(5)
        return agent

    def settle(self, agent: Agent) -> None:
        """Wait until every change was examined and every event delivered."""
        wait_until(agent.is_idle, timeout=8)

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.server.stop()


@pytest.fixture
def env(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_xlsx_copied_to_usb_is_exactly_one_attributed_copy_event(env):
    source = env.protected / "Danh sach ho ngheo 2025.xlsx"
    make_sheet(source)
    env.server.start()
    agent = env.start_agent()

    shutil.copy(source, env.usb / "ho-ngheo.xlsx")
    wait_until(lambda: env.server.all_events())
    env.settle(agent)

    events = env.server.all_events()
    assert len(events) == 1 and len(env.server.deliveries) == 1
    event = events[0]
    assert event["action"] == "copy"
    assert event["object"]["path"] == str(source)
    assert event["object"]["sha256"] == file_sha256(source)
    assert event["object"]["size"] == source.stat().st_size
    assert event["object"]["data_class"] == "ho_ngheo"
    assert event["object"]["record_count"] == ROWS
    assert event["destination"] == {"path": str(env.usb / "ho-ngheo.xlsx"), "kind": "removable"}
    assert event["pii"]["cccd"] == ROWS and event["pii"]["phone"] == ROWS
    assert event["host"] == "pc-vhxh-01" or event["host"]
    assert event["actor"] and event["agent_id"] == "pc-vhxh-01" and event["seq"] == 1
    # Counts, never values: no ID number appears anywhere in what was sent.
    assert "020185000003" not in str(env.server.batches)


def test_save_as_csv_is_still_attributed_by_content(env):
    source = env.protected / "ho-ngheo.xlsx"
    table = make_sheet(source)
    env.server.start()
    agent = env.start_agent()

    exported = env.zalo / "gui-thon.csv"
    with exported.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table)
    wait_until(lambda: env.server.all_events())
    env.settle(agent)

    [event] = env.server.all_events()
    assert event["action"] == "copy"
    assert event["object"]["path"] == str(source)
    assert event["destination"]["kind"] == "messaging"
    assert event["pii"]["cccd"] == ROWS


def test_unmatched_file_with_personal_data_is_flagged_and_harmless_files_are_not(env):
    env.server.start()
    agent = env.start_agent()
    (env.usb / "thuc-don.txt").write_text("Thực đơn tuần: cơm, canh, cá\n", encoding="utf-8")
    (env.usb / "~$nhap.xlsx").write_bytes(b"lock file")
    (env.usb / "A1B2.tmp").write_text("0201850000011 tmp", encoding="utf-8")
    make_sheet(env.usb / "danh-sach-moi.xlsx", rows=7, start=100)
    wait_until(lambda: env.server.all_events())
    env.settle(agent)

    [event] = env.server.all_events()
    assert event["action"] == "create"
    assert event["object"]["path"] == str(env.usb / "danh-sach-moi.xlsx")
    assert event["object"]["record_count"] == 7
    assert event["destination"]["kind"] == "removable"
    assert event["pii"]["cccd"] == 7


def test_move_out_of_protected_scope_is_one_move_event(env):
    source = env.protected / "ho-tich.xlsx"
    make_sheet(source, rows=3)
    digest = file_sha256(source)
    env.server.start()
    agent = env.start_agent()

    os.rename(source, env.usb / "ho-tich.xlsx")
    wait_until(lambda: env.server.all_events())
    env.settle(agent)

    [event] = env.server.all_events()
    assert event["action"] == "move"
    assert event["object"]["path"] == str(source) and event["object"]["sha256"] == digest
    assert event["destination"]["path"] == str(env.usb / "ho-tich.xlsx")
    assert agent.index.get(str(source)) is None


def test_protected_edits_deletions_and_safe_saves(env):
    keep = env.protected / "keep.txt"
    gone = env.protected / "gone.xlsx"
    saved = env.protected / "saved.xlsx"
    keep.write_text("bản 1\n", encoding="utf-8")
    make_sheet(gone, rows=4)
    make_sheet(saved, rows=2)
    env.server.start()
    agent = env.start_agent()

    keep.write_text("bản 2\n", encoding="utf-8")
    gone.unlink()
    # An editor's safe save: old file renamed away, new one written, old one deleted.
    os.rename(saved, env.protected / "XYZ123.tmp")
    make_sheet(env.protected / "~WRL0001.tmp", rows=3)
    os.rename(env.protected / "~WRL0001.tmp", saved)
    (env.protected / "XYZ123.tmp").unlink()
    wait_until(lambda: len(env.server.all_events()) >= 3)
    env.settle(agent)

    events = {(e["action"], e["object"]["path"]) for e in env.server.all_events()}
    assert events == {("modify", str(keep)), ("delete", str(gone)), ("modify", str(saved))}
    modified = {e["object"]["path"]: e for e in env.server.events_by_action("modify")}
    assert modified[str(keep)]["object"]["sha256"] == file_sha256(keep)
    [deleted] = env.server.events_by_action("delete")
    assert deleted["object"]["data_class"] == "ho_ngheo"
    assert deleted["pii"] == {"cccd": 4, "phone": 4}  # what was lost, in counts
    assert modified[str(saved)]["pii"] == {"cccd": 3, "phone": 3}


def test_rename_inside_scope_is_silent_and_later_copies_name_the_new_path(env):
    old = env.protected / "old.xlsx"
    make_sheet(old, rows=4)
    env.server.start()
    agent = env.start_agent()
    (env.protected / "2025").mkdir()
    new = env.protected / "2025" / "new.xlsx"
    os.rename(old, new)
    wait_until(lambda: agent.index.get(str(new)) is not None)
    shutil.copy(new, env.usb / "x.xlsx")
    wait_until(lambda: env.server.all_events())
    env.settle(agent)
    [event] = env.server.all_events()
    assert event["action"] == "copy" and event["object"]["path"] == str(new)


def test_symlink_in_egress_is_not_followed(env):
    source = env.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    env.server.start()
    agent = env.start_agent()
    (env.usb / "link.xlsx").symlink_to(source)
    make_sheet(env.usb / "sentinel.xlsx", rows=2, start=500)  # something that does report
    wait_until(lambda: env.server.all_events())
    env.settle(agent)
    [event] = env.server.all_events()
    assert event["object"]["path"] == str(env.usb / "sentinel.xlsx")


def test_one_rejected_event_does_not_block_the_others(env):
    def responder(path, batch):
        for index, event in enumerate(batch):
            if event.get("destination", {}).get("path", "").endswith("bad.xlsx"):
                return 400, {"error": "refused by policy test", "index": index,
                             "field": "destination.path"}
        return 200, {}

    env.server.responder = responder
    source = env.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    env.server.start()
    agent = env.start_agent()
    for name in ("a.xlsx", "bad.xlsx", "c.xlsx"):
        shutil.copy(source, env.usb / name)
    wait_until(lambda: len(env.server.all_events()) == 2)
    wait_until(lambda: agent.spool.rejected_count() == 1)
    env.settle(agent)
    assert sorted(Path(e["destination"]["path"]).name for e in env.server.all_events()) == [
        "a.xlsx", "c.xlsx"]
    assert agent.spool.pending_count() == 0
    assert "destination.path" in agent.spool.rejected()[0].reason


def test_heartbeat_reports_sequence_and_spool_depth(env):
    env.server.start()
    agent = env.start_agent()
    make_sheet(env.usb / "moi.xlsx", rows=2)
    wait_until(lambda: env.server.all_events())
    wait_until(lambda: any(h["last_seq"] == 1 for h in env.server.heartbeats))
    beat = env.server.heartbeats[-1]
    assert set(beat) == {"agent_id", "host", "last_seq", "spool_depth", "version", "sent_at",
                         "config_hash", "protected_roots", "access_mode"}
    assert beat["access_mode"] == agent.watcher.access_mode
    assert beat["agent_id"] == "pc-vhxh-01" and beat["spool_depth"] == 0
    assert beat["config_hash"] == agent.config.watch_fingerprint()
    assert beat["protected_roots"] == len(agent.config.protected_roots) >= 1
    assert agent.spool.last_seq() == 1


def test_removable_media_plugged_in_later_is_watched(env):
    source = env.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    stick = env.tmp / "media" / "KINGSTON"
    mounted: list[str] = []
    env.server.start()
    agent = env.start_agent(
        auto_detect_removable=True, removable_poll_seconds=0.1,
        watcher_options={"removable_lister": lambda: list(mounted), "mount_bases": []},
    )
    stick.mkdir(parents=True)
    shutil.copy(source, stick / "truoc-khi-phat-hien.xlsx")  # before the agent notices
    mounted.append(str(stick))
    wait_until(lambda: any(r.path == str(stick) for r in agent.watcher.roots))
    wait_until(lambda: env.server.all_events())
    shutil.copy(source, stick / "sau.xlsx")
    wait_until(lambda: len(env.server.all_events()) == 2)
    env.settle(agent)
    events = env.server.all_events()
    assert {Path(e["destination"]["path"]).name for e in events} == {
        "truoc-khi-phat-hien.xlsx", "sau.xlsx"}
    assert {e["destination"]["kind"] for e in events} == {"removable"}
    mounted.clear()  # unplugged
    wait_until(lambda: all(r.path != str(stick) for r in agent.watcher.roots))


def test_egress_files_wait_for_the_index_while_it_is_being_built(tmp_path):
    from canhgac_agent.fingerprints import FingerprintIndex, fingerprint_file
    from canhgac_agent.spool import Spool
    from canhgac_agent.watcher import Watcher

    harness = Harness(tmp_path)
    source = harness.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    release = threading.Event()

    def slow_hasher(path: str):
        release.wait(10)  # the first index build is still running
        return fingerprint_file(path)

    config = harness.config()
    spool = Spool(config.spool_path)
    index = FingerprintIndex(config.spool_path, hasher=slow_hasher)
    watcher = Watcher(config, spool, index, mount_bases=[])
    watcher.start()
    try:
        shutil.copy(source, harness.usb / "som.xlsx")
        wait_until(lambda: watcher.stats.hashed_egress >= 1)
        assert spool.pending_count() == 0 and not watcher.ready.is_set()
        release.set()
        wait_until(lambda: spool.pending_count() == 1)
        wait_until(watcher.is_idle)
        [item] = spool.pending(10)
        event = json.loads(item.body)
        assert event["action"] == "copy" and event["object"]["path"] == str(source)
    finally:
        release.set()
        watcher.stop()
        index.close()
        spool.close()
