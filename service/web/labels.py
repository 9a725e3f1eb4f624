"""Translated display names for stored codes (roles, units, states, severities)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

# The models keep stable codes; people read these names. Vietnamese is the source language.
ROLE_NAMES = {
    "official": _l("Cán bộ, công chức"),
    "police": _l("Công an xã"),
    "leader": _l("Lãnh đạo UBND xã"),
    "admin": _l("Quản trị hệ thống"),
}

UNIT_NAMES = {
    "cong_an": _l("Công an xã"),
    "van_phong": _l("Văn phòng HĐND và UBND xã"),
    "tt_hcc": _l("Trung tâm Phục vụ hành chính công xã"),
    "vh_xh": _l("Phòng Văn hóa - Xã hội"),
    "kinh_te": _l("Phòng Kinh tế"),
    "dv_cong_ich": _l("Trung tâm Dịch vụ công ích xã"),
    "lanh_dao": _l("Lãnh đạo UBND xã"),
}

INCIDENT_STATE_NAMES = {
    "reported": _l("Mới báo cáo, chưa xác nhận"),
    "acknowledged": _l("Đã xác nhận đã nhận"),
    "investigating": _l("Đang điều tra"),
    "contained": _l("Đã ngăn chặn"),
    "resolved": _l("Đã khắc phục"),
    "closed": _l("Đã đóng"),
    "dismissed": _l("Đã bác bỏ"),
}

ALERT_STATE_NAMES = {
    "open": _l("Chưa xử lý"),
    "incident": _l("Đã chuyển thành sự cố"),
    "dismissed": _l("Đã bác bỏ"),
}

SEVERITY_NAMES = {
    "low": _l("Thấp"),
    "medium": _l("Trung bình"),
    "high": _l("Cao"),
    "critical": _l("Nghiêm trọng"),
}

RESPONSE_NAMES = {
    "record": _l("Chỉ ghi nhận"),
    "alert": _l("Cảnh báo"),
    "incident": _l("Mở sự cố"),
}

ORIGIN_NAMES = {
    "report": _l("Cán bộ báo cáo"),
    "rule": _l("Quy tắc phát hiện"),
    "alert": _l("Từ cảnh báo"),
}

TABLES = {
    "role": ROLE_NAMES,
    "unit": UNIT_NAMES,
    "incident_state": INCIDENT_STATE_NAMES,
    "alert_state": ALERT_STATE_NAMES,
    "severity": SEVERITY_NAMES,
    "response": RESPONSE_NAMES,
    "origin": ORIGIN_NAMES,
}


def label(code: str | None, table: str) -> str:
    """Return the display name of a stored code, or the code itself when it is unknown."""
    if code is None or code == "":
        return "—"
    names = TABLES[table]
    return str(names[code]) if code in names else str(code)

ACCESS_MODE_NAMES = {
    "fanotify-perm": _l("Đầy đủ: người và chương trình (fanotify)"),
    "fanotify": _l("Đầy đủ: người và chương trình (fanotify)"),
    "security-log": _l("Đầy đủ: người và chương trình (nhật ký Security)"),
    "inotify": _l("Hạn chế: chỉ biết tệp được mở (thiếu quyền quản trị)"),
    "off": _l("Tắt"),
}
