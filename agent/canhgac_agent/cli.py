"""``canhgac agent``: run the endpoint agent from a TOML configuration file."""

from __future__ import annotations

import logging
import sys
import threading
import tomllib
from pathlib import Path

import click

from canhgac_agent.config import ConfigError, load_config

logger = logging.getLogger("canhgac.agent")


def _configure_logging() -> None:
    # Respect a logging set-up made by the main CLI; otherwise log to stderr.
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(config_file: str, data_dir: str | None, print_server_fingerprint: bool,
         check: bool) -> None:
    from canhgac_agent import runner
    from canhgac_agent.client import fetch_server_fingerprint

    try:
        raw = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        if print_server_fingerprint:
            click.echo(fetch_server_fingerprint(str(raw.get("server_url", ""))))
            click.echo("So sánh với dấu vân tay do `canhgac init` in ra trước khi ghim / "
                       "compare with the fingerprint printed by `canhgac init` before pinning",
                       err=True)
            return
        overrides = {}
        if data_dir and "spool_path" not in raw:
            # The spool goes into --data-dir unless the file names one explicitly.
            overrides["spool_path"] = str(Path(data_dir).resolve() / "agent-spool.sqlite3")
        config = load_config(config_file, overrides)
        config.bearer_token()
    except (ConfigError, OSError, ValueError) as exc:
        raise click.ClickException(f"Cấu hình không hợp lệ / invalid configuration: {exc}") from exc
    if check:
        click.echo(f"OK: agent_id={config.agent_id} server={config.server_url} "
                   f"spool={config.spool_path}")
        return
    _configure_logging()
    stop_event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        runner.install_signal_handlers(stop_event)
    runner.run_agent(config, stop_event)


agent_command = click.Command(
    name="agent",
    callback=_run,
    help=(
        "Chạy tác tử giám sát trên máy cán bộ / run the endpoint agent on an official's PC. "
        "Dừng bằng Ctrl+C hoặc SIGTERM / stop with Ctrl+C or SIGTERM."
    ),
    params=[
        click.Option(["--config", "config_file"], required=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Tệp cấu hình TOML / TOML configuration file"),
        click.Option(["--data-dir"], type=click.Path(file_okay=False), default=None,
                     help="Thư mục chứa spool nếu tệp cấu hình không chỉ định / "
                          "spool folder when the file names none"),
        click.Option(["--print-server-fingerprint"], is_flag=True,
                     help="In dấu vân tay chứng chỉ máy chủ rồi thoát / print the server "
                          "certificate fingerprint and exit"),
        click.Option(["--check"], is_flag=True,
                     help="Chỉ kiểm tra cấu hình / only validate the configuration"),
    ],
)


def main() -> None:
    """Run ``agent`` as a stand-alone command (``python -m canhgac_agent.cli``)."""
    agent_command.main(prog_name="canhgac-agent")


if __name__ == "__main__":
    main()
    sys.exit(0)
