"""Agent ids and host names compared as a person reads them, not byte by byte.

``PC-CA-01``, ``pc-ca-01 ``, ``ＰＣ-CA-01`` (full width), ``PC‐CA‐01`` (Unicode hyphen) and
``PC-CA\u200b-01`` (zero-width space) look like one machine to whoever reads an alert, so the
server must treat them as one: otherwise a second token could register a look-alike of
another PC's agent, or an agent could report events under a look-alike of another host.
Pure: no Flask, no SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import unicodedata

# Dashes that are not in category Pd (which is mapped wholesale): minus signs, hyphen bullet.
_EXTRA_DASHES = frozenset("\u2212\u2043\u02d7\u2796\ufe63\uff0d")
# Default-ignorable characters outside category Cf: they render as nothing either.
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)


def _fold_characters(text: str) -> str:
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cf" or char in _INVISIBLE:
            continue  # zero-width space/joiners, soft hyphen, BOM, direction marks, ...
        if category == "Pd" or char in _EXTRA_DASHES:
            char = "-"
        out.append(char)
    return "".join(out)


def normalize_identifier(text: str) -> str:
    """Return the form in which look-alike agent ids or host names are equal.

    NFKC (full-width and compatibility letters), invisible and format characters removed,
    every Unicode dash as ``-``, case folded, outer white space trimmed.
    """
    text = _fold_characters(unicodedata.normalize("NFKC", text))
    # Case folding can leave text that is no longer NFKC (and NFKC can expose new dashes).
    text = _fold_characters(unicodedata.normalize("NFKC", text.casefold()))
    return text.strip()


def identity_key(text: str) -> str:
    """Return the fixed-length key (SHA-256 hex of the normalised form) stored and indexed."""
    return hashlib.sha256(normalize_identifier(text).encode("utf-8")).hexdigest()


def same_identity(first: str | None, second: str | None) -> bool:
    """Tell whether two agent ids or host names are the same once normalised."""
    if first is None or second is None:
        return first is second
    return normalize_identifier(first) == normalize_identifier(second)
