"""A data class the policy does not know is not silence: it raises one alert per PC and class."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from canhgac_common.events import Event
from service.audit.models import AuditEntry
from service.core.db import new_session
from service.events.operations import ingest_events
from service.incidents.models import Alert


def _events(host: str, data_class: str | None, n: int = 3) -> list[Event]:
    now = datetime.now(UTC)
    return [Event.model_validate({
        "id": str(uuid.uuid4()), "occurred_at": (now - timedelta(minutes=n - i)).isoformat(),
        "host": host, "actor": "vhxh.lethid", "unit": "vh_xh", "action": "read",
        "object": {"path": f"/home/vhxh/Khac/tep_{i}.xlsx",
                   **({"data_class": data_class} if data_class else {})}}) for i in range(n)]


def _ingest(app, events):
    with app.app_context():
        s = new_session()
        try:
            ingest_events(s, events, source="agent-test", processor=app.extensions["canhgac.processor"])
            s.commit()
        finally:
            s.close()


def _read(app, query):
    with app.app_context():
        s = new_session()
        try:
            rows = list(s.scalars(query))
            s.expunge_all()
            return rows
        finally:
            s.close()


def test_an_unknown_class_raises_one_alert_per_pc_and_class(app):
    _ingest(app, _events("PC-VH_XH-01", "ho_ngheo"))
    _ingest(app, _events("PC-VH_XH-01", "ho_ngheo"))  # still open: not said again
    _ingest(app, _events("PC-VH_XH-02", "ho_ngheo"))  # another PC: its own alert
    _ingest(app, _events("PC-VH_XH-01", "dan_cu"))  # a class the policy knows: nothing
    _ingest(app, _events("PC-VH_XH-01", None))  # none supplied: nothing
    alerts = _read(app, select(Alert).where(Alert.rule_id == "policy.unknown_data_class")
                   .order_by(Alert.id))
    assert [(a.host, a.data_class, a.severity) for a in alerts] == [
        ("PC-VH_XH-01", "ho_ngheo", "high"), ("PC-VH_XH-02", "ho_ngheo", "high")]
    assert "ho_ngheo" in alerts[0].explanation and "không có" in alerts[0].explanation
    entries = _read(app, select(AuditEntry).where(AuditEntry.kind == "policy.unknown_data_class"))
    assert len(entries) == 2
    assert all(a.entry_seq in {e.seq for e in entries} for a in alerts)


def test_a_dismissed_alert_is_raised_again_by_the_next_batch(app, make_user):
    from service.incidents import workflow

    _ingest(app, _events("PC-VH_XH-01", "ho_ngheo"))
    (alert,) = _read(app, select(Alert).where(Alert.rule_id == "policy.unknown_data_class"))
    make_user("ca.1", "police", unit="cong_an")
    with app.app_context():
        s = new_session()
        try:
            from service.auth.models import User

            police = s.scalar(select(User).where(User.username == "ca.1"))
            workflow.dismiss_alert(s, s.get(Alert, alert.id), police, "đã sửa cấu hình")
            s.commit()
        finally:
            s.close()
    _ingest(app, _events("PC-VH_XH-01", "ho_ngheo"))
    assert len(_read(app, select(Alert).where(Alert.rule_id == "policy.unknown_data_class"))) == 2
