"""PII detectors: exact counts on citizen lists, near-misses, labels, confidence, properties."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pii_corpus import MOBILE_PREFIXES
from canhgac_common.pii import KINDS, detect, detect_detailed, score_cccd
from canhgac_common.pii.detectors import PROVINCE_CODES

# The commune's own plan (../shared/seed), copied so a clone alone runs this test.
SEED_DOC = Path(__file__).resolve().parent / "data" / "ke-hoach-de-an-06-xa-nhan-ly.txt"
PROVINCES = sorted(PROVINCE_CODES)
VN_LETTERS = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữự"
    "ỳýỷỹỵAĂÂBCDĐEÊGHIKLMNOÔƠPQRSTUƯVXYÀÁẢÃẠẰẮẲẴẶẦẤẨẪẬÈÉẺẼẸỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌỒỐỔỖỘỜỚỞỠỢ"
)
FILLER_ALPHABET = VN_LETTERS + " \n.,;:!?()\"'"


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {kind: n for kind, n in counts.items() if n}


def make_cccd(rng: random.Random, *, year: int | None = None) -> str:
    """A structurally valid ID: province, century/sex digit, two year digits, six random."""
    year = year if year is not None else rng.randint(1930, 2020)
    century = (year // 100 - 19) * 2 + rng.randint(0, 1)
    return f"{rng.choice(PROVINCES)}{century}{year % 100:02d}{rng.randint(0, 999_999):06d}"


def make_phone(rng: random.Random) -> str:
    prefix = rng.choice(MOBILE_PREFIXES)
    return prefix + "".join(rng.choice("0123456789") for _ in range(10 - len(prefix)))


def test_citizen_list_counts_every_id_and_phone_exactly() -> None:
    rng = random.Random(20260105)
    n_ids, n_phones = 137, 58
    names = ["Nguyễn Văn Bình", "Hoàng Thị Lan", "Lý Văn Tú", "Nông Thị Hoa", "Vi Văn Thắng"]
    lines = ["DANH SÁCH HỘ NGHÈO THÔN BẢN CHẮT, XÃ NHÂN LÝ", "STT | Họ tên | CCCD | Điện thoại"]
    phones_left = n_phones
    for i in range(n_ids):
        phone = ""
        if phones_left:
            phone = make_phone(rng)
            phones_left -= 1
        born = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1940, 2005)}"
        lines.append(f"{i + 1} | {rng.choice(names)} | {make_cccd(rng)} | {phone} | sinh {born}")
    text = "\n".join(lines)

    report = detect_detailed(text)

    assert nonzero(report.counts) == {"cccd": n_ids, "phone": n_phones}
    assert report.lines_with_hits == n_ids
    assert report.cccd_confidence_min == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "Mã giao dịch 1234567890123 (13 chữ số)",
        "Số 0201851234567 có 13 chữ số, 02018512345 có 11",
        "Số hồ sơ 20185123456 trong văn bản thường",
        "Ngày 12/05/2020, lúc 10:30; năm 2026 - 2030",
        "Số tiền 1.200.000 đồng, tổng 120.000.000.000 đồng, 1,200,000 VND",
        "Số tài khoản: 101234567890 tại VietinBank",
        "STK 0071000123456 Vietcombank; TK: 1903 1234 5670 12",
        "MST 0101234567-001 của doanh nghiệp; mã số thuế: 0101234567",
        "Số seri 020185123456 trên thiết bị",
        "Mã 1.020185123456 và 020185123456.5 và 020185123456-01",
        "Tệp scan_020185123456.pdf và HS020185123456",
        "Thẻ BHYT GD4797932123456",
    ],
)
def test_near_misses_are_not_counted(text: str) -> None:
    assert nonzero(detect(text)) == {}


@pytest.mark.parametrize(
    "text",
    [
        "CCCD: 020185123456",
        "Số định danh 020 185 123 456",
        "Số định danh 020-1-85-123456",
        "Số CCCD 0201 8512 3456.",
        "(020185123456)",
        "Căn cước:020185123456;",
    ],
)
def test_id_numbers_in_common_forms(text: str) -> None:
    assert nonzero(detect(text)) == {"cccd": 1}


@pytest.mark.parametrize(
    "text",
    [
        "ĐT: 0912345678",
        "0912.345.678",
        "0912 345 678",
        "091 234 5678",
        "091-2345-678",
        "0912-345678",
        "+84 912 345 678",
        "+84912345678",
        "(+84) 912.345.678",
        "+84 (0) 912 345 678",
        "84912345678",
        "0084 91 234 5678",
        "Zalo 0387654321.",
    ],
)
def test_mobile_numbers_in_common_forms(text: str) -> None:
    assert nonzero(detect(text)) == {"phone": 1}


def test_mixed_separators_and_landlines_are_not_phones() -> None:
    # One inconsistent separator or an 02x landline prefix is not a mobile number.
    assert detect("0912.345-678")["phone"] == 0
    assert detect("ĐT cơ quan 0205 3812 345")["phone"] == 0
    assert detect("ĐT cơ quan 02053812345")["phone"] == 0


def test_bhxh_and_phone_are_told_apart_by_prefix_and_label() -> None:
    # Ten bare digits that are no mobile number are as often a tax code or an invoice number:
    # a BHXH number counts only after its own word.
    assert nonzero(detect("Số sổ 2012345678")) == {}
    assert nonzero(detect("Số sổ BHXH 2012345678")) == {"bhxh": 1}
    assert nonzero(detect("Gọi 0812345678")) == {"phone": 1}
    assert nonzero(detect("Mã số BHXH: 0812345678")) == {"bhxh": 1}
    assert nonzero(detect("Số sổ BHXH 0312345678")) == {"bhxh": 1}
    # Since 08/2025 the ID number is the BHXH number: a 12-digit one stays an ID.
    assert nonzero(detect("Mã số BHXH: 020185123456")) == {"cccd": 1}


def test_vneid_account_label_does_not_hide_an_id_number() -> None:
    assert nonzero(detect("Tài khoản: 020185123456 (VNeID)")) == {"cccd": 1}
    # The same label in front of a bank-like number (province 101 does not exist) is skipped.
    assert nonzero(detect("Tài khoản: 101234567890")) == {}


def test_labels_in_decomposed_unicode_are_recognised() -> None:
    text = unicodedata.normalize("NFD", "Số tài khoản: 0912345678; MÃ SỐ THUẾ 2012345678")
    assert nonzero(detect(text)) == {}


def test_emails_are_counted_and_their_digits_are_not() -> None:
    text = (
        "Liên hệ: nguyen.van.binh@gmail.com, 0912345678@nhanly.langson.gov.vn, "
        "tu.0987654321.ly@yahoo.com.vn; không phải: @abc, a@b, x@.vn"
    )
    assert nonzero(detect(text)) == {"email": 3}


def test_detailed_report_lines_and_confidence() -> None:
    text = "Ông A 020185123456\nÔng B 003185123456 và 0912345678\n\nBà C a@b.vn\nkhông có gì"
    report = detect_detailed(text, reference_year=2026)
    assert nonzero(report.counts) == {"cccd": 2, "phone": 1, "email": 1}
    assert report.lines_with_hits == 3
    assert report.cccd_confidence_min == pytest.approx(0.6)  # no province 003
    assert report.cccd_confidence_mean == pytest.approx((1.0 + 0.6) / 2)
    assert report.total == 4
    assert detect_detailed("").cccd_confidence_mean is None


def test_a_low_structural_score_does_not_count() -> None:
    # 999… (no province, century 9, one digit), 120… (no 0xx province), 020585… (born 2185).
    for digits in ("999999999999", "120185123456", "003585123456"):
        assert score_cccd(digits, reference_year=2026) < 0.5
        assert nonzero(detect(f"Mã {digits}")) == {}
    # After the ID's own word a middling score is raised: 0.36 (no province 003, born 2050)
    # times 1.5 counts.
    assert score_cccd("003250123456", reference_year=2026) == pytest.approx(0.36)
    assert nonzero(detect("Số CCCD: 003250123456")) == {"cccd": 1}
    assert nonzero(detect("Ghi chú 003250123456")) == {}


@pytest.mark.parametrize(
    "text",
    [
        "Mã QR thanh toán: 020185123456",
        "mã QR 020185123456",
        "Quét mã QR, mã thanh toán 020185123456",
        "Số hóa đơn: 020185123456",
        "so hoa don 020185123456",
        "Mã hồ sơ 020185123456",
        "MÃ HỒ SƠ: 020185123456",
        "mã giao dịch 020185123456",
        "Số seri biên lai 020185123456",
        "STK: 0912345678 (MB Bank)",
        "Mã số thuế: 0312345678",
        "Mã tra cứu hóa đơn 020185123456",
        # Wrapped by a PDF onto the next line: the label still counts.
        "Hộ ông A; mã QR thanh toán:\n020185123456",
    ],
)
def test_context_words_cancel_a_number(text: str) -> None:
    assert nonzero(detect(text)) == {}


def test_context_words_lower_a_number_further_away_and_an_id_word_wins() -> None:
    assert nonzero(detect("Mã QR nộp phí của hộ: 020185123456")) == {}
    assert nonzero(detect("STK của ông A (CCCD 020185123456)")) == {"cccd": 1}
    assert nonzero(detect("CCCD 020185123456, STK 0912345678")) == {"cccd": 1}
    # A finished sentence ends the context: the label of the line before does not reach.
    assert nonzero(detect("Nộp qua mã QR.\n020185123456 là số định danh")) == {"cccd": 1}
    # Mã is also a surname in Lạng Sơn: "Mã Thị Lan 020185123456" is a citizen.
    assert nonzero(detect("Mã Thị Lan 020185123456")) == {"cccd": 1}


def test_phones_need_a_prefix_in_use() -> None:
    assert nonzero(detect("ĐT 0912345678")) == {"phone": 1}
    assert nonzero(detect("ĐT 0502345678")) == {}  # 050 is allotted to no carrier
    assert nonzero(detect("ĐT +84 502 345 678")) == {}
    assert nonzero(detect("ĐT 0896123456")) == {"phone": 1}
    assert nonzero(detect("ĐT 0891123456")) == {}  # 089 only as 0896-0899


def test_report_merge_adds_counts_and_keeps_minimum() -> None:
    a = detect_detailed("020185123456\n0912345678", reference_year=2026)
    b = detect_detailed("099185123456", reference_year=2026)
    merged = a.merge(b)
    assert merged.counts == detect_detailed(
        "020185123456\n0912345678\n099185123456", reference_year=2026
    ).counts
    assert merged.lines_with_hits == 3
    assert merged.cccd_confidence_min == pytest.approx(0.6)
    assert merged.cccd_confidence_mean == pytest.approx(0.8)


def test_score_follows_the_historic_structure() -> None:
    assert score_cccd("020185123456", reference_year=2026) == 1.0  # Lạng Sơn, male, 1985
    assert score_cccd("001305123456", reference_year=2026) == 1.0  # Hà Nội, female, 2005
    assert score_cccd("003185123456", reference_year=2026) == pytest.approx(0.6)  # no 003
    assert score_cccd("120185123456", reference_year=2026) == pytest.approx(0.3)
    assert score_cccd("020585123456", reference_year=2026) == pytest.approx(0.5)  # 2185?
    assert score_cccd("020250123456", reference_year=2026) == pytest.approx(0.6)  # born 2050
    assert score_cccd("020250123456", reference_year=2051) == 1.0
    assert score_cccd("020001123456", reference_year=2026) == pytest.approx(0.8)  # 1901
    assert score_cccd("000000000000", reference_year=2026) == pytest.approx(0.6 * 0.8 * 0.2)
    # The province list is a setting: a code added later scores as known.
    assert score_cccd("003185123456", province_codes=PROVINCE_CODES | {"003"}) == 1.0
    for bad in ("02018512345", "0201851234567", "02018512345x", "０２０１８５１２３４５６"):
        with pytest.raises(ValueError):
            score_cccd(bad)


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
@settings(deadline=None)  # shared CI cores: no per-example timing
def test_score_is_a_confidence_for_any_twelve_digits(digits: str) -> None:
    score = score_cccd(digits, reference_year=2026)
    assert 0.0 < score <= 1.0
    assert (score == 1.0) == (
        digits[:3] in PROVINCE_CODES
        and digits[3] in "0123"
        and 1906 <= 1900 + 100 * (int(digits[3]) // 2) + int(digits[4:6]) <= 2026
        and len(set(digits)) > 1
    )


def test_seed_plan_document_holds_no_identifiers() -> None:
    text = SEED_DOC.read_text(encoding="utf-8")
    assert len(text) > 10_000
    assert nonzero(detect(text)) == {}


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_detect_never_raises_and_reports_every_kind(text: str) -> None:
    counts = detect(text)
    assert set(counts) == set(KINDS)
    assert all(n >= 0 for n in counts.values())
    report = detect_detailed(text)
    assert report.lines_with_hits <= min(report.total, text.count("\n") + 1)


@given(st.text(alphabet=st.characters(codec="utf-8")), st.text(st.characters(codec="utf-8")))
@settings(max_examples=200, deadline=None)
def test_lines_are_independent(first: str, second: str) -> None:
    # A line that ends a sentence ends the context of its words ("STK\n0912…" is one label
    # wrapped onto the next line; "STK.\n0912…" is not).
    first += "."
    a, b = detect(first), detect(second)
    assert detect(first + "\n" + second) == {kind: a[kind] + b[kind] for kind in KINDS}


def test_a_label_wrapped_onto_the_next_line_still_applies() -> None:
    assert nonzero(detect("STK\n0912345678")) == {}
    assert nonzero(detect("STK.\n0912345678")) == {"phone": 1}


_digits = st.integers(min_value=0, max_value=10**6 - 1)
_cccd = st.builds(
    lambda province, century, yy, rest: f"{province}{century}{yy:02d}{rest:06d}",
    st.sampled_from(PROVINCES),
    st.integers(0, 3),
    st.integers(0, 99),
    _digits,
)
_mobile = st.builds(
    lambda prefix, rest: prefix + f"{rest:07d}"[: 10 - len(prefix)],
    st.sampled_from(MOBILE_PREFIXES),
    st.integers(0, 10**7 - 1),
)


def _phone_form(number: str, form: int) -> str:
    """Render a mobile number the way people write it."""
    if form == 1:
        return f"{number[:4]}.{number[4:7]}.{number[7:]}"
    if form == 2:
        return f"{number[:3]} {number[3:6]} {number[6:]}"
    if form == 3:
        return f"+84 {number[1:4]} {number[4:7]} {number[7:]}"
    if form == 4:
        return f"(+84){number[1:]}"
    return number


_phone = st.builds(_phone_form, _mobile, st.integers(0, 4))
_bhxh = st.builds(
    lambda digits: f"BHXH {digits}", st.text(alphabet="0123456789", min_size=10, max_size=10)
)
_email = st.builds(
    lambda user, n, domain: f"{user}{n}@{domain}",
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
    st.integers(0, 10**12),
    st.sampled_from(["gmail.com", "nhanly.langson.gov.vn", "yahoo.com.vn"]),
)
_item = st.one_of(
    st.tuples(st.just("cccd"), _cccd),
    st.tuples(st.just("phone"), _phone),
    st.tuples(st.just("bhxh"), _bhxh),
    st.tuples(st.just("email"), _email),
)


@given(
    st.lists(st.tuples(st.text(alphabet=FILLER_ALPHABET, max_size=40), _item), max_size=25),
    st.text(alphabet=FILLER_ALPHABET, max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_generated_identifiers_in_vietnamese_text_are_counted_exactly(
    parts: list[tuple[str, tuple[str, str]]], tail: str
) -> None:
    # A finished sentence and plain words before each value: filler (which may happen to spell
    # a context word such as "tk") can never be its label.
    text = "".join(
        f"{filler}.\nNgười được ghi tên là {value} " for filler, (_, value) in parts
    ) + tail
    expected = dict.fromkeys(KINDS, 0)
    for _, (kind, _) in parts:
        expected[kind] += 1
    assert detect(text) == expected
