"""Webhook (a real HTTP server on 127.0.0.1 checking the HMAC) and local-command delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from service.audit.models import AuditEntry, Checkpoint
from service.incidents.models import Incident
from service.notify.channels import sign_body, verify_signature
from service.notify.dispatcher import dispatch_pending
from service.notify.models import OutboxMessage
from service.notify.outbox import notify_incident

SECRET = "bi-mat-webhook-xa-nhan-ly"
CCCD = "020185123456"
PHONE = "0912345678"


class Receiver:
    """A webhook receiver that checks signatures and answers with scripted statuses."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signature = self.headers.get("X-CanhGac-Signature")
                receiver.requests.append({
                    "body": body, "headers": self.headers, "path": self.path,
                    "signature_ok": signature is not None and hmac.compare_digest(signature, expected),
                })
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/canhgac/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def people(make_user):
    make_user("chu_tich", "leader")
    make_user("cong_an_1", "police", unit="cong_an")


def _incident(session) -> Incident:
    incident = Incident(title="Tài khoản bị chiếm quyền", origin="report", severity="high",
                        summary=f"Đăng nhập lạ; bảng có {CCCD}, liên hệ {PHONE}")
    session.add(incident)
    session.flush()
    return incident


def _only(session, channel: str) -> OutboxMessage:
    session.expire_all()
    rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.channel == channel)))
    session.commit()
    assert len(rows) == 1
    return rows[0]


def _attempts(session) -> list[dict]:
    rows = session.scalars(select(AuditEntry).where(AuditEntry.kind == "notify.attempt")
                           .order_by(AuditEntry.seq))
    result = [json.loads(r.body)["body"] for r in rows]
    session.commit()
    return result


def test_webhook_is_signed_and_retried_after_500(app, session, people, receiver):
    hook = receiver([500, 200])
    settings = app.config["SETTINGS"].model_copy(
        update={"webhook_url": hook.url, "webhook_secret": SECRET})
    incident = _incident(session)
    messages = notify_incident(session, incident, kind="created", settings=settings)
    session.commit()
    # One webhook per incident event, however many people get mail (mail waits: no smtp_host).
    assert sorted(m.channel for m in messages) == ["email", "email", "webhook"]
    t0 = datetime.now(UTC) + timedelta(seconds=1)

    stats = dispatch_pending(session, settings, now=t0)
    assert (stats.attempted, stats.failed, stats.waiting_for_config) == (1, 1, 2)
    row = _only(session, "webhook")
    assert row.state == "pending" and row.last_error == "WebhookStatusError: HTTP 500"
    assert dispatch_pending(session, settings, now=t0 + timedelta(seconds=29)).attempted == 0
    assert dispatch_pending(session, settings, now=t0 + timedelta(seconds=30)).delivered == 1
    assert _only(session, "webhook").state == "delivered"
    assert dispatch_pending(session, settings, now=t0 + timedelta(days=1)).attempted == 0

    assert len(hook.requests) == 2
    note = session.get(Checkpoint, row.checkpoint_id).note
    for request, when in zip(hook.requests, (t0, t0 + timedelta(seconds=30)), strict=True):
        assert request["signature_ok"]
        assert request["path"] == "/canhgac/hook"
        headers = request["headers"]
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert headers["X-CanhGac-Message-Id"] == row.message_id
        assert headers["X-CanhGac-Timestamp"] == str(int(when.timestamp()))
        document = json.loads(request["body"])
        assert document["sent_at"] == headers["X-CanhGac-Timestamp"]  # signed, not only a header
        assert document["message_id"] == row.message_id
        assert document["incident_id"] == incident.id and document["kind"] == "created"
        assert document["link"] == f"http://127.0.0.1:8080/incidents/{incident.id}/acknowledge"
        assert document["text"].endswith(note)
        raw = request["body"].decode()
        assert CCCD not in raw and PHONE not in raw
    assert [(a["outcome"], a["error"]) for a in _attempts(session)] == [
        ("failed", "WebhookStatusError"), ("delivered", None)]


def test_webhook_connection_refused_is_retried(app, session, people, receiver):
    hook = receiver([])
    url = hook.url
    hook.close()  # nothing listens on that port any more
    settings = app.config["SETTINGS"].model_copy(update={"webhook_url": url,
                                                         "webhook_secret": SECRET})
    notify_incident(session, _incident(session), kind="escalated", settings=settings)
    session.commit()
    stats = dispatch_pending(session, settings, now=datetime.now(UTC) + timedelta(seconds=1))
    assert stats.failed == 1
    assert _only(session, "webhook").last_error.startswith("URLError")


def test_signature_helpers_detect_tampering():
    body = json.dumps({"text": "Sự cố #1"}, ensure_ascii=False).encode()
    header = sign_body(body, SECRET)
    assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify_signature(body, SECRET, header)
    assert not verify_signature(body + b" ", SECRET, header)
    assert not verify_signature(body, "khac", header)
    assert not verify_signature(body, SECRET, None)


def _command(tmp_path, exit_status: int = 0) -> tuple[str, object]:
    script = tmp_path / "sms_tool.py"
    out = tmp_path / "sent.jsonl"
    script.write_text(
        "import sys\n"
        "data = sys.stdin.buffer.read()\n"
        "with open(sys.argv[1], 'ab') as fh:\n"
        "    fh.write(data + b'\\n')\n"
        f"sys.stderr.write('modem busy {PHONE}')\n"
        f"sys.exit({exit_status})\n", encoding="utf-8")
    command = " ".join(shlex.quote(str(p)) for p in (sys.executable, script, out))
    return command, out


def test_local_command_gets_the_message_on_stdin(app, session, people, tmp_path):
    command, out = _command(tmp_path)
    settings = app.config["SETTINGS"].model_copy(update={"notify_command": command})
    incident = _incident(session)
    notify_incident(session, incident, kind="dismissed", settings=settings,
                    extra_text="Lý do: cảnh báo nhầm")
    session.commit()
    stats = dispatch_pending(session, settings)
    assert (stats.attempted, stats.delivered) == (1, 1)
    row = _only(session, "command")
    lines = out.read_bytes().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["message_id"] == row.message_id
    assert document["kind"] == "dismissed" and document["incident_id"] == incident.id
    assert "Lý do: cảnh báo nhầm" in document["text"]
    assert CCCD not in lines[0].decode() and PHONE not in lines[0].decode()


def test_local_command_failure_is_retried_and_masked(app, session, people, tmp_path):
    command, out = _command(tmp_path, exit_status=3)
    settings = app.config["SETTINGS"].model_copy(update={"notify_command": command})
    notify_incident(session, _incident(session), kind="created", settings=settings)
    session.commit()
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    assert dispatch_pending(session, settings, now=t0).failed == 1
    row = _only(session, "command")
    assert row.state == "pending" and row.attempts == 1
    assert row.last_error.startswith("CommandFailedError: exit status 3: modem busy")
    assert PHONE not in row.last_error
    assert dispatch_pending(session, settings, now=t0 + timedelta(seconds=30)).failed == 1
    assert len(out.read_bytes().splitlines()) == 2
    assert [a["error"] for a in _attempts(session)] == ["CommandFailedError"] * 2
