"""Phone numbers of users: Vietnamese mobile numbers, kept in E.164 form (+84…)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

# Numbers an SMS can reach: mobile; some ranges libphonenumber cannot tell apart.
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


class PhoneError(ValueError):
    """A phone number was refused; the message says why, in Vietnamese."""


def normalize_mobile(raw: str | None) -> str | None:
    """Return a Vietnamese mobile number as E.164 (+849…), None for blank; raise PhoneError."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, "VN")
    except phonenumbers.NumberParseException:
        raise PhoneError("Số điện thoại không hợp lệ.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise PhoneError("Số điện thoại không hợp lệ.")
    if phonenumbers.region_code_for_number(parsed) != "VN":
        raise PhoneError("Cần số điện thoại di động Việt Nam (ví dụ 0912 345 678).")
    if phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
        raise PhoneError("Cần số điện thoại di động (số cố định không nhận được tin nhắn SMS).")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def e164_or_none(raw: str | None) -> str | None:
    """Return any parseable number in E.164 form (a modem's sender field), else None."""
    try:
        parsed = phonenumbers.parse((raw or "").strip(), "VN")
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
