"""Helpers every CLI command uses: the --data-dir option and an app context."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import click

from service.config import ConfigError


def data_dir_option(func: Callable) -> Callable:
    """Add --data-dir (default CANHGAC_DATA_DIR or ./audit_logs) to a command."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Thư mục dữ liệu / data directory (CANHGAC_DATA_DIR, default ./audit_logs)",
    )(func)


def make_app(data_dir: Path | None, **overrides):
    """Create the app for a CLI command; a bad setting becomes a one-line error."""
    from service import create_app
    from service.config import load_settings

    try:
        settings = load_settings({"data_dir": data_dir, **overrides})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return create_app(settings)


def with_app(func: Callable) -> Callable:
    """Run the command inside an app context; pass the app as the first argument."""

    @data_dir_option
    @functools.wraps(func)
    def wrapper(data_dir: Path | None, **kwargs):
        app = make_app(data_dir)
        with app.app_context():
            return func(app, **kwargs)

    return wrapper


def cli_actor() -> str:
    """Return who runs a command, as the trail names them: cli:<OS user>."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"
