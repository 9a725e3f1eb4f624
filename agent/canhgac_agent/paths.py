"""Platform helpers for the endpoint agent: removable media, default egress folders, OS user.

Every function that depends on the operating system takes the platform as a parameter
(``"posix"`` or ``"windows"``) and builds paths with ``PurePosixPath`` / ``PureWindowsPath``
explicitly, so both platforms are unit-tested on whichever OS runs the tests.
"""

from __future__ import annotations

import fnmatch
import functools
import getpass
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from canhgac_common.pii.mask import mask_pii

logger = logging.getLogger("canhgac.agent")

POSIX = "posix"
WINDOWS = "windows"

# Mount prefixes where desktop Linux mounts USB sticks and SD cards (udisks2, manual mounts).
REMOVABLE_MOUNT_PREFIXES = ("/media/", "/run/media/", "/mnt/")
# File systems that are never a user's removable medium even when mounted under /mnt.
_PSEUDO_FS = frozenset(
    {"autofs", "tmpfs", "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "overlay",
     "squashfs", "binfmt_misc", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "mqueue",
     "hugetlbfs", "configfs", "fusectl", "efivarfs", "nsfs", "ramfs", "rpc_pipefs"}
)
DRIVE_REMOVABLE = 2  # GetDriveTypeW result for USB sticks, SD cards, floppies

# Editor lock files, office owner files and partial downloads: never a finished copy.
DEFAULT_IGNORE_PATTERNS = (
    "~$*", "*.tmp", ".~lock*", "~*.tmp", "*.temp", "*.crdownload", "*.part", "*.partial",
    ".goutputstream-*", "*.swp", "*.swx", "*~", "desktop.ini", "thumbs.db", ".ds_store",
    "*.sqlite3-wal", "*.sqlite3-shm", "*.sqlite3-journal",
)


def current_platform() -> str:
    """Return ``"windows"`` on Windows and ``"posix"`` everywhere else."""
    return WINDOWS if sys.platform.startswith("win") else POSIX


def pure_path(path: str | PurePath, platform: str | None = None) -> PurePath:
    """Return *path* as a pure path of the given platform (default: the running one)."""
    platform = platform or current_platform()
    return PureWindowsPath(str(path)) if platform == WINDOWS else PurePosixPath(str(path))


def compare_key(path: str | PurePath, platform: str | None = None) -> str:
    """Return a normalised string for comparing paths: case-folded on Windows, exact on POSIX.

    Windows file systems are case-insensitive and accept ``/`` as a separator; the ``\\\\?\\``
    long-path prefix names the same file as the plain path. POSIX paths are compared as is.
    """
    platform = platform or current_platform()
    text = str(path)
    if platform == WINDOWS:
        text = text.replace("/", "\\")
        if text.startswith("\\\\?\\UNC\\"):
            text = "\\\\" + text[8:]
        elif text.startswith("\\\\?\\"):
            text = text[4:]
        if "\\\\" in text[1:] or "\\." in text or (text.endswith("\\") and len(text) > 3):
            text = str(PureWindowsPath(text))
        return text.casefold()
    # Paths from the OS are already clean; only odd ones pay for a PurePosixPath (hot path:
    # the index computes a key per file on every start-up).
    if "//" in text or "/." in text or (text.endswith("/") and len(text) > 1):
        return str(PurePosixPath(text))
    return text


def is_under(path: str | PurePath, root: str | PurePath, platform: str | None = None) -> bool:
    """Tell whether *path* is *root* itself or inside it (``/data2`` is not under ``/data``)."""
    platform = platform or current_platform()
    return key_is_under(compare_key(path, platform), compare_key(root, platform), platform)


def key_is_under(key: str, root_key: str, platform: str | None = None) -> bool:
    """Like is_under, for keys already made by compare_key (no normalisation cost)."""
    if key == root_key:
        return True
    sep = "\\" if (platform or current_platform()) == WINDOWS else "/"
    if not root_key.endswith(sep):
        root_key += sep
    return key.startswith(root_key)


@functools.lru_cache(maxsize=32)
def _ignore_regex(extra_patterns: tuple[str, ...]) -> re.Pattern[str]:
    # One regex for all patterns: the access monitor asks this for every open it sees.
    return re.compile("|".join(
        fnmatch.translate(pattern.casefold())
        for pattern in (*DEFAULT_IGNORE_PATTERNS, *extra_patterns)
    ))


def is_ignored_name(name: str, extra_patterns: Iterable[str] = ()) -> bool:
    """Tell whether a file name is a temporary or lock file that never counts as a copy."""
    return _ignore_regex(tuple(extra_patterns)).match(name.casefold()) is not None


def redact_for_log(path: str | PurePath) -> str:
    """Return a path fit for a log line: ID, phone and BHXH numbers are masked.

    Officials sometimes name files after a citizen's ID number; logs must not carry it. The
    server masks with the same function (``canhgac_common.pii.mask``).
    """
    return mask_pii(str(path))


# --- removable media -------------------------------------------------------------------------


def _unescape_mount_field(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040, \011, \012, \134).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_proc_mounts(text: str) -> list[str]:
    """Return mount points under /media, /run/media or /mnt found in a /proc/mounts text."""
    found: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = _unescape_mount_field(parts[1])
        if parts[2] in _PSEUDO_FS:
            continue
        if mount_point.startswith(REMOVABLE_MOUNT_PREFIXES) and mount_point not in found:
            found.append(mount_point)
    return found


def _listed_mount_candidates(bases: Iterable[str]) -> list[str]:
    # Without /proc/mounts, a directory that is a mount point under the usual bases is taken
    # as removable; /media/<user>/<label> and /run/media/<user>/<label> are one level deeper.
    found: list[str] = []
    for base in bases:
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if os.path.ismount(entry.path):
                found.append(entry.path)
                continue
            if base in ("/media", "/run/media"):
                try:
                    found.extend(
                        sub.path for sub in os.scandir(entry.path)
                        if sub.is_dir(follow_symlinks=False) and os.path.ismount(sub.path)
                    )
                except OSError:
                    continue
    return found


def linux_removable_mounts(proc_mounts: str = "/proc/mounts") -> list[str]:
    """Return mounted removable media on Linux (and other POSIX systems, best effort)."""
    try:
        with open(proc_mounts, encoding="utf-8", errors="replace") as handle:
            return parse_proc_mounts(handle.read())
    except OSError:
        return _listed_mount_candidates(("/media", "/run/media", "/mnt"))


def decode_drive_mask(mask: int) -> list[str]:
    """Return the drive roots (``"E:\\\\"``) named by a GetLogicalDrives bit mask."""
    return [f"{chr(ord('A') + bit)}:\\" for bit in range(26) if mask & (1 << bit)]


def windows_removable_drives(kernel32: object | None = None) -> list[str]:
    """Return removable drive roots on Windows via GetDriveTypeW; empty when unavailable."""
    if kernel32 is None:
        try:
            import ctypes

            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        except (ImportError, AttributeError, OSError):
            return []
    try:
        mask = int(kernel32.GetLogicalDrives())  # type: ignore[attr-defined]
        return [
            root for root in decode_drive_mask(mask)
            if int(kernel32.GetDriveTypeW(root)) == DRIVE_REMOVABLE  # type: ignore[attr-defined]
        ]
    except Exception:  # a broken ctypes call must not stop the agent
        logger.warning("Không đọc được danh sách ổ đĩa / cannot list drives", exc_info=True)
        return []


def removable_media(platform: str | None = None) -> list[str]:
    """Return the roots of removable media currently attached to this computer."""
    platform = platform or current_platform()
    if platform == WINDOWS:
        return windows_removable_drives()
    return linux_removable_mounts()


# --- default egress folders --------------------------------------------------------------------


def _xdg_user_dirs(home: PurePosixPath, text: str) -> dict[str, PurePosixPath]:
    # ~/.config/user-dirs.dirs holds localised names, e.g. XDG_DOWNLOAD_DIR="$HOME/Tải về".
    dirs: dict[str, PurePosixPath] = {}
    for line in text.splitlines():
        match = re.match(r'^\s*(XDG_[A-Z]+_DIR)\s*=\s*"(.*)"\s*$', line)
        if not match:
            continue
        value = match.group(2).replace("$HOME", str(home))
        if value.startswith("/"):
            dirs[match.group(1)] = PurePosixPath(value)
    return dirs


def default_egress_folders(
    home: str | PurePath,
    platform: str | None = None,
    env: Mapping[str, str] | None = None,
    read_text: Callable[[str], str | None] | None = None,
) -> list[tuple[PurePath, str]]:
    """Return ``(folder, kind)`` candidates where data leaves official scope for this user.

    The list holds folders that may not exist; the caller keeps those that do. *read_text*
    reads a small file (the XDG user-dirs file) and returns None when it is missing.
    """
    platform = platform or current_platform()
    env = os.environ if env is None else env
    read_text = read_text or _read_small_text
    folders: list[tuple[PurePath, str]] = []
    if platform == WINDOWS:
        home_path = PureWindowsPath(str(home))
        local_appdata = PureWindowsPath(env.get("LOCALAPPDATA") or home_path / "AppData" / "Local")
        roaming = PureWindowsPath(env.get("APPDATA") or home_path / "AppData" / "Roaming")
        downloads = home_path / "Downloads"
        documents = home_path / "Documents"
        folders += [(downloads, "unknown"), (home_path / "Desktop", "unknown")]
        onedrive = env.get("OneDrive") or env.get("ONEDRIVE")
        folders.append((PureWindowsPath(onedrive) if onedrive else home_path / "OneDrive", "cloud"))
        folders += [
            (home_path / "Google Drive", "cloud"),
            (home_path / "Dropbox", "cloud"),
            (documents / "Zalo Received Files", "messaging"),
            (home_path / "Zalo Received Files", "messaging"),
            (local_appdata / "ZaloPC", "messaging"),
            (roaming / "ZaloPC", "messaging"),
            (downloads / "Telegram Desktop", "messaging"),
        ]
    else:
        home_path = PurePosixPath(str(home))
        config_home = PurePosixPath(env.get("XDG_CONFIG_HOME") or home_path / ".config")
        user_dirs = _xdg_user_dirs(home_path, read_text(str(config_home / "user-dirs.dirs")) or "")
        downloads = user_dirs.get("XDG_DOWNLOAD_DIR", home_path / "Downloads")
        desktop = user_dirs.get("XDG_DESKTOP_DIR", home_path / "Desktop")
        documents = user_dirs.get("XDG_DOCUMENTS_DIR", home_path / "Documents")
        folders += [
            (downloads, "unknown"),
            (desktop, "unknown"),
            (home_path / "OneDrive", "cloud"),
            (home_path / "Google Drive", "cloud"),
            (home_path / "Dropbox", "cloud"),
            (documents / "Zalo Received Files", "messaging"),
            (home_path / "Zalo Received Files", "messaging"),
            (home_path / "ZaloPC", "messaging"),
            (downloads / "Telegram Desktop", "messaging"),
        ]
    # The same folder can be reached twice (OneDrive env var equal to the default, ...).
    unique: list[tuple[PurePath, str]] = []
    seen: set[str] = set()
    for folder, kind in folders:
        key = compare_key(folder, platform)
        if key not in seen:
            seen.add(key)
            unique.append((folder, kind))
    return unique


def _read_small_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(65536)
    except OSError:
        return None


def existing_default_egress_folders(homes: Iterable[str | PurePath] | None = None,
                                    platform: str | None = None) -> list[tuple[Path, str]]:
    """Return the default egress folders that exist, for *homes* (default: the current user's).

    A service (root or SYSTEM) has no Downloads of its own: it passes every person's home
    (:func:`service_user_homes`), and then the service's own environment says nothing about
    those users' folders, so only the home folder is used to find them.
    """
    env: Mapping[str, str] | None = None
    if homes is None:
        homes = [Path.home()]
    else:
        env = {}
    found: list[tuple[Path, str]] = []
    for home in homes:
        for folder, kind in default_egress_folders(home, platform, env=env):
            path = Path(str(folder))
            if path.is_dir() and not path.is_symlink():
                found.append((path, kind))
    return found


# Profiles under C:\Users that are no person's.
_WINDOWS_NON_PROFILES = frozenset({"public", "default", "default user", "all users", "defaultapppool"})


def service_user_homes(platform: str | None = None, *, passwd: Iterable[tuple] | None = None,
                       users_dir: str = "C:\\Users") -> list[Path]:
    """Return the home folders of people who log in here (POSIX: uid ≥ 1000 with a login shell).

    *passwd* is a list of pwd entries (name, passwd, uid, gid, gecos, dir, shell), for tests.
    """
    platform = platform or current_platform()
    homes: list[Path] = []
    if platform == WINDOWS:
        try:
            entries = list(os.scandir(users_dir))
        except OSError:
            return []
        return [Path(entry.path) for entry in entries
                if entry.is_dir(follow_symlinks=False)
                and entry.name.casefold() not in _WINDOWS_NON_PROFILES]
    if passwd is None:
        import pwd

        passwd = pwd.getpwall()
    for entry in passwd:
        uid, home, shell = entry[2], entry[5], entry[6]
        if uid < 1000 or uid == 65534 or shell.endswith(("/nologin", "/false")):
            continue
        if os.path.isdir(home) and Path(home) not in homes:
            homes.append(Path(home))
    return homes


# --- who is at the keyboard ---------------------------------------------------------------------


def current_os_user(
    getlogin: Callable[[], str] | None = None,
    getuser: Callable[[], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Return the OS user name: os.getlogin(), then getpass.getuser(), then env, then "unknown".

    os.getlogin() fails without a controlling terminal (services, cron, some desktops);
    getpass.getuser() reads LOGNAME/USER/USERNAME and the password database where one exists.
    """
    env = os.environ if env is None else env
    for attempt in (getlogin or os.getlogin, getuser or getpass.getuser):
        try:
            name = attempt()
        except (OSError, KeyError, ImportError):
            continue
        if name:
            return name
    return env.get("USERNAME") or env.get("USER") or "unknown"


def default_data_dir(platform: str | None = None, env: Mapping[str, str] | None = None,
                     home: str | PurePath | None = None) -> PurePath:
    """Return the per-user folder where the agent keeps its spool by default."""
    platform = platform or current_platform()
    env = os.environ if env is None else env
    home = home if home is not None else Path.home()
    if platform == WINDOWS:
        base = env.get("LOCALAPPDATA") or str(PureWindowsPath(str(home)) / "AppData" / "Local")
        return PureWindowsPath(base) / "CanhGac"
    base = env.get("XDG_DATA_HOME") or str(PurePosixPath(str(home)) / ".local" / "share")
    return PurePosixPath(base) / "canhgac"
