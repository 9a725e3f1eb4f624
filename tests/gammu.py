"""A real gammu-smsd (FILES backend) with Gammu's dummy phone driver, for tests and the bench.

The dummy driver keeps the "phone" in a folder: a message saved as sms/1/<n> (gammu's SMS
backup format) is an incoming SMS; the daemon stores it as IN…txt in the inbox folder. OUT…txt
files in the outbox folder are "sent" by the driver and moved to the sent folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

GAMMU_SMSD = shutil.which("gammu-smsd")


def require_gammu() -> str:
    """Return the gammu-smsd path; skip (fail under CI=true) when it is not installed."""
    if GAMMU_SMSD:
        return GAMMU_SMSD
    reason = "gammu-smsd is not installed (Debian package gammu-smsd; scripts/test.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the SMS tests must run)")
    pytest.skip(reason)


class GammuDaemon:
    """One gammu-smsd process over folders under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.phone = root / "phone"
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        self.sent = root / "sent"
        self.error = root / "error"
        self.log_file = root / "smsd.log"
        self.config = root / "smsdrc"
        self.process: subprocess.Popen | None = None
        self._incoming = 0

    def settings(self) -> dict:
        """Return the service settings that point at this daemon's folders."""
        return {"sms_outbox_dir": self.outbox, "sms_inbox_dir": self.inbox,
                "sms_sent_dir": self.sent, "sms_error_dir": self.error}

    def start(self) -> GammuDaemon:
        """Write the configuration (dummy phone, FILES service) and start the daemon."""
        binary = require_gammu()
        for folder in (self.inbox, self.outbox, self.sent, self.error,
                       *(self.phone / "sms" / str(n) for n in range(1, 6))):
            folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "[gammu]\nmodel = dummy\nconnection = none\n"
            f"device = {self.phone}\n\n"
            "[smsd]\nservice = files\n"
            f"logfile = {self.log_file}\ndebuglevel = 1\n"
            f"inboxpath = {self.inbox}/\noutboxpath = {self.outbox}/\n"
            f"sentsmspath = {self.sent}/\nerrorsmspath = {self.error}/\n"
            "inboxformat = unicode\ntransmitformat = auto\n"
            # Poll every second; no battery, signal or PIN checks on a dummy phone.
            "commtimeout = 1\nreceivefrequency = 1\nloopsleep = 1\nstatusfrequency = 0\n"
            "checksecurity = 0\ncheckbattery = 0\nchecksignal = 0\n",
            encoding="utf-8",
        )
        env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self.process = subprocess.Popen([binary, "-c", str(self.config)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_for(lambda: "Starting phone communication" in self.log(), what="daemon start")
        return self

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then kill)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()

    def log(self) -> str:
        """Return the daemon's log so far."""
        return self.log_file.read_text("utf-8", "replace") if self.log_file.exists() else ""

    def wait_for(self, predicate, *, timeout: float = 20.0, what: str = "condition"):
        """Poll until predicate() is truthy; fail with the daemon log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"gammu-smsd: timed out waiting for {what}\n{self.log()[-3000:]}")

    def receive(self, sender: str, text: str) -> None:
        """Put an SMS from `sender` into the dummy phone's inbox folder (gammu backup format)."""
        self._incoming += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M") + f"{self._incoming % 60:02d}"
        body = (
            "[SMSBackup000]\n"
            'SMSC = "+84900000000"\n'
            "State = UnRead\n"
            f'Number = "{sender}"\n'
            f"Coding = {'Default' if text.isascii() else 'Unicode'}\n"
            "Folder = 1\nPDU = Deliver\n"
            f"DateTime = {stamp}\n"
            f"Text00 = {text.encode('utf-16-be').hex().upper()}\n"
            f"Length = {len(text)}\nClass = -1\n"
        )
        slot = self.phone / "sms" / "1" / str(self._incoming)
        temp = slot.with_name(f".{slot.name}.tmp")
        temp.write_text(body, encoding="utf-8")
        os.replace(temp, slot)

    def in_files(self) -> list[Path]:
        """Return the IN files the daemon wrote (not yet read by the service)."""
        return sorted(p for p in self.inbox.glob("IN*.txt"))

    def sent_files(self) -> list[Path]:
        """Return the OUT files the daemon has sent."""
        return sorted(self.sent.glob("OUT*"))
