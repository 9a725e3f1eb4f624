"""The one identifier masker: every form people write an ID or phone number in, and near misses."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from canhgac_agent.paths import redact_for_log
from canhgac_common.pii.mask import MASK_TOKENS, mask_pii
from service.core.logging import mask_text

ZWSP = "\u200b"

# (raw, expected) — the forms of issue #15 and their neighbours.
MASKED = [
    ("/srv/CCCD 001-203-004-567.xlsx", "/srv/CCCD [cccd].xlsx"),
    ("001 203 004 567", "[cccd]"),
    ("001.203.004.567", "[cccd]"),
    ("001-203-004-567", "[cccd]"),
    ("001/203/004/567", "[cccd]"),
    ("001 - 203 - 004 - 567", "[cccd]"),
    ("0012 0300 4567", "[cccd]"),
    ("020 1 85 123456", "[cccd]"),
    ("CCCD001203004567.pdf", "CCCD[cccd].pdf"),
    ("HS_001203004567_ban_sao.jpg", "HS_[cccd]_ban_sao.jpg"),
    (f"001{ZWSP}203{ZWSP}004{ZWSP}567", "[cccd]"),
    (f"0{ZWSP}0{ZWSP}1{ZWSP}2{ZWSP}0{ZWSP}3{ZWSP}0{ZWSP}0{ZWSP}4{ZWSP}5{ZWSP}6{ZWSP}7", "[cccd]"),
    ("００１２０３００４５６７", "[cccd]"),  # full-width digits
    ("CCCD\u00a0001\u00a0203\u00a0004\u00a0567", "CCCD [cccd]"),  # no-break spaces
    ("001\u2013203\u2013004\u2013567", "[cccd]"),  # en dashes
    ("(+84) 912 345 678", "[phone]"),
    ("+84 (0) 912 345 678", "[phone]"),
    ("+84912345678", "[phone]"),
    ("+84 91 234 5678", "[phone]"),
    ("0084 912 345 678", "[phone]"),
    ("84912345678", "[phone]"),
    ("84.91.234.5678", "[phone]"),
    ("CCCD 008412345678", "CCCD [cccd]"),  # begins like the 0084 country code
    ("CCCD 0084 1234 5678", "CCCD [cccd]"),
    ("(+84) 1234 5678", "[bhxh]"),
    ("gọi 0912 345 678 nhé", "gọi [phone] nhé"),
    ("0912.345.678", "[phone]"),
    ("0912-345-678", "[phone]"),
    ("SĐT: 0912345678", "SĐT: [phone]"),
    ("CMND 123456789", "CMND [cmnd]"),
    ("CMND 123 456 789", "CMND [cmnd]"),
    ("mã BHXH 7912345678", "mã BHXH [bhxh]"),
    ("ID 1234567890123", "ID [số]"),
    ("100.200.100.200", "[cccd]"),  # an IPv4 shape is no excuse: 12 digits in threes
    ("tài khoản 0912345678, CCCD 001203004567", "tài khoản [phone], CCCD [cccd]"),
]

# Near misses that must come out exactly as they went in.
KEPT = [
    "2026-12-07",
    "07/12/2026",
    "7/12/2026",
    "07.12.2026",
    "2026-12-07 10:30",
    "07/12/2026 10:30:15",
    "2026-12-07T10:30:00+07:00",
    "2026-12-07T10:30:00.123456Z",
    "Screenshot 2026-12-07 103015.png",
    "IMG_20261207_103015.jpg",
    "từ 07/12/2026 - 31/12/2026",
    "07/12/2026-31/12/2026",
    "10:30",
    "Ngày 2026-03-02 lúc 10:30, 40 người, công văn 125/UBND",
    "Quyết định số 1234/QĐ-UBND ngày 05/11/2026",
    "0912 345",  # short
    "12345678",  # eight digits
    "v1.2.3",
    "Python 3.12.1",
    "Windows 10.0.19045.3803",
    "192.168.1.1",
    "10.0.0.1:8443",
    "123e4567-e89b-12d3-a456-426614174000",
    "550E8400-E29B-41D4-A716-446655440000",
    "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "d41d8cd98f00b204e9800998ecf8427e",
    "0123456789012345678901234567890123456789abcdef0123456789abcdef",
    "/home/lan/2024/bao cao 12.xlsx",
    "C:\\DuLieu\\HoTich\\2026\\12\\07\\so 15.docx",
    "Hộ tịch — bản sao",
    "",
]


@pytest.mark.parametrize(("raw", "expected"), MASKED)
def test_identifier_forms_are_masked(raw, expected):
    assert mask_pii(raw) == expected


@pytest.mark.parametrize("text", KEPT)
def test_near_misses_stay_as_written(text):
    assert mask_pii(text) is text or mask_pii(text) == text


def test_text_without_identifiers_is_not_normalised():
    decomposed = unicodedata.normalize("NFD", "Hồ sơ ＡＢ 2026")
    assert mask_pii(decomposed) == decomposed


def test_logs_and_agent_log_use_the_same_masker():
    for raw, expected in MASKED:
        assert mask_text(raw) == expected
        assert redact_for_log(raw) == expected


# ------------------------------------------------------------------------------ properties

SEPARATOR_CHARS = " .-/\\\u2013\u2014\u2212\u00a0\u202f\u3000"
INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e"
FULLWIDTH_DIGITS = "０１２３４５６７８９"
# No letters a-f: hexadecimal digests and UUIDs are the one exemption these texts cannot reach.
ALPHABET = ("0123456789" * 4 + FULLWIDTH_DIGITS + SEPARATOR_CHARS + INVISIBLE_CHARS
            + "()+:,_xyzCDĐđ\n")

# The checker's own reading of "after NFKC and removing separators": the masker's code is
# not reused, so a mistake in it shows here.
_INV = "[" + re.escape(INVISIBLE_CHARS) + "]"
_SEP = "[" + re.escape(" .-/\\\u2013\u2014\u2212") + "]"
_CHAIN = re.compile(f"[0-9]+(?:(?:{_INV}*(?:{_SEP}{_INV}*){{1,3}}|{_INV}+)[0-9]+)*")
# Shapes allowed to keep 12+ digits: dates (optionally with a time of day), versions.
_DATE = r"(?:\d{1,2}[./-]\d{1,2}[./-]\d{4}|\d{4}[./-]\d{1,2}[./-]\d{1,2})"
_ALLOWED = re.compile(
    rf"(?:{_DATE}(?:[ ./-]{{1,3}}{_DATE})*(?:[ ./-]{{1,3}}\d{{1,2}}(?:[ ./-]{{1,3}}\d{{1,2}}){{0,2}}"
    rf"|[ ./-]{{1,3}}\d{{4}}|[ ./-]{{1,3}}\d{{6}})?"
    r"|(?!84\.[35789])\d{1,2}\.\d{1,2}(?:\.\d{1,5})+)"
)


def long_digit_runs(text: str) -> list[str]:
    """Return the chains of 12+ digits left after NFKC and removing separators, minus exemptions."""
    normal = unicodedata.normalize("NFKC", text)
    found = []
    for chain in _CHAIN.finditer(normal):
        visible = re.sub(_INV, "", chain.group())
        digits = re.sub(r"[^0-9]", "", visible)
        if len(digits) >= 12 and not _ALLOWED.fullmatch(visible):
            found.append(digits)
    return found


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80))
@example("001-203-004-567")
@example(f"+84 (0) 912{ZWSP}345 678 001 203 004 567")
@example("2026-12-07 001203004567")
@example("0084 12 345 678")
@example("1.2 .008400840084")
@example("1.2.001203004567")
def test_no_twelve_digit_run_survives_in_any_text(text):
    assert long_digit_runs(mask_pii(text)) == []


def _spread(digits: str, seps: list[str]) -> str:
    return "".join(d + s for d, s in zip(digits, seps, strict=False)) + digits[len(seps):]


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"0[0-9]{11}", fullmatch=True),
    st.lists(st.sampled_from(["", "", "", " ", ".", "-", "/", ZWSP, "\u00a0", "\u2013"]),
             min_size=11, max_size=11),
    st.text(alphabet="xyzCDĐ _/.()", max_size=12),
    st.text(alphabet="xyzCDĐ _/.()", max_size=12),
    st.booleans(),
)
def test_an_id_number_never_survives_whatever_its_separators(digits, seps, before, after, wide):
    number = _spread(digits, seps)
    if wide:
        number = number.translate(str.maketrans("0123456789", FULLWIDTH_DIGITS))
    masked = mask_pii(f"{before}{number}{after}")
    flat = re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", masked))
    assert digits not in flat
    assert any(token in masked for token in MASK_TOKENS)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[35789][0-9]{8}", fullmatch=True),
       st.sampled_from(["0", "+84", "+84 ", "(+84) ", "+84 (0) ", "+84(0)", "0084 ", "84"]),
       st.sampled_from(["", " ", ".", "-"]))
def test_a_phone_number_never_survives_in_any_prefix_form(national, prefix, sep):
    grouped = sep.join((national[:2], national[2:5], national[5:]))
    masked = mask_pii(f"liên hệ {prefix}{grouped} gấp")
    assert national not in re.sub(r"[^0-9]", "", masked)
    assert masked.startswith("liên hệ [") and masked.endswith("] gấp")


FRAGMENTS = ["+84", "(+84)", "(0)", "0084", "84", "0", "9", "12", "345", "6789", "2026", "07",
             " ", ".", "-", "/", ZWSP, "x", "(", ")", "+", "０", "1.2", "10.0", "192.168", "255",
             " - ", ". "]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_no_twelve_digit_run_survives_near_prefixes_dates_and_versions(text):
    # Fragments that sit next to the exemptions (country codes, dates, versions) and IP shapes.
    assert long_digit_runs(mask_pii(text)) == []


def test_a_whole_policy_hash_survives_even_with_long_digit_runs():
    # Announcements name policy versions by their whole SHA-256: a 16-character prefix such
    # as 90a518d330391127 holds a 9-digit run and would be masked.
    digest = "90a518d33039112726491cf224dce30719a8aa563cd188bc86b763fa8d4dee88"
    text = f"Phiên bản trước: {digest}; phiên bản mới: {digest}."
    assert mask_pii(text) == text
    assert mask_pii(digest[:16]) != digest[:16]
