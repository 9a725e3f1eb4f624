"""Monthly report: a month of real activity, counted from the signed trail and recounted."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import uuid
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta

import pypdf
import pytest
from sqlalchemy import func, select, text

from canhgac_common.events import Event
from service.audit import log
from service.audit.models import AuditEntry, Checkpoint
from service.audit.operations import sign_checkpoint
from service.auth.models import User
from service.core.csvfile import safe_cell
from service.core.db import get_engine, new_session
from service.events.operations import ingest_events, record_heartbeat
from service.incidents import workflow as W
from service.incidents.models import Alert
from service.reports import monthly

MONTH = "2027-01"
START = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)  # 1 January 2027 00:00 in Asia/Ho_Chi_Minh
END = datetime(2027, 1, 31, 17, 0, tzinfo=UTC)  # 1 February 2027 00:00 local
ACCESS = {"open", "read", "modify", "create", "delete", "move", "copy", "export", "print", "share",
          "view"}
TRANSFER = {"copy", "move", "export", "share", "print"}
CLOCKED = ("service.audit.log", "service.audit.operations", "service.events.operations",
           "service.events.processing", "service.incidents.workflow", "service.notify.outbox",
           "service.reports.monthly")


class Clock:
    """A settable clock standing in for utcnow() where the trail and the workflow read time."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(datetime(2026, 12, 1, tzinfo=UTC))
    for module in CLOCKED:
        monkeypatch.setattr(f"{module}.utcnow", fake)
    return fake


def _t(day: int, hour: int = 0, minute: int = 0, second: int = 0, month: int = 1,
       year: int = 2027) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _event(at: datetime, spec: dict) -> Event:
    obj = {"path": f"/du-lieu/{spec.get('data_class') or 'khac'}/tep-{random.random():.6f}.xlsx"}
    if spec.get("data_class"):
        obj["data_class"] = spec["data_class"]
    payload = {"id": str(uuid.uuid4()), "occurred_at": (at - timedelta(minutes=3)).isoformat(),
               "host": spec.get("host", "may-01"), "actor": spec.get("actor", "can.bo"),
               "action": spec["action"], "object": obj}
    for key in ("unit", "agent_id", "seq", "pii"):
        if spec.get(key) is not None:
            payload[key] = spec[key]
    if spec.get("destination") is not None:
        payload["destination"] = spec["destination"]
    return Event.model_validate(payload)


class Scenario:
    """Drives a month of activity through the real operations, remembering what it did."""

    def __init__(self, app, clock):
        self.app, self.clock = app, clock
        self.settings = app.config["SETTINGS"]
        self.session = new_session(app)
        self.events: list[tuple[datetime, dict]] = []
        self.ctx = app.app_context()
        self.ctx.push()

    def close(self):
        self.session.close()
        self.ctx.pop()

    def at(self, moment: datetime):
        self.clock.now = moment
        return self

    def ingest(self, moment: datetime, **spec):
        self.at(moment)
        ingest_events(self.session, [_event(moment, spec)], source="test")
        self.session.commit()
        self.events.append((moment, spec))

    def user(self, name: str) -> User:
        return self.session.scalar(select(User).where(User.username == name))

    def commit(self):
        self.session.commit()


def _random_specs(rng: random.Random, count: int) -> list[tuple[datetime, dict]]:
    classes = ["dan_cu", "ho_tich", "ho_ngheo", "nguoi_co_cong", None]
    units = ["cong_an", "van_phong", "vh_xh", "kinh_te", None]
    actions = [*sorted(ACCESS), "login", "login_failed", "logout"]
    destinations = [None, None, {"kind": "official", "path": "//may-chu/chung"},
                    {"kind": "removable", "path": "E:/"}, {"kind": "cloud", "target": "drive"},
                    {"kind": "messaging", "target": "zalo"}, {"path": "F:/khong-ro"}]
    # Every moment is in December, January or February local time, a microsecond from each
    # edge included. (Not on the edge itself: on SQLite the trail stores a whole second as
    # "17:00:00" and SQLAlchemy compares it with "17:00:00.000000", reported to the lead.)
    tick = timedelta(microseconds=1)
    moments = [START - tick, START + tick, END - tick, END + tick, END + timedelta(minutes=10)]
    moments += [START + timedelta(seconds=rng.randrange(int((END - START).total_seconds())),
                                  microseconds=rng.randrange(1, 1_000_000))
                for _ in range(count - len(moments))]
    specs = []
    for moment in sorted(moments):
        spec = {"data_class": rng.choice(classes), "unit": rng.choice(units),
                "action": rng.choice(actions), "destination": rng.choice(destinations),
                "actor": rng.choice(["an.nv", "binh.tt", "cuong.lv"])}
        if rng.random() < 0.3:
            spec["pii"] = {"cccd": rng.randrange(0, 50), "phone": rng.randrange(0, 5)}
        specs.append((moment, spec))
    return specs


def _expected_event_figures(events: list[tuple[datetime, dict]]) -> dict:
    access, by_action, oos, agents = Counter(), Counter(), Counter(), Counter()
    for moment, spec in events:
        # Accesses count in the month they happened: each test event happened 3 minutes
        # before it was recorded (see _event).
        if not START <= moment - timedelta(minutes=3) < END:
            continue
        action, dc, unit = spec["action"], spec.get("data_class") or "", spec.get("unit") or ""
        if spec.get("agent_id"):
            agents[spec["agent_id"]] += 1
        if action in ACCESS:
            access[(dc, unit)] += 1
            by_action[action] += 1
        dest = spec.get("destination")
        is_citizen_data = bool(dc) or sum((spec.get("pii") or {}).values()) > 0
        if action in TRANSFER and dest is not None and dest.get("kind") != "official" \
                and is_citizen_data:
            oos[(dc, dest.get("kind") or "unknown", action)] += 1
    return {"access": dict(access), "access_by_action": dict(by_action),
            "out_of_scope": dict(oos), "agent_events": dict(agents)}


def _run_january(app, clock, make_user, seed: int = 2027) -> dict:
    """Play December, January and the start of February; return what January must show."""
    make_user("can.bo.vhxh", "official", unit="vh_xh")
    make_user("chu.tich", "leader", unit="lanh_dao")
    make_user("cong.an", "police", unit="cong_an")
    sc = Scenario(app, clock)
    try:
        official, leader, police = sc.user("can.bo.vhxh"), sc.user("chu.tich"), sc.user("cong.an")
        settings = sc.settings
        processor = app.extensions["canhgac.processor"]
        agent = {"action": "open", "data_class": "dan_cu", "unit": "cong_an"}
        plan: list[tuple[datetime, str, object]] = []

        def later(moment, what, arg=None):
            plan.append((moment, what, arg))

        # Agents: a December gap (not January's), a January gap of 3, two silences.
        later(_t(10, 3, month=12, year=2026), "event", {**agent, "agent_id": "agent-1", "seq": 0})
        later(_t(10, 3, 5, month=12, year=2026), "event", {**agent, "agent_id": "agent-1", "seq": 3})
        later(_t(10, 3, 10, month=12, year=2026), "event", {**agent, "agent_id": "agent-2", "seq": 0})
        later(_t(5, 2), "event", {**agent, "agent_id": "agent-1", "seq": 4})
        later(_t(5, 2, 1), "event", {**agent, "agent_id": "agent-2", "seq": 1})
        later(_t(10, 2), "event", {**agent, "agent_id": "agent-2", "seq": 5})
        later(_t(20, 2), "event", {**agent, "agent_id": "agent-1", "seq": 5})
        later(_t(20, 4, 50), "heartbeat", "agent-2")
        later(_t(20, 5), "silence")  # agent-1 silent 3 h on a Wednesday: alert
        later(_t(20, 7), "heartbeat", "agent-1")  # back: 5 h of silence
        later(_t(21, 3), "dismiss_alert")
        later(_t(30, 1), "heartbeat", "agent-1")
        later(_t(30, 1, 0, 1), "heartbeat", "agent-2")
        later(_t(30, 6), "silence")  # both silent on a Saturday, agent-2 for the rest of January
        later(END + timedelta(minutes=30), "heartbeat", "agent-1")
        for moment, spec in _random_specs(random.Random(seed), 60):
            later(moment, "event", spec)
        # Incidents through the real workflow.
        later(_t(31, 16, month=12, year=2026), "incident", "I1")
        later(_t(31, 17, 30, month=12, year=2026), "ack", "I1")  # 00:30 on 1 January, local
        later(_t(2, 10, 5), "notice", ("I1", _t(2, 10)))
        later(_t(10, 2), "incident", "I2")
        later(_t(10, 2, 10), "ack", "I2")
        later(_t(10, 3), "investigate", "I2")
        later(_t(10, 5), "contain", "I2")
        later(_t(12, 2), "resolve", "I2")
        later(_t(14, 3), "notice", ("I2", _t(14, 2)))  # after the 72 hours: late
        later(_t(15, 1), "close", "I2")
        later(_t(20, 0), "incident", "I3")
        later(_t(20, 0, 5), "ack", "I3")  # no notice ever: missing when the deadline passes
        later(_t(25, 3), "incident", "I4")  # no personal data: no notice due
        later(_t(26, 3), "dismiss", "I4")
        later(_t(29, 12), "incident", "I5")  # deadline in February
        later(END + timedelta(minutes=30), "incident", "I6")  # February, local time
        detected = {"I1": _t(31, 15, month=12, year=2026), "I2": _t(10, 1), "I3": _t(20, 0),
                    "I4": _t(25, 2), "I5": _t(29, 11), "I6": END + timedelta(minutes=20)}
        incidents: dict = {}
        january_alerts: list[int] = []
        covered = None
        for moment, what, arg in sorted(plan, key=lambda p: p[0]):
            if covered is None and moment >= END:
                covered = log.tree_size(sc.session)
            sc.at(moment)
            if what == "event":
                sc.ingest(moment, **arg)
                continue
            s = sc.session
            if what == "heartbeat":
                record_heartbeat(s, source="test", agent_id=arg, host="may-01", last_seq=None,
                                 spool_depth=0, version="1")
            elif what == "silence":
                from service.events.jobs import report_silent_agents

                before = {a.id for a in s.scalars(select(Alert))}
                report_silent_agents(s, settings, processor, now=moment)
                s.flush()
                january_alerts += [a.id for a in s.scalars(select(Alert)) if a.id not in before]
            elif what == "dismiss_alert":
                W.dismiss_alert(s, s.get(Alert, january_alerts[0]), police, "Máy tắt để bảo trì")
            elif what == "incident":
                incidents[arg] = W.report_incident(
                    s, settings, origin="report", title=f"Nghi ngờ lộ lọt {arg}",
                    reporter=official, data_classes=["ho_ngheo"], pii_counts={"cccd": 12},
                    detected_at=detected[arg], involves_personal_data=arg != "I4", now=moment)
            elif what == "ack":
                W.acknowledge_incident(s, incidents[arg], leader, now=moment)
            elif what == "investigate":
                W.start_investigation(s, incidents[arg], police, now=moment)
            elif what == "contain":
                W.contain_incident(s, incidents[arg], police, actions="Thu hồi USB", now=moment)
            elif what == "resolve":
                W.resolve_incident(s, incidents[arg], police, cause="Sao chép sai quy định",
                                   measures="Nhắc nhở, khóa cổng USB", now=moment)
            elif what == "notice":
                name, sent_at = arg
                W.record_breach_notice_sent(s, incidents[name], leader, sent_at=sent_at,
                                            channel="van_ban", reference="12/TB-UBND",
                                            late_reason="Chờ xác minh", now=moment)
            elif what == "close":
                W.close_incident(s, incidents[arg], leader, now=moment)
            elif what == "dismiss":
                W.dismiss_incident(s, incidents[arg], police, reason="Không phải sự cố", now=moment)
            s.commit()
        alert_rows = sc.session.scalars(select(Alert).where(Alert.id.in_(january_alerts))).all()
        expected = _expected_event_figures(sc.events)
        expected.update({
            "alerts_raised": dict(Counter((a.rule_id, a.severity) for a in alert_rows)),
            "alerts_dismissed": dict(Counter(a.rule_id for a in alert_rows
                                             if a.state == "dismissed")),
            "incidents_new": 4,
            "incidents_by_state": {"acknowledged": 2, "closed": 1, "dismissed": 1, "reported": 1},
            "ack_seconds": [300.0, 600.0, 5400.0],
            "resolve_seconds": [2 * 86400.0],
            "notices_on_time": 1, "notices_late": 1, "notices_missing": 1,
            "agents_monitored": 2, "agents_active": 2, "gap_entries": 1,
            "missing_events": {"agent-2": 3},
            "silences": {"agent-1": 2, "agent-2": 1},
            "silent_seconds": {"agent-1": 5 * 3600.0 + (END - _t(30, 1)).total_seconds(),
                               "agent-2": (END - _t(30, 1, 0, 1)).total_seconds()},
        })
        # After the month: a checkpoint, more entries, another checkpoint.
        sc.at(END + timedelta(days=1))
        sign_checkpoint(sc.session, settings, force=True)
        sc.session.commit()
        sc.ingest(END + timedelta(days=2), action="read", data_class="dan_cu", unit="cong_an")
        sc.at(END + timedelta(days=2, minutes=1))
        sign_checkpoint(sc.session, settings)
        sc.session.commit()
        # N: entries recorded before the end, or accesses that happened before it (reports.md).
        covered = 1 + max(
            entry["seq"] for entry in (json.loads(body) for body in sc.session.scalars(
                select(AuditEntry.body).order_by(AuditEntry.seq)))
            if datetime.fromisoformat(entry["recorded_at"]) < END
            or (entry["kind"] == "event"
                and datetime.fromisoformat(entry["body"]["occurred_at"]) < END))
        return {"expected": expected, "covered": covered, "alerts": len(alert_rows)}
    finally:
        sc.close()


@pytest.fixture
def january(app, clock, make_user):
    return _run_january(app, clock, make_user)


FIELDS = ("access", "access_by_action", "out_of_scope", "alerts_raised", "alerts_dismissed",
          "incidents_new", "incidents_by_state", "ack_seconds", "resolve_seconds",
          "notices_on_time", "notices_late", "notices_missing", "agents_monitored",
          "agents_active", "agent_events", "gap_entries", "missing_events", "silences",
          "silent_seconds")


def test_january_figures_from_the_signed_trail(app, session, january, tmp_path):
    settings = app.config["SETTINGS"]
    report = monthly.build_monthly_report(session, settings, MONTH, now=END + timedelta(days=9))
    session.commit()
    expected = january["expected"]
    assert not report.is_provisional
    assert (report.period.start_at, report.period.end_at) == (START, END)
    for name in FIELDS:
        assert getattr(report.figures, name) == expected[name], name
    assert report.figures.alerts_raised == {("tac_tu_im_lang", "medium"): 1}
    assert report.figures.alerts_dismissed == {"tac_tu_im_lang": 1}
    assert report.figures.access_total > 0 and report.figures.out_of_scope_total > 0

    # The basis: the first signed checkpoint covering every entry recorded before the month end.
    basis = report.basis
    assert basis.covered == january["covered"]
    first = session.scalar(select(Checkpoint).where(Checkpoint.size >= january["covered"])
                           .order_by(Checkpoint.size, Checkpoint.id).limit(1))
    assert (basis.checkpoint_id, basis.size, basis.root) == (first.id, first.size, first.root_hash)
    assert basis.size < log.tree_size(session)  # later entries exist, and stay out

    # Police recount from the stored entries, and from an evidence bundle, to the same figures.
    recount = monthly.recount_from_database(session, basis.size, month=MONTH,
                                            timezone=settings.timezone,
                                            notice_hours=settings.breach_notice_hours)
    assert recount.figures == report.figures
    assert recount.root == basis.root and recount.size == basis.size

    from service.audit.bundle import export_bundle
    from service.audit.search import SearchFilter

    bundle = tmp_path / "bang-chung.zip"
    export_bundle(session, settings, SearchFilter(), bundle, by="test")
    session.commit()
    with zipfile.ZipFile(bundle) as z:
        lines = [json.loads(line) for line in z.read("entries.jsonl").decode().splitlines()]
    from_bundle = monthly.recount_from_entries(lines, month=MONTH, timezone=settings.timezone,
                                               notice_hours=settings.breach_notice_hours,
                                               size=basis.size)
    assert from_bundle.figures == report.figures
    assert from_bundle.root_b64 == basis.root_b64

    # The outputs carry the basis.
    csv_text = monthly.monthly_csv(report)
    assert f"basis,tree_size,,,{basis.size}" in csv_text
    # Through the CSV writer's formula guard, as every cell: a root beginning with "+" (one in
    # 64 runs) gets the leading apostrophe spreadsheets show as text.
    assert f"basis,root_base64,,,{safe_cell(basis.root_b64)}" in csv_text
    pdf = monthly.render_monthly_pdf(report, settings)
    (tmp_path / "bao-cao.pdf").write_bytes(pdf)
    pdf_text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    flat = pdf_text.replace("\n", "")
    assert "BÁO CÁO" in pdf_text and "Số: …/BC-UBND" in pdf_text
    assert basis.root_b64 in flat
    assert f"{basis.size:,}".replace(",", ".") in pdf_text
    assert "I. CĂN CỨ SỐ LIỆU" in pdf_text and "III. KẾT QUẢ CỦA CÁC BỘ PHẬN" in pdf_text


def test_recount_sees_what_the_columns_hide(app, session, january):
    # Someone moves an access's occurred_at column into February: the SQL reading changes, the
    # recount over the signed bytes does not, so the two no longer agree.
    settings = app.config["SETTINGS"]
    seq = session.scalar(select(func.min(AuditEntry.seq)).where(
        AuditEntry.kind == "event", AuditEntry.recorded_at >= START + timedelta(days=3),
        AuditEntry.recorded_at < END))
    session.rollback()  # release SQLite's write lock before the raw connection writes
    with get_engine(app).begin() as conn:
        conn.execute(text("UPDATE audit_entry SET occurred_at = :t WHERE seq = :s"),
                     {"t": (END + timedelta(days=1)).replace(tzinfo=None)
                      if conn.dialect.name == "sqlite" else END + timedelta(days=1), "s": seq})
    report = monthly.build_monthly_report(session, settings, MONTH, now=END + timedelta(days=9))
    recount = monthly.recount_from_database(session, report.basis.size, month=MONTH,
                                            timezone=settings.timezone,
                                            notice_hours=settings.breach_notice_hours)
    assert recount.figures != report.figures
    assert recount.root == report.basis.root



def _few_events(app, clock, moments: list[datetime]) -> None:
    session = new_session(app)
    try:
        for moment in moments:
            clock.now = moment
            ingest_events(session, [_event(moment, {"action": "copy", "data_class": "dan_cu",
                                                    "unit": "cong_an",
                                                    "destination": {"kind": "removable"}})],
                          source="test")
            session.commit()
    finally:
        session.close()


def test_running_month_is_provisional_on_the_latest_checkpoint(app, session, clock):
    settings = app.config["SETTINGS"]
    _few_events(app, clock, [_t(3, 2), _t(4, 2)])
    clock.now = _t(5, 2)
    report = monthly.build_monthly_report(session, settings, MONTH, now=_t(5, 2))
    session.commit()
    assert report.is_provisional
    assert report.basis.size == log.tree_size(session) == report.basis.covered
    assert report.figures.out_of_scope == {("dan_cu", "removable", "copy"): 2}
    session.rollback()  # end the read transaction: SQLite begins every one IMMEDIATE
    # More activity, a later provisional report: a newer basis that extends the old one.
    _few_events(app, clock, [_t(6, 2)])
    again = monthly.build_monthly_report(session, settings, MONTH, now=_t(6, 3))
    assert again.basis.size > report.basis.size
    assert again.figures.out_of_scope == {("dan_cu", "removable", "copy"): 3}


def test_finished_month_without_a_covering_checkpoint_gets_one_signed(app, session, clock):
    settings = app.config["SETTINGS"]
    _few_events(app, clock, [_t(3, 2), END + timedelta(hours=2)])
    before = session.scalar(select(func.count()).select_from(Checkpoint))
    clock.now = END + timedelta(days=2)
    report = monthly.build_monthly_report(session, settings, MONTH, now=END + timedelta(days=2))
    session.commit()
    assert not report.is_provisional
    assert session.scalar(select(func.count()).select_from(Checkpoint)) == before + 1
    assert report.basis.covered == 1 and report.basis.size == 2  # signed now: covers both
    assert report.figures.access_total == 1


def test_altered_entry_stops_the_report(app, session, clock):
    settings = app.config["SETTINGS"]
    _few_events(app, clock, [_t(3, 2), _t(4, 2)])
    seq, body = session.execute(select(AuditEntry.seq, AuditEntry.body)
                                .where(AuditEntry.kind == "event").limit(1)).one()
    session.rollback()
    altered = body.replace('"removable"', '"official"')
    assert altered != body
    with get_engine(app).begin() as conn:
        conn.execute(text("UPDATE audit_entry SET body = :b WHERE seq = :s"), {"b": altered, "s": seq})
    with pytest.raises(monthly.ReportError, match=f"entry {seq}"):
        monthly.build_monthly_report(session, settings, MONTH, now=END + timedelta(days=1))


def test_bad_months_are_refused(app, session):
    for bad in ("2027-13", "2027-1", "27-01", "", "2027-01-01"):
        with pytest.raises(monthly.ReportError):
            monthly.build_monthly_report(session, app.config["SETTINGS"], bad)


def test_periods_follow_the_commune_time_zone():
    period = monthly.month_period("2027-12", "Asia/Ho_Chi_Minh", 8)
    assert period.start_at == datetime(2027, 11, 30, 17, tzinfo=UTC)
    assert period.end_at == datetime(2027, 12, 31, 17, tzinfo=UTC)
    assert period.parts_due_at == datetime(2028, 1, 7, 17, tzinfo=UTC)
    assert monthly.previous_month(datetime(2027, 1, 1, 16, 59, tzinfo=UTC), "Asia/Ho_Chi_Minh") == "2026-12"
    assert monthly.previous_month(datetime(2026, 12, 31, 17, tzinfo=UTC), "Asia/Ho_Chi_Minh") == "2026-12"
    assert monthly.month_of(datetime(2026, 12, 31, 17, tzinfo=UTC), "Asia/Ho_Chi_Minh") == "2027-01"


def test_the_demos_month_of_activity_counts_in_the_months_it_happened(app, session, clock):
    # The demo seeds 30 days of accesses in one go, all recorded "now" (5 February): each
    # access counts in the month it happened, not in the month it was recorded.
    from service.demo import month_of_events

    settings = app.config["SETTINGS"]
    now = _t(5, 2, month=2)
    clock.now = now
    events = [Event.model_validate(e) for e in month_of_events(now)]
    ingest_events(session, events, source="test")
    session.commit()
    by_month = Counter(monthly.month_of(e.occurred_at, settings.timezone) for e in events
                       if e.action.value in ACCESS)
    assert set(by_month) == {"2027-01", "2027-02"}
    january = monthly.build_monthly_report(session, settings, "2027-01", now=now)
    session.commit()
    assert not january.is_provisional
    assert january.figures.access_total == by_month["2027-01"] > 0
    february = monthly.build_monthly_report(session, settings, "2027-02", now=now)
    session.commit()
    assert february.figures.access_total == by_month["2027-02"]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) not installed")
def test_pdf_charts_stay_inside_the_page_margins(app, session, clock, tmp_path):
    # A long Vietnamese data-class name once lost its start at the chart's left edge
    # ("ười có công…"): every word of the PDF must sit inside the Decree 30 margins.
    settings = app.config["SETTINGS"]
    _few_events(app, clock, [_t(3, 2), _t(4, 2)])
    report = monthly.build_monthly_report(session, settings, MONTH, now=END + timedelta(days=2))
    session.commit()
    long_name = "Người có công, bảo trợ xã hội, hộ nghèo, hộ cận nghèo"
    pdf = tmp_path / "bao-cao.pdf"
    pdf.write_bytes(monthly.render_monthly_pdf(report, settings, data_class_labels={"dan_cu": long_name}))
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    words = [(float(x0), float(x1), word) for x0, x1, word in re.findall(
        r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', out)]
    assert any(word == "Người" for _, _, word in words)
    left, right = 30 / 25.4 * 72, (210 - 15) / 25.4 * 72  # A4, margins 30 mm left, 15 mm right
    outside = [(word, x0, x1) for x0, x1, word in words if x0 < left - 1 or x1 > right + 1]
    assert outside == []
