"""Mail delivery through a real SMTP server (aiosmtpd on 127.0.0.1): retries, claims, threads."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from service import create_app
from service.audit.checkpoint import open_checkpoint
from service.audit.keys import load_verifier_key
from service.audit.models import AuditEntry, Checkpoint
from service.config import load_settings
from service.core.db import new_session
from service.incidents.models import Incident
from service.notify.channels import Deliverer
from service.notify.dispatcher import dispatch_pending
from service.notify.models import OutboxMessage
from service.notify.outbox import notify_incident, outbox_summary
from service.notify.wiring import get_dispatcher, stop_dispatcher


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """A real SMTP server that keeps every mail it is offered, accepted or not."""

    def __init__(self, port: int, replies: list[str] | None = None, delay: float = 0.0):
        self.port = port
        self.replies = list(replies or [])
        self.delay = delay
        self.accepted: list[tuple[bytes, list[str]]] = []
        self.offered: list[bytes] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd hook
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.offered.append(envelope.content)
            reply = self.replies.pop(0) if self.replies else "250 OK"
            if reply.startswith("250"):
                self.accepted.append((envelope.content, list(envelope.rcpt_tos)))
        return reply

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def mails(self) -> list[email.message.EmailMessage]:
        with self._lock:
            return [email.message_from_bytes(raw, policy=email.policy.default)
                    for raw, _ in self.accepted]

    def message_ids(self) -> list[str]:
        return [m["Message-ID"] for m in self.mails()]


@pytest.fixture
def sink():
    server = SmtpSink(free_port())
    yield server
    server.stop()


@pytest.fixture
def people(make_user):
    make_user("chu_tich", "leader")
    make_user("cong_an_1", "police", unit="cong_an")


def _smtp_settings(app, port: int, **extra):
    return app.config["SETTINGS"].model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout_seconds": 5, **extra})


def _incident(session, **fields) -> Incident:
    values = {"title": "Chia sẻ danh sách hộ nghèo qua Zalo", "origin": "rule",
              "summary": "Tệp HoNgheo.xlsx gửi ra nhóm Zalo thôn", "severity": "critical",
              "detected_at": datetime(2026, 2, 10, 9, 15, tzinfo=UTC)}
    values.update(fields)
    incident = Incident(**values)
    session.add(incident)
    session.flush()
    return incident


def _attempts(session) -> list[dict]:
    rows = session.scalars(select(AuditEntry).where(AuditEntry.kind == "notify.attempt")
                           .order_by(AuditEntry.seq))
    result = [json.loads(r.body)["body"] for r in rows]
    session.commit()  # on SQLite an open transaction holds the write lock
    return result


def _rows(session) -> list[OutboxMessage]:
    session.expire_all()
    rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    session.commit()  # on SQLite an open transaction holds the write lock
    return rows


def test_mail_arrives_in_vietnamese_with_link_and_checkpoint(app, session, people, sink):
    sink.start()
    settings = _smtp_settings(app, sink.port)
    incident = _incident(session)
    messages = notify_incident(session, incident, kind="created", settings=settings)
    session.commit()
    stats = dispatch_pending(session, settings)
    assert (stats.attempted, stats.delivered, stats.failed) == (2, 2, 0)
    mails = sorted(sink.mails(), key=lambda m: m["To"])
    assert [m["To"] for m in mails] == ["chu_tich@nhanly.example", "cong_an_1@nhanly.example"]
    note = session.get(Checkpoint, messages[0].checkpoint_id).note
    verifier = load_verifier_key(settings.keys_dir)
    by_id = {m.message_id: m for m in messages}
    for mail in mails:
        assert mail["Subject"] == (f"[Canh Gác] Sự cố mới #{incident.id} (mức nghiêm trọng): "
                                   "Chia sẻ danh sách hộ nghèo qua Zalo")
        assert mail["From"] == settings.mail_from
        assert mail["Auto-Submitted"] == "auto-generated"
        assert mail["References"] == f"<incident-{incident.id}@canhgac.nhanly.langson>"
        assert mail["Date"].datetime.utcoffset() == timedelta(hours=7)
        assert mail.get_content_charset() == "utf-8"
        body = mail.get_content().replace("\r\n", "\n")
        assert "Tệp HoNgheo.xlsx gửi ra nhóm Zalo thôn" in body
        assert "Mức độ: nghiêm trọng" in body
        assert f"http://127.0.0.1:8080/incidents/{incident.id}/acknowledge" in body
        assert "(72 giờ): 13/02/2026 16:15 (giờ Việt Nam)" in body
        assert body.endswith(note)
        # The mailbox is a witness: the note cut from the mail verifies on its own.
        witnessed = open_checkpoint(body[body.index(settings.audit_origin + "\n"):],
                                    settings.audit_origin, [verifier])
        assert witnessed.size >= 1
        assert mail["Message-ID"] in by_id
    rows = _rows(session)
    assert all(r.state == "delivered" and r.attempts == 1 and r.delivered_at for r in rows)
    outcomes = _attempts(session)
    assert sorted(a["recipient"] for a in outcomes) == ["chu_tich", "cong_an_1"]
    assert {(a["outcome"], a["error"], a["channel"]) for a in outcomes} == {
        ("delivered", None, "email")}


def test_smtp_down_then_up_delivers_each_message_exactly_once(app, session, people, sink):
    settings = _smtp_settings(app, sink.port, notify_retry_base_seconds=30)
    for _ in range(3):
        notify_incident(session, _incident(session), kind="created", settings=settings)
    session.commit()
    t0 = datetime.now(UTC) + timedelta(seconds=1)

    stats = dispatch_pending(session, settings, now=t0)
    assert (stats.attempted, stats.failed) == (6, 6)
    rows = _rows(session)
    assert all(r.state == "pending" and r.attempts == 1 for r in rows)
    assert {r.next_attempt_at for r in rows} == {t0 + timedelta(seconds=30)}
    assert all(r.last_error.startswith("ConnectionRefusedError") for r in rows)
    assert stats.next_due_at == t0 + timedelta(seconds=30)

    assert dispatch_pending(session, settings, now=t0 + timedelta(seconds=29)).attempted == 0
    stats = dispatch_pending(session, settings, now=t0 + timedelta(seconds=30))
    assert (stats.attempted, stats.failed) == (6, 6)
    assert {r.next_attempt_at for r in _rows(session)} == {t0 + timedelta(seconds=90)}

    sink.start()
    assert dispatch_pending(session, settings, now=t0 + timedelta(seconds=89)).attempted == 0
    stats = dispatch_pending(session, settings, now=t0 + timedelta(seconds=90))
    assert (stats.attempted, stats.delivered) == (6, 6)
    assert dispatch_pending(session, settings, now=t0 + timedelta(days=30)).attempted == 0

    rows = _rows(session)
    assert sorted(sink.message_ids()) == sorted(r.message_id for r in rows)
    assert len(set(sink.message_ids())) == 6
    assert all(r.state == "delivered" and r.attempts == 3 for r in rows)
    outcomes = _attempts(session)
    assert len(outcomes) == 18
    assert sum(a["error"] == "ConnectionRefusedError" for a in outcomes) == 12
    assert sum(a["outcome"] == "delivered" for a in outcomes) == 6


def test_retry_resends_the_identical_mail(app, session, people, sink):
    sink.replies = ["451 4.3.0 Thu lai sau"]
    sink.start()
    settings = _smtp_settings(app, sink.port)
    user = [u for u in notify_incident(session, _incident(session), kind="escalated",
                                       settings=settings) if u.recipient_username == "chu_tich"]
    session.commit()
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    first = dispatch_pending(session, settings, now=t0)
    assert (first.delivered, first.failed) == (1, 1)
    failed = [r for r in _rows(session) if r.state == "pending"]
    assert len(failed) == 1 and failed[0].last_error.startswith("SMTPDataError")
    second = dispatch_pending(session, settings, now=t0 + timedelta(seconds=30))
    assert second.delivered == 1
    assert len(sink.offered) == 3
    # The refused offer and its retry are byte for byte the same mail, Message-ID included.
    retried_id = failed[0].message_id
    offers = [raw for raw in sink.offered
              if email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"] == retried_id]
    assert len(offers) == 2 and offers[0] == offers[1]
    assert sorted(sink.message_ids()) == sorted(r.message_id for r in _rows(session))
    assert user[0].message_id in sink.message_ids()


def test_failing_message_is_marked_and_keeps_retrying(app, session, people, sink):
    settings = _smtp_settings(app, sink.port, notify_retry_base_seconds=10,
                              notify_retry_max_seconds=100, notify_failing_after_attempts=3)
    notify_incident(session, _incident(session), kind="created", settings=settings,
                    recipients=[])
    session.commit()
    assert _rows(session) == []  # nobody to tell, nothing queued
    notify_incident(session, _incident(session), kind="created", settings=settings)
    session.commit()
    when = datetime.now(UTC) + timedelta(seconds=1)
    gaps = []
    for attempt in range(1, 6):
        stats = dispatch_pending(session, settings, now=when)
        assert stats.failed == 2
        rows = _rows(session)
        assert {r.attempts for r in rows} == {attempt}
        assert {r.is_failing for r in rows} == {attempt >= 3}
        gap = rows[0].next_attempt_at - when
        gaps.append(gap.total_seconds())
        when = rows[0].next_attempt_at
    assert gaps == [10, 20, 100, 100, 100]
    assert outbox_summary(session)["failing"] == 2
    assert [a["failing"] for a in _attempts(session)][-2:] == [True, True]
    sink.start()
    assert dispatch_pending(session, settings, now=when).delivered == 2
    assert not any(r.is_failing for r in _rows(session))
    assert outbox_summary(session)["failing"] == 0


class _Killed(BaseException):
    """Stands for kill -9: nothing after it runs, no except Exception catches it."""


def test_a_dispatcher_killed_mid_pass_resends_only_the_message_in_flight(
        app, session, make_user, sink, monkeypatch):
    sink.start()
    for name in ("chu_tich", "pho_chu_tich_1", "pho_chu_tich_2", "cong_an_1", "cong_an_2"):
        make_user(name, "leader")
    settings = _smtp_settings(app, sink.port, notify_lease_seconds=20)
    notify_incident(session, _incident(session), kind="created", settings=settings)
    session.commit()
    assert len(_rows(session)) == 5
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    real_deliver = Deliverer.deliver
    sent = []

    def deliver_then_die_on_the_third(self, snapshot, now):
        real_deliver(self, snapshot, now)  # the third mail really goes out...
        sent.append(snapshot.message_id)
        if len(sent) == 3:
            raise _Killed  # ...and the process dies before it records anything

    monkeypatch.setattr(Deliverer, "deliver", deliver_then_die_on_the_third)
    with pytest.raises(_Killed):
        dispatch_pending(session, settings, now=t0)
    session.rollback()
    monkeypatch.setattr(Deliverer, "deliver", real_deliver)
    in_flight = sent[2]
    # The two recorded mails stay delivered; the two never reached go out at once, on any
    # instance, without waiting for a lease.
    assert sum(r.state == "delivered" for r in _rows(session)) == 2
    soon = dispatch_pending(session, settings, now=t0 + timedelta(seconds=1))
    assert soon.delivered == 2
    assert soon.next_due_at == t0 + timedelta(seconds=20)  # when the dead claim runs out
    later = dispatch_pending(session, settings, now=t0 + timedelta(seconds=21))
    assert later.delivered == 1
    ids = sink.message_ids()
    assert len(ids) == 6  # five mails, and only the one in flight twice
    assert ids.count(in_flight) == 2
    assert all(ids.count(other) == 1 for other in set(ids) - {in_flight})
    assert all(r.state == "delivered" for r in _rows(session))


def test_the_lease_must_outlast_the_longest_channel_timeout(app):
    from service.config import ConfigError

    with pytest.raises(ConfigError, match=r"notify_lease_seconds \(30\) must exceed"):
        load_settings({"notify_lease_seconds": 30, "notify_command_timeout_seconds": 30},
                      environ={})


def _second_instance(settings_overrides, **extra):
    other = create_app(load_settings({**settings_overrides, **extra}, environ={}))
    return other


def test_two_instances_deliver_each_message_exactly_once(
        app, session, make_user, sink, settings_overrides):
    sink.delay = 0.005
    sink.start()
    for name in ("chu_tich", "pho_chu_tich", "cong_an_1"):
        make_user(name, "leader")
    settings = _smtp_settings(app, sink.port, notify_batch_size=2)
    for _ in range(10):
        notify_incident(session, _incident(session), kind="created", settings=settings)
    session.commit()
    expected = sorted(r.message_id for r in _rows(session))
    assert len(expected) == 30

    instances = [app, _second_instance(settings_overrides)]
    results: list = []
    barrier = threading.Barrier(4)

    def run(instance):
        s = new_session(instance)
        try:
            barrier.wait()
            results.append(dispatch_pending(s, settings))
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(inst,)) for inst in instances * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    instances[1].extensions["canhgac.engine"].dispose()
    assert sorted(sink.message_ids()) == expected
    assert sum(r.delivered for r in results) == 30
    assert sum(1 for r in results if r.delivered) >= 2  # they really ran side by side
    assert sum(r.failed for r in results) == 0
    assert all(r.attempts == 1 and r.state == "delivered" for r in _rows(session))
    assert len(_attempts(session)) == 30


def test_commit_wakes_the_dispatcher_thread(settings_overrides, make_user, sink, app):
    from service.core.bootstrap import prepare_data_dir

    sink.start()
    live = create_app(load_settings({**settings_overrides, "scheduler_enabled": True,
                                     "smtp_host": "127.0.0.1", "smtp_port": sink.port},
                                    environ={}))
    prepare_data_dir(live)
    make_user("chu_tich", "leader")
    try:
        assert not get_dispatcher(live).is_running  # lazy: nothing enqueued yet
        with live.app_context():
            s = new_session(live)
            notify_incident(s, _incident(s), kind="created")
            assert not sink.accepted  # nothing leaves before the commit
            s.commit()
            s.close()
        deadline = time.monotonic() + 10
        while not sink.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sink.accepted) == 1
        assert get_dispatcher(live).is_running
    finally:
        stop_dispatcher(live)
        live.extensions["canhgac.engine"].dispose()
    assert not get_dispatcher(live).is_running


def test_dispatcher_thread_retries_until_the_server_comes_back(
        settings_overrides, make_user, sink, app):
    live = create_app(load_settings({**settings_overrides, "scheduler_enabled": True,
                                     "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                                     "notify_retry_base_seconds": 1}, environ={}))
    make_user("cong_an_1", "police")
    try:
        with live.app_context():
            s = new_session(live)
            notify_incident(s, _incident(s), kind="created")
            s.commit()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(r.attempts for r in _rows(s)):
                time.sleep(0.05)
            assert [r.state for r in _rows(s)] == ["pending"]  # SMTP down: it waits
            sink.start()  # no new commit, no wake-up: the thread's own retry must find it
            deadline = time.monotonic() + 15
            while not sink.accepted and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(sink.accepted) == 1
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _rows(s)[0].state != "delivered":
                time.sleep(0.05)
            row = _rows(s)[0]
            assert row.state == "delivered" and row.attempts >= 2
            s.close()
    finally:
        stop_dispatcher(live)
        live.extensions["canhgac.engine"].dispose()
    assert len(sink.accepted) == 1


def test_no_thread_when_background_work_is_off(app, session, people, sink):
    sink.start()
    assert app.config["SETTINGS"].scheduler_enabled is False
    notify_incident(session, _incident(session), kind="created",
                    settings=_smtp_settings(app, sink.port))
    session.commit()
    time.sleep(0.2)
    assert not get_dispatcher(app).is_running
    assert sink.accepted == []


def test_catch_up_job_delivers(settings_overrides, make_user, sink, app):
    from service.core.jobs import JOBS, run_job
    from service.notify import jobs  # noqa: F401 - registers the jobs

    sink.start()
    worker = create_app(load_settings({**settings_overrides, "smtp_host": "127.0.0.1",
                                       "smtp_port": sink.port}, environ={}))
    make_user("cong_an_1", "police")
    try:
        with worker.app_context():
            s = new_session(worker)
            notify_incident(s, _incident(s), kind="deadline_reminder")
            s.commit()
            s.close()
        assert {"notify.dispatch", "notify.cleanup"} <= set(JOBS)
        run_job(worker, "notify.dispatch")
        assert len(sink.accepted) == 1
        assert "Nhắc hạn" in sink.mails()[0]["Subject"]
        run_job(worker, "notify.cleanup")  # nothing old enough: the row stays
        s = new_session(worker)
        assert [r.state for r in s.scalars(select(OutboxMessage))] == ["delivered"]
        s.close()
    finally:
        worker.extensions["canhgac.engine"].dispose()


def test_long_vietnamese_subject_keeps_its_spaces():
    """CPython's header folding drops spaces between encoded words; the mail must not."""
    from datetime import UTC, datetime
    from email import message_from_bytes
    from email import policy as email_policy

    from service.config import load_settings
    from service.notify.channels import MessageSnapshot, build_email

    subject = ("[Canh Gác] Sự cố mới #1 (mức nghiêm trọng): Sao chép dữ liệu cá nhân ra thiết bị "
               "lưu trữ di động")
    snapshot = MessageSnapshot(
        id=1, kind="created", channel="email", incident_id=1, recipient_username="lanhdao",
        address="lanhdao@nhanly.example", subject=subject, body="Nội dung thư\n" * 30, link=None,
        message_id="<outbox-1.1@canhgac>", created_at=datetime(2026, 11, 25, tzinfo=UTC), attempts=0)
    raw = build_email(snapshot, load_settings(environ={})).as_bytes()
    back = message_from_bytes(raw, policy=email_policy.default)
    assert str(back["Subject"]) == subject
    assert max(len(line) for line in raw.split(b"\n")[raw.split(b"\n").index(b""):]) <= 78
