"""Service mode: the agent's own files must be out of reach of the users it watches.

Run as root (Linux) or SYSTEM (Windows), the agent trusts its configuration file (what is watched),
its token file (who it is to the server) and its spool folder (events not yet sent). If an ordinary
user can write any of them, that user can stop watching a folder, impersonate the agent or empty
the spool; so the agent refuses to start instead of running in a state it cannot vouch for.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from canhgac_agent.config import AgentConfig

logger = logging.getLogger("canhgac.agent")

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


class UnsafePermissionsError(RuntimeError):
    """A file or folder the service trusts can be changed by an ordinary user."""


@dataclass(frozen=True)
class TrustedPath:
    """A path the service relies on and why (shown in the error)."""

    path: Path
    role: str
    is_secret: bool = False


def is_service_mode() -> bool:
    """Tell whether the agent runs with the machine's highest rights (root, or SYSTEM on Windows)."""
    if sys.platform.startswith("win"):
        return _is_windows_system()
    return os.geteuid() == 0


def _is_windows_system() -> bool:  # pragma: no cover - Windows only
    # S-1-5-18 is LocalSystem; USERNAME ends in '$' (the machine account) for it.
    return os.environ.get("USERNAME", "").endswith("$")


def trusted_paths(config_file: str | Path, config: AgentConfig) -> list[TrustedPath]:
    """Return what the service trusts: config, token file, spool folder and spool, their folders."""
    config_path = Path(config_file).resolve()
    found = [TrustedPath(config_path, "tệp cấu hình / configuration file",
                         is_secret=config.token is not None),
             TrustedPath(config_path.parent, "thư mục cấu hình / configuration folder")]
    if config.token_file is not None:
        token_path = Path(config.token_file).resolve()
        found += [TrustedPath(token_path, "tệp mã truy cập / token file", is_secret=True),
                  TrustedPath(token_path.parent, "thư mục mã truy cập / token folder")]
    spool_path = Path(config.spool_path).resolve()
    found += [TrustedPath(spool_path.parent, "thư mục spool / spool folder", is_secret=True),
              TrustedPath(spool_path, "spool")]
    unique: dict[Path, TrustedPath] = {}
    for item in found:
        unique.setdefault(item.path, item)
    return list(unique.values())


def posix_problems(items: Iterable[TrustedPath], *, owner_uid: int = 0) -> tuple[list[str], list[str]]:
    """Return (refusals, warnings) for trusted paths on POSIX; missing paths are skipped.

    Refused: owned by anyone but *owner_uid*, or writable by group or others (a sticky world-writable
    folder such as /tmp is refused too: anyone may create the spool there first). Warned: a secret
    (token, spool folder) readable by others.
    """
    refusals: list[str] = []
    warnings: list[str] = []
    for item in items:
        try:
            info = item.path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            refusals.append(f"{item.role} {item.path}: {exc}")
            continue
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid != owner_uid:
            refusals.append(f"{item.role} {item.path}: chủ sở hữu là uid {info.st_uid}, phải là "
                            f"root / owned by uid {info.st_uid}, must be root")
        if mode & _WRITABLE_BY_OTHERS:
            refusals.append(f"{item.role} {item.path}: nhóm hoặc người khác ghi được (quyền "
                            f"{mode:04o}) / writable by group or others (mode {mode:04o})")
        if item.is_secret and mode & stat.S_IROTH:
            warnings.append(f"{item.role} {item.path}: người khác đọc được (quyền {mode:04o}) / "
                            f"readable by others (mode {mode:04o})")
    return refusals, warnings


def check_service_permissions(config_file: str | Path, config: AgentConfig, *,
                              is_service: bool | None = None) -> None:
    """Raise UnsafePermissionsError when service mode's files are open to ordinary users.

    Does nothing when the agent runs as an ordinary user (then the files are that user's own).
    *is_service* defaults to :func:`is_service_mode`; the Windows service passes True.
    """
    if not (is_service_mode() if is_service is None else is_service):
        return
    items = trusted_paths(config_file, config)
    if sys.platform.startswith("win"):  # pragma: no cover - Windows only
        from canhgac_agent.winacl import windows_problems

        refusals, warnings = windows_problems(items)
    else:
        refusals, warnings = posix_problems(items)
    for warning in warnings:
        logger.warning("Quyền truy cập quá rộng / access too wide: %s", warning)
    if refusals:
        raise UnsafePermissionsError(
            "Tác tử chạy như dịch vụ nhưng người dùng thường sửa được tệp của nó, nên không khởi "
            "động (sửa bằng: chown root:root, chmod 600 tệp, chmod 700 thư mục) / the agent runs as "
            "a service but ordinary users can change its files, so it will not start (fix with "
            "chown root:root, chmod 600 files, chmod 700 folders): " + "; ".join(refusals)
        )
