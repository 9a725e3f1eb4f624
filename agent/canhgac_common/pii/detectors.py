"""Count citizens' identifiers in text: personal ID (CCCD), mobile phone, BHXH number, e-mail.

Pure functions; no I/O, no logging. Matched values are never returned, stored or logged:
callers get counts by kind and, for ID numbers, a structural confidence.

Rules (the "why" behind each pattern):

- ``cccd`` — a standalone run of exactly 12 digits. Standalone means not touching a letter,
  digit or underscore, and not glued to another number by ``.``/``-`` (so ``1.020185123456``,
  ``020185123456-01`` and 13-digit runs never count). Grouped forms are accepted when they start
  with ``0`` (every historic province code does, and money amounts never do) and use one
  consistent separator (space, dot or dash) in the groupings people actually type:
  3-3-3-3, 4-4-4, 3-3-6, 6-6 and the structural 3-1-2-6 (``020 1 85 123456``).
- ``phone`` — Vietnamese mobile: ``0`` + prefix 3/5/7/8/9 + 8 digits, contiguous or grouped
  4-3-3, 3-3-4, 3-4-3 or 4-6 with one consistent separator; or ``+84``/``(+84)``/``0084``/``84``
  followed by the 9 national digits (contiguous, 3-3-3 or 2-3-4; an extra ``0`` or ``(0)`` is
  tolerated after an explicit ``+84``).
- ``bhxh`` — a standalone 10-digit run that does not start with a mobile prefix
  (03/05/07/08/09). A 10-digit run with a mobile prefix is a phone, *unless* it directly follows
  a BHXH label (``BHXH``, ``mã số BHXH``, ``số sổ BHXH``, ``bảo hiểm xã hội``), which wins.
- ``email`` — ``local@domain.tld`` with ASCII local part and domain; digits inside an e-mail
  address are not counted again as a phone.
- Numbers directly after a bank-account, tax-code or serial label (``STK``, ``TK``,
  ``số tài khoản``, ``ngân hàng``, ``MST``, ``mã số thuế``, ``seri``, ``IMEI``, …; at most a
  few punctuation characters and an optional ``số`` in between) are not counted: a 12-digit
  VietinBank account or a 10-digit tax code is not a citizen's identifier. A bare
  ``tài khoản``/``account`` label is ambiguous, because a VNeID account *is* the ID number:
  after it, a 12-digit number with a perfect ID structure (score 1.0) still counts.
- Speed: a cheap first pass finds digit clusters (sre skips straight to digits); the precise
  patterns run only inside clusters of 10+ characters, and plain digit runs (CSV cells) are
  classified without a regex at all.
- Known limits: a plain 12-digit number (e.g. a large amount written without separators, or a
  yyyymmddhhmm stamp) counts as ``cccd`` with a low confidence; a 10-digit number that is not a
  phone (tax code without a label, epoch timestamp) counts as ``bhxh``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

KINDS: tuple[str, ...] = ("cccd", "phone", "bhxh", "email")

# Historic province codes of birth registration (Circular 07/2016/TT-BCA), 63 provinces.
# (check) The 2025 province merger may change future codes; used only to score, never to reject,
# and callers may pass their own set (a setting) as ``province_codes``.
PROVINCE_CODES: frozenset[str] = frozenset(
    (
        "001", "002", "004", "006", "008", "010", "011", "012", "014", "015", "017", "019",
        "020", "022", "024", "025", "026", "027", "030", "031", "033", "034", "035", "036",
        "037", "038", "040", "042", "044", "045", "046", "048", "049", "051", "052", "054",
        "056", "058", "060", "062", "064", "066", "067", "068", "070", "072", "074", "075",
        "077", "079", "080", "082", "083", "084", "086", "087", "089", "091", "092", "093",
        "094", "095", "096",
    )
)

# Boundaries. LB: not after a word character or "@", and not after "<digit>." / "<digit>-"
# (the tail of a money amount, a decimal or a compound code). RB: the mirror image.
_LB = r"(?<![\w@])(?<![0-9][.\-])"
_RB = r"(?![\w@])(?![.\-][0-9])"
_D = "[0-9]"


def _grouped(name: str, groups: tuple[int, ...], head: str, head_len: int) -> str:
    """Build a pattern for digit groups joined by one consistent separator.

    ``head`` matches the first ``head_len`` digits of the first group (e.g. ``0[35789]``).
    """
    sep = f"(?P<{name}>[ .\\-])"
    parts = [f"{head}{_D}{{{groups[0] - head_len}}}{sep}"]
    parts += [f"{_D}{{{n}}}(?P={name})" for n in groups[1:-1]]
    parts.append(f"{_D}{{{groups[-1]}}}")
    return "".join(parts)


_CCCD_GROUPS = ((3, 3, 3, 3), (4, 4, 4), (3, 3, 6), (6, 6), (3, 1, 2, 6))
_PHONE_GROUPS = ((4, 3, 3), (3, 3, 4), (3, 4, 3), (4, 6))
_NSN_GROUPS = ((3, 3, 3), (2, 3, 4))  # national significant number after +84

_CCCD_GROUPED = "|".join(_grouped(f"c{i}", g, "0", 1) for i, g in enumerate(_CCCD_GROUPS))
_PHONE_GROUPED = "|".join(
    _grouped(f"p{i}", g, "0[35789]", 2) for i, g in enumerate(_PHONE_GROUPS)
)
_NSN = "|".join(
    [f"[35789]{_D}{{8}}"]
    + [_grouped(f"n{i}", g, "[35789]", 1) for i, g in enumerate(_NSN_GROUPS)]
)
# An explicit +84 tolerates the trunk zero people often keep: "+84 (0) 912 345 678".
_COUNTRY = r"(?:(?:\+84|\(\+84\))[ .\-]?(?:(?:\(0\)|0)[ .\-]?)?|(?:0084|84)[ .\-]?)"

# Precise patterns, in priority order: at one position the first matching alternative wins,
# so grouped and international forms are tried before bare digit runs.
_NUMBER = re.compile(
    rf"""
    {_LB}(?P<cccd_grouped>{_CCCD_GROUPED}){_RB}
  | (?<![\w@+])(?P<phone_intl>{_COUNTRY}(?:{_NSN})){_RB}
  | {_LB}(?P<phone_grouped>{_PHONE_GROUPED}){_RB}
  | {_LB}(?P<cccd>{_D}{{12}}){_RB}
  | {_LB}(?P<phone>0[35789]{_D}{{8}}){_RB}
  | {_LB}(?P<bhxh>{_D}{{10}}){_RB}
    """,
    re.VERBOSE,
)
_GROUP_KIND = {
    "cccd_grouped": "cccd",
    "phone_intl": "phone",
    "phone_grouped": "phone",
    "cccd": "cccd",
    "phone": "phone",
    "bhxh": "bhxh",
}
# Every identifier is at least 10 characters drawn from this set and starts with [0-9+(].
_CLUSTER = re.compile(r"[0-9+(][0-9 .\-()+]{9,}")
_CLUSTER_TAIL = " .-()+"
_NON_DIGIT = re.compile(r"[^0-9]")
_MOBILE_SECOND_DIGIT = frozenset("35789")

_EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]{1,64}")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}(?:\.[A-Za-z0-9\-]{1,63}){1,8}")
_EMAIL_LOCAL_EDGE = "._%+-"

# Labels, lower case, with and without diacritics. Matched at the end of the text before a
# number (after stripping a short gap and an optional "số"), so no regex scans the whole text.
# "tài khoản"/"account" alone may name a VNeID account, whose login *is* the ID number.
_ACCOUNT_LABELS: tuple[str, ...] = ("tài khoản", "tai khoan", "account")
_NON_PII_LABELS: tuple[str, ...] = (
    "số tài khoản", "so tai khoan", "ngân hàng", "ngan hang", "stk", "tk",
    "account no", "account number", "acct", "acc no", "a/c",
    "mã số thuế", "ma so thue", "mst", "tax", "tax code", "tax id",
    "mã số doanh nghiệp", "ma so doanh nghiep", "seri", "serial", "s/n", "imei",
)  # fmt: skip
_BHXH_LABELS: tuple[str, ...] = ("bhxh", "bảo hiểm xã hội", "bao hiem xa hoi")
# No tab: in tab-joined table rows the cell before a number is data, not its label.
_LABEL_GAP_CHARS = " :.#=-–—(["
_LABEL_MAX_GAP = 6

#: Label of a column or field whose numbers are not citizens' identifiers (bank, tax, serial).
NON_PII_LABEL = re.compile(
    r"(?<!\w)(?:s[ốô]\s+t[àa]i\s+kho[ảa]n|t[àa]i\s+kho[ảa]n\s+ng[âa]n\s+h[àa]ng|stk|"
    r"account(?:\s+n(?:o|umber))?|acct|a/c|m[ãa]\s+s[ốô]\s+thu[ếe]|mst|tax(?:\s+code)?|"
    r"m[ãa]\s+s[ốô]\s+doanh\s+nghi[ệe]p|s[ốô]\s+seri|serial|s/n|imei)(?!\w)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PiiReport:
    """Counts by kind for a piece of text, plus structural confidence of the ID numbers found."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    lines_with_hits: int = 0
    cccd_confidence_sum: float = 0.0
    cccd_confidence_min: float | None = None

    @property
    def total(self) -> int:
        """Return the number of identifiers of all kinds."""
        return sum(self.counts.values())

    @property
    def cccd_confidence_mean(self) -> float | None:
        """Return the mean confidence of the ID numbers found, or None when there are none."""
        n = self.counts.get("cccd", 0)
        return self.cccd_confidence_sum / n if n else None

    def merge(self, other: PiiReport) -> PiiReport:
        """Return the report for both pieces of text together."""
        mins = [m for m in (self.cccd_confidence_min, other.cccd_confidence_min) if m is not None]
        return PiiReport(
            counts={k: self.counts.get(k, 0) + other.counts.get(k, 0) for k in KINDS},
            lines_with_hits=self.lines_with_hits + other.lines_with_hits,
            cccd_confidence_sum=self.cccd_confidence_sum + other.cccd_confidence_sum,
            cccd_confidence_min=min(mins) if mins else None,
        )


def score_cccd(
    digits: str,
    *,
    reference_year: int | None = None,
    province_codes: frozenset[str] = PROVINCE_CODES,
) -> float:
    """Score in [0, 1] how well 12 digits fit the historic personal-ID structure.

    Factors multiply: province code in the known set (else 0.6 if it starts with 0, 0.3 if not);
    century/sex digit 0–3 (4–9 belong to future centuries: 0.5); year of birth not in the
    future (0.6 if it is) and not over 120 years ago (0.8); a single repeated digit 0.2.
    Structure only scores: callers must never drop an ID because of a low score.
    """
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        raise ValueError("score_cccd expects exactly 12 ASCII digits")
    year_now = reference_year or dt.datetime.now(dt.UTC).year
    score = _score_head(digits[:6], year_now, province_codes)
    if digits.count(digits[0]) == 12:
        score *= 0.2
    return score


@functools.lru_cache(maxsize=4096)
def _score_head(head: str, year_now: int, province_codes: frozenset[str]) -> float:
    """Score the structured first six digits (cached: a table repeats few provinces and years)."""
    score = 1.0
    province = head[:3]
    if province not in province_codes:
        score *= 0.6 if province[0] == "0" else 0.3
    century_digit = int(head[3])
    # 0/1 → 1900s, 2/3 → 2000s, 4/5 → 2100s, 6/7 → 2200s, 8/9 → 2300s (Circular 07/2016).
    year = 1900 + 100 * (century_digit // 2) + int(head[4:6])
    if century_digit > 3:
        score *= 0.5
    elif year > year_now:
        score *= 0.6
    elif year < year_now - 120:
        score *= 0.8
    return score


def _label_before(text: str, start: int) -> str | None:
    """Return "bhxh", "account" or "other" when a label ends just before ``start``."""
    head = text[max(0, start - 48) : start]
    stripped = head.rstrip(_LABEL_GAP_CHARS)
    # Fast exit for the common case: a cell delimiter or digit, not a word, precedes the number.
    if not stripped[-1:].isalpha() or len(head) - len(stripped) > _LABEL_MAX_GAP:
        return None
    words = " ".join(stripped[stripped.rfind("\n") + 1 :].lower().split())
    for filler in (" số", " so"):
        if words.endswith(filler) or words == filler[1:]:
            words = words[: -len(filler) + 1].rstrip(_LABEL_GAP_CHARS)
            break
    for labels, kind in (
        (_BHXH_LABELS, "bhxh"),
        (_NON_PII_LABELS, "other"),
        (_ACCOUNT_LABELS, "account"),
    ):
        for label in labels:
            if words.endswith(label) and (
                len(words) == len(label) or not words[-len(label) - 1].isalnum()
            ):
                return kind
    return None


def _email_spans(text: str) -> list[tuple[int, int]]:
    """Return the spans of e-mail addresses, found from each "@" outwards (no full-text scan)."""
    spans: list[tuple[int, int]] = []
    at = text.find("@")
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if domain and at > 0:
            # Walk back over the local part by matching the reversed text before "@".
            lo = max(0, at - 65)
            local = _EMAIL_LOCAL_REVERSED.match(text[at - 1 : lo - 1 if lo else None : -1])
            begin = at - len(local.group()) if local else at
            while begin < at and text[begin] in _EMAIL_LOCAL_EDGE:
                begin += 1
            end = domain.end()
            nxt = text[end : end + 1]
            is_whole = begin < at and not (nxt.isalnum() or nxt in ("_", "-"))
            if is_whole and (not spans or begin >= spans[-1][1]):
                spans.append((begin, end))
        at = text.find("@", at + 1)
    return spans


def _classify_digits(core: str) -> str | None:
    """Classify a plain digit run by length and prefix (the fast path for table cells)."""
    n = len(core)
    if n == 12:
        return "cccd"
    if n == 10:
        return "phone" if core[0] == "0" and core[1] in _MOBILE_SECOND_DIGIT else "bhxh"
    if n == 11 and core.startswith("84") and core[2] in _MOBILE_SECOND_DIGIT:
        return "phone"
    return None


def _number_hits(text: str) -> Iterator[tuple[int, str, str]]:
    """Yield (start, kind, digits) for each identifier-shaped number, before label rules."""
    size = len(text)
    for cluster in _CLUSTER.finditer(text):
        start = cluster.start()
        raw = cluster.group()
        core = raw.rstrip(_CLUSTER_TAIL)
        if core.isdigit():
            kind = _classify_digits(core)
            if kind is None:
                continue
            # The cluster is maximal, so only letters, "_" and "@" can touch the run.
            before = text[start - 1] if start else ""
            end = start + len(core)
            after = text[end] if end < size else ""
            if before.isalnum() or before in ("_", "@") or after.isalnum() or after in ("_", "@"):
                continue
            yield start, kind, core
            continue
        end = min(size, cluster.end() + 2)  # the right boundary looks two characters ahead
        for m in _NUMBER.finditer(text, start, end):
            group = m.lastgroup or "cccd"
            yield m.start(), _GROUP_KIND[group], m.group(group)


def detect_detailed(
    text: str,
    *,
    reference_year: int | None = None,
    province_codes: frozenset[str] = PROVINCE_CODES,
) -> PiiReport:
    """Count identifiers by kind in text, with line coverage and ID-number confidence.

    ``reference_year`` (default: this year) and ``province_codes`` only affect confidence.
    """
    if not unicodedata.is_normalized("NFC", text):
        # Labels carry diacritics; decomposed text (macOS, some PDFs) must match them too.
        text = unicodedata.normalize("NFC", text)
    counts = dict.fromkeys(KINDS, 0)
    emails = _email_spans(text) if "@" in text else []
    counts["email"] = len(emails)
    hit_starts = [begin for begin, _ in emails]
    email_index = 0
    conf_sum = 0.0
    conf_min: float | None = None
    year_now = reference_year or dt.datetime.now(dt.UTC).year
    for start, kind, digits in _number_hits(text):
        while email_index < len(emails) and emails[email_index][1] <= start:
            email_index += 1
        if email_index < len(emails) and emails[email_index][0] <= start:
            continue  # digits inside an e-mail address
        score = 0.0
        if kind == "cccd":
            if len(digits) != 12:
                digits = _NON_DIGIT.sub("", digits)
            score = score_cccd(digits, reference_year=year_now, province_codes=province_codes)
        prev = text[start - 1 : start]
        # Only a letter or a label gap can precede a labelled number; "," or tab cannot.
        label = _label_before(text, start) if prev.isalpha() or prev in _LABEL_GAP_CHARS else None
        if label == "other" or (label == "account" and not (kind == "cccd" and score == 1.0)):
            continue
        if label == "bhxh" and kind == "phone" and len(digits) == 10:
            kind = "bhxh"
        counts[kind] += 1
        hit_starts.append(start)
        if kind == "cccd":
            conf_sum += score
            conf_min = score if conf_min is None else min(conf_min, score)
    if emails:
        hit_starts.sort()
    return PiiReport(counts, _count_lines(text, hit_starts), conf_sum, conf_min)


def _count_lines(text: str, sorted_starts: list[int]) -> int:
    """Count the distinct lines that hold at least one of the sorted positions."""
    lines = 0
    line_end = -1
    for start in sorted_starts:
        if start > line_end:
            lines += 1
            line_end = text.find("\n", start)
            if line_end < 0:
                line_end = len(text)
    return lines


def detect(text: str) -> dict[str, int]:
    """Count identifiers in text by kind: every kind in KINDS is present, zero when absent."""
    return detect_detailed(text).counts
