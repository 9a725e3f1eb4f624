"""The base form of every page: Flask-WTF with WTForms' own messages in the interface language.

WTForms ships no Vietnamese catalog, so its few built-in messages ("This field is required.",
"Not a valid datetime value.", …) are translated here; under the English switch they stay as
WTForms wrote them.
"""

from __future__ import annotations

from flask import has_request_context
from flask_wtf import FlaskForm

VIETNAMESE = {
    "This field is required.": "Cần điền mục này.",
    "Invalid input.": "Giá trị không hợp lệ.",
    "Invalid email address.": "Địa chỉ thư điện tử không hợp lệ.",
    "Invalid URL.": "Địa chỉ web không hợp lệ.",
    "Invalid UUID.": "Mã không hợp lệ.",
    "Field must be equal to %(other_name)s.": "Phải trùng với %(other_name)s.",
    "Field must be at least %(min)d character long.": "Cần ít nhất %(min)d ký tự.",
    "Field must be at least %(min)d characters long.": "Cần ít nhất %(min)d ký tự.",
    "Field cannot be longer than %(max)d character.": "Không được dài quá %(max)d ký tự.",
    "Field cannot be longer than %(max)d characters.": "Không được dài quá %(max)d ký tự.",
    "Field must be exactly %(max)d character long.": "Phải đúng %(max)d ký tự.",
    "Field must be exactly %(max)d characters long.": "Phải đúng %(max)d ký tự.",
    "Field must be between %(min)d and %(max)d characters long.": "Cần từ %(min)d đến %(max)d ký tự.",
    "Number must be at least %(min)s.": "Số phải từ %(min)s trở lên.",
    "Number must be at most %(max)s.": "Số không được lớn hơn %(max)s.",
    "Number must be between %(min)s and %(max)s.": "Số phải trong khoảng %(min)s đến %(max)s.",
    "Date must be at least %(min)s.": "Ngày phải từ %(min)s trở đi.",
    "Date must be at most %(max)s.": "Ngày không được sau %(max)s.",
    "Date must be between %(min)s and %(max)s.": "Ngày phải trong khoảng %(min)s đến %(max)s.",
    "Invalid value, must be one of: %(values)s.": "Giá trị không hợp lệ, phải là một trong: %(values)s.",
    "Invalid value, can't be any of: %(values)s.": "Giá trị không hợp lệ, không được là: %(values)s.",
    "This field cannot be edited.": "Không được sửa mục này.",
    "This field is disabled and cannot have a value.": "Mục này bị khóa, không nhận giá trị.",
    "Invalid CSRF Token.": "Phiên làm việc không hợp lệ; hãy tải lại trang.",
    "CSRF token missing.": "Thiếu mã phiên làm việc; hãy tải lại trang.",
    "CSRF failed.": "Phiên làm việc không hợp lệ; hãy tải lại trang.",
    "CSRF token expired.": "Phiên làm việc đã hết hạn; hãy tải lại trang.",
    "The CSRF token is missing.": "Thiếu mã phiên làm việc; hãy tải lại trang.",
    "The CSRF token has expired.": "Phiên làm việc đã hết hạn; hãy tải lại trang.",
    "The CSRF token is invalid.": "Phiên làm việc không hợp lệ; hãy tải lại trang.",
    "The CSRF tokens do not match.": "Phiên làm việc không khớp; hãy tải lại trang.",
    "Invalid Choice: could not coerce.": "Lựa chọn không hợp lệ.",
    "Choices cannot be None.": "Chưa có lựa chọn nào.",
    "Not a valid choice.": "Lựa chọn không hợp lệ.",
    "Invalid choice(s): one or more data inputs could not be coerced.": "Có lựa chọn không hợp lệ.",
    "'%(value)s' is not a valid choice for this field.": "“%(value)s” không phải lựa chọn hợp lệ.",
    "'%(value)s' are not valid choices for this field.": "“%(value)s” không phải lựa chọn hợp lệ.",
    "Not a valid datetime value.": "Ngày giờ không hợp lệ (cần đủ ngày, tháng, năm, giờ và phút).",
    "Not a valid date value.": "Ngày không hợp lệ.",
    "Not a valid time value.": "Giờ không hợp lệ.",
    "Not a valid week value.": "Tuần không hợp lệ.",
    "Not a valid integer value.": "Cần nhập một số nguyên.",
    "Not a valid decimal value.": "Cần nhập một số.",
    "Not a valid float value.": "Cần nhập một số.",
}


def _is_vietnamese() -> bool:
    if not has_request_context():
        return True  # Vietnamese is the first language
    from service.web.wiring import select_locale

    return select_locale() != "en"


class FormMessages:
    """WTForms' translations object: Vietnamese texts for its built-in messages."""

    def gettext(self, string: str) -> str:
        """Return a WTForms message in the interface language."""
        return VIETNAMESE.get(string, string) if _is_vietnamese() else string

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """Return a WTForms message with a count in the interface language."""
        return self.gettext(singular if n == 1 else plural)


MESSAGES = FormMessages()


class Form(FlaskForm):
    """Every form of the web pages (CSRF-protected, messages in the interface language)."""

    class Meta(FlaskForm.Meta):
        def get_translations(self, form):
            """Return the messages object for WTForms' own error texts."""
            return MESSAGES
