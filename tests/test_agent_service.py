"""The agent as a system service: unit file, install-service, and the permission check at start."""

from __future__ import annotations

import configparser
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from canhgac_agent import linux_service, paths
from canhgac_agent.cli import agent_cli, agent_command, service_watcher_options
from canhgac_agent.config import load_config
from canhgac_agent.permissions import (
    UnsafePermissionsError,
    check_service_permissions,
    trusted_paths,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGED_UNIT = ROOT / "agent" / "canhgac_agent" / "deploy" / "canhgac-agent.service"
DOCS_UNIT = ROOT / "docs" / "deploy" / "canhgac-agent.service"
NOBODY = 65534

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="chown to another user and install-service need root")


def make_service_files(tmp_path: Path) -> Path:
    """Lay out config, token and spool folder as install-service does: root, 0600 / 0700."""
    etc = tmp_path / "etc"
    state = tmp_path / "state"
    for folder in (etc, state):
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)
    token = etc / "agent-token.txt"
    token.write_text("tok-123\n", encoding="utf-8")
    token.chmod(0o600)
    config = etc / "agent.toml"
    config.write_text(
        'server_url = "http://127.0.0.1:9"\nallow_insecure_http = true\n'
        'token_file = "agent-token.txt"\n'
        f'spool_path = "{state / "agent-spool.sqlite3"}"\ninclude_default_egress = false\n',
        encoding="utf-8")
    config.chmod(0o600)
    return config


def unit_sections(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


# --- permission check at start ---


def test_private_files_pass_and_every_trusted_path_is_listed(tmp_path):
    config_file = make_service_files(tmp_path)
    config = load_config(config_file)
    check_service_permissions(config_file, config, is_service=True)
    listed = {item.path for item in trusted_paths(config_file, config)}
    assert listed == {config_file, config_file.parent, config_file.parent / "agent-token.txt",
                      tmp_path / "state",
                      tmp_path / "state" / "agent-spool.sqlite3"}


@pytest.mark.parametrize(("relative", "mode", "expected"), [
    ("etc/agent.toml", 0o620, "tệp cấu hình / configuration file"),
    ("etc/agent.toml", 0o602, "tệp cấu hình / configuration file"),
    ("etc/agent-token.txt", 0o660, "tệp mã truy cập / token file"),
    ("etc", 0o777, "thư mục cấu hình / configuration folder"),
    ("state", 0o1777, "thư mục spool / spool folder"),
    ("state", 0o770, "thư mục spool / spool folder"),
])
def test_a_path_writable_by_group_or_others_is_refused(tmp_path, relative, mode, expected):
    config_file = make_service_files(tmp_path)
    config = load_config(config_file)
    (tmp_path / relative).chmod(mode)
    with pytest.raises(UnsafePermissionsError) as info:
        check_service_permissions(config_file, config, is_service=True)
    message = str(info.value)
    assert message.startswith("Tác tử chạy như dịch vụ")  # Vietnamese first
    assert "/ the agent runs as a service" in message
    assert expected in message and f"{mode:04o}" in message


@needs_root
@pytest.mark.parametrize("relative", ["etc/agent.toml", "etc/agent-token.txt", "etc", "state"])
def test_a_path_owned_by_an_ordinary_user_is_refused(tmp_path, relative):
    config_file = make_service_files(tmp_path)
    config = load_config(config_file)
    os.chown(tmp_path / relative, NOBODY, NOBODY)
    with pytest.raises(UnsafePermissionsError, match=f"uid {NOBODY}, must be root"):
        check_service_permissions(config_file, config, is_service=True)


def test_a_token_readable_by_others_is_only_warned_about(tmp_path, caplog):
    config_file = make_service_files(tmp_path)
    (tmp_path / "etc" / "agent-token.txt").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="canhgac.agent"):
        check_service_permissions(config_file, load_config(config_file), is_service=True)
    assert "readable by others (mode 0644)" in caplog.text


def test_an_agent_run_by_an_ordinary_user_is_not_checked(tmp_path):
    config_file = make_service_files(tmp_path)
    (tmp_path / "etc" / "agent.toml").chmod(0o666)
    check_service_permissions(config_file, load_config(config_file), is_service=False)


@needs_root
def test_the_cli_refuses_to_start_as_root_with_a_writable_config(tmp_path):
    config_file = make_service_files(tmp_path)
    runner = CliRunner()
    assert runner.invoke(agent_cli, ["--config", str(config_file), "--check"]).exit_code == 0
    config_file.chmod(0o666)
    for command in (agent_cli, agent_command):  # canhgac-agent and canhgac agent alike
        result = runner.invoke(command, ["--config", str(config_file), "--check"])
        assert result.exit_code == 1
        assert "Tác tử chạy như dịch vụ" in result.output
        assert "writable by group or others (mode 0666)" in result.output


# --- the command line keeps its shape ---


def test_canhgac_agent_still_runs_with_just_config(tmp_path):
    config_file = make_service_files(tmp_path)
    runner = CliRunner()
    result = runner.invoke(agent_cli, ["--config", str(config_file), "--check"])
    assert result.exit_code == 0, result.output
    assert f"spool={tmp_path / 'state' / 'agent-spool.sqlite3'}" in result.output
    missing = runner.invoke(agent_cli, [])
    assert missing.exit_code == 2 and "--config" in missing.output
    misplaced = runner.invoke(agent_cli, ["--config", str(config_file), "install-service"])
    assert misplaced.exit_code == 2 and "options go after the subcommand" in misplaced.output
    listed = runner.invoke(agent_cli, ["--help"]).output
    assert "install-service" in listed and "uninstall-service" in listed


def test_the_installed_script_answers_help():
    script = Path(sys.executable).parent / "canhgac-agent"
    if not script.exists():
        pytest.skip("canhgac-agent is not installed in this venv")
    result = subprocess.run([str(script), "install-service", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "--token-file" in result.stdout


# --- every person's egress folders in service mode ---


def test_service_user_homes_lists_people_not_system_accounts(tmp_path):
    for name in ("lan", "an", "daemon"):
        (tmp_path / name).mkdir()
    passwd = [
        ("root", "x", 0, 0, "", "/root", "/bin/bash"),
        ("daemon", "x", 1, 1, "", str(tmp_path / "daemon"), "/usr/sbin/nologin"),
        ("lan", "x", 1000, 1000, "", str(tmp_path / "lan"), "/bin/bash"),
        ("an", "x", 1001, 1001, "", str(tmp_path / "an"), "/bin/zsh"),
        ("gone", "x", 1002, 1002, "", str(tmp_path / "gone"), "/bin/bash"),  # no home folder
        ("svc", "x", 1003, 1003, "", str(tmp_path / "an"), "/bin/false"),
        ("nobody", "x", NOBODY, NOBODY, "", str(tmp_path / "lan"), "/bin/sh"),
    ]
    assert paths.service_user_homes(paths.POSIX, passwd=passwd) == [tmp_path / "lan",
                                                                     tmp_path / "an"]


def test_service_user_homes_on_windows_skips_shared_profiles(tmp_path):
    for name in ("Lan", "Public", "Default", "An"):
        (tmp_path / name).mkdir()
    (tmp_path / "desktop.ini").write_text("", encoding="utf-8")
    homes = paths.service_user_homes(paths.WINDOWS, users_dir=str(tmp_path))
    assert sorted(h.name for h in homes) == ["An", "Lan"]


def test_default_egress_folders_of_several_homes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "service-config"))  # not the users'
    (tmp_path / "lan" / "Downloads").mkdir(parents=True)
    (tmp_path / "an" / "Dropbox").mkdir(parents=True)
    (tmp_path / "an" / ".config").mkdir()
    (tmp_path / "an" / ".config" / "user-dirs.dirs").write_text(
        'XDG_DOWNLOAD_DIR="$HOME/Tải về"\n', encoding="utf-8")
    (tmp_path / "an" / "Tải về").mkdir()
    found = paths.existing_default_egress_folders([tmp_path / "lan", tmp_path / "an"],
                                                  paths.POSIX)
    assert set(found) == {(tmp_path / "lan" / "Downloads", "unknown"),
                          (tmp_path / "an" / "Dropbox", "cloud"),
                          (tmp_path / "an" / "Tải về", "unknown")}


def test_service_mode_watches_every_persons_egress_folders(tmp_path, monkeypatch):
    config = load_config(make_service_files(tmp_path)).model_copy(
        update={"include_default_egress": True})
    (tmp_path / "lan" / "Desktop").mkdir(parents=True)
    monkeypatch.setattr(paths, "service_user_homes", lambda: [tmp_path / "lan"])
    monkeypatch.setattr("canhgac_agent.permissions.is_service_mode", lambda: True)
    options = service_watcher_options(config)
    assert options is not None
    assert options["default_egress"]() == [(tmp_path / "lan" / "Desktop", "unknown")]
    monkeypatch.setattr("canhgac_agent.permissions.is_service_mode", lambda: False)
    assert service_watcher_options(config) is None


# --- the unit file ---


def test_the_docs_unit_is_the_packaged_unit():
    assert DOCS_UNIT.read_bytes() == PACKAGED_UNIT.read_bytes()


def test_the_unit_is_a_hardened_system_service():
    unit = unit_sections(linux_service.unit_text("/opt/canhgac-agent/venv/bin/canhgac-agent"))
    service = unit["Service"]
    assert service["User"] == "root"
    assert service["Restart"] == "always"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    assert set(service["CapabilityBoundingSet"].split()) == {
        "CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/canhgac-agent"
    assert service["ProtectHome"] == "read-only"
    assert service["NoNewPrivileges"] == "yes"
    assert service["UMask"] == "0077"
    assert service["StateDirectoryMode"] == "0700"
    assert service["ExecStart"] == ("/opt/canhgac-agent/venv/bin/canhgac-agent --config "
                                    "/etc/canhgac-agent/agent.toml --data-dir /var/lib/canhgac-agent")
    assert service["ExecStartPre"] == service["ExecStart"] + " --check"
    assert unit["Install"]["WantedBy"] == "multi-user.target"  # not a user's default.target


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    executable = tmp_path / "canhgac-agent"
    executable.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    executable.chmod(0o755)
    unit = tmp_path / linux_service.UNIT_NAME
    unit.write_text(linux_service.unit_text(str(executable)), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unknown key" not in result.stderr and "Unknown lvalue" not in result.stderr


# --- install-service / uninstall-service under a scratch root ---


def _sources(tmp_path: Path, config_text: str | None = None) -> tuple[Path, Path]:
    source = tmp_path / "src"
    source.mkdir()
    token = source / "token.txt"
    token.write_text("tok-abc\n", encoding="utf-8")
    token.chmod(0o644)  # as an administrator might leave it: the copy is 0600 anyway
    config = source / "agent.toml"
    config.write_text(config_text or (
        'server_url = "http://127.0.0.1:9"\nallow_insecure_http = true\n'
        'token_file = "agent-token.txt"\ninclude_default_egress = false\n'), encoding="utf-8")
    config.chmod(0o644)
    return config, token


def _mode_owner(path: Path) -> tuple[str, int]:
    info = path.stat()
    return f"{stat.S_IMODE(info.st_mode):04o}", info.st_uid


@needs_root
def test_install_service_lays_out_private_files_and_enables_the_unit(tmp_path):
    config, token = _sources(tmp_path)
    target = tmp_path / "root"
    calls: list[list[str]] = []
    plan = linux_service.InstallPlan(root=target)
    done = linux_service.install(plan, config_source=config, token_source=token, start=True,
                                 run=lambda args: calls.append(list(args)))
    assert calls == [["systemctl", "daemon-reload"],
                     ["systemctl", "enable", "--now", "canhgac-agent.service"]]
    assert _mode_owner(target / "etc/canhgac-agent") == ("0700", 0)
    assert _mode_owner(target / "var/lib/canhgac-agent") == ("0700", 0)
    assert _mode_owner(target / "etc/canhgac-agent/agent.toml") == ("0600", 0)
    assert _mode_owner(target / "etc/canhgac-agent/agent-token.txt") == ("0600", 0)
    assert (target / "etc/canhgac-agent/agent-token.txt").read_text(encoding="utf-8") == "tok-abc\n"
    unit = target / "etc/systemd/system/canhgac-agent.service"
    assert unit_sections(unit.read_text(encoding="utf-8"))["Service"]["ExecStart"].startswith(
        f"{plan.executable} --config /etc/canhgac-agent/agent.toml")
    assert len(done) >= 5
    # The installed files pass the agent's own start-up check.
    installed = target / "etc/canhgac-agent/agent.toml"
    check_service_permissions(installed, load_config(installed), is_service=True)

    calls.clear()
    linux_service.install(plan, config_source=None, token_source=None, start=False,
                          run=lambda args: calls.append(list(args)))
    assert calls[-1] == ["systemctl", "enable", "canhgac-agent.service"]

    calls.clear()
    linux_service.uninstall(plan, purge=False, run=lambda args: calls.append(list(args)))
    assert calls == [["systemctl", "disable", "--now", "canhgac-agent.service"],
                     ["systemctl", "daemon-reload"]]
    assert not unit.exists() and installed.exists()  # the spool and configuration stay
    linux_service.uninstall(plan, purge=True, run=lambda args: None)
    assert not (target / "etc/canhgac-agent").exists()
    assert not (target / "var/lib/canhgac-agent").exists()


@needs_root
def test_install_service_refuses_a_spool_outside_the_state_folder(tmp_path):
    config, token = _sources(tmp_path, 'server_url = "http://127.0.0.1:9"\n'
                                       'allow_insecure_http = true\ntoken_file = "agent-token.txt"\n'
                                       'spool_path = "/home/lan/spool.sqlite3"\n')
    with pytest.raises(linux_service.ServiceInstallError, match="spool_path must be inside"):
        linux_service.install(linux_service.InstallPlan(root=tmp_path / "root"),
                              config_source=config, token_source=token, start=True,
                              run=lambda args: None)


@needs_root
def test_install_service_refuses_a_token_file_elsewhere(tmp_path):
    config, token = _sources(tmp_path, 'server_url = "http://127.0.0.1:9"\n'
                                       'allow_insecure_http = true\n'
                                       f'token_file = "{tmp_path / "src" / "token.txt"}"\n')
    with pytest.raises(linux_service.ServiceInstallError, match=re.escape('set token_file = "agent-token.txt"')):
        linux_service.install(linux_service.InstallPlan(root=tmp_path / "root"),
                              config_source=config, token_source=token, start=True,
                              run=lambda args: None)


@needs_root
def test_install_service_refuses_code_an_ordinary_user_can_edit(tmp_path):
    config, token = _sources(tmp_path)
    venv_bin = tmp_path / "home-venv" / "bin"
    venv_bin.mkdir(parents=True)
    script = venv_bin / "canhgac-agent"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    os.chown(script, NOBODY, NOBODY)
    plan = linux_service.InstallPlan(root=tmp_path / "root", executable=str(script))
    with pytest.raises(linux_service.ServiceInstallError, match="must be root's alone"):
        linux_service.install(plan, config_source=config, token_source=token, start=True,
                              run=lambda args: None)
    assert not (tmp_path / "root").exists()  # nothing was half-installed


@needs_root
def test_install_service_command_under_a_scratch_root(tmp_path):
    config, token = _sources(tmp_path)
    target = tmp_path / "root"
    result = CliRunner().invoke(agent_cli, ["install-service", "--config", str(config),
                                            "--token-file", str(token), "--root", str(target)])
    assert result.exit_code == 0, result.output
    assert "OK: " in result.output and "systemctl" not in result.output  # not on a scratch root
    assert (target / "etc/systemd/system/canhgac-agent.service").exists()
    result = CliRunner().invoke(agent_cli, ["uninstall-service", "--root", str(target)])
    assert result.exit_code == 0, result.output
    assert not (target / "etc/systemd/system/canhgac-agent.service").exists()
