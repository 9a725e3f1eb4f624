"""Escalation of unacknowledged incidents and the 72-hour reminders: explicit clocks, no sleeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.audit.models import AuditEntry
from service.incidents import jobs as J
from service.incidents import workflow as W
from service.incidents.models import Incident, IncidentState
from service.notify.models import OutboxMessage
from tests.test_incidents_workflow import add_users

T0 = datetime(2026, 5, 4, 23, 50, tzinfo=UTC)


@pytest.fixture
def settings_overrides(settings_overrides):
    # Step 1: everyone (leaders and police); step 2: the chairman by name plus an account that
    # does not exist (shows up in the trail); later levels repeat step 2.
    return {**settings_overrides, "escalation_steps": [[], ["chu-tich", "khong-co-ai"]],
            "ack_sla_minutes": 15}


@pytest.fixture
def settings(app):
    return app.config["SETTINGS"]


@pytest.fixture
def people(app, session):
    users = add_users(
        session, ("can-bo", "official", "tt_hcc"), ("cong-an", "police", "cong_an"),
        ("truong-cong-an", "police", "cong_an"), ("chu-tich", "leader", "lanh_dao"),
        ("pho-chu-tich", "leader", "lanh_dao"), ("quan-tri", "admin", None),
    )
    return users


def new_incident(session, settings, people, **overrides) -> Incident:
    args = {"origin": "report", "title": "Tài khoản một cửa đăng nhập lạ",
            "reporter": people["can-bo"], "detected_at": T0, "now": T0}
    args.update(overrides)
    incident = W.report_incident(session, settings, **args)
    session.commit()
    return incident


def entries(session, incident_id, kind) -> list[dict]:
    rows = session.scalars(select(AuditEntry).where(
        AuditEntry.incident_id == incident_id, AuditEntry.kind == kind).order_by(AuditEntry.seq))
    return [json.loads(row.body)["body"] for row in rows]


def recipients(session, incident_id, kind) -> list[str]:
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.incident_id == incident_id, OutboxMessage.kind == kind))
    return sorted(m.recipient_username for m in rows)


def test_escalation_fires_after_the_sla_repeats_and_stops_after_acknowledgement(
        session, settings, people):
    incident = new_incident(session, settings, people)
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=14, seconds=59)) == []
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=15)) == [incident]
    session.commit()
    assert incident.escalation_level == 1
    first = entries(session, incident.id, "incident.escalated")
    assert [e["level"] for e in first] == [1]
    assert first[0]["by"] == "system"
    everyone = ["chu-tich", "cong-an", "pho-chu-tich", "truong-cong-an"]
    assert first[0]["recipients"] == everyone
    assert recipients(session, incident.id, "escalated") == everyone
    # Running again within the same period changes nothing (twice, or a fast scheduler).
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=16)) == []
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=29)) == []
    # The next period: the next step.
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=30)) == [incident]
    second = entries(session, incident.id, "incident.escalated")[-1]
    assert second["level"] == 2 and second["unknown_recipients"] == ["khong-co-ai"]
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=45)) == [incident]
    assert incident.escalation_level == 3
    W.acknowledge_incident(session, incident, people["chu-tich"], now=T0 + timedelta(minutes=50))
    session.commit()
    for minutes in (60, 75, 600):
        assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=minutes)) == []
    assert len(entries(session, incident.id, "incident.escalated")) == 3
    [ack] = entries(session, incident.id, "incident.acknowledged")
    assert ack["minutes_after_report"] == 50 and ack["escalation_level"] == 3


def test_escalation_run_late_fires_once_at_the_level_due(session, settings, people):
    incident = new_incident(session, settings, people)
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=50)) == [incident]
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(minutes=50)) == []
    [entry] = entries(session, incident.id, "incident.escalated")
    assert entry["level"] == 3 and entry["skipped_levels"] == 2
    assert entry["minutes_unacknowledged"] == 50


def test_escalation_ignores_acknowledged_and_dismissed_incidents(session, settings, people):
    acknowledged = new_incident(session, settings, people)
    W.acknowledge_incident(session, acknowledged, people["chu-tich"], now=T0)
    dismissed = new_incident(session, settings, people)
    W.dismiss_incident(session, dismissed, people["cong-an"], reason="Báo nhầm", now=T0)
    session.commit()
    assert J.escalate_overdue(session, settings, now=T0 + timedelta(hours=5)) == []


def test_escalation_recipients_follow_the_steps(session, settings, people):
    users, unknown = J.escalation_recipients(session, settings, 1)
    assert [u.username for u in users] == ["chu-tich", "cong-an", "pho-chu-tich", "truong-cong-an"]
    assert unknown == []
    people["pho-chu-tich"].is_disabled = True
    users, unknown = J.step_recipients(session, ["role:police", "chu-tich", "pho-chu-tich"])
    assert [u.username for u in users] == ["chu-tich", "cong-an", "truong-cong-an"]
    assert unknown == ["pho-chu-tich"]


def test_reminders_fire_at_24_48_and_66_hours_once_each(session, settings, people):
    incident = new_incident(session, settings, people)
    fired = []
    for hours in (1, 23.9, 24, 24.5, 30, 47.99, 48, 48, 60, 66, 66.1, 71, 80, 200):
        for item, hour in J.send_deadline_reminders(session, settings,
                                                    now=T0 + timedelta(hours=hours)):
            assert item.id == incident.id
            fired.append((hours, hour))
        session.commit()
    assert fired == [(24, 24), (48, 48), (66, 66)]
    assert incident.reminders_sent == [24, 48, 66]
    bodies = entries(session, incident.id, "incident.deadline_reminder")
    assert [b["hour"] for b in bodies] == [24, 48, 66]
    assert len(recipients(session, incident.id, "deadline_reminder")) == 3 * 4


def test_reminders_run_late_send_one_and_count_the_missed_marks(session, settings, people):
    incident = new_incident(session, settings, people)
    [(_, hour)] = J.send_deadline_reminders(session, settings, now=T0 + timedelta(hours=50))
    assert hour == 48 and incident.reminders_sent == [24, 48]
    [body] = entries(session, incident.id, "incident.deadline_reminder")
    assert body["skipped_hours"] == [24]
    assert J.send_deadline_reminders(session, settings, now=T0 + timedelta(hours=50)) == []


def test_no_reminders_once_the_notice_is_sent_or_without_personal_data(session, settings, people):
    sent = new_incident(session, settings, people)
    W.record_breach_notice_sent(session, sent, people["chu-tich"], sent_at=T0 + timedelta(hours=2),
                                channel="cong_thong_tin", reference="PORTAL-7",
                                now=T0 + timedelta(hours=2))
    new_incident(session, settings, people, involves_personal_data=False)
    dismissed = new_incident(session, settings, people)
    W.dismiss_incident(session, dismissed, people["cong-an"], reason="Không phải sự cố")
    session.commit()
    assert J.send_deadline_reminders(session, settings, now=T0 + timedelta(hours=70)) == []


def test_the_scheduled_jobs_run_through_the_foundation(app, session, settings, people):
    from service.core.db import new_session, utcnow
    from service.core.jobs import JOBS, run_job

    assert {"incidents.escalate", "incidents.deadline"} <= set(JOBS)
    now = utcnow()
    incident = new_incident(session, settings, people, detected_at=now - timedelta(hours=25),
                            now=now - timedelta(minutes=20))
    run_job(app, "incidents.escalate")
    run_job(app, "incidents.deadline")
    check = new_session(app)
    try:
        stored = check.get(Incident, incident.id)
        assert stored.escalation_level == 1 and stored.state == IncidentState.REPORTED
        assert stored.reminders_sent == [24]
    finally:
        check.close()


def test_incident_settings_from_the_environment():
    from service.config import ConfigError, load_settings

    settings = load_settings(environ={"CANHGAC_ESCALATION_STEPS": ";chu-tich, truong-cong-an",
                                      "CANHGAC_BREACH_REMINDER_HOURS": "66,24, 48",
                                      "CANHGAC_INCIDENT_JOIN_HOURS": "0"})
    assert settings.escalation_steps == [[], ["chu-tich", "truong-cong-an"]]
    assert settings.breach_reminder_hours == [24, 48, 66]
    assert settings.incident_join_hours == 0
    assert load_settings(environ={}).escalation_steps == []
    with pytest.raises(ConfigError, match="breach_reminder_hours"):
        load_settings(environ={"CANHGAC_BREACH_REMINDER_HOURS": "24,-1"})
