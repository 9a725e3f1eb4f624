"""Identity of the removable device behind a folder: vendor, model, serial, filesystem UUID.

The server tells a registered official USB stick from any other by these fields, so the agent
reads them where the operating system keeps them and never asks the user:

* Linux: the mount holding the folder (``/proc/self/mountinfo``) gives the block device's
  ``major:minor``; udev's database (``/run/udev/data/b<major>:<minor>``) holds ``ID_VENDOR``,
  ``ID_MODEL``, ``ID_SERIAL_SHORT`` and ``ID_FS_UUID``; sysfs (``/sys/dev/block/<maj:min>``
  and its parents up to the USB device) gives ``serial``, ``manufacturer`` and ``product``
  when udev's database is missing. Only devices on a USB or MMC bus, or marked removable by
  the kernel, are identified: a folder on the computer's own disk has no identity to report.
* Windows: ``GetVolumeInformationW`` gives the volume serial (``1A2B-3C4D``, our ``fs_uuid``);
  the disk's serial, maker and model come from PowerShell's ``Get-Partition | Get-Disk``
  (best effort, a few seconds at most, once per stick).

The roots (``/proc``, ``/run/udev/data``, ``/sys``, ``/dev``) and the Windows calls are
injectable so tests build a fake tree that mirrors the real layout. Device strings are
device metadata (maker strings, serial numbers): clipped, without control characters; the
volume label, which a person chooses and may name a citizen, is never read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from canhgac_agent import paths
from canhgac_common.events import Device

logger = logging.getLogger("canhgac.agent")

MAX_FIELD = 128
_CACHE_LIMIT = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
POWERSHELL_TIMEOUT_SECONDS = 8.0

# udev keys in order of preference (newer systemd adds the ID_USB_* names).
_UDEV_KEYS = {
    "vendor": ("ID_VENDOR_ENC", "ID_USB_VENDOR_ENC", "ID_VENDOR", "ID_USB_VENDOR"),
    "model": ("ID_MODEL_ENC", "ID_USB_MODEL_ENC", "ID_MODEL", "ID_USB_MODEL"),
    "serial": ("ID_SERIAL_SHORT", "ID_USB_SERIAL_SHORT"),
    "fs_uuid": ("ID_FS_UUID",),
}


def clean_field(text: str | None) -> str | None:
    """Return a device string fit for an event: no control characters, trimmed, clipped."""
    if text is None:
        return None
    text = " ".join(_CONTROL.sub(" ", text).split())
    if not text:
        return None
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD]


def make_device(vendor: str | None = None, model: str | None = None, serial: str | None = None,
                fs_uuid: str | None = None) -> Device | None:
    """Return a Device from raw strings, or None when nothing identifies it."""
    fields = {"vendor": clean_field(vendor), "model": clean_field(model),
              "serial": clean_field(serial), "fs_uuid": clean_field(fs_uuid)}
    if fields["serial"] is None and fields["fs_uuid"] is None:
        return None  # a maker's name alone tells no stick from another
    return Device(**fields)


# --- Linux -------------------------------------------------------------------------------------


def _unescape_mount_field(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, str]]:
    """Return ``(mount point, major:minor, fs type, source)`` for each /proc/self/mountinfo line."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if not sep or len(parts) < 5 or len(tail) < 2:
            continue
        mounts.append((_unescape_mount_field(parts[4]), parts[2], tail[0],
                       _unescape_mount_field(tail[1])))
    return mounts


def parse_udev_data(text: str) -> dict[str, str]:
    """Return the ``E:KEY=value`` properties of a udev database file."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("E:") and "=" in line:
            key, _, value = line[2:].partition("=")
            props[key] = value
    return props


def _udev_value(props: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = props.get(name)
        if value:
            if name.endswith("_ENC"):
                value = _HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
            elif name in ("ID_VENDOR", "ID_MODEL", "ID_USB_VENDOR", "ID_USB_MODEL"):
                value = value.replace("_", " ")  # udev writes spaces as underscores here
            value = value.strip()
            if value:
                return value
    return None


def _read(path: Path, limit: int = 65536) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError:
        return None


class LinuxDeviceReader:
    """Reads a device's identity from mountinfo, udev's database and sysfs (roots injectable)."""

    def __init__(self, *, proc_root: str = "/proc", udev_root: str = "/run/udev/data",
                 sys_root: str = "/sys", dev_root: str = "/dev") -> None:
        self.proc_root = Path(proc_root)
        self.udev_root = Path(udev_root)
        self.sys_root = Path(sys_root)
        self.dev_root = Path(dev_root)

    def block_device(self, path: str) -> str | None:
        """Return ``major:minor`` of the block device holding ``path``, or None."""
        text = _read(self.proc_root / "self" / "mountinfo", 4 * 1024 * 1024)
        if text is None:
            return None
        best: tuple[str, str, str, str] | None = None
        for mount in parse_mountinfo(text):
            if paths.is_under(path, mount[0], paths.POSIX) and (
                    best is None or len(mount[0]) >= len(best[0])):
                best = mount  # the last, deepest mount over the path is the one in force
        if best is None:
            return None
        _, numbers, _, source = best
        if not numbers.startswith("0:"):
            return numbers
        # FUSE file systems (ntfs-3g, exfat-fuse) get an anonymous 0:N; their source names
        # the real block device.
        if source.startswith("/dev/"):
            # /dev/disk/by-label/X and the like are links to the kernel's name (sdb1)
            name = os.path.basename(os.path.realpath(self.dev_root / source[len("/dev/"):]))
            found = _read(self.sys_root / "class" / "block" / name / "dev", 64)
            if found and re.fullmatch(r"\d+:\d+", found.strip()):
                return found.strip()
        return None

    def _sys_device_dir(self, numbers: str) -> Path | None:
        link = self.sys_root / "dev" / "block" / numbers
        try:
            resolved = link.resolve(strict=True)
        except OSError:
            return None
        return resolved

    def identify(self, path: str) -> Device | None:
        """Return the identity of the removable device holding ``path``, or None."""
        numbers = self.block_device(path)
        if numbers is None:
            return None
        props = parse_udev_data(_read(self.udev_root / f"b{numbers}") or "")
        device_dir = self._sys_device_dir(numbers)
        sys_info = self._sysfs_info(device_dir) if device_dir is not None else {}
        is_removable = (props.get("ID_BUS") in ("usb", "mmc") or props.get("ID_USB_DRIVER")
                        or sys_info.get("is_removable", False))
        if not is_removable:
            return None
        fs_uuid = _udev_value(props, _UDEV_KEYS["fs_uuid"]) or self._uuid_from_dev(numbers, device_dir)
        return make_device(
            vendor=_udev_value(props, _UDEV_KEYS["vendor"]) or sys_info.get("vendor"),
            model=_udev_value(props, _UDEV_KEYS["model"]) or sys_info.get("model"),
            serial=_udev_value(props, _UDEV_KEYS["serial"]) or sys_info.get("serial"),
            fs_uuid=fs_uuid,
        )

    def _sysfs_info(self, device_dir: Path) -> dict:
        """Walk from the block device up to the USB (or MMC) device and read its strings."""
        info: dict = {}
        sys_root = self.sys_root.resolve()
        # the disk of a partition (sdb for sdb1) says whether the kernel sees it as removable
        for disk in (device_dir, device_dir.parent):
            if (_read(disk / "removable", 8) or "").strip() == "1":
                info["is_removable"] = True
        current = device_dir
        while current != sys_root and sys_root in current.parents:
            if (current / "idVendor").is_file():  # the USB device itself
                info["is_removable"] = True
                info.setdefault("serial", (_read(current / "serial", 512) or "").strip() or None)
                info.setdefault("vendor", (_read(current / "manufacturer", 512) or "").strip() or None)
                info.setdefault("model", (_read(current / "product", 512) or "").strip() or None)
                break
            if (current / "manfid").is_file() and (current / "serial").is_file():  # an SD card
                info["is_removable"] = True
                info.setdefault("serial", (_read(current / "serial", 512) or "").strip() or None)
                info.setdefault("model", (_read(current / "name", 512) or "").strip() or None)
                break
            current = current.parent
        return info

    def _uuid_from_dev(self, numbers: str, device_dir: Path | None) -> str | None:
        # Without udev's database, /dev/disk/by-uuid still links each UUID to its device.
        if device_dir is None:
            return None
        by_uuid = self.dev_root / "disk" / "by-uuid"
        try:
            entries = list(os.scandir(by_uuid))
        except OSError:
            return None
        for entry in entries:
            try:
                target = os.readlink(entry.path)
            except OSError:
                continue
            if os.path.basename(target) == device_dir.name:
                return entry.name
        return None


# --- Windows -----------------------------------------------------------------------------------


def format_volume_serial(serial: int) -> str:
    """Return a volume serial number as Windows shows it (``1A2B-3C4D``)."""
    serial &= 0xFFFFFFFF
    return f"{serial >> 16:04X}-{serial & 0xFFFF:04X}"


def windows_volume_serial(root: str, kernel32: object | None = None) -> str | None:
    """Return the volume serial of a drive root via GetVolumeInformationW, or None."""
    try:
        import ctypes

        if kernel32 is None:
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        serial = ctypes.c_uint32(0)
        ok = kernel32.GetVolumeInformationW(  # type: ignore[attr-defined]
            ctypes.c_wchar_p(root), None, 0, ctypes.byref(serial), None, None, None, 0)
    except Exception:  # no ctypes.windll off Windows, or a broken call: no identity
        return None
    return format_volume_serial(serial.value) if ok else None


def _drive_letter(root: str) -> str | None:
    text = str(root).strip()
    if len(text) >= 2 and text[1] == ":" and text[0].isalpha():
        return text[0].upper()
    return None


def powershell_disk_command(letter: str) -> list[str]:
    """Return the PowerShell command that describes the disk behind a drive letter as JSON."""
    script = (f"Get-Partition -DriveLetter {letter} | Get-Disk | Select-Object "
              "SerialNumber,Manufacturer,Model,FriendlyName,BusType | ConvertTo-Json -Compress")
    return ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script]


def parse_disk_json(text: str) -> dict[str, str | None]:
    """Return vendor, model and serial from ``Get-Disk | ConvertTo-Json`` output ({} if unusable)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        return {}

    def text_of(key: str) -> str | None:
        value = data.get(key)
        return value.strip() or None if isinstance(value, str) else None

    return {"vendor": text_of("Manufacturer"),
            "model": text_of("Model") or text_of("FriendlyName"),
            "serial": text_of("SerialNumber")}


def _run_powershell(args: list[str], timeout: float) -> str | None:
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        done = subprocess.run(  # nosec B603 - fixed program; the drive letter is A-Z
            args, capture_output=True, text=True, timeout=timeout, check=False,
            creationflags=flags)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


class WindowsDeviceReader:
    """Reads a drive's volume serial (ctypes) and its disk's serial (PowerShell, best effort)."""

    def __init__(self, *, volume_serial: Callable[[str], str | None] | None = None,
                 run: Callable[[list[str], float], str | None] | None = None) -> None:
        self.volume_serial = volume_serial or windows_volume_serial
        self.run = run or _run_powershell

    def identify(self, path: str) -> Device | None:
        """Return the identity of the drive holding ``path``, or None."""
        letter = _drive_letter(path)
        if letter is None:
            return None
        fs_uuid = self.volume_serial(f"{letter}:\\")
        disk: dict[str, str | None] = {}
        output = self.run(powershell_disk_command(letter), POWERSHELL_TIMEOUT_SECONDS)
        if output:
            disk = parse_disk_json(output)
        return make_device(vendor=disk.get("vendor"), model=disk.get("model"),
                           serial=disk.get("serial"), fs_uuid=fs_uuid)

    def cache_key(self, path: str) -> str | None:
        """Return what changes when another stick takes the same letter (its volume serial)."""
        letter = _drive_letter(path)
        return None if letter is None else self.volume_serial(f"{letter}:\\")


# --- the cached front ---------------------------------------------------------------------------


class DeviceIdentifier:
    """Identity of the device behind a watched folder, cached per mount.

    The cache key includes what changes when another stick is mounted at the same place
    (Linux: the folder's ``st_dev``; Windows: the volume serial), so a swapped stick is
    identified afresh; ``forget`` drops a root when its medium is removed.
    """

    def __init__(self, platform: str | None = None, *, reader: object | None = None) -> None:
        self.platform = platform or paths.current_platform()
        if reader is None:
            reader = WindowsDeviceReader() if self.platform == paths.WINDOWS else LinuxDeviceReader()
        self.reader = reader
        self._cache: dict[tuple[str, object], Device | None] = {}

    def _cache_key(self, path: str) -> tuple[str, object] | None:
        root = paths.compare_key(path, self.platform)
        if self.platform == paths.WINDOWS:
            return root, self.reader.cache_key(path)  # type: ignore[attr-defined]
        try:
            return root, os.stat(path).st_dev
        except OSError:
            return None

    def identify(self, path: str) -> Device | None:
        """Return the device identity of a watched root (None when the OS tells nothing)."""
        key = self._cache_key(path)
        if key is not None and key in self._cache:
            return self._cache[key]
        try:
            device = self.reader.identify(path)  # type: ignore[attr-defined]
        except Exception:  # a surprise in the OS's files must never stop the agent
            logger.warning("Không đọc được định danh thiết bị / cannot read device identity",
                           exc_info=True)
            device = None
        if key is not None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = device
        return device

    def forget(self, path: str) -> None:
        """Drop what is cached for a root (its medium was removed)."""
        root = paths.compare_key(path, self.platform)
        for key in [k for k in self._cache if k[0] == root]:
            del self._cache[key]


def main(argv: list[str] | None = None) -> int:
    """Print the identity of the device holding each given folder as JSON (for registering sticks).

    ``python -m canhgac_agent.devices /media/canbo/KINGSTON`` (or ``E:\\``): the serial and
    filesystem UUID printed are exactly what the agent will report.
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m canhgac_agent.devices FOLDER [FOLDER ...]", file=sys.stderr)
        return 2
    identifier = DeviceIdentifier()
    found = 0
    for folder in args:
        device = identifier.identify(os.path.abspath(folder))
        body = device.model_dump(mode="json", exclude_none=True) if device is not None else None
        print(json.dumps({"folder": folder, "device": body}, ensure_ascii=False))
        found += device is not None
    return 0 if found == len(args) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
