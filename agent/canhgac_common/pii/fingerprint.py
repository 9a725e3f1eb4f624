"""Content fingerprints: recognise the same table or text after a "Save As" changed the bytes.

``content_fingerprint`` hashes (SHA-256) a normalized content stream instead of the bytes:

- Tables (.xlsx/.xlsm, .csv/.tsv): cell values row by row, independent of styles, number
  formats and delimiters, so one table saved as .xlsx and as .csv has the same fingerprint.
  Cells are canonical text: whitespace collapsed and stripped; numbers canonical (integers
  exact, other numbers to Excel's 15 significant digits, ``1.50`` = ``1.5``, ``1E+20`` written
  out, thousands separators ``1,200,000`` / ``1.200.000`` removed); dates ISO 8601 (CSV dates
  read day first, ``dd/mm/yyyy``, unless only month first is possible); a CSV cell with a
  leading zero stays text (Excel writes ID numbers stored as text that way). Trailing empty
  cells and empty rows are dropped; empty sheets are skipped; sheets are separated.
- Text (.txt, .docx, .pdf): lines with whitespace collapsed, empty lines dropped, NFC, no BOM,
  any line ending. Word paragraphs and table rows (cells tab-joined) are lines, so a .docx
  saved as .txt matches; Word headers and footers are layout, not content.
- The stream starts with ``FINGERPRINT_VERSION`` and the family (table or text): change the
  version whenever normalization changes, so old and new fingerprints never collide.
- Known limits: CSV cells that Excel rendered with a display format (percent, currency) do not
  match the stored number; archives and unknown binaries have no content fingerprint (None).

Values never leave this module: only the hex digest does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from canhgac_common.pii.scanners import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    iter_csv_rows,
    iter_docx_records,
    iter_pdf_pages,
    iter_text_chunks,
    iter_xlsx_rows,
    office_container_size,
    sniff_stream,
)

FINGERPRINT_VERSION = "canhgac-content-v1"
_HASH_CHUNK = 1024 * 1024

_PLAIN_NUMBER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_GROUPED_COMMA = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]+)?")
# One dot group is ambiguous (1.200 = 1.2 or 1200); two or more can only be thousands.
_GROUPED_DOT = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:\.[0-9]{3}){2,}(?:,[0-9]+)?")
_SLASH_DATE = re.compile(
    r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?"
)
_MAX_INT_DIGITS = 300
_NUMBER_START = frozenset("0123456789+-")
_BOOLEANS = ("true", "false")


class _Budget:
    """Time and size budget of one fingerprint; a partial fingerprint would be a false identity."""

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        self.deadline = time.monotonic() + max_seconds
        self.chars_left = max_bytes

    def spend(self, chars: int) -> None:
        """Account for content hashed; raise TimeoutError or OverflowError when over budget."""
        self.chars_left -= chars
        if self.chars_left < 0:
            raise OverflowError("content over the size budget")
        if time.monotonic() >= self.deadline:
            raise TimeoutError("content over the time budget")


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_fingerprint(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> str | None:
    """Return the SHA-256 hex of a file's normalized content, or None when it has none.

    None for archives, unknown binaries, unreadable files and content over the budgets; never
    raises for a bad file (callers fall back to ``file_sha256``).
    """
    budget = _Budget(max_bytes, max_seconds)
    try:
        with open(path, "rb") as stream:
            kind, _ = sniff_stream(stream, str(path))
            if kind == "csv":
                rows = ((0, row) for row in iter_csv_rows(stream, max_bytes))
                return _hash_table(rows, budget)
            if kind == "xlsx":
                if office_container_size(stream) > DEFAULT_MAX_ARCHIVE_BYTES:
                    return None
                return _hash_table(iter_xlsx_rows(stream, values_only=True), budget)
            if kind == "text":
                return _hash_text(iter_text_chunks(stream, max_bytes), budget)
            if kind == "docx":
                if office_container_size(stream) > DEFAULT_MAX_ARCHIVE_BYTES:
                    return None
                return _hash_text(iter_docx_records(stream, with_headers=False), budget)
            if kind == "pdf":
                return _hash_text(iter_pdf_pages(stream), budget)
    except Exception:  # unreadable, hostile or over budget: no content identity
        return None
    return None


def _hash_table(rows: Iterable[tuple[int, Any]], budget: _Budget) -> str:
    """Hash canonical rows; a separator marks each new non-empty sheet."""
    digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\ntable\n".encode())
    last_sheet: int | None = None
    for sheet, row in rows:
        cells = [canonical_cell(value) for value in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        if last_sheet is not None and sheet != last_sheet:
            digest.update(b"\x1d\n")
        last_sheet = sheet
        line = json.dumps(cells, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"
        budget.spend(len(line))
        digest.update(line)
    return digest.hexdigest()


def _hash_text(blocks: Iterable[str], budget: _Budget) -> str:
    """Hash normalized non-empty lines of text, each followed by a newline."""
    digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\ntext\n".encode())
    for block in blocks:
        lines = list(canonical_lines((block,)))
        if lines:
            data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
            budget.spend(len(data))
            digest.update(data)
    return digest.hexdigest()


def canonical_lines(blocks: Iterable[str]) -> Iterator[str]:
    """Yield lines of text with whitespace collapsed, NFC, no BOM, empty lines dropped."""
    for block in blocks:
        text = block.replace("\ufeff", "")
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        for line in text.splitlines():
            collapsed = " ".join(line.split())
            if collapsed:
                yield collapsed


def canonical_cell(value: Any) -> str:
    """Return a cell value as canonical text, the same for an .xlsx value and its CSV text."""
    if type(value) is str:  # the common case first: CSV cells are all strings
        return _canonical_text(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Excel shows 15 significant digits of the binary value; round the float itself, not
        # its shortest repr, or some values would be rounded twice.
        return _canonical_number(format(value, ".15g"))
    if isinstance(value, dt.datetime):
        if value.microsecond:
            # Excel keeps times as fractions of a day: 10:30 may come back as 10:29:59.999999.
            value = (value + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return _canonical_text(str(value))


def _canonical_text(text: str) -> str:
    """Canonicalize cell text: whitespace, numbers written as text, day-first dates."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split())
    first = text[:1]
    if not first or first not in _NUMBER_START or len(text) > 64:
        return text.upper() if len(text) in (4, 5) and text.lower() in _BOOLEANS else text
    if text.isdigit() and text.isascii():  # fast path for the commonest numeric cell
        return text if first == "0" else str(int(text))
    if _PLAIN_NUMBER.fullmatch(text):
        return _canonical_number(text)
    if _GROUPED_COMMA.fullmatch(text):
        return _canonical_number(text.replace(",", ""))
    if _GROUPED_DOT.fullmatch(text):
        return _canonical_number(text.replace(".", "").replace(",", "."))
    date = _SLASH_DATE.fullmatch(text)
    if date:
        return _canonical_slash_date(date) or text
    return text


def _canonical_number(text: str) -> str:
    """Canonicalize a plain number: integers exact, anything else via Decimal."""
    if text.lstrip("+-").isdigit():
        if len(text) > _MAX_INT_DIGITS:
            return text
        return str(int(text))
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return _canonical_decimal(number)


def _canonical_decimal(number: Decimal) -> str:
    """Round to Excel's 15 significant digits and write without exponent or trailing zeros."""
    if not number.is_finite():
        return str(number)
    rounded = Decimal(format(number, ".15g"))
    if abs(rounded.adjusted()) > _MAX_INT_DIGITS:
        return str(rounded.normalize())
    if rounded == rounded.to_integral_value():
        return str(int(rounded))
    return format(rounded.normalize(), "f")


def _canonical_slash_date(match: re.Match[str]) -> str | None:
    """Read dd/mm/yyyy (or mm/dd/yyyy when only that is valid) as ISO 8601."""
    first, second, year = (int(match.group(i)) for i in (1, 2, 3))
    day, month = (second, first) if first <= 12 < second else (first, second)
    hour, minute, second_of_minute = (int(match.group(i) or 0) for i in (4, 5, 6))
    try:
        value = dt.datetime(year, month, day, hour, minute, second_of_minute)
    except ValueError:
        return None
    return canonical_cell(value)
