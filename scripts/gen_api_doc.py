"""Generate docs/api.md from the OpenAPI document of API v1.

The document comes from ``service.events.openapi.build_openapi()`` run inside an app context, so
the endpoints, fields and limits in docs/api.md are the ones the code serves. The examples below
are replayed against a real app by ``tests/test_docs_api.py``: every answer printed in the
document is the answer the API gives.

    python scripts/gen_api_doc.py            write docs/api.md
    python scripts/gen_api_doc.py --check    exit 1 when docs/api.md is stale (nothing written)
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "api.md"
COMMAND = "python scripts/gen_api_doc.py"

# --- What the OpenAPI document cannot say: Vietnamese notes, error codes, examples -----------

# Vietnamese notes per field ("Schema.field"); the English text comes from the schema itself.
FIELD_NOTES_VI = {
    "Event.id": "UUID do bên gửi tạo; khoá chống trùng: gửi lại cùng `id` không tạo bản ghi mới.",
    "Event.occurred_at": "Thời điểm xảy ra, RFC 3339 **có múi giờ** (ví dụ `+07:00`).",
    "Event.host": "Tên máy tính.",
    "Event.actor": "Tài khoản thực hiện (tên đăng nhập hệ điều hành hoặc phần mềm).",
    "Event.action": "Hành động (xem `Action`).",
    "Event.object": "Tệp hoặc tập hồ sơ bị tác động.",
    "Event.destination": "Nơi dữ liệu được chép, chuyển, gửi, chia sẻ tới.",
    "Event.purpose": "Mục đích công vụ, nếu phần mềm biết.",
    "Event.pii": "Số lượng dữ liệu cá nhân theo loại (`cccd`, `phone`, `bhxh`, `email`, …). "
                 "**Chỉ số đếm, không bao giờ gửi giá trị.**",
    "Event.agent_id": "Mã tác tử (chỉ tác tử gửi).",
    "Event.seq": "Số thứ tự sự kiện của tác tử, để máy chủ phát hiện sự kiện bị thiếu.",
    "Event.unit": "Mã bộ phận của người thực hiện (`cong_an`, `van_phong`, `tt_hcc`, `vh_xh`, "
                  "`kinh_te`, `dv_cong_ich`, `lanh_dao`).",
    "Event.schema_version": "Phiên bản lược đồ; chỉ có `1`.",
    "EventObject.path": "Đường dẫn tệp.",
    "EventObject.sha256": "SHA-256 của nội dung tệp (hex chữ thường).",
    "EventObject.size": "Kích thước (byte).",
    "EventObject.record_count": "Số bản ghi (dòng) trong tệp hoặc tập hồ sơ.",
    "EventObject.data_class": "Loại dữ liệu theo chính sách (`dan_cu`, `ho_tich`, `ho_so_tthc`, "
                              "`an_sinh`, `dat_dai`, …), nếu bên gửi biết; máy chủ tự phân loại lại.",
    "EventObject.content_fingerprint": "Băm nội dung không phụ thuộc định dạng (ví dụ giá trị ô).",
    "Destination.path": "Đường dẫn nơi đến.",
    "Destination.target": "Địa chỉ thư, URL, máy in, …",
    "Destination.kind": "Loại nơi đến (xem `DestinationKind`); máy chủ tự phân loại lại.",
    "Heartbeat.agent_id": "Mã tác tử.",
    "Heartbeat.host": "Tên máy.",
    "Heartbeat.last_seq": "Số thứ tự sự kiện lớn nhất tác tử đã cấp.",
    "Heartbeat.spool_depth": "Số sự kiện còn chờ gửi trong bộ đệm của tác tử.",
    "Heartbeat.version": "Phiên bản tác tử.",
    "Heartbeat.access_mode": "Cách tác tử theo dõi lượt mở tệp được bảo vệ: `fanotify-perm` hoặc "
    "`fanotify` (biết người dùng và chương trình), `inotify` (chỉ biết tệp được mở, không biết ai), "
    "`security-log` (Windows), `off` (tắt).",
    "Heartbeat.sent_at": "Thời điểm gửi.",
    "IngestAnswer.stored": "Số sự kiện mới đã được ghi bền vào nhật ký.",
    "IngestAnswer.duplicates": "Số sự kiện đã có từ trước (trùng `id`), không ghi lại.",
    "ErrorAnswer.error": "Mã lỗi (bảng dưới).",
    "ErrorAnswer.detail": "Giải thích ngắn (tiếng Anh).",
    "ErrorAnswer.index": "Vị trí (từ 0) của sự kiện bị lỗi trong lô.",
    "ErrorAnswer.field": "Trường bị lỗi, dạng `a.b`.",
}

# Vietnamese summaries of the endpoints ("METHOD path").
ENDPOINT_NOTES_VI = {
    "POST /api/v1/events": "Ghi bền một sự kiện hoặc một lô vào nhật ký kiểm toán",
    "POST /api/v1/agents/heartbeat": "Tín hiệu sống của tác tử (để phát hiện tác tử im lặng)",
    "GET /api/v1/openapi.json": "Tài liệu OpenAPI này, dạng máy đọc",
}

# Vietnamese names of enumeration values.
ENUM_NOTES_VI = {
    "Action": {
        "open": "mở", "read": "đọc", "modify": "sửa", "create": "tạo", "delete": "xoá",
        "move": "chuyển", "copy": "sao chép", "export": "xuất", "print": "in",
        "share": "chia sẻ", "view": "xem", "login": "đăng nhập",
        "login_failed": "đăng nhập sai", "logout": "đăng xuất", "heartbeat": "tín hiệu sống",
    },
    "DestinationKind": {
        "official": "trong phạm vi công vụ", "removable": "thiết bị lưu trữ di động (USB, thẻ nhớ)",
        "cloud": "lưu trữ đám mây", "messaging": "ứng dụng nhắn tin (Zalo, Telegram)",
        "email": "thư điện tử", "print": "in ấn", "publishing": "đăng tải công khai",
        "unknown": "không xác định",
    },
}

# Patterns said in words where words are clearer than the regular expression.
PATTERN_WORDS = {
    "^[^\\x00]*$": "không chứa ký tự NUL / no NUL character",
}

# Preferred order of the schema sections; any other schema follows alphabetically.
SCHEMA_ORDER = ("Event", "EventObject", "Destination", "Action", "DestinationKind", "Heartbeat",
                "IngestAnswer", "ErrorAnswer")


@dataclass(frozen=True)
class ApiError:
    """One error code of the API, as the `error` member of the answer says it."""

    status: int
    code: str
    vi: str
    en: str


ERRORS = (
    ApiError(400, "invalid_json", "Thân yêu cầu không phải JSON.", "The body is not JSON."),
    ApiError(400, "invalid_utf8", "Thân yêu cầu không phải UTF-8.", "The body is not UTF-8."),
    ApiError(400, "too_deep", "JSON lồng sâu quá 32 mức.", "JSON nested deeper than 32 levels."),
    ApiError(400, "invalid_event",
             "Một sự kiện sai lược đồ; `index` là vị trí trong lô, `field` là trường. **Cả lô bị "
             "từ chối**, không sự kiện nào được ghi.",
             "An event breaks the schema; `index` is its position in the batch, `field` the "
             "field. **The whole batch is refused**; nothing is stored."),
    ApiError(400, "id_conflict",
             "Một `id` lặp lại trong lô với nội dung khác; `index` là lần lặp, `id` là mã. Cả lô bị "
             "từ chối; việc từ chối được ghi vào nhật ký (`event.conflict`).",
             "An `id` repeated in the batch with different content; `index` is the repeat, `id` "
             "the id. The whole batch is refused; the refusal is written to the trail "
             "(`event.conflict`)."),
    ApiError(400, "invalid_heartbeat", "Tín hiệu sống sai lược đồ.", "The heartbeat breaks the schema."),
    ApiError(400, "host_mismatch",
             "`host` của một sự kiện khác máy đã gắn với `agent_id` của nó (lần liên lạc đầu; so sau "
             "khi chuẩn hoá chữ hoa/thường, độ rộng, gạch nối, ký tự vô hình); `index` và `event_id` "
             "chỉ sự kiện đó. Cả lô bị từ chối; tác tử đánh dấu sự kiện đó và gửi phần còn lại.",
             "An event's `host` is not the host bound to its `agent_id` (on first contact; compared "
             "after normalising case, width, dashes, invisible characters); `index` and `event_id` "
             "name it. The batch is refused; the agent marks that event and sends the rest."),
    ApiError(401, "unauthorized", "Thiếu mã truy cập, sai, hoặc đã bị thu hồi.",
             "Missing, wrong or revoked bearer token."),
    ApiError(409, "id_conflict",
             "Một `id` đã được ghi với nội dung khác (so theo JSON chuẩn hoá, bỏ qua `source`, "
             "`object.data_class`, `destination.kind` do máy chủ ghi). Cả lô bị từ chối; việc từ "
             "chối được ghi vào nhật ký. Gửi lại đúng nội dung cũ vẫn là trùng (`duplicates`).",
             "An `id` already stored with different content (compared as canonical JSON, leaving "
             "out `source`, `object.data_class` and `destination.kind`, which the server writes). "
             "The whole batch is refused; the refusal is written to the trail. Resending the same "
             "content is still a duplicate (`duplicates`)."),
    ApiError(405, "Method Not Allowed", "Sai phương thức HTTP (ví dụ GET thay vì POST).",
             "Wrong HTTP method."),
    ApiError(409, "host_mismatch", "Tín hiệu sống ghi `host` khác máy đã gắn với `agent_id`.",
             "A heartbeat names a host other than the one bound to its `agent_id`."),
    ApiError(413, "batch_too_large", "Lô có nhiều hơn `max_batch_events` sự kiện (mặc định 5000).",
             "More than `max_batch_events` events (default 5000)."),
    ApiError(413, "Request Entity Too Large",
             "Thân yêu cầu lớn hơn `max_body_bytes` (mặc định 16 MiB).",
             "Body larger than `max_body_bytes` (default 16 MiB)."),
)


@dataclass(frozen=True)
class Example:
    """A request shown in the document, and the answer the API gives to it (tests replay it)."""

    key: str
    title_vi: str
    title_en: str
    method: str
    path: str
    status: int
    answer: dict
    body: object = None  # a JSON value, or a str/bytes sent as it is
    has_token: bool = True
    file: str | None = None  # the body is sent from this file (written here unless `prepare`)
    prepare: str | None = None  # shell line that makes `file` when the body is too long to print
    reuse_file: bool = False  # `file` was written by an earlier example
    make_body: Callable[[], bytes] | None = None  # the bytes `prepare` makes, for the tests

    def payload(self) -> bytes | None:
        """Return the exact bytes sent."""
        if self.make_body is not None:
            return self.make_body()
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, ensure_ascii=False).encode()


_USB_COPY = {
    "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f01",
    "occurred_at": "2026-03-02T09:15:00+07:00",
    "host": "PC-VHXH-01",
    "actor": "lan.nt",
    "action": "copy",
    "object": {"path": "D:\\DuLieu\\HoNgheo\\ds_ho_ngheo_2026.xlsx", "record_count": 312,
               "data_class": "an_sinh"},
    "destination": {"path": "E:\\ds_ho_ngheo_2026.xlsx", "kind": "removable"},
    "pii": {"cccd": 312, "phone": 120},
    "unit": "vh_xh",
}

_BATCH = [
    {
        "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f02",
        "occurred_at": "2026-03-02T10:02:11+07:00",
        "host": "PM-HOTICH",
        "actor": "hoa.lt",
        "action": "view",
        "object": {"path": "hotich/khai-sinh/2026/000815", "record_count": 1,
                   "data_class": "ho_tich"},
        "purpose": "cap_ban_sao_trich_luc",
        "unit": "van_phong",
    },
    {
        "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f03",
        "occurred_at": "2026-03-02T10:05:40+07:00",
        "host": "PM-HOTICH",
        "actor": "hoa.lt",
        "action": "export",
        "object": {"path": "hotich/bao-cao/thang-02.xlsx", "record_count": 48,
                   "data_class": "ho_tich"},
        "destination": {"target": "phongtuphap@langson.gov.vn", "kind": "email"},
        "purpose": "bao_cao_thang",
        "pii": {"cccd": 48},
        "unit": "van_phong",
    },
]

_MINIMAL = {"id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f05", "occurred_at": "2026-03-02T11:00:00+07:00",
            "host": "PM-HOTICH", "actor": "hoa.lt", "action": "open"}


_MANY_EVENTS = (
    "python3 -c 'import json, uuid; print(json.dumps([{\"id\": str(uuid.uuid4()), "
    "\"occurred_at\": \"2026-03-02T11:00:00+07:00\", \"host\": \"h\", \"actor\": \"a\", "
    "\"action\": \"open\"} for _ in range(5001)]))' > 5001-su-kien.json"
)


def _many_events(count: int) -> bytes:
    events = [{**_MINIMAL, "id": str(uuid.uuid4())} for _ in range(count)]
    return (json.dumps(events) + "\n").encode()


EXAMPLES = (
    Example("single", "Một sự kiện", "A single event", "POST", "/api/v1/events", 200,
            {"stored": 1, "duplicates": 0}, body=_USB_COPY, file="su-kien.json"),
    Example("resend", "Gửi lại đúng sự kiện đó (an toàn: không ghi trùng)",
            "The same event again (safe: nothing is stored twice)", "POST", "/api/v1/events", 200,
            {"stored": 0, "duplicates": 1}, body=_USB_COPY, file="su-kien.json", reuse_file=True),
    Example("conflict", "Cùng `id` nhưng nội dung khác: bị từ chối, không phải bản trùng",
            "The same `id` with other content: refused, not a duplicate", "POST", "/api/v1/events",
            409, {"error": "id_conflict", "index": 0, "field": "id", "event_id": _USB_COPY["id"],
                  "detail": f"event id {_USB_COPY['id']} is already stored with different "
                            "content (fields: object)"},
            body={**_USB_COPY, "object": {**_USB_COPY["object"], "record_count": 5}}),
    Example("conflict_in_batch", "Một `id` hai lần trong lô với nội dung khác",
            "One `id` twice in a batch with different content", "POST", "/api/v1/events", 400,
            {"error": "id_conflict", "index": 1, "field": "id",
             "event_id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f0a",
             "detail": "event id 6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f0a is repeated earlier in "
                       "this batch with different content (fields: actor)"},
            body=[{**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f0a"},
                  {**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f0a", "actor": "nguoi.khac"}]),
    Example("batch", "Một lô (mảng JSON)", "A batch (a JSON array)", "POST", "/api/v1/events", 200,
            {"stored": 2, "duplicates": 0}, body=_BATCH, file="lo-su-kien.json"),
    Example("heartbeat", "Tín hiệu sống của tác tử", "An agent's heartbeat", "POST",
            "/api/v1/agents/heartbeat", 200, {"status": "ok"},
            body={"agent_id": "PC-VHXH-01", "host": "PC-VHXH-01", "last_seq": 4182,
                  "spool_depth": 0, "version": "0.1.0", "sent_at": "2026-03-02T09:16:00+07:00"}),
    Example("host_mismatch", "Sự kiện thứ hai ghi máy khác máy của tác tử: cả lô bị từ chối, "
            "`event_id` chỉ sự kiện đó (`pc-vhxh-01` viết thường vẫn là tác tử `PC-VHXH-01`)",
            "The second event names another host than its agent's: the batch is refused and "
            "`event_id` names that event (lower-case `pc-vhxh-01` is still agent `PC-VHXH-01`)",
            "POST", "/api/v1/events", 400,
            {"error": "host_mismatch", "index": 1, "field": "host",
             "event_id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f11",
             "detail": "host is not the host bound to this agent_id on its first contact"},
            body=[{**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f10", "host": "PC-VHXH-01",
                   "agent_id": "PC-VHXH-01", "seq": 4183},
                  {**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f11", "host": "PC-KETOAN-02",
                   "agent_id": "pc-vhxh-01", "seq": 4184}]),
    Example("heartbeat_host", "Tín hiệu sống ghi máy khác máy của tác tử",
            "A heartbeat naming another host than its agent's", "POST", "/api/v1/agents/heartbeat",
            409, {"error": "host_mismatch", "field": "host",
                  "detail": "host is not the host bound to this agent_id on its first contact"},
            body={"agent_id": "PC-VHXH-01", "host": "PC-KETOAN-02", "last_seq": 4184}),
    Example("no_token", "Thiếu mã truy cập", "No token", "POST", "/api/v1/events", 401,
            {"error": "unauthorized", "detail": "missing or invalid bearer token"},
            body=_MINIMAL, has_token=False),
    Example("bad_json", "JSON hỏng", "Broken JSON", "POST", "/api/v1/events", 400,
            {"error": "invalid_json", "detail": "Expecting ',' delimiter at line 1 column 9"},
            body='{"id": 1'),
    Example("long_number", "Một số 5000 chữ số", "A 5,000-digit number", "POST", "/api/v1/events", 400,
            {"error": "invalid_json", "detail": "a number in the body has too many digits"},
            file="so-dai.json",
            prepare="python3 -c 'print(\"{\\\"seq\\\": \" + \"9\" * 5000 + \"}\")' > so-dai.json",
            make_body=lambda: b'{"seq": ' + b"9" * 5000 + b"}\n"),
    Example("naive_time", "Sự kiện thứ hai của lô thiếu múi giờ: cả lô bị từ chối",
            "The batch's second event has no time zone: the whole batch is refused",
            "POST", "/api/v1/events", 400,
            {"error": "invalid_event", "index": 1, "field": "occurred_at",
             "detail": "Input should have timezone info"},
            body=[{**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f06"},
                  {**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f07",
                   "occurred_at": "2026-03-02T11:00:00"}]),
    Example("unknown_field", "Trường không có trong lược đồ (lỗi chính tả không bị bỏ qua)",
            "A field the schema does not have (a typo is never silently dropped)",
            "POST", "/api/v1/events", 400,
            {"error": "invalid_event", "index": 0, "field": "purpse",
             "detail": "Extra inputs are not permitted"},
            body={**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f08", "purpse": "x"}),
    Example("pii_value", "Số đếm âm", "A negative count", "POST", "/api/v1/events", 400,
            {"error": "invalid_event", "index": 0, "field": "pii.cccd",
             "detail": "Input should be greater than or equal to 0"},
            body={**_MINIMAL, "id": "6f1c2a9e-4b7d-4f0a-9c31-2d5e8b7a1f09", "pii": {"cccd": -1}}),
    Example("not_utf8", "Thân không phải UTF-8", "A body that is not UTF-8", "POST",
            "/api/v1/events", 400, {"error": "invalid_utf8", "detail": "body is not valid UTF-8"},
            file="khong-utf8.bin", prepare="printf '\\377\\376' > khong-utf8.bin",
            make_body=lambda: b"\xff\xfe"),
    Example("too_deep", "JSON lồng 40 mức", "JSON nested 40 levels deep", "POST", "/api/v1/events",
            400, {"error": "too_deep", "detail": "JSON nested deeper than 32"},
            body="[" * 40 + "]" * 40),
    Example("bad_heartbeat", "Tín hiệu sống thiếu `agent_id`", "A heartbeat without `agent_id`",
            "POST", "/api/v1/agents/heartbeat", 400,
            {"error": "invalid_heartbeat", "field": "agent_id", "detail": "Field required"},
            body={"host": "PC-VHXH-01"}),
    Example("batch_too_large", "Lô 5001 sự kiện", "A batch of 5001 events", "POST",
            "/api/v1/events", 413, {"error": "batch_too_large", "detail": "at most 5000 events"},
            file="5001-su-kien.json", prepare=_MANY_EVENTS, make_body=lambda: _many_events(5001)),
    Example("body_too_large", "Thân lớn hơn 16 MiB", "A body over 16 MiB", "POST",
            "/api/v1/events", 413, {"error": "Request Entity Too Large", "status": 413},
            file="qua-lon.bin", prepare="head -c 16777217 /dev/zero > qua-lon.bin",
            make_body=lambda: bytes(16 * 1024 * 1024 + 1)),
    Example("wrong_method", "Sai phương thức", "Wrong method", "GET", "/api/v1/events", 405,
            {"error": "Method Not Allowed", "status": 405}, has_token=False),
)


# --- Building the OpenAPI document -----------------------------------------------------------


def build_spec(app=None) -> dict:
    """Return the OpenAPI document, built inside an app context (a throw-away app when none)."""
    from service.events.openapi import build_openapi

    if app is not None:
        with app.app_context():
            return build_openapi()
    from service import create_app

    with tempfile.TemporaryDirectory(prefix="canhgac-apidoc-") as scratch:
        temporary = create_app({"data_dir": scratch, "secret_key": "api-doc",
                                "scheduler_enabled": False, "policy_reload": False})
        try:
            with temporary.app_context():
                return build_openapi()
        finally:
            engine = temporary.extensions.get("canhgac.engine")
            if engine is not None:
                engine.dispose()


# --- Rendering -----------------------------------------------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str) -> str:
    return f"[`{name}`](#{name.lower()})"


def _type_text(schema: dict) -> str:
    """Describe a JSON schema fragment in a few words (types, limits, patterns)."""
    if "$ref" in schema:
        return _anchor(_ref_name(schema["$ref"]))
    if "anyOf" in schema:
        parts = [_type_text(s) for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in schema["anyOf"])
        return " \\| ".join(parts) + (" \\| `null`" if nullable else "")
    if "oneOf" in schema:
        return " \\| ".join(_type_text(s) for s in schema["oneOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any")
    words = [f"`{kind}`"]
    if "format" in schema:
        words.append(f"({schema['format']})")
    if kind == "array" and "items" in schema:
        words = [f"mảng / array of {_type_text(schema['items'])}"]
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None and high is not None:
        words.append(f"{low}–{high} ký tự / chars")
    elif high is not None:
        words.append(f"≤ {high} ký tự / chars")
    elif low is not None:
        words.append(f"≥ {low} ký tự / chars")
    if "minimum" in schema:
        words.append(f"≥ {schema['minimum']}")
    if "maximum" in schema:
        words.append(f"≤ {schema['maximum']}")
    if "pattern" in schema:
        words.append(PATTERN_WORDS.get(schema["pattern"], f"`{schema['pattern']}`"))
    if "patternProperties" in schema:
        inner = "; ".join(f"khoá / key `{key}` → {_type_text(value)}"
                          for key, value in schema["patternProperties"].items())
        if schema.get("additionalProperties") is False:
            inner += "; khoá khác bị từ chối / other keys refused"
        words.append(f"{{{inner}}}")
    return " ".join(words)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _schema_section(name: str, schema: dict) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    if "enum" in schema:
        notes = ENUM_NOTES_VI.get(name, {})
        lines += ["| giá trị / value | nghĩa |", "| --- | --- |"]
        lines += [f"| `{value}` | {notes.get(value, '')} |" for value in schema["enum"]]
        return [*lines, ""]
    required = set(schema.get("required", ()))
    lines += ["| trường / field | kiểu / type | bắt buộc / required | mô tả / description |",
              "| --- | --- | :-: | --- |"]
    for field, spec in schema.get("properties", {}).items():
        vi = FIELD_NOTES_VI.get(f"{name}.{field}", "")
        en = spec.get("description", "")
        if spec.get("default") not in (None, {}, []):
            en = f"{en} Default `{json.dumps(spec['default'])}`.".strip()
        text = " / ".join(part for part in (vi, en) if part)
        mark = "✓" if field in required else ""
        lines.append(f"| `{field}` | {_type_text(spec)} | {mark} | {_cell(text)} |")
    if schema.get("additionalProperties") is False:
        lines += ["", "Trường lạ bị từ chối (400). / Unknown fields are refused (400)."]
    return [*lines, ""]


def _endpoint_section(path: str, method: str, op: dict) -> list[str]:
    key = f"{method.upper()} {path}"
    summary = op.get("summary", "")
    if key in ENDPOINT_NOTES_VI:
        summary = f"{ENDPOINT_NOTES_VI[key]} / {summary}"
    lines = [f"### `{key}`", "", summary, ""]
    auth = "Bearer token" if op.get("security") else "không / none (public)"
    lines.append(f"- Xác thực / auth: {auth}")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        lines.append(f"- Thân yêu cầu / request body (`application/json`): {_type_text(body)}")
    lines += ["", "| mã / status | nghĩa / meaning | thân trả lời / answer |", "| --- | --- | --- |"]
    for status, answer in op.get("responses", {}).items():
        schema = answer.get("content", {}).get("application/json", {}).get("schema")
        shape = _type_text(schema) if schema else "JSON"
        lines.append(f"| {status} | {_cell(answer.get('description', ''))} | {shape} |")
    return [*lines, ""]


def _json_block(value: object) -> list[str]:
    return ["```json", json.dumps(value, ensure_ascii=False, indent=2), "```"]


def _answer_text(example: Example) -> str:
    # Flask's JSON has sorted keys and no spaces: print what curl prints.
    return json.dumps(example.answer, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _body_text(body: object) -> str:
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, indent=2)


def _curl(example: Example) -> list[str]:
    parts = ['curl -sS --cacert "$CERT"']
    if example.method != "POST":
        parts.append(f"-X {example.method}")
    if example.has_token:
        parts.append('-H "Authorization: Bearer $TOKEN"')
    has_body = example.body is not None or example.file is not None
    if has_body:
        parts.append('-H "Content-Type: application/json"')
        parts.append(f"--data-binary @{example.file}" if example.file else "--data-binary @-")
    command = " ".join(parts) + f' "$CANHGAC{example.path}"'
    lines = ["```sh"]
    if example.prepare:
        lines.append(example.prepare)
    elif example.file and not example.reuse_file:
        lines += [f"cat > {example.file} <<'JSON'", _body_text(example.body), "JSON"]
    if has_body and not example.file:
        lines += [f"{command} <<'JSON'", _body_text(example.body), "JSON"]
    else:
        lines.append(command)
    return [*lines, "```"]


def _example_section(example: Example) -> list[str]:
    lines = [f"#### {example.title_vi} / {example.title_en}", "", *_curl(example)]
    lines += ["", f"Trả lời / answer: **{example.status}**", "", "```json", _answer_text(example),
              "```", ""]
    return lines


def _ordered_schemas(schemas: dict) -> list[str]:
    first = [name for name in SCHEMA_ORDER if name in schemas]
    return first + sorted(name for name in schemas if name not in first)


def render(spec: dict) -> str:
    """Return docs/api.md for an OpenAPI document (pure: same document, same text)."""
    info = spec["info"]
    lines = [
        "# API v1 — tài liệu tham chiếu / reference",
        "",
        f"<!-- Sinh tự động bởi / generated by `{COMMAND}` từ / from "
        "`service.events.openapi.build_openapi()`. Đừng sửa tay / do not edit by hand; "
        "tests/test_docs_api.py fails when this file is stale. -->",
        "",
        f"{info['title']} {info['version']} — OpenAPI {spec['openapi']}. {info.get('description', '')}",
        "",
        "## Tóm tắt / Summary",
        "",
        "Phần mềm nghiệp vụ và tác tử giám sát gửi sự kiện truy cập dữ liệu công dân tới "
        "`POST /api/v1/events`, qua HTTPS, kèm mã truy cập (Bearer token). Máy chủ chỉ trả lời "
        "**200 sau khi đã ghi bền** (sự kiện đã nằm trong nhật ký kiểm toán có cây Merkle); khi "
        "không nhận được trả lời, cứ gửi lại: sự kiện trùng `id` không bị ghi hai lần. Một lô là "
        "**tất cả hoặc không**: một sự kiện sai thì cả lô bị từ chối, trả lời chỉ ra vị trí và "
        "trường sai. Không bao giờ gửi số định danh cá nhân, số điện thoại hay nội dung tệp: `pii` "
        "chỉ chứa **số đếm theo loại**.",
        "",
        "Business software and endpoint agents send access events to `POST /api/v1/events` over "
        "HTTPS with a bearer token. The server answers **200 only once the events are durable** "
        "in the audit trail; if no answer arrives, send again: an event whose `id` was seen before "
        "is not stored twice. A batch is **all or nothing**: one bad event refuses the batch, and "
        "the answer names its index and field. Never send ID numbers, phone numbers or file "
        "content: `pii` holds **counts by kind** only.",
        "",
        "Tài liệu OpenAPI đầy đủ (máy đọc) / the machine-readable document: "
        "`GET /api/v1/openapi.json`.",
        "",
        "## Kết nối và xác thực / Connection and authentication",
        "",
        "- **HTTPS.** `canhgac serve --tls` dùng chứng chỉ tự ký `keys/tls.crt` do `canhgac init` "
        "tạo (tên trong chứng chỉ: `localhost`, tên máy chủ, `127.0.0.1`). Tác tử **ghim** dấu vân "
        "tay SHA-256 của chứng chỉ (docs/agent.md). Phần mềm khác: tin đúng tệp `tls.crt` đó "
        "(`curl --cacert tls.crt`), hoặc ghim dấu vân tay; đừng tắt kiểm tra chứng chỉ. / "
        "`canhgac serve --tls` serves the self-signed `keys/tls.crt` made by `canhgac init` "
        "(names: `localhost`, the server's host name, `127.0.0.1`). Agents pin its SHA-256 "
        "fingerprint; other software trusts exactly that file or pins it — never switch "
        "certificate checks off.",
        "- **Mã truy cập / token.** Quản trị tạo một mã cho mỗi nguồn (mỗi máy, mỗi phần mềm): "
        "`canhgac token create --source TEN-NGUON` (mã in một lần, ở dòng cuối, bắt đầu bằng "
        "`cg_`) hoặc trang `/admin/tokens`. Máy chủ chỉ lưu giá trị băm. Gửi "
        "`Authorization: Bearer <mã>`. Máy chủ ghi `source` của mỗi sự kiện theo mã, không theo "
        "nội dung gửi. Thu hồi: `canhgac token revoke SỐ` → 401. / One token per source (PC or "
        "application), printed once on the last line, starting with `cg_`; only its hash is "
        "stored. The server sets each event's `source` from the token. A revoked token gets 401.",
        "- **Mã giám sát / monitor tokens.** `canhgac token create --source TEN --scope monitor` "
        "tạo mã chỉ đọc nhật ký qua C2SP tlog-tiles (`/tlog/checkpoint`, `/tlog/tile/…`, "
        "docs/audit-log.md); mã này gửi sự kiện hay nhịp tim đều bị 401. / A `monitor` token only "
        "reads the trail over tlog-tiles; sending events or heartbeats with it gets 401.",
        "- **Giới hạn / limits.** `max_batch_events` (mặc định / default 5000 sự kiện / events), "
        "`max_body_bytes` (16 MiB); docs/configuration.md.",
        "- **Thời gian / times.** `occurred_at` phải có múi giờ (`+07:00` hoặc `Z`). / must carry an "
        "offset.",
        "",
        "Các ví dụ dưới dùng / the examples below use:",
        "",
        "```sh",
        "CANHGAC=https://127.0.0.1:8443             # trên máy chủ / on the server itself",
        "CERT=/var/lib/canhgac/keys/tls.crt          # <thư mục dữ liệu>/keys/tls.crt / <data dir>",
        "TOKEN=$(cg token create --source PM-HOTICH | tail -n 1)   # cg: docs/operator-guide.md",
        "```",
        "",
        "Từ máy khác, chép `tls.crt` sang và dùng tên máy chủ có trong chứng chỉ: / from another "
        "machine, copy `tls.crt` over and use the host name in the certificate: "
        "`curl --cacert tls.crt --resolve canhgac-server:8443:192.168.1.10 "
        "https://canhgac-server:8443/healthz` (thay tên và địa chỉ / your name and address). Trên "
        "Windows dùng `curl.exe` (có sẵn từ Windows 10) và tệp thân yêu cầu (`--data-binary "
        "@su-kien.json`) thay cho `<<'JSON'`. / On Windows use `curl.exe` (built in since "
        "Windows 10) and a body file instead of the here-document.",
        "",
        "## Điểm cuối / Endpoints",
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines += _endpoint_section(path, method, op)
    lines += ["## Lược đồ / Schemas", ""]
    schemas = spec.get("components", {}).get("schemas", {})
    for name in _ordered_schemas(schemas):
        lines += _schema_section(name, schemas[name])
    lines += [
        "## Mã lỗi / Error codes",
        "",
        "Trả lời lỗi là JSON `{\"error\": …}` (`ErrorAnswer`); lỗi chung của HTTP (405, 413 do "
        "thân quá lớn) có dạng `{\"error\": \"<tên HTTP>\", \"status\": <mã>}`; 405 có tiêu đề "
        "`Allow` nêu các phương thức được phép. Lời giải thích (`detail`) không bao giờ chép thông "
        "báo nội bộ của trình thông dịch. / Errors answer "
        "JSON `{\"error\": …}`; generic HTTP errors (405, 413 for a body too large) answer "
        "`{\"error\": \"<HTTP name>\", \"status\": <code>}`; a 405 carries an `Allow` header "
        "naming the methods allowed. A `detail` never quotes the interpreter's internal messages.",
        "",
        "| mã / status | `error` | khi nào | when |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {e.status} | `{e.code}` | {_cell(e.vi)} | {_cell(e.en)} |" for e in ERRORS]
    lines += [
        "",
        "Nên làm gì / what a client should do: **400** — sửa sự kiện (tác tử đánh dấu sự kiện đó "
        "là bị từ chối và gửi phần còn lại); **409** — như 400: sự kiện ở `index` mang `id` đã "
        "dùng cho sự kiện khác, đánh dấu nó bị từ chối (hoặc cấp `id` mới) và gửi phần còn lại; "
        "**401** — kiểm tra mã truy cập, giữ nguyên sự kiện; "
        "**413** — chia đôi lô; **5xx** hoặc mất mạng — gửi lại sau, tăng dần thời gian chờ "
        "(không mất gì, không trùng gì). / **400**: fix the event (the agent marks it rejected and "
        "sends the rest); **409**: as 400 — the event at `index` reuses the `id` of another event: "
        "mark it rejected (or give it a new id) and send the rest; "
        "**401**: check the token, keep the events; **413**: halve the batch; "
        "**5xx** or no network: retry with backoff (nothing lost, nothing doubled).",
        "",
        "## Ví dụ / Examples",
        "",
        "Mỗi ví dụ dưới đây được `tests/test_docs_api.py` gửi tới máy chủ thật, theo đúng thứ tự "
        "này, và trả lời in ra là trả lời thật. Sự kiện đầu tiên (sao chép danh sách hộ nghèo ra "
        "USB) khớp quy tắc mặc định `sao_chep_thiet_bi_di_dong` nên mở một sự cố và thông báo "
        "lãnh đạo, Công an xã. / Each example is sent to a real server by tests/test_docs_api.py, "
        "in this order, and the answer shown is the real one. The first event (a poor-household "
        "list copied to USB) matches the default rule `sao_chep_thiet_bi_di_dong`, so it opens an "
        "incident and notifies the leaders and police.",
        "",
    ]
    for example in EXAMPLES:
        lines += _example_section(example)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


# --- Command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None, app=None) -> int:
    """Write docs/api.md, or with --check report whether it is stale; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the file differs from what would be written")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/api.md")
    args = parser.parse_args(argv)
    text = render(build_spec(app))
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if args.check:
        if current == text:
            print(f"{args.output}: up to date")
            return 0
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "on disk",
                                    "generated", lineterm="", n=1)
        print("\n".join(list(diff)[:40]))
        print(f"{args.output} is stale: run `{COMMAND}`", file=sys.stderr)
        return 1
    if current != text:
        args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}" if current != text else f"{args.output}: unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
