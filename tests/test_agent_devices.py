"""Removable device identity on the agent: a fake /proc, udev database and sysfs laid out as
on a real Linux desktop, the Windows parsers, the per-mount cache, and a real agent whose
copy to a USB folder carries ``destination.device``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canhgac_agent import devices
from canhgac_agent.devices import (
    DeviceIdentifier,
    LinuxDeviceReader,
    WindowsDeviceReader,
    clean_field,
    format_volume_serial,
    parse_disk_json,
    parse_mountinfo,
)
from canhgac_common.events import Device

try:
    from test_agent_support import wait_until
    from test_agent_watcher import Harness, make_sheet
except ImportError:  # tests/ turned into a package
    from tests.test_agent_support import wait_until
    from tests.test_agent_watcher import Harness, make_sheet

USB_DEVICE = "devices/pci0000:00/0000:00:14.0/usb1/1-2"
USB_DISK = f"{USB_DEVICE}/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
NTFS_DISK = "devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/host7/target7:0:0/7:0:0:0/block/sdc"
INTERNAL_DISK = "devices/pci0000:00/0000:00:02.0/virtio1/block/vda"

UDEV_SDB1 = """\
S:disk/by-id/usb-Kingston_DataTraveler_3.0_E0D55EA574F1F3B0A9890F57-0:0-part1
S:disk/by-uuid/1A2B-3C4D
I:15377420
E:ID_FS_UUID=1A2B-3C4D
E:ID_FS_TYPE=vfat
E:ID_VENDOR=Kingston
E:ID_VENDOR_ENC=Kingston
E:ID_MODEL=DataTraveler_3.0
E:ID_MODEL_ENC=DataTraveler\\x203.0\\x20\\x20\\x20\\x20
E:ID_SERIAL=Kingston_DataTraveler_3.0_E0D55EA574F1F3B0A9890F57-0:0
E:ID_SERIAL_SHORT=E0D55EA574F1F3B0A9890F57
E:ID_BUS=usb
E:ID_USB_DRIVER=usb-storage
G:systemd
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


class FakeLinux:
    """A /proc, /run/udev/data, /sys and /dev tree in tmp with the kernel's real layout."""

    def __init__(self, base: Path, usb_mount: str, ntfs_mount: str = "/media/canbo/NTFS DISK",
                 internal_mount: str = "/") -> None:
        self.base = base
        self.proc, self.udev, self.sys, self.dev = (base / "proc", base / "run/udev/data",
                                                    base / "sys", base / "dev")
        ntfs_escaped = ntfs_mount.replace(" ", "\\040")
        _write(self.proc / "self/mountinfo", "\n".join([
            f"25 1 254:1 / {internal_mount} rw,relatime shared:1 - ext4 /dev/vda1 rw",
            "22 25 0:21 / /proc rw,relatime shared:12 - proc proc rw",
            f"36 25 8:17 / {usb_mount} rw,nosuid,nodev,relatime shared:100 - vfat /dev/sdb1 "
            "rw,uid=1000,gid=1000,fmask=0022,dmask=0022,codepage=437,iocharset=utf8",
            f"40 25 0:50 / {ntfs_escaped} rw,nosuid,nodev,relatime shared:104 - fuseblk "
            "/dev/sdc1 rw,user_id=0,group_id=0,allow_other,blksize=4096",
        ]) + "\n")
        # the Kingston stick: USB device strings, a removable disk, partition sdb1 = 8:17
        usb = self.sys / USB_DEVICE
        _write(usb / "idVendor", "0951\n")
        _write(usb / "idProduct", "1666\n")
        _write(usb / "serial", "E0D55EA574F1F3B0A9890F57\n")
        _write(usb / "manufacturer", "Kingston\n")
        _write(usb / "product", "DataTraveler 3.0\n")
        _write(self.sys / USB_DISK / "removable", "1\n")
        _write(self.sys / USB_DISK / "sdb1/dev", "8:17\n")
        _link(self.sys / "dev/block/8:17", self.sys / USB_DISK / "sdb1")
        _link(self.sys / "class/block/sdb1", self.sys / USB_DISK / "sdb1")
        # an NTFS disk mounted through FUSE (anonymous 0:50), partition sdc1 = 8:33
        usb2 = self.sys / NTFS_DISK.split("/1-3:1.0")[0]
        _write(usb2 / "idVendor", "0bc2\n")
        _write(usb2 / "serial", "NA8F2KQ1\n")
        _write(usb2 / "manufacturer", "Seagate\n")
        _write(usb2 / "product", "Expansion\n")
        _write(self.sys / NTFS_DISK / "removable", "0\n")
        _write(self.sys / NTFS_DISK / "sdc1/dev", "8:33\n")
        _link(self.sys / "dev/block/8:33", self.sys / NTFS_DISK / "sdc1")
        _link(self.sys / "class/block/sdc1", self.sys / NTFS_DISK / "sdc1")
        _link(self.dev / "disk/by-uuid/5E8A1C2B8A1C0497", self.dev / "sdc1")
        (self.dev / "sdc1").touch()
        # the computer's own disk: never reported
        _write(self.sys / INTERNAL_DISK / "removable", "0\n")
        _write(self.sys / INTERNAL_DISK / "vda1/dev", "254:1\n")
        _link(self.sys / "dev/block/254:1", self.sys / INTERNAL_DISK / "vda1")
        _write(self.udev / "b254:1", "E:ID_FS_UUID=9f0c1b6e-1111-4a3b-9c59-0d1e2f3a4b5c\n"
                                     "E:ID_FS_TYPE=ext4\nE:ID_PATH=pci-0000:00:02.0\n")

    def with_udev(self) -> FakeLinux:
        _write(self.udev / "b8:17", UDEV_SDB1)
        return self

    def reader(self) -> LinuxDeviceReader:
        return LinuxDeviceReader(proc_root=str(self.proc), udev_root=str(self.udev),
                                 sys_root=str(self.sys), dev_root=str(self.dev))


def test_udev_database_gives_vendor_model_serial_and_fs_uuid(tmp_path):
    fake = FakeLinux(tmp_path, "/media/canbo/KINGSTON").with_udev()
    reader = fake.reader()
    assert reader.block_device("/media/canbo/KINGSTON/Bao cao/x.xlsx") == "8:17"
    assert reader.identify("/media/canbo/KINGSTON") == Device(
        vendor="Kingston", model="DataTraveler 3.0",
        serial="E0D55EA574F1F3B0A9890F57", fs_uuid="1A2B-3C4D")
    # a folder inside the stick, configured as an egress root, is the same device
    assert reader.identify("/media/canbo/KINGSTON/Bao cao").serial == "E0D55EA574F1F3B0A9890F57"


def test_sysfs_alone_gives_the_usb_strings(tmp_path):
    fake = FakeLinux(tmp_path, "/media/canbo/KINGSTON")  # no udev database (minimal systems)
    assert fake.reader().identify("/media/canbo/KINGSTON") == Device(
        vendor="Kingston", model="DataTraveler 3.0", serial="E0D55EA574F1F3B0A9890F57")


def test_fuse_mount_is_followed_to_its_block_device(tmp_path):
    fake = FakeLinux(tmp_path, "/media/canbo/KINGSTON")
    reader = fake.reader()
    assert reader.block_device("/media/canbo/NTFS DISK") == "8:33"
    assert reader.identify("/media/canbo/NTFS DISK/a.xlsx") == Device(
        vendor="Seagate", model="Expansion", serial="NA8F2KQ1", fs_uuid="5E8A1C2B8A1C0497")


def test_the_computers_own_disk_and_unknown_places_have_no_identity(tmp_path):
    fake = FakeLinux(tmp_path, "/media/canbo/KINGSTON").with_udev()
    reader = fake.reader()
    assert reader.block_device("/home/canbo/Downloads") == "254:1"
    assert reader.identify("/home/canbo/Downloads") is None
    assert reader.identify("/proc/self") is None  # a pseudo file system
    # /media/canbo/KINGSTON2 is not under /media/canbo/KINGSTON: it lies on the root disk
    assert reader.identify("/media/canbo/KINGSTON2") is None
    assert LinuxDeviceReader(proc_root=str(tmp_path / "nothing")).identify("/media/x") is None


def test_mountinfo_parsing_unescapes_and_skips_broken_lines():
    mounts = parse_mountinfo("36 25 8:17 / /media/a\\040b rw - vfat /dev/sdb1 rw\nbroken line\n")
    assert mounts == [("/media/a b", "8:17", "vfat", "/dev/sdb1")]


def test_windows_volume_serial_and_disk_strings():
    assert format_volume_serial(0x1A2B3C4D) == "1A2B-3C4D"
    assert format_volume_serial(0) == "0000-0000"
    calls = []

    def run(args, timeout):
        calls.append(args)
        return ('{"SerialNumber":"  070B3A4C9D2E1F55 ","Manufacturer":"","Model":"Ultra Fit",'
                '"FriendlyName":"SanDisk Ultra Fit","BusType":"USB"}')

    reader = WindowsDeviceReader(volume_serial=lambda root: "9C1E-22F0", run=run)
    assert reader.identify("E:\\Bao cao") == Device(model="Ultra Fit", serial="070B3A4C9D2E1F55",
                                                   fs_uuid="9C1E-22F0")
    assert "-DriveLetter E " in calls[0][-1]
    # PowerShell missing or refusing: the volume serial still identifies the stick
    bare = WindowsDeviceReader(volume_serial=lambda root: "9C1E-22F0", run=lambda a, t: None)
    assert bare.identify("e:\\") == Device(fs_uuid="9C1E-22F0")
    # a UNC path has no drive letter, and nothing at all identifies nothing
    assert bare.identify("\\\\server\\share") is None
    nothing = WindowsDeviceReader(volume_serial=lambda root: None, run=lambda a, t: "[]")
    assert nothing.identify("F:\\") is None
    assert parse_disk_json("not json") == {} and parse_disk_json("42") == {}
    assert parse_disk_json('[{"SerialNumber":"A1","Model":null,"FriendlyName":"X"}]') == {
        "vendor": None, "model": "X", "serial": "A1"}


@given(st.text(max_size=400))
def test_device_strings_are_clean_and_clipped(text):
    cleaned = clean_field(text)
    if cleaned is not None:
        assert len(cleaned) <= devices.MAX_FIELD
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned)
        assert cleaned == cleaned.strip() and cleaned


class CountingReader:
    def __init__(self, device: Device | None) -> None:
        self.device = device
        self.calls = 0

    def identify(self, path: str) -> Device | None:
        self.calls += 1
        if self.device is None:
            raise OSError("the OS said no")
        return self.device


def test_identity_is_cached_per_mount_and_forgotten_on_removal(tmp_path):
    reader = CountingReader(Device(serial="ABC123"))
    identifier = DeviceIdentifier("posix", reader=reader)
    assert identifier.identify(str(tmp_path)) == Device(serial="ABC123")
    assert identifier.identify(str(tmp_path)) == Device(serial="ABC123")
    assert reader.calls == 1
    identifier.forget(str(tmp_path))
    identifier.identify(str(tmp_path))
    assert reader.calls == 2
    failing = DeviceIdentifier("posix", reader=CountingReader(None))
    assert failing.identify(str(tmp_path)) is None  # an error is logged, never raised
    assert failing.identify(str(tmp_path / "gone")) is None


@pytest.fixture
def env(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def test_a_copy_to_a_removable_folder_carries_the_device_identity(env):
    """A real agent: its USB egress folder is a mount in a fake udev/sysfs tree."""
    fake = FakeLinux(env.tmp / "os", str(env.usb)).with_udev()
    source = env.protected / "ho-ngheo.xlsx"
    make_sheet(source)
    env.server.start()
    agent = env.start_agent(
        watcher_options={"device_identifier": DeviceIdentifier("posix", reader=fake.reader())})
    shutil.copy(source, env.usb / "ho-ngheo.xlsx")
    shutil.copy(source, env.zalo / "ho-ngheo.xlsx")
    wait_until(lambda: len(env.server.all_events()) == 2, timeout=8)
    env.settle(agent)
    by_kind = {e["destination"]["kind"]: e for e in env.server.all_events()}
    assert by_kind["removable"]["destination"]["device"] == {
        "vendor": "Kingston", "model": "DataTraveler 3.0",
        "serial": "E0D55EA574F1F3B0A9890F57", "fs_uuid": "1A2B-3C4D"}
    assert by_kind["removable"]["action"] == "copy"
    assert "device" not in by_kind["messaging"]["destination"]  # not a device: nothing attached


def test_module_main_prints_what_the_agent_will_report(tmp_path, capsys, monkeypatch):
    import json

    class Fixed:
        def identify(self, path):
            return Device(vendor="Kingston", serial="E0D55EA574F1F3B0A9890F57") if "usb" in path else None

    monkeypatch.setattr(devices, "DeviceIdentifier", lambda: DeviceIdentifier("posix", reader=Fixed()))
    (tmp_path / "usb").mkdir()
    assert devices.main([str(tmp_path / "usb")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["device"] == {"vendor": "Kingston", "serial": "E0D55EA574F1F3B0A9890F57"}
    assert devices.main([str(tmp_path)]) == 1 and '"device": null' in capsys.readouterr().out
    assert devices.main([]) == 2
