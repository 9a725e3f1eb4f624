"""Web forms: the report form built from its YAML definition, and the workflow step forms."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
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
    checks = [InputRequired() if spec.type == "number" else DataRequired()] if spec.required \
        else [Optional()]
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


def build_report_form_class(definition: FormDefinition, locale: str, timezone: str) -> type:
    """Build a Flask-WTF form class (with CSRF) whose fields follow the definition."""
    attrs = {spec.name: _wtf_field(spec, locale, timezone) for spec in definition.fields}
    return type(f"{definition.id.title()}Form", (FlaskForm,), attrs)


def report_arguments(definition: FormDefinition, values: dict, timezone: str) -> dict:
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
    location = definition.by_role("location")
    if location and form_data.get(location.name):
        title = f"{title} — {form_data[location.name]}"
    args["title"] = title[:300]
    detected = definition.by_role("detected_at")
    if detected and isinstance(values.get(detected.name), datetime):
        args["detected_at"] = to_utc(values[detected.name], timezone)
    classes = definition.by_role("data_classes")
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


class ConfirmForm(FlaskForm):
    """A one-button form (acknowledge, start investigation, open an alert as incident)."""


class ContainForm(FlaskForm):
    """Containment: what was done (required)."""

    actions = TextAreaField(_l("Các biện pháp ngăn chặn đã thực hiện"),
                            [DataRequired(), Length(max=10_000)])


class ResolveForm(FlaskForm):
    """Resolution: cause and measures (both required)."""

    cause = TextAreaField(_l("Nguyên nhân"), [DataRequired(), Length(max=10_000)])
    measures = TextAreaField(_l("Biện pháp khắc phục"), [DataRequired(), Length(max=10_000)])


class CloseForm(FlaskForm):
    """Closure by a leader: an optional note, and why no notice was sent when none was."""

    note = TextAreaField(_l("Ghi chú khi đóng"), [Optional(), Length(max=10_000)])
    no_notice_reason = TextAreaField(_l("Lý do không gửi thông báo vi phạm (nếu chưa gửi)"),
                                     [Optional(), Length(max=10_000)])


class ReasonForm(FlaskForm):
    """Dismissal of an incident or an alert: the reason (required)."""

    reason = TextAreaField(_l("Lý do bác bỏ"), [DataRequired(), Length(max=2000)])


class CommentForm(FlaskForm):
    """A comment on an incident."""

    body = TextAreaField(_l("Bình luận"), [DataRequired(), Length(max=10_000)])


class EvidenceForm(FlaskForm):
    """An evidence file."""

    file = FileField(_l("Tệp bằng chứng"), [DataRequired()])


class NoticeSentForm(FlaskForm):
    """The notice to the authority was sent: when, how, its reference; late needs a reason."""

    sent_at = DateTimeLocalField(_l("Gửi lúc"), [DataRequired()], format=DATETIME_FORMAT)
    channel = SelectField(_l("Kênh gửi"), default="cong_thong_tin",
                          choices=[SelectChoice(k, v) for k, v in NOTICE_CHANNELS.items()])
    reference = StringField(_l("Số văn bản hoặc mã tiếp nhận"), [DataRequired(), Length(max=200)])
    late_reason = TextAreaField(_l("Lý do gửi muộn (nếu quá 72 giờ)"),
                                [Optional(), Length(max=10_000)])
