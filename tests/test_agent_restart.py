"""Outages and restarts: the server down, the agent killed, every event still arrives once."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from canhgac_agent.cli import agent_command
from canhgac_agent.spool import Spool

try:
    from test_agent_support import TOKEN, RecordingServer, make_certificate, wait_until
    from test_agent_watcher import Harness, make_sheet
except ImportError:  # tests/ turned into a package
    from tests.test_agent_support import TOKEN, RecordingServer, make_certificate, wait_until
    from tests.test_agent_watcher import Harness, make_sheet

AGENT_MAIN = "from canhgac_agent.cli import main; main()"


def toml_value(value: object) -> str:
    # JSON strings, numbers and booleans are valid TOML values.
    return json.dumps(str(value) if isinstance(value, Path) else value, ensure_ascii=False)


def write_toml(path: Path, harness: Harness, **overrides) -> Path:
    """Write the harness configuration as a TOML file (what an installer would do)."""
    config = harness.config(**overrides)
    scalars = config.model_dump(exclude={"protected_roots", "egress_roots", "scan", "token_file",
                                         "pinned_sha256"})
    lines = [f"{key} = {toml_value(value)}" for key, value in scalars.items()
             if value is not None]
    if config.pinned_sha256:
        lines.append(f"pinned_sha256 = {toml_value(config.pinned_sha256)}")
    for root in config.protected_roots:
        lines += ["[[protected_roots]]", f"path = {toml_value(root.path)}"]
        if root.data_class:
            lines.append(f"data_class = {toml_value(root.data_class)}")
    for root in config.egress_roots:
        lines += ["[[egress_roots]]", f"path = {toml_value(root.path)}",
                  f"kind = {toml_value(root.kind)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class AgentProcess:
    """The agent as a separate process, as officials run it."""

    def __init__(self, config_file: Path) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", AGENT_MAIN, "--config", str(config_file)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, encoding="utf-8",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 10) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


@pytest.fixture
def env(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_server_down_and_agent_killed_meanwhile_every_event_arrives_once(env):
    source = env.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    # This test counts copies; the test process's own reading of the source (the copy) would
    # be an open/read event of another program here, so opens are not watched.
    config_file = write_toml(env.tmp / "agent.toml", env, watch_opens=False)

    # 1. The server is down; the agent sees a copy and spools it; then it is killed -9.
    first = AgentProcess(config_file)
    wait_until(lambda: first.saw("running"), timeout=8)
    shutil.copy(source, env.usb / "a.xlsx")
    spool_path = env.tmp / "state" / "agent.sqlite3"

    def spooled() -> int:
        spool = Spool(spool_path)
        try:
            return spool.pending_count()
        finally:
            spool.close()

    wait_until(lambda: spooled() == 1, timeout=8)
    first.process.send_signal(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL

    # 2. While no agent runs, another copy is made.
    shutil.copy(source, env.usb / "b.xlsx")

    # 3. The agent restarts (server still down) and catches up with the copy it missed.
    agent = env.start_agent(watch_opens=False)
    wait_until(lambda: agent.spool.pending_count() == 2, timeout=8)
    wait_until(lambda: agent.sender.stats.failures >= 1)  # it does try, and keeps everything
    assert agent.spool.pending_count() == 2

    # 4. The server comes back: both events arrive, each exactly once.
    env.server.start()
    wait_until(lambda: len(env.server.all_events()) == 2, timeout=8)
    env.settle(agent)
    events = env.server.all_events()
    assert len(env.server.deliveries) == 2
    assert sorted(Path(e["destination"]["path"]).name for e in events) == ["a.xlsx", "b.xlsx"]
    assert sorted(e["seq"] for e in events) == [1, 2]
    assert {e["action"] for e in events} == {"copy"}
    assert {e["object"]["path"] for e in events} == {str(source)}


def test_clean_restart_does_not_report_old_copies_again(env):
    source = env.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    env.server.start()
    agent = env.start_agent()
    shutil.copy(source, env.usb / "a.xlsx")
    wait_until(lambda: env.server.all_events())
    env.settle(agent)
    agent.stop()

    again = env.start_agent()
    make_sheet(env.zalo / "sentinel.xlsx", rows=2, start=900)
    wait_until(lambda: len(env.server.all_events()) == 2)
    env.settle(again)
    names = sorted(Path(e["destination"]["path"]).name for e in env.server.all_events())
    assert names == ["a.xlsx", "sentinel.xlsx"]
    assert len(env.server.deliveries) == 2


def test_sigterm_stops_the_cli_agent_cleanly(env):
    env.server.start()
    config_file = write_toml(env.tmp / "agent.toml", env)
    process = AgentProcess(config_file)
    wait_until(lambda: process.saw("running"), timeout=8)
    process.process.send_signal(signal.SIGTERM)
    assert process.finish() == 0
    assert process.saw("stopped")
    spool = Spool(env.tmp / "state" / "agent.sqlite3")
    assert spool.get_meta("egress_alive_at") is not None  # the catch-up mark was written
    spool.close()


def test_cli_check_accepts_a_good_file_and_explains_a_bad_one(env):
    config_file = write_toml(env.tmp / "agent.toml", env)
    result = CliRunner().invoke(agent_command, ["--config", str(config_file), "--check"])
    assert result.exit_code == 0, result.output
    assert "OK: agent_id=pc-vhxh-01" in result.output

    bad = env.tmp / "bad.toml"
    bad.write_text('server_url = "http://10.1.1.1"\ntoken = "x"\n', encoding="utf-8")
    result = CliRunner().invoke(agent_command, ["--config", str(bad), "--check"])
    assert result.exit_code == 1
    assert "invalid configuration" in result.output and "allow_insecure_http" in result.output


def test_cli_data_dir_holds_the_spool_when_the_file_names_none(env):
    config_file = env.tmp / "agent.toml"
    config_file.write_text(f'server_url = "http://127.0.0.1:9"\ntoken = "{TOKEN}"\n'
                           'allow_insecure_http = true\n', encoding="utf-8")
    data_dir = env.tmp / "data"
    result = CliRunner().invoke(agent_command, ["--config", str(config_file), "--data-dir",
                                                str(data_dir), "--check"])
    assert result.exit_code == 0, result.output
    assert f"spool={data_dir / 'agent-spool.sqlite3'}" in result.output
    # A commented-out spool_path (as in the example file) does not count as naming one.
    config_file.write_text(config_file.read_text(encoding="utf-8") + '# spool_path = "x"\n',
                           encoding="utf-8")
    result = CliRunner().invoke(agent_command, ["--config", str(config_file), "--data-dir",
                                                str(data_dir), "--check"])
    assert f"spool={data_dir / 'agent-spool.sqlite3'}" in result.output


def test_cli_prints_the_server_fingerprint_for_first_setup(tmp_path):
    cert, key, fingerprint = make_certificate(tmp_path)
    server = RecordingServer(certfile=cert, keyfile=key).start()
    try:
        config_file = tmp_path / "agent.toml"
        config_file.write_text(f'server_url = "{server.url}"\n', encoding="utf-8")
        result = CliRunner().invoke(agent_command, ["--config", str(config_file),
                                                    "--print-server-fingerprint"])
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert fingerprint in result.output
    assert server.request_lines == []
