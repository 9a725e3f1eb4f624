"""The README's first command ends in `canhgac demo`: a leak must become a notified incident."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from email import message_from_bytes, policy

import pytest


@pytest.mark.heavy
def test_demo_turns_a_usb_copy_into_a_notified_incident(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHGAC_")}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--data-dir", str(tmp_path / "demo"),
         "--port", "18080", "--exit-after-leak"],
        capture_output=True, text=True, timeout=240, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"incident created: có / yes: http://127\.0\.0\.1:\d+/incidents/1$", result.stdout, re.M)
    # Every account it made, with its password, and where the mail can be read.
    accounts = dict(re.findall(r"^  (\w+)\s+(demo-\S+)", result.stdout, re.M))
    assert set(accounts) == {"admin", "lanhdao", "congan", "canbo"}
    assert re.search(r"demo mailbox: http://127\.0\.0\.1:\d+/demo/mail ", result.stdout)
    # It left the pointer later commands follow (XDG_STATE_HOME is the test's own).
    pointer = os.path.join(os.environ["XDG_STATE_HOME"], "canhgac", "demo-data-dir")
    with open(pointer, encoding="utf-8") as fh:
        assert fh.read().strip() == str((tmp_path / "demo").resolve())
    # The leak is an official's, on an official's PC, with the paths of that PC.
    with sqlite3.connect(tmp_path / "demo" / "canhgac.db") as db:
        bodies = [json.loads(b)["body"] for (b,) in db.execute(
            "SELECT body FROM audit_entry WHERE kind = 'event' AND body LIKE '%\"source\":\"demo-agent\"%'")]
    (copy,) = [b for b in bodies if b["action"] == "copy"]
    assert (copy["actor"], copy["host"], copy["unit"]) == ("vhxh.lethid", "PC-VH_XH-01", "vh_xh")
    assert copy["object"]["path"] == "/home/vhxh/AnSinh/DS_ho_ngheo_can_ngheo_thon_Ban_Chu_2026.xlsx"
    assert copy["destination"] == {
        "kind": "removable",
        "path": "/media/vhxh.lethid/KINGSTON/DS_ho_ngheo_can_ngheo_thon_Ban_Chu_2026.xlsx"}
    assert str(tmp_path) not in json.dumps(bodies) and "root" not in {b["actor"] for b in bodies}
    mails = sorted((tmp_path / "demo" / "demo-mail").glob("*.eml"))
    recipients, notices = set(), set()
    for path in mails:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        body = message.get_body(("plain",)).get_content()
        # No personal ID number of the leaked list may travel in a notification.
        assert not any(ch.isdigit() and len(word) == 12 and word.isdigit()
                       for word in body.split() for ch in word[:1])
        if message["Subject"].startswith("[Canh Gác] Thay đổi quyền:"):
            notices.add(str(message["To"]))  # the demo agent's token was announced
            continue
        assert "/incidents/" in body and "acknowledge" in body
        recipients.add(str(message["To"]))
    assert {"lanhdao@nhanly.demo", "congan@nhanly.demo"} <= recipients
    assert {"lanhdao@nhanly.demo", "congan@nhanly.demo"} <= notices
    # The trail of the demo verifies.
    verify = subprocess.run(
        [sys.executable, "-m", "service.cli", "verify", "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert verify.returncode == 0, verify.stderr
    # A second run in the same folder: new passwords printed, the month kept, the new copy
    # joins the incident the first one opened.
    again = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--data-dir", str(tmp_path / "demo"),
         "--port", "18080", "--exit-after-leak"],
        capture_output=True, text=True, timeout=240, env=env, check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the previous demo's data is kept" in again.stdout
    renewed = dict(re.findall(r"^  (\w+)\s+(demo-\S+)", again.stdout, re.M))
    assert set(renewed) == set(accounts) and not set(renewed.items()) & set(accounts.items())
    assert re.search(r"incident created: có / yes: http://127\.0\.0\.1:\d+/incidents/1$", again.stdout, re.M)
