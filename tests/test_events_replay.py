"""`canhgac policy replay` runs a draft policy over past entries and changes nothing."""

from __future__ import annotations

import shutil
import uuid

from sqlalchemy import func, select

from canhgac_common.events import Event
from service.audit.models import AuditEntry
from service.core.db import new_session
from service.events.operations import ingest_events
from service.policy.loader import default_policy_dir


def _events():
    common = {"host": "PC-VHXH-01", "actor": "vhxh.lethid", "unit": "vh_xh"}
    return [
        Event.model_validate({**common, "id": str(uuid.uuid4()), "action": "copy",
                              "occurred_at": "2026-03-03T10:00:00+07:00",
                              "object": {"path": "/home/vhxh/AnSinh/chi_tra.csv", "record_count": 40},
                              "destination": {"path": "/home/vhxh/Zalo Received Files/x.csv"}}),
        Event.model_validate({**common, "id": str(uuid.uuid4()), "action": "open",
                              "occurred_at": "2026-03-03T10:05:00+07:00",
                              "object": {"path": "/home/vhxh/AnSinh/chi_tra.csv"}}),
    ]


def test_replay_reports_hits_of_a_draft_and_writes_nothing(app, runner, tmp_path):
    with app.app_context():
        s = new_session()
        ingest_events(s, _events(), source="test", processor=None)
        s.commit()
        before = s.scalar(select(func.count()).select_from(AuditEntry))
        s.close()
    draft = tmp_path / "draft"
    shutil.copytree(default_policy_dir(), draft)
    result = runner.invoke(["policy", "replay", "--since", "2000-01-01", "--dir", str(draft)])
    assert result.exit_code == 0, result.output
    assert "sao_chep_dam_may_nhan_tin" in result.output
    assert "2 sự kiện / events" in result.output
    with app.app_context():
        s = new_session()
        after = s.scalar(select(func.count()).select_from(AuditEntry))
        s.close()
    assert after == before


def test_replay_refuses_a_broken_draft(runner, tmp_path):
    draft = tmp_path / "draft"
    shutil.copytree(default_policy_dir(), draft)
    (draft / "rules.yaml").write_text("rules: [ {id: 1", encoding="utf-8")
    result = runner.invoke(["policy", "replay", "--since", "2026-01-01", "--dir", str(draft)])
    assert result.exit_code != 0
    assert "invalid policy" in result.output
