"""Platform helpers, tested for Windows and POSIX on whichever OS runs the tests."""

from __future__ import annotations

import string
from pathlib import PurePosixPath, PureWindowsPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canhgac_agent import paths

WIN = paths.WINDOWS
POSIX = paths.POSIX

# Letters officials use in folder names: ASCII and Vietnamese, in both cases.
NAME_ALPHABET = (
    string.ascii_letters + string.digits + " -_()"
    + "ăâđêôơưáàảãạấầẩẫậéèẻẽẹíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
    + "ĂÂĐÊÔƠƯÁÀẢÃẠẤẦẨẪẬÉÈẺẼẸÍÌỈĨỊÓÒỎÕỌỐỒỔỖỘỚỜỞỠỢÚÙỦŨỤỨỪỬỮỰÝỲỶỸỴ"
)
segment = st.text(st.sampled_from(NAME_ALPHABET), min_size=1, max_size=12).filter(
    lambda s: s.strip(" ") == s)


# --- comparison keys and containment ---


def test_windows_keys_ignore_case_separators_and_long_path_prefix():
    expected = paths.compare_key(r"C:\Users\Lan\Desktop\Hồ sơ.xlsx", WIN)
    assert paths.compare_key("c:/users/LAN/desktop/HỒ SƠ.XLSX", WIN) == expected
    assert paths.compare_key(r"\\?\C:\Users\Lan\Desktop\Hồ sơ.xlsx", WIN) == expected
    assert paths.compare_key("C:\\Users\\Lan\\Desktop\\", WIN) == paths.compare_key(
        "c:\\users\\lan\\desktop", WIN)
    assert paths.compare_key(r"\\?\UNC\server\share\a.txt", WIN) == paths.compare_key(
        r"\\SERVER\share\A.txt", WIN)


def test_posix_keys_are_case_sensitive():
    assert paths.compare_key("/home/lan/A.xlsx", POSIX) != paths.compare_key("/home/lan/a.xlsx",
                                                                             POSIX)
    assert paths.compare_key("/home//lan/./a", POSIX) == "/home/lan/a"


@pytest.mark.parametrize(
    ("path", "root", "platform", "expected"),
    [
        (r"E:\bao cao\a.xlsx", "e:\\", WIN, True),
        (r"E:\bao cao\a.xlsx", r"e:\BAO CAO", WIN, True),
        (r"C:\DuLieu2\a.xlsx", r"C:\DuLieu", WIN, False),
        (r"C:\DuLieu", r"c:\dulieu", WIN, True),
        (r"D:\DuLieu\a.xlsx", r"C:\DuLieu", WIN, False),
        ("/media/lan/USB/a.csv", "/media/lan/USB", POSIX, True),
        ("/media/lan/USB2/a.csv", "/media/lan/USB", POSIX, False),
        ("/media/lan/usb/a.csv", "/media/lan/USB", POSIX, False),
    ],
)
def test_is_under(path, root, platform, expected):
    assert paths.is_under(path, root, platform) is expected


@given(st.lists(segment, min_size=1, max_size=5), st.lists(segment, min_size=1, max_size=3))
def test_child_is_under_root_on_both_platforms(root_parts, child_parts):
    win_root = PureWindowsPath("C:\\", *root_parts)
    posix_root = PurePosixPath("/", *root_parts)
    assert paths.is_under(win_root.joinpath(*child_parts), win_root, WIN)
    assert paths.is_under(str(win_root.joinpath(*child_parts)).upper(), win_root, WIN)
    assert paths.is_under(posix_root.joinpath(*child_parts), posix_root, POSIX)
    # A sibling that only shares the prefix is never inside.
    assert not paths.is_under(str(win_root) + "x", win_root, WIN)
    assert not paths.is_under(str(posix_root) + "x", posix_root, POSIX)


@given(st.lists(segment, min_size=1, max_size=5))
def test_compare_key_is_idempotent(parts):
    win = str(PureWindowsPath("C:\\", *parts))
    assert paths.compare_key(paths.compare_key(win, WIN), WIN) == paths.compare_key(win, WIN)
    posix = str(PurePosixPath("/", *parts))
    assert paths.compare_key(paths.compare_key(posix, POSIX), POSIX) == posix


@given(st.lists(st.tuples(segment, st.sampled_from(["/", "//", "/./", "\\"])), min_size=1,
                max_size=5), st.booleans())
def test_compare_key_fast_path_agrees_with_pathlib(parts, trailing):
    text = "/" + "".join(name + sep for name, sep in parts)
    if not trailing:
        text = text.rstrip("/\\.") or "/"
    assert paths.compare_key(text, POSIX) == str(PurePosixPath(text))
    windows = "C:" + text.replace("/", "\\")
    assert paths.compare_key(windows, WIN) == str(PureWindowsPath(windows)).casefold()


# --- ignored names ---


@pytest.mark.parametrize(
    "name",
    ["~$Danh sach ho ngheo.xlsx", "A1B2C3D4.tmp", ".~lock.Danh sach.xlsx#", "~WRL0001.tmp",
     "bao-cao.xlsx.crdownload", "video.part", "Thumbs.db", "desktop.ini", "ghi-chu.txt~"],
)
def test_temporary_and_lock_files_are_ignored(name):
    assert paths.is_ignored_name(name)


@pytest.mark.parametrize("name", ["Danh sach ho ngheo.xlsx", "ho-ngheo.csv", "tmp-report.pdf"])
def test_ordinary_documents_are_not_ignored(name):
    assert not paths.is_ignored_name(name)


def test_extra_ignore_patterns_from_config():
    assert paths.is_ignored_name("nhap.BAK", ["*.bak"])
    assert not paths.is_ignored_name("nhap.bak")


def test_redact_for_log_masks_id_and_phone_numbers():
    line = paths.redact_for_log("/home/lan/CCCD 020185123456 - 0912 345 678.jpg")
    assert "020185123456" not in line and "0912 345 678" not in line
    assert line.startswith("/home/lan/CCCD ")
    plain = "/home/lan/2024/bao cao 12.xlsx"
    assert paths.redact_for_log(plain) == plain


# --- removable media ---


def test_parse_proc_mounts_keeps_media_mounts_and_unescapes_spaces():
    text = "\n".join([
        "/dev/sda1 / ext4 rw,relatime 0 0",
        "proc /proc proc rw 0 0",
        "/dev/sdb1 /media/lan/USB\\040DATA vfat rw,nosuid,nodev 0 0",
        "/dev/sdc1 /run/media/lan/SD exfat rw 0 0",
        "/dev/sdd1 /mnt/backup ext4 rw 0 0",
        "tmpfs /mnt/ram tmpfs rw 0 0",
        "/dev/sde1 /home/lan/mnt ext4 rw 0 0",
        "garbage",
    ])
    assert paths.parse_proc_mounts(text) == [
        "/media/lan/USB DATA", "/run/media/lan/SD", "/mnt/backup",
    ]


def test_linux_removable_mounts_reads_the_given_mounts_file(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sdb1 /media/an/KINGSTON vfat rw 0 0\n", encoding="utf-8")
    assert paths.linux_removable_mounts(str(mounts)) == ["/media/an/KINGSTON"]


def test_linux_removable_mounts_falls_back_when_proc_is_missing(tmp_path):
    # No /proc/mounts: the fallback lists the usual folders and never raises.
    result = paths.linux_removable_mounts(str(tmp_path / "no-such-file"))
    assert isinstance(result, list)


def test_decode_drive_mask():
    assert paths.decode_drive_mask(0b10101) == ["A:\\", "C:\\", "E:\\"]
    assert paths.decode_drive_mask(0) == []


class FakeKernel32:
    """Stands in for ctypes.windll.kernel32 with the two calls the agent makes."""

    def __init__(self, types: dict[str, int]) -> None:
        self.types = types
        self.asked: list[str] = []

    def GetLogicalDrives(self) -> int:
        mask = 0
        for root in self.types:
            mask |= 1 << (ord(root[0]) - ord("A"))
        return mask

    def GetDriveTypeW(self, root: str) -> int:
        self.asked.append(root)
        return self.types[root]


def test_windows_removable_drives_uses_get_drive_type():
    kernel32 = FakeKernel32({"C:\\": 3, "D:\\": 5, "E:\\": paths.DRIVE_REMOVABLE,
                             "G:\\": paths.DRIVE_REMOVABLE, "Z:\\": 4})
    assert paths.windows_removable_drives(kernel32) == ["E:\\", "G:\\"]
    assert kernel32.asked == ["C:\\", "D:\\", "E:\\", "G:\\", "Z:\\"]


def test_windows_removable_drives_survives_a_broken_api():
    class Broken:
        def GetLogicalDrives(self) -> int:
            raise OSError("access denied")

    assert paths.windows_removable_drives(Broken()) == []


def test_windows_removable_drives_without_windll_is_empty():
    import sys

    if sys.platform.startswith("win"):
        pytest.skip("real Windows: windll exists")
    assert paths.windows_removable_drives() == []
    assert paths.removable_media(WIN) == []


# --- default egress folders ---


def test_default_egress_folders_on_windows():
    env = {"LOCALAPPDATA": r"C:\Users\Lan\AppData\Local",
           "APPDATA": r"C:\Users\Lan\AppData\Roaming",
           "OneDrive": r"C:\Users\Lan\OneDrive - UBND xa Nhan Ly"}
    folders = paths.default_egress_folders(r"C:\Users\Lan", WIN, env, read_text=lambda p: None)
    as_text = {str(folder): kind for folder, kind in folders}
    assert all(isinstance(folder, PureWindowsPath) for folder, _ in folders)
    assert as_text[r"C:\Users\Lan\Downloads"] == "unknown"
    assert as_text[r"C:\Users\Lan\Desktop"] == "unknown"
    assert as_text[r"C:\Users\Lan\OneDrive - UBND xa Nhan Ly"] == "cloud"
    assert as_text[r"C:\Users\Lan\Google Drive"] == "cloud"
    assert as_text[r"C:\Users\Lan\Dropbox"] == "cloud"
    assert as_text[r"C:\Users\Lan\Documents\Zalo Received Files"] == "messaging"
    assert as_text[r"C:\Users\Lan\AppData\Local\ZaloPC"] == "messaging"
    assert as_text[r"C:\Users\Lan\Downloads\Telegram Desktop"] == "messaging"


def test_default_egress_folders_on_windows_without_env():
    folders = paths.default_egress_folders(r"C:\Users\An", WIN, {}, read_text=lambda p: None)
    as_text = {str(folder) for folder, _ in folders}
    assert r"C:\Users\An\OneDrive" in as_text
    assert r"C:\Users\An\AppData\Roaming\ZaloPC" in as_text
    keys = [paths.compare_key(folder, WIN) for folder, _ in folders]
    assert len(keys) == len(set(keys))


def test_default_egress_folders_on_linux_follow_localised_xdg_dirs():
    user_dirs = (
        '# written by xdg-user-dirs-update\n'
        'XDG_DESKTOP_DIR="$HOME/Màn hình nền"\n'
        'XDG_DOWNLOAD_DIR="$HOME/Tải về"\n'
        'XDG_DOCUMENTS_DIR="$HOME/Tài liệu"\n'
    )
    asked: list[str] = []

    def read_text(path: str) -> str | None:
        asked.append(path)
        return user_dirs

    folders = paths.default_egress_folders("/home/lan", POSIX, {}, read_text=read_text)
    as_text = {str(folder): kind for folder, kind in folders}
    assert asked == ["/home/lan/.config/user-dirs.dirs"]
    assert all(isinstance(folder, PurePosixPath) for folder, _ in folders)
    assert as_text["/home/lan/Tải về"] == "unknown"
    assert as_text["/home/lan/Màn hình nền"] == "unknown"
    assert as_text["/home/lan/Tài liệu/Zalo Received Files"] == "messaging"
    assert as_text["/home/lan/Tải về/Telegram Desktop"] == "messaging"
    assert as_text["/home/lan/Dropbox"] == "cloud"


def test_default_egress_folders_on_linux_without_xdg_file():
    folders = paths.default_egress_folders("/home/an", POSIX, {"XDG_CONFIG_HOME": "/cfg"},
                                           read_text=lambda p: None)
    as_text = {str(folder) for folder, _ in folders}
    assert {"/home/an/Downloads", "/home/an/Desktop", "/home/an/OneDrive"} <= as_text


def test_existing_default_egress_folders_only_lists_real_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "Downloads").mkdir()
    (tmp_path / "Dropbox").mkdir()
    found = {(p.name, kind) for p, kind in paths.existing_default_egress_folders()}
    assert found == {("Downloads", "unknown"), ("Dropbox", "cloud")}


# --- OS user and data folder ---


def test_current_os_user_prefers_getlogin():
    assert paths.current_os_user(lambda: "lan", lambda: "other", {}) == "lan"


def test_current_os_user_falls_back_to_getpass_then_env():
    def no_tty() -> str:
        raise OSError("no controlling terminal")

    def no_passwd() -> str:
        raise KeyError("uid not found")

    assert paths.current_os_user(no_tty, lambda: "an", {}) == "an"
    assert paths.current_os_user(no_tty, no_passwd, {"USERNAME": "binh"}) == "binh"
    assert paths.current_os_user(no_tty, no_passwd, {}) == "unknown"


def test_current_os_user_real_call_returns_a_name():
    assert paths.current_os_user()


def test_default_data_dir_on_both_platforms():
    assert paths.default_data_dir(WIN, {"LOCALAPPDATA": r"C:\Users\Lan\AppData\Local"}) == \
        PureWindowsPath(r"C:\Users\Lan\AppData\Local\CanhGac")
    assert paths.default_data_dir(WIN, {}, home=r"C:\Users\An") == \
        PureWindowsPath(r"C:\Users\An\AppData\Local\CanhGac")
    assert paths.default_data_dir(POSIX, {}, home="/home/lan") == \
        PurePosixPath("/home/lan/.local/share/canhgac")
    assert paths.default_data_dir(POSIX, {"XDG_DATA_HOME": "/data"}, home="/home/lan") == \
        PurePosixPath("/data/canhgac")
