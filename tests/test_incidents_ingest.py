"""A rule with response "incident" on ingest: the incident opens once, repeats join it."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from service.core.db import new_session


def _usb_copy(path: str, minute: int) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": f"2026-03-02T09:{minute:02d}:00+07:00",
        "host": "PC-MC-02",
        "actor": "tthc.nguyenvana",
        "action": "copy",
        "object": {"path": path, "record_count": 30},
        "destination": {"path": "E:\\ds.xlsx", "kind": "removable"},
        "pii": {"cccd": 30},
        "unit": "tt_hcc",
    }


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "tac-tu-may-tram"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _post(client, token, events):
    return client.post("/api/v1/events", data=json.dumps(events), content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


def test_repeated_usb_copies_join_one_incident(app, client, token, make_user):
    from service.incidents.models import Alert, Incident
    from service.notify.models import OutboxMessage

    make_user("chu-tich", "leader")
    path = "C:\\DuLieu\\DanCu\\ds_thon_na_lau.xlsx"
    assert _post(client, token, [_usb_copy(path, 10)]).status_code == 200
    assert _post(client, token, [_usb_copy(path, 12), _usb_copy(path, 14)]).status_code == 200
    assert _post(client, token, [_usb_copy("C:\\DuLieu\\DanCu\\khac.xlsx", 20)]).status_code == 200
    with app.app_context():
        s = new_session()
        try:
            incidents = s.scalars(select(Incident).order_by(Incident.id)).all()
            alerts = s.scalars(select(Alert).order_by(Alert.id)).all()
            created = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "created")).all()
        finally:
            s.close()
    assert [i.origin for i in incidents] == ["rule", "rule"]
    first, other = incidents
    assert first.rule_id == "sao_chep_thiet_bi_di_dong" and first.hit_count == 3
    assert first.pii_counts == {"cccd": 90} and first.data_classes == ["dan_cu"]
    assert first.involves_personal_data and first.notice_due_at is not None
    assert other.hit_count == 1
    usb_alerts = [a for a in alerts if a.rule_id == "sao_chep_thiet_bi_di_dong"]
    assert [a.incident_id for a in usb_alerts] == [first.id] * 3 + [other.id]
    # One "created" notice per incident to the one leader, none for the joined repeats.
    assert sorted(m.incident_id for m in created) == [first.id, other.id]
