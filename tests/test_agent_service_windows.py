"""Windows service pieces that can run anywhere: the service body, the ACL decision, the script.

Nothing here runs on Windows: pywin32's service framework, the SCM and icacls/auditpol are not
exercised (docs/agent.md says so). These tests pin what the Windows code decides and ships.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from canhgac_agent import winacl, winservice
from canhgac_agent.permissions import TrustedPath, UnsafePermissionsError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "agent" / "canhgac_agent" / "deploy" / "install-agent.ps1"
USER_SID = "S-1-5-21-3623811015-3361044348-30300820-1013"
USERS_SID = "S-1-5-32-545"


def service_config(tmp_path: Path) -> Path:
    folder = tmp_path / "ProgramData" / "CanhGac" / "Agent"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "agent-token.txt").write_text("tok\n", encoding="utf-8")
    (folder / "agent-token.txt").chmod(0o600)
    config = folder / "agent.toml"
    config.write_text('server_url = "http://127.0.0.1:9"\nallow_insecure_http = true\n'
                      'token_file = "agent-token.txt"\ninclude_default_egress = false\n'
                      'auto_detect_removable = false\nheartbeat_seconds = 3600\n',
                      encoding="utf-8")
    config.chmod(0o600)
    return config


def test_the_service_body_runs_the_agent_until_stopped(tmp_path):
    config = service_config(tmp_path)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            winservice.run_service(config, stop, ready_event=ready)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    worker = threading.Thread(target=body)
    worker.start()
    assert ready.wait(20), errors
    stop.set()  # what SvcStop does
    worker.join(timeout=30)
    assert not worker.is_alive() and not errors
    # The spool and the log sit next to the configuration, as install-agent.ps1 lays them out.
    assert (config.parent / "agent-spool.sqlite3").exists()
    assert "Canh Gác agent" in (config.parent / "agent.log").read_text(encoding="utf-8")


def test_the_service_body_refuses_files_ordinary_users_can_change(tmp_path):
    config = service_config(tmp_path)
    config.chmod(0o666)
    with pytest.raises(UnsafePermissionsError):
        winservice.run_service(config, threading.Event())


def test_loading_the_service_module_loads_no_pywin32():
    code = ("import sys, canhgac_agent.winservice, canhgac_agent.winacl, canhgac_agent.winaudit; "
            "print(sorted(m for m in sys.modules if m.startswith(('win32', 'pywintypes', "
            "'servicemanager'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"


# --- the ACL decision ---


def _item(is_secret: bool = False) -> TrustedPath:
    return TrustedPath(Path("C:/ProgramData/CanhGac/Agent/agent-token.txt"), "token", is_secret)


def test_system_and_administrators_only_pass():
    aces = [(0, 0x3, 0x1F01FF, winacl.SYSTEM_SID), (0, 0x3, 0x1F01FF, winacl.ADMINISTRATORS_SID)]
    assert winacl.ace_problems(_item(True), winacl.ADMINISTRATORS_SID, aces) == ([], [])


@pytest.mark.parametrize("mask", [0x2, 0x4, 0x40000, 0x80000, 0x10000, 0x1F01FF, 0x40000000])
def test_a_user_who_may_write_or_change_the_acl_is_refused(mask):
    refusals, _ = winacl.ace_problems(_item(), winacl.SYSTEM_SID, [(0, 0, mask, USERS_SID)])
    assert len(refusals) == 1 and USERS_SID in refusals[0]


def test_owner_deny_and_inherit_only_entries():
    refusals, _ = winacl.ace_problems(_item(), USER_SID, [])
    assert "must be SYSTEM or Administrators" in refusals[0]
    deny = (1, 0, 0x1F01FF, USER_SID)  # ACCESS_DENIED: takes rights away, never a problem
    inherit_only = (0, winacl.INHERIT_ONLY_ACE | 0x3, 0x1F01FF, USER_SID)  # applies to children
    assert winacl.ace_problems(_item(), winacl.SYSTEM_SID, [deny, inherit_only]) == ([], [])


def test_a_user_who_may_read_the_token_is_warned_about():
    read = (0, 0, 0x120089, USERS_SID)
    assert winacl.ace_problems(_item(True), winacl.SYSTEM_SID, [read])[1]
    assert winacl.ace_problems(_item(False), winacl.SYSTEM_SID, [read]) == ([], [])


# --- the install script ---


def test_the_install_script_uses_sids_and_the_subcategory_guid():
    text = SCRIPT.read_text(encoding="utf-8-sig")
    # Windows PowerShell 5.1 reads a .ps1 without BOM as ANSI: Vietnamese letters would break it.
    assert SCRIPT.read_bytes().startswith(b"\xef\xbb\xbf")
    assert "#Requires -RunAsAdministrator" in text
    assert "{0CCE921D-69AE-11D9-BED3-505054503030}" in text
    assert "/success:enable" in text and "/failure:enable" in text
    # Localised Windows translates "Everyone", "Administrators": only SIDs are used.
    assert "'S-1-1-0'" in text and "'S-1-5-18'" in text and "'S-1-5-32-544'" in text
    assert "/inheritance:r" in text and "/grant:r" in text
    assert "'ReadData, WriteData, AppendData, Delete'" in text
    assert "'ContainerInherit, ObjectInherit'" in text
    assert "FileSystemAuditRule" in text and "AddAuditRule" in text
    assert "'install-service', '--config'" in text
    code = "\n".join(line for line in text.split("#>", 1)[1].splitlines()
                     if not line.strip().startswith("#"))
    for name in ("'Everyone'", '"Everyone"', "Administrators:", "Administrators'",
                 'subcategory:"File System"', "subcategory:'File System'"):
        assert name not in code, name


def test_the_install_script_checks_every_native_exit_code():
    text = SCRIPT.read_text(encoding="utf-8-sig").split("#>", 1)[1]
    code = [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    natives = [line for line in code if any(f"{tool}.exe" in line for tool in
                                            ("icacls", "auditpol", "sc", "wevtutil"))]
    for line in natives:
        assert line.startswith("Invoke-Native") or "Select-String" in line, line
    assert "$ErrorActionPreference = 'Stop'" in code


@pytest.mark.skipif(os.name == "nt", reason="checked on POSIX: Windows runs the real thing")
def test_the_script_ships_inside_the_package():
    from importlib import resources

    shipped = resources.files("canhgac_agent") / "deploy" / "install-agent.ps1"
    assert shipped.read_bytes() == SCRIPT.read_bytes()
