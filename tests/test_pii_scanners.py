"""PII file scanners: real xlsx/csv/docx/pdf/zip files, legacy encodings, limits, bad files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import random
import time
import unicodedata
import zipfile
from pathlib import Path

import docx
import openpyxl
import pytest

from bench.pii_corpus import MOBILE_PREFIXES
from canhgac_common.pii import ScanResult, scan_file
from canhgac_common.pii.detectors import PROVINCE_CODES

PROVINCES = sorted(PROVINCE_CODES)
HEADER = ["STT", "Họ và tên", "Số CCCD", "Số điện thoại", "Số tài khoản", "Ngày sinh", "Trợ cấp"]
NAMES = ["Nguyễn Văn Bình", "Hoàng Thị Lan", "Lý Văn Tú", "Nông Thị Hoa", "Vi Văn Thắng"]
TONE_MARKS = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def make_cccd(rng: random.Random) -> str:
    # Never ending in 0000: an integer cell ending so reads as a round amount, not an ID.
    rest = rng.randint(0, 999_999)
    while rest % 10_000 == 0:
        rest = rng.randint(0, 999_999)
    year = rng.randint(1930, 2012)
    century = (year // 100 - 19) * 2 + rng.randint(0, 1)
    return f"{rng.choice(PROVINCES)}{century}{year % 100:02d}{rest:06d}"


def make_phone(rng: random.Random) -> str:
    prefix = rng.choice(MOBILE_PREFIXES)
    rest = 10 - len(prefix)
    return prefix + f"{rng.randint(1, 10**rest - 1):0{rest}d}"


def citizen_rows(n: int, n_phones: int, seed: int = 6) -> list[dict]:
    """Rows of a social-welfare list: ID, phone for the first n_phones, bank account, amount."""
    rng = random.Random(seed)
    return [
        {
            "stt": i + 1,
            "name": rng.choice(NAMES),
            "cccd": make_cccd(rng),
            "phone": make_phone(rng) if i < n_phones else "",
            "bank": f"10{rng.randint(0, 10**10 - 1):010d}",  # 12 digits, like VietinBank
            "born": dt.datetime(rng.randint(1940, 2010), rng.randint(1, 12), rng.randint(1, 28)),
            "amount": rng.choice([500_000, 1_200_000, 2_160_000]),
        }
        for i in range(n)
    ]


def write_xlsx(path: Path, rows: list[dict]) -> None:
    """Write the list as a commune clerk would: some IDs and phones typed as numbers."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Danh sách"
    ws.append(["DANH SÁCH CHI TRẢ TRỢ CẤP XÃ HỘI - XÃ NHÂN LÝ"])
    ws.append(HEADER)
    for i, row in enumerate(rows):
        as_number = i % 2 == 0
        ws.append(
            [
                row["stt"],
                row["name"],
                int(row["cccd"]) if as_number else row["cccd"],  # 11 digits when a number
                int(row["phone"]) if as_number and row["phone"] else row["phone"] or None,
                int(row["bank"]),
                row["born"],
                row["amount"],
            ]
        )
        ws.cell(ws.max_row, 6).number_format = "dd/mm/yyyy"
        ws.cell(ws.max_row, 7).number_format = "#,##0"
    wb.save(path)


def write_csv_like_excel(path: Path, rows: list[dict], *, encoding: str = "utf-8-sig") -> None:
    """Write the list as Excel's "Save As CSV" would: numbers lose their leading zeros."""
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(["DANH SÁCH CHI TRẢ TRỢ CẤP XÃ HỘI - XÃ NHÂN LÝ"])
        w.writerow(HEADER)
        for i, row in enumerate(rows):
            as_number = i % 2 == 0
            w.writerow(
                [
                    row["stt"],
                    row["name"],
                    str(int(row["cccd"])) if as_number else row["cccd"],
                    str(int(row["phone"])) if as_number and row["phone"] else row["phone"],
                    row["bank"],
                    row["born"].strftime("%d/%m/%Y"),
                    row["amount"],
                ]
            )


def to_cp1258(text: str) -> bytes:
    """Encode Vietnamese the Windows-1258 way: base letters precomposed, tone marks combining."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        parts = unicodedata.normalize("NFD", ch)
        base = unicodedata.normalize("NFC", "".join(c for c in parts if c not in TONE_MARKS))
        out.append(base + "".join(c for c in parts if c in TONE_MARKS))
    return "".join(out).encode("cp1258")


def assert_counts(result: ScanResult, **expected: int) -> None:
    assert result.error is None
    assert result.pii_counts() == expected


# --- spreadsheets and CSV ------------------------------------------------------------------------


def test_xlsx_citizen_list_counts_ids_with_lost_leading_zeros(tmp_path: Path) -> None:
    rows = citizen_rows(60, 25)
    path = tmp_path / "chi-tra-tro-cap.xlsx"
    write_xlsx(path, rows)

    result = scan_file(path)

    assert result.file_kind == "xlsx"
    # Bank accounts (own column) and amounts are not identifiers; every ID and phone counts.
    assert_counts(result, cccd=60, phone=25)
    assert result.record_count == 60
    assert result.rows_scanned == 62
    assert result.cccd_confidence_min == 1.0
    assert not result.is_truncated


def test_a_lost_leading_zero_comes_back_only_in_an_identifier_column(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Họ tên", "Số CCCD", "SĐT", "Số hóa đơn", "Thành tiền", "Ghi chú"])
    ws.append(["A", 20185123456, 912345678, 20185123457, 912345679, 20185123458])
    ws.append(["B", 99_123_456_789, 212345678, 1, 2, 3])  # no province 099, no mobile 02x
    ws.append(["C", 20185123459.0, 387654321.0, 1.5, 1.5, 987654321])  # floats as ints
    ws.append(["D", "020185123450", "0387654320", "", "", ""])
    path = tmp_path / "so.xlsx"
    wb.save(path)

    # Only the ID and phone columns give zeros back; the invoice number, the amount and the
    # note (no header, mostly not numbers) are left as they are, and never count.
    assert_counts(scan_file(path), cccd=3, phone=3)


def test_accounting_export_counts_nothing(tmp_path: Path) -> None:
    rng = random.Random(16)
    rows = []
    for _ in range(60):
        cccd = make_cccd(rng)
        amount = int(make_phone(rng)[1:])
        rows.append([cccd[1:], "1C26TAA", "05/01/2027", amount, amount // 10])
    for header in (["Số HĐ", "Ký hiệu", "Ngày HĐ", "Tiền hàng", "Thuế GTGT"],
                   ["So HD", "Ky hieu", "Ngay", "So tien", "Thue"], None):
        path = tmp_path / "hoa-don.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        # 11-digit invoice numbers would be IDs and 9-digit amounts phones with a zero put
        # back; without a header the columns are still judged by what their values are.
        assert_counts(scan_file(path))


def test_header_names_id_and_bhxh_columns(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Họ tên", "Số định danh cá nhân", "Mã số BHXH", "Ghi chú"])
    ws.append(["Hà Nội", 1185123456, 112345678, 1185123456])  # 001185123456, 0112345678
    ws.append(["Cao Bằng", "4301123456", "0312345678", ""])  # text that lost zeros too
    ws.append(["Lạng Sơn", 20185123456, 2012345678, "ĐT 0912345678"])
    path = tmp_path / "cot.xlsx"
    wb.save(path)

    # Outside the ID column a 10-digit number is not padded, and without a BHXH word it is
    # not a BHXH number either.
    assert_counts(scan_file(path), cccd=3, bhxh=3, phone=1)


def test_csv_save_as_gives_the_same_counts_as_the_workbook(tmp_path: Path) -> None:
    rows = citizen_rows(40, 17, seed=7)
    write_xlsx(tmp_path / "a.xlsx", rows)
    write_csv_like_excel(tmp_path / "a.csv", rows)

    from_xlsx = scan_file(tmp_path / "a.xlsx")
    from_csv = scan_file(tmp_path / "a.csv")

    assert_counts(from_csv, cccd=40, phone=17)
    assert from_csv.counts == from_xlsx.counts
    assert from_csv.record_count == from_xlsx.record_count == 40
    assert from_csv.encoding == "utf-8-sig"


def test_legacy_cp1258_csv_is_decoded_and_its_labels_understood(tmp_path: Path) -> None:
    rows = citizen_rows(30, 30, seed=8)
    buffer = io.StringIO()
    w = csv.writer(buffer, delimiter=";")
    w.writerow(["Họ và tên", "Số CCCD", "Điện thoại", "Số tài khoản", "Ghi chú"])
    for row in rows:
        w.writerow([row["name"], row["cccd"], row["phone"], row["bank"], "Thôn Bản Chắt"])
    data = to_cp1258(buffer.getvalue())
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    path = tmp_path / "danh-sach-cu.csv"
    path.write_bytes(data)

    result = scan_file(path)

    assert result.encoding == "cp1258"
    # The bank column is dropped only if "Số tài khoản" was decoded and normalized correctly.
    assert_counts(result, cccd=30, phone=30)


def test_utf16_tab_separated_text_as_excel_unicode_text_writes_it(tmp_path: Path) -> None:
    lines = ["Họ tên\tCCCD\tĐiện thoại", "Nông Thị Hoa\t020301123456\t0987654321"]
    path = tmp_path / "unicode.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-16"))  # with BOM

    result = scan_file(path)

    assert result.encoding == "utf-16"
    assert_counts(result, cccd=1, phone=1)


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "khong-bom.csv"
    path.write_bytes("Tên,CCCD\nLan,020301123456\n".encode("utf-16-le"))
    result = scan_file(path)
    assert result.encoding == "utf-16-le"
    assert_counts(result, cccd=1)


def test_csv_with_a_stray_quote_falls_back_to_text(tmp_path: Path) -> None:
    body = ['Tên,CCCD', '"Lan,020301123456'] + [f"Bình,02018512{i:04d}" for i in range(1, 2000)]
    body.append("x" * 200_000)  # longer than the csv module's field limit once quoted
    path = tmp_path / "loi-ngoac.csv"
    path.write_text("\n".join(body), encoding="utf-8")

    result = scan_file(path)

    assert_counts(result, cccd=2000)


# --- Word and PDF ------------------------------------------------------------------------------


def test_docx_paragraphs_tables_and_headers(tmp_path: Path) -> None:
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "Người lập: Vi Văn Thắng, ĐT 0912 345 678"
    document.add_heading("BIÊN BẢN XÁC MINH HỘ NGHÈO", level=1)
    document.add_paragraph("Ông Lý Văn Tú, CCCD số 020185123456, email tu.ly@gmail.com.")
    document.add_paragraph("Số tiền hỗ trợ 1.200.000 đồng; số tài khoản 101234567890.")
    table = document.add_table(rows=3, cols=3)
    for r, (name, cccd, phone) in enumerate(
        [("Hoàng Thị Lan", "020301123456", "0387654321"), ("Nông Thị Hoa", "004185000123", "")]
    ):
        for c, value in enumerate((name, cccd, phone)):
            table.cell(r, c).text = value
    merged = table.cell(2, 0).merge(table.cell(2, 2))
    merged.text = "Ghi chú chung: 020199123456"  # one merged cell, counted once
    path = tmp_path / "bien-ban.docx"
    document.save(path)

    result = scan_file(path)

    assert result.file_kind == "docx"
    assert_counts(result, cccd=4, phone=2, email=1)
    assert result.record_count == 5


def test_pdf_made_by_weasyprint(tmp_path: Path) -> None:
    weasyprint = pytest.importorskip("weasyprint")
    rows = citizen_rows(12, 5, seed=9)
    cells = "".join(
        f"<tr><td>{r['name']}</td><td>{r['cccd']}</td><td>{r['phone']}</td></tr>" for r in rows
    )
    html = (
        "<html><body><h1>DANH SÁCH NGƯỜI CAO TUỔI</h1>"
        "<p>Xã Nhân Lý, tỉnh Lạng Sơn. Kinh phí 120.000.000 đồng.</p>"
        f"<table>{cells}</table></body></html>"
    )
    path = tmp_path / "danh-sach.pdf"
    weasyprint.HTML(string=html).write_pdf(path)

    result = scan_file(path)

    assert result.file_kind == "pdf"
    assert_counts(result, cccd=12, phone=5)
    assert result.record_count == 12


# --- archives ----------------------------------------------------------------------------------


def test_zip_with_a_workbook_a_csv_and_a_nested_zip(tmp_path: Path) -> None:
    rows = citizen_rows(20, 8, seed=10)
    write_xlsx(tmp_path / "a.xlsx", rows)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ghi-chu.txt", "Liên hệ 0912345678 hoặc 0987.654.321\n")
    path = tmp_path / "ho-so.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(tmp_path / "a.xlsx", "2026/chi-tra.xlsx")
        z.writestr("2026/", "")
        z.writestr("danh-ba.csv", "Tên,ĐT\nLan,0388888123\n")
        z.writestr("cu.zip", inner.getvalue())

    result = scan_file(path)

    assert result.file_kind == "zip"
    assert_counts(result, cccd=20, phone=8 + 1 + 2)
    assert result.members_scanned == 4  # xlsx, csv, inner zip, its txt
    assert result.members_skipped == 0
    assert not result.is_truncated


def nest(payload_name: str, payload: bytes, levels: int) -> bytes:
    data, name = payload, payload_name
    for level in range(levels):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name, data)
        data, name = buffer.getvalue(), f"lop-{level}.zip"
    return data


def test_archives_nest_at_most_two_deep(tmp_path: Path) -> None:
    two = tmp_path / "hai.zip"
    two.write_bytes(nest("a.txt", b"CCCD 020185123456\n", 2))
    three = tmp_path / "ba.zip"
    three.write_bytes(nest("a.txt", b"CCCD 020185123456\n", 3))

    assert_counts(scan_file(two), cccd=1)
    deep = scan_file(three)
    assert deep.error is None
    assert deep.total == 0
    assert deep.is_truncated


def test_zip_bomb_member_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bom.txt", b"0" * (48 * 1024 * 1024))  # ~1000:1
        z.writestr("that.txt", "ĐT 0912345678\n")
    assert path.stat().st_size < 200_000

    result = scan_file(path)

    # Skipped by its ratio without inflating it (48 MiB is within the default max_bytes).
    assert_counts(result, phone=1)
    assert result.is_truncated
    assert result.members_skipped == 1


def test_archive_member_and_size_budgets(tmp_path: Path) -> None:
    path = tmp_path / "nhieu.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(30):
            z.writestr(f"{i:02d}.txt", f"ĐT 09{i:08d}\n" + "Thôn Bản Chắt\n" * 50)

    capped = scan_file(path, max_archive_members=10)
    assert capped.pii_counts() == {"phone": 10}
    assert capped.is_truncated

    small = scan_file(path, max_archive_bytes=5 * 700)
    assert 0 < small.counts["phone"] < 30
    assert small.is_truncated

    whole = scan_file(path)
    assert_counts(whole, phone=30)
    assert not whole.is_truncated


def test_office_container_that_inflates_too_far_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bom.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", b" " * (16 * 1024 * 1024))
    result = scan_file(path)
    assert result.error is None
    assert result.is_truncated
    assert result.total == 0


# --- limits, sniffing, bad input -----------------------------------------------------------------


def test_text_over_max_bytes_counts_only_whole_lines_read(tmp_path: Path) -> None:
    lines = [f"Hộ {i}: ông A, CCCD 0201{i:08d}" for i in range(5000)]
    data = "\n".join(lines).encode("utf-8")
    path = tmp_path / "dai.txt"
    path.write_bytes(data)
    limit = 20_000

    result = scan_file(path, max_bytes=limit)

    whole_lines = data[:limit].count(b"\n")
    assert result.is_truncated
    assert result.counts["cccd"] == whole_lines
    assert result.error is None


def test_time_budget_truncates_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("CCCD 020185123456\n" * 1000, encoding="utf-8")
    result = scan_file(path, max_seconds=0)
    assert result.is_truncated
    assert result.error is None
    assert scan_file(path).counts["cccd"] == 1000


def test_record_count_is_the_lines_with_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "ghi-chep.txt"
    path.write_text(
        "Biên bản họp thôn\nÔng A 020185123456, ĐT 0912345678\n\nBà B 0387654321\nHết.\n",
        encoding="utf-8",
    )
    result = scan_file(path)
    assert result.record_count == 2
    assert result.rows_scanned == 5
    assert result.file_kind == "text"


def test_unknown_extensions_are_sniffed(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "a.xlsx", citizen_rows(3, 3))
    (tmp_path / "bang.bin").write_bytes((tmp_path / "a.xlsx").read_bytes())
    (tmp_path / "ghi.dat").write_text("ĐT 0912345678\n", encoding="utf-8")
    weasyprint = pytest.importorskip("weasyprint")
    weasyprint.HTML(string="<p>CCCD 020185123456</p>").write_pdf(tmp_path / "in.tmp")

    assert scan_file(tmp_path / "bang.bin").file_kind == "xlsx"
    assert_counts(scan_file(tmp_path / "bang.bin"), cccd=3, phone=3)
    assert scan_file(tmp_path / "ghi.dat").file_kind == "text"
    assert_counts(scan_file(tmp_path / "ghi.dat"), phone=1)
    assert scan_file(tmp_path / "in.tmp").file_kind == "pdf"
    assert_counts(scan_file(tmp_path / "in.tmp"), cccd=1)


def _corrupt_cases(tmp_path: Path) -> dict[str, bytes]:
    write_xlsx(tmp_path / "real.xlsx", citizen_rows(50, 10))
    real = (tmp_path / "real.xlsx").read_bytes()
    return {
        "cat-doi.xlsx": real[: len(real) // 2],
        "rac.xlsx": b"PK\x03\x04" + os.urandom(500),
        "rac.docx": os.urandom(2000),
        "rac.pdf": b"%PDF-1.7\n" + os.urandom(2000),
        "rac.zip": b"PK\x03\x04 020185123456 " + os.urandom(300),
        "cu.xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(1000),
        "nhi-phan.bin": bytes(range(256)) * 8,
    }


def test_corrupt_files_give_an_error_not_an_exception(tmp_path: Path) -> None:
    for name, data in _corrupt_cases(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(data)
        result = scan_file(path)
        assert isinstance(result.error, str), name
        assert result.is_unreadable, name
        assert "020185123456" not in result.error
    missing = scan_file(tmp_path / "khong-co.txt")
    assert missing.error is not None and "FileNotFoundError" in missing.error
    assert scan_file(tmp_path).error is not None  # a directory


def test_values_never_reach_logs_or_results(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_id, secret_phone = "020185987651", "0912987654"
    paths = []
    for name, data in _corrupt_cases(tmp_path).items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data + secret_id.encode())
    good = tmp_path / f"{secret_id}.csv"
    good.write_text(f"CCCD,ĐT\n{secret_id},{secret_phone}\n", encoding="utf-8")
    paths.append(good)

    results = [scan_file(path) for path in paths]

    assert results[-1].pii_counts() == {"cccd": 1, "phone": 1}
    for text in [caplog.text, *map(repr, results)]:
        assert secret_id not in text
        assert secret_phone not in text


# --- tables judged by column, legacy and open formats ------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "data" / "pii_corpus"


def test_headerless_columns_are_judged_by_their_values(tmp_path: Path) -> None:
    rng = random.Random(17)
    path = tmp_path / "khong-tieu-de.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for i in range(30):
            cccd, phone = make_cccd(rng), make_phone(rng)
            # Half the IDs and phones lost their zeros; the QR codes have a perfect structure
            # but sit in a column of 13-digit payment references (mostly not identifiers).
            qr = make_cccd(rng) if i % 3 == 0 else f"9704{rng.randint(0, 10**9 - 1):09d}"
            writer.writerow([
                i + 1, "Nông Thị Hoa",
                cccd if i % 2 else str(int(cccd)), phone if i % 2 else str(int(phone)), qr,
            ])

    # The ID and phone columns are identifier columns by their values (zeros come back
    # there); the payment column is one of codes and counts nothing.
    assert_counts(scan_file(path), cccd=30, phone=30)


def test_tab_separated_text_is_read_as_a_table(tmp_path: Path) -> None:
    lines = ["DANH SÁCH NHẬN HỖ TRỢ", "Họ tên\tSố CCCD\tSố tài khoản\tMã QR"]
    lines += [f"Hộ {i}\t02018512{i:04d}\t0201851299{i:02d}\t0201851277{i:02d}" for i in range(12)]
    path = tmp_path / "xuat.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert_counts(scan_file(path), cccd=12)


def test_docx_table_columns_and_context_words(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_paragraph("Quét mã QR thanh toán: 020185123456.")  # a code, not an ID
    table = document.add_table(rows=4, cols=3)
    for r, row in enumerate([("Họ tên", "CCCD", "Mã hồ sơ"),
                             ("Lan", "020301123456", "020199123451"),
                             ("Hoa", "004185000123", "020199123452"),
                             ("Tú", "020185123459", "020199123453")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    path = tmp_path / "ho-so.docx"
    document.save(path)
    assert_counts(scan_file(path), cccd=3)


@pytest.mark.parametrize("fmt", ["xls", "ods", "doc", "odt"])
def test_legacy_and_open_formats_are_read(fmt: str) -> None:
    result = scan_file(FIXTURES / f"chi-tra.{fmt}")
    assert result.file_kind == fmt
    assert not result.is_unreadable
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    assert result.pii_counts() == manifest["files"][f"chi-tra.{fmt}"]["truth"]
    assert result.record_count == manifest["files"][f"chi-tra.{fmt}"]["truth"]["cccd"]


def test_office_names_are_checked_against_the_bytes(tmp_path: Path) -> None:
    # Web apps save HTML under .doc and .xls; a renamed workbook is still a workbook.
    html = tmp_path / "bao-cao.doc"
    html.write_text("<html><body><p>CCCD 020185123456</p></body></html>", encoding="utf-8")
    assert scan_file(html).file_kind == "text"
    assert_counts(scan_file(html), cccd=1)
    sheet = tmp_path / "doi-ten.xls"
    sheet.write_bytes((FIXTURES / "chi-tra.ods").read_bytes())
    assert scan_file(sheet).file_kind == "ods"
    assert scan_file(sheet).pii_counts() == scan_file(FIXTURES / "chi-tra.ods").pii_counts()


def test_encrypted_and_unknown_ole2_files_are_unreadable_not_clean(tmp_path: Path) -> None:
    import olefile

    # A password-protected .doc: a real one with the FIB's "encrypted" flag (0x0100) set.
    source = (FIXTURES / "bien-ban.doc").read_bytes()
    with olefile.OleFileIO(source) as ole:
        fib = ole.openstream("WordDocument").read(16)
    at = source.index(fib)
    flags = int.from_bytes(source[at + 0x0A : at + 0x0C], "little") | 0x0100
    encrypted = tmp_path / "mat-khau.doc"
    encrypted.write_bytes(source[: at + 0x0A] + flags.to_bytes(2, "little") + source[at + 0x0C :])
    result = scan_file(encrypted)
    assert result.is_unreadable and result.total == 0
    assert result.error is not None and "ValueError" in result.error

    # An OLE2 file that is neither Word nor Excel (an encrypted .xlsx, PowerPoint) is unsupported.
    other = tmp_path / "khac.xlsx"
    with olefile.OleFileIO(source) as ole:
        assert ole.exists("WordDocument")
    other.write_bytes(source.replace(b"W\x00o\x00r\x00d\x00D", b"X\x00o\x00r\x00d\x00D", 1))
    assert scan_file(other).is_unreadable

    truncated = tmp_path / "cat.xls"
    truncated.write_bytes((FIXTURES / "chi-tra.xls").read_bytes()[:3000])
    assert scan_file(truncated).is_unreadable


def test_xls_with_a_stray_far_cell_is_unreadable_not_a_gigabyte(tmp_path: Path) -> None:
    import struct

    import olefile

    # A real workbook whose last cell record is moved to IV65536 (a few bytes changed): its grid
    # spans 16.7 million cells, which python-calamine would hold dense (over 1 GB measured).
    far = tmp_path / "o-xa.xls"
    far.write_bytes((FIXTURES / "chi-tra.xls").read_bytes())
    with olefile.OleFileIO(str(far), write_mode=True) as ole:
        data = bytearray(ole.openstream("Workbook").read())
        position, last_cell = 0, None
        while position + 4 <= len(data):
            kind, length = struct.unpack_from("<HH", data, position)
            if kind in (0x00FD, 0x0203, 0x027E, 0x0204):
                last_cell = position + 4
            position += 4 + length
        assert last_cell is not None
        struct.pack_into("<HH", data, last_cell, 65535, 255)
        ole.write_stream("Workbook", bytes(data))
    started = time.monotonic()
    result = scan_file(far)
    assert result.is_unreadable and result.total == 0
    assert result.error is not None and "ValueError" in result.error
    assert time.monotonic() - started < 5
    # The unchanged workbook still reads (its grid is small).
    assert not scan_file(FIXTURES / "chi-tra.xls").is_unreadable


def test_odt_table_repeats_of_repeats_are_unreadable_not_gigabytes(tmp_path: Path) -> None:
    # 4 rows repeated 256 times of 1,000 cells repeated 256 times: 11 KB asked for 262 million
    # cells (2 GB and 24 s measured before the cap).
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"')
    rows = "".join(
        '<table:table-row table:number-rows-repeated="256">'
        + "".join(f'<table:table-cell table:number-columns-repeated="256"><text:p>{r}-{c}</text:p>'
                  "</table:table-cell>" for c in range(1000))
        + "</table:table-row>" for r in range(4))
    content = (f'<?xml version="1.0"?><office:document-content {ns}><office:body><office:text>'
               f"<table:table>{rows}</table:table></office:text></office:body>"
               "</office:document-content>")
    path = tmp_path / "lap.odt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    started = time.monotonic()
    result = scan_file(path)
    assert result.is_unreadable and result.total == 0
    assert time.monotonic() - started < 5


def test_odt_entities_are_not_expanded(tmp_path: Path) -> None:
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    content = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "020185123456 ">' + laughs + "]>"
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body>'
        "<office:text><text:p>&l9;</text:p><text:p>CCCD 020301123456</text:p></office:text>"
        "</office:body></office:document-content>"
    )
    path = tmp_path / "bom.odt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", content)
    result = scan_file(path)
    assert result.file_kind == "odt"
    assert result.counts["cccd"] <= 1  # never a billion


@pytest.mark.parametrize("fmt", ["xls", "ods", "doc", "odt"])
def test_damaged_legacy_and_open_files_never_raise(tmp_path: Path, fmt: str) -> None:
    rng = random.Random(fmt)
    data = bytearray((FIXTURES / f"ho-ngheo.{fmt}").read_bytes())
    whole = scan_file(FIXTURES / f"ho-ngheo.{fmt}").total
    unreadable = 0
    for i in range(25):
        damaged = bytearray(data)
        flips = rng.randint(1, 40)
        for _ in range(flips):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if i % 5 == 0:
            damaged = damaged[: rng.randrange(len(damaged))]
        path = tmp_path / f"hong-{i}.{fmt}"
        path.write_bytes(bytes(damaged))
        started = time.monotonic()
        result = scan_file(path, max_seconds=10)
        assert time.monotonic() - started < 10
        unreadable += result.is_unreadable
        # A flipped byte can make at most a couple of new numbers, never a flood of them.
        assert result.total <= whole + 2 * flips, i
    assert unreadable  # damage is noticed, not read as a clean file every time


def test_a_stray_far_cell_does_not_blow_up_the_sheet(tmp_path: Path) -> None:
    # python-calamine would hold this 5 KB sheet as a dense grid of 17 billion cells and abort
    # the process; the scanner measures the grid first and streams such a sheet instead.
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Họ tên", "Số CCCD", "SĐT"])
    ws.append(["Lan", 20185123456, 912345678])
    ws.cell(1048576, 16384).value = "x"
    path = tmp_path / "thua.xlsx"
    wb.save(path)
    assert path.stat().st_size < 10_000
    started = time.monotonic()
    assert_counts(scan_file(path), cccd=1, phone=1)
    assert time.monotonic() - started < 5


def test_an_ods_whose_cells_span_a_huge_grid_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    # Real files end each sheet with a million repeated empty rows (not counted); here a
    # value sits 1,000,000 rows and 16,000 columns away: python-calamine would abort.
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"')
    cell = '<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>'
    content = (
        f'<?xml version="1.0"?><office:document-content {ns}><office:body><office:spreadsheet>'
        '<table:table table:name="S">'
        f"<table:table-row>{cell.format('CCCD')}</table:table-row>"
        f"<table:table-row>{cell.format('020185123456')}</table:table-row>"
        '<table:table-row table:number-rows-repeated="1000000"><table:table-cell/>'
        "</table:table-row><table:table-row>"
        f'<table:table-cell table:number-columns-repeated="16000"/>{cell.format("x")}'
        "</table:table-row></table:table></office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    with zipfile.ZipFile(FIXTURES / "chi-tra.ods") as real:
        manifest_xml = real.read("META-INF/manifest.xml")
    path = tmp_path / "thua.ods"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest_xml)
        z.writestr("content.xml", content)
    result = scan_file(path)
    assert result.file_kind == "ods"
    assert result.is_unreadable
    # The same sheet without the far cell is read.
    path.write_bytes(b"")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest_xml)
        z.writestr("content.xml", content.replace(cell.format("x"), ""))
    assert_counts(scan_file(path), cccd=1)
