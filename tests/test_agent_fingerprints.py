"""Index of protected files: persistence, no rehash on restart, lookups."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import openpyxl

from canhgac_agent import paths
from canhgac_agent.fingerprints import Digest, FingerprintIndex, IndexedFile, fingerprint_file
from canhgac_common.pii.fingerprint import file_sha256


class CountingHasher:
    """The real hasher, counting which files it had to read."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: str) -> Digest:
        self.paths.append(path)
        return fingerprint_file(path)


def make_sheet(path: Path, rows: int = 5) -> list[list[object]]:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    table: list[list[object]] = [["STT", "Họ và tên", "Số CCCD", "Điện thoại"]]
    table += [[i + 1, f"Hoàng Thị {i}", f"0201950{i:05d}", f"09871{i:05d}"] for i in range(rows)]
    for row in table:
        sheet.append(row)
    workbook.save(path)
    return table


def test_scan_indexes_and_a_restart_rehashes_only_what_changed(tmp_path):
    root = tmp_path / "DuLieu"
    (root / "2024").mkdir(parents=True)
    for i in range(6):
        (root / "2024" / f"ho-{i}.txt").write_text(f"hộ số {i}\n", encoding="utf-8")
    (root / "doc.txt").write_text("một\n", encoding="utf-8")
    db = tmp_path / "agent.sqlite3"

    hasher = CountingHasher()
    index = FingerprintIndex(db, hasher=hasher)
    summary = index.scan_root(str(root), "ho_ngheo")
    assert summary.files == 7 and summary.hashed == 7 and len(hasher.paths) == 7
    assert index.count() == 7
    assert index.get(str(root / "doc.txt")).data_class == "ho_ngheo"
    index.close()

    # Restart: nothing changed → nothing read. Then one edit, one removal.
    hasher = CountingHasher()
    index = FingerprintIndex(db, hasher=hasher)
    assert index.scan_root(str(root), "ho_ngheo").hashed == 0
    assert hasher.paths == []
    edited = root / "2024" / "ho-3.txt"
    before = index.get(str(edited))
    edited.write_text("hộ số 3 đã sửa\n", encoding="utf-8")
    os.utime(edited, ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    (root / "doc.txt").unlink()
    changes = []
    summary = index.scan_root(str(root), "ho_ngheo",
                              on_changed=lambda old, new: changes.append((old, new)))
    assert hasher.paths == [str(edited)]
    assert [(old.sha256, new.sha256) for old, new in changes] == [
        (before.sha256, file_sha256(edited))]
    assert [e.path for e in summary.removed] == [str(root / "doc.txt")]
    # Removed files are reported, not forgotten: the caller forgets them with its event.
    assert index.get(str(root / "doc.txt")) is not None
    index.close()


def test_lookup_by_sha256_and_by_content_across_formats(tmp_path):
    root = tmp_path / "DuLieu"
    root.mkdir()
    table = make_sheet(root / "ho-ngheo.xlsx")
    index = FingerprintIndex(tmp_path / "agent.sqlite3")
    index.scan_root(str(root), "ho_ngheo")
    source = index.get(str(root / "ho-ngheo.xlsx"))
    assert source.content_fingerprint is not None

    assert index.find_by_sha256(file_sha256(root / "ho-ngheo.xlsx")) == source
    assert index.find_by_sha256("0" * 64) is None
    # "Save As" CSV elsewhere: other bytes, same content.
    exported = tmp_path / "xuat.csv"
    with exported.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table)
    exported_fingerprint = fingerprint_file(str(exported)).content_fingerprint
    assert index.find_by_sha256(file_sha256(exported)) is None
    assert index.find_by_content(exported_fingerprint) == source
    index.close()


def test_symlinks_and_temporary_files_are_not_indexed(tmp_path):
    root = tmp_path / "DuLieu"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("ngoài phạm vi\n", encoding="utf-8")
    (root / "real.txt").write_text("trong phạm vi\n", encoding="utf-8")
    (root / "~$real.xlsx").write_bytes(b"lock")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    index = FingerprintIndex(tmp_path / "agent.sqlite3")
    summary = index.scan_root(str(root), None, is_ignored=paths.is_ignored_name)
    assert summary.files == 1
    assert [e.path for e in index.under(str(root))] == [str(root / "real.txt")]
    index.close()


def test_nested_roots_are_pruned_from_the_outer_scan(tmp_path):
    root = tmp_path / "DuLieu"
    (root / "Zalo Received Files").mkdir(parents=True)
    (root / "a.txt").write_text("a\n", encoding="utf-8")
    (root / "Zalo Received Files" / "b.txt").write_text("b\n", encoding="utf-8")
    index = FingerprintIndex(tmp_path / "agent.sqlite3")
    index.scan_root(str(root), None, prune_dir=lambda d: d.endswith("Zalo Received Files"))
    assert index.count() == 1
    index.close()


def test_under_does_not_mix_up_sibling_prefixes(tmp_path):
    index = FingerprintIndex(tmp_path / "agent.sqlite3")
    for path in ("/d/a/1.txt", "/d/a/sub/2.txt", "/d/ab/3.txt", "/d/a.txt"):
        index.upsert(IndexedFile(path, "1" * 64, 1, 1, None, None), "/d")
    assert sorted(e.path for e in index.under("/d/a")) == ["/d/a/1.txt", "/d/a/sub/2.txt"]
    assert sorted(e.path for e in index.under("/d/a/")) == ["/d/a/1.txt", "/d/a/sub/2.txt"]
    index.close()


def test_windows_index_keys_ignore_case(tmp_path):
    index = FingerprintIndex(tmp_path / "agent.sqlite3", platform=paths.WINDOWS)
    entry = IndexedFile(r"D:\DuLieu\Hộ Nghèo.xlsx", "2" * 64, 10, 5, None, "ho_ngheo")
    index.upsert(entry, r"D:\DuLieu")
    assert index.get(r"d:\dulieu\HỘ NGHÈO.XLSX") == entry
    assert index.get("D:/DuLieu/hộ nghèo.xlsx") == entry
    assert [e.path for e in index.under(r"d:\DULIEU")] == [entry.path]
    assert index.remove(r"D:\DULIEU\hộ nghèo.xlsx") == entry
    assert index.count() == 0
    index.close()


def test_rename_keeps_the_digests_and_prune_drops_unconfigured_roots(tmp_path):
    index = FingerprintIndex(tmp_path / "agent.sqlite3")
    entry = IndexedFile("/d/old.xlsx", "3" * 64, 10, 5, "4" * 64, "ho_tich")
    index.upsert(entry, "/d")
    index.upsert(IndexedFile("/gone/x.txt", "5" * 64, 1, 1, None, None), "/gone")
    moved = index.rename("/d/old.xlsx", "/d/new.xlsx", "/d")
    assert moved == entry._replace(path="/d/new.xlsx")
    assert index.get("/d/old.xlsx") is None
    assert index.find_by_content("4" * 64).path == "/d/new.xlsx"
    assert index.prune_roots(["/d"]) == 1
    assert index.count() == 1
    index.close()


def test_unreadable_file_is_skipped_not_fatal(tmp_path):
    # A file locked by another program (Windows sharing violation) cannot be read for now.
    root = tmp_path / "DuLieu"
    root.mkdir()
    (root / "locked.txt").write_text("x\n", encoding="utf-8")
    (root / "open.txt").write_text("y\n", encoding="utf-8")

    def hasher(path: str) -> Digest:
        if path.endswith("locked.txt"):
            raise PermissionError(13, "The process cannot access the file")
        return fingerprint_file(path)

    index = FingerprintIndex(tmp_path / "agent.sqlite3", hasher=hasher)
    summary = index.scan_root(str(root), None)
    assert summary.files == 2
    assert [e.path for e in index.under(str(root))] == [str(root / "open.txt")]
    index.close()


def test_pii_counts_are_stored_with_the_digests(tmp_path):
    root = tmp_path / "DuLieu"
    root.mkdir()
    make_sheet(root / "ho-ngheo.xlsx", rows=6)
    (root / "ghi-chu.txt").write_text("Không có số nào\n", encoding="utf-8")
    (root / "hong.xlsx").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 2)  # corrupt
    index = FingerprintIndex(tmp_path / "agent.sqlite3")
    index.scan_root(str(root), None)
    sheet = index.get(str(root / "ho-ngheo.xlsx"))
    assert sheet.pii == {"cccd": 6, "phone": 6} and sheet.record_count == 6
    assert index.get(str(root / "ghi-chu.txt")).pii == {}
    # Unreadable is "not scanned", never "clean".
    broken = index.get(str(root / "hong.xlsx"))
    assert broken.pii is None and broken.record_count is None
    index.close()


def test_an_index_from_an_older_agent_is_upgraded_in_place(tmp_path):
    import sqlite3

    db = tmp_path / "agent.sqlite3"
    old = sqlite3.connect(db)
    old.execute(
        "CREATE TABLE protected_files (key TEXT PRIMARY KEY, path TEXT NOT NULL, root TEXT NOT "
        "NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
        "content_fp BLOB, data_class TEXT) WITHOUT ROWID"
    )
    old.execute("INSERT INTO protected_files VALUES ('/d/a', '/d/a', '/d', ?, 1, 2, NULL, NULL)",
                (bytes(32),))
    old.commit()
    old.close()
    index = FingerprintIndex(db)
    entry = index.get("/d/a")
    assert entry.sha256 == "0" * 64 and entry.pii is None and entry.record_count is None
    index.close()
