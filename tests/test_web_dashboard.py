"""The leadership dashboard: what each role sees, clocks, deadlines, alerts, agents, the trail."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.db import new_session, utcnow
from service.events.models import Agent
from service.incidents.models import Alert, Incident
from service.web.dashboard import local_midnight

CLOCK = re.compile(r'<time class="clock[^"]*"[^>]*data-(since|until)="([^"]+)"[^>]*>([^<]*)</time>')


def _add(app, *rows):
    with app.app_context():
        s = new_session()
        s.add_all(rows)
        s.commit()
        ids = [getattr(r, "id", None) for r in rows]
        s.close()
    return ids


def _incident(title: str, state: str = "reported", age_minutes: float = 0, **extra) -> Incident:
    at = utcnow() - timedelta(minutes=age_minutes)
    return Incident(title=title, state=state, origin="report", severity="high",
                    created_at=at, detected_at=at, **extra)


def _seconds(clock_text: str) -> int:
    days = re.match(r"(\d+) \D+ ", clock_text)
    h, m, s = (int(x) for x in clock_text.rsplit(" ", 1)[-1].split(":"))
    return (int(days.group(1)) if days else 0) * 86400 + h * 3600 + m * 60 + s


def _section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


@pytest.fixture
def people(make_user):
    for name, role in (("lanh-dao", "leader"), ("cong-an", "police"), ("quan-tri", "admin"),
                       ("can-bo", "official")):
        make_user(name, role, unit="cong_an" if role == "police" else "van_phong")


def test_unacknowledged_incidents_come_first_with_a_running_clock(app, client, login, people):
    _add(app, _incident("Sao chép danh sách hộ nghèo ra USB", age_minutes=20),
         _incident("Chia sẻ tệp hộ tịch qua Zalo", age_minutes=3),
         _incident("Sự cố đang điều tra", state="investigating", age_minutes=60),
         _incident("Sự cố đã đóng", state="closed", age_minutes=600))
    login("lanh-dao")
    html = client.get("/dashboard").text
    unack = _section(html, "unack-h")
    assert html.index('id="unack-h"') < html.index('id="open-h"')
    # Oldest waiting first.
    assert unack.index("hộ nghèo") < unack.index("hộ tịch")
    clocks = CLOCK.findall(unack)
    assert len(clocks) == 2 and all(kind == "since" for kind, _, _ in clocks)
    old, new = (_seconds(text) for _, _, text in clocks)
    assert 20 * 60 <= old <= 20 * 60 + 30 and 3 * 60 <= new <= 3 * 60 + 30
    # 20 minutes is past the 15-minute acknowledgement deadline: the clock shows it, without JS.
    assert re.search(r'<time class="clock overdue"[^>]*>' + re.escape(clocks[0][2]), unack)
    assert 'class="clock"' in unack  # the 3-minute one is still within the deadline
    open_part = _section(html, "open-h")
    assert "Sự cố đang điều tra" in open_part and "hộ nghèo" not in open_part
    assert "Sự cố đã đóng" not in html


def test_72_hour_deadlines_show_the_time_left(app, client, login, people):
    now = utcnow()
    _add(app,
         _incident("Còn năm giờ", state="investigating", notice_due_at=now + timedelta(hours=5)),
         _incident("Đã quá hạn", state="acknowledged", notice_due_at=now - timedelta(hours=2)),
         _incident("Đã gửi", state="investigating", notice_due_at=now + timedelta(hours=1),
                   notice_sent_at=now),
         _incident("Bác bỏ", state="dismissed", notice_due_at=now + timedelta(hours=1)))
    login("cong-an")
    part = _section(client.get("/dashboard").text, "deadline-h")
    assert "Đã gửi" not in part and "Bác bỏ" not in part
    assert part.index("Đã quá hạn") < part.index("Còn năm giờ")  # soonest due first
    overdue, left = (text for _, _, text in CLOCK.findall(part))
    assert overdue.startswith("Quá hạn ") and 2 * 3600 - 30 <= _seconds(overdue) <= 2 * 3600 + 30
    assert 5 * 3600 - 30 <= _seconds(left) <= 5 * 3600
    due = (now + timedelta(hours=5)).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert due.strftime("%d/%m/%Y %H:%M") in part


def test_todays_alerts_follow_the_commune_calendar_day(app, client, login, people):
    midnight = local_midnight(utcnow(), "Asia/Ho_Chi_Minh")
    common = {"severity": "high", "response": "alert", "explanation": "x", "group_key": "g"}
    _add(app,
         Alert(rule_id="usb_copy_today", actor="can-bo", host="may-01",
               created_at=max(midnight.astimezone(UTC) + timedelta(seconds=1),
                              utcnow() - timedelta(minutes=1)), **common),
         Alert(rule_id="yesterday_rule", actor="can-bo", host="may-01",
               created_at=midnight.astimezone(UTC) - timedelta(minutes=1), **common))
    login("cong-an")
    part = _section(client.get("/dashboard").text, "alerts-h")
    assert "usb_copy_today" in part and "yesterday_rule" not in part
    assert '<span class="count">1</span>' in part
    # Leaders get the count only: rule ids and actors are the police's queue.
    leader = app.test_client()
    login("lanh-dao", c=leader)
    html = leader.get("/dashboard").text
    assert 'id="alertc-h"' in html and "usb_copy_today" not in html and 'id="alerts-h"' not in html


def test_silent_agents_for_police_and_admin_only(app, client, login, people):
    now = utcnow()
    _add(app,
         Agent(agent_id="agent-im-lang", source="may-tram", host="may-02", missing_events=7,
               last_contact_at=now - timedelta(minutes=31)),
         Agent(agent_id="agent-con-song", source="may-tram", host="may-03",
               last_contact_at=now - timedelta(minutes=5)))
    for name in ("cong-an", "quan-tri"):
        c = app.test_client()
        login(name, c=c)
        part = _section(c.get("/dashboard").text, "agents-h")
        assert "agent-im-lang" in part and "agent-con-song" not in part
        assert '<td role="cell" data-label="Sự kiện bị thiếu">7</td>' in part
    login("lanh-dao")
    assert "agent-im-lang" not in client.get("/dashboard").text


def test_trail_state_shows_checkpoint_and_the_verifier_key(app, client, login, people):
    from service.audit.operations import sign_checkpoint

    with app.app_context():
        s = new_session()
        cp = sign_checkpoint(s, app.config["SETTINGS"], force=True)
        size, signed_at = cp.size, cp.signed_at
        s.commit()
        s.close()
    key = (app.config["SETTINGS"].keys_dir / "checkpoint.pub").read_text().strip()
    login("cong-an")
    part = _section(client.get("/dashboard").text, "trail-h")
    assert f'<pre class="key" aria-label="Khóa xác minh nhật ký">{key}</pre>' in part
    assert f"Số mục đã ký (điểm kiểm tra gần nhất)</dt><dd>{size}</dd>" in part
    assert signed_at.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%d/%m/%Y %H:%M") in part


def test_admin_sees_counts_but_no_incident_content(app, client, login, people):
    _add(app, _incident("Tiêu đề bí mật của sự cố", age_minutes=1),
         _incident("Một sự cố khác", state="contained"),
         Alert(rule_id="secret_rule", severity="high", response="alert", explanation="x",
               group_key="g", actor="can-bo"))
    login("quan-tri")
    html = client.get("/dashboard").text
    assert "Tiêu đề bí mật" not in html and "secret_rule" not in html
    counts = _section(html, "counts-h")
    assert re.search(r"Chưa được xác nhận</dt><dd>1</dd>", counts)
    assert re.search(r"Đang mở</dt><dd>2</dd>", counts)
    assert 'id="trail-h"' in html  # size and key, never entries


def test_officials_get_their_start_page_not_the_dashboard(client, login, people):
    login("can-bo")
    assert client.get("/dashboard").status_code == 403
    home = client.get("/")
    assert home.status_code == 200 and "báo cáo ngay" in home.text


def test_home_sends_leaders_to_the_dashboard(client, login, people):
    login("lanh-dao")
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard")


@given(st.floats(min_value=-10 * 86400, max_value=400 * 86400, allow_nan=False))
def test_clock_text_round_trips(seconds):
    from flask import Flask
    from flask_babel import Babel

    from service.web.wiring import clock_text

    app = Flask("clock")
    Babel(app)
    with app.test_request_context():
        text = clock_text(seconds)
    assert re.fullmatch(r"(\d+ ngày )?\d{2}:\d{2}:\d{2}", text)
    assert _seconds(text) == int(abs(seconds))


def test_local_midnight_rolls_over_at_17_utc():
    zone = "Asia/Ho_Chi_Minh"
    before = local_midnight(datetime(2026, 3, 1, 16, 59, tzinfo=UTC), zone)
    after = local_midnight(datetime(2026, 3, 1, 17, 0, tzinfo=UTC), zone)
    assert before.astimezone(UTC) == datetime(2026, 2, 28, 17, 0, tzinfo=UTC)
    assert after.astimezone(UTC) == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)


def test_running_clock_script_is_served_and_used(client, login, people):
    login("lanh-dao")
    html = client.get("/dashboard").text
    assert re.search(r'<script src="/static/app\.js(\?[^"]*)?" defer></script>', html)
    assert "data-server-now=" in html and 'data-day-label="{d} ngày"' in html
    with client.get("/static/app.js") as script:
        assert script.status_code == 200 and "javascript" in script.content_type
        assert "data-since" in script.text and "data-until" in script.text
