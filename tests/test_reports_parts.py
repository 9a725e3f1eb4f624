"""Each unit's part of the monthly report: filing, lateness, reminders, pages and the CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEntry
from service.core.db import new_session, utcnow
from service.core.jobs import run_job
from service.notify.models import OutboxMessage
from service.reports import monthly
from service.reports.models import ReportReminder, UnitReportPart
from tests.conftest import csrf_token_from

MONTH = "2027-01"
DUE = datetime(2027, 2, 7, 17, 0, tzinfo=UTC)  # 8 February 2027 00:00 in Asia/Ho_Chi_Minh
TEXTS = {"done_text": "Rà soát 1.250 hồ sơ hộ nghèo; tập huấn 12 cán bộ.",
         "not_done_text": "Chưa số hóa hồ sơ năm 2019.",
         "difficulties_text": "Đường truyền yếu ở 4 thôn.", "causes_text": "Thiếu thiết bị.",
         "proposals_text": "Đề nghị bổ sung 2 máy quét."}


def _entries(session, kind: str) -> list[dict]:
    rows = session.scalars(select(AuditEntry.body).where(AuditEntry.kind == kind)
                           .order_by(AuditEntry.seq))
    return [json.loads(body)["body"] for body in rows]


def test_part_filed_before_the_due_day_is_on_time_and_audited(app, session):
    settings = app.config["SETTINGS"]
    part = monthly.submit_unit_part(session, settings, unit="vh_xh", month=MONTH, texts=TEXTS,
                                    by="can.bo", now=DUE - timedelta(seconds=1))
    session.commit()
    assert not part.is_late and part.submitted_by == "can.bo"
    late = monthly.submit_unit_part(session, settings, unit="kinh_te", month=MONTH, texts=TEXTS,
                                    by="ke.toan", now=DUE)
    session.commit()
    assert late.is_late
    # Amending keeps the first filing's time and lateness.
    amended = monthly.submit_unit_part(session, settings, unit="vh_xh", month=MONTH,
                                       texts={**TEXTS, "causes_text": "Thiếu máy quét."},
                                       by="can.bo.2", now=DUE + timedelta(days=3))
    session.commit()
    assert amended.id == part.id and not amended.is_late
    assert amended.submitted_at == DUE - timedelta(seconds=1)
    assert amended.amended_at == DUE + timedelta(days=3)
    assert amended.causes_text == "Thiếu máy quét."
    bodies = _entries(session, "report.part_submitted")
    assert [(b["unit"], b["is_late"], b["is_amendment"]) for b in bodies] == [
        ("vh_xh", False, False), ("kinh_te", True, False), ("vh_xh", False, True)]
    assert bodies[2]["text_sha256"] == amended.text_sha256 == monthly.part_text_sha256(
        {**TEXTS, "causes_text": "Thiếu máy quét."})
    # The texts stay in the part; the trail holds their hash only.
    raw = " ".join(session.scalars(select(AuditEntry.body)
                                   .where(AuditEntry.kind == "report.part_submitted")))
    assert "máy quét" not in raw and "1.250" not in raw
    assert monthly.missing_units(session, MONTH) == ["cong_an", "van_phong", "tt_hcc", "dv_cong_ich"]


@pytest.mark.parametrize(("unit", "texts", "when", "message"), [
    ("lanh_dao", TEXTS, DUE, "does not file"),
    ("khong_co", TEXTS, DUE, "does not file"),
    ("vh_xh", {"done_text": "  "}, DUE, "empty"),
    ("vh_xh", {"done_text": "x" * (monthly.MAX_PART_TEXT + 1)}, DUE, "longer"),
    ("vh_xh", TEXTS, datetime(2026, 12, 31, 16, 59, tzinfo=UTC), "not started"),
])
def test_bad_parts_are_refused(app, session, unit, texts, when, message):
    with pytest.raises(monthly.ReportError, match=message):
        monthly.submit_unit_part(session, app.config["SETTINGS"], unit=unit, month=MONTH,
                                 texts=texts, by="x", now=when)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(UnitReportPart)) == 0


def _outbox(session, kind: str) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind,
                                                            OutboxMessage.channel == "email")
                                .order_by(OutboxMessage.id)))


def test_reminders_from_the_first_until_the_due_day(app, make_user, session):
    from service.reports.jobs import send_part_reminders

    make_user("vh.1", "official", unit="vh_xh")
    make_user("vh.2", "official", unit="vh_xh")
    make_user("kt.1", "official", unit="kinh_te")
    make_user("ca.1", "police", unit="cong_an")
    make_user("ct.1", "leader", unit="lanh_dao")
    settings = app.config["SETTINGS"]
    first_morning = datetime(2027, 2, 1, 0, 30, tzinfo=UTC)  # 07:30 local
    assert send_part_reminders(session, settings, first_morning - timedelta(hours=1)) == []  # 06:30
    reminded = send_part_reminders(session, settings, first_morning)
    session.commit()
    assert reminded == list(monthly.REPORTING_UNITS)
    mails = _outbox(session, "report.reminder")
    assert sorted(m.recipient_username for m in mails) == ["ca.1", "kt.1", "vh.1", "vh.2"]
    assert all("01/2027" in m.subject and m.link.endswith("/reports/2027-01/part") for m in mails)
    assert all("QUÁ HẠN" not in m.subject for m in mails)
    # Once a day only.
    assert send_part_reminders(session, settings, first_morning + timedelta(hours=5)) == []
    session.commit()
    assert len(_outbox(session, "report.reminder")) == 4
    # A unit that filed is no longer reminded.
    monthly.submit_unit_part(session, settings, unit="vh_xh", month=MONTH, texts=TEXTS,
                             by="vh.1", now=first_morning + timedelta(days=1))
    session.commit()
    second = send_part_reminders(session, settings, first_morning + timedelta(days=1))
    session.commit()
    assert "vh_xh" not in second and len(second) == len(monthly.REPORTING_UNITS) - 1
    # On the due day: overdue reminders, and police and leaders hear the report is due.
    due_morning = datetime(2027, 2, 8, 1, 0, tzinfo=UTC)
    send_part_reminders(session, settings, due_morning)
    session.commit()
    overdue = [m for m in _outbox(session, "report.reminder") if "QUÁ HẠN" in m.subject]
    assert sorted(m.recipient_username for m in overdue) == ["ca.1", "kt.1"]
    due = _outbox(session, "report.due")
    assert sorted(m.recipient_username for m in due) == ["ca.1", "ct.1"]
    assert "Phòng Kinh tế" in due[0].body and "Phòng Văn hóa" not in due[0].body
    # After the due day the report lists the missing units; reminders stop.
    assert send_part_reminders(session, settings, due_morning + timedelta(days=1)) == []
    kinds = [(b["kind"], b["unit"]) for b in _entries(session, "report.reminder")]
    assert kinds.count(("due", "")) == 1
    assert session.scalar(select(func.count()).select_from(ReportReminder)) == len(kinds)


def test_reminder_job_runs_once_per_slot_with_its_clock(app, make_user, session):
    make_user("kt.1", "official", unit="kinh_te")
    now = datetime(2027, 2, 2, 2, 0, tzinfo=UTC)
    assert run_job(app, "reports.part_reminders", now=now, exactly_once=True)
    assert not run_job(app, "reports.part_reminders", now=now + timedelta(minutes=5),
                       exactly_once=True)
    assert len(_outbox(session, "report.reminder")) == 1


# ---------------------------------------------------------------- pages


def _past_month() -> str:
    return monthly.previous_month(utcnow(), "Asia/Ho_Chi_Minh")


def test_police_and_leader_read_the_report_and_download_it(app, client, login, make_user):
    make_user("ca.1", "police", unit="cong_an")
    assert login("ca.1").status_code == 302
    month = _past_month()
    page = client.get("/reports/")
    assert page.status_code == 200 and f"/reports/{month}" in page.text
    view = client.get(f"/reports/{month}")
    assert view.status_code == 200
    assert "<svg" in view.text
    assert not re.search(r"\sstyle=|<style", view.text.split("<main", 1)[1])  # CSP: no inline CSS
    pdf = client.get(f"/reports/{month}/report.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    csv_answer = client.get(f"/reports/{month}/report.csv")
    assert csv_answer.status_code == 200 and "basis,root_base64" in csv_answer.text
    with app.app_context():
        s = new_session(app)
        try:
            generated = _entries(s, "report.generated")
        finally:
            s.close()
    assert [(g["actor"], g["format"]) for g in generated] == [("ca.1", "web"), ("ca.1", "pdf"),
                                                              ("ca.1", "csv")]
    for bad in ("2999-01", "2027-13", "x"):
        assert client.get(f"/reports/{bad}").status_code == 404


def test_official_files_the_unit_part_in_the_form(app, client, login, make_user):
    make_user("vh.1", "official", unit="vh_xh")
    assert login("vh.1").status_code == 302
    month = _past_month()
    assert client.get(f"/reports/{month}").status_code == 403  # the report is for police, leader
    path = f"/reports/{month}/part"
    token = csrf_token_from(client, path)
    answer = client.post(path, data={**TEXTS, "csrf_token": token})
    assert answer.status_code == 302
    page = client.get(path)
    assert "Rà soát 1.250 hồ sơ hộ nghèo" in page.text
    with app.app_context():
        s = new_session(app)
        try:
            part = s.scalar(select(UnitReportPart))
            assert (part.unit, part.month, part.submitted_by) == ("vh_xh", month, "vh.1")
        finally:
            s.close()
    assert client.get("/reports/2999-01/part").status_code == 404


def test_part_form_needs_a_reporting_unit(app, client, login, make_user):
    make_user("ld.1", "official", unit="lanh_dao")
    assert login("ld.1").status_code == 302
    assert client.get(f"/reports/{_past_month()}/part").status_code == 403


# ---------------------------------------------------------------- CLI


def test_cli_monthly_report_formats(runner, tmp_path):
    month = _past_month()
    result = runner.invoke(["report", "monthly", "--month", month, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert f"period,month,,,{month}" in result.stdout
    assert "basis,tree_size" in result.stdout
    out = tmp_path / "bc.pdf"
    result = runner.invoke(["report", "monthly", "--month", month, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    assert "root" in result.stderr
    result = runner.invoke(["report", "monthly", "--month", month, "--format", "html"])
    assert result.exit_code == 0 and "<html" in result.stdout and "BÁO CÁO" in result.stdout
    bad = runner.invoke(["report", "monthly", "--month", "2027-1", "--format", "csv"])
    assert bad.exit_code != 0 and "YYYY-MM" in bad.output
