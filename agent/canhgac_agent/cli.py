"""``canhgac agent`` / ``canhgac-agent``: run the endpoint agent, or install it as a service.

``canhgac agent --config FILE`` (the server's CLI) and ``canhgac-agent --config FILE`` run the agent
exactly alike; ``canhgac-agent`` also has ``install-service`` and ``uninstall-service``.
"""

from __future__ import annotations

import logging
import sys
import threading
import tomllib
from pathlib import Path

import click

from canhgac_agent.config import AgentConfig, ConfigError, load_config
from canhgac_agent.permissions import UnsafePermissionsError, check_service_permissions

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
    try:
        check_service_permissions(config_file, config)
    except UnsafePermissionsError as exc:
        raise click.ClickException(str(exc)) from exc
    if check:
        click.echo(f"OK: agent_id={config.agent_id} server={config.server_url} "
                   f"spool={config.spool_path}")
        return
    _configure_logging()
    stop_event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        runner.install_signal_handlers(stop_event)
    runner.run_agent(config, stop_event, watcher_options=service_watcher_options(config))


def service_watcher_options(config: AgentConfig) -> dict | None:
    """Return watcher options for service mode: every person's default egress folders.

    Root or SYSTEM has no Downloads, Desktop or Zalo folder of its own; the officials' are what
    the agent must watch. An agent run by an ordinary user keeps watching that user's own.
    """
    from canhgac_agent import paths
    from canhgac_agent.permissions import is_service_mode

    if not config.include_default_egress or not is_service_mode():
        return None
    return {"default_egress": lambda: paths.existing_default_egress_folders(
        paths.service_user_homes())}


def _agent_params(*, is_config_required: bool) -> list[click.Parameter]:
    return [
        click.Option(["--config", "config_file"], required=is_config_required,
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
    ]


_RUN_HELP = (
    "Chạy tác tử giám sát trên máy cán bộ / run the endpoint agent on an official's PC. "
    "Dừng bằng Ctrl+C hoặc SIGTERM / stop with Ctrl+C or SIGTERM."
)

agent_command = click.Command(
    name="agent",
    callback=_run,
    help=_RUN_HELP,
    params=_agent_params(is_config_required=True),
)


def _run_or_subcommand(config_file: str | None, data_dir: str | None,
                       print_server_fingerprint: bool, check: bool) -> None:
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        if config_file or data_dir or print_server_fingerprint or check:
            raise click.UsageError("Tuỳ chọn đặt sau tên lệnh con / options go after the "
                                   f"subcommand: canhgac-agent {ctx.invoked_subcommand} --config ...")
        return
    if not config_file:
        raise click.UsageError("Thiếu / missing option '--config'.")
    _run(config_file, data_dir, print_server_fingerprint, check)


agent_cli = click.Group(
    name="canhgac-agent",
    callback=_run_or_subcommand,
    invoke_without_command=True,
    help=_RUN_HELP + " `canhgac-agent --config FILE` chạy tác tử / runs the agent; "
         "install-service / uninstall-service cài hoặc gỡ dịch vụ hệ thống / install or remove "
         "the system service.",
    params=_agent_params(is_config_required=False),
)


def _register_service_commands() -> None:
    from canhgac_agent.service_cli import install_service_command, uninstall_service_command

    agent_cli.add_command(install_service_command)
    agent_cli.add_command(uninstall_service_command)


_register_service_commands()


def main() -> None:
    """Run ``canhgac-agent`` (``python -m canhgac_agent.cli``): the agent or a service command."""
    agent_cli.main(prog_name="canhgac-agent")


if __name__ == "__main__":
    main()
    sys.exit(0)
