"""Install the agent as a systemd system service: unit, folders, owners and modes.

The official must not be able to stop the agent, change what it watches or empty its spool, so
it runs as root from a root-owned venv, with its configuration and token in /etc/canhgac-agent
(root, 0700 folder, 0600 files) and its spool in /var/lib/canhgac-agent (root, 0700).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from canhgac_agent.config import ConfigError, load_config
from canhgac_agent.paths import is_under
from canhgac_agent.permissions import TrustedPath, UnsafePermissionsError, posix_problems

UNIT_NAME = "canhgac-agent.service"
TEMPLATE_EXECUTABLE = "/opt/canhgac-agent/venv/bin/canhgac-agent"
CONFIG_DIR = "/etc/canhgac-agent"
STATE_DIR = "/var/lib/canhgac-agent"
UNIT_DIR = "/etc/systemd/system"
CONFIG_NAME = "agent.toml"
TOKEN_FILE_NAME = "agent-token.txt"  # noqa: S105 - a file name, not a secret
SPOOL_NAME = "agent-spool.sqlite3"

Runner = Callable[[Sequence[str]], object]


class ServiceInstallError(RuntimeError):
    """The service cannot be installed or removed as asked."""


@dataclass
class InstallPlan:
    """Where things go; *root* is "/" except in tests (a DESTDIR-like prefix)."""

    root: Path = Path("/")
    executable: str = field(default_factory=lambda: default_executable())

    def at(self, absolute: str) -> Path:
        """Return an absolute system path under this plan's root."""
        return self.root / absolute.lstrip("/")

    @property
    def config_path(self) -> Path:
        """Return where the installed configuration lives."""
        return self.at(f"{CONFIG_DIR}/{CONFIG_NAME}")

    @property
    def token_path(self) -> Path:
        """Return where the installed token file lives."""
        return self.at(f"{CONFIG_DIR}/{TOKEN_FILE_NAME}")

    @property
    def unit_path(self) -> Path:
        """Return where the unit file is written."""
        return self.at(f"{UNIT_DIR}/{UNIT_NAME}")


def default_executable() -> str:
    """Return the ``canhgac-agent`` script next to the running interpreter."""
    return str(Path(sys.executable).parent / "canhgac-agent")


def unit_template() -> str:
    """Return the unit file shipped inside the package."""
    return (resources.files("canhgac_agent") / "deploy" / UNIT_NAME).read_text(encoding="utf-8")


def unit_text(executable: str) -> str:
    """Return the packaged unit with ExecStartPre/ExecStart naming *executable*.

    Both lines pass ``--data-dir /var/lib/canhgac-agent``: the spool goes into the state folder
    unless the configuration names one.
    """
    if any(ch.isspace() for ch in executable):
        raise ServiceInstallError(f"đường dẫn có khoảng trắng / path with whitespace: {executable}")
    return unit_template().replace(TEMPLATE_EXECUTABLE, executable)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    path.chmod(0o700)


def _private_copy(source: Path, target: Path) -> None:
    # Write to a new 0600 file, then rename: the secret is never readable by others, even briefly.
    temporary = target.with_name(target.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(source.read_bytes())
    os.chown(temporary, 0, 0)
    temporary.chmod(0o600)
    os.replace(temporary, target)


def _check_code_is_root_owned(executable: str) -> None:
    # Code a user can edit is code the user runs as root: the venv must be root's alone.
    import canhgac_agent

    package_dir = Path(canhgac_agent.__file__).resolve().parent
    items = [TrustedPath(Path(executable).resolve(), "chương trình / executable"),
             TrustedPath(Path(executable).resolve().parent, "thư mục chương trình / bin folder"),
             TrustedPath(package_dir, "mã tác tử / agent code")]
    refusals, _ = posix_problems(items)
    if not Path(executable).exists():
        refusals.append(f"không thấy / not found: {executable}")
    if refusals:
        raise ServiceInstallError(
            "Mã tác tử phải thuộc root và chỉ root ghi được (cài vào /opt/canhgac-agent/venv "
            "bằng sudo) / the agent's code must be root's alone (install it into "
            "/opt/canhgac-agent/venv with sudo): " + "; ".join(refusals))


def install(plan: InstallPlan, *, config_source: Path | None, token_source: Path | None,
            start: bool, run: Runner | None = None) -> list[str]:
    """Install the system service; return what was done, one line each.

    *run* executes systemctl (default: subprocess.run with check); None and a *root* other than
    "/" skip systemctl entirely (tests, images built offline).
    """
    if os.geteuid() != 0:
        raise ServiceInstallError("Cần quyền root (sudo) / root is required (sudo)")
    _check_code_is_root_owned(plan.executable)
    done: list[str] = []
    config_dir, state_dir = plan.at(CONFIG_DIR), plan.at(STATE_DIR)
    _private_dir(config_dir)
    _private_dir(state_dir)
    done += [f"{config_dir} root 0700", f"{state_dir} root 0700"]
    if token_source is not None:
        _private_copy(token_source, plan.token_path)
        done.append(f"{plan.token_path} root 0600")
    if config_source is not None:
        _private_copy(config_source, plan.config_path)
        done.append(f"{plan.config_path} root 0600")
    if not plan.config_path.exists():
        raise ServiceInstallError(
            f"Chưa có cấu hình {plan.config_path}: dùng --config / no configuration yet: use --config")
    _check_installed_config(plan, has_token_source=token_source is not None)
    plan.unit_path.parent.mkdir(parents=True, exist_ok=True)
    plan.unit_path.write_text(unit_text(plan.executable), encoding="utf-8")
    plan.unit_path.chmod(0o644)
    done.append(f"{plan.unit_path}")
    runner = run if run is not None else (_systemctl if plan.root == Path("/") else None)
    if runner is not None:
        runner(["systemctl", "daemon-reload"])
        runner(["systemctl", "enable", "--now", UNIT_NAME] if start
               else ["systemctl", "enable", UNIT_NAME])
        done.append("systemctl enable" + (" --now" if start else "") + f" {UNIT_NAME}")
    return done


def _check_installed_config(plan: InstallPlan, *, has_token_source: bool) -> None:
    from canhgac_agent.permissions import check_service_permissions

    state_dir = plan.at(STATE_DIR)
    try:
        raw = tomllib.loads(plan.config_path.read_text(encoding="utf-8"))
        overrides = {} if "spool_path" in raw else {"spool_path": str(state_dir / SPOOL_NAME)}
        config = load_config(plan.config_path, overrides)
        if not is_under(config.spool_path.resolve(), state_dir.resolve()):
            raise ServiceInstallError(
                f"spool_path phải nằm trong {STATE_DIR} (chỉ thư mục này ghi được) hoặc bỏ trống / "
                f"spool_path must be inside {STATE_DIR} (the only writable folder) or left out: "
                f"{config.spool_path}")
        if has_token_source and config.token_file is not None \
                and config.token_file.resolve() != plan.token_path.resolve():
            raise ServiceInstallError(
                f"token_file trong cấu hình là {config.token_file}, không phải tệp vừa chép; đặt "
                f'token_file = "{TOKEN_FILE_NAME}" / the configuration names token_file '
                f'{config.token_file}, not the copied one; set token_file = "{TOKEN_FILE_NAME}"')
        config.bearer_token()
        check_service_permissions(plan.config_path, config, is_service=True)
    except (ConfigError, UnsafePermissionsError, tomllib.TOMLDecodeError) as exc:
        raise ServiceInstallError(str(exc)) from exc


def uninstall(plan: InstallPlan, *, purge: bool, run: Runner | None = None) -> list[str]:
    """Stop and remove the service; with *purge* also its configuration and spool."""
    if os.geteuid() != 0:
        raise ServiceInstallError("Cần quyền root (sudo) / root is required (sudo)")
    done: list[str] = []
    runner = run if run is not None else (_systemctl if plan.root == Path("/") else None)
    if runner is not None and plan.unit_path.exists():
        runner(["systemctl", "disable", "--now", UNIT_NAME])
        done.append(f"systemctl disable --now {UNIT_NAME}")
    if plan.unit_path.exists():
        plan.unit_path.unlink()
        done.append(f"removed {plan.unit_path}")
    if runner is not None:
        runner(["systemctl", "daemon-reload"])
    if purge:
        for folder in (plan.at(CONFIG_DIR), plan.at(STATE_DIR)):
            if folder.exists():
                shutil.rmtree(folder)
                done.append(f"removed {folder}")
    return done


def _systemctl(args: Sequence[str]) -> object:
    program = shutil.which(args[0])
    if program is None:
        raise ServiceInstallError("Không có systemctl / systemctl not found")
    try:
        return subprocess.run([program, *args[1:]], check=True, capture_output=True, text=True,
                              timeout=120)
    except subprocess.CalledProcessError as exc:
        raise ServiceInstallError(f"{' '.join(args)}: {exc.stderr.strip() or exc}") from exc
