"""A seeded, labelled corpus of commune files for measuring the PII scanner.

``make_documents(seed)`` builds the content of realistic commune documents, each with its true
counts of identifiers by kind; ``render`` writes one document in a format (xlsx, csv, docx, pdf,
txt, zip here; xls, ods, doc and odt are converted from the xlsx/docx renderings by LibreOffice,
see ``tests/data/pii_corpus/README.md``). The same seed always gives the same files and counts:
tests and the benchmark both use it.

Documents (``KINDS_OF_DOCUMENT``):

- ``ho_ngheo``: a poor-household list (ID, year of birth, phone, household code, village,
  notes with a relative's phone written by hand); about 40 % of IDs and phones typed as numbers,
  so spreadsheets and CSV lose their leading zeros.
- ``chi_tra``: a payment list (ID, phone, BHXH number, bank account, bank, amount).
- ``ke_toan``: an accounting export (invoice number of 11 digits that would make an ID if a
  zero were put back, serial, date, customer code, tax code, 9-digit amounts that would make a
  phone number) — it holds no identifier at all.
- ``ke_toan_tho``: the same export without its header row, as some software writes it.
- ``thong_bao_qr``: a fee notice in prose with QR payment codes, bank accounts, invoice, file,
  transaction and serial numbers (12-digit ones with a perfect ID structure), the officer's
  phone and the citizens' IDs.
- ``cccd_da_quet``: a list of scanned ID cards (ID, issue date, place, image file name with a
  timestamp).
- ``bien_ban``: a mixed document: minutes in prose with IDs, phones in every written form,
  e-mail addresses, amounts, decisions and dates, and a small table.

Near misses (``NEAR_MISS_KINDS``) are also rendered alone, one document per kind, whose true
counts are all zero.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from canhgac_common.pii.detectors import PROVINCE_CODES

KINDS = ("cccd", "phone", "bhxh", "email")
FORMATS = ("xlsx", "xls", "ods", "csv", "docx", "doc", "odt", "pdf", "txt", "zip")
# Formats written here; the others are converted from "xlsx" (xls, ods) or "docx" (doc, odt).
DIRECT_FORMATS = ("xlsx", "csv", "docx", "pdf", "txt", "zip")
CONVERTED_FROM = {"xls": "xlsx", "ods": "xlsx", "doc": "docx", "odt": "docx"}
KINDS_OF_DOCUMENT = (
    "ho_ngheo", "chi_tra", "ke_toan", "ke_toan_tho", "thong_bao_qr", "cccd_da_quet", "bien_ban",
)  # fmt: skip
NEAR_MISS_KINDS = (
    "so_hoa_don", "so_tien", "ma_qr", "so_tai_khoan", "ma_so_thue", "ma_ho_so", "so_seri",
    "ngay_gio",
)  # fmt: skip

PROVINCES = sorted(PROVINCE_CODES)
# Mobile prefixes in use (Viettel, Vinaphone, MobiFone, Vietnamobile, Gmobile, Itel, Reddi),
# as libphonenumber's metadata lists them; some are allotted by their fourth digit.
MOBILE_PREFIXES = (
    "032", "033", "034", "035", "036", "037", "038", "039", "0522", "0523", "0528", "056",
    "058", "059", "070", "076", "077", "078", "079", "081", "082", "083", "084", "085", "086",
    "087", "088", "0896", "0897", "0898", "0899", "090", "091", "092", "093", "094", "096",
    "097", "098", "0990", "0991", "0993", "0994", "0995", "0996", "0997", "0998", "0999",
)  # fmt: skip
FAMILY = ["Nguyễn", "Hoàng", "Lý", "Nông", "Vi", "Hà", "Lương", "Triệu", "Mã", "Dương", "Lăng"]
MIDDLE = ["Văn", "Thị", "Đức", "Minh", "Thu", "Hồng", "Quang"]
GIVEN = ["Bình", "Lan", "Tú", "Hoa", "Thắng", "Hùng", "Mai", "Sơn", "Hằng", "Dũng", "Yến", "Tâm"]
VILLAGES = ["Bản Chắt", "Nà Pàn", "Khòn Quanh", "Pò Mận", "Nà Lầu", "Còn Cuông"]
BANKS = ["Agribank", "VietinBank", "NHCSXH", "BIDV", "Vietcombank"]


class Num(str):
    """A value a clerk typed as a number: spreadsheets store it as one (leading zeros lost)."""


@dataclass
class Table:
    """A table: header row and data rows (cells are str, Num, int amounts or dates)."""

    header: list[str] | None
    rows: list[list[object]]


@dataclass
class Document:
    """One document's content and its true counts of identifiers by kind."""

    name: str
    kind: str
    blocks: list[str | Table] = field(default_factory=list)
    truth: Counter = field(default_factory=Counter)


# --- values ------------------------------------------------------------------------------------


def make_cccd(rng: random.Random) -> str:
    """A structurally valid ID number (province, century/sex digit, year of birth)."""
    year = rng.randint(1935, 2012)
    century = (year // 100 - 19) * 2 + rng.randint(0, 1)
    return f"{rng.choice(PROVINCES)}{century}{year % 100:02d}{rng.randint(0, 999_999):06d}"


def make_phone(rng: random.Random) -> str:
    """A mobile number with a prefix in use."""
    prefix = rng.choice(MOBILE_PREFIXES)
    rest = 10 - len(prefix)
    return prefix + f"{rng.randint(0, 10**rest - 1):0{rest}d}"


def make_bhxh(rng: random.Random) -> str:
    """A 10-digit BHXH number: the issuing province first (Lạng Sơn 20, four in five here)."""
    province = 20 if rng.random() < 0.8 else rng.randint(1, 96)
    return f"{province:02d}{rng.randint(0, 99_999_999):08d}"


def make_tax_code(rng: random.Random) -> str:
    """A 10-digit enterprise tax code: Lạng Sơn's 49 mostly, else Hà Nội 01, HCMC 03, …"""
    province = rng.choice(["49"] * 6 + ["01", "02", "03", "08", "47", "48"])
    return f"{province}{rng.randint(0, 99_999_999):08d}"


def phone_form(rng: random.Random, phone: str) -> str:
    """Write a phone number the way people do."""
    form = rng.randrange(6)
    if form == 1:
        return f"{phone[:4]}.{phone[4:7]}.{phone[7:]}"
    if form == 2:
        return f"{phone[:4]} {phone[4:7]} {phone[7:]}"
    if form == 3:
        return f"+84 {phone[1:4]} {phone[4:7]} {phone[7:]}"
    if form == 4:
        return f"{phone[:3]}-{phone[3:6]}-{phone[6:]}"
    return phone


def cccd_form(rng: random.Random, cccd: str) -> str:
    """Write an ID number the way people do (mostly plain)."""
    if rng.random() < 0.2:
        return f"{cccd[:3]} {cccd[3:6]} {cccd[6:9]} {cccd[9:]}"
    return cccd


def invoice_like_id(rng: random.Random) -> str:
    """An 11-digit invoice number that would be a valid ID if a zero were put back."""
    while True:
        digits = make_cccd(rng)
        if digits[0] == "0" and digits[1] != "0" and not digits.endswith("0000"):
            return digits[1:]


def amount_like_phone(rng: random.Random) -> int:
    """A 9-digit amount that would be a mobile number if a zero were put back."""
    while True:
        value = int(make_phone(rng)[1:])
        if value % 10_000:
            return value


def name(rng: random.Random) -> str:
    """A Tày/Nùng/Kinh name as written in Lạng Sơn lists."""
    return f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"


def date(rng: random.Random, first: int = 1940, last: int = 2026) -> dt.date:
    """A date between two years."""
    return dt.date(rng.randint(first, last), rng.randint(1, 12), rng.randint(1, 28))


def as_typed(rng: random.Random, value: str) -> str:
    """Return the value as text or, four times in ten, as a number the clerk typed."""
    return Num(value) if rng.random() < 0.4 else value


def bank_account(rng: random.Random) -> str:
    """A bank account number as commune payment lists hold them (12 to 14 digits)."""
    bank = rng.randrange(4)
    if bank == 0:
        return f"{rng.randint(100, 119)}{rng.randint(0, 999_999_999):09d}"  # VietinBank, 12
    if bank == 1:
        return f"{rng.randint(8800, 8899)}{rng.randint(0, 999_999_999):09d}"  # Agribank, 13
    if bank == 2:
        return f"{rng.randint(10, 99)}{rng.randint(0, 10**12 - 1):012d}"  # BIDV, 14
    return f"0{rng.randint(10, 99)}1000{rng.randint(0, 999_999):06d}"  # Vietcombank, 13


# --- documents ---------------------------------------------------------------------------------


def ho_ngheo(rng: random.Random, n: int) -> Document:
    doc = Document("ho-ngheo", "ho_ngheo")
    doc.blocks.append("DANH SÁCH HỘ NGHÈO, HỘ CẬN NGHÈO NĂM 2026 - XÃ NHÂN LÝ")
    rows = []
    for i in range(n):
        cccd = make_cccd(rng)
        phone = make_phone(rng) if rng.random() < 0.7 else ""
        note = ""
        roll = rng.random()
        if roll < 0.15:
            note = f"ĐT con trai {phone_form(rng, make_phone(rng))}"
            doc.truth["phone"] += 1
        elif roll < 0.3:
            note = f"Sổ hộ nghèo số {rng.randint(1, 999):03d}/2026"
        rows.append([
            i + 1, name(rng), as_typed(rng, cccd), rng.randint(1940, 2006),
            as_typed(rng, phone) if phone else "", rng.choice(VILLAGES),
            f"HN{rng.randint(0, 10**9):09d}", note,
        ])
        doc.truth["cccd"] += 1
        doc.truth["phone"] += bool(phone)
    doc.blocks.append(Table(
        ["STT", "Họ và tên chủ hộ", "Số CCCD", "Năm sinh", "Số điện thoại", "Thôn", "Mã hộ",
         "Ghi chú"], rows))
    doc.blocks.append("Người lập biểu: Lý Thị Mai, cán bộ LĐTBXH.")
    return doc


def chi_tra(rng: random.Random, n: int) -> Document:
    doc = Document("chi-tra", "chi_tra")
    doc.blocks.append("DANH SÁCH CHI TRẢ TRỢ CẤP XÃ HỘI THÁNG 01/2027")
    rows = []
    for i in range(n):
        cccd, phone, bhxh = make_cccd(rng), make_phone(rng), make_bhxh(rng)
        rows.append([
            i + 1, name(rng), as_typed(rng, cccd), as_typed(rng, phone), as_typed(rng, bhxh),
            Num(bank_account(rng)), rng.choice(BANKS),
            rng.choice([500_000, 750_000, 1_200_000, 2_160_000]),
        ])
        doc.truth.update(cccd=1, phone=1, bhxh=1)
    total = sum(row[-1] for row in rows)
    rows.append(["", "Tổng cộng", "", "", "", "", "", total])
    doc.blocks.append(Table(
        ["STT", "Họ và tên", "Số định danh cá nhân", "SĐT", "Mã số BHXH", "Số tài khoản",
         "Ngân hàng", "Số tiền (đồng)"], rows))
    return doc


def _accounting_rows(rng: random.Random, n: int) -> list[list[object]]:
    rows = []
    for _ in range(n):
        amount = amount_like_phone(rng)
        rows.append([
            Num(invoice_like_id(rng)), f"1C26T{rng.choice('ABCDE')}{rng.choice('ABCDE')}",
            date(rng, 2026, 2026), f"KH{rng.randint(0, 99_999):05d}",
            Num(make_tax_code(rng)),
            amount, amount // 10, amount + amount // 10,
        ])
    return rows


def ke_toan(rng: random.Random, n: int) -> Document:
    doc = Document("ke-toan", "ke_toan")
    doc.blocks.append(Table(
        ["Số HĐ", "Ký hiệu", "Ngày HĐ", "Mã KH", "MST người mua", "Tiền hàng", "Thuế GTGT",
         "Tổng thanh toán"], _accounting_rows(rng, n)))
    return doc


def ke_toan_tho(rng: random.Random, n: int) -> Document:
    doc = Document("ke-toan-tho", "ke_toan_tho")
    doc.blocks.append(Table(None, _accounting_rows(rng, n)))
    return doc


def thong_bao_qr(rng: random.Random, n: int) -> Document:
    doc = Document("thong-bao-qr", "thong_bao_qr")
    officer = make_phone(rng)
    doc.blocks += [
        "ỦY BAN NHÂN DÂN XÃ NHÂN LÝ",
        "THÔNG BÁO",
        "Về việc thu phí vệ sinh môi trường năm 2027",
        f"Số: {rng.randint(1, 300)}/TB-UBND",
        f"Các hộ nộp phí qua chuyển khoản, số tài khoản: {bank_account(rng)} tại Agribank, "
        f"hoặc STK {make_phone(rng)} (ví điện tử).",
        f"Cán bộ thu: Hà Thị Hằng, điện thoại {phone_form(rng, officer)}.",
    ]
    doc.truth["phone"] += 1
    for _ in range(n):
        who, cccd = name(rng), make_cccd(rng)
        parts = [f"Hộ ông/bà {who}, CCCD {cccd_form(rng, cccd)}"]
        doc.truth["cccd"] += 1
        parts.append(rng.choice([
            f"mã QR thanh toán: {make_cccd(rng)}",
            f"Mã QR: {make_cccd(rng)}",
            f"quét mã QR, mã thanh toán {make_cccd(rng)}",
        ]))
        parts.append(rng.choice([
            f"số hóa đơn {invoice_like_id(rng)}",
            f"mã hồ sơ {make_cccd(rng)}",
            f"mã giao dịch {make_cccd(rng)}",
            f"số seri biên lai {make_cccd(rng)}",
            f"số tiền {rng.randint(1, 9)}{rng.randint(0, 999):03d}.000 đồng",
        ]))
        if rng.random() < 0.3:
            parts.append(f"liên hệ {phone_form(rng, make_phone(rng))}")
            doc.truth["phone"] += 1
        doc.blocks.append("; ".join(parts) + ".")
    return doc


def cccd_da_quet(rng: random.Random, n: int) -> Document:
    doc = Document("cccd-da-quet", "cccd_da_quet")
    doc.blocks.append("DANH SÁCH CÔNG DÂN ĐÃ THU NHẬN, QUÉT THẺ CĂN CƯỚC")
    rows = []
    for i in range(n):
        taken = dt.datetime(2026, rng.randint(1, 12), rng.randint(1, 28), rng.randint(7, 17),
                            rng.randint(0, 59), rng.randint(0, 59))
        rows.append([
            i + 1, name(rng), as_typed(rng, make_cccd(rng)), date(rng, 2021, 2026),
            "Cục CS QLHC về TTXH", f"IMG_{taken:%Y%m%d_%H%M%S}.jpg",
        ])
        doc.truth["cccd"] += 1
    doc.blocks.append(Table(
        ["STT", "Họ tên", "Số thẻ căn cước", "Ngày cấp", "Nơi cấp", "Tệp ảnh"], rows))
    return doc


def bien_ban(rng: random.Random, n: int) -> Document:
    doc = Document("bien-ban", "bien_ban")
    doc.blocks += [
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "BIÊN BẢN XÁC MINH ĐIỀU KIỆN HỖ TRỢ NHÀ Ở",
        f"Căn cứ Quyết định số {rng.randint(100, 2999)}/QĐ-UBND ngày "
        f"{date(rng, 2025, 2026):%d/%m/%Y} của UBND tỉnh Lạng Sơn;",
    ]
    for _ in range(n):
        cccd, phone = make_cccd(rng), make_phone(rng)
        email = f"{rng.choice(GIVEN).lower().replace('ì', 'i')}{rng.randint(1, 999)}@gmail.com"
        if not email.isascii():
            email = f"congdan{rng.randint(1, 999)}@gmail.com"
        doc.blocks.append(
            f"Ông/bà {name(rng)}, sinh năm {rng.randint(1940, 2000)}, số định danh cá nhân "
            f"{cccd_form(rng, cccd)}, điện thoại {phone_form(rng, phone)}, thư điện tử {email}; "
            f"được hỗ trợ {rng.randint(20, 60)}.000.000 đồng, chuyển vào số tài khoản "
            f"{bank_account(rng)} ngày {date(rng, 2026, 2026):%d/%m/%Y}."
        )
        doc.truth.update(cccd=1, phone=1, email=1)
    rows = []
    for i in range(max(3, n // 2)):
        rows.append([i + 1, name(rng), make_cccd(rng), make_phone(rng), rng.choice(VILLAGES)])
        doc.truth.update(cccd=1, phone=1)
    doc.blocks.append(Table(["STT", "Thành viên tổ xác minh", "CCCD", "Điện thoại", "Thôn"],
                            rows))
    doc.blocks.append("Biên bản lập hồi 10 giờ 30 phút, ngày 05/01/2027, mã hồ sơ "
                      f"H33.45-{rng.randint(100000, 999999)}-{rng.randint(1000, 9999)}.")
    return doc


def near_miss(rng: random.Random, kind: str, n: int) -> Document:
    """A document holding only one kind of near miss, in its natural context."""
    doc = Document(f"gan-giong-{kind.replace('_', '-')}", f"near_miss:{kind}")
    if kind == "so_hoa_don":
        doc.blocks.append(Table(["Số hóa đơn", "Ngày", "Tên khách hàng"],
                                [[Num(invoice_like_id(rng)), date(rng, 2026, 2026), name(rng)]
                                 for _ in range(n)]))
        doc.blocks += [f"Số hóa đơn: {invoice_like_id(rng)}" for _ in range(3)]
    elif kind == "so_tien":
        doc.blocks.append(Table(["Nội dung", "Số tiền"],
                                [[f"Chi hỗ trợ đợt {i + 1}", amount_like_phone(rng)]
                                 for i in range(n)]))
        doc.blocks += [f"Tổng số tiền: {amount_like_phone(rng)} đồng" for _ in range(3)]
    elif kind == "ma_qr":
        doc.blocks.append(Table(["Hộ", "Mã QR thanh toán"],
                                [[name(rng), make_cccd(rng)] for _ in range(n)]))
        doc.blocks += [f"Quét mã QR: {make_cccd(rng)} để nộp phí." for _ in range(3)]
    elif kind == "so_tai_khoan":
        doc.blocks.append(Table(["Chủ tài khoản", "Số tài khoản", "Ngân hàng"],
                                [[name(rng), Num(rng.choice([make_cccd(rng), make_phone(rng)])),
                                  rng.choice(BANKS)] for _ in range(n)]))
        doc.blocks += [f"STK: {make_phone(rng)} (MB Bank)" for _ in range(3)]
    elif kind == "ma_so_thue":
        doc.blocks.append(Table(["Tên hộ kinh doanh", "Mã số thuế"],
                                [[name(rng), make_phone(rng)] for _ in range(n)]))
        doc.blocks += [f"Mã số thuế: {make_phone(rng)}" for _ in range(3)]
    elif kind == "ma_ho_so":
        doc.blocks.append(Table(["Mã hồ sơ", "Thủ tục", "Ngày nhận"],
                                [[make_cccd(rng), "Đăng ký khai sinh", date(rng, 2026, 2026)]
                                 for _ in range(n)]))
        doc.blocks += [f"Mã hồ sơ: {make_cccd(rng)}" for _ in range(3)]
    elif kind == "so_seri":
        doc.blocks.append(Table(["Thiết bị", "Số seri"],
                                [["Máy tính xách tay", make_cccd(rng)] for _ in range(n)]))
        doc.blocks += [f"Số seri: {make_cccd(rng)}" for _ in range(3)]
    elif kind == "ngay_gio":
        doc.blocks.append(Table(["Thời điểm", "Ngày"],
                                [[f"{date(rng, 2020, 2026):%Y%m%d}{rng.randint(0, 235959):06d}",
                                  date(rng)] for _ in range(n)]))
        doc.blocks += [f"Lúc {date(rng, 2020, 2026):%d/%m/%Y} 10:30:00" for _ in range(3)]
    return doc


_BUILDERS = {
    "ho_ngheo": ho_ngheo, "chi_tra": chi_tra, "ke_toan": ke_toan, "ke_toan_tho": ke_toan_tho,
    "thong_bao_qr": thong_bao_qr, "cccd_da_quet": cccd_da_quet, "bien_ban": bien_ban,
}  # fmt: skip


def make_documents(seed: int, *, rows: int = 40) -> list[Document]:
    """Return the corpus's documents for one seed (near-miss documents included)."""
    rng = random.Random(seed)
    docs = [_BUILDERS[kind](rng, rows if kind != "bien_ban" else rows // 4)
            for kind in KINDS_OF_DOCUMENT]
    docs += [near_miss(rng, kind, rows // 2) for kind in NEAR_MISS_KINDS]
    return docs


# --- rendering ---------------------------------------------------------------------------------


def _text(cell: object) -> str:
    """How a cell reads in a text document."""
    if isinstance(cell, dt.datetime):
        return f"{cell:%d/%m/%Y %H:%M}"
    if isinstance(cell, dt.date):
        return f"{cell:%d/%m/%Y}"
    if isinstance(cell, int) and cell >= 10_000:
        return f"{cell:,}".replace(",", ".")
    return str(cell)


def _sheet_value(cell: object) -> object:
    """How a cell is stored in a spreadsheet: typed numbers become numbers."""
    if isinstance(cell, Num):
        return int(cell) if cell else ""
    return cell


def _csv_value(cell: object) -> str:
    """How Excel's "Save As CSV" writes a cell: numbers without their leading zeros."""
    if isinstance(cell, Num):
        return str(int(cell)) if cell else ""
    if isinstance(cell, dt.datetime):
        return f"{cell:%d/%m/%Y %H:%M}"
    if isinstance(cell, dt.date):
        return f"{cell:%d/%m/%Y}"
    return str(cell)


def _tables(doc: Document) -> list[Table]:
    return [b for b in doc.blocks if isinstance(b, Table)]


def write_xlsx(doc: Document, path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Trang 1"
    tables = 0
    for block in doc.blocks:
        if isinstance(block, str):
            ws.append([block])
            continue
        tables += 1
        if tables > 1:  # each further table on its own sheet
            ws = wb.create_sheet(f"Trang {tables}")
        if block.header:
            ws.append(block.header)
        for row in block.rows:
            ws.append([_sheet_value(c) for c in row])
            for column, cell in enumerate(row, start=1):
                if isinstance(cell, dt.date):
                    ws.cell(ws.max_row, column).number_format = "dd/mm/yyyy"
                elif isinstance(cell, int) and not isinstance(cell, bool) and cell >= 10_000:
                    ws.cell(ws.max_row, column).number_format = "#,##0"
    wb.save(path)


def write_csv(doc: Document, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for block in doc.blocks:
        if isinstance(block, str):
            writer.writerow([block])
        else:
            if block.header:
                writer.writerow(block.header)
            writer.writerows([_csv_value(c) for c in row] for row in block.rows)
    path.write_bytes(buffer.getvalue().encode("utf-8-sig"))


def write_txt(doc: Document, path: Path) -> None:
    lines = []
    for block in doc.blocks:
        if isinstance(block, str):
            lines.append(block)
        else:
            # As Excel's "Unicode text" and most software write a table: tab-separated.
            if block.header:
                lines.append("\t".join(block.header))
            lines += ["\t".join(_text(c) for c in row) for row in block.rows]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def write_docx(doc: Document, path: Path) -> None:
    import docx

    document = docx.Document()
    for block in doc.blocks:
        if isinstance(block, str):
            document.add_paragraph(block)
            continue
        rows = ([block.header] if block.header else []) + block.rows
        table = document.add_table(rows=0, cols=max(len(r) for r in rows))
        for row in rows:
            cells = table.add_row().cells  # (table.cell(r, c) is quadratic in the rows)
            for cell, value in zip(cells, row, strict=False):
                cell.text = _text(value)
    document.save(path)


def write_pdf(doc: Document, path: Path) -> None:
    import html

    import weasyprint

    parts = ["<html><head><style>body { font-family: serif; font-size: 9pt } "
             "tr { break-inside: avoid }</style></head><body>"]
    for block in doc.blocks:
        if isinstance(block, str):
            parts.append(f"<p>{html.escape(block)}</p>")
            continue
        parts.append("<table>")
        if block.header:
            parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                         + "</tr>")
        for row in block.rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(_text(c))}</td>" for c in row)
                         + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    weasyprint.HTML(string="".join(parts)).write_pdf(path)


def write_zip(doc: Document, path: Path) -> None:
    """An archive of the document as xlsx, docx and csv: three times its counts."""
    scratch = path.with_suffix(".parts")
    scratch.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for fmt in ("xlsx", "docx", "csv"):
            member = scratch / f"{doc.name}.{fmt}"
            WRITERS[fmt](doc, member)
            archive.write(member, f"2027/{member.name}")
            member.unlink()
    scratch.rmdir()


WRITERS = {"xlsx": write_xlsx, "csv": write_csv, "txt": write_txt, "docx": write_docx,
           "pdf": write_pdf, "zip": write_zip}


def formats_for(doc: Document) -> tuple[str, ...]:
    """Return the formats a document is rendered in.

    A raw export without its header row is a data file, never printed: no PDF of it (a PDF
    keeps no columns, and with no header line either nothing tells its tax codes, which may
    begin like mobile numbers, from phones).
    """
    if doc.kind == "ke_toan_tho":
        return tuple(fmt for fmt in FORMATS if fmt != "pdf")
    return FORMATS


def truth_in(doc: Document, fmt: str) -> Counter:
    """Return the true counts of a document rendered in a format."""
    if fmt == "zip":
        return Counter({kind: 3 * n for kind, n in doc.truth.items()})
    return Counter(doc.truth)


def render(doc: Document, fmt: str, directory: Path) -> Path:
    """Write a document in a direct format and return its path."""
    path = directory / f"{doc.name}.{fmt}"
    WRITERS[fmt](doc, path)
    return path


# --- measuring ---------------------------------------------------------------------------------


def score(pairs: list[tuple[Counter, dict[str, int]]]) -> dict[str, dict[str, float | int]]:
    """Return precision and recall by kind over (true counts, found counts) pairs.

    The scanner reports counts, not positions: in one file, found beyond the truth are false
    positives, truth beyond what was found are misses.
    """
    out: dict[str, dict[str, float | int]] = {}
    for kind in KINDS:
        tp = fp = fn = 0
        for truth, found in pairs:
            t, f = truth.get(kind, 0), found.get(kind, 0)
            tp += min(t, f)
            fp += max(0, f - t)
            fn += max(0, t - f)
        if tp + fp + fn:
            out[kind] = {
                "true": tp + fn, "found": tp + fp,
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "recall": tp / (tp + fn) if tp + fn else 1.0,
            }
    return out


# --- fixtures for the converted formats ------------------------------------------------------

FIXTURE_SEED = 20270105
FIXTURE_ROWS = 20


def make_fixtures(directory: Path, *, seed: int = FIXTURE_SEED, rows: int = FIXTURE_ROWS) -> None:
    """Write the corpus in xls, ods, doc and odt with LibreOffice, and a manifest of truths.

    Needs ``soffice`` (Debian: libreoffice-calc-nogui, libreoffice-writer-nogui); run once,
    the files are committed (tests/data/pii_corpus/README.md).
    """
    import json
    import shutil
    import subprocess
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        profile = scratch / "profile"
        for doc in make_documents(seed, rows=rows):
            for fmt, source in CONVERTED_FROM.items():
                source_path = render(doc, source, scratch)
                subprocess.run(
                    [shutil.which("soffice") or "soffice", f"-env:UserInstallation={profile.as_uri()}",
                     "--headless", "--convert-to", fmt, "--outdir", str(scratch), str(source_path)],
                    check=True, capture_output=True, timeout=120,
                )
                target = directory / f"{doc.name}.{fmt}"
                shutil.move(scratch / f"{doc.name}.{fmt}", target)
                manifest[target.name] = {"document": doc.kind, "format": fmt,
                                         "truth": dict(sorted(truth_in(doc, fmt).items()))}
    (directory / "manifest.json").write_text(
        json.dumps({"seed": seed, "rows": rows, "files": manifest}, indent=1, sort_keys=True)
        + "\n", encoding="utf-8")


if __name__ == "__main__":
    import sys

    make_fixtures(Path(sys.argv[1]) if len(sys.argv) > 1 else
                  Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_corpus")
