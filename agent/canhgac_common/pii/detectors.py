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
  It counts only when its structural score (``score_cccd``: province code, century and sex
  digit, a birth year that fits the century) times its context factor is at least
  ``MIN_SCORE``: a plain 12-digit amount, stamp or payment code does not count.
- ``phone`` — Vietnamese mobile: ``0`` + a mobile prefix current in libphonenumber's metadata
  (``is_mobile``) + the rest, contiguous or grouped 4-3-3, 3-3-4, 3-4-3 or 4-6 with one
  consistent separator; or ``+84``/``(+84)``/``0084``/``84`` followed by the 9 national digits
  (contiguous, 3-3-3 or 2-3-4; an extra ``0`` or ``(0)`` is tolerated after an explicit
  ``+84``).
- ``bhxh`` — a standalone 10-digit run that is not a mobile number, counted only when a BHXH
  word (``BHXH``, ``mã số BHXH``, ``sổ BHXH``, ``bảo hiểm xã hội``) is its nearest context
  word: ten bare digits are as often a tax code, an invoice number or a timestamp. A 10-digit
  mobile-shaped number after a BHXH word is a BHXH number too.
- ``email`` — ``local@domain.tld`` with ASCII local part and domain; digits inside an e-mail
  address are not counted again as a phone.
- Context words (``context_factor``): the nearest one before a number (within
  ``_CONTEXT_CHARS`` characters; not across a tab: in a tab-joined table row the cell before a
  number is data, not its label; across a line end only when the line does not end a
  sentence, as when a PDF wraps "mã QR thanh toán:" away from its number) decides. Words naming something that is not a citizen's
  identifier (bank account ``STK``/``số tài khoản``, tax code, serial, ``mã QR``, payment,
  transaction, ``số hóa đơn``, ``mã hồ sơ``, voucher, case, decision and document numbers,
  money, other codes such as ``mã tra cứu``; not a bare ``mã``, a surname too) cancel the count when directly before the number (a few
  punctuation characters and ``số``/``là`` between) and lower it (``_LOWER``) when further
  away; an identifier's own word (``CCCD``, ``căn cước``, ``định danh``, ``ĐT``, ``SĐT``, …)
  raises it. A bare ``tài khoản``/``account`` is ambiguous, because a VNeID account *is* the
  ID number: directly after it, a 12-digit number with a perfect ID structure still counts.
  Words match with or without Vietnamese diacritics, in any case.
- Speed: a cheap first pass finds digit clusters (sre skips straight to digits); the precise
  patterns run only inside clusters of 10+ characters, and plain digit runs (CSV cells) are
  classified without a regex at all; context is looked up only when a letter or a label gap
  precedes the number.
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

_EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]{1,64}")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}(?:\.[A-Za-z0-9\-]{1,63}){1,8}")
_EMAIL_LOCAL_EDGE = "._%+-"

# Context words, written folded (lower case, no diacritics, "đ" as "d"; see ``fold``), so one
# list matches "Số tài khoản", "SO TAI KHOAN" and "so tai khoan" alike. Longest first in the
# pattern, so "so tai khoan" wins over "tai khoan".
_CONTEXT_WORDS: dict[str, tuple[str, ...]] = {
    "cccd": (
        "cccd", "can cuoc", "can cuoc cong dan", "cmnd", "cmt", "chung minh", "chung minh nhan dan",
        "dinh danh", "so dinh danh", "ma dinh danh", "ddcn", "vneid", "citizen id", "id card",
    ),
    "phone": (
        "dien thoai", "so dien thoai", "dt", "sdt", "dtdd", "di dong", "dd", "zalo",
        "lien he", "lien lac", "hotline", "phone", "tel", "mobile", "so dt",
    ),
    "bhxh": (
        "bhxh", "bao hiem xa hoi", "so bhxh", "ma so bhxh", "so so bhxh", "so bao hiem",
    ),
    "account": ("tai khoan", "account"),
    "other": (
        # bank, tax, serial
        "so tai khoan", "tai khoan ngan hang", "ngan hang", "stk", "tk", "account no",
        "account number", "acct", "acc no", "a/c", "the atm", "so the",
        "ma so thue", "mst", "tax", "tax code", "tax id", "ma so doanh nghiep", "seri", "serial",
        "so seri", "s/n", "imei", "ky hieu",
        # payments and accounting
        "ma qr", "qr", "qr code", "ma thanh toan", "thanh toan", "ma giao dich", "giao dich",
        "ma gd", "ma tham chieu", "tham chieu", "ref", "so hoa don", "hoa don", "so hd", "hd",
        "invoice", "so chung tu", "chung tu", "so ct", "ma don hang", "don hang", "van don",
        "so tien", "thanh tien", "tong tien", "tong cong", "so du",
        # files, cases, documents, other codes
        "ma ho so", "so ho so", "ho so", "so bien nhan", "bien nhan", "so vu viec", "vu viec",
        "so quyet dinh", "quyet dinh", "so van ban", "cong van", "so hieu", "ma buu gui",
        "ma vach", "barcode", "so lo", "bien lai", "ma khach hang", "ma kh", "ma don vi",
        "ma hang", "ma nop tien", "ma tra cuu", "ma bao mat", "ma xac thuc", "otp",
    ),
}  # fmt: skip
_CONTEXT_KIND = {word: kind for kind, words in _CONTEXT_WORDS.items() for word in words}
_CONTEXT = re.compile(
    r"(?<![a-z0-9/])(?:"
    + "|".join(
        re.escape(word).replace(r"\ ", r"\s+")
        for word in sorted(_CONTEXT_KIND, key=len, reverse=True)
    )
    + r")(?![a-z0-9/])"
)
# Between a word and the number it labels: punctuation and at most one filler word.
_IMMEDIATE_GAP = re.compile(r"[\s:.#=\-\u2013\u2014(\[]*(?:(?:so|la|cua|moi|cu)[\s:.#=\-(\[]*)?")
_CONTEXT_CHARS = 40
_SENTENCE_ENDS = frozenset((".", ";", "!", "?", ""))
_LABEL_GAP_CHARS = " :.#=-–—([\n"
# An ID's own word raises its score, a word of something else lowers it (see module docstring).
_RAISE = 1.5
_LOWER = 0.4
#: A number counts when its structural score times its context factor reaches this.
MIN_SCORE = 0.5


def _fold_table() -> dict[int, str]:
    table: dict[int, str] = {ord("đ"): "d", ord("Đ"): "d"}
    for code in range(0xC0, 0x1EFA):
        char = chr(code)
        base = unicodedata.normalize("NFD", char)[0]
        if base != char and base.isascii() and base.isalpha():
            table[code] = base.lower()
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """Return text lower-cased without Vietnamese diacritics, one character per character."""
    return text.translate(_FOLD).lower()


#: Label of a column or field whose numbers are not citizens' identifiers (bank, tax, serial).
NON_PII_LABEL = re.compile(
    r"(?<!\w)(?:s[ốô]\s+t[àa]i\s+kho[ảa]n|t[àa]i\s+kho[ảa]n\s+ng[âa]n\s+h[àa]ng|stk|"
    r"account(?:\s+n(?:o|umber))?|acct|a/c|m[ãa]\s+s[ốô]\s+thu[ếe]|mst|tax(?:\s+code)?|"
    r"m[ãa]\s+s[ốô]\s+doanh\s+nghi[ệe]p|s[ốô]\s+seri|serial|s/n|imei)(?!\w)",
    re.IGNORECASE,
)


@functools.cache
def _mobile_prefixes() -> frozenset[str]:
    """Return the 3-digit national prefixes of Vietnamese mobile numbers (libphonenumber).

    Every current Vietnamese mobile pattern is a 3-digit prefix followed by six free digits,
    so the prefix alone decides; computed once from the installed metadata.
    """
    import phonenumbers  # deferred: its metadata is only needed once

    prefixes = set()
    for prefix in range(300, 1000):
        if str(prefix)[0] not in "35789":
            continue
        number = phonenumbers.PhoneNumber(country_code=84, national_number=prefix * 10**6 + 123456)
        if phonenumbers.number_type(number) in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        ):
            prefixes.add(str(prefix))
    return frozenset(prefixes)


def is_mobile(national: str) -> bool:
    """Tell whether 9 national digits (no 0, no +84) form a current Vietnamese mobile number."""
    return len(national) == 9 and national[:3] in _mobile_prefixes()


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
    A number scoring below ``MIN_SCORE`` (after its context factor) is not counted.
    """
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        raise ValueError("score_cccd expects exactly 12 ASCII digits")
    return structure_score(digits, reference_year or this_year(), province_codes)


def structure_score(
    digits: str, year_now: int, province_codes: frozenset[str] = PROVINCE_CODES
) -> float:
    """Return ``score_cccd`` of 12 ASCII digits the caller has checked (the fast path)."""
    score = _score_head(digits[:6], year_now, province_codes)
    if digits.count(digits[0]) == 12:
        score *= 0.2
    return score


def this_year() -> int:
    """Return the current UTC year, the reference for years of birth."""
    return dt.datetime.now(dt.UTC).year


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


def context_of(text: str, start: int) -> tuple[str | None, bool]:
    """Return the nearest context word's kind before ``start`` and whether it is right there.

    Kinds: "cccd", "phone", "bhxh", "account" (ambiguous) and "other" (not an identifier).
    The window spans at most ``_CONTEXT_CHARS`` characters and stops at a tab (the cell before
    in a table row) and at a line end after a finished sentence (or an empty line).
    """
    lo = max(0, start - _CONTEXT_CHARS)
    window = text[lo:start]
    cut = window.rfind("\t")
    if cut >= 0:
        window = window[cut + 1 :]
    newline = window.rfind("\n")
    if newline >= 0:
        # A wrapped line (PDF, prose) keeps its label; a finished sentence does not.
        if window[:newline].rstrip()[-1:] in _SENTENCE_ENDS:
            window = window[newline + 1 :]
        else:
            window = window.replace("\n", " ")
    folded = fold(window)
    last = None
    for last in _CONTEXT.finditer(folded):  # noqa: B007 - the loop keeps the last match
        pass
    if last is None:
        return None, False
    kind = _CONTEXT_KIND[" ".join(last.group().split())]
    return kind, _IMMEDIATE_GAP.fullmatch(folded, last.end()) is not None


def context_factor(kind: str, score: float, text: str, start: int) -> tuple[str, float]:
    """Return the kind and the score of a number at ``start`` after its context words.

    ``kind`` is the number's shape ("cccd", "phone", or "bhxh" for ten non-mobile digits) and
    ``score`` its structural score; the number counts when the returned score reaches
    ``MIN_SCORE`` (module docstring).
    """
    context, is_immediate = context_of(text, start)
    if context is None:
        return kind, score if kind != "bhxh" else 0.0
    if context == "bhxh":
        if kind in ("bhxh", "phone"):
            return "bhxh", 1.0
        return kind, min(1.0, score * _RAISE)
    if kind == "bhxh":
        return kind, 0.0
    if context == "other":
        return kind, 0.0 if is_immediate else score * _LOWER
    if context == "account":
        # A VNeID account is the ID number itself: only a perfect ID survives the label.
        if is_immediate:
            return kind, score if kind == "cccd" and score == 1.0 else 0.0
        return kind, score * _LOWER
    if context == kind:
        return kind, min(1.0, score * _RAISE)
    return kind, score


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
        return "phone" if core[0] == "0" and is_mobile(core[1:]) else "bhxh"
    if n == 11 and core.startswith("84") and is_mobile(core[2:]):
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
    year_now = reference_year or this_year()
    for start, kind, digits in _number_hits(text):
        while email_index < len(emails) and emails[email_index][1] <= start:
            email_index += 1
        if email_index < len(emails) and emails[email_index][0] <= start:
            continue  # digits inside an e-mail address
        score = 1.0
        if kind == "cccd":
            if len(digits) != 12:
                digits = _NON_DIGIT.sub("", digits)
            score = structure_score(digits, year_now, province_codes)
        elif (
            kind == "phone"
            and not digits.isdigit()
            and not is_mobile(_NON_DIGIT.sub("", digits)[-9:])
        ):
            # Grouped and international forms: the last nine digits are the national number.
            continue
        prev = text[start - 1 : start]
        # Only a letter or a label gap can precede a labelled number; "," or tab cannot.
        if prev.isalpha() or prev in _LABEL_GAP_CHARS:
            kind, final = context_factor(kind, score, text, start)
        else:
            final = score if kind != "bhxh" else 0.0
        if final < MIN_SCORE:
            continue
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
