"""Official documents as PDF in the Decree 30/2020/NĐ-CP layout (WeasyPrint, no network).

Documents are always in Vietnamese, whatever the interface language, so they are rendered with
their own Jinja environment (no Flask, no translation catalog) from
``service/web/templates/documents/`` and the stylesheet ``decree30.css`` beside them.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from canhgac_common.pii.mask import mask_pii
from service.config import Settings
from service.core.db import utcnow

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
STYLESHEET = TEMPLATES / "documents" / "decree30.css"
BLANK = "…………………………"



class DocumentError(RuntimeError):
    """A document cannot be rendered (missing template, bad data)."""


def vn_document_date(d: date) -> str:
    """Return "ngày 05 tháng 01 năm 2027": days below 10 and months 1–2 zero-padded (Decree 30)."""
    day = f"{d.day:02d}" if d.day < 10 else str(d.day)
    month = f"{d.month:02d}" if d.month <= 2 else str(d.month)
    return f"ngày {day} tháng {month} năm {d.year}"


def place_date_line(place: str, d: date) -> str:
    """Return the place-date line, e.g. "Nhân Lý, ngày 05 tháng 01 năm 2027"."""
    return f"{place}, {vn_document_date(d)}"


def local_date(settings: Settings, moment: datetime | None = None) -> date:
    """Return the commune's calendar date at a moment (now by default)."""
    return (moment or utcnow()).astimezone(ZoneInfo(settings.timezone)).date()


def vn_upper(text: str) -> str:
    """Upper-case Vietnamese text, keeping it NFC (precomposed) for the PDF's text layer."""
    return unicodedata.normalize("NFC", text.upper())


def _commune_short(settings: Settings) -> str:
    name = settings.commune_name.strip()
    for prefix in ("Xã ", "xã ", "XÃ "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


@dataclass(frozen=True)
class DocumentHeader:
    """What the Decree 30 header block shows, left and right."""

    parent_agency: str  # "UBND TỈNH LẠNG SƠN"
    agency: str  # "ỦY BAN NHÂN DÂN XÃ NHÂN LÝ"
    number: str  # "Số: …/TB-UBND"
    place_date: str  # "Nhân Lý, ngày 05 tháng 01 năm 2027"
    nation: str = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    motto: str = "Độc lập - Tự do - Hạnh phúc"


def document_header(settings: Settings, symbol: str, issued_on: date) -> DocumentHeader:
    """Build the header for a document type symbol (TB, BB, BC) issued on a date."""
    return DocumentHeader(
        parent_agency=vn_upper(f"UBND tỉnh {settings.province_name}"),
        agency=vn_upper(f"Ủy ban nhân dân xã {_commune_short(settings)}"),
        number=f"Số: …/{symbol}-UBND",
        place_date=place_date_line(settings.document_place, issued_on),
    )


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["or_blank"] = lambda value: value if value not in (None, "") else BLANK
    env.filters["vn_number"] = vn_number
    return env


def vn_number(value: int | float) -> str:
    """Format a number the Vietnamese way: 1.234.567 (dot thousands), comma decimals."""
    if isinstance(value, float) and not value.is_integer():
        whole, frac = f"{value:,.1f}".split(".")
        return whole.replace(",", ".") + "," + frac
    return f"{int(value):,}".replace(",", ".")


def render_document_html(template: str, context: dict) -> str:
    """Render a document template (path under service/web/templates) to an HTML string."""
    try:
        tmpl = _environment().get_template(template)
    except Exception as exc:  # jinja2.TemplateNotFound and syntax errors alike
        raise DocumentError(f"document template {template}: {exc}") from exc
    html = tmpl.render(**context)
    return unicodedata.normalize("NFC", html)


def _offline_fetcher():
    # Documents embed everything (inline SVG, local fonts by name): only data: URIs may load,
    # so rendering never reaches the network or the file system.
    from weasyprint.urls import URLFetcher

    return URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)


def html_to_pdf(html: str) -> bytes:
    """Convert a document's HTML to PDF bytes with the Decree 30 stylesheet."""
    import weasyprint

    # WeasyPrint narrates every layout step at INFO; keep the service log for what matters.
    for name in ("weasyprint", "weasyprint.progress", "fontTools"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from weasyprint.urls import FatalURLFetchingError

    fetcher = _offline_fetcher()
    try:
        css = weasyprint.CSS(string=STYLESHEET.read_text(encoding="utf-8"), url_fetcher=fetcher)
        return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf(stylesheets=[css])
    except FatalURLFetchingError as exc:  # a BaseException in WeasyPrint: keep it ours
        raise DocumentError(f"documents may not load external resources ({exc})") from None


def render_document_pdf(template: str, context: dict) -> bytes:
    """Render a document template to PDF bytes (A4, Decree 30 margins, fonts and header)."""
    return html_to_pdf(render_document_html(template, context))


def _local(settings: Settings, moment: datetime | None) -> str:
    if moment is None:
        return BLANK
    local = moment.astimezone(ZoneInfo(settings.timezone))
    return f"{local:%H} giờ {local:%M} phút, {vn_document_date(local.date())}"


def _unit_label(unit: str | None) -> str | None:
    if not unit:
        return None
    from service.auth.models import UNITS

    return UNITS.get(unit, unit)


def pii_lines(pii_counts: dict | None) -> list[str]:
    """Return "label: count" lines for PII counts (never values), largest first."""
    items = sorted((pii_counts or {}).items(), key=lambda kv: (-int(kv[1]), kv[0]))
    from service.web.labels import label_vi

    return [f"{label_vi(kind, 'pii')}: {vn_number(int(count))}" for kind, count in items]


def _masked(value):
    return mask_pii(value) if isinstance(value, str) else value


def incident_context(incident, settings: Settings, *, issued_on: date | None = None,
                     symbol: str = "TB", data_class_labels: dict[str, str] | None = None) -> dict:
    """Return the facts of an incident that the notice and the minutes print."""
    labels = data_class_labels or {}
    form = dict(incident.form_data or {})
    issued_on = issued_on or local_date(settings)
    unit = _unit_label(incident.unit)
    # Printed documents leave the commune (Mẫu 08 goes to the Ministry): what people wrote is
    # printed with identifiers masked, like mails (issue #15, item 1); counts say how many.
    evidence = [
        {"filename": _masked(ev.filename), "size": ev.size, "sha256": ev.sha256}
        for ev in (incident.evidence or [])
    ]
    measures = [_masked(text) for text in (incident.containment_actions, incident.measures) if text]
    return {
        "header": document_header(settings, symbol, issued_on),
        "settings": settings,
        "org": {
            "name": settings.org_name, "address": settings.org_address,
            "phone": settings.org_phone, "website": settings.org_website,
        },
        "dpo": {
            "name": settings.dpo_name, "title": settings.dpo_title,
            "phone": settings.dpo_phone, "email": settings.dpo_email,
        },
        "incident": incident,
        "incident_no": incident.id,
        "occurred": _local(settings, _parse_time(form.get("occurred_at")) or incident.detected_at),
        "detected": _local(settings, incident.detected_at),
        "place": _masked(form.get("location")) or ", ".join(
            x for x in (unit, settings.org_name) if x
        ),
        "act": _masked(incident.title + (f". {incident.summary}" if incident.summary else "")),
        "involved": _masked(form.get("involved")) or unit,
        "data_classes": [labels.get(dc, dc) for dc in (incident.data_classes or [])],
        "pii": pii_lines(incident.pii_counts),
        "pii_total": sum(int(v) for v in (incident.pii_counts or {}).values()),
        "responsible": _masked(form.get("responsible")),
        "consequences": _masked(form.get("consequences") or incident.cause),
        "measures": measures,
        "evidence": evidence,
        "signer_name": settings.signer_name,
        "commune_short": _commune_short(settings),
    }


def _parse_time(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def render_breach_notice_pdf(incident, settings: Settings, *, issued_on: date | None = None,
                             data_class_labels: dict[str, str] | None = None) -> bytes:
    """Render Mẫu số 08, the personal-data breach notice to the Ministry of Public Security."""
    context = incident_context(incident, settings, issued_on=issued_on, symbol="TB",
                               data_class_labels=data_class_labels)
    return render_document_pdf("documents/breach_notice.html", context)


def render_minutes_pdf(incident, settings: Settings, *, issued_on: date | None = None,
                       data_class_labels: dict[str, str] | None = None) -> bytes:
    """Render the biên bản confirming the violation (Law 91/2025/QH15 Art. 23)."""
    context = incident_context(incident, settings, issued_on=issued_on, symbol="BB",
                               data_class_labels=data_class_labels)
    return render_document_pdf("documents/minutes.html", context)
