"""Content fingerprints: the same table or text after "Save As" is recognised; a change is not."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import zipfile
from decimal import Decimal
from pathlib import Path

import docx
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.styles import Font

from canhgac_common.pii import content_fingerprint, file_sha256
from canhgac_common.pii.fingerprint import canonical_cell

HEADER = ["STT", "Họ và tên", "Số CCCD", "Ngày sinh", "Trợ cấp", "Hệ số", "Ghi chú"]
ROWS = [
    [1, "Nguyễn Văn Bình", "020185123456", dt.datetime(1985, 3, 2), 1_200_000, 1.5, "Thôn Bản Chắt"],
    [2, "Hoàng Thị Lan", 20301123456, dt.datetime(2001, 12, 1), 500_000, 0.1 + 0.2, None],
    [3, "Lý Văn Tú", "004185000123", dt.datetime(1931, 7, 15, 10, 30), 2_160_000, 2.0, "  hộ nghèo "],
]


def write_xlsx(path: Path, rows: list[list], *, styled: bool = False, extra_sheet: bool = False) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for row in rows:
        ws.append(row)
    if styled:
        # Only presentation changes: fonts, widths, number formats, a frozen pane.
        for cell in ws[1]:
            cell.font = Font(bold=True, name="Times New Roman")
        ws.column_dimensions["B"].width = 32
        for row in ws.iter_rows(min_row=2, min_col=5, max_col=5):
            row[0].number_format = "#,##0"
        ws.freeze_panes = "A2"
    if extra_sheet:
        wb.create_sheet("Sheet2")  # empty, as Excel's new workbooks have
    wb.save(path)


def excel_text(value: object) -> str:
    """Render a cell the way Excel's "Save As CSV" does (dates day first, as in Vietnam)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%d/%m/%Y %H:%M" if value.hour or value.minute else "%d/%m/%Y")
    if isinstance(value, float):
        return format(value, ".15g")
    return str(value)


def write_csv(path: Path, rows: list[list], *, delimiter: str = ",", encoding: str = "utf-8-sig",
              line_end: str = "\r\n", thousands: bool = False) -> None:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator=line_end)
        w.writerow(HEADER)
        for row in rows:
            cells = [excel_text(v) for v in row]
            if thousands:
                cells[4] = f"{row[4]:,}"
            w.writerow(cells)
        w.writerow([""] * len(HEADER))  # Excel keeps empty rows inside the used range


def test_xlsx_and_its_csv_save_as_have_the_same_fingerprint(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "a.xlsx", ROWS)
    write_csv(tmp_path / "a.csv", ROWS)

    fp_xlsx = content_fingerprint(tmp_path / "a.xlsx")
    fp_csv = content_fingerprint(tmp_path / "a.csv")

    assert fp_xlsx is not None and len(fp_xlsx) == 64
    assert fp_csv == fp_xlsx
    assert file_sha256(tmp_path / "a.xlsx") != file_sha256(tmp_path / "a.csv")


@pytest.mark.parametrize(
    "options",
    [
        {"delimiter": ";"},
        {"delimiter": "\t", "encoding": "utf-16"},
        {"encoding": "utf-8", "line_end": "\n"},
        {"thousands": True},
    ],
)
def test_csv_dialects_and_encodings_do_not_change_the_fingerprint(
    tmp_path: Path, options: dict
) -> None:
    write_xlsx(tmp_path / "a.xlsx", ROWS)
    write_csv(tmp_path / "b.csv", ROWS, **options)
    assert content_fingerprint(tmp_path / "b.csv") == content_fingerprint(tmp_path / "a.xlsx")


def test_styles_and_empty_sheets_do_not_change_the_fingerprint(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "plain.xlsx", ROWS)
    write_xlsx(tmp_path / "styled.xlsx", ROWS, styled=True, extra_sheet=True)
    assert file_sha256(tmp_path / "plain.xlsx") != file_sha256(tmp_path / "styled.xlsx")
    assert content_fingerprint(tmp_path / "styled.xlsx") == content_fingerprint(
        tmp_path / "plain.xlsx"
    )


@pytest.mark.parametrize(
    ("row", "column", "value"),
    [
        (0, 2, "020185123457"),  # one digit of an ID
        (1, 2, 20301123457),
        (2, 1, "Lý Văn Tủ"),  # one tone mark
        (0, 4, 1_200_001),
        (1, 6, "x"),  # an empty cell filled
    ],
)
def test_changing_one_cell_changes_the_fingerprint(
    tmp_path: Path, row: int, column: int, value: object
) -> None:
    changed = [list(r) for r in ROWS]
    changed[row][column] = value
    write_xlsx(tmp_path / "a.xlsx", ROWS)
    write_xlsx(tmp_path / "b.xlsx", changed)
    write_csv(tmp_path / "b.csv", changed)
    original = content_fingerprint(tmp_path / "a.xlsx")
    assert content_fingerprint(tmp_path / "b.xlsx") != original
    assert content_fingerprint(tmp_path / "b.csv") == content_fingerprint(tmp_path / "b.xlsx")


def test_moving_or_adding_data_changes_the_fingerprint(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "a.xlsx", ROWS)
    write_xlsx(tmp_path / "swapped.xlsx", [ROWS[1], ROWS[0], ROWS[2]])
    write_xlsx(tmp_path / "more.xlsx", [*ROWS, [4, "Nông Thị Hoa"]])
    moved = [[*r[:6], None, r[6]] for r in ROWS]  # a value shifted one column right
    write_xlsx(tmp_path / "moved.xlsx", moved)
    wb = openpyxl.load_workbook(tmp_path / "a.xlsx")
    wb.create_sheet("Phụ lục").append(["Hết"])
    wb.save(tmp_path / "sheet.xlsx")
    prints = {content_fingerprint(tmp_path / n) for n in
              ("a.xlsx", "swapped.xlsx", "more.xlsx", "moved.xlsx", "sheet.xlsx")}
    assert len(prints) == 5


def test_text_fingerprint_ignores_line_endings_bom_and_blank_space(tmp_path: Path) -> None:
    lines = ["KẾ HOẠCH", "Thực hiện Đề án 06 trên địa bàn xã Nhân Lý", "", "Ông A: 020185123456"]
    (tmp_path / "lf.txt").write_bytes("\n".join(lines).encode("utf-8"))
    (tmp_path / "crlf.txt").write_bytes(
        ("\r\n".join(f"{line}   " for line in lines) + "\r\n\r\n").encode("utf-8-sig")
    )
    (tmp_path / "utf16.txt").write_bytes("\r\n".join(lines).encode("utf-16"))
    (tmp_path / "changed.txt").write_bytes("\n".join([*lines[:3], "Ông A: 020185123457"]).encode())
    base = content_fingerprint(tmp_path / "lf.txt")
    assert base is not None
    assert content_fingerprint(tmp_path / "crlf.txt") == base
    assert content_fingerprint(tmp_path / "utf16.txt") == base
    assert content_fingerprint(tmp_path / "changed.txt") != base


def test_docx_saved_as_text_keeps_its_fingerprint(tmp_path: Path) -> None:
    paragraphs = ["BIÊN BẢN XÁC MINH", "Hộ ông Lý Văn Tú, thôn Bản Chắt.", "", "Kết luận: đủ điều kiện."]
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.sections[0].header.paragraphs[0].text = "UBND XÃ NHÂN LÝ"  # not content
    document.save(tmp_path / "a.docx")
    (tmp_path / "a.txt").write_text("\r\n".join(paragraphs) + "\r\n", encoding="utf-8")
    restyled = docx.Document(tmp_path / "a.docx")
    for paragraph in restyled.paragraphs:
        for run in paragraph.runs:
            run.bold = True
    restyled.paragraphs[1].add_run(" Bổ sung.")
    restyled.save(tmp_path / "b.docx")

    fp = content_fingerprint(tmp_path / "a.docx")
    assert fp is not None
    assert content_fingerprint(tmp_path / "a.txt") == fp
    assert content_fingerprint(tmp_path / "b.docx") != fp


def test_pdf_fingerprint_is_stable_and_follows_the_text(tmp_path: Path) -> None:
    weasyprint = pytest.importorskip("weasyprint")
    html = "<h1>THÔNG BÁO</h1><p>Ông Nguyễn Văn Bình, CCCD {}.</p>"
    weasyprint.HTML(string=html.format("020185123456")).write_pdf(tmp_path / "a.pdf")
    weasyprint.HTML(string=html.format("020185123456")).write_pdf(
        tmp_path / "a2.pdf", pdf_identifier=b"khac"
    )
    weasyprint.HTML(string=html.format("020185123457")).write_pdf(tmp_path / "b.pdf")
    fp = content_fingerprint(tmp_path / "a.pdf")
    assert fp is not None
    assert file_sha256(tmp_path / "a.pdf") != file_sha256(tmp_path / "a2.pdf")
    assert content_fingerprint(tmp_path / "a2.pdf") == fp
    assert content_fingerprint(tmp_path / "b.pdf") != fp


def test_archives_binaries_bad_and_oversized_files_have_no_fingerprint(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("a.txt", "nội dung")
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bad.xlsx").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(200))
    (tmp_path / "big.txt").write_text("dòng văn bản\n" * 1000, encoding="utf-8")
    for name in ("a.zip", "a.bin", "bad.xlsx", "bad.pdf", "missing.csv"):
        assert content_fingerprint(tmp_path / name) is None, name
    assert content_fingerprint(tmp_path / "big.txt", max_bytes=1000) is None
    assert content_fingerprint(tmp_path / "big.txt", max_seconds=0) is None
    assert content_fingerprint(tmp_path / "big.txt") is not None


def test_file_sha256_streams_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "a.bin").write_bytes(data)
    assert file_sha256(tmp_path / "a.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (20185123456, "20185123456"),
        (1.5, "1.50"),
        (1200000, "1.200.000"),
        (1200000, "1,200,000"),
        (0.30000000000000004, "0.3"),
        (1e20, "1E+20"),
        (-2.5, "-2.5"),
        (True, "TRUE"),
        (False, "false"),
        (dt.datetime(2027, 1, 5), "05/01/2027"),
        (dt.datetime(2027, 1, 13, 10, 30), "1/13/2027 10:30"),
        (dt.datetime(2027, 1, 5, 10, 29, 59, 999_999), "05/01/2027 10:30:00"),
        (dt.date(2027, 1, 5), "2027-01-05"),
        ("Nguyễn  Văn\tBình", " Nguyễn Văn Bình "),
    ],
)
def test_canonical_cell_matches_workbook_values_and_csv_text(value: object, text: str) -> None:
    assert canonical_cell(value) == canonical_cell(text)


@pytest.mark.parametrize(
    ("a", "b"),
    [("020185123456", 20185123456), ("1.200", 1200), ("0.5", "00.5"), ("1,5", 1.5), ("TRUE", 1)],
)
def test_canonical_cell_keeps_what_differs(a: object, b: object) -> None:
    assert canonical_cell(a) != canonical_cell(b)


def test_numbers_beyond_fifteen_significant_digits_are_excels_numbers() -> None:
    assert canonical_cell("1.0000000000000001") == canonical_cell(1) == "1"
    assert canonical_cell("12345678901234567") == "12345678901234567"  # digits only: text-like


@given(st.integers(min_value=-(10**18), max_value=10**18))
@settings(deadline=None)  # shared CI cores: no per-example timing
def test_integers_and_their_text_are_one_cell(value: int) -> None:
    assert canonical_cell(value) == canonical_cell(str(value)) == str(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(deadline=None)  # shared CI cores: no per-example timing
def test_floats_and_excel_text_are_one_cell(value: float) -> None:
    excel = format(value, ".15g")
    assert canonical_cell(value) == canonical_cell(excel)
    assert Decimal(canonical_cell(value)) == Decimal(excel)
