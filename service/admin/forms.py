"""Admin forms; every validator carries a translated message (no English-only defaults)."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    ValidationError,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp

from service.auth.models import UNITS, Role
from service.web.forms import Form
from service.web.labels import ROLE_NAMES, UNIT_NAMES

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"  # the same rule as auth.operations
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def _strip_lower(value: str | None) -> str | None:
    return value.strip().lower() if isinstance(value, str) else value


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def role_choices() -> list[SelectChoice]:
    """Return a choice (code, translated name) for every role."""
    return [SelectChoice(role.value, ROLE_NAMES[role.value]) for role in Role]


def unit_choices() -> list[SelectChoice]:
    """Return a choice (code, translated name) for every unit, with "none" first."""
    return [SelectChoice("", _l("— Không thuộc đơn vị nào —"))] + [
        SelectChoice(code, UNIT_NAMES[code]) for code in UNITS]


def _min_password_length() -> int:
    return current_app.config["SETTINGS"].password_min_length


def check_password_length(form, field) -> None:
    """Refuse a password shorter than the configured minimum."""
    if field.data and len(field.data) < _min_password_length():
        raise ValidationError(_l("Mật khẩu phải có ít nhất %(n)s ký tự.", n=_min_password_length()))


# service.auth.phones raises these (Vietnamese); listed here so the catalog has their English.
PHONE_MESSAGES = (
    _l("Số điện thoại không hợp lệ."),
    _l("Cần số điện thoại di động Việt Nam (ví dụ 0912 345 678)."),
    _l("Cần số điện thoại di động (số cố định không nhận được tin nhắn SMS)."),
)


def check_phone(form, field) -> None:
    """Refuse a number that is not a Vietnamese mobile number (SMS must reach it)."""
    from service.auth.phones import PhoneError, normalize_mobile

    try:
        normalize_mobile(field.data)
    except PhoneError as exc:
        raise ValidationError(_l(str(exc))) from None


def check_roles(form, field) -> None:
    """Require at least one role."""
    if not field.data:
        raise ValidationError(_l("Chọn ít nhất một vai trò."))


class RolesField(SelectMultipleField):
    """Roles as checkboxes; the template renders them inside a fieldset."""

    def pre_validate(self, form) -> None:
        """Refuse codes that are not roles, with a translated message."""
        valid = {choice.value for choice in self.choices}
        if any(value not in valid for value in self.data or []):
            raise ValidationError(_l("Vai trò không hợp lệ."))


class CreateUserForm(Form):
    """Create an account."""

    username = StringField(_l("Tên đăng nhập"), filters=[_strip_lower], validators=[
        DataRequired(_l("Nhập tên đăng nhập.")),
        Regexp(USERNAME_PATTERN, message=_l(
            "Tên đăng nhập chỉ gồm chữ thường không dấu, số, dấu chấm, gạch ngang, gạch dưới (2–64 ký tự).")),
    ])
    full_name = StringField(_l("Họ và tên"), filters=[_strip], validators=[
        Length(max=200, message=_l("Tối đa %(max)s ký tự.", max=200))])
    email = StringField(_l("Email"), filters=[_strip], validators=[
        DataRequired(_l("Nhập địa chỉ email.")),
        Regexp(EMAIL_PATTERN, message=_l("Địa chỉ email không hợp lệ.")),
        Length(max=254, message=_l("Tối đa %(max)s ký tự.", max=254))])
    phone = StringField(_l("Số điện thoại (không bắt buộc)"), filters=[_strip],
                        validators=[Optional(), Length(max=32, message=_l("Tối đa %(max)s ký tự.", max=32)),
                                    check_phone])
    unit = SelectField(_l("Đơn vị"), choices=unit_choices, validate_choice=False)
    roles = RolesField(_l("Vai trò"), choices=role_choices, validators=[check_roles])
    password = PasswordField(_l("Mật khẩu"), validators=[
        DataRequired(_l("Nhập mật khẩu.")), check_password_length])
    password_confirm = PasswordField(_l("Nhập lại mật khẩu"), validators=[
        EqualTo("password", message=_l("Hai mật khẩu không khớp."))])

    def validate_unit(self, field) -> None:
        """Refuse unit codes that are not units of the commune."""
        if field.data and field.data not in UNITS:
            raise ValidationError(_l("Đơn vị không hợp lệ."))


class PhoneForm(Form):
    """Set or clear an account's mobile number."""

    phone = StringField(_l("Số điện thoại di động"), filters=[_strip],
                        validators=[Optional(), Length(max=32, message=_l("Tối đa %(max)s ký tự.", max=32)),
                                    check_phone])


class RolesForm(Form):
    """Replace a user's roles."""

    roles = RolesField(_l("Vai trò"), choices=role_choices, validators=[check_roles])


class ResetPasswordForm(Form):
    """Set a new password; an empty field means "generate one and show it once"."""

    password = PasswordField(_l("Mật khẩu mới"), validators=[Optional(), check_password_length])


class DisableUserForm(Form):
    """Disable an account; the box guards against a stray click."""

    confirm = BooleanField(_l("Tôi xác nhận vô hiệu hóa tài khoản này"), validators=[
        DataRequired(_l("Đánh dấu ô xác nhận để vô hiệu hóa."))])


class AccountActionForm(Form):
    """A one-button account action (enable, unlock): the CSRF token is the whole form."""


class CreateTokenForm(Form):
    """Create an ingest token for a source (an agent or a business application)."""

    source = StringField(_l("Tên nguồn"), filters=[_strip], validators=[
        DataRequired(_l("Nhập tên nguồn.")),
        Regexp(SOURCE_PATTERN, message=_l(
            "Tên nguồn gồm chữ không dấu, số, dấu chấm, hai chấm, gạch ngang, gạch dưới (tối đa 128 ký tự).")),
    ])
    scope = SelectField(_l("Phạm vi"), default="ingest", choices=[
        SelectChoice("ingest", _l("Gửi sự kiện (tác tử, phần mềm nghiệp vụ)")),
        SelectChoice("monitor", _l("Chỉ đọc nhật ký (nhân chứng, cấp tỉnh)")),
    ])


class RevokeTokenForm(Form):
    """Revoke an ingest token (CSRF only)."""


def form_errors(form: FlaskForm) -> list[str]:
    """Return every error of a form as a flat list of strings."""
    return [str(message) for errors in form.errors.values() for message in errors]
