"""Mail bodies: Vietnamese text from templates/notify/, identifiers masked, checkpoint last.

Rendering uses its own Jinja environment (no Flask app context needed), so jobs, CLI
commands and threads can enqueue notifications the same way views do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from service.core.db import utcnow
from service.core.logging import mask_text
from service.web.labels import label_vi

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "web" / "templates" / "notify"
SUBJECT_MAX = 300

INCIDENT_KINDS = ("created", "escalated", "dismissed", "deadline_reminder", "acknowledged")
# Kinds whose mail asks the reader to acknowledge; the others link to the incident page.
ACK_KINDS = ("created", "escalated")

# Severity and state names come from service/web/labels.py (one vocabulary), in Vietnamese.
_SUBJECTS = {
    "created": "[Canh Gác] Sự cố mới #{id} (mức {severity}): {title}",
    "escalated": "[Canh Gác] KHẨN: sự cố #{id} chưa được xác nhận: {title}",
    "dismissed": "[Canh Gác] Sự cố #{id} đã bị bác bỏ: {title}",
    "deadline_reminder": "[Canh Gác] Nhắc hạn thông báo {hours} giờ — sự cố #{id}: {title}",
    "acknowledged": "[Canh Gác] Sự cố #{id} đã được xác nhận: {title}",
}
_INTROS = {
    "created": "Hệ thống Canh Gác ghi nhận một sự cố nghi ngờ lộ lọt dữ liệu. Đề nghị lãnh đạo "
               "UBND xã và Công an xã xác nhận đã nhận ngay.",
    "escalated": "Sự cố dưới đây CHƯA được xác nhận trong thời hạn quy định. Đề nghị xác nhận "
                 "đã nhận và xử lý ngay.",
    "dismissed": "Công an xã đã bác bỏ sự cố dưới đây.",
    "deadline_reminder": "Nhắc hạn: sự cố dưới đây liên quan dữ liệu cá nhân; thông báo cho cơ quan "
                         "chuyên trách bảo vệ dữ liệu cá nhân (Bộ Công an) phải gửi trước hạn.",
    "acknowledged": "Sự cố dưới đây đã được xác nhận đã nhận.",
}
_LINK_LABELS = {True: "Xác nhận đã nhận", False: "Xem sự cố"}


def _gettext(text: str, **values) -> str:
    # Vietnamese is the source language and recipients read Vietnamese; the marker keeps the
    # strings extractable for a catalog like the web templates' `_()`.
    return text % values if values else text


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=False,  # noqa: S701 - text/plain mail bodies, never HTML  # nosec B701
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["_"] = _gettext
    return env


@dataclass(frozen=True)
class RenderedMail:
    """A subject and a text/plain body ready for every channel."""

    subject: str
    body: str


def people_text(value: str | None) -> str:
    """Return text written by people with ID, phone and BHXH numbers masked.

    An incident's own text (title, summary) stays as written in the database, visible to police
    and leadership; it is masked here, on its way out to mail, webhook and command channels.
    """
    return mask_text(value or "").strip()


def local_time_text(value: datetime | None, zone: str) -> str:
    """Format an aware UTC datetime as dd/mm/yyyy HH:MM in the given time zone."""
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M")


def notice_deadline(incident, breach_notice_hours: int) -> datetime | None:
    """Return when the notice to the authority is due, or None if no personal data is involved."""
    if incident.notice_due_at is not None:
        return incident.notice_due_at
    if not incident.involves_personal_data or incident.detected_at is None:
        return None
    return incident.detected_at + timedelta(hours=breach_notice_hours)


def _subject(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= SUBJECT_MAX else one_line[: SUBJECT_MAX - 1] + "…"


def _zone_label(zone: str) -> str:
    return "giờ Việt Nam" if zone == "Asia/Ho_Chi_Minh" else zone


def render_incident_mail(
    kind: str, incident, settings, *, recipient_name: str, link: str | None,
    extra_text: str, checkpoint_note: str, checkpoint_size: int,
    cosigned_note: str | None = None, cosigned_size: int | None = None,
) -> RenderedMail:
    """Render the subject and body of an incident notification of the given kind."""
    if kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident notification kind {kind!r}")
    severity = label_vi(incident.severity, "severity").lower()
    title = people_text(incident.title)
    hours = settings.breach_notice_hours
    subject = _SUBJECTS[kind].format(id=incident.id, severity=severity, title=title, hours=hours)
    deadline = notice_deadline(incident, hours)
    body = _environment().get_template("incident.txt").render(
        recipient_name=people_text(recipient_name),
        intro=_INTROS[kind],
        incident_id=incident.id,
        title=title,
        summary=people_text(incident.summary),
        severity=severity,
        state=label_vi(incident.state, "incident_state"),
        detected_local=local_time_text(incident.detected_at, settings.timezone),
        deadline_local=local_time_text(deadline, settings.timezone) if deadline else None,
        is_overdue=bool(deadline and getattr(incident, "notice_sent_at", None) is None
                        and deadline <= utcnow()),
        zone_label=_zone_label(settings.timezone),
        hours=hours,
        extra_text=people_text(extra_text),
        link=link,
        link_label=_LINK_LABELS[kind in ACK_KINDS],
        **_witness(settings, checkpoint_note, checkpoint_size, cosigned_note, cosigned_size),
    )
    return RenderedMail(_subject(subject), body)


def render_user_mail(
    subject: str, text: str, settings, *, recipient_name: str, link: str | None,
    checkpoint_note: str, checkpoint_size: int,
    cosigned_note: str | None = None, cosigned_size: int | None = None,
) -> RenderedMail:
    """Render a generic notification (e.g. the monthly report reminder)."""
    body = _environment().get_template("message.txt").render(
        recipient_name=people_text(recipient_name),
        text=people_text(text),
        link=link,
        **_witness(settings, checkpoint_note, checkpoint_size, cosigned_note, cosigned_size),
    )
    return RenderedMail(_subject(people_text(subject)), body)


def _witness(settings, note: str, size: int, cosigned_note: str | None = None,
             cosigned_size: int | None = None) -> dict:
    return {
        "commune_name": settings.commune_name,
        "province_name": settings.province_name,
        "checkpoint_note": note,
        "checkpoint_size": size,
        "cosigned_note": cosigned_note,
        "cosigned_size": cosigned_size,
    }
