"""Server-side sessions: logout, password, role and account changes end them; sign out everywhere."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from service.audit.models import AuditEntry
from service.auth import operations, sessions
from service.auth.models import User, UserSession
from service.core.db import new_session, utcnow
from tests.conftest import PASSWORD, csrf_token_from
from tests.test_reliability_support import LiveServer, cli_env, init_data_dir, run_cli

COOKIE = "session"


def _saved(client) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def _replay(app, value: str):
    """A new browser holding a saved copy of the cookie."""
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def _user(s, username: str) -> User:
    return s.scalar(select(User).where(User.username == username))


def _rows(app, username: str) -> list[UserSession]:
    with app.app_context():
        s = new_session()
        try:
            return list(s.scalars(select(UserSession).where(
                UserSession.user_id == _user(s, username).id).order_by(UserSession.id)))
        finally:
            s.close()


def _entries(app, kind: str) -> list[dict]:
    with app.app_context():
        s = new_session()
        try:
            return [json.loads(b)["body"] for b in s.scalars(
                select(AuditEntry.body).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))]
        finally:
            s.close()


def _apply(app, username: str, operation) -> None:
    with app.app_context():
        s = new_session()
        operation(s, _user(s, username))
        s.commit()
        s.close()


def test_a_saved_cookie_opens_nothing_after_logout(app, client, make_user, login):
    make_user("cong_an_1", "police", unit="cong_an")
    assert login("cong_an_1").status_code == 302
    saved = _saved(client)
    # The copy works while the session is open (so its refusal below is the server's doing).
    assert _replay(app, saved).get("/audit/").status_code == 200
    token = csrf_token_from(client, "/audit/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    again = _replay(app, saved).get("/audit/")
    assert again.status_code == 302 and "/login" in again.headers["Location"]
    json_client = _replay(app, saved).get("/audit/", headers={"Accept": "application/json"})
    assert json_client.status_code == 401 and json_client.json["status"] == 401
    (row,) = _rows(app, "cong_an_1")
    assert row.end_reason == "logout" and row.ended_at is not None
    assert len(row.token_hash) == 64 and row.remote_addr == "127.0.0.1"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda s, u: operations.change_password(s, u, "mat-khau-dat-lai-2026", by="quan_tri"),
     "password_changed"),
    (lambda s, u: operations.set_roles(s, u, ["official"], by="quan_tri"), "roles_changed"),
    (lambda s, u: operations.disable_user(s, u, by="quan_tri"), "disabled"),
])
def test_account_changes_end_every_session_at_once(app, make_user, login, change, reason):
    make_user("chi_huy", "police", unit="cong_an")
    browsers = [app.test_client(), app.test_client()]
    for browser in browsers:
        assert login("chi_huy", c=browser).status_code == 302
        assert browser.get("/audit/").status_code == 200
    saved = _saved(browsers[0])
    _apply(app, "chi_huy", change)
    for browser in browsers:
        assert browser.get("/incidents/mine").status_code == 302
    assert _replay(app, saved).get("/incidents/mine").status_code == 302
    assert [row.end_reason for row in _rows(app, "chi_huy")] == [reason, reason]
    if reason == "disabled":  # enabling the account again does not bring old sessions back
        _apply(app, "chi_huy", lambda s, u: operations.enable_user(s, u, by="quan_tri"))
        assert _replay(app, saved).get("/incidents/mine").status_code == 302


def test_setting_the_same_roles_ends_nothing(app, client, make_user, login):
    make_user("van_thu", "official", unit="van_phong")
    assert login("van_thu").status_code == 302
    _apply(app, "van_thu", lambda s, u: operations.set_roles(s, u, ["official"], by="quan_tri"))
    assert client.get("/incidents/mine").status_code == 200


def test_a_user_signs_out_everywhere(app, client, make_user, login):
    make_user("lanh_dao", "leader", unit="lanh_dao")
    other = app.test_client()
    assert login("lanh_dao").status_code == 302
    assert login("lanh_dao", c=other).status_code == 302
    saved = _saved(client)
    page = client.get("/account/sessions")
    assert page.status_code == 200
    assert page.text.count("<tr><td>") == 2 and "Phiên này" in page.text
    assert client.post("/account/sessions").status_code == 400  # no CSRF token: nothing ends
    assert other.get("/dashboard").status_code == 200
    token = csrf_token_from(client, "/account/sessions")
    done = client.post("/account/sessions", data={"csrf_token": token})
    assert done.status_code == 302 and done.headers["Location"] == "/login"
    for browser in (client, other, _replay(app, saved)):
        assert browser.get("/dashboard").status_code == 302
    assert {row.end_reason for row in _rows(app, "lanh_dao")} == {"signed_out_everywhere"}
    assert _entries(app, "auth.sessions_ended") == [
        {"by": "lanh_dao", "user": "lanh_dao", "reason": "signed_out_everywhere", "sessions": 2}]


def test_an_admin_signs_a_user_out_everywhere(app, client, make_user, login):
    make_user("quan_tri", "admin")
    make_user("can_bo", "official", unit="van_phong")
    victim = app.test_client()
    assert login("can_bo", c=victim).status_code == 302
    assert login("quan_tri").status_code == 302
    with app.app_context():
        s = new_session()
        user_id = _user(s, "can_bo").id
        s.close()
    page = client.get(f"/admin/users/{user_id}").text
    assert f'action="/admin/users/{user_id}/sessions/end"' in page
    assert client.post(f"/admin/users/{user_id}/sessions/end").status_code == 400  # no CSRF
    assert victim.get("/incidents/mine").status_code == 200
    token = csrf_token_from(client, f"/admin/users/{user_id}")
    assert client.post(f"/admin/users/{user_id}/sessions/end",
                       data={"csrf_token": token}).status_code == 302
    assert victim.get("/incidents/mine").status_code == 302
    assert client.get("/admin/users").status_code == 200  # the admin's own session goes on
    assert f'action="/admin/users/{user_id}/sessions/end"' not in client.get(
        f"/admin/users/{user_id}").text  # nothing left to end
    assert _entries(app, "auth.sessions_ended") == [
        {"by": "quan_tri", "user": "can_bo", "reason": "ended_by_admin", "sessions": 1}]


def test_an_admin_changing_their_own_roles_keeps_this_session_only(app, client, make_user, login):
    make_user("quan_tri_2", "admin", "leader")
    make_user("quan_tri_3", "admin")
    other = app.test_client()
    assert login("quan_tri_2").status_code == 302
    assert login("quan_tri_2", c=other).status_code == 302
    with app.app_context():
        s = new_session()
        user_id = _user(s, "quan_tri_2").id
        s.close()
    token = csrf_token_from(client, f"/admin/users/{user_id}")
    answer = client.post(f"/admin/users/{user_id}/roles",
                         data={"csrf_token": token, "roles": ["admin"]})  # removing: one person
    assert answer.status_code == 302
    assert client.get("/dashboard").status_code == 200
    assert other.get("/dashboard").status_code == 302
    assert [row.end_reason for row in _rows(app, "quan_tri_2")] == [None, "roles_changed"]


def test_dead_sessions_are_pruned(app, make_user, login):
    make_user("thu_kho", "official", unit="van_phong")
    for _ in range(3):
        assert login("thu_kho", c=app.test_client()).status_code == 302
    with app.app_context():
        s = new_session()
        first, second, third = s.scalars(select(UserSession).order_by(UserSession.id)).all()
        sessions.end_session(first, sessions.LOGOUT, utcnow() - timedelta(days=3))
        second.created_at = utcnow() - timedelta(days=3)
        s.commit()
        assert sessions.prune_sessions(s, utcnow() - timedelta(days=2)) == 2
        s.commit()
        assert [row.id for row in s.scalars(select(UserSession))] == [third.id]
        s.close()


# ------------------------------------------------------------------ over real HTTP


def _browser_login(base: str, username: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    answer = browser.post(f"{base}/login", data={"username": username, "password": PASSWORD,
                                                 "csrf_token": token},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    return browser


def _with_cookie(value: str) -> requests.Session:
    browser = requests.Session()  # same User-Agent as the first: strong session protection agrees
    browser.cookies.set(COOKIE, value)
    return browser


def _csrf(browser: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', browser.get(url, timeout=10).text).group(1)


def test_sessions_over_http_with_the_real_server(tmp_path, db_url):
    data_dir = tmp_path / "data"
    env = cli_env(db_url, CANHGAC_SESSION_COOKIE_SECURE="false", CANHGAC_USER_PASSWORD=PASSWORD)
    init_data_dir(data_dir, env)
    for name, role, unit in (("cong_an", "police", "cong_an"), ("quan_tri_2", "admin", None)):
        added = run_cli(["user", "add", "--data-dir", str(data_dir), name, "--role", role,
                         "--email", f"{name}@nhanly.example", *(["--unit", unit] if unit else [])],
                        env)
        assert added.returncode == 0, added.stderr
    server = LiveServer(data_dir, env, threads=4)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        # Logout: a saved cookie opens nothing afterwards.
        police = _browser_login(base, "cong_an")
        saved = police.cookies.get(COOKIE)
        assert _with_cookie(saved).get(f"{base}/audit/", allow_redirects=False, timeout=10).status_code == 200
        police.post(f"{base}/logout", data={"csrf_token": _csrf(police, f"{base}/audit/")},
                    allow_redirects=False, timeout=10)
        replay = _with_cookie(saved).get(f"{base}/audit/", allow_redirects=False, timeout=10)
        assert replay.status_code == 302 and "/login" in replay.headers["Location"]
        as_json = _with_cookie(saved).get(f"{base}/audit/", headers={"Accept": "application/json"},
                                          timeout=10)
        assert as_json.status_code == 401 and as_json.json() == {"error": "Unauthorized",
                                                                 "status": 401}

        # Sign out everywhere, from one of two browsers.
        first, second = _browser_login(base, "cong_an"), _browser_login(base, "cong_an")
        assert second.get(f"{base}/audit/", allow_redirects=False, timeout=10).status_code == 200
        first.post(f"{base}/account/sessions", data={"csrf_token": _csrf(first, f"{base}/account/sessions")},
                   allow_redirects=False, timeout=10)
        for browser in (first, second):
            assert browser.get(f"{base}/audit/", allow_redirects=False, timeout=10).status_code == 302

        # An admin signs the police officer out everywhere.
        police = _browser_login(base, "cong_an")
        admin = _browser_login(base, "quan_tri_2")
        users = admin.get(f"{base}/admin/users", timeout=10).text
        user_id = re.search(r'href="/admin/users/(\d+)">cong_an<', users).group(1)
        page = f"{base}/admin/users/{user_id}"
        ended = admin.post(f"{page}/sessions/end", data={"csrf_token": _csrf(admin, page)},
                           allow_redirects=False, timeout=10)
        assert ended.status_code == 302
        assert police.get(f"{base}/audit/", allow_redirects=False, timeout=10).status_code == 302
        assert admin.get(f"{base}/admin/users", allow_redirects=False, timeout=10).status_code == 200
    finally:
        server.kill()


def test_signing_in_again_in_the_same_browser_ends_the_old_session(app, client, make_user, login):
    make_user("thu_ky", "official", unit="van_phong")
    make_user("thu_ky_2", "official", unit="van_phong")
    assert login("thu_ky").status_code == 302
    saved = _saved(client)
    assert login("thu_ky_2").status_code == 302
    assert _replay(app, saved).get("/incidents/mine").status_code == 302
    assert [row.end_reason for row in _rows(app, "thu_ky")] == ["replaced"]
    assert client.get("/incidents/mine").status_code == 200
