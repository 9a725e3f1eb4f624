"""Mask citizens' identifiers in text that leaves its owner: paths, names, free text, log lines.

The one masker of the project (server and agent). Pure: no I/O, no server imports.

What is masked: every *chain* of digits holding 9 or more digits, where a chain is digit groups
joined by one to three separators — space (any Unicode space after NFKC), ``.``, ``-`` and the other
dashes, ``/`` or ``\\`` — with zero-width and direction marks allowed anywhere between digits.
That covers the forms people and files use for a 12-digit CCCD, a 9-digit CMND, a 10-digit
BHXH number and 10/11-digit phone numbers: ``001 203 004 567``, ``001.203.004.567``,
``001-203-004-567``, ``CCCD001203004567``, ``0912 345 678``, digits split by a zero-width space
or written full-width. A phone's ``+84``/``(+84)``/``0084`` prefix and a kept ``(0)`` are
masked with the number: ``(+84) 912 345 678``, ``+84 (0) 912 345 678``.

Why any 9+ digit chain rather than only the detectors' exact groupings: this decides what may
leave, not what to count; a mis-grouped ID number must not pass because of its grouping. So
a chain of 12 or more digits never survives unless it is one of the shapes below.

What survives (chosen so ordinary text stays readable):

- chains of fewer than 9 digits: short numbers, ``07/12/2026``, ``2026-12-07``, ``10:30``;
- calendar dates (``d/m/yyyy``, ``yyyy-mm-dd``, with ``/``, ``.`` or ``-``), one or more,
  optionally followed by a time of day (``2026-12-07 10:30``, ``07/12/2026 1030``);
- dotted version strings whose first two parts are at most two digits and the others at most
  five (``10.0.19045.3803``); an IPv4 address of 9+ digits is masked (``100.200.100.200`` is also
  a 12-digit number written in threes; the operational log keeps ``remote_addr`` as it is);
- UUIDs and hexadecimal digests of 32+ characters that contain a letter ``a``–``f``.

The output of a text with something masked is its NFKC form with each masked chain replaced by
a kind token: ``[cccd]`` (12 digits), ``[cmnd]`` (9), ``[phone]`` (mobile shapes, any ``+84``
form), ``[bhxh]`` (other 10-digit), ``[số]`` (any other length). Text with nothing to mask is
returned unchanged, not normalised. Texts with fewer than 9 digits return at once.

Digits are ASCII digits after NFKC (full-width, mathematical, circled and superscript digits fold
to them); digits of other scripts that NFKC keeps (Arabic-Indic, Thai, Khmer, ...) are not read.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MASK_TOKENS", "mask_pii", "may_hold_identifier"]

MASK_TOKENS: tuple[str, ...] = ("[cccd]", "[cmnd]", "[phone]", "[bhxh]", "[số]")
MIN_DIGITS = 9

# Invisible characters people (or copy-paste) put between digits: zero-width space/joiners,
# soft hyphen, word joiner, BOM, direction marks and isolates. NFKC keeps all of them.
INVISIBLE = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
# After NFKC every Unicode space is " "; the dashes listed are those NFKC does not fold.
SEPARATORS = " ./\\\\\\-\u2010-\u2015\u2212"
# Up to three separators in a row: "001 - 203 - 004 - 567" is one number too.
_GAP = f"[{INVISIBLE}]*(?:[{SEPARATORS}][{INVISIBLE}]*){{1,3}}|[{INVISIBLE}]+"
_CHAIN = f"[0-9]+(?:(?:{_GAP})[0-9]+)*"
_PHONE_PREFIX = rf"(?:\(\+84\)|\(84\)|\+84|0084)(?:{_GAP})?(?:\(0\)(?:{_GAP})?)?"
_CANDIDATE = re.compile(f"(?P<prefix>{_PHONE_PREFIX})?(?P<chain>{_CHAIN})")
_GROUP_SPLIT = re.compile(f"({_GAP})")
_INVISIBLE_RE = re.compile(f"[{INVISIBLE}]")
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))
# UUIDs and digests: hex tokens with at least one letter a-f (checked in code), not glued to
# other letters or digits.
_PROTECTED = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}|[0-9a-fA-F]{32,})(?![0-9A-Za-z])"
)
_HEX_LETTER = re.compile(r"[a-fA-F]")
_DIGIT_BYTES = b"0123456789"
_NON_DIGITS = re.compile(r"[^0-9]")
_MOBILE_SECOND = frozenset("35789")


def _is_day(g: str) -> bool:
    return len(g) <= 2 and 1 <= int(g) <= 31


def _is_month(g: str) -> bool:
    return len(g) <= 2 and 1 <= int(g) <= 12


def _is_year(g: str) -> bool:
    return len(g) == 4 and 1900 <= int(g) <= 2099


def _is_time(groups: list[str]) -> bool:
    if len(groups) == 1 and len(groups[0]) in (4, 6):
        g = groups[0]
        groups = [g[i : i + 2] for i in range(0, len(g), 2)]
    if not 1 <= len(groups) <= 3 or any(len(g) > 2 for g in groups):
        return False
    return int(groups[0]) <= 23 and all(int(g) <= 59 for g in groups[1:])


def _is_dates_and_time(groups: list[str], seps: list[str]) -> bool:
    """Tell whether a chain is one or more calendar dates, then at most one time of day."""
    i = dates = 0
    while i + 2 < len(groups):
        a, b, c = groups[i : i + 3]
        same_sep = seps[i] == seps[i + 1] and seps[i] in ("/", ".", "-")
        if same_sep and ((_is_day(a) and _is_month(b) and _is_year(c))
                         or (_is_year(a) and _is_month(b) and _is_day(c))):
            dates += 1
            i += 3
        else:
            break
    return dates > 0 and (i == len(groups) or _is_time(groups[i:]))


def _no_leading_zero(g: str) -> bool:
    return g == "0" or g[0] != "0"


def _is_version(groups: list[str], seps: list[str]) -> bool:
    # 10.0.19045.3803: identifiers never start with two parts of one or two digits, except a
    # phone number written from its country code (84.91.234.5678).
    if groups[0] == "84" and _MOBILE_SECOND.intersection(groups[1][:1]):
        return False
    return (len(groups) >= 3 and all(s == "." for s in seps)
            and all(len(g) <= 2 and _no_leading_zero(g) for g in groups[:2])
            and all(len(g) <= 5 for g in groups[2:]))


def _is_exempt(chain: str) -> bool:
    parts = _GROUP_SPLIT.split(chain)
    groups = parts[0::2]
    seps = [_INVISIBLE_RE.sub("", s).translate(_DASHES) for s in parts[1::2]]
    return _is_dates_and_time(groups, seps) or _is_version(groups, seps)


def _token(digits: str, has_prefix: bool) -> str:
    n = len(digits)
    if has_prefix and n in (9, 10):
        return "[phone]"
    if n == 12:
        return "[cccd]"
    if n == 10:
        return "[phone]" if digits[0] == "0" and digits[1] in _MOBILE_SECOND else "[bhxh]"
    if n == 9:
        return "[cmnd]"
    if n == 11 and digits.startswith("84") and digits[2] in _MOBILE_SECOND:
        return "[phone]"
    return "[số]"


def _replace(match: re.Match) -> str:
    whole, chain = match.group(0), match.group("chain")
    if match.group("prefix") is not None:
        national = _NON_DIGITS.sub("", chain)
        if len(national) >= MIN_DIGITS:
            return _token(national, True)
        # "0084 12345678" may be a 12-digit ID number that begins like a country code.
        digits = _NON_DIGITS.sub("", whole)
        return whole if len(digits) < MIN_DIGITS else _token(digits, False)
    digits = _NON_DIGITS.sub("", chain)
    if len(digits) < MIN_DIGITS or _is_exempt(chain):
        return whole
    return _token(digits, False)


def _mask_segment(text: str) -> str:
    return _CANDIDATE.sub(_replace, text)


def _normal_form(text: str) -> str | None:
    """Return the NFKC form of text when it holds 9+ digits there, else None (the fast path)."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        normal = text
    else:
        normal = unicodedata.normalize("NFKC", text)
    # Counting on the UTF-8 bytes is one C pass: str.count per digit costs ten.
    data = normal.encode("utf-8", "surrogatepass")
    if len(data) - len(data.translate(None, _DIGIT_BYTES)) < MIN_DIGITS:
        return None
    return normal


def may_hold_identifier(text: str) -> bool:
    """Tell whether text holds 9 or more digits after NFKC (else ``mask_pii`` returns it as is)."""
    return _normal_form(text) is not None


def mask_pii(text: str) -> str:
    """Return text with ID, phone and BHXH numbers replaced by kind tokens (see module doc)."""
    normal = _normal_form(text)
    if normal is None:
        return text
    if "-" in normal or len(normal) >= 32:
        pieces: list[str] = []
        last = 0
        for m in _PROTECTED.finditer(normal):
            if _HEX_LETTER.search(m.group()):
                pieces.append(_mask_segment(normal[last : m.start()]))
                pieces.append(m.group())
                last = m.end()
        pieces.append(_mask_segment(normal[last:]))
        masked = "".join(pieces)
    else:
        masked = _mask_segment(normal)
    return text if masked == normal else masked
