"""Forms of the device register page; every validator carries a translated message."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from service.auth.models import UNITS
from service.web.forms import Form
from service.web.labels import UNIT_NAMES


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _unit_choices() -> list[SelectChoice]:
    return [SelectChoice(code, UNIT_NAMES[code]) for code in UNITS]


class RegisterDeviceForm(Form):
    """Register an official USB stick: label, owner unit, serial, optional volume identity."""

    label = StringField(_l("Tên thiết bị"), filters=[_strip], validators=[
        DataRequired(_l("Nhập tên thiết bị.")),
        Length(max=128, message=_l("Tối đa %(max)d ký tự.")),
    ])
    owner_unit = SelectField(_l("Đơn vị quản lý"), choices=_unit_choices, validators=[
        DataRequired(_l("Chọn đơn vị quản lý."))])
    serial = StringField(_l("Số sê-ri"), filters=[_strip], validators=[
        DataRequired(_l("Nhập số sê-ri của thiết bị.")),
        Length(max=128, message=_l("Tối đa %(max)d ký tự.")),
    ])
    fs_uuid = StringField(_l("Mã phân vùng (UUID hoặc số sê-ri ổ đĩa)"), filters=[_strip], validators=[
        Optional(), Length(max=128, message=_l("Tối đa %(max)d ký tự."))])
    vendor = StringField(_l("Hãng sản xuất"), filters=[_strip], validators=[
        Optional(), Length(max=128, message=_l("Tối đa %(max)d ký tự."))])
    model = StringField(_l("Kiểu thiết bị"), filters=[_strip], validators=[
        Optional(), Length(max=128, message=_l("Tối đa %(max)d ký tự."))])


class RevokeDeviceForm(Form):
    """Take a device off the register (CSRF only)."""


def form_errors(form: FlaskForm) -> list[str]:
    """Return every error of a form as a flat list of strings."""
    return [str(message) for errors in form.errors.values() for message in errors]
