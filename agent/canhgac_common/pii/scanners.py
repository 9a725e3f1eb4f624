"""Scan files for citizens' identifiers: counts by kind and records affected, never the values.

Formats: text (.txt and anything that decodes), CSV/TSV, spreadsheets (.xlsx/.xlsm, legacy
.xls and OpenDocument .ods, all read with python-calamine), Word (.docx, legacy .doc),
OpenDocument text (.odt), PDF and ZIP archives (members scanned with the same limits, nested
at most two deep). ``scan_file`` never raises on a bad file: the result carries an error string
made of fixed words and an exception *class* name, so no file content can leak into logs
through it; a file with an error is unreadable (``ScanResult.is_unreadable``), never clean.

Decisions worth knowing:

- Text encodings: BOM first (UTF-8, UTF-16, UTF-32), then UTF-16 without BOM by its NUL
  pattern, then strict UTF-8, then the legacy Vietnamese Windows code page cp1258, then
  latin-1. TCVN3/VNI texts decode as latin-1: digits stay digits, so numbers are still found.
- Tables (sheets, CSV, tab-separated text, Word and ODF tables) are judged by column (``tables``): a column holds
  identifiers when its header says so or when most of its bare numbers are valid identifiers
  of one kind; money, invoice, serial, account, case and code columns never count; a number
  that lost its leading zero (Excel stores an ID typed as a number as 20185123456) gets it back
  only inside an identifier column. Other cells are read as text with context words.
- Legacy OLE2 files are told apart by their streams: ``Workbook``/``Book`` is a spreadsheet,
  ``WordDocument`` a Word document; anything else (PowerPoint, an encrypted OOXML package) is
  an unsupported format. A .doc or .xls that is really RTF, HTML or a ZIP is read as what it is.
- ``record_count`` is the number of records (text lines, table rows, Word paragraphs and table
  rows, PDF text lines) holding at least one identifier; ``rows_scanned`` counts all records.
- Limits: ``max_bytes`` caps the bytes read from a text file and the characters of text
  extracted from any one file or member; ``max_seconds`` is a wall-clock budget for the whole
  scan; archives share ``max_archive_bytes`` (declared uncompressed size of everything opened,
  Office containers included) and ``max_archive_members``. A member compressed more than
  ``MAX_COMPRESSION_RATIO`` to one (and over 1 MiB) is skipped as a likely zip bomb. Hitting
  any limit sets ``is_truncated``; counts then cover what was scanned.
- Not scanned: Word text boxes in .docx, .odt headers and footers, encrypted archive members,
  encrypted Office files and PDFs with a non-empty password (all reported unreadable). A single
  sheet or PDF page whose parsing hangs is not interruptible. python-calamine holds a sheet as
  a dense grid: xlsx grids over ``MAX_DENSE_CELLS`` are streamed by openpyxl instead; an .xls
  or .ods whose cells span more is reported unreadable (.xls's format allows 65,536 × 256 cells,
  over 1 GB in python-calamine); so is an .odt table whose repeated rows and cells expand past
  2 million cells.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import operator
import re
import struct
import time
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from canhgac_common.pii.detectors import KINDS, PiiReport, detect_detailed
from canhgac_common.pii.documents import iter_doc_blocks, iter_odt_blocks
from canhgac_common.pii.tables import Hits, flat_table_rows, one_line, table_records

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

_EXTENSION_KIND = {
    ".txt": "text", ".text": "text", ".log": "text", ".md": "text",
    ".csv": "csv", ".tsv": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx", ".xltx": "xlsx", ".xltm": "xlsx",
    ".xls": "xls", ".xlt": "xls", ".ods": "ods",
    ".docx": "docx", ".docm": "docx", ".dotx": "docx", ".dotm": "docx",
    ".doc": "doc", ".dot": "doc", ".odt": "odt",
    ".pdf": "pdf",
    ".zip": "zip",
}  # fmt: skip
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
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

    @property
    def is_unreadable(self) -> bool:
        """Return True when the file could not be read: its counts say nothing, not "clean"."""
        return self.error is not None

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

    def feed(self, blocks: Iterable[str | tuple[str, Hits]]) -> None:
        """Detect identifiers in newline-separated records, within the per-file size budget.

        A record may come as (text, hits) from a table whose identifier columns were counted
        already (``tables.table_records``): the hits are added, the text is still read for
        other identifiers, and the record counts once as a record with identifiers.
        """
        chars_left = self.max_bytes
        pending: list[str] = []
        counted: list[str] = []  # rest of rows already holding identifiers
        pending_chars = 0
        tallies: list[Hits] = []
        try:
            for i, block in enumerate(blocks):
                if not i & 255:
                    self.check_time()
                if block.__class__ is tuple:
                    text, hits = block
                    if len(text) > chars_left:
                        raise _SizeCapped
                    tallies.append(hits)
                    chars_left -= len(text)
                    counted.append(text)
                    pending_chars += len(text)
                elif not block:
                    continue
                else:
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
                    self._detect(pending, counted)
                    pending, counted, pending_chars = [], [], 0
        except _SizeCapped:
            self.is_truncated = True
        finally:
            if pending or counted:
                self._detect(pending, counted)
            if tallies:
                self.report = self.report.merge(_tally_report(tallies))

    def _detect(self, blocks: list[str], counted: list[str]) -> None:
        self.check_time()
        if blocks:
            text = "\n".join(blocks)
            self.report = self.report.merge(detect_detailed(text))
            self.rows_scanned += text.count("\n") + 1
        if counted:
            # These rows are records with identifiers already: their lines are not counted again.
            text = "\n".join(counted)
            found = detect_detailed(text)
            self.report = self.report.merge(
                PiiReport(found.counts, 0, found.cccd_confidence_sum, found.cccd_confidence_min)
            )
            self.rows_scanned += text.count("\n") + 1


def _tally_report(tallies: list[Hits]) -> PiiReport:
    """Add up the hits of table rows counted by column (C-level sums: one row is cheap)."""
    counts = dict.fromkeys(KINDS, 0)
    counts["cccd"] = sum(map(operator.itemgetter(0), tallies))
    counts["phone"] = sum(map(operator.itemgetter(1), tallies))
    counts["bhxh"] = sum(map(operator.itemgetter(2), tallies))
    minimums = [m for m in map(operator.itemgetter(4), tallies) if m is not None]
    return PiiReport(
        counts,
        len(tallies),
        sum(map(operator.itemgetter(3), tallies)),
        min(minimums) if minimums else None,
    )


# --- format detection and decoding ------------------------------------------------------------


def sniff_kind(name: str, head: bytes) -> str:
    """Return the kind of a file from its name, or from its first bytes when the name is unknown.

    Kinds: text, csv, xlsx, xls, ods, docx, doc, odt, pdf, zip, ole2 (legacy Office), binary.
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


def iter_csv_rows(
    stream: IO[bytes], byte_limit: int, *, delimiter: str | None = None
) -> Iterator[list[str]]:
    """Parse a CSV/TSV byte stream into rows of cell strings (dialect sniffed, Excel default).

    With ``delimiter`` given (tab-separated text), quotes are plain characters.
    """
    chunks = iter_text_chunks(stream, byte_limit)
    first = next(chunks, "")
    quoting = csv.QUOTE_MINIMAL if delimiter is None else csv.QUOTE_NONE
    delimiter = delimiter or _guess_delimiter(first[:16384])

    def all_chunks() -> Iterator[str]:
        yield first
        yield from chunks

    yield from csv.reader(
        _chunk_lines(all_chunks()), csv.excel, delimiter=delimiter, quoting=quoting
    )


def _is_tab_table(head: bytes, encoding: str) -> bool:
    """Tell tab-separated text (Excel's "Unicode text", software exports) from prose.

    At least three of the first lines, and half of them, hold a tab.
    """
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=False)
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    tabbed = sum(1 for line in lines if "\t" in line)
    return tabbed >= 3 and tabbed * 2 >= len(lines)


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


def cell_text(value: Any) -> str:
    """Render one spreadsheet cell value (python-calamine) as text for scanning."""
    if value.__class__ is str:
        return value
    if isinstance(value, float | int):
        return format_number(value)
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


# python-calamine holds a sheet as a dense grid from its first to its last cell: one stray cell
# at XFD1048576 in a 5 KB file asks for 17 billion cells and aborts the process (a Rust
# allocation failure cannot be caught). Grids larger than this are read by openpyxl, which
# streams rows.
MAX_DENSE_CELLS = 4_000_000
_CELL_REF = re.compile(rb'<(?:\w+:)?c r="([A-Z]{1,3})([0-9]{1,7})"')
# A reference past column Z or row 99,999: only then is the grid measured cell by cell
# (columns A-Z and rows up to 99,999 make at most 2.6 million cells).
_WIDE_OR_LONG = re.compile(rb' r="[A-Z](?:[A-Z]|[0-9]{6})')  # a literal head: sre scans fast


def _xlsx_grid_cells(stream: IO[bytes]) -> int:
    """Return the largest cell grid (bounding box of the cells) of an xlsx file's sheets.

    Reads the worksheet XML with regexes only (no XML parser), chunk by chunk; a sheet with
    no reference past column Z or row 99,999 counts as 0 (small enough); rewinds.
    """
    largest = 0
    with zipfile.ZipFile(stream) as archive:
        for info in archive.infolist():
            if not (info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")):
                continue
            with archive.open(info) as part:
                tail = b""
                while chunk := part.read(1 << 20):
                    data = tail + chunk
                    if _WIDE_OR_LONG.search(data):
                        break
                    tail = data[-32:]
                else:
                    continue  # narrow and short enough: no need to measure
            rows = [1 << 30, 0]
            cols = [1 << 30, 0]
            with archive.open(info) as part:
                tail = b""
                while chunk := part.read(1 << 20):
                    data = tail + chunk
                    for letters, digits in _CELL_REF.findall(data):
                        col = 0
                        for letter in letters:
                            col = col * 26 + letter - 64
                        row = int(digits)
                        rows[0], rows[1] = min(rows[0], row), max(rows[1], row)
                        cols[0], cols[1] = min(cols[0], col), max(cols[1], col)
                    tail = data[-32:]  # a reference cut by the chunk boundary is read again
            if rows[1]:
                largest = max(largest, (rows[1] - rows[0] + 1) * (cols[1] - cols[0] + 1))
    stream.seek(0)
    return largest


# BIFF cell records (row u16, column u16 first): FORMULA, BLANK, NUMBER, LABEL, BOOLERR, RK,
# LABELSST, RSTRING; MULRK and MULBLANK end with their last column.
_XLS_CELLS = frozenset((0x0006, 0x0201, 0x0203, 0x0204, 0x0205, 0x027E, 0x00FD, 0x00D6))
_XLS_MULTI_CELLS = frozenset((0x00BD, 0x00BE))
_XLS_BOF = 0x0809


def _xls_grid_cells(stream: IO[bytes]) -> int:
    """Return the largest grid (bounding box of the cell records) of an .xls file's sheets.

    Walks the BIFF records of the Workbook stream (headers, and the first bytes of cell
    records); a 5 KB file with cells at A1 and IV65536 asks python-calamine for 16.7 million
    cells (over 1 GB). Rewinds.
    """
    import olefile  # deferred: only needed for legacy Office files

    with olefile.OleFileIO(stream) as ole:
        name = "Workbook" if ole.exists("Workbook") else "Book"
        data = ole.openstream(name).read()
    stream.seek(0)
    largest = 0
    top = left = 1 << 30
    bottom = right = -1
    header = struct.Struct("<HH").unpack_from  # (type, length), and (row, column) of a cell
    cells, multi = _XLS_CELLS, _XLS_MULTI_CELLS
    position, size = 0, len(data)
    while position + 4 <= size:
        kind, length = header(data, position)
        body = position + 4
        position = body + length
        if kind in cells:
            if length >= 4 and position <= size:
                row, col = header(data, body)
                top, bottom = min(top, row), max(bottom, row)
                left, right = min(left, col), max(right, col)
        elif kind in multi:
            if length >= 6 and position <= size:
                row, col = header(data, body)
                last = data[position - 2] | data[position - 1] << 8
                top, bottom = min(top, row), max(bottom, row)
                left, right = min(left, col), max(right, col, last)
        elif kind == _XLS_BOF:  # a new substream (sheet): measure the one that ended
            if bottom >= 0:
                largest = max(largest, (bottom - top + 1) * (right - left + 1))
            top = left = 1 << 30
            bottom = right = -1
    if bottom >= 0:
        largest = max(largest, (bottom - top + 1) * (right - left + 1))
    return largest


_ODS_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_ODS_VALUE_TYPE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}value-type"


def _ods_grid_cells(stream: IO[bytes]) -> int:
    """Return the largest grid (bounding box of the non-empty cells) of an .ods file's sheets.

    Repeated rows and cells are counted as repeated; empty ones (no value, no content), which
    LibreOffice writes by the million at the end of every sheet, do not widen the grid.
    Streams ``content.xml`` with lxml (entities off); rewinds.
    """
    from lxml import etree

    table, row_tag = f"{_ODS_TABLE}table", f"{_ODS_TABLE}table-row"
    cells = (f"{_ODS_TABLE}table-cell", f"{_ODS_TABLE}covered-table-cell")
    rows_repeated = f"{_ODS_TABLE}number-rows-repeated"
    columns_repeated = f"{_ODS_TABLE}number-columns-repeated"
    largest = row = col = row_max_col = max_row = max_col = 0
    with zipfile.ZipFile(stream) as archive, archive.open("content.xml") as content:
        # End events only (half the callbacks): a row's span is read when the row ends.
        for _, element in etree.iterparse(
            content, tag=(table, row_tag, *cells),
            resolve_entities=False, no_network=True, huge_tree=False,
        ):
            tag = element.tag
            if tag in cells:
                span = int(element.get(columns_repeated, "1") or 1)
                if element.get(_ODS_VALUE_TYPE) or len(element):
                    row_max_col = col + span
                col += span
            elif tag == row_tag:
                row_span = int(element.get(rows_repeated, "1") or 1)
                if row_max_col:
                    max_row = row + row_span
                    max_col = max(max_col, row_max_col)
                row += row_span
                col = row_max_col = 0
                element.clear()
            else:
                largest = max(largest, max_row * max_col)
                row = max_row = max_col = 0
                element.clear()
    stream.seek(0)
    return largest


def _iter_xlsx_streamed(stream: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    """Yield the non-empty rows of a sparse xlsx through openpyxl's streaming reader.

    Dimensions are reset, so rows are not padded to the stray last column and empty rows
    cost next to nothing.
    """
    import openpyxl  # deferred: only for the rare sparse workbook

    workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    try:
        for index, sheet in enumerate(workbook.worksheets):
            sheet.reset_dimensions()
            for row in sheet.iter_rows(values_only=True):
                if row:
                    yield index, ["" if v is None else cell_text(v) for v in row]
    finally:
        workbook.close()


def iter_sheet_rows(
    stream: IO[bytes], *, kind: str = "xlsx"
) -> Iterator[tuple[int, list[str]]]:
    """Yield (sheet index, row of cell texts) from every sheet of an xlsx, xls or ods file."""
    import python_calamine  # deferred: only needed for spreadsheets

    if kind == "xlsx" and _xlsx_grid_cells(stream) > MAX_DENSE_CELLS:
        yield from _iter_xlsx_streamed(stream)
        return
    if kind == "ods" and _ods_grid_cells(stream) > MAX_DENSE_CELLS:
        raise ValueError("sheet grid too large")  # reported unreadable, never clean
    if kind == "xls" and _xls_grid_cells(stream) > MAX_DENSE_CELLS:
        raise ValueError("sheet grid too large")  # as .ods: no streaming reader for BIFF
    workbook = python_calamine.CalamineWorkbook.from_filelike(stream)
    try:
        for index in range(len(workbook.sheet_names)):
            sheet = workbook.get_sheet_by_index(index)
            for row in sheet.iter_rows():
                yield index, [
                    v if v.__class__ is str
                    else str(int(v)) if v.__class__ is float and v.is_integer() and -1e15 < v < 1e15
                    else cell_text(v)
                    for v in row
                ]
    finally:
        workbook.close()


def _sheet_records(stream: IO[bytes], kind: str) -> Iterator[str | tuple[str, Hits]]:
    """Yield every sheet's rows as records, each sheet's columns judged on their own."""
    rows_by_sheet = iter_sheet_rows(stream, kind=kind)
    for _, rows in itertools.groupby(rows_by_sheet, key=operator.itemgetter(0)):
        yield from table_records(row for _, row in rows)


def iter_docx_blocks(stream: IO[bytes], *, with_headers: bool) -> Iterator[str | list[list[str]]]:
    """Yield a Word document's paragraphs (str) and tables (rows of cell texts) in body order.

    A merged cell is read once; a table nested in a cell comes as its own table after the row.
    """
    import docx  # deferred: heavy, and only needed for Word files
    from docx.table import Table

    def blocks(container: Any) -> Iterator[str | list[list[str]]]:
        for block in container.iter_inner_content():
            if isinstance(block, Table):
                yield from table_blocks(block)
            else:
                yield block.text

    def table_blocks(table: Table) -> Iterator[list[list[str]]]:
        rows: list[list[str]] = []
        nested: list[Table] = []
        for row in table.rows:
            seen: list[Any] = []
            cells = []
            for cell in row.cells:
                if any(cell._tc is element for element in seen):
                    continue
                seen.append(cell._tc)
                cells.append(cell.text)
                nested.extend(cell.tables)
            rows.append(cells)
        yield rows
        for inner in nested:
            yield from table_blocks(inner)

    document = docx.Document(stream)
    yield from blocks(document)
    if with_headers:
        for section in document.sections:
            for part in (section.header, section.footer):
                if not part.is_linked_to_previous:
                    yield from blocks(part)


def _block_records(
    blocks: Iterable[str | list[list[str]]],
) -> Iterator[str | tuple[str, Hits]]:
    """Turn paragraphs and tables into records: tables judged by column, text one line each."""
    for block in blocks:
        if isinstance(block, str):
            yield one_line(block)
        else:
            yield from table_records(block)


# A grouped number that a PDF wrapped onto the next line ("+84 912 345\n678"): joined again.
_WRAPPED_GROUP = re.compile(
    r"(?:(?<=[ .\-][0-9]{2})|(?<=[ .\-][0-9]{3})|(?<=[ .\-][0-9]{4}))\n(?=[0-9]{2,6}(?![0-9])(?!\s+\w))"
)


def _pdf_records(stream: IO[bytes]) -> Iterator[str]:
    for page in iter_pdf_pages(stream):
        page = _WRAPPED_GROUP.sub(" ", page.replace("\r\n", "\n").replace("\r", "\n"))
        yield "\n".join(flat_table_rows(page.split("\n")))


# --- scanning ----------------------------------------------------------------------------------


_ODF_MIMETYPES = {
    b"application/vnd.oasis.opendocument.spreadsheet": "ods",
    b"application/vnd.oasis.opendocument.text": "odt",
}


def _container_kind(archive: zipfile.ZipFile) -> str:
    """Tell an Office or OpenDocument file from a plain archive by its member names."""
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "word/document.xml" in names:
        return "docx"
    if "mimetype" in names and "content.xml" in names:
        info = archive.getinfo("mimetype")
        if info.file_size < 128:
            return _ODF_MIMETYPES.get(archive.read(info).strip(), "zip")
    return "zip"


def _ole2_kind(stream: IO[bytes]) -> str:
    """Tell a legacy spreadsheet from a legacy Word document by its OLE2 streams."""
    import olefile  # deferred: only needed for legacy Office files

    with olefile.OleFileIO(stream) as ole:
        if ole.exists("WordDocument"):
            return "doc"
        if ole.exists("Workbook") or ole.exists("Book"):
            return "xls"
    return "ole2"


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
    """Return the kind of a seekable stream and its first bytes.

    ZIPs are refined to xlsx/docx/ods/odt, OLE2 files to xls/doc; a file whose name says one
    Office format but whose bytes say another is read as what its bytes say.
    """
    head = stream.read(_SAMPLE_BYTES)
    stream.seek(0)
    kind = sniff_kind(name, head)
    if head.startswith(_OLE2_MAGIC):
        kind = _ole2_kind(stream)
    elif head.startswith(_ZIP_MAGICS):
        if kind not in ("xlsx", "docx", "ods", "odt", "zip"):
            kind = "zip"
        if kind == "zip":
            with zipfile.ZipFile(stream) as archive:
                kind = _container_kind(archive)
    elif kind in ("xls", "doc", "ods", "odt"):
        # Web apps save HTML or RTF under these names: read the text they hold.
        kind = "text" if _looks_like_text(head) else "binary"
    stream.seek(0)
    return kind, head


def _scan_stream(stream: IO[bytes], name: str, scan: _Scan, depth: int) -> str:
    """Scan one file or member (a seekable stream) into ``scan`` and return its kind."""
    kind, head = sniff_stream(stream, name)
    if kind in ("text", "csv") and depth == 0:
        scan.encoding = detect_encoding(head)
    if kind == "text" and _is_tab_table(head, detect_encoding(head)):
        scan.feed(table_records(iter_csv_rows(stream, scan.max_bytes, delimiter="\t")))
    elif kind == "text":
        scan.feed(iter_text_chunks(stream, scan.max_bytes))
    elif kind == "csv":
        before = (scan.report, scan.rows_scanned, scan.is_truncated)
        try:
            scan.feed(table_records(iter_csv_rows(stream, scan.max_bytes)))
        except csv.Error:
            # A stray quote can swallow the rest of the file into one huge field: scan as text.
            scan.report, scan.rows_scanned, scan.is_truncated = before
            stream.seek(0)
            scan.feed(iter_text_chunks(stream, scan.max_bytes))
    elif kind in ("xlsx", "ods"):
        _check_container(stream, scan)
        scan.feed(_sheet_records(stream, kind))
    elif kind == "xls":
        scan.feed(_sheet_records(stream, kind))
    elif kind == "docx":
        _check_container(stream, scan)
        scan.feed(_block_records(iter_docx_blocks(stream, with_headers=True)))
    elif kind == "odt":
        _check_container(stream, scan)
        scan.feed(_block_records(iter_odt_blocks(stream)))
    elif kind == "doc":
        scan.feed(_block_records(iter_doc_blocks(stream, max_chars=scan.max_bytes)))
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
