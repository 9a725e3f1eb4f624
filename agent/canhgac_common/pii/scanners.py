"""Scan files for citizens' identifiers: counts by kind and records affected, never the values.

Formats: text (.txt and anything that decodes), CSV/TSV, Excel (.xlsx/.xlsm), Word (.docx),
PDF and ZIP archives (members scanned with the same limits, nested at most two deep).
``scan_file`` never raises on a bad file: the result carries an error string made of fixed
words and an exception *class* name, so no file content can leak into logs through it.

Decisions worth knowing:

- Text encodings: BOM first (UTF-8, UTF-16, UTF-32), then UTF-16 without BOM by its NUL
  pattern, then strict UTF-8, then the legacy Vietnamese Windows code page cp1258, then
  latin-1. TCVN3/VNI texts decode as latin-1: digits stay digits, so numbers are still found.
- Lost leading zeros: Excel stores an ID typed as a number as 20185123456 (11 digits) and a
  phone as 912345678 (9 digits). A whole cell holding such a number (an integer cell in
  General/"0" format in .xlsx; a bare cell in CSV, which is what Excel's "Save As CSV" writes)
  is scanned with the zero restored when: 11 digits whose first two form a known province
  code (0xx), or 9 digits starting 3/5/7/8/9; and the number does not end in 0000 (round
  amounts of money do, IDs and phones almost never).
- Table columns whose header names a bank account, tax code or serial number are not scanned.
  In a column whose header names the ID number (CCCD, căn cước, định danh, CMND) a 10- or
  11-digit number is read zero-padded to 12 (IDs of provinces 001–008 lose two zeros); in a
  BHXH column a 9- or 10-digit number is a BHXH number whatever its prefix.
- ``record_count`` is the number of records (text lines, table rows, Word paragraphs and table
  rows, PDF text lines) holding at least one identifier; ``rows_scanned`` counts all records.
- Limits: ``max_bytes`` caps the bytes read from a text file and the characters of text
  extracted from any one file or member; ``max_seconds`` is a wall-clock budget for the whole
  scan; archives share ``max_archive_bytes`` (declared uncompressed size of everything opened,
  Office containers included) and ``max_archive_members``. A member compressed more than
  ``MAX_COMPRESSION_RATIO`` to one (and over 1 MiB) is skipped as a likely zip bomb. Hitting
  any limit sets ``is_truncated``; counts then cover what was scanned.
- Not scanned: legacy .xls/.doc (OLE2), Word text boxes, encrypted archive members and PDFs
  with a non-empty password. A single PDF page whose parsing hangs is not interruptible.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from canhgac_common.pii.detectors import (
    KINDS,
    NON_PII_LABEL,
    PROVINCE_CODES,
    PiiReport,
    detect_detailed,
)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 30.0
DEFAULT_MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ARCHIVE_MEMBERS = 2000
MAX_ARCHIVE_DEPTH = 2
MAX_COMPRESSION_RATIO = 200
_RATIO_CHECK_FLOOR = 1024 * 1024
_READ_CHUNK = 1024 * 1024
_DETECT_BLOCK_CHARS = 256 * 1024
_SAMPLE_BYTES = 64 * 1024
_HEADER_ROWS = 20

_EXTENSION_KIND = {
    ".txt": "text", ".text": "text", ".log": "text", ".md": "text",
    ".csv": "csv", ".tsv": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx", ".xltx": "xlsx", ".xltm": "xlsx",
    ".docx": "docx", ".docm": "docx", ".dotx": "docx", ".dotm": "docx",
    ".pdf": "pdf",
    ".zip": "zip",
}  # fmt: skip
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# A whole cell holding a number that lost its leading zero (see module docstring).
_LOST_ZERO_CELL = re.compile(r"[0-9](?<![^\t\n][0-9])(?:[0-9]{10}|[0-9]{8})(?![^\t\n])")
# A header that names an identifier keeps its column even if it also says "số tài khoản".
_ID_HEADER = re.compile(
    r"cccd|căn cước|cmnd|chứng minh|định danh|vneid|điện thoại|sđt|bhxh|bảo hiểm", re.IGNORECASE
)
_CCCD_HEADER = re.compile(r"cccd|căn cước|cmnd|chứng minh|định danh", re.IGNORECASE)
_BHXH_HEADER = re.compile(r"bhxh|bảo hiểm xã hội", re.IGNORECASE)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


class _LimitReached(Exception):
    """Raised inside a scan when a budget is spent."""


class _TimeUp(_LimitReached):
    """The wall-clock budget of the whole scan is spent: stop everything."""


class _SizeCapped(_LimitReached):
    """One file or member is over its size budget: stop reading it, go on with the rest."""


class _UnsupportedFormat(Exception):
    """Raised for formats the scanner does not read (legacy Office, unknown binary)."""


@dataclass(frozen=True)
class ScanResult:
    """What a file holds, as counts: identifiers by kind and the records that carry them."""

    file_kind: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    record_count: int = 0
    rows_scanned: int = 0
    is_truncated: bool = False
    error: str | None = None
    encoding: str | None = None
    cccd_confidence_mean: float | None = None
    cccd_confidence_min: float | None = None
    members_scanned: int = 0
    members_skipped: int = 0

    @property
    def total(self) -> int:
        """Return the number of identifiers of all kinds."""
        return sum(self.counts.values())

    @property
    def has_pii(self) -> bool:
        """Return True when at least one identifier was found."""
        return self.total > 0

    def pii_counts(self) -> dict[str, int]:
        """Return the non-zero counts, the shape of an event's ``pii`` field."""
        return {kind: n for kind, n in self.counts.items() if n}


@dataclass
class _Scan:
    """Budgets and running totals shared by a file and all its archive members."""

    deadline: float
    max_bytes: int
    archive_bytes_left: int
    members_left: int
    report: PiiReport = field(default_factory=PiiReport)
    rows_scanned: int = 0
    is_truncated: bool = False
    encoding: str | None = None
    members_scanned: int = 0
    members_skipped: int = 0

    def check_time(self) -> None:
        """Stop the scan when the wall-clock budget is spent."""
        if time.monotonic() >= self.deadline:
            raise _TimeUp

    def feed(self, blocks: Iterable[str], transform: Callable[[str], str] | None = None) -> None:
        """Detect identifiers in newline-separated records, within the per-file size budget.

        ``transform`` rewrites each batch of records before detection (lost leading zeros).
        """
        chars_left = self.max_bytes
        pending: list[str] = []
        pending_chars = 0
        try:
            for i, block in enumerate(blocks):
                if not i & 255:
                    self.check_time()
                if not block:
                    continue
                if len(block) > chars_left:
                    # Cut on a line end so that no number is cut into a shorter one.
                    cut = block.rfind("\n", 0, chars_left)
                    if cut > 0:
                        pending.append(block[:cut])
                    raise _SizeCapped
                chars_left -= len(block)
                pending.append(block)
                pending_chars += len(block)
                if pending_chars >= _DETECT_BLOCK_CHARS:
                    self._detect(pending, transform)
                    pending, pending_chars = [], 0
        except _SizeCapped:
            self.is_truncated = True
        finally:
            if pending:
                self._detect(pending, transform)

    def _detect(self, blocks: list[str], transform: Callable[[str], str] | None) -> None:
        self.check_time()
        text = "\n".join(blocks)
        if transform is not None:
            text = transform(text)
        self.report = self.report.merge(detect_detailed(text))
        self.rows_scanned += text.count("\n") + 1


# --- format detection and decoding ------------------------------------------------------------


def sniff_kind(name: str, head: bytes) -> str:
    """Return the kind of a file from its name, or from its first bytes when the name is unknown.

    Kinds: text, csv, xlsx, docx, pdf, zip, ole2 (legacy Office), binary.
    """
    kind = _EXTENSION_KIND.get(Path(name).suffix.lower())
    if kind:
        return kind
    if head.startswith(_ZIP_MAGICS):
        return "zip"  # refined to xlsx/docx by the member list when opened
    if b"%PDF" in head[:1024]:
        return "pdf"
    if head.startswith(_OLE2_MAGIC):
        return "ole2"
    return "text" if _looks_like_text(head) else "binary"


def _looks_like_text(head: bytes) -> bool:
    """Tell text from binary: NUL bytes only in UTF-16/32, few control characters."""
    encoding = detect_encoding(head)
    if encoding.startswith(("utf-16", "utf-32")):
        return True
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls <= len(head) // 100


def detect_encoding(sample: bytes) -> str:
    """Return the codec for a text sample: BOM, UTF-16 by NULs, UTF-8, cp1258, else latin-1."""
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    pairs = len(sample) // 2
    if pairs >= 2:
        # ASCII-heavy UTF-16 without BOM has a NUL in every other byte.
        even_nuls = sample[0 : 2 * pairs : 2].count(0)
        odd_nuls = sample[1 : 2 * pairs : 2].count(0)
        if odd_nuls > pairs * 0.3 and even_nuls < pairs * 0.05:
            return "utf-16-le"
        if even_nuls > pairs * 0.3 and odd_nuls < pairs * 0.05:
            return "utf-16-be"
    for encoding in ("utf-8", "cp1258"):
        try:
            # Incremental and not final: the sample may end inside a multi-byte character.
            codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def iter_text_chunks(stream: IO[bytes], byte_limit: int) -> Iterator[str]:
    """Decode a byte stream chunk by chunk, each chunk ending on a line boundary.

    Bad bytes become U+FFFD; text comes out NFC (cp1258 writes tone marks as combining
    characters); raises ``_SizeCapped`` after yielding the text within ``byte_limit`` when the
    stream holds more.
    """
    for chunk in _decode_chunks(stream, byte_limit):
        if not unicodedata.is_normalized("NFC", chunk):
            chunk = unicodedata.normalize("NFC", chunk)
        yield chunk


def _decode_chunks(stream: IO[bytes], byte_limit: int) -> Iterator[str]:
    """Decode up to ``byte_limit`` bytes in chunks cut at line ends (see ``iter_text_chunks``)."""
    first = stream.read(min(_SAMPLE_BYTES, byte_limit))
    decoder = codecs.getincrementaldecoder(detect_encoding(first))(errors="replace")
    read = len(first)
    data = first
    tail = ""
    while data:
        text = tail + decoder.decode(data, final=False)
        cut = text.rfind("\n")
        if cut >= 0:
            yield text[:cut]
            tail = text[cut + 1 :]
        else:
            tail = text
        if read >= byte_limit:
            if stream.read(1):
                # The last line is cut: keep it only up to its last blank, so that the cut
                # cannot turn the start of a longer number into an identifier.
                yield tail[: max(tail.rfind(" "), tail.rfind("\t"), 0)]
                raise _SizeCapped
            break
        data = stream.read(min(_READ_CHUNK, byte_limit - read))
        read += len(data)
    tail += decoder.decode(b"", final=True)
    if tail:
        yield tail


def _chunk_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Split decoded chunks into lines ending with a newline, as ``csv.reader`` wants them."""
    for chunk in chunks:
        for line in chunk.split("\n"):
            yield line + "\n"


def iter_csv_rows(stream: IO[bytes], byte_limit: int) -> Iterator[list[str]]:
    """Parse a CSV/TSV byte stream into rows of cell strings (dialect sniffed, Excel default)."""
    chunks = iter_text_chunks(stream, byte_limit)
    first = next(chunks, "")
    delimiter = _guess_delimiter(first[:16384])

    def all_chunks() -> Iterator[str]:
        yield first
        yield from chunks

    yield from csv.reader(_chunk_lines(all_chunks()), csv.excel, delimiter=delimiter)


def _guess_delimiter(sample: str) -> str:
    """Pick the delimiter found the same number of times on most of the first lines.

    Cheaper and steadier than ``csv.Sniffer`` (which costs ~0.1 s on 32 KB and may pick a
    quote character from Vietnamese text); quoting is Excel's.
    """
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    best, best_score = ",", 0
    for delimiter in (",", ";", "\t", "|"):
        counts = [line.count(delimiter) for line in lines]
        usual = max(set(counts), key=counts.count) if counts else 0
        score = counts.count(usual) if usual else 0
        if score > best_score:
            best, best_score = delimiter, score
    return best


# --- cell formatting -------------------------------------------------------------------------


def format_number(value: float) -> str:
    """Format a number as a spreadsheet shows it plainly: 20185123456, not 20185123456.0."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _restore_zero(digits: str) -> str | None:
    """Return the number with its lost leading zero restored, or None (module docstring)."""
    if digits.endswith("0000"):
        return None
    if len(digits) == 11 and "0" + digits[:2] in PROVINCE_CODES:
        return "0" + digits
    if len(digits) == 9 and digits[0] in "35789":
        return "0" + digits
    return None


def _restore_zero_match(m: re.Match[str]) -> str:
    return _restore_zero(m.group()) or m.group()


def _xlsx_scan_text(cell: Any) -> str:
    """Render one worksheet cell for scanning, restoring a lost leading zero where it fits."""
    value = cell.value
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return format_number(value)
    if isinstance(value, int | float):
        text = format_number(value)
        if text.isdigit() and cell.number_format in ("General", "0", "@"):
            return _restore_zero(text) or text
        return text
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


# --- readers: each yields newline-free records (or multi-line text blocks for plain text) --------


def iter_xlsx_rows(
    stream: IO[bytes], *, values_only: bool
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Yield (sheet index, row) from every worksheet, read-only and with cached formula values."""
    import openpyxl  # deferred: heavy, and only needed for spreadsheets

    workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    try:
        for index, sheet in enumerate(workbook.worksheets):
            for row in sheet.iter_rows(values_only=values_only):
                yield index, row
    finally:
        workbook.close()


def iter_docx_records(stream: IO[bytes], *, with_headers: bool) -> Iterator[str]:
    """Yield a Word document's paragraphs and table rows (cells tab-joined) in body order."""
    import docx  # deferred: heavy, and only needed for Word files
    from docx.table import Table

    def records(container: Any) -> Iterator[str]:
        for block in container.iter_inner_content():
            if isinstance(block, Table):
                yield from table_records(block)
            else:
                yield block.text

    def table_records(table: Table) -> Iterator[str]:
        for row in table.rows:
            seen: list[Any] = []
            cells = []
            nested = []
            for cell in row.cells:
                # A merged cell appears once per grid column it spans: read it once.
                if any(cell._tc is element for element in seen):
                    continue
                seen.append(cell._tc)
                cells.append(cell.text)
                nested.extend(cell.tables)
            yield "\t".join(cells)
            for inner in nested:
                yield from table_records(inner)

    document = docx.Document(stream)
    yield from records(document)
    if with_headers:
        for section in document.sections:
            for part in (section.header, section.footer):
                if not part.is_linked_to_previous:
                    yield from records(part)


def iter_pdf_pages(stream: IO[bytes]) -> Iterator[str]:
    """Yield the extracted text of each page of a PDF (empty password tried when encrypted)."""
    import pypdf  # deferred: only needed for PDFs

    reader = pypdf.PdfReader(stream, strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise PermissionError("encrypted")
    for page in reader.pages:
        yield page.extract_text() or ""


def _one_line(text: str) -> str:
    """Keep a record on one line so that line counts are record counts."""
    if "\n" in text or "\r" in text:
        return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text


def _is_non_pii_header(cell: str) -> bool:
    """Tell a column header naming a bank account, tax code or serial (not an identifier)."""
    return bool(NON_PII_LABEL.search(cell)) and not _ID_HEADER.search(cell)


@dataclass
class _Columns:
    """What the header rows say about columns: skipped, ID numbers, BHXH numbers."""

    skipped: set[int] = field(default_factory=set)
    cccd: set[int] = field(default_factory=set)
    bhxh: set[int] = field(default_factory=set)

    def learn(self, row: list[str]) -> None:
        """Classify the columns named by the short cells of a (possible) header row."""
        for column, cell in enumerate(row):
            if not cell or len(cell) >= 64:
                continue
            header = unicodedata.normalize("NFC", cell)
            if _is_non_pii_header(header):
                self.skipped.add(column)
            elif _CCCD_HEADER.search(header):
                self.cccd.add(column)
            elif _BHXH_HEADER.search(header):
                self.bhxh.add(column)

    def apply(self, row: list[str]) -> list[str]:
        """Blank skipped columns; restore zeros an ID column lost; label BHXH cells."""
        row = list(row)
        size = len(row)
        for column in self.skipped:
            if column < size:
                row[column] = ""
        for column in self.cccd:
            # IDs of provinces 001-008 lose two zeros as numbers: 001185123456 -> 1185123456.
            cell = row[column].strip() if column < size else ""
            if cell.isdigit() and len(cell) in (10, 11):
                row[column] = cell.zfill(12)
        for column in self.bhxh:
            # In a BHXH column a 10-digit number with a mobile prefix is still a BHXH number:
            # the label in front tells the detector so.
            cell = row[column].strip() if column < size else ""
            if cell.isdigit() and len(cell) in (9, 10):
                row[column] = "BHXH " + cell.zfill(10)
        return row


def _table_records(rows: Iterable[list[str]]) -> Iterator[str]:
    """Join table rows into tab-separated records, using what header rows say of columns."""
    columns = _Columns()
    for index, row in enumerate(rows):
        if index < _HEADER_ROWS:
            columns.learn(row)
        if columns.skipped or columns.cccd or columns.bhxh:
            row = columns.apply(row)
        yield _one_line("\t".join(row))


def _restore_zeros(text: str) -> str:
    """Restore lost leading zeros in whole cells of tab-separated records."""
    return _LOST_ZERO_CELL.sub(_restore_zero_match, text)


def _xlsx_records(stream: IO[bytes]) -> Iterator[str]:
    rows = iter_xlsx_rows(stream, values_only=False)
    yield from _table_records([_xlsx_scan_text(cell) for cell in row] for _, row in rows)


def _pdf_records(stream: IO[bytes]) -> Iterator[str]:
    for page in iter_pdf_pages(stream):
        yield page.replace("\r\n", "\n").replace("\r", "\n")


# --- scanning ----------------------------------------------------------------------------------


def _container_kind(archive: zipfile.ZipFile) -> str:
    """Tell an Office document from a plain archive by its member names."""
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "word/document.xml" in names:
        return "docx"
    return "zip"


def office_container_size(stream: IO[bytes]) -> int:
    """Return the declared inflated size of an Office (ZIP) file; refuse a likely zip bomb.

    Raises ``_SizeCapped`` when a part inflates beyond ``MAX_COMPRESSION_RATIO``; rewinds.
    """
    with zipfile.ZipFile(stream) as archive:
        infos = archive.infolist()
    stream.seek(0)
    if any(_is_bomb(info) for info in infos):
        raise _SizeCapped
    return sum(info.file_size for info in infos)


def _check_container(stream: IO[bytes], scan: _Scan) -> None:
    """Refuse an Office file whose parts would inflate beyond the shared archive budget."""
    declared = office_container_size(stream)
    if declared > scan.archive_bytes_left:
        raise _SizeCapped
    scan.archive_bytes_left -= declared


def sniff_stream(stream: IO[bytes], name: str) -> tuple[str, bytes]:
    """Return the kind of a seekable stream (ZIPs refined to xlsx/docx) and its first bytes."""
    head = stream.read(_SAMPLE_BYTES)
    stream.seek(0)
    kind = sniff_kind(name, head)
    if kind == "zip" and head.startswith(_ZIP_MAGICS):
        with zipfile.ZipFile(stream) as archive:
            kind = _container_kind(archive)
        stream.seek(0)
    return kind, head


def _scan_stream(stream: IO[bytes], name: str, scan: _Scan, depth: int) -> str:
    """Scan one file or member (a seekable stream) into ``scan`` and return its kind."""
    kind, head = sniff_stream(stream, name)
    if kind in ("text", "csv") and depth == 0:
        scan.encoding = detect_encoding(head)
    if kind == "text":
        scan.feed(iter_text_chunks(stream, scan.max_bytes))
    elif kind == "csv":
        before = (scan.report, scan.rows_scanned, scan.is_truncated)
        try:
            scan.feed(_table_records(iter_csv_rows(stream, scan.max_bytes)), _restore_zeros)
        except csv.Error:
            # A stray quote can swallow the rest of the file into one huge field: scan as text.
            scan.report, scan.rows_scanned, scan.is_truncated = before
            stream.seek(0)
            scan.feed(iter_text_chunks(stream, scan.max_bytes))
    elif kind == "xlsx":
        _check_container(stream, scan)
        scan.feed(_xlsx_records(stream))
    elif kind == "docx":
        _check_container(stream, scan)
        scan.feed(_one_line(r) for r in iter_docx_records(stream, with_headers=True))
    elif kind == "pdf":
        scan.feed(_pdf_records(stream))
    elif kind == "zip":
        _scan_archive(stream, scan, depth + 1)
    else:
        raise _UnsupportedFormat(kind)
    return kind


def _is_bomb(info: zipfile.ZipInfo) -> bool:
    """Tell a member that inflates far beyond any real document (a likely zip bomb)."""
    return info.file_size > _RATIO_CHECK_FLOOR and (
        info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
    )


def _scan_archive(stream: IO[bytes], scan: _Scan, depth: int) -> None:
    """Scan each member of a ZIP archive, within the shared member, size and depth budgets."""
    if depth > MAX_ARCHIVE_DEPTH:
        raise _SizeCapped
    with zipfile.ZipFile(stream) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            scan.check_time()
            if scan.members_left <= 0:
                scan.is_truncated = True
                return
            scan.members_left -= 1
            try:
                _scan_member(archive, info, scan, depth)
                scan.members_scanned += 1
            except _TimeUp:
                raise
            except _SizeCapped:
                scan.is_truncated = True
                scan.members_skipped += 1
            except Exception:  # a corrupt or unsupported member must not stop the archive
                scan.members_skipped += 1


def _scan_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, scan: _Scan, depth: int) -> None:
    """Scan one archive member: text streams straight through, other formats from memory."""
    if info.flag_bits & 0x1:
        raise _UnsupportedFormat("encrypted")
    if _is_bomb(info) or info.file_size > scan.archive_bytes_left:
        raise _SizeCapped
    scan.archive_bytes_left -= info.file_size
    with archive.open(info) as member:
        head = member.read(_SAMPLE_BYTES)
        if sniff_kind(info.filename, head) in ("text", "csv"):
            member.seek(0)  # ZipExtFile seeks by re-reading: cheap for a sample-sized rewind
            _scan_stream(member, info.filename, scan, depth)
            return
        # Spreadsheets, documents, PDFs and archives need random access: bounded in memory.
        if info.file_size > scan.max_bytes:
            raise _SizeCapped
        data = head + member.read(info.file_size - len(head) + 1)
    _scan_stream(io.BytesIO(data), info.filename, scan, depth)


def scan_file(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
    max_archive_members: int = DEFAULT_MAX_ARCHIVE_MEMBERS,
) -> ScanResult:
    """Count identifiers in a file by kind; never raises for unreadable or hostile files."""
    scan = _Scan(
        deadline=time.monotonic() + max_seconds,
        max_bytes=max_bytes,
        archive_bytes_left=max_archive_bytes,
        members_left=max_archive_members,
    )
    kind = "unknown"
    error: str | None = None
    try:
        with open(path, "rb") as stream:
            head = stream.read(_SAMPLE_BYTES)
            stream.seek(0)
            kind = sniff_kind(str(path), head)
            kind = _scan_stream(stream, str(path), scan, depth=0)
    except _LimitReached:
        scan.is_truncated = True
    except _UnsupportedFormat:
        error = "định dạng không hỗ trợ / unsupported format"
    except Exception as exc:  # never raise on a bad file; the class name carries no content
        error = f"không đọc được / unreadable ({type(exc).__name__})"
    report = scan.report
    return ScanResult(
        file_kind=kind,
        counts=dict(report.counts),
        record_count=report.lines_with_hits,
        rows_scanned=scan.rows_scanned,
        is_truncated=scan.is_truncated,
        error=error,
        encoding=scan.encoding,
        cccd_confidence_mean=report.cccd_confidence_mean,
        cccd_confidence_min=report.cccd_confidence_min,
        members_scanned=scan.members_scanned,
        members_skipped=scan.members_skipped,
    )
