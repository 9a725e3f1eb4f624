"""SMS through gammu-smsd's FILES backend: OUT files to send, IN files (replies) to read.

Sending: each SMS outbox row becomes one ``OUT<priority><date>_<time>_00_<number>_cg<row id>.txt``
file in ``sms_outbox_dir`` (gammu-smsd-files(7)). The name depends only on the row, so a retry
after a crash finds the file it already handed over (in the outbox, sent or error folder) and
does not write a second one. The file is written under a hidden temporary name gammu ignores,
then renamed, so the daemon never reads half a message. Text without diacritics is plain ASCII;
any other text is UTF-16 with a byte-order mark, which gammu reads as Unicode.

Reply codes: an SMS that asks for an acknowledgement (leaders) or a receipt confirmation
(police) ends with ``XN <incident> <code>``. The stored body holds a placeholder; the code is
drawn when the file is written and only its HMAC (keyed with the service's secret key) is kept,
with an expiry. Reading the inbox (``read_inbox``, a scheduled job) matches a reply to its code
and the sender's number and then calls the same operation as the web page.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.notify.models import SmsCode

log = structlog.get_logger("canhgac.notify.sms")

CODE_PLACEHOLDER = "<MA>"  # in stored bodies; the real code exists only in the SMS itself
# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: a code read out or typed on a phone keypad stays unambiguous.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 5
REPLY_KEYWORD = "XN"
PURPOSE_ACKNOWLEDGE = "acknowledge"
PURPOSE_CONFIRM_RECEIPT = "confirm_receipt"
GSM7_SINGLE_MAX = 160
# GSM 03.38 default alphabet (one septet each) and its extension table (two septets each).
_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€")
_TEMP_PREFIX = ".canhgac-"


class SmsNotConfiguredError(Exception):
    """sms_outbox_dir is not set (the dispatcher turns this into a retry, like SMTP)."""


# ---------------------------------------------------------------- text


def strip_diacritics(text: str) -> str:
    """Return Vietnamese text without diacritics ("Sự cố đã" → "Su co da")."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(
        ch for ch in decomposed if unicodedata.category(ch) != "Mn"))


def gsm7_length(text: str) -> int | None:
    """Return the number of GSM-7 septets the text takes, or None if it needs UCS-2."""
    total = 0
    for ch in text:
        if ch in _GSM7_BASIC:
            total += 1
        elif ch in _GSM7_EXTENDED:
            total += 2
        else:
            return None
    return total


def to_gsm7(text: str) -> str:
    """Return the text in the GSM-7 default alphabet: diacritics dropped, other signs replaced."""
    plain = strip_diacritics(text).replace("—", "-").replace("–", "-").replace("…", "...")
    return "".join(ch if ch in _GSM7_BASIC else "?" for ch in plain)


def fit_sms(parts: list[str], tail: str, settings: Settings) -> str:
    """Join the parts and the tail; without diacritics drop parts until it fits one SMS."""
    if not settings.sms_without_diacritics:
        return " ".join(p for p in [*parts, tail] if p)
    kept = [to_gsm7(p) for p in parts]
    tail = to_gsm7(tail)
    def length(text: str) -> int:
        # Measured with the code in place of its (shorter) placeholder.
        return gsm7_length(text.replace(CODE_PLACEHOLDER, "X" * CODE_LENGTH)) or 0

    while True:
        text = " ".join(p for p in [*kept, tail] if p)
        if length(text) <= GSM7_SINGLE_MAX or len(kept) <= 1:
            break
        kept.pop()  # the last part is the least needed (details before the reply line)
    if length(text) > GSM7_SINGLE_MAX:
        text = text[:GSM7_SINGLE_MAX]
    return text


def reply_line(incident_id: int, purpose: str | None) -> str:
    """Return the closing instruction of an SMS that asks for a reply."""
    if purpose == PURPOSE_ACKNOWLEDGE:
        return f"Xác nhận đã nhận: nhắn {REPLY_KEYWORD} {incident_id} {CODE_PLACEHOLDER}"
    if purpose == PURPOSE_CONFIRM_RECEIPT:
        return f"Công an xác nhận đã nhận tin: nhắn {REPLY_KEYWORD} {incident_id} {CODE_PLACEHOLDER}"
    return ""


def _count_text(incident) -> str:
    # Counts and kinds only: never a title or summary, which people write and may name citizens.
    pii_total = sum(int(v) for v in (incident.pii_counts or {}).values() if str(v).isdigit())
    classes = len(incident.data_classes or [])
    bits = []
    if classes:
        bits.append(f"{classes} loại dữ liệu")
    if pii_total:
        bits.append(f"{pii_total} mục định danh")
    if not bits:
        return "nghi lộ dữ liệu cá nhân." if incident.involves_personal_data else ""
    return "Liên quan " + ", ".join(bits) + "."


def render_incident_sms(kind: str, incident, settings: Settings, *, purpose: str | None,
                        standing_in_for: str | None = None, extra: str = "") -> str:
    """Return the short SMS of an incident event; the code is a placeholder until sending."""
    from service.notify.templates import local_time_text, notice_deadline
    from service.web.labels import label_vi

    severity = label_vi(incident.severity, "severity").lower()
    n = incident.id
    heads = {
        "created": f"Canh Gác: sự cố mới #{n}, mức {severity}.",
        "escalated": f"Canh Gác KHẨN: sự cố #{n} (mức {severity}) chưa được xác nhận.",
        "dismissed": f"Canh Gác: sự cố #{n} đã bị bác bỏ.",
        "deadline_reminder": f"Canh Gác: nhắc hạn thông báo {settings.breach_notice_hours} giờ, "
                             f"sự cố #{n}.",
        "acknowledged": f"Canh Gác: sự cố #{n} đã được xác nhận đã nhận.",
    }
    parts = [heads[kind]]
    if standing_in_for:
        parts.append(f"(Thay {standing_in_for} đang nghỉ.)")
    if kind in ("created", "escalated"):
        parts.append(_count_text(incident))
    if kind == "deadline_reminder":
        due = notice_deadline(incident, settings.breach_notice_hours)
        if due is not None:
            parts.append(f"Hạn {local_time_text(due, settings.timezone)}.")
    if extra:
        parts.append(extra)
    return fit_sms(parts, reply_line(n, purpose), settings)


def render_answer(text: str, settings: Settings) -> str:
    """Return a short answer to a reply, in GSM-7 when diacritics are off."""
    return fit_sms([text], "", settings)


# ---------------------------------------------------------------- codes


def _code_hash(settings: Settings, code: str) -> str:
    # The installation's secret: the configured one, else the one create_app keeps under keys/
    # (never a constant: with a known key a copy of the database gives up every live code).
    key = (settings.secret_key
           or (settings.keys_dir / "secret_key").read_text(encoding="utf-8").strip()).encode()
    return hmac.new(key, b"canhgac-sms-code:" + code.upper().encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    """Return a fresh one-time reply code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def arm_code(session: Session, settings: Settings, message_id: int, now: datetime) -> str:
    """Draw a code for an SMS about to be written, keep its hash and expiry; commit; return it."""
    code = new_code()
    session.execute(
        update(SmsCode).where(SmsCode.message_id == message_id, SmsCode.used_at.is_(None))
        .values(code_hash=_code_hash(settings, code), created_at=now,
                expires_at=now + timedelta(hours=settings.sms_code_valid_hours))
        .execution_options(synchronize_session=False)
    )
    # Committed before the file exists: a crash in between leaves a hash whose code nobody
    # has; the retry draws a new one.
    session.commit()
    return code


def find_codes(session: Session, settings: Settings, incident_id: int, code: str) -> list[SmsCode]:
    """Return the code rows of an incident whose hash matches the code (normally one)."""
    digest = _code_hash(settings, code)
    rows = session.scalars(select(SmsCode).where(SmsCode.incident_id == incident_id,
                                                 SmsCode.code_hash.is_not(None)))
    return [row for row in rows if hmac.compare_digest(row.code_hash, digest)]


# ---------------------------------------------------------------- OUT files


def _dir(value: Path | None) -> Path | None:
    return Path(value) if value else None


def out_file_name(message_row_id: int, number: str, created_at: datetime, priority: str) -> str:
    """Return the OUT file name of an outbox row (gammu-smsd-files format 3; stable per row)."""
    stamp = created_at.strftime("%Y%m%d_%H%M%S")
    digits = "+" + re.sub(r"\D", "", number) if number.startswith("+") else re.sub(r"\D", "", number)
    return f"OUT{priority}{stamp}_00_{digits}_cg{message_row_id}.txt"


def is_handed_over(settings: Settings, name: str) -> bool:
    """Return whether gammu-smsd already has this file (waiting, sent or failed)."""
    for folder in (settings.sms_outbox_dir, settings.sms_sent_dir, settings.sms_error_dir):
        if folder and (Path(folder) / name).exists():
            return True
    return False


def encode_sms_text(text: str) -> bytes:
    """Return file content gammu reads right: ASCII as is, anything else UTF-16 with a BOM."""
    if text.isascii():
        return text.encode("ascii")
    return b"\xff\xfe" + text.encode("utf-16-le")


def write_out_file(folder: Path, name: str, text: str) -> Path:
    """Write an OUT file atomically: a hidden temporary name gammu ignores, then a rename."""
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f"{_TEMP_PREFIX}{name}.tmp"
    with open(temp, "wb") as fh:
        fh.write(encode_sms_text(text))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, folder / name)
    return folder / name


class SmsChannel:
    """Hands SMS outbox rows to gammu-smsd as OUT files, exactly once per row."""

    def __init__(self, settings: Settings, session: Session | None) -> None:
        self.settings = settings
        self.session = session

    def send(self, snapshot, now: datetime) -> None:
        """Write the row's OUT file unless gammu-smsd already has it; raise on failure."""
        outbox = _dir(self.settings.sms_outbox_dir)
        if outbox is None:
            raise SmsNotConfiguredError("sms_outbox_dir is not set")
        if not snapshot.address:
            raise ValueError("SMS without a number")
        priority = "A" if CODE_PLACEHOLDER in snapshot.body else "B"
        name = out_file_name(snapshot.id, snapshot.address, snapshot.created_at, priority)
        if is_handed_over(self.settings, name):
            log.info("sms_already_handed_over", message=snapshot.id)
            return
        text = snapshot.body
        if CODE_PLACEHOLDER in text:
            if self.session is None:
                raise RuntimeError("an SMS with a reply code needs a database session")
            text = text.replace(CODE_PLACEHOLDER, arm_code(self.session, self.settings,
                                                           snapshot.id, now))
        write_out_file(outbox, name, text)


# ---------------------------------------------------------------- IN files

_IN_NAME = re.compile(r"^IN(\d{8})_(\d{6})_(\d{2})_(.+)_(\d{2})\.txt$", re.IGNORECASE)
_REPLY = re.compile(r"^\s*XN\s*#?\s*(\d{1,9})\s+([A-Za-z0-9]{3,12})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class InboxFile:
    """A received SMS file: its name, the sender as gammu wrote it, the text."""

    path: Path
    sender: str
    text: str


def decode_sms_file(data: bytes) -> str:
    """Decode an IN file: UTF-16 with a BOM (InboxFormat=unicode) or UTF-8 / ASCII."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")  # a damaged file must not stop the inbox
    return data.decode("utf-8", "replace")


# gammu-smsd writes IN files in place (no rename): one younger than this may still be written.
INBOX_SETTLE_SECONDS = 2.0


def list_inbox(folder: Path, settle_seconds: float = INBOX_SETTLE_SECONDS) -> list[InboxFile]:
    """Return the IN…txt files of the inbox folder old enough to be complete, oldest name first."""
    if not folder.is_dir():
        return []
    files = []
    now = time.time()
    for path in sorted(folder.iterdir()):
        match = _IN_NAME.match(path.name)
        if not match or not path.is_file() or now - path.stat().st_mtime < settle_seconds:
            continue  # a fresh file waits for the next run
        files.append(InboxFile(path, match.group(4), decode_sms_file(path.read_bytes())))
    return files


def parse_reply(text: str) -> tuple[int, str] | None:
    """Return (incident number, code) of an "XN <n> <code>" reply, or None."""
    match = _REPLY.match(strip_diacritics(text or ""))
    if not match:
        return None
    return int(match.group(1)), match.group(2).upper()


def processed_dir(settings: Settings) -> Path:
    """Return where read IN files are moved (inside the inbox folder: same disk, atomic rename)."""
    return Path(settings.sms_inbox_dir) / "processed"
