"""SMS through a real gammu-smsd (dummy phone): notices out, `XN <n> <code>` replies in."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import select

from service.core.db import new_session
from tests.gammu import GammuDaemon, require_gammu

LEADER_PHONE = "0912345678"
LEADER_E164 = "+84912345678"
POLICE_E164 = "+84987654321"
STRANGER_E164 = "+84911111111"
CCCD = "020185123456"


@pytest.fixture
def gammu(tmp_path):
    """Run gammu-smsd with the dummy phone for the test."""
    require_gammu()
    daemon = GammuDaemon(tmp_path / "gammu").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def settings_overrides(settings_overrides, gammu, request):
    """Point the service at the daemon's folders (plus a test's `sms_settings` marker)."""
    marker = request.node.get_closest_marker("sms_settings")
    return {**settings_overrides, **gammu.settings(), **(marker.kwargs if marker else {})}


def _add_user(app, username, *roles, phone=None, full_name=""):
    from service.auth.operations import create_user

    with app.app_context():
        s = new_session()
        create_user(s, username=username, password="mat-khau-thu-nghiem-1", roles=list(roles),
                    email=f"{username}@nhanly.example", phone=phone, full_name=full_name,
                    is_seeding=True)
        s.commit()
        s.close()


@pytest.fixture
def people(app):
    """A leader and a police officer with phones, an official without one."""
    _add_user(app, "chu-tich", "leader", phone=LEADER_PHONE, full_name="Hoàng Văn Chủ")
    _add_user(app, "cong-an", "police", phone="098 765 4321")
    _add_user(app, "can-bo", "official")


def _token(runner):
    result = runner.invoke(["token", "create", "--source", "tac-tu-may-tram"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _ingest_usb_copy(client, runner) -> None:
    event = {
        "id": str(uuid.uuid4()), "occurred_at": "2026-03-02T09:10:00+07:00",
        "host": "PC-MC-02", "actor": "tthc.nguyenvana", "action": "copy",
        "object": {"path": f"C:\\DuLieu\\DanCu\\{CCCD}_Nguyen_Van_A.xlsx", "record_count": 30},
        "destination": {"path": "E:\\ds.xlsx", "kind": "removable"},
        "pii": {"cccd": 30}, "unit": "tt_hcc",
    }
    response = client.post("/api/v1/events", data=json.dumps([event]),
                           content_type="application/json",
                           headers={"Authorization": f"Bearer {_token(runner)}"})
    assert response.status_code == 200, response.text


def _dispatch(app):
    from service.notify.dispatcher import dispatch_pending

    with app.app_context():
        s = new_session()
        try:
            return dispatch_pending(s, app.config["SETTINGS"])
        finally:
            s.close()


def _read_inbox(app, settle_seconds=0.0):
    from service.notify.replies import read_inbox

    with app.app_context():
        s = new_session()
        try:
            # The tests wait for gammu's "Received IN…" log line, written after the file is closed.
            return [r.outcome for r in read_inbox(s, app.config["SETTINGS"],
                                                  settle_seconds=settle_seconds)]
        finally:
            s.close()


def _incident(app):
    from service.incidents.models import Incident

    with app.app_context():
        s = new_session()
        try:
            return s.scalars(select(Incident)).one()
        finally:
            s.close()


def _entries(app, kind):
    from service.audit.models import AuditEntry

    with app.app_context():
        s = new_session()
        try:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))
            return [json.loads(r.body)["body"] for r in rows]
        finally:
            s.close()


def _sent_text(path) -> str:
    from service.notify.sms import decode_sms_file

    return decode_sms_file(path.read_bytes())


def _sent_to(gammu, number):
    return [p for p in gammu.sent_files() if f"_{number}_" in p.name]


def _daemon_read(gammu, number) -> tuple[int, str, int]:
    """Return (parts, text of the first part, coding) as gammu-smsd logged the OUT file it read."""
    match = re.search(rf'Found (\d+) sms to "{re.escape(number)}" with text "(.*?)" cod (\d+)',
                      gammu.log())
    assert match, gammu.log()
    return int(match.group(1)), match.group(2), int(match.group(3))


def _code_in(text: str, incident_id: int) -> str:
    match = re.search(rf"XN {incident_id} ([A-Z0-9]{{5}})$", text)
    assert match, text
    return match.group(1)


def _reply(app, gammu, sender, text, _unused=None):
    gammu.receive(sender, text)
    _wait_received(gammu)
    return _read_inbox(app)


def _wait_received(gammu):
    """Wait until gammu-smsd has written and closed an IN file (its log says "Received IN…")."""
    def closed():
        names = {p.name for p in gammu.in_files()}
        return names and all(f"Received {name}" in gammu.log() for name in names)

    gammu.wait_for(closed, what="the reply's IN file")
    return gammu.in_files()


def test_incident_from_ingest_reaches_phones_and_reply_acknowledges(app, client, runner, people, gammu):
    _ingest_usb_copy(client, runner)
    incident = _incident(app)
    stats = _dispatch(app)
    assert stats.failed == 0
    # One SMS per leader and police user with a phone; none for the official without one.
    gammu.wait_for(lambda: len(gammu.sent_files()) == 2, what="two SMS sent")
    assert not list(gammu.error.iterdir()) and not list(gammu.outbox.glob("OUT*"))
    leader_sms = _sent_text(_sent_to(gammu, LEADER_E164)[0])
    police_sms = _sent_text(_sent_to(gammu, POLICE_E164)[0])
    for text in (leader_sms, police_sms):
        assert text.startswith(f"Canh Gác: sự cố mới #{incident.id}, mức")
        # Counts and kinds only: no identifier, no name, no path from the event.
        assert CCCD not in text and "Nguyen" not in text and "DanCu" not in text
        assert "30 mục định danh" in text
    assert "Xác nhận đã nhận: nhắn XN" in leader_sms
    assert "Công an xác nhận đã nhận tin: nhắn XN" in police_sms
    # The daemon read the Vietnamese text intact and sent it as Unicode (coding 1).
    parts, first_part, coding = _daemon_read(gammu, LEADER_E164)
    assert coding == 1 and parts == 2  # UCS-2: 70 characters a part
    assert len(first_part) >= 60 and leader_sms.startswith(first_part)
    leader_code = _code_in(leader_sms, incident.id)
    police_code = _code_in(police_sms, incident.id)

    # Wrong code, right number: nothing changes.
    assert _reply(app, gammu, LEADER_E164, f"XN {incident.id} AAAAA", 0) == ["wrong_code"]
    # Right code from another number: nothing changes.
    assert _reply(app, gammu, STRANGER_E164, f"XN {incident.id} {leader_code}", 0) == ["wrong_number"]
    assert _incident(app).state == "reported"
    # The leader's reply (lower case, as phones type it) acknowledges.
    assert _reply(app, gammu, LEADER_E164, f"xn {incident.id} {leader_code.lower()}", 0) == [
        "acknowledged"]
    acknowledged = _incident(app)
    assert acknowledged.state == "acknowledged"
    entries = _entries(app, "incident.acknowledged")
    assert entries[-1]["channel"] == "sms" and entries[-1]["by"] == "chu-tich"
    # The same code again: refused, recorded.
    assert _reply(app, gammu, LEADER_E164, f"XN {incident.id} {leader_code}", 0) == ["code_used"]
    # Police confirm receipt: recorded apart from the acknowledgement.
    assert _reply(app, gammu, POLICE_E164, f"XN {incident.id} {police_code}", 0) == [
        "receipt_confirmed"]
    receipts = _entries(app, "incident.receipt_confirmed")
    assert receipts[-1]["by"] == "cong-an" and receipts[-1]["channel"] == "sms"
    outcomes = [e["outcome"] for e in _entries(app, "sms.reply")]
    assert outcomes == ["wrong_code", "wrong_number", "acknowledged", "code_used",
                        "receipt_confirmed"]
    for entry in _entries(app, "sms.reply"):
        assert LEADER_E164 not in json.dumps(entry) and STRANGER_E164 not in json.dumps(entry)
    assert _entries(app, "sms.reply")[1]["sender"] == "unknown"
    # Every reply got a short answer, sent by the daemon; files were moved out of the inbox.
    # A number that belongs to no account gets none: the modem is no relay to any number.
    _dispatch(app)
    gammu.wait_for(lambda: len(gammu.sent_files()) >= 2 + 4 + 1, what="answers sent")
    assert [_sent_text(p) for p in _sent_to(gammu, LEADER_E164)][1] == (
        f"Canh Gác: mã không đúng cho sự cố #{incident.id}. Không có gì thay đổi.")
    assert _sent_to(gammu, STRANGER_E164) == []
    assert gammu.in_files() == []
    assert len(list((gammu.inbox / "processed").glob("IN*.txt"))) == 5


@pytest.mark.sms_settings(sms_without_diacritics=True)
def test_without_diacritics_one_gsm7_sms(app, client, runner, people, gammu):
    from service.notify.sms import gsm7_length

    _ingest_usb_copy(client, runner)
    incident = _incident(app)
    _dispatch(app)
    gammu.wait_for(lambda: len(gammu.sent_files()) == 2, what="two SMS sent")
    text = _sent_text(_sent_to(gammu, LEADER_E164)[0])
    assert text.isascii() and gsm7_length(text) <= 160
    assert text.startswith(f"Canh Gac: su co moi #{incident.id}, muc nghiem trong.")
    assert re.search(rf"Xac nhan da nhan: nhan XN {incident.id} [A-Z0-9]{{5}}$", text)
    # The daemon read it as GSM-7 (coding 3), the whole text in one part.
    assert _daemon_read(gammu, LEADER_E164) == (1, text, 3)


def test_out_file_is_written_once_across_retries(app, people, gammu):
    from service.incidents.workflow import report_incident
    from service.notify.models import OutboxMessage, SmsCode

    with app.app_context():
        s = new_session()
        incident = report_incident(s, app.config["SETTINGS"], origin="rule", title="Quy tắc",
                                   rule_id="r1", severity="high")
        s.commit()
        s.close()
    gammu.stop()  # files stay in the outbox: the "crash" happens before the daemon sends
    _dispatch(app)
    written = sorted(gammu.outbox.glob("OUT*"))
    assert len(written) == 2
    assert all(p.name.startswith("OUTA") and p.name.endswith(".txt") for p in written)
    # A dispatcher that died after writing, before recording: the row is due again.
    with app.app_context():
        s = new_session()
        for row in s.scalars(select(OutboxMessage).where(OutboxMessage.channel == "sms")):
            row.state = "pending"
        hashes = {c.id: c.code_hash for c in s.scalars(select(SmsCode))}
        s.commit()
        s.close()
    _dispatch(app)
    assert sorted(gammu.outbox.glob("OUT*")) == written  # the same files, not new ones
    with app.app_context():
        s = new_session()
        assert {c.id: c.code_hash for c in s.scalars(select(SmsCode))} == hashes
        s.close()
    # No half-written files and no temporary names left behind.
    assert [p.name for p in gammu.outbox.iterdir() if not p.name.startswith("OUT")] == []
    assert incident.id


def test_inbox_survives_a_crash_between_commit_and_move(app, people, gammu):
    from service.notify.models import SmsReceived
    from service.notify.replies import handle_reply

    gammu.receive(STRANGER_E164, "XN 1 ABCDE")
    path = _wait_received(gammu)[0]
    # Fresh from the daemon: the job leaves it for the next run.
    assert _read_inbox(app, settle_seconds=60) == [] and path.exists()
    # The reply was handled and recorded, then the process died before moving the file.
    with app.app_context():
        s = new_session()
        handle_reply(s, app.config["SETTINGS"], STRANGER_E164, "XN 1 ABCDE")
        s.add(SmsReceived(file_name=path.name, outcome="wrong_code"))
        s.commit()
        s.close()
    assert _read_inbox(app) == []  # only moved, not handled twice
    assert len(_entries(app, "sms.reply")) == 1
    assert not path.exists() and (gammu.inbox / "processed" / path.name).exists()


def _drop_in_file(gammu, sender, text, index):
    """Put a received SMS into the inbox as gammu-smsd names it (IN<date>_<time>_<n>_<sender>_00)."""
    path = gammu.inbox / f"IN20261207_05{index // 60:02d}{index % 60:02d}_00_{sender}_00.txt"
    path.write_text(text, encoding="utf-8")


def test_reply_codes_cannot_be_guessed_by_flooding_an_incident(app, client, runner, people, gammu):
    from service.notify.replies import ANSWERS, MAX_WRONG_CODES

    # Guesses at an incident number not used yet do not lock the incident that gets it later.
    for i in range(MAX_WRONG_CODES):
        _drop_in_file(gammu, f"+8491200{i:04d}", "XN 1 AAAAA", 100 + i)
    assert _read_inbox(app) == ["wrong_code"] * MAX_WRONG_CODES
    _ingest_usb_copy(client, runner)
    incident = _incident(app)
    assert incident.id == 1
    _dispatch(app)
    gammu.wait_for(lambda: len(gammu.sent_files()) == 2, what="two SMS sent")
    leader_code = _code_in(_sent_text(_sent_to(gammu, LEADER_E164)[0]), incident.id)
    wrong = "AAAAA" if leader_code != "AAAAA" else "CCCCC"
    # A guesser learns nothing from the answer: a valid code from the wrong number reads as wrong.
    assert ANSWERS["wrong_number"] == ANSWERS["wrong_code"]
    # Guesses from many (spoofed) numbers: each one wrong, until the incident's limit.
    for i in range(MAX_WRONG_CODES):
        _drop_in_file(gammu, f"+8491100{i:04d}", f"XN {incident.id} {wrong}", i)
    assert _read_inbox(app) == ["wrong_code"] * MAX_WRONG_CODES
    # After the limit no code of the incident is taken by SMS, not even the right one.
    _drop_in_file(gammu, LEADER_E164, f"XN {incident.id} {leader_code}", MAX_WRONG_CODES)
    assert _read_inbox(app) == ["too_many_wrong_codes"]
    assert _incident(app).state == "reported"
    assert _entries(app, "sms.reply")[-1]["outcome"] == "too_many_wrong_codes"
    # The guesses from numbers of no account were not answered (no SMS paid for, no relay).
    from service.notify.models import OutboxMessage

    with app.app_context():
        s = new_session()
        answered = s.scalars(select(OutboxMessage.address).where(
            OutboxMessage.kind == "sms_answer")).all()
        s.close()
    assert answered == [LEADER_E164]


@pytest.mark.sms_settings(secret_key=None)
def test_reply_code_hashes_are_keyed_with_the_installations_secret(app, client, runner, people,
                                                                   gammu):
    """Without a configured secret_key, the key the service keeps under keys/, never a constant."""
    import hashlib
    import hmac

    from service.notify.models import SmsCode

    settings = app.config["SETTINGS"]
    assert settings.secret_key is None
    kept = (settings.keys_dir / "secret_key").read_text().strip()
    _ingest_usb_copy(client, runner)
    incident = _incident(app)
    _dispatch(app)
    gammu.wait_for(lambda: len(gammu.sent_files()) == 2, what="two SMS sent")
    code = _code_in(_sent_text(_sent_to(gammu, LEADER_E164)[0]), incident.id)
    with app.app_context():
        s = new_session()
        stored = {r.code_hash for r in s.scalars(select(SmsCode))}
        s.close()

    def keyed(key: str) -> str:
        return hmac.new(key.encode(), b"canhgac-sms-code:" + code.encode(), hashlib.sha256).hexdigest()

    # A database copy alone (a backup without keys/) cannot be searched for the codes.
    assert keyed("canhgac") not in stored
    assert keyed(kept) in stored
    _drop_in_file(gammu, LEADER_E164, f"XN {incident.id} {code}", 1)
    assert _read_inbox(app) == ["acknowledged"]


def test_a_damaged_inbox_file_does_not_block_the_replies_after_it(app, client, runner, people,
                                                                  gammu):
    _ingest_usb_copy(client, runner)
    incident = _incident(app)
    _dispatch(app)
    gammu.wait_for(lambda: len(gammu.sent_files()) == 2, what="two SMS sent")
    code = _code_in(_sent_text(_sent_to(gammu, LEADER_E164)[0]), incident.id)
    # UTF-16 with a byte-order mark and an odd byte at the end (a file cut short).
    (gammu.inbox / f"IN20261207_050000_00_{STRANGER_E164}_00.txt").write_bytes(
        b"\xff\xfe" + "XN 1 AAAAA".encode("utf-16-le") + b"\x00\xd8\x41")
    _drop_in_file(gammu, LEADER_E164, f"XN {incident.id} {code}", 1)
    assert _read_inbox(app) == ["not_understood", "acknowledged"]
