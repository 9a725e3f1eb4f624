"""The one place where stored codes get the names people read.

Pages, mails, PDFs, CSV headers and the CLI show these names, never the codes: severities,
states, origins, audit entry kinds, notification kinds, file actions, destination kinds, and the
policy's own names for its data classes, units and rules (those come from the policy in force,
in Vietnamese, since the commune writes its policy in Vietnamese). Vietnamese is the source
language; English comes from the catalog under the English switch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from flask import g, has_request_context
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

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
    "reported": _l("Mới báo cáo, chờ xác nhận"),
    "acknowledged": _l("Lãnh đạo đã xác nhận"),
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

ENTRY_KIND_NAMES = {
    "event": _l("Truy cập tệp"),
    "event.conflict": _l("Sự kiện trùng mã, bị từ chối"),
    "verdict.recorded": _l("Kết luận của quy tắc"),
    "alert.raised": _l("Có cảnh báo"),
    "alert.incident": _l("Cảnh báo chuyển thành sự cố"),
    "alert.dismissed": _l("Cảnh báo bị bác bỏ"),
    "incident.reported": _l("Sự cố được báo cáo"),
    "incident.joined": _l("Ghi nhận thêm một lần vi phạm cùng nhóm"),
    "incident.escalated": _l("Báo động: chưa được xác nhận"),
    "incident.acknowledged": _l("Lãnh đạo xác nhận đã nhận"),
    "incident.investigating": _l("Bắt đầu điều tra"),
    "incident.contained": _l("Đã ngăn chặn"),
    "incident.resolved": _l("Đã khắc phục"),
    "incident.closed": _l("Đóng sự cố"),
    "incident.dismissed": _l("Bác bỏ sự cố"),
    "incident.commented": _l("Bình luận"),
    "incident.evidence_attached": _l("Thêm bằng chứng"),
    "incident.evidence_downloaded": _l("Tải bằng chứng"),
    "incident.document_downloaded": _l("Tải văn bản"),
    "incident.notice_sent": _l("Đã gửi thông báo vi phạm cho cơ quan chuyên trách"),
    "incident.deadline_reminder": _l("Nhắc hạn thông báo 72 giờ"),
    "incident.receipt_confirmed": _l("Công an xã xác nhận đã nhận"),
    "notify.queued": _l("Xếp thư thông báo vào hàng đợi gửi"),
    "notify.attempt": _l("Lần gửi thư thông báo"),
    "notify.dispatch": _l("Gửi thư thông báo"),
    "notify.pruned": _l("Dọn thư thông báo cũ"),
    "notify.cleanup": _l("Dọn thư thông báo cũ"),
    "audit.viewed": _l("Xem nhật ký"),
    "audit.search": _l("Tìm trong nhật ký"),
    "audit.exported": _l("Xuất nhật ký"),
    "audit.sign_checkpoint": _l("Ký điểm kiểm tra"),
    "auth.login": _l("Đăng nhập"),
    "auth.login_failed": _l("Đăng nhập sai"),
    "auth.logout": _l("Đăng xuất"),
    "auth.password_check_failed": _l("Nhập sai mật khẩu khi xác nhận"),
    "auth.sessions_ended": _l("Kết thúc các phiên đăng nhập"),
    "auth.session_cleanup": _l("Dọn phiên đăng nhập hết hạn"),
    "auth.throttle_cleanup": _l("Dọn bộ đếm đăng nhập sai"),
    "auth.grant_requested": _l("Đề nghị cấp quyền"),
    "auth.grant_approved": _l("Phê duyệt cấp quyền"),
    "auth.grant_refused": _l("Từ chối cấp quyền"),
    "auth.grant_withdrawn": _l("Rút đề nghị cấp quyền"),
    "auth.grant_expired": _l("Đề nghị cấp quyền hết hạn"),
    "user.created": _l("Tạo tài khoản"),
    "user.disabled": _l("Khóa tài khoản"),
    "user.enabled": _l("Mở lại tài khoản"),
    "user.locked": _l("Tài khoản bị tạm khóa"),
    "user.unlocked": _l("Mở khóa tài khoản"),
    "user.password_changed": _l("Đổi mật khẩu"),
    "user.roles_changed": _l("Đổi vai trò"),
    "user.phone_changed": _l("Đổi số điện thoại"),
    "user.substitute_named": _l("Cử người thay khi nghỉ"),
    "user.substitute_cancelled": _l("Hủy người thay"),
    "sms.reply": _l("Tin nhắn SMS trả lời"),
    "audit.monitor_failed": _l("Kiểm tra liên tục nhật ký phát hiện sai lệch"),
    "audit.monitor_reset": _l("Bắt đầu lại kiểm tra liên tục nhật ký"),
    "witness.added": _l("Thêm nhân chứng cho nhật ký"),
    "witness.cosigned": _l("Nhân chứng đã ký xác nhận"),
    "witness.log_added": _l("Nhận làm nhân chứng cho nhật ký khác"),
    "witness.refused": _l("Từ chối ký xác nhận cho nhật ký khác"),
    "witness.refused_ours": _l("Nhân chứng từ chối nhật ký của xã"),
    "witness.reset": _l("Hỏi lại nhân chứng"),
    "token.created": _l("Tạo mã truy cập"),
    "token.revoked": _l("Thu hồi mã truy cập"),
    "device.registered": _l("Đăng ký thiết bị"),
    "device.revoked": _l("Thu hồi thiết bị"),
    "agent.gap": _l("Phần mềm giám sát bỏ sót sự kiện"),
    "agent.silent": _l("Phần mềm giám sát im lặng"),
    "agent.back": _l("Phần mềm giám sát hoạt động lại"),
    "agent.access_mode_changed": _l("Phần mềm giám sát đổi chế độ theo dõi"),
    "agent.access_mode_weaker": _l("Phần mềm giám sát theo dõi hạn chế hơn"),
    "agent.config_changed": _l("Phần mềm giám sát đổi cấu hình"),
    "agent.host_mismatch": _l("Phần mềm giám sát báo sai tên máy"),
    "agent.id_lookalike": _l("Mã phần mềm giám sát giống mã khác"),
    "agent.renumbered": _l("Phần mềm giám sát đánh số lại"),
    "policy.loaded": _l("Nạp chính sách"),
    "policy.rejected": _l("Chính sách bị từ chối"),
    "policy.unknown_data_class": _l("Loại dữ liệu không có trong chính sách"),
    "report.generated": _l("Lập báo cáo tháng"),
    "report.part_submitted": _l("Đơn vị nộp phần báo cáo"),
    "report.reminder": _l("Nhắc nộp báo cáo"),
    "report.due": _l("Báo cáo đến hạn"),
    "retention.reviewed": _l("Rà soát thời hạn lưu trữ"),
    "backup.created": _l("Sao lưu"),
    "security.change": _l("Thay đổi về an ninh tài khoản"),
}

NOTIFY_KIND_NAMES = {
    "created": _l("Báo có sự cố mới"),
    "acknowledged": _l("Báo lãnh đạo đã xác nhận"),
    "dismissed": _l("Báo sự cố bị bác bỏ"),
    "escalated": _l("Báo động: chưa được xác nhận"),
    "deadline_reminder": _l("Nhắc hạn thông báo 72 giờ"),
    "receipt_confirmed": _l("Báo Công an xã đã nhận"),
    "report.reminder": _l("Nhắc nộp báo cáo"),
    "report.due": _l("Báo cáo đến hạn"),
    "security.change": _l("Thay đổi về an ninh tài khoản"),
    "sms_answer": _l("Trả lời tin nhắn SMS"),
    "audit.integrity": _l("Cảnh báo toàn vẹn nhật ký"),
}

ACTION_NAMES = {
    "open": _l("Mở"), "read": _l("Đọc"), "modify": _l("Sửa"), "create": _l("Tạo"),
    "delete": _l("Xóa"), "move": _l("Di chuyển"), "copy": _l("Sao chép"), "export": _l("Xuất"),
    "print": _l("In"), "share": _l("Chia sẻ"), "view": _l("Xem"), "login": _l("Đăng nhập"),
    "login_failed": _l("Đăng nhập sai"), "logout": _l("Đăng xuất"),
    "heartbeat": _l("Tín hiệu định kỳ"),
}

CHANNEL_NAMES = {
    "email": _l("Thư điện tử"),
    "webhook": _l("Webhook"),
    "sms": _l("Tin nhắn SMS"),
    "command": _l("Lệnh gửi"),
}

PII_NAMES = {
    "cccd": _l("Số định danh cá nhân (CCCD)"),
    "cmnd": _l("Số chứng minh nhân dân"),
    "phone": _l("Số điện thoại"),
    "bhxh": _l("Mã số bảo hiểm xã hội"),
    "email": _l("Địa chỉ thư điện tử"),
    "bank_account": _l("Số tài khoản ngân hàng"),
    "dob": _l("Ngày sinh"),
    "name": _l("Họ và tên"),
    "address": _l("Địa chỉ"),
}

TABLES = {
    "role": ROLE_NAMES,
    "unit": UNIT_NAMES,
    "incident_state": INCIDENT_STATE_NAMES,
    "alert_state": ALERT_STATE_NAMES,
    "severity": SEVERITY_NAMES,
    "response": RESPONSE_NAMES,
    "origin": ORIGIN_NAMES,
    "entry_kind": ENTRY_KIND_NAMES,
    "notify_kind": NOTIFY_KIND_NAMES,
    "action": ACTION_NAMES,
    "channel": CHANNEL_NAMES,
    "pii": PII_NAMES,
}
# Tables whose names come from the policy in force (data classes, units, rules).
POLICY_TABLES = ("data_class", "unit", "rule")


def remembered_words(key, translate: Callable[[], str]) -> str:
    """Return ``translate()``, computed once per language for ``key`` while the process lives.

    flask-babel resolves its context, domain, locale and catalogue again on every lookup; a
    trail page asks for the same few dozen words for each of its rows, and those lookups were
    half of its rendering time. The catalogues are read once at start and never change while
    the service runs, so a word found once is kept for every later request. Keyed by the
    language, which ``force_locale`` changes, so a mail in Vietnamese from an English page
    still gets its own words.
    """
    locale = getattr(g.get("_flask_babel"), "babel_locale", None) if has_request_context() else None
    if locale is None:  # outside a request, or not chosen yet: let flask-babel choose it
        return translate()
    memo_key = (str(locale), key)
    found = _kept_words.get(memo_key)
    if found is None:
        if len(_kept_words) >= _WORDS_LIMIT:  # a template translating data, not words: bounded
            _kept_words.clear()
        found = _kept_words[memo_key] = translate()
    return found


def _remembered(name) -> str:
    # Fixed names are module constants that live as long as the process: their id is a key.
    return remembered_words(id(name), name.__str__)


def label(code: str | None, table: str) -> str:
    """Return the display name of a stored code, or the code itself when it is unknown."""
    if code is None or code == "":
        return "—"
    names = TABLES.get(table, {})
    if code in names:  # fixed names first: they have their English under the English switch
        return _remembered(names[code])
    if table in POLICY_TABLES:
        found = policy_names(table).get(code)
        if found:
            return found
        # The service's own checks (policy.rejected, agent.silent, …) raise alerts under
        # the name of the trail entry that records them.
        if table == "rule" and code in ENTRY_KIND_NAMES:
            return str(ENTRY_KIND_NAMES[code])
        return str(code)
    return str(code)


def label_vi(code: str | None, table: str) -> str:
    """Return the Vietnamese name of a code whatever the reader's language (mails, documents)."""
    from flask import has_app_context
    from flask_babel import force_locale

    if not has_app_context():
        return label(code, table)
    with force_locale("vi"):
        return label(code, table)


def labels(codes, table: str) -> str:
    """Return the display names of several codes, comma-separated."""
    return ", ".join(label(code, table) for code in codes or ())


# Select boxes and policy names, kept between requests: every trail page built the three select
# boxes of its filter form (a catalogue lookup per code, then a sort) and the policy's whole
# name table once per row. Keyed by the policy object itself (kept in the entry, so its id is
# not reused while cached) and the locale's name; a reload puts a new policy object in force.
_KEPT_LIMIT = 64
_kept_choices: dict[tuple, tuple[object, list[tuple[str, str]]]] = {}
_kept_policy_names: dict[tuple, tuple[object, Mapping[str, str]]] = {}
# Words already translated, by (language, message or id of a fixed name). One per process:
# every app of the service reads the same catalogues (service/translations).
_WORDS_LIMIT = 4096
_kept_words: dict[tuple[str, object], str] = {}
_kept_options: dict[tuple, tuple[object, tuple[tuple[str, str, str], ...]]] = {}


def _keep(store: dict, key: tuple, policy, value):
    if len(store) >= _KEPT_LIMIT:  # a long run of policy reloads: start again
        store.clear()
    store[key] = (policy, value)
    return value


def _choices_key(table: str) -> tuple[object, tuple | None]:
    """Return the policy a table's names depend on, and the key they are kept under (None: not kept)."""
    from flask_babel import get_locale

    policy = _policy_in_force() if table in POLICY_TABLES else None
    locale = get_locale() if has_request_context() else None
    return policy, None if locale is None else (table, str(locale), id(policy))


def choices(table: str) -> list[tuple[str, str]]:
    """Return (code, name) pairs of a table for a select box, sorted by name."""
    policy, key = _choices_key(table)
    kept = _kept_choices.get(key) if key is not None else None
    if kept is not None and kept[0] is policy:
        return list(kept[1])
    names = dict(policy_names(table, policy)) if policy is not None else {}
    names.update({code: str(name) for code, name in TABLES.get(table, {}).items()})
    pairs = sorted(names.items(), key=lambda item: fold(item[1]))
    if key is None:
        return pairs
    return list(_keep(_kept_choices, key, policy, pairs))


def option_tags(table: str, selected: str | None = None) -> Markup:
    """Return the <option> tags of a table's names for a select box, ``selected`` marked.

    The escaped tags are kept like the choices they come from (per table, language and
    policy), so a page's select boxes cost one join instead of a template loop over them.
    """
    policy, key = _choices_key(table)
    kept = _kept_options.get(key) if key is not None else None
    if kept is None or kept[0] is not policy:
        tags = tuple((code, f'<option value="{escape(code)}"', f">{escape(name)}</option>")
                     for code, name in choices(table))
        kept = (policy, tags) if key is None else (policy, _keep(_kept_options, key, policy, tags))
    # Safe: every code and name in the tags went through escape() above.
    return Markup("".join(head + (" selected" if code == selected else "") + tail  # noqa: S704
                          for code, head, tail in kept[1]))


def policy_names(table: str, policy=None) -> Mapping[str, str]:
    """Return the policy's names of its data classes, units or rules (empty without a policy).

    Read-only: the mapping is shared between requests (copy it to change it).
    """
    if policy is None:
        policy = _policy_in_force()
    if policy is None:
        return MappingProxyType({})
    kept = _kept_policy_names.get((table, id(policy)))
    if kept is not None and kept[0] is policy:
        return kept[1]
    if table == "data_class":
        names = {key: " ".join(spec.label.split()) for key, spec in policy.data_classes.items()}
    elif table == "unit":
        names = {key: " ".join(spec.name.split()) for key, spec in policy.units.items()}
    elif table == "rule":
        names = {rule.id: " ".join(rule.title.split()) for rule in policy.rules}
    else:
        raise KeyError(table)
    return _keep(_kept_policy_names, (table, id(policy)), policy, MappingProxyType(names))


def _policy_in_force():
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    state = current_app.extensions.get("canhgac.policy_state")
    return getattr(state, "policy", None)


def fold(text: str | None) -> str:
    """Return text without case and Vietnamese diacritics, for matching ("Nguyễn" → "nguyen")."""
    import unicodedata

    decomposed = unicodedata.normalize("NFD", (text or "").replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def pii_summary(counts: dict | None) -> str:
    """Return "name: count" parts for counts of identifiers found (never the values)."""
    items = sorted((counts or {}).items(), key=lambda item: (-int(item[1]), item[0]))
    return ", ".join(f"{label(kind, 'pii')}: {int(count)}" for kind, count in items if count)

ACCESS_MODE_NAMES = {
    "fanotify-perm": _l("Đầy đủ: người và chương trình (fanotify)"),
    "fanotify": _l("Đầy đủ: người và chương trình (fanotify)"),
    "security-log": _l("Đầy đủ: người và chương trình (nhật ký Security)"),
    "inotify": _l("Hạn chế: chỉ biết tệp được mở (thiếu quyền quản trị)"),
    "off": _l("Tắt"),
}
