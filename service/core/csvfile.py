"""The one CSV writer for every download: UTF-8 with BOM, cells that could run as formulas neutralised.

Cell texts come from agents and people (agent ids, units, paths, rule ids); a spreadsheet runs a
cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula (``=HYPERLINK(...)`` leaks or lures),
and a leading tab or carriage return hides the same. Such a text cell gets a leading apostrophe
(OWASP "CSV injection"), which spreadsheets show as text; numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"  # lets spreadsheet programs on Windows read UTF-8 Vietnamese correctly


def safe_cell(value):
    """Return a cell value that a spreadsheet shows as written, never runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class SafeCSV:
    """Collect rows into a CSV text; every cell goes through ``safe_cell``."""

    def __init__(self) -> None:
        self._out = io.StringIO()
        self._writer = csv.writer(self._out)

    def row(self, cells: Iterable) -> None:
        """Append one row."""
        self._writer.writerow([safe_cell(cell) for cell in cells])

    def text(self) -> str:
        """Return the whole document, starting with the UTF-8 BOM."""
        return BOM + self._out.getvalue()
