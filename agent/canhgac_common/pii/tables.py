"""Judge table columns: which hold citizens' identifiers and which never do.

Spreadsheets (xlsx, xls, ods), CSV and Word/ODF tables are read row by row; before a table's
rows are scanned, its first ``SAMPLE_ROWS`` rows decide what each column is:

- Header rows are the rows of two or more cells above the first data row (a row with a number
  of 9+ digits), among the first ``HEADER_ROWS``. A header naming an identifier (``CCCD``, ``căn cước``, ``định
  danh``, ``CMND``, ``BHXH``, ``điện thoại``, ``SĐT``, …) makes the column an identifier column
  of that kind; a header naming anything else that is written with digits (money, invoice,
  serial, bank account, tax, file/case/voucher numbers, any ``mã …`` code, dates, ``STT``) makes
  it a column that never counts (a long cell there, a title or note, is still read as text). Headers match with or without diacritics.
- A column with no such header is an identifier column when at least ``VALUE_SHARE`` of its
  bare numbers (at least ``MIN_VALUES`` of them) are valid identifiers of one kind as they
  stand; numbers that would be valid only with a zero put back (as invoice numbers and amounts
  would) are left out of that share, never counted for it; a column
  whose cells are mostly bare numbers that are not is a column of codes: its bare numbers never
  count (its text cells are still read).
- Inside an identifier column a number that lost its leading zeros when typed as a number is
  given them back (an ID of province 0xx loses one zero, of 00x two; a phone loses one); nowhere
  else. A value there counts when it is a valid identifier of the column's kind: an ID whose
  structural score, raised by the header, reaches ``MIN_SCORE``, a current mobile number, or
  any 9-10-digit number in a BHXH column. A cell that is not a bare number is read as text
  after the column's label.
- Other columns are read as text (``detect_detailed``), with its context words.

``judge_columns`` returns a ``Columns`` whose ``apply`` counts a row's identifier cells and
rewrites the rest so that the detector, reading the tab-joined row, counts exactly what the
column rules say.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from canhgac_common.pii.detectors import (
    MIN_SCORE,
    PROVINCE_CODES,
    fold,
    is_mobile,
    structure_score,
    this_year,
)

HEADER_ROWS = 20
SAMPLE_ROWS = 200
VALUE_SHARE = 0.8
MIN_VALUES = 3
_MAX_HEADER_CHARS = 64
# How the detector is told what a rewritten identifier cell holds.
_LABEL = {"cccd": "CCCD ", "phone": "ĐT ", "bhxh": "BHXH "}
_RAISE = 1.5  # as the detector raises a number after its own label


def _words(*words: str) -> re.Pattern[str]:
    body = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len)[::-1])
    return re.compile(rf"(?<![a-z0-9/])(?:{body})(?![a-z0-9/])")


# Folded (see ``detectors.fold``): lower case, no diacritics, "đ" as "d".
_HEADER_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cccd", _words("cccd", "can cuoc", "cmnd", "cmt", "chung minh", "dinh danh", "ddcn",
                    "vneid", "so id", "citizen id", "id card", "id number")),
    ("bhxh", _words("bhxh", "bao hiem xa hoi", "so so bhxh")),
    ("phone", _words("dien thoai", "dt", "sdt", "dtdd", "di dong", "phone", "mobile", "tel",
                     "zalo")),
    ("skip", _words(
        "tai khoan", "stk", "tk", "ngan hang", "account", "acct", "a/c", "ma so thue", "mst",
        "tax", "ky hieu", "seri", "so seri", "serial", "s/n", "imei", "hoa don", "hd", "invoice",
        "so tien",
        "tien", "don gia", "so luong", "sl", "tong", "cong", "amount", "total", "price", "gia",
        "ma", "code", "ho so", "chung tu", "ct", "vu viec", "quyet dinh", "van ban", "so hieu",
        "ngay", "thang", "nam", "date", "stt", "tt", "qr", "giao dich", "thanh toan",
        "bien nhan", "so lo", "barcode", "no.",
    )),
)  # fmt: skip
_GROUPING = re.compile(r"[ .\-]")


def header_kind(cell: str) -> str | None:
    """Return what a header cell names: "cccd", "phone", "bhxh", "skip" or None."""
    if not cell or len(cell) >= _MAX_HEADER_CHARS:
        return None
    folded = fold(cell)
    for kind, pattern in _HEADER_KINDS:
        if pattern.search(folded):
            return kind
    return None


_LONG_NUMBER = re.compile(r"(?<![0-9])[0-9]{9,}(?![0-9])")
_MAX_FLAT_HEADER_CHARS = 160
_WRAPPED_CELL_CHARS = 40


def flat_table_rows(lines: list[str]) -> Iterator[str]:
    """Yield the lines of flat text (a PDF page) less the rows of tables that hold no identifier.

    A PDF keeps no columns, but it keeps a table's header line: a short line without digits
    (with the line before when that is one too: a wrapped header) that names columns
    (two ``header_kind`` words at least) and is followed by a line with a long number.
    When that header names no identifier column (an invoice list, a list of QR codes, bank
    accounts, tax codes), the rows under it (each with a long number or starting with a row
    number, and short lines of wrapped cell words between them) are left out; every other line
    is kept.
    """
    skipping = False
    for index, line in enumerate(lines):
        if skipping:
            if _LONG_NUMBER.search(line) or line[:1].isdigit():
                continue
            if (
                len(line) <= _WRAPPED_CELL_CHARS
                and index + 1 < len(lines)
                and _LONG_NUMBER.search(lines[index + 1])
            ):
                continue  # a cell's words wrapped onto a line of their own
            skipping = False
        yield line
        if (
            len(line) > _MAX_FLAT_HEADER_CHARS
            or any(c.isdigit() for c in line)
            or index + 1 >= len(lines)
            or not _LONG_NUMBER.search(lines[index + 1])
        ):
            continue
        header = line
        before = lines[index - 1] if index else ""
        if len(before) <= _MAX_FLAT_HEADER_CHARS and not any(c.isdigit() for c in before):
            header = before + " " + line  # a header wrapped on two lines
        folded = fold(header)
        named = {kind for kind, pattern in _HEADER_KINDS if pattern.search(folded)}
        # Two header words at least: a wrapped name ("Thắng" folds to "tháng") is no header.
        words = sum(len(m.group().split()) for m in _HEADER_KINDS[-1][1].finditer(folded))
        skipping = named == {"skip"} and words >= 2


def bare_digits(cell: str) -> str | None:
    """Return the digits of a cell that is one number of 9-13 digits (spaces, dots, dashes
    between groups allowed; Excel's text mark "'" dropped), else None."""
    text = cell if cell.isdigit() else cell.strip().lstrip("'")
    if not text.isdigit():
        if not text[:1].isdigit():
            return None
        text = _GROUPING.sub("", text)
        if not text.isdigit():
            return None
    return text if 9 <= len(text) <= 13 and text.isascii() else None


def id_value(
    kind: str, digits: str, *, is_labelled: bool, year: int | None = None
) -> str | None:
    """Return the identifier ``digits`` hold in a column of ``kind``, zeros restored, or None.

    ``is_labelled``: the header names the kind (its score is raised as after a label);
    ``year``: the reference year of birth dates (default: this year).
    """
    if kind == "cccd":
        if len(digits) == 11 and "0" + digits[:2] in PROVINCE_CODES:
            digits = "0" + digits
        elif len(digits) == 10 and "00" + digits[0] in PROVINCE_CODES:
            digits = "00" + digits
        if len(digits) != 12:
            return None
        score = structure_score(digits, year or this_year()) * (_RAISE if is_labelled else 1.0)
        return digits if score >= MIN_SCORE else None
    if kind == "phone":
        if len(digits) == 10 and digits[0] == "0":
            national = digits[1:]
        elif len(digits) == 9:
            national = digits
        elif len(digits) == 11 and digits.startswith("84"):
            national = digits[2:]
        else:
            return None
        return "0" + national if is_mobile(national) else None
    if kind == "bhxh" and len(digits) in (9, 10):
        return digits.zfill(10)
    return None


def _value_kind(digits: str) -> str | None:
    """Return the kind a bare number of an unlabelled column is valid as *as it stands*.

    "lost" for a number that would be valid only with a zero put back: that alone never makes
    a column of identifiers (invoice numbers and amounts look like it), but such numbers do
    not speak against the column either.
    """
    if len(digits) == 12 and id_value("cccd", digits, is_labelled=False):
        return "cccd"
    if len(digits) == 10 and digits[0] == "0" and id_value("phone", digits, is_labelled=False):
        return "phone"
    if (len(digits) == 11 and id_value("cccd", digits, is_labelled=False)) or (
        len(digits) == 9 and id_value("phone", digits, is_labelled=False)
    ):
        return "lost"
    return None


#: Identifiers a row's identifier columns hold: ID numbers, phones, BHXH numbers, the sum and
#: the minimum of the ID numbers' structural scores.
Hits = tuple[int, int, int, float, float | None]


@dataclass
class Columns:
    """What each column of a table is: identifier kind, "skip" or "codes"; others are text."""

    kinds: dict[int, str] = field(default_factory=dict)
    labelled: set[int] = field(default_factory=set)
    year: int = field(default_factory=this_year)
    _by_kind: dict[str, list[int]] | None = None  # columns by kind, made on first use

    def apply(self, row: list[str]) -> tuple[list[str], Hits | None]:
        """Rewrite a row in place by the column rules; return it and the identifiers counted.

        Identifier cells that count are counted here and blanked, so the detector does not
        read them again (speed); cells of skipped columns are blanked; identifier cells that
        are not bare numbers get their column's label, for the detector to read.
        """
        if not self.kinds:
            return row, None
        if self._by_kind is None:
            self._by_kind = {
                kind: [c for c, k in sorted(self.kinds.items()) if k == kind]
                for kind in ("skip", "codes", "cccd", "phone", "bhxh")
            }
        by_kind = self._by_kind
        size = len(row)
        for column in by_kind["skip"]:
            # A long cell there is prose (a title or note spanning the row): read as text.
            if column < size and len(row[column]) < _MAX_HEADER_CHARS:
                row[column] = ""
        for column in by_kind["codes"]:
            if column < size and row[column] and bare_digits(row[column]) is not None:
                row[column] = ""
        year = self.year
        n_cccd = n_phone = n_bhxh = 0
        conf_sum = 0.0
        conf_min = 1.0
        for column in by_kind["cccd"]:
            if column >= size or not (cell := row[column]):
                continue
            # Fast path: an ID already written in full (most cells of a good list).
            if len(cell) == 12 and cell.isdigit() and cell.isascii():
                score = structure_score(cell, year)
                if score >= MIN_SCORE:
                    n_cccd += 1
                    conf_sum += score
                    conf_min = min(conf_min, score)
                    row[column] = ""
                    continue
            value = self._value("cccd", column, cell, row)
            if value is not None:
                score = structure_score(value, year)
                n_cccd += 1
                conf_sum += score
                conf_min = min(conf_min, score)
        for column in by_kind["phone"]:
            if column >= size or not (cell := row[column]):
                continue
            if len(cell) == 10 and cell[0] == "0" and cell.isdigit() and is_mobile(cell[1:]):
                n_phone += 1
                row[column] = ""
            elif self._value("phone", column, cell, row) is not None:
                n_phone += 1
        for column in by_kind["bhxh"]:
            if column < size and row[column] and self._value("bhxh", column, row[column], row):
                n_bhxh += 1
        if n_cccd or n_phone or n_bhxh:
            return row, (n_cccd, n_phone, n_bhxh, conf_sum, conf_min if n_cccd else None)
        return row, None

    def _value(self, kind: str, column: int, cell: str, row: list[str]) -> str | None:
        """Return the identifier an identifier cell holds (and blank it), or label its text."""
        digits = bare_digits(cell)
        if digits is None:
            row[column] = _LABEL[kind] + cell.replace("\t", " ")
            return None
        row[column] = ""
        return id_value(kind, digits, is_labelled=column in self.labelled, year=self.year)
        size = len(row)
        year = self.year
        n_cccd = n_phone = n_bhxh = 0
        conf_sum = 0.0
        conf_min = 1.0
        for column, kind in self.kinds.items():
            if column >= size:
                continue
            cell = row[column]
            if not cell:
                continue
            # Fast paths: an identifier already written in full (most cells of a good list).
            if kind == "cccd" and len(cell) == 12 and cell.isdigit() and cell.isascii():
                score = structure_score(cell, year)
                if score >= MIN_SCORE:
                    n_cccd += 1
                    conf_sum += score
                    conf_min = min(conf_min, score)
                    row[column] = ""
                    continue
            elif (
                kind == "phone"
                and len(cell) == 10
                and cell[0] == "0"
                and cell.isdigit()
                and is_mobile(cell[1:])
            ):
                n_phone += 1
                row[column] = ""
                continue
            if kind == "skip":
                # A long cell there is prose (a title or note spanning the row): read as text.
                if len(cell) < _MAX_HEADER_CHARS:
                    row[column] = ""
                continue
            digits = bare_digits(cell)
            if kind == "codes":
                if digits is not None:
                    row[column] = ""
                continue
            if digits is None:
                row[column] = _LABEL[kind] + cell.replace("\t", " ")
                continue
            value = id_value(kind, digits, is_labelled=column in self.labelled, year=year)
            row[column] = ""
            if value is None:
                continue
            if kind == "cccd":
                score = structure_score(value, year)
                n_cccd += 1
                conf_sum += score
                conf_min = min(conf_min, score)
            elif kind == "phone":
                n_phone += 1
            else:
                n_bhxh += 1
        if n_cccd or n_phone or n_bhxh:
            return row, (n_cccd, n_phone, n_bhxh, conf_sum, conf_min if n_cccd else None)
        return row, None


def judge_columns(sample: list[list[str]]) -> Columns:
    """Decide from a table's first rows which columns hold identifiers (module docstring)."""
    columns = Columns()
    data_start = len(sample)
    for index, row in enumerate(sample[:HEADER_ROWS]):
        if any(bare_digits(cell) for cell in row if cell):
            data_start = index
            break
        if sum(1 for cell in row if cell) < 2:
            continue  # a title or a paragraph, not a header row
        for column, cell in enumerate(row):
            kind = header_kind(cell)
            if kind is not None:
                columns.kinds[column] = kind
                if kind != "skip":
                    columns.labelled.add(column)
                else:
                    columns.labelled.discard(column)
    if data_start == len(sample) and len(sample) > HEADER_ROWS:
        data_start = HEADER_ROWS
    width = max((len(row) for row in sample), default=0)
    for column in range(width):
        if column in columns.kinds:
            continue
        filled = numbers = 0
        by_kind: dict[str, int] = {}
        for row in sample[data_start:]:
            cell = row[column] if column < len(row) else ""
            if not cell:
                continue
            filled += 1
            digits = bare_digits(cell)
            if digits is None:
                continue
            numbers += 1
            kind = _value_kind(digits)
            if kind is not None:
                by_kind[kind] = by_kind.get(kind, 0) + 1
        if numbers < MIN_VALUES:
            continue
        lost = by_kind.pop("lost", 0)
        kind, valid = max(by_kind.items(), key=lambda item: item[1], default=(None, 0))
        if kind is not None and valid >= MIN_VALUES and valid >= VALUE_SHARE * (numbers - lost):
            columns.kinds[column] = kind
        elif numbers * 2 >= filled:
            columns.kinds[column] = "codes"
    return columns


def table_records(rows: Iterable[list[str]]) -> Iterator[str | tuple[str, Hits]]:
    """Yield a table's rows as tab-joined records, rewritten by what its columns are.

    A row whose identifier columns hold identifiers comes as (record, hits): the record
    holds the rest of the row, for the detector, and the row is one record with hits.
    """
    iterator = iter(rows)
    sample: list[list[str]] = []
    for row in iterator:
        sample.append(row)
        if len(sample) >= SAMPLE_ROWS:
            break
    apply = judge_columns(sample).apply
    # Each record starts with a tab: no context word of the row before reaches its first cell.
    for row in itertools.chain(sample, iterator):
        cells, hits = apply(row)
        record = one_line("\t" + "\t".join(cells))
        yield record if hits is None else (record, hits)


def one_line(text: str) -> str:
    """Return the text on one line: keep a record on one line so that line counts are record counts."""
    if "\n" in text or "\r" in text:
        return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text
