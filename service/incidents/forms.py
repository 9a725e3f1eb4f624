"""Web forms: the report form built from its YAML definition, and the workflow step forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from service.incidents.schemas import FormDefinition, FormField
from service.incidents.workflow import NOTICE_CHANNELS
from service.web.forms import Form

DATETIME_FORMAT = "%Y-%m-%dT%H:%M"


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes (big touch targets on phones, unlike a multiple select)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def local_now_text(timezone: str, now: datetime | None = None) -> str:
    """Return now in the commune's time zone as a datetime-local value."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone)).strftime(DATETIME_FORMAT)


def to_utc(value: datetime | None, timezone: str) -> datetime | None:
    """Read a datetime-local value (the commune's wall clock) as an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)


def _wtf_field(spec: FormField, locale: str, timezone: str):
    label = spec.label.get(locale)
    description = spec.help.get(locale) if spec.help else ""
    # InputRequired for numbers and dates: DataRequired would answer "required" to a wrong
    # date, replacing the "not a valid date" message the person needs.
    checks = [InputRequired() if spec.type in ("number", "datetime") else DataRequired()] \
        if spec.required else [Optional()]
    render_kw: dict = {}
    if spec.required:
        render_kw["required"] = True
    if spec.type in ("text", "textarea"):
        checks.append(Length(max=spec.effective_max_length))
        render_kw["maxlength"] = spec.effective_max_length
        field_class = StringField if spec.type == "text" else TextAreaField
        if spec.type == "textarea":
            render_kw["rows"] = max(3, min(spec.print_lines, 8))
        return field_class(label, checks, description=description, default=spec.default,
                           render_kw=render_kw)
    if spec.type == "select":
        choices = [SelectChoice(o.value, o.label.get(locale)) for o in spec.options]
        return SelectField(label, checks, choices=choices, default=spec.default,
                           description=description, render_kw=render_kw)
    if spec.type == "checkboxes":
        choices = [SelectChoice(o.value, o.label.get(locale)) for o in spec.options]
        return MultiCheckboxField(label, checks, choices=choices, default=spec.default or [],
                                  description=description)
    if spec.type == "datetime":
        # A callable default: "now" is evaluated when the page is shown, not at start-up.
        default = (lambda: datetime.strptime(local_now_text(timezone), DATETIME_FORMAT)) \
            if spec.default == "now" else None
        return DateTimeLocalField(label, checks, format=DATETIME_FORMAT, default=default,
                                  description=description, render_kw=render_kw)
    if spec.type == "number":
        checks.append(NumberRange(min=spec.min, max=spec.max))
        render_kw.update(inputmode="numeric", min=spec.min, max=spec.max)
        return IntegerField(label, checks, default=spec.default, description=description,
                            render_kw=render_kw)
    return FileField(label, checks, description=description)


# A detection time further back than this is more likely a typo (01/01/1999) than a fact: it
# would make the incident overdue at once, so the reporter confirms it first.
OLD_DETECTION_DAYS = 30
CONFIRM_OLD_FIELD = "confirm_old_detection"


def build_report_form_class(definition: FormDefinition, locale: str, timezone: str) -> type:
    """Build a Flask-WTF form class (with CSRF) whose fields follow the definition."""
    attrs = {spec.name: _wtf_field(spec, locale, timezone) for spec in definition.fields}
    attrs[CONFIRM_OLD_FIELD] = BooleanField(
        _l("Tôi xác nhận thời điểm phát hiện ở trên là đúng (cách đây hơn %(n)s ngày)",
           n=OLD_DETECTION_DAYS))
    return type(f"{definition.id.title()}Form", (Form,), attrs)


def needs_old_detection_confirmation(form, definition: FormDefinition, timezone: str,
                                     now: datetime | None = None) -> bool:
    """Return True (and mark the field) when the detection time is far back and unconfirmed."""
    detected = definition.by_role("detected_at")
    if detected is None:
        return False
    value = to_utc(form[detected.name].data, timezone)
    now = now or datetime.now(UTC)
    if value is None or value >= now - timedelta(days=OLD_DETECTION_DAYS) or \
            form[CONFIRM_OLD_FIELD].data:
        return False
    form[detected.name].errors = [*form[detected.name].errors, str(_l(
        "Thời điểm phát hiện cách đây hơn %(n)s ngày: hạn thông báo 72 giờ đã qua từ lâu. "
        "Kiểm tra lại ngày; nếu đúng, đánh dấu ô xác nhận bên dưới rồi gửi lại.",
        n=OLD_DETECTION_DAYS))]
    return True


def report_arguments(definition: FormDefinition, values: dict, timezone: str,
                     unit_name: str | None = None) -> dict:
    """Map submitted values to report_incident arguments; everything is also kept as form_data."""
    form_data: dict = {}
    for spec in definition.fields:
        if spec.type == "file":
            continue  # files become encrypted evidence, not form data
        value = values.get(spec.name)
        if isinstance(value, datetime):
            value = to_utc(value, timezone).isoformat()
        elif isinstance(value, str):
            value = value.strip()
        form_data[spec.name] = value
    args: dict = {"form_data": form_data}
    summary_field = definition.by_role("summary")
    args["summary"] = form_data.get(summary_field.name) or ""
    kind = definition.by_role("kind")
    title = kind.option_label(form_data.get(kind.name) or "", "vi") if kind else ""
    if not title:
        title = (args["summary"].splitlines() or ["Sự cố"])[0][:120]
    # What tells one report from another in lists and mail subjects: where, and which data.
    location = definition.by_role("location")
    place = (form_data.get(location.name) or "") if location else ""
    classes = definition.by_role("data_classes")
    chosen = list(form_data.get(classes.name) or []) if classes else []
    parts = [title, place or unit_name or ""]
    if chosen:
        parts.append(", ".join(classes.option_label(c, "vi") for c in chosen[:2])
                     + ("…" if len(chosen) > 2 else ""))
    args["title"] = " — ".join(p for p in parts if p)[:300]
    detected = definition.by_role("detected_at")
    if detected and isinstance(values.get(detected.name), datetime):
        args["detected_at"] = to_utc(values[detected.name], timezone)
    if classes:
        args["data_classes"] = list(form_data.get(classes.name) or [])
    personal = definition.by_role("personal_data")
    # "Not sure" counts as yes: the 72-hour clock must not wait for certainty.
    args["involves_personal_data"] = not (personal and form_data.get(personal.name) == "no")
    return args


# ---------------------------------------------------------------- workflow step forms


# The same channels as workflow.NOTICE_CHANNELS, as translatable labels for the pages.
CHANNEL_LABELS = {
    "cong_thong_tin": _l("Cổng thông tin quốc gia về bảo vệ dữ liệu cá nhân"),
    "van_ban": _l("Văn bản (Mẫu số 08) gửi cơ quan chuyên trách"),
    "email": _l("Thư điện tử"),
    "khac": _l("Khác"),
}


def notice_channel_choices() -> list[SelectChoice]:
    """Return the notice channels with labels in the interface language."""
    return [SelectChoice(key, str(CHANNEL_LABELS.get(key, key))) for key in NOTICE_CHANNELS]


class ConfirmForm(Form):
    """A one-button form (acknowledge, start investigation, open an alert as incident)."""


class ContainForm(Form):
    """Containment: what was done (required)."""

    actions = TextAreaField(_l("Các biện pháp ngăn chặn đã thực hiện"),
                            [DataRequired(), Length(max=10_000)])


class ResolveForm(Form):
    """Resolution: cause and measures (both required)."""

    cause = TextAreaField(_l("Nguyên nhân"), [DataRequired(), Length(max=10_000)])
    measures = TextAreaField(_l("Biện pháp khắc phục"), [DataRequired(), Length(max=10_000)])


class CloseForm(Form):
    """Closure by a leader: an optional note, and why no notice was sent when none was."""

    note = TextAreaField(_l("Ghi chú khi đóng"), [Optional(), Length(max=10_000)])
    no_notice_reason = TextAreaField(_l("Lý do không gửi thông báo vi phạm (nếu chưa gửi)"),
                                     [Optional(), Length(max=10_000)])


class ReasonForm(Form):
    """Dismissal of an incident or an alert: the reason (required)."""

    reason = TextAreaField(_l("Lý do bác bỏ"), [DataRequired(), Length(max=2000)])


class CommentForm(Form):
    """A comment on an incident."""

    body = TextAreaField(_l("Bình luận"), [DataRequired(), Length(max=10_000)])


class EvidenceForm(Form):
    """An evidence file."""

    file = FileField(_l("Tệp bằng chứng"), [DataRequired()])


class NoticeSentForm(Form):
    """The notice to the authority was sent: when, how, its reference; late needs a reason."""

    sent_at = DateTimeLocalField(_l("Gửi lúc"), [DataRequired()], format=DATETIME_FORMAT)
    channel = SelectField(_l("Kênh gửi"), default="cong_thong_tin",
                          choices=[SelectChoice(k, v) for k, v in NOTICE_CHANNELS.items()])
    reference = StringField(_l("Số văn bản hoặc mã tiếp nhận"), [DataRequired(), Length(max=200)])
    late_reason = TextAreaField(_l("Lý do gửi muộn (nếu quá 72 giờ)"),
                                [Optional(), Length(max=10_000)])
