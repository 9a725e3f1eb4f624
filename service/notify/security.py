"""Tell leadership and police at once when someone changes who may do what.

An insider holding the admin role could give themselves the police role, reset a leader's
password, disable the account of whoever watches them, mint an ingest token or weaken the
policy. The trail already records each change; these notices make sure the people meant
to watch learn of it while it still matters, through the same durable outbox as incidents.
Only account names, roles and rule ids appear: never a password, a token or citizen data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from service.auth.models import User
from service.config import Settings
from service.core.db import utcnow
from service.notify.models import OutboxMessage
from service.notify.outbox import _settings, default_recipients, notify_users

KIND = "security.change"

ROLE_LABELS = {
    "admin": "quản trị", "leader": "lãnh đạo", "police": "công an", "official": "cán bộ",
}


def role_list(roles: Sequence[str]) -> str:
    """Return roles as Vietnamese labels in a stable order ("không có" when empty)."""
    return ", ".join(ROLE_LABELS.get(role, role) for role in sorted(roles)) or "không có"


def notify_security_change(
    session: Session, *, headline: str, details: Sequence[str], by: str,
    also: Iterable[User] = (), settings: Settings | None = None, now: datetime | None = None,
) -> list[OutboxMessage]:
    """Enqueue a notice of an account, token or policy change to every leader and police user.

    ``also`` adds people the change concerns who may no longer be watchers once it is made:
    a police officer whose role is taken away hears of it too (disabled accounts get no mail).
    Flushes only: the notice leaves after the caller commits the change it describes, so a
    change that is rolled back is never announced and one that is committed always is.
    """
    settings = _settings(settings)
    when = (now or utcnow()).astimezone(ZoneInfo(settings.timezone))
    lines = [
        f"{headline}.",
        *details,
        f"Người thực hiện: {by}.",
        f"Thời điểm: {when:%H:%M:%S ngày %d/%m/%Y} (giờ địa phương).",
        "Nếu thay đổi này không được lãnh đạo cho phép, đề nghị báo ngay cho Công an xã; "
        "chi tiết có trong nhật ký kiểm toán.",
    ]
    recipients = {user.id: user for user in default_recipients(session)}
    for user in also:
        recipients.setdefault(user.id, user)
    return notify_users(
        session, [recipients[key] for key in sorted(recipients)], subject=f"[Canh Gác] Thay đổi quyền: {headline}",
        text="\n".join(lines), kind=KIND, settings=settings,
    )
