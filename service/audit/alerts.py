"""Critical alerts about the trail itself: a failed re-verification, a witness's refusal."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings


def raise_trail_alert(session: Session, settings: Settings, *, rule_id: str, explanation: str,
                      group_key: str, details: list[str], entry_seq: int | None = None) -> bool:
    """Open a critical alert and tell leadership and police at once; False if already open.

    One open alert per ``group_key``: a job that fails every minute must not bury the police
    under copies. Counts, sizes and origins only; never entry contents.
    """
    from service.incidents.models import Alert, AlertState
    from service.notify.outbox import default_recipients, notify_users

    open_alert = session.scalar(select(Alert.id).where(
        Alert.group_key == group_key[:512], Alert.state == AlertState.OPEN))
    if open_alert is not None:
        return False
    session.add(Alert(rule_id=rule_id, severity="critical", response="alert",
                      explanation=explanation, entry_seq=entry_seq,
                      group_key=group_key[:512]))
    session.flush()
    text = "\n".join([f"{explanation}.", *details,
                      "Đề nghị Công an xã kiểm tra ngay: chạy `canhgac verify` và đối chiếu "
                      "với checkpoint đã giữ bên ngoài (thư, giấy)."])
    notify_users(session, default_recipients(session),
                 subject=f"[Canh Gác] CẢNH BÁO NGHIÊM TRỌNG: {explanation}", text=text,
                 kind="audit.integrity", settings=settings)
    return True
