"""The police page that checks a kept checkpoint (pasted, or a saved mail) against today's trail;
the dashboard and mails show witness cosignatures."""

from __future__ import annotations

import json
from email.message import EmailMessage

from tests.conftest import csrf_token_from
from tests.trail_support import grow_and_sign, rewrite_entry


def _mail_with_checkpoint(app) -> bytes:
    """A real notification through the outbox, saved as a .eml like a mail client does."""
    from service.core.db import new_session
    from service.notify.models import OutboxMessage
    from service.notify.outbox import default_recipients, notify_users

    with app.app_context():
        s = new_session(app)
        notify_users(s, default_recipients(s), subject="Nhắc báo cáo", text="Thử.", kind="test")
        s.commit()
        body = s.query(OutboxMessage).order_by(OutboxMessage.id.desc()).first().body
        s.close()
    mail = EmailMessage()
    mail["From"] = "canhgac@nhanly.example"
    mail["To"] = "cong-an@nhanly.example"
    mail["Subject"] = "Nhắc báo cáo"
    mail["Message-ID"] = "<1@nhanly.example>"
    mail.set_content(body, cte="quoted-printable")
    return bytes(mail)


def _post(client, **data):
    token = csrf_token_from(client, "/audit/kept-checkpoint")
    return client.post("/audit/kept-checkpoint", data={"csrf_token": token, **data},
                       content_type="multipart/form-data")


def test_a_kept_checkpoint_is_checked_against_todays_trail(app, client, make_user, login, session):
    import io

    make_user("cong-an", "police")
    make_user("lanh-dao", "leader")
    _, _, note = grow_and_sign(app, 30, "test.kept")
    eml = _mail_with_checkpoint(app)
    grow_and_sign(app, 12, "test.kept")
    assert login("cong-an").status_code == 302

    pasted = _post(client, note=note)
    assert pasted.status_code == 200
    assert "HỢP LỆ: nhật ký hôm nay nối tiếp" in pasted.text
    uploaded = _post(client, mail=(io.BytesIO(eml), "thu.eml"))
    assert "HỢP LỆ: nhật ký hôm nay nối tiếp" in uploaded.text
    assert _post(client).status_code == 400
    forged = note.replace("\n30\n", "\n31\n") if "\n30\n" in note else note[:-5] + "AAAA\n"
    assert "KHÔNG HỢP LỆ" in _post(client, note=forged).text

    # Rewrite entry 5 and its nodes (a database-level change): the kept note no longer holds.
    from service.audit.models import AuditEntry

    rewrite_entry(app, 5, {"n": "khác"}, re_sign=False)
    grow_and_sign(app, 1, "test.kept")
    rewritten = _post(client, mail=(io.BytesIO(eml), "thu.eml"))
    assert "KHÔNG HỢP LỆ: nhật ký hôm nay không nối tiếp" in rewritten.text
    looks = [json.loads(r.body)["body"] for r in session.query(AuditEntry)
             .filter_by(kind="audit.viewed").all()]
    assert {(b["what"], b["is_extended"]) for b in looks} >= {("kept_checkpoint", True),
                                                               ("kept_checkpoint", False)}


def test_dashboard_and_mail_show_the_cosigned_checkpoint(app, client, make_user, login, session):
    from service.audit.cosign import cosign, generate_cosigner_key, parse_cosigner_signer
    from service.audit.models import Checkpoint, Cosignature, LogWitness
    from service.core.db import new_session, utcnow
    from service.notify.models import OutboxMessage
    from service.notify.outbox import default_recipients, notify_users

    make_user("cong-an", "police")
    _, _, note = grow_and_sign(app, 9, "test.kept")
    signer, verifier = generate_cosigner_key("tinh.example/witness")
    with app.app_context():
        s = new_session(app)
        cp = s.query(Checkpoint).order_by(Checkpoint.id.desc()).first()
        witness = LogWitness(name="tinh.example/witness", url="http://tinh.example", size=cp.size,
                             verifier_key=verifier, added_at=utcnow())
        s.add(witness)
        s.flush()
        line = cosign(note.split("\n\n")[0] + "\n", parse_cosigner_signer(signer))
        s.add(Cosignature(checkpoint_id=cp.id, witness_id=witness.id, line=line, cosigned_at=utcnow()))
        s.commit()
        notify_users(s, default_recipients(s), subject="Thử", text="Thử.", kind="test")
        s.commit()
        body = s.query(OutboxMessage).order_by(OutboxMessage.id.desc()).first().body
        s.close()
    assert line in body and note.split("\n\n")[0] in body
    login("cong-an")
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "tinh.example/witness" in page.text


def test_a_crafted_mail_of_near_checkpoints_is_answered_at_once(app, client, make_user, login):
    """Every line of it looks like the start of a checkpoint: the search stays linear."""
    import io
    import time

    make_user("cong-an", "police")
    grow_and_sign(app, 3, "test.kept")
    assert login("cong-an").status_code == 302
    crafted = ("Subject: checkpoint\n\n" + "a\n1\nA\n" * 25_000).encode()  # 150 KB: 30 s before
    started = time.monotonic()
    answer = _post(client, mail=(io.BytesIO(crafted), "thu.eml"))
    assert answer.status_code == 200
    assert "KHÔNG HỢP LỆ" in answer.text
    assert time.monotonic() - started < 5
