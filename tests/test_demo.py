"""The README's first command ends in `canhgac demo`: a leak must become a notified incident."""

from __future__ import annotations

import os
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
    assert "Sự cố đã được tạo / incident created: có / yes" in result.stdout
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
