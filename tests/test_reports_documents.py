"""Official documents: Decree 30 date line, layout (A4, margins, serif fonts), Mẫu số 08, biên bản."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import unicodedata
from datetime import UTC, date, datetime

import pypdf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.config import load_settings
from service.incidents.models import Incident, IncidentEvidence
from service.reports.documents import (
    DocumentError,
    html_to_pdf,
    place_date_line,
    render_breach_notice_pdf,
    render_document_pdf,
    render_minutes_pdf,
    vn_document_date,
)

MM = 72 / 25.4  # PDF points per millimetre
A4 = (210 * MM, 297 * MM)
SERIF = re.compile(r"^(?:[A-Z]{6}\+)?(Times|TimesNewRoman|Tinos|LiberationSerif|Liberation-Serif|DejaVu-?Serif)",
                   re.IGNORECASE)


@pytest.mark.parametrize(("day", "expected"), [
    (date(2027, 1, 5), "ngày 05 tháng 01 năm 2027"),
    (date(2027, 2, 28), "ngày 28 tháng 02 năm 2027"),
    (date(2027, 3, 9), "ngày 09 tháng 3 năm 2027"),
    (date(2026, 12, 10), "ngày 10 tháng 12 năm 2026"),
    (date(2026, 10, 1), "ngày 01 tháng 10 năm 2026"),
    (date(2026, 11, 25), "ngày 25 tháng 11 năm 2026"),
])
def test_vn_document_date_examples(day, expected):
    assert vn_document_date(day) == expected


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2999, 12, 31)))
def test_vn_document_date_pads_only_small_days_and_first_months(d):
    match = re.fullmatch(r"ngày (\d+) tháng (\d+) năm (\d+)", vn_document_date(d))
    assert match
    day_text, month_text, year_text = match.groups()
    assert (int(day_text), int(month_text), int(year_text)) == (d.day, d.month, d.year)
    assert len(day_text) == 2  # days < 10 get a zero, others already have two digits
    assert month_text == (f"{d.month:02d}" if d.month <= 2 else str(d.month))


def test_place_date_line():
    assert place_date_line("Nhân Lý", date(2027, 1, 5)) == "Nhân Lý, ngày 05 tháng 01 năm 2027"


def _settings(**overrides):
    base = {"dpo_name": "Hoàng Văn Dũng", "dpo_phone": "0205 3888 000",
            "dpo_email": "congan.nhanly@langson.gov.vn", "org_website": "nhanly.langson.gov.vn",
            "signer_name": "Vương Văn Sơn"}
    return load_settings({**base, **overrides}, environ={})


def _incident() -> Incident:
    incident = Incident(
        id=42, title="Sao chép danh sách hộ nghèo ra thiết bị lưu trữ di động",
        summary="Tệp danh sách hộ nghèo, hộ cận nghèo năm 2026 bị sao chép ra USB ngoài phạm vi công vụ.",
        state="contained", severity="high", origin="rule", unit="vh_xh",
        data_classes=["ho_ngheo", "bao_tro_xa_hoi"], pii_counts={"cccd": 1250, "phone": 37},
        form_data={"location": "Phòng Văn hóa - Xã hội, trụ sở UBND xã Nhân Lý"},
        involves_personal_data=True, detected_at=datetime(2027, 1, 5, 2, 30, tzinfo=UTC),
        containment_actions="Thu hồi thiết bị, khóa tài khoản người dùng liên quan.",
        measures="Rà soát quyền truy cập thư mục dữ liệu.",
    )
    incident.evidence.append(IncidentEvidence(filename="anh-chup-usb.jpg", size=123456,
                                              sha256="ab" * 32, stored_name="x"))
    return incident


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return unicodedata.normalize("NFC", "\n".join(p.extract_text() for p in reader.pages))


def _fonts(pdf: bytes) -> set[str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    names = set()
    for page in reader.pages:
        fonts = page.get("/Resources", {}).get("/Font", {})
        for ref in fonts.values():
            names.add(str(ref.get_object()["/BaseFont"]).lstrip("/"))
    return names


def _text_positions(pdf: bytes) -> list[tuple[int, float, float, str]]:
    """Return (page, x, y, text) of every text run, in PDF points from the bottom left."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    runs = []
    for number, page in enumerate(reader.pages):
        def visit(text, cm, tm, _font, _size, number=number):
            if text.strip():
                x = cm[0] * tm[4] + cm[2] * tm[5] + cm[4]
                y = cm[1] * tm[4] + cm[3] * tm[5] + cm[5]
                runs.append((number, x, y, text))
        page.extract_text(visitor_text=visit)
    return runs


@pytest.fixture(scope="module")
def notice_pdf() -> bytes:
    return render_breach_notice_pdf(_incident(), _settings(), issued_on=date(2027, 1, 5),
                                    data_class_labels={"ho_ngheo": "Hộ nghèo, hộ cận nghèo"})


@pytest.fixture(scope="module")
def minutes_pdf() -> bytes:
    return render_minutes_pdf(_incident(), _settings(), issued_on=date(2027, 2, 14))


def test_notice_header_title_and_sections(notice_pdf):
    text = _text(notice_pdf)
    lines = [line.strip() for line in text.splitlines()]
    for expected in ("UBND TỈNH LẠNG SƠN", "ỦY BAN NHÂN DÂN XÃ NHÂN LÝ", "Số: …/TB-UBND",
                     "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
                     "Nhân Lý, ngày 05 tháng 01 năm 2027", "THÔNG BÁO",
                     "VI PHẠM QUY ĐỊNH BẢO VỆ DỮ LIỆU CÁ NHÂN",
                     "1. Thông tin về tổ chức", "2. Mô tả hành vi vi phạm",
                     "3. Tài liệu kèm theo", "4. Cam kết", "Nơi nhận:",
                     "TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH", "Vương Văn Sơn"):
        assert expected in lines, f"missing line {expected!r}"
    assert "Kính gửi: Cơ quan chuyên trách bảo vệ dữ liệu cá nhân, Bộ Công an." in text
    # Section 1: organisation and the person responsible for personal-data protection.
    for expected in ("Ủy ban nhân dân xã Nhân Lý", "Hoàng Văn Dũng", "Trưởng Công an xã",
                     "0205 3888 000", "congan.nhanly@langson.gov.vn", "nhanly.langson.gov.vn"):
        assert expected in text
    # Section 2: counts of personal data by kind (never values), labels from the policy.
    assert "Số định danh cá nhân (CCCD): 1.250" in text
    assert "Số điện thoại: 37" in text
    assert "Hộ nghèo, hộ cận nghèo" in text
    assert "Thu hồi thiết bị, khóa tài khoản người dùng liên quan." in text
    assert "Rà soát quyền truy cập thư mục dữ liệu." in text
    assert "09 giờ 30 phút, ngày 05 tháng 01 năm 2027" in text  # 02:30 UTC, shown in local time
    assert "anh-chup-usb.jpg" in text


def test_vietnamese_text_survives_intact(notice_pdf):
    text = _text(notice_pdf)
    # Every precomposed letter of these words comes back, none replaced or decomposed.
    for word in ("Độc lập", "Hạnh phúc", "ỦY BAN", "bảo vệ dữ liệu", "Hậu quả", "Cam kết",
                 "chịu trách nhiệm", "Thư điện tử"):
        assert word in text
    assert "\ufffd" not in text


def test_notice_is_a4_portrait_with_serif_fonts_embedded(notice_pdf):
    reader = pypdf.PdfReader(io.BytesIO(notice_pdf))
    assert len(reader.pages) >= 2  # the page number rule matters
    for page in reader.pages:
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert abs(width - A4[0]) < 1 and abs(height - A4[1]) < 1
    fonts = _fonts(notice_pdf)
    assert fonts, "no fonts embedded"
    assert all(SERIF.match(name) for name in fonts), fonts
    assert any("bold" in name.lower() for name in fonts)
    assert any("italic" in name.lower() for name in fonts)  # place-date line, Nơi nhận


def test_notice_text_stays_inside_the_decree_margins(notice_pdf):
    all_runs = _text_positions(notice_pdf)
    # Page numbers sit in the top margin on purpose (Decree 30: centred, from page 2).
    numbers = [r for r in all_runs if r[0] > 0 and r[3].strip().isdigit()]
    runs = [r for r in all_runs if r not in numbers]
    assert runs and numbers
    for _, x, y, _ in numbers:
        assert A4[1] - y < 20 * MM
        assert abs(x - (30 * MM + (A4[0] - 45 * MM) / 2)) < 5 * MM  # centred over the text
    left = min(x for _, x, _, _ in runs)
    top = max(y for _, _, y, _ in runs)
    bottom = min(y for _, _, y, _ in runs)
    assert 30 * MM - 1 <= left <= 35 * MM, left / MM  # left margin 30–35 mm
    assert A4[1] - top >= 20 * MM - 1, (A4[1] - top) / MM  # top margin ≥ 20 mm
    assert bottom >= 20 * MM - 3, bottom / MM  # bottom margin ≥ 20 mm (baseline)
    # The body starts at the left margin; its paragraphs are indented 1 cm.
    body = [x for _, x, _, t in runs if t.startswith("Căn cứ Luật")]
    assert body and abs(body[0] - (left + 10 * MM)) < 1.5, (body, left)


def test_pages_after_the_first_are_numbered(notice_pdf):
    runs = _text_positions(notice_pdf)
    in_top_margin = [(page, t.strip()) for page, _, y, t in runs if A4[1] - y < 20 * MM]
    pages = len(pypdf.PdfReader(io.BytesIO(notice_pdf)).pages)
    assert sorted(in_top_margin) == [(n, str(n + 1)) for n in range(1, pages)]


def test_minutes(minutes_pdf):
    text = _text(minutes_pdf)
    lines = [line.strip() for line in text.splitlines()]
    for expected in ("BIÊN BẢN", "Xác nhận vi phạm quy định bảo vệ dữ liệu cá nhân", "Số: …/BB-UBND",
                     "Nhân Lý, ngày 14 tháng 02 năm 2027", "ỦY BAN NHÂN DÂN XÃ NHÂN LÝ"):
        assert expected in lines, expected
    assert "Điều 23 Luật Bảo vệ dữ liệu cá nhân số 91/2025/QH15" in text.replace("\n", " ")
    assert "ĐẠI DIỆN CÔNG AN XÃ" in text
    assert "Số định danh cá nhân (CCCD): 1.250" in text
    assert all(SERIF.match(name) for name in _fonts(minutes_pdf))


def test_documents_never_load_external_resources():
    html = ('<html><body><p>x</p><img src="http://127.0.0.1:9/leak.png">'
            '<img src="file:///etc/passwd"></body></html>')
    with pytest.raises(DocumentError, match="external resources"):
        html_to_pdf(html)


def test_unknown_template_is_a_document_error():
    with pytest.raises(DocumentError):
        render_document_pdf("documents/no-such-template.html", {})


def test_empty_organisation_fields_print_dotted_lines():
    pdf = render_breach_notice_pdf(_incident(), load_settings({}, environ={}),
                                   issued_on=date(2027, 3, 15))
    text = _text(pdf)
    assert "Điện thoại: …" in text
    assert "Nhân Lý, ngày 15 tháng 3 năm 2027" in text


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
def test_rendered_page_ink_respects_the_margins(notice_pdf, tmp_path):
    from PIL import Image

    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(notice_pdf)
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=60)
    image = Image.open(next(tmp_path.glob("page*.png"))).convert("L")
    dpmm = image.width / 210
    ink = image.point(lambda v: 255 if v < 128 else 0).getbbox()
    assert ink is not None
    left, top, right, bottom = (v / dpmm for v in ink)
    assert left >= 30 - 1 and top >= 20 - 1
    assert right <= 210 - 15 + 1 and bottom <= 297 - 20 + 1
    assert image.height / image.width == pytest.approx(297 / 210, rel=0.01)


def test_printed_documents_mask_identifiers_people_wrote():
    from service.reports.documents import incident_context

    incident = _incident()
    incident.summary = "Ảnh CCCD 001.203.004.567 bị gửi; người gửi +84 (0) 912 345 678"
    incident.form_data = {"location": "nhà số 5, SĐT 0912-345-678", "involved": "ông A 0987654321",
                          "responsible": "bà B, CMND 123 456 789", "consequences": "lộ 001203004567"}
    incident.containment_actions = "Gọi 0912\u200b345\u200b678 để thu hồi"
    incident.evidence[0].filename = "CCCD 001-203-004-567.jpg"
    context = incident_context(incident, _settings())
    text = json.dumps({k: context[k] for k in ("place", "act", "involved", "responsible",
                                                "consequences", "measures", "evidence")},
                      ensure_ascii=False)
    digits = re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", text))
    for number in ("001203004567", "912345678", "0987654321", "123456789"):
        assert number not in digits
    assert "[cccd]" in context["act"] and context["evidence"][0]["filename"] == "CCCD [cccd].jpg"
    # The incident keeps what was written; settings (the office's own numbers) print as set.
    assert "001.203.004.567" in incident.summary
    assert context["dpo"]["phone"] == _settings().dpo_phone
