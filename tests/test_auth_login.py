"""Login, lockout, CSRF, logout and session cookie flags."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from service.audit.models import AuditEntry
from tests.conftest import PASSWORD, csrf_token_from


def test_each_role_can_log_in(client, make_user, login):
    for role in ("official", "police", "leader", "admin"):
        make_user(f"x-{role}", role)
        c = client.application.test_client()
        response = login(f"x-{role}", c=c)
        assert response.status_code == 302
        assert c.get("/").status_code in (200, 302)


def test_wrong_password_is_refused_and_audited(app, client, make_user, login):
    from service.audit.models import AuditEntry
    from service.core.db import new_session

    make_user("an", "official")
    response = login("an", "wrong-password-1")
    assert response.status_code == 401
    with app.app_context():
        s = new_session()
        kinds = [e.kind for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
        bodies = [e.body for e in s.scalars(select(AuditEntry))]
        s.close()
    assert "auth.login_failed" in kinds
    assert not any("wrong-password" in b for b in bodies)


def test_five_wrong_passwords_lock_the_account_from_that_address(app, client, make_user, login):
    make_user("binh", "leader")
    for _ in range(5):
        assert login("binh", "not-the-password").status_code == 401
    locked = login("binh", PASSWORD)
    assert locked.status_code == 401
    assert "tạm khóa" in locked.text
    from datetime import UTC, datetime, timedelta

    from service.auth.models import LoginThrottle
    from service.core.db import new_session

    with app.app_context():
        s = new_session()
        row = s.scalar(select(LoginThrottle).where(LoginThrottle.username == "binh"))
        assert row.remote_addr == "127.0.0.1"
        assert row.locked_until_at > datetime.now(UTC) + timedelta(minutes=10)
        row.locked_until_at = datetime.now(UTC) - timedelta(seconds=1)  # the lockout runs out
        s.commit()
        s.close()
    assert login("binh", PASSWORD).status_code == 302


def test_a_lockout_from_one_address_does_not_lock_out_another(app, make_user):
    """A LAN guesser locks out their own machine, not the chairman at theirs."""
    from service.auth.operations import authenticate
    from service.core.db import new_session

    make_user("chu_tich", "leader")
    with app.app_context():
        s = new_session()
        reasons = [authenticate(s, "chu_tich", "doan-bua", remote_addr="10.0.0.66").reason
                   for _ in range(6)]
        assert reasons == ["bad_credentials"] * 5 + ["locked"]
        assert authenticate(s, "chu_tich", PASSWORD, remote_addr="10.0.0.66").reason == "locked"
        assert authenticate(s, "chu_tich", PASSWORD, remote_addr="10.0.0.10").user is not None
        s.commit()
        kinds = [json.loads(e.body)["body"] for e in s.scalars(
            select(AuditEntry).where(AuditEntry.kind == "user.locked"))]
        s.close()
    assert kinds == [{"user": "chu_tich", "until": kinds[0]["until"], "scope": "source",
                      "remote_addr": "10.0.0.66"}]


def test_many_addresses_lock_the_account_everywhere_until_a_reset(app, make_user):
    from service.auth.models import User
    from service.auth.operations import ACCOUNT_LOCK_FACTOR, authenticate, change_password
    from service.core.db import new_session

    make_user("cong_an_1", "police")
    with app.app_context():
        s = new_session()
        for index in range(5 * ACCOUNT_LOCK_FACTOR):  # five guesses from each of four addresses
            assert authenticate(s, "cong_an_1", "doan", remote_addr=f"10.0.1.{index % 4}").user is None
        assert authenticate(s, "cong_an_1", PASSWORD, remote_addr="10.0.0.10").reason == "locked"
        user = s.scalar(select(User).where(User.username == "cong_an_1"))
        change_password(s, user, "mat-khau-moi-2026-x", by="quan_tri")  # a reset unlocks
        assert authenticate(s, "cong_an_1", "mat-khau-moi-2026-x", remote_addr="10.0.1.0").user
        s.commit()
        s.close()


def test_unknown_names_leave_no_throttle_rows(app):
    from service.auth.models import LoginThrottle
    from service.auth.operations import authenticate
    from service.core.db import new_session

    with app.app_context():
        s = new_session()
        for index in range(20):
            assert authenticate(s, f"khong-co-{index}", "x", remote_addr="10.0.0.1").reason == (
                "bad_credentials")
        s.commit()
        assert s.scalar(select(func.count()).select_from(LoginThrottle)) == 0
        s.close()


def test_post_without_csrf_token_gets_400(client, make_user):
    make_user("chi", "police")
    response = client.post("/login", data={"username": "chi", "password": PASSWORD})
    assert response.status_code == 400


def test_logout_needs_csrf_and_ends_session(client, make_user, login):
    make_user("dung", "police")
    login("dung")
    assert client.post("/logout").status_code == 400
    token = csrf_token_from(client, "/audit/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/audit/").status_code == 302


def test_session_cookie_flags(client, make_user, login):
    make_user("em", "official")
    response = login("em")
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_open_redirect_is_refused(client, make_user):
    make_user("gia", "official")
    token = csrf_token_from(client)
    response = client.post("/login?next=//evil.example/x",
                           data={"username": "gia", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    assert "evil.example" not in response.headers["Location"]


def test_security_headers(client):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_user_changes_their_own_password(app, client, make_user, login):
    from service.auth.models import User
    from service.core.db import new_session

    make_user("lan.nt", "official", unit="vh_xh")
    login("lan.nt")
    page = client.get("/account/password")
    assert page.status_code == 200 and 'autocomplete="new-password"' in page.text
    token = csrf_token_from(client, "/account/password")
    new = "mat-khau-cua-lan-2026"
    # the current password is asked again; the new one twice
    wrong = client.post("/account/password", data={"csrf_token": token, "current": "sai-roi-sai-roi",
                                                   "password": new, "confirm": new})
    assert wrong.status_code == 400 and "Mật khẩu hiện tại không đúng" in wrong.text
    mismatch = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                      "password": new, "confirm": new + "x"})
    assert mismatch.status_code == 400 and "không khớp" in mismatch.text
    short = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                   "password": "ngan", "confirm": "ngan"})
    assert short.status_code == 400
    done = client.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                  "password": new, "confirm": new})
    assert done.status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token_from(client, "/")})
    assert login("lan.nt", PASSWORD).status_code == 401
    assert login("lan.nt", new).status_code == 302
    with app.app_context():
        s = new_session()
        entries = [json.loads(e.body)["body"] for e in s.scalars(
            select(AuditEntry).where(AuditEntry.kind == "user.password_changed"))]
        user = s.scalar(select(User).where(User.username == "lan.nt"))
        s.close()
    assert entries == [{"by": "lan.nt", "user": "lan.nt"}]
    assert new not in user.password_hash


def test_concurrent_first_failures_from_one_address_are_all_counted(app, make_user, monkeypatch):
    """Racing first failures (PostgreSQL: separate transactions) neither error nor go missing."""
    import threading

    from service.auth import operations
    from service.auth.models import LoginThrottle
    from service.auth.operations import authenticate
    from service.core.db import new_session

    make_user("van_thu", "official")
    # argon2's variable cost would spread the attempts out; without it they really collide
    monkeypatch.setattr(operations, "verify_password", lambda stored, given: False)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def guess() -> None:
        with app.app_context():
            s = new_session()
            try:
                barrier.wait()
                authenticate(s, "van_thu", "doan-sai", remote_addr="10.0.0.7")
                s.commit()
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
            finally:
                s.close()

    threads = [threading.Thread(target=guess) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        s = new_session()
        rows = list(s.scalars(select(LoginThrottle)))
        failed = s.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.kind == "auth.login_failed"))
        s.close()
    assert len(rows) == 1 and rows[0].failures == 4 and failed == 4


def _move_session(app, username: str, **ago) -> None:
    """Move the server-side session times of a user back: last_seen / created seconds ago."""
    from datetime import timedelta

    from service.auth.models import User, UserSession
    from service.core.db import new_session, utcnow

    with app.app_context():
        s = new_session()
        user = s.scalar(select(User).where(User.username == username))
        for row in s.scalars(select(UserSession).where(UserSession.user_id == user.id)):
            if "seen" in ago:
                row.last_seen_at = utcnow() - timedelta(seconds=ago["seen"])
            if "created" in ago:
                row.created_at = utcnow() - timedelta(seconds=ago["created"])
        s.commit()
        s.close()


def _session_rows(app, username: str) -> list:
    from service.auth.models import User, UserSession
    from service.core.db import new_session

    with app.app_context():
        s = new_session()
        user = s.scalar(select(User).where(User.username == username))
        rows = s.scalars(select(UserSession).where(UserSession.user_id == user.id)
                         .order_by(UserSession.id)).all()
        s.close()
    return rows


def test_an_idle_session_is_signed_out_and_a_used_one_is_not(app, client, make_user, login):
    from service.core.db import utcnow

    make_user("pho_ca", "police")
    assert login("pho_ca").status_code == 302
    assert client.get("/dashboard").status_code == 200
    _move_session(app, "pho_ca", seen=29 * 60)  # used 29 minutes ago: still fine, and refreshed
    assert client.get("/dashboard").status_code == 200
    (row,) = _session_rows(app, "pho_ca")
    assert (utcnow() - row.last_seen_at).total_seconds() < 5
    _move_session(app, "pho_ca", seen=31 * 60)  # left on an unattended PC
    gone = client.get("/audit/?actor=x")
    assert gone.status_code == 302
    assert gone.headers["Location"].startswith("/login?next=/audit/")
    page = client.get(gone.headers["Location"])
    assert "Phiên làm việc đã hết hạn" in page.text
    assert client.get("/dashboard").status_code == 302  # really signed out
    (row,) = _session_rows(app, "pho_ca")
    assert row.end_reason == "idle"


def test_a_session_ends_after_its_maximum_life_even_in_use(app, client, make_user, login):
    make_user("chu_tich2", "leader")
    login("chu_tich2")
    _move_session(app, "chu_tich2", created=13 * 3600, seen=0)
    assert client.get("/dashboard").status_code == 302
    with client.session_transaction() as s:
        assert "_user_id" not in s and "sid" not in s
    (row,) = _session_rows(app, "chu_tich2")
    assert row.end_reason == "expired"


def test_admin_sees_and_lifts_lockouts_without_changing_the_password(app, client, make_user, login):
    from service.auth.models import User
    from service.auth.operations import ACCOUNT_LOCK_FACTOR, authenticate
    from service.core.db import new_session

    make_user("chu_tich3", "leader")
    make_user("quan_tri3", "admin")
    with app.app_context():
        s = new_session()
        for index in range(5 * ACCOUNT_LOCK_FACTOR):
            authenticate(s, "chu_tich3", "doan", remote_addr=f"10.9.0.{index % 4}")
        s.commit()
        user_id = s.scalar(select(User).where(User.username == "chu_tich3")).id
        s.close()
    login("quan_tri3")
    page = client.get(f"/admin/users/{user_id}").text
    assert "<code>10.9.0.0</code>" in page and "<code>10.9.0.3</code>" in page
    assert f'action="/admin/users/{user_id}/unlock"' in page
    assert client.post(f"/admin/users/{user_id}/unlock").status_code == 400  # no CSRF token
    token = csrf_token_from(client, f"/admin/users/{user_id}")
    assert client.post(f"/admin/users/{user_id}/unlock", data={"csrf_token": token}).status_code == 302
    assert "/unlock" not in client.get(f"/admin/users/{user_id}").text
    with app.app_context():
        s = new_session()
        assert authenticate(s, "chu_tich3", PASSWORD, remote_addr="10.9.0.0").user is not None
        entry = json.loads(s.scalars(select(AuditEntry.body).where(
            AuditEntry.kind == "user.unlocked")).one())["body"]
        s.commit()
        s.close()
    assert entry["account_wide"] is True and sorted(entry["sources"]) == [f"10.9.0.{i}" for i in range(4)]


def test_a_changed_password_ends_every_other_session(app, client, make_user, login):
    make_user("ke_toan", "official")
    other = app.test_client()
    assert login("ke_toan").status_code == 302
    assert login("ke_toan", c=other).status_code == 302
    assert other.get("/account/password").status_code == 200
    token = csrf_token_from(client, "/account/password")
    new = "mat-khau-moi-cua-ke-toan"
    assert client.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                  "password": new, "confirm": new}).status_code == 302
    assert client.get("/account/password").status_code == 200  # the session that changed it goes on
    kept, ended = _session_rows(app, "ke_toan")
    assert kept.ended_at is None and kept.created_at <= kept.last_seen_at  # its sign-in time is kept
    assert ended.end_reason == "password_changed"
    assert other.get("/account/password").status_code == 302  # the other browser is signed out
    # an admin reset ends the remaining session too
    from service.auth import operations
    from service.auth.models import User
    from service.core.db import new_session

    with app.app_context():
        s = new_session()
        user = s.scalar(select(User).where(User.username == "ke_toan"))
        operations.change_password(s, user, "dat-lai-boi-quan-tri", by="quan_tri")
        s.commit()
        s.close()
    assert client.get("/account/password").status_code == 302


def test_guessing_the_current_password_locks_and_signs_out(app, client, make_user, login):
    make_user("thu_quy", "official")
    login("thu_quy")
    token = csrf_token_from(client, "/account/password")
    answers = [client.post("/account/password", data={
        "csrf_token": token, "current": f"doan-{n}-sai-roi", "password": "mat-khau-moi-2026-a",
        "confirm": "mat-khau-moi-2026-a"}) for n in range(5)]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 302]
    assert answers[-1].headers["Location"] == "/login"
    assert client.get("/account/password").status_code == 302  # signed out
    assert login("thu_quy").status_code == 401  # and locked from this address
    with app.app_context():
        from service.core.db import new_session

        s = new_session()
        reasons = [json.loads(b)["body"]["reason"] for b in s.scalars(
            select(AuditEntry.body).where(AuditEntry.kind == "auth.password_check_failed")
            .order_by(AuditEntry.seq))]
        s.close()
    assert reasons == ["bad_credentials"] * 4 + ["locked"]


def test_ipv6_addresses_are_throttled_by_their_64_and_stale_rows_are_pruned(app, make_user):
    from datetime import timedelta

    from service.auth.models import LoginThrottle
    from service.auth.operations import authenticate, prune_login_throttle, source_key
    from service.core.db import new_session, utcnow

    assert source_key("2001:db8:1:2::5") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("::ffff:10.0.0.7") == "10.0.0.7" and source_key("10.0.0.7") == "10.0.0.7"
    assert source_key(None) == "-" and source_key("khong-phai-dia-chi") == "khong-phai-dia-chi"
    make_user("nv6", "official")
    with app.app_context():
        s = new_session()
        reasons = [authenticate(s, "nv6", "sai", remote_addr=f"2001:db8:1:2::{n:x}").reason
                   for n in range(1, 7)]  # a new address each time, same /64
        assert reasons == ["bad_credentials"] * 5 + ["locked"]
        s.commit()
        assert prune_login_throttle(s, utcnow() - timedelta(days=1)) == 0  # locked: kept
        row = s.scalar(select(LoginThrottle))
        row.locked_until_at = utcnow() - timedelta(days=2)
        row.last_failure_at = utcnow() - timedelta(days=2)
        s.commit()
        assert prune_login_throttle(s, utcnow() - timedelta(days=1)) == 1
        s.commit()
        s.close()


def test_the_password_check_counts_failures_committed_by_other_requests(app, make_user):
    """The request's own copy of the user may be stale: the check re-reads it under lock."""
    from service.auth.models import User
    from service.auth.operations import authenticate, check_current_password
    from service.core.db import new_session

    make_user("tai_chinh", "official")
    with app.app_context():
        mine, other = new_session(), new_session()
        stale = mine.scalar(select(User).where(User.username == "tai_chinh"))  # like current_user
        mine.commit()  # SQLite: no read transaction left open across the other writer
        assert authenticate(other, "tai_chinh", "sai-1", remote_addr="10.2.0.1").reason == "bad_credentials"
        other.commit()
        assert check_current_password(mine, stale, "sai-2", remote_addr="10.2.0.2") == "bad_credentials"
        mine.commit()
        fresh = other.scalar(select(User).where(User.username == "tai_chinh")
                             .execution_options(populate_existing=True))
        assert fresh.failed_logins == 2
        other.commit()
        mine.close()
        other.close()


def test_an_admin_cannot_reset_their_own_password_from_the_admin_page(app, client, make_user, login):
    from service.auth.models import User
    from service.core.db import new_session

    make_user("quan_tri4", "admin")
    login("quan_tri4")
    with app.app_context():
        s = new_session()
        me = s.scalar(select(User).where(User.username == "quan_tri4"))
        before, my_id = me.password_hash, me.id
        s.close()
    token = csrf_token_from(client, f"/admin/users/{my_id}")
    answer = client.post(f"/admin/users/{my_id}/password",
                         data={"csrf_token": token, "password": "tu-dat-lai-khong-hoi"})
    assert answer.status_code == 400 and "/account/password" not in answer.headers.get("Location", "")
    with app.app_context():
        s = new_session()
        assert s.scalar(select(User.password_hash).where(User.id == my_id)) == before
        s.close()
