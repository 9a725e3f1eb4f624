"""Identifiers through the running server: `canhgac serve`, real HTTP, real SMTP and webhook.

An agent posts a copy of `/srv/CCCD 001-203-004-567.xlsx` with phone numbers in the actor and
the purpose; an official reports an incident with numbers in its text. Nothing raw may reach the
trail, its search columns, alerts, incidents, the mail server, the webhook, the server's log,
the agents page or the monthly report's CSV; the trail still verifies.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select

from service.audit.models import AuditEntry
from service.incidents.models import Alert, Incident
from tests.test_notify_smtp import SmtpSink
from tests.test_notify_webhook import SECRET, Receiver
from tests.test_reliability_support import (
    PASSWORD,
    LiveServer,
    cli_env,
    free_port,
    fresh_pg_schema,
    init_data_dir,
    run_cli,
    verify,
)

RAW = ("001-203-004-567", "001203004567", "001 203 004 567", "001.203.004.567",
       "912 345 678", "912345678", "0987654321")
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _leaks(text: str) -> list[str]:
    return [raw for raw in RAW if raw in text]


class Browser:
    """A person at the web interface: cookies, CSRF tokens from the forms, real HTTP."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(self.base + path, timeout=30) as answer:
            return answer.status, answer.read().decode("utf-8")

    def csrf(self, path: str) -> str:
        _, page = self.get(path)
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)

    def post(self, path: str, fields: dict) -> tuple[int, str]:
        data = urllib.parse.urlencode(fields, doseq=True).encode()
        with self.opener.open(self.base + path, data=data, timeout=30) as answer:
            return answer.status, answer.read().decode("utf-8")

    def login(self, username: str) -> None:
        status, page = self.post("/login", {"username": username, "password": PASSWORD,
                                            "csrf_token": self.csrf("/login")})
        assert status == 200 and "/logout" in page, page[:500]


@contextlib.contextmanager
def database(kind: str, tmp_path):
    if kind == "postgresql":
        with fresh_pg_schema() as url:
            yield url
    else:
        yield None


def _event(**over) -> dict:
    event = {
        "id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat(),
        "host": "PC-CA-01", "actor": "nv 0912.345.678", "action": "copy",
        "object": {"path": "/srv/CCCD 001-203-004-567.xlsx", "sha256": SHA, "record_count": 40},
        "destination": {"path": "/media/usb/001 203 004 567.xlsx", "kind": "removable"},
        "purpose": "gọi lại (+84) 912 345 678", "agent_id": "may-0987654321", "seq": 1,
        "pii": {"cccd": 40}, "unit": "cong_an",
    }
    event.update(over)
    return event


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_identifiers_never_leave_raw_through_the_running_server(tmp_path, kind):
    sink = SmtpSink(free_port()).start()
    hook = Receiver([])
    server = None
    try:
        with database(kind, tmp_path) as url:
            data_dir = tmp_path / "data"
            env = cli_env(url, CANHGAC_SMTP_HOST="127.0.0.1", CANHGAC_SMTP_PORT=str(sink.port),
                          CANHGAC_WEBHOOK_URL=hook.url, CANHGAC_WEBHOOK_SECRET=SECRET,
                          CANHGAC_SCHEDULER_ENABLED="true", CANHGAC_LOG_LEVEL="INFO")
            token = init_data_dir(data_dir, env)
            for name, role, unit in (("ca.1", "police", "cong_an"), ("ct.1", "leader", "lanh_dao"),
                                     ("vp.1", "official", "van_phong")):
                added = run_cli(["user", "add", name, "--role", role, "--unit", unit,
                                 "--email", f"{name}@nhanly.example", "--data-dir", str(data_dir)],
                                {**env, "CANHGAC_USER_PASSWORD": PASSWORD})
                assert added.returncode == 0, added.stderr[-2000:]
            server = LiveServer(data_dir, env, threads=4)
            server.start()

            # 1. An agent's events over the real ingest API; one is classified dan_cu by path.
            status, answer = server.post_events(token, [
                _event(),
                _event(seq=2, object={"path": "C:\\DuLieu\\DanCu\\CCCD 001-203-004-567.xlsx",
                                      "sha256": SHA, "record_count": 40}),
            ])
            assert (status, answer) == (200, {"stored": 2, "duplicates": 0})

            # 2. An official reports an incident with numbers in its text, through the form.
            official = Browser(server.port)
            official.login("vp.1")
            noticed = (datetime.now(UTC) + timedelta(hours=7) - timedelta(hours=1))
            status, _ = official.post("/incidents/report", {
                "csrf_token": official.csrf("/incidents/report"), "kind": "sao_chep_chia_se",
                "what_happened": "Ảnh CCCD 001.203.004.567 gửi Zalo, gọi +84 (0) 912 345 678",
                "noticed_at": noticed.strftime("%Y-%m-%dT%H:%M"), "personal_data": "yes",
                "data_classes": ["dan_cu"], "location": "SĐT 0912\u200b345\u200b678",
                "affected_people": "1"})
            assert status == 200

            # 3. Mail and webhook deliveries arrive (the dispatcher runs in the server).
            def reported_mail_arrived() -> bool:
                return (any("SĐT" in m["Subject"] for m in sink.mails())
                        and sum("SĐT" in r["body"].decode() for r in hook.requests) >= 1)

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not reported_mail_arrived():
                time.sleep(0.2)
            mails = sink.mails()
            assert reported_mail_arrived(), [m["Subject"] for m in mails]
            for mail in mails:
                text = mail["Subject"] + mail.get_content()
                assert _leaks(text) == [], mail["Subject"]
                assert "912\u200b345" not in text
            assert any("[phone]" in m["Subject"] for m in mails)
            for request in hook.requests:
                assert request["signature_ok"]
                assert _leaks(json.loads(request["body"])["text"]) == []

            # 4. The agents page and the monthly report's CSV, downloaded as people do.
            admin = Browser(server.port)
            admin.login("admin")
            status, page = admin.get("/admin/agents")
            assert status == 200 and "may-[phone]" in page and _leaks(page) == []
            leader = Browser(server.port)
            leader.login("ct.1")
            month = (datetime.now(UTC) + timedelta(hours=7)).strftime("%Y-%m")
            status, report_csv = leader.get(f"/reports/{month}/report.csv")
            assert status == 200 and "agent_events,may-[phone],,,2" in report_csv.replace("\r", "")
            assert _leaks(report_csv) == []
            police = Browser(server.port)
            police.login("ca.1")
            status, trail_csv = police.post("/audit/export.csv",
                                            {"csrf_token": police.csrf("/audit/")})
            assert status == 200 and "/srv/CCCD [cccd].xlsx" in trail_csv
            assert _leaks(trail_csv) == []
            server.kill()
            server = None

            # 5. The database itself: bodies, search columns, alerts, incidents.
            engine = create_engine(url or f"sqlite:///{data_dir / 'canhgac.db'}")
            try:
                with engine.connect() as conn:
                    entries = conn.execute(select(AuditEntry.kind, AuditEntry.body,
                                                  AuditEntry.actor, AuditEntry.path)).all()
                    alerts = conn.execute(select(Alert.group_key, Alert.actor)).all()
                    incidents = conn.execute(select(Incident.origin, Incident.group_key,
                                                    Incident.title, Incident.summary)).all()
            finally:
                engine.dispose()
            for entry_kind, body, actor, path in entries:
                assert _leaks(" ".join((body, actor or "", path or ""))) == [], entry_kind
            events = [json.loads(b)["body"] for k, b, _, _ in entries if k == "event"]
            assert {e["object"]["path"] for e in events} == {
                "/srv/CCCD [cccd].xlsx", "C:\\DuLieu\\DanCu\\CCCD [cccd].xlsx"}
            assert {(e["actor"], e["purpose"]) for e in events} == {("nv [phone]", "gọi lại [phone]")}
            assert all(e["object"]["sha256"] == SHA for e in events)
            assert alerts and all(_leaks(f"{g} {a}") == [] for g, a in alerts)
            by_origin = {origin: (key, title, summary) for origin, key, title, summary in incidents}
            assert _leaks(" ".join(filter(None, by_origin["rule"]))) == []
            # The reported incident's own text stays as written (police and leadership read it).
            assert "001.203.004.567" in by_origin["report"][2]
            log_text = (data_dir / "canhgac.log").read_text(encoding="utf-8")
            assert _leaks(log_text) == []

            # 6. Masking happened before hashing: the trail verifies.
            checked = verify(data_dir, env)
            assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    finally:
        if server is not None:
            server.kill()
        hook.close()
        sink.stop()
