"""Read the text of legacy Word (.doc) and OpenDocument text (.odt) files, tables kept as rows.

Both readers yield blocks: a ``str`` is a paragraph, a ``list`` of rows (each a list of cell
strings) is a table, so that tables are judged by column like spreadsheets.

- .doc (Word 97-2003 binary, [MS-DOC]): the OLE2 container is read with ``olefile``; the text
  is assembled from the document's piece table (the Clx in the table stream, ``0Table`` or
  ``1Table`` as the FIB says), each piece either 8-bit (cp1252) or UTF-16LE. This covers the
  main text, footnotes, headers and text boxes, which Word stores after one another. Cell
  marks (0x07) separate table cells, two in a row end a table row; field codes (between 0x13
  and 0x14) are dropped and their results kept. Encrypted files and pre-97 Word files raise
  ``ValueError`` (the scanner reports them unreadable).
- .odt: ``content.xml`` of the ZIP container (lxml, entities not resolved, no network), paragraphs, headings, lists and tables in body
  order (``text:s`` spaces and tabs expanded, repeated table cells repeated, covered cells
  skipped). Headers and footers (in ``styles.xml``) are layout and not read.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Iterator
from typing import IO, Any

Block = str | list[list[str]]

_WORD_MAGIC = 0xA5EC
_FIB_FLAGS = 0x0A
_FLAG_ENCRYPTED = 0x0100
_FLAG_TABLE_1 = 0x0200
_FIB_NFIB = 0x02
_MIN_NFIB = 0xC1  # Word 97
_FIB_FC_CLX = 0x01A2
_CP_COMPRESSED = 0x40000000
_MAX_PIECES = 1_000_000
_CELL = "\x07"
_FIELD = re.compile(r"\x13[^\x13\x14\x15]*(?:\x14|\x15)")
_OTHER_MARKS = str.maketrans({c: " " for c in "\x0b\x0c\x0e\x1e\x1f\xa0"} | {
    c: "" for c in "\x01\x02\x03\x04\x05\x08\x13\x14\x15"
})


def read_doc_text(stream: IO[bytes], *, max_chars: int) -> str:
    """Return the text of a Word 97-2003 document (all stories), at most ``max_chars``."""
    import olefile  # deferred: only needed for legacy Office files

    with olefile.OleFileIO(stream) as ole:
        word = ole.openstream("WordDocument").read()
        if len(word) < _FIB_FC_CLX + 8:
            raise ValueError("short FIB")
        ident, nfib = struct.unpack_from("<HH", word, 0)
        (flags,) = struct.unpack_from("<H", word, _FIB_FLAGS)
        if ident != _WORD_MAGIC or nfib < _MIN_NFIB:
            raise ValueError("not a Word 97+ document")
        if flags & _FLAG_ENCRYPTED:
            raise ValueError("encrypted")
        table_name = "1Table" if flags & _FLAG_TABLE_1 else "0Table"
        table = ole.openstream(table_name).read()
    fc_clx, lcb_clx = struct.unpack_from("<II", word, _FIB_FC_CLX)
    clx = table[fc_clx : fc_clx + lcb_clx]
    pos = 0
    while pos < len(clx) and clx[pos] == 0x01:  # Prc: property modifiers, skipped
        (size,) = struct.unpack_from("<h", clx, pos + 1)
        pos += 3 + max(size, 0)
    if pos >= len(clx) or clx[pos] != 0x02:
        raise ValueError("no piece table")
    (lcb,) = struct.unpack_from("<I", clx, pos + 1)
    plc = clx[pos + 5 : pos + 5 + lcb]
    pieces = (len(plc) - 4) // 12  # (n + 1) CPs of 4 bytes and n PCDs of 8 bytes
    if pieces <= 0 or pieces > _MAX_PIECES:
        raise ValueError("bad piece table")
    cps = struct.unpack_from(f"<{pieces + 1}I", plc, 0)
    parts: list[str] = []
    chars = 0
    for i in range(pieces):
        count = cps[i + 1] - cps[i]
        if count <= 0:
            continue
        (fc,) = struct.unpack_from("<I", plc, 4 * (pieces + 1) + 8 * i + 2)
        if fc & _CP_COMPRESSED:
            start = (fc & ~_CP_COMPRESSED) // 2
            text = word[start : start + count].decode("cp1252", errors="replace")
        else:
            text = word[fc : fc + 2 * count].decode("utf-16-le", errors="replace")
        parts.append(text)
        chars += len(text)
        if chars >= max_chars:
            break
    return "".join(parts)[:max_chars]


def iter_doc_blocks(stream: IO[bytes], *, max_chars: int) -> Iterator[Block]:
    """Yield a .doc file's paragraphs and tables (see module docstring)."""
    text = _FIELD.sub("", read_doc_text(stream, max_chars=max_chars)).translate(_OTHER_MARKS)
    rows: list[list[str]] = []
    cells: list[str] = []
    pending: list[str] = []
    after_cell = False
    width = 0  # cells per row, learnt from a table's first row (an empty cell looks the same)
    for part in re.split(r"([\r\x07])", text):
        if part == "\r":
            if cells:  # a paragraph break inside a cell of the current row
                pending.append(" ")
            else:
                if rows:
                    yield rows
                    rows, width = [], 0
                yield "".join(pending)
                pending = []
            after_cell = False
        elif part == _CELL:
            cell = "".join(pending).strip()
            pending = []
            if after_cell and not cell and (not width or len(cells) >= width):
                rows.append(cells)  # the row-end mark follows the last cell mark
                width = width or len(cells)
                cells = []
                after_cell = False
            else:
                cells.append(cell)
                after_cell = True
        elif part:
            pending.append(part)
            after_cell = False
    if cells:
        rows.append(cells)
    if rows:
        yield rows
    if pending:
        yield "".join(pending)


_NS_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_NS_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_P = f"{{{_NS_TEXT}}}p"
_H = f"{{{_NS_TEXT}}}h"
_S = f"{{{_NS_TEXT}}}s"
_TAB = f"{{{_NS_TEXT}}}tab"
_BREAK = f"{{{_NS_TEXT}}}line-break"
_TABLE = f"{{{_NS_TABLE}}}table"
_ROW = f"{{{_NS_TABLE}}}table-row"
_CELL_TAG = f"{{{_NS_TABLE}}}table-cell"
_COVERED = f"{{{_NS_TABLE}}}covered-table-cell"
_REPEAT = f"{{{_NS_TABLE}}}number-columns-repeated"
_ROW_REPEAT = f"{{{_NS_TABLE}}}number-rows-repeated"
_MAX_REPEAT = 256
# Cells a table may expand to: repeats of repeats multiply (an 11 KB file asked for 262 million,
# over 2 GB), so past this the document is reported unreadable, never scanned in part as clean.
_MAX_TABLE_CELLS = 2_000_000


def _odf_text(element: Any, out: list[str]) -> None:
    """Append the text of a paragraph-like element, expanding spaces, tabs and breaks."""
    if element.text:
        out.append(element.text)
    for child in element:
        if child.tag == _S:
            out.append(" " * min(int(child.get(f"{{{_NS_TEXT}}}c", "1") or 1), 64))
        elif child.tag in (_TAB, _BREAK):
            out.append(" ")
        else:
            _odf_text(child, out)
            if child.tag in (_P, _H):
                out.append(" ")
        if child.tail:
            out.append(child.tail)


def _odf_rows(table: Any) -> list[list[str]]:
    rows = []
    total = 0
    for row in table.iter(_ROW):
        cells: list[str] = []
        for cell in row:
            if cell.tag == _COVERED:
                continue
            if cell.tag != _CELL_TAG:
                continue
            out: list[str] = []
            _odf_text(cell, out)
            text = " ".join("".join(out).split())
            repeat = min(int(cell.get(_REPEAT, "1") or 1), _MAX_REPEAT)
            if total + len(cells) + repeat > _MAX_TABLE_CELLS:
                raise ValueError("table too large")
            cells.extend([text] * repeat)
        while cells and not cells[-1]:
            cells.pop()
        repeat = min(int(row.get(_ROW_REPEAT, "1") or 1), _MAX_REPEAT) if cells else 1
        total += len(cells) * repeat
        if total > _MAX_TABLE_CELLS:
            raise ValueError("table too large")
        rows.extend(list(cells) for _ in range(repeat))
    return rows


def _odf_blocks(element: Any) -> Iterator[Block]:
    for child in element:
        if child.tag in (_P, _H):
            out: list[str] = []
            _odf_text(child, out)
            yield "".join(out)
        elif child.tag == _TABLE:
            yield _odf_rows(child)
        else:
            yield from _odf_blocks(child)


def iter_odt_blocks(stream: IO[bytes]) -> Iterator[Block]:
    """Yield an .odt file's paragraphs and tables in body order (see module docstring)."""
    from lxml import etree  # python-docx's XML library; entities and network off

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    with zipfile.ZipFile(stream) as archive, archive.open("content.xml") as content:
        root = etree.parse(content, parser).getroot()
    yield from _odf_blocks(root)
