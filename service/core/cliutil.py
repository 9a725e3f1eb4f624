"""Helpers every CLI command uses: finding the data directory, the --data-dir option, an app."""

from __future__ import annotations

import functools
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from service.config import ConfigError, Settings

DEFAULT_DATA_DIR = Path("audit_logs")
DATA_DIR_ENV = "CANHGAC_DATA_DIR"
DATABASE_FILE = "canhgac.db"
DEMO_STAGE = "demo"  # `canhgac demo` makes this folder in its data directory; it marks a demo's


def data_dir_option(func: Callable) -> Callable:
    """Add --data-dir (default CANHGAC_DATA_DIR, the config file, ./audit_logs, the demo's) to a command."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Thư mục dữ liệu / data directory (mặc định / default: CANHGAC_DATA_DIR, "
             "data_dir trong tệp CANHGAC_CONFIG, ./audit_logs, rồi thư mục của `canhgac demo` "
             "lần cuối / then the last `canhgac demo`'s)",
    )(func)


def demo_pointer_path(environ: dict[str, str] | None = None) -> Path:
    """Return the file where `canhgac demo` notes its data directory for later commands."""
    environ = dict(os.environ if environ is None else environ)
    # Per user, outside any data directory: the demo may run in one folder, the guide's
    # commands in another. XDG's state folder, or its usual place under the home folder.
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "canhgac" / "demo-data-dir"


def leave_demo_pointer(data_dir: Path) -> Path:
    """Note the demo's data directory for later commands; return the pointer file."""
    pointer = demo_pointer_path()
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(data_dir.resolve()) + "\n", encoding="utf-8")
    pointer.chmod(0o600)  # whatever the umask: a pointer others can write is not followed
    return pointer


def is_installed(data_dir: Path, database_url: str | None = None) -> bool:
    """Tell whether a data directory holds an installation: its SQLite file, or (with a database
    server configured) the folder itself; the schema check that follows needs nothing created."""
    if database_url:
        # A restored copy may have no keys/: the folder and the server's schema are what count.
        return data_dir.is_dir()
    return (data_dir / DATABASE_FILE).is_file()


@dataclass(frozen=True)
class DataDirChoice:
    """Which data directory a command uses, and what chose it (said to the person running it)."""

    settings: Settings
    source: str
    looked_at: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """Return the chosen data directory, absolute."""
        return self.settings.data_dir.resolve()


def choose_data_dir(data_dir: Path | None, *, use_demo_pointer: bool = True,
                    environ: dict[str, str] | None = None, **overrides) -> DataDirChoice:
    """Find the data directory as the server does: option, environment, config file, ./audit_logs, demo pointer."""
    from service.config import load_settings

    environ = dict(os.environ if environ is None else environ)
    settings = load_settings({"data_dir": data_dir, **overrides}, environ=environ)
    if data_dir is not None:
        return DataDirChoice(settings, "--data-dir")
    if environ.get(DATA_DIR_ENV):
        return DataDirChoice(settings, DATA_DIR_ENV)
    if settings.data_dir != DEFAULT_DATA_DIR:
        return DataDirChoice(settings, f"data_dir trong / in {environ.get('CANHGAC_CONFIG')}")
    default = "mặc định / default ./audit_logs"
    if not use_demo_pointer or is_installed(settings.data_dir, settings.database_url):
        return DataDirChoice(settings, default)
    pointer = demo_pointer_path(environ)
    try:
        named = Path(pointer.read_text(encoding="utf-8").strip())
        stat = pointer.stat()
    except (OSError, UnicodeDecodeError):
        return DataDirChoice(settings, default, (f"{pointer} (không có / absent)",))
    # Only a pointer the user's own demo left is followed: one another account could have
    # written (XDG_STATE_HOME on a shared folder) could send commands to data of its choosing.
    if stat.st_uid != os.getuid() or stat.st_mode & 0o022:
        return DataDirChoice(settings, default, (
            f"{pointer} (không phải của bạn hoặc người khác ghi được / not yours or writable "
            "by others: bỏ qua / ignored)",))
    if not named.is_dir():
        return DataDirChoice(settings, default,
                             (f"{pointer} -> {named} (không còn / gone)",))
    if not (named / DEMO_STAGE).is_dir():
        # The pointer falls back to a demo only: a real installation is named, never guessed.
        return DataDirChoice(settings, default, (
            f"{pointer} -> {named} (không phải thư mục demo / not a demo's folder: bỏ qua / "
            "ignored)",))
    demo = load_settings({"data_dir": named, **overrides}, environ=environ)
    return DataDirChoice(demo, f"thư mục của `canhgac demo`, ghi trong / the demo's, noted in {pointer}")


def require_installation(choice: DataDirChoice) -> None:
    """Stop, creating nothing, when the chosen data directory holds no installation."""
    settings = choice.settings
    if is_installed(settings.data_dir, settings.database_url):
        return
    looked = "".join(f"; đã xem / also looked at {where}" for where in choice.looked_at)
    raise click.ClickException(
        f"không có dữ liệu Canh Gác ở / no Canh Gác data in {choice.path} ({choice.source}{looked}). "
        "Lệnh này không tạo cơ sở dữ liệu hay khóa / this command creates no database or keys: "
        "chạy / run `canhgac init` (hoặc / or `canhgac demo`), hoặc chỉ đúng thư mục / or name the "
        f"right folder: --data-dir, {DATA_DIR_ENV}."
    )


def make_app(data_dir: Path | None, *, must_exist: bool = True, keeps_sessions: bool = False,
             is_quiet: bool = False, **overrides):
    """Create the app for a CLI command on the data directory found as the server finds it.

    Say which directory on stderr (stdout stays clean for `canhgac checkpoint > kept.txt`). With
    must_exist (every command but `init`), stop before anything is created when that directory
    holds no installation, and when its database has no current schema. Only a command that
    serves pages (keeps_sessions) makes or reads the session key under keys/. ``is_quiet``
    leaves out the directory line (a secondary server process: its primary said it).
    """
    from service import create_app
    from service.core import migrate
    from service.core.db import get_engine

    try:
        if not keeps_sessions and "secret_key" not in overrides:
            # A command signs no cookies: an ephemeral key, so that nothing is written to keys/.
            overrides["secret_key"] = (os.environ.get("CANHGAC_SECRET_KEY")
                                       or secrets.token_urlsafe(32))
        choice = choose_data_dir(data_dir, use_demo_pointer=must_exist, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not is_quiet:
        click.echo(f"Thư mục dữ liệu / data directory: {choice.path} ({choice.source})", err=True)
    if must_exist:
        require_installation(choice)
    app = create_app(choice.settings)
    if must_exist:
        alembic_logger = logging.getLogger("alembic")
        level = alembic_logger.level
        alembic_logger.setLevel(logging.WARNING)  # a look at the revision is not news to print
        try:
            migrate.check(get_engine(app))
        except migrate.SchemaError as exc:
            app.extensions["canhgac.engine"].dispose()
            raise click.ClickException(f"{choice.path}: {exc}") from None
        finally:
            alembic_logger.setLevel(level)
    return app


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
