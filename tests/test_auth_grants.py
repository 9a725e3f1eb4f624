"""Two people for power: police, leader and admin are requested on the web and approved by another."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select

from service.audit.models import AuditEntry
from service.auth import grants
from service.auth.models import RoleGrant, User, UserSession
from service.core.db import new_session, utcnow
from service.notify.models import OutboxMessage
from service.notify.security import KIND
from tests.conftest import PASSWORD, csrf_token_from
from tests.test_auth_sessions import _browser_login, _csrf
from tests.test_reliability_support import LiveServer, cli_env, init_data_dir, run_cli

WATCHERS = ["chu_tich", "cong_an_1"]


@pytest.fixture
def people(make_user):
    """Two admins, a leader, a police officer and an official."""
    make_user("quan_tri", "admin")
    make_user("quan_tri_2", "admin")
    make_user("chu_tich", "leader", unit="lanh_dao")
    make_user("cong_an_1", "police", unit="cong_an")
    make_user("can_bo", "official", unit="vh_xh")


def _read(app, query):
    with app.app_context():
        s = new_session()
        try:
            rows = list(s.scalars(query))
            s.expunge_all()
            return rows
        finally:
            s.close()


def _roles(app, name: str) -> list[str]:
    (user,) = _read(app, select(User).where(User.username == name))
    return sorted(user.roles)


def _user_id(app, name: str) -> int:
    return _read(app, select(User.id).where(User.username == name))[0]


def _grants(app) -> list[RoleGrant]:
    return _read(app, select(RoleGrant).order_by(RoleGrant.id))


def _entries(app, kind: str) -> list[dict]:
    return [json.loads(b)["body"] for b in _read(
        app, select(AuditEntry.body).where(AuditEntry.kind == kind).order_by(AuditEntry.seq))]


def _notices(app) -> list[OutboxMessage]:
    return _read(app, select(OutboxMessage).where(OutboxMessage.kind == KIND).order_by(OutboxMessage.id))


def _subjects(app) -> list[str]:
    """One subject per announcement (every leader and police officer gets each one)."""
    subjects = []
    for row in _notices(app):
        if row.subject not in subjects:
            subjects.append(row.subject)
    return [s.removeprefix("[Canh Gác] Thay đổi quyền: ") for s in subjects]


def _signed_in(app, login, name: str):
    browser = app.test_client()
    assert login(name, c=browser).status_code == 302
    return browser


def _set_roles(app, browser, name: str, roles: list[str]):
    page = f"/admin/users/{_user_id(app, name)}"
    return browser.post(f"{page}/roles", data={"csrf_token": csrf_token_from(browser, page),
                                               "roles": roles})


def _act(browser, grant_id: int, action: str):
    token = csrf_token_from(browser, "/account/sessions")
    return browser.post(f"/grants/{grant_id}/{action}", data={"csrf_token": token})


def _ask_leader_for_can_bo(app, login):
    admin = _signed_in(app, login, "quan_tri")
    assert _set_roles(app, admin, "can_bo", ["official", "leader"]).status_code == 302
    (grant,) = _grants(app)
    return admin, grant


def test_an_admin_asking_for_leader_gives_nothing_yet(app, login, people):
    target = _signed_in(app, login, "can_bo")
    admin, grant = _ask_leader_for_can_bo(app, login)
    assert _roles(app, "can_bo") == ["official"]
    assert (grant.roles, grant.drop_roles, grant.state) == (["leader"], [], "pending")
    assert grant.expires_at - grant.requested_at == timedelta(days=7)
    assert target.get("/dashboard").status_code == 403  # still no leader's page
    assert _entries(app, "user.roles_changed") == []
    (asked,) = _entries(app, "auth.grant_requested")
    assert asked["by"] == "quan_tri" and asked["user"] == "can_bo" and asked["roles"] == ["leader"]
    assert _subjects(app) == ["Đề nghị cấp vai trò lãnh đạo cho tài khoản can_bo"]
    assert sorted(r.recipient_username for r in _notices(app)) == WATCHERS
    # Shown on the admin's pages and on the leader's and police dashboard.
    assert "Đề nghị số" in admin.get(f"/admin/users/{_user_id(app, 'can_bo')}").text
    for name in WATCHERS:
        board = _signed_in(app, login, name).get("/dashboard").text
        assert f"Số {grant.id}: can_bo, do quan_tri đề nghị" in board


def test_the_requester_cannot_approve_or_refuse_their_own_request(app, login, people):
    admin, grant = _ask_leader_for_can_bo(app, login)
    for action in ("approve", "refuse"):
        answer = _act(admin, grant.id, action)
        assert answer.status_code == 400
    assert "Người đề nghị không thể tự phê duyệt" in _act(admin, grant.id, "approve").text
    assert _roles(app, "can_bo") == ["official"]
    assert _grants(app)[0].state == "pending"
    assert _entries(app, "auth.grant_approved") == [] and _entries(app, "auth.grant_refused") == []


def test_nobody_approves_a_role_for_themselves(app, login, people):
    admin = _signed_in(app, login, "quan_tri")
    assert _set_roles(app, admin, "quan_tri_2", ["admin", "leader"]).status_code == 302
    (grant,) = _grants(app)
    receiver = _signed_in(app, login, "quan_tri_2")
    answer = _act(receiver, grant.id, "approve")
    assert answer.status_code == 400 and "cho chính mình" in answer.text
    assert _act(receiver, grant.id, "refuse").status_code == 400
    assert _roles(app, "quan_tri_2") == ["admin"]
    # Nor through the operation itself (not only the page).
    with app.app_context():
        s = new_session()
        me = s.scalar(select(User).where(User.username == "quan_tri_2"))
        with pytest.raises(grants.AccountError):
            grants.approve(s, grant.id, by=me)
        s.rollback()
        s.close()
    # An admin asking for themselves waits for someone else just the same.
    mine = _set_roles(app, admin, "quan_tri", ["admin", "police"])
    assert mine.status_code == 302 and _roles(app, "quan_tri") == ["admin"]
    assert _act(admin, _grants(app)[-1].id, "approve").status_code == 400


def test_a_leader_approves_and_the_role_applies_through_set_roles(app, login, people):
    target = _signed_in(app, login, "can_bo")
    _, grant = _ask_leader_for_can_bo(app, login)
    leader = _signed_in(app, login, "chu_tich")
    answer = _act(leader, grant.id, "approve")
    assert answer.status_code == 302
    assert _roles(app, "can_bo") == ["leader", "official"]
    # Sessions of the receiver ended, exactly as set_roles does for any role change.
    gone = target.get("/incidents/mine")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    ended = _read(app, select(UserSession.end_reason).where(
        UserSession.user_id == _user_id(app, "can_bo")))
    assert ended == ["roles_changed"]
    (changed,) = _entries(app, "user.roles_changed")
    assert changed == {"by": "chu_tich", "user": "can_bo", "before": ["official"],
                       "after": ["leader", "official"]}
    (approved,) = _entries(app, "auth.grant_approved")
    assert approved["by"] == "chu_tich" and approved["requested_by"] == "quan_tri"
    assert _subjects(app) == ["Đề nghị cấp vai trò lãnh đạo cho tài khoản can_bo",
                              "Vai trò của tài khoản can_bo đã thay đổi"]
    last = [r for r in _notices(app) if "đã thay đổi" in r.subject]
    assert sorted(r.recipient_username for r in last) == ["can_bo", *WATCHERS]  # a leader now
    assert all(f"Theo đề nghị số {grant.id} của quan_tri, được chu_tich phê duyệt." in r.body
               for r in last)
    (done,) = _grants(app)
    assert done.state == "approved" and done.decided_at is not None
    # Once only.
    again = _act(leader, grant.id, "approve")
    assert again.status_code == 400 and "đã được xử lý" in again.text
    assert len(_entries(app, "auth.grant_approved")) == 1


def test_a_second_admin_may_approve_instead(app, login, people):
    _, grant = _ask_leader_for_can_bo(app, login)
    second = _signed_in(app, login, "quan_tri_2")
    assert _act(second, grant.id, "approve").status_code == 302
    assert _roles(app, "can_bo") == ["leader", "official"]
    assert _entries(app, "auth.grant_approved")[0]["by"] == "quan_tri_2"


def test_police_see_pending_grants_but_do_not_decide(app, login, people):
    _, grant = _ask_leader_for_can_bo(app, login)
    police = _signed_in(app, login, "cong_an_1")
    page = police.get("/grants/")
    assert page.status_code == 200 and f'data-grant-id="{grant.id}"' in page.text
    assert f'/grants/{grant.id}/approve' not in page.text
    assert _act(police, grant.id, "approve").status_code == 403
    assert _roles(app, "can_bo") == ["official"]
    official = _signed_in(app, login, "can_bo")
    assert official.get("/grants/").status_code == 403


def test_refusing_a_grant(app, login, people):
    _, grant = _ask_leader_for_can_bo(app, login)
    leader = _signed_in(app, login, "chu_tich")
    assert _act(leader, grant.id, "refuse").status_code == 302
    assert _roles(app, "can_bo") == ["official"]
    (refused,) = _entries(app, "auth.grant_refused")
    assert refused["by"] == "chu_tich" and refused["grant_id"] == grant.id
    assert _subjects(app)[-1] == "Đề nghị cấp vai trò lãnh đạo cho tài khoản can_bo đã bị từ chối"
    assert _grants(app)[0].state == "refused"
    assert _act(leader, grant.id, "approve").status_code == 400
    assert _roles(app, "can_bo") == ["official"]


def test_withdrawing_a_grant(app, login, people):
    admin, grant = _ask_leader_for_can_bo(app, login)
    other = _signed_in(app, login, "quan_tri_2")
    answer = _act(other, grant.id, "withdraw")
    assert answer.status_code == 400 and "Chỉ người đề nghị" in answer.text
    assert _act(admin, grant.id, "withdraw").status_code == 302
    (withdrawn,) = _entries(app, "auth.grant_withdrawn")
    assert withdrawn["by"] == "quan_tri"
    assert _subjects(app)[-1] == "Đề nghị cấp vai trò lãnh đạo cho tài khoản can_bo đã được rút lại"
    assert _act(_signed_in(app, login, "chu_tich"), grant.id, "approve").status_code == 400
    assert _roles(app, "can_bo") == ["official"]


def test_a_grant_expires_after_seven_days(app, login, people, monkeypatch):
    _, grant = _ask_leader_for_can_bo(app, login)
    leader = _signed_in(app, login, "chu_tich")
    clock = [utcnow() + timedelta(days=6, hours=23)]
    for module in ("service.auth.grants", "service.auth.grant_views", "service.web.views"):
        monkeypatch.setattr(f"{module}.utcnow", lambda: clock[0])
    assert f'data-grant-id="{grant.id}"' in leader.get("/grants/").text  # still waiting
    clock[0] = grant.requested_at + timedelta(days=7)
    page = leader.get("/grants/").text
    assert f'data-grant-id="{grant.id}"' not in page and "Hết hạn" in page
    answer = _act(leader, grant.id, "approve")
    assert answer.status_code == 400 and "đã hết hạn" in answer.text
    assert _roles(app, "can_bo") == ["official"]
    assert _entries(app, "auth.grant_approved") == []


def test_a_lapsed_grant_gets_its_own_trail_entry_and_notice(app, login, people):
    import service.auth.jobs  # noqa: F401  (registers the job, as the scheduler does)
    from service.core.jobs import run_job

    _, grant = _ask_leader_for_can_bo(app, login)
    assert run_job(app, "auth.grant_expiry", now=grant.requested_at + timedelta(days=6))
    assert _entries(app, "auth.grant_expired") == []
    assert run_job(app, "auth.grant_expiry", now=grant.requested_at + timedelta(days=7))
    (entry,) = _entries(app, "auth.grant_expired")
    assert entry["grant_id"] == grant.id and entry["roles"] == ["leader"]
    assert _grants(app)[0].state == grants.EXPIRED
    assert any("đã hết hạn" in s for s in _subjects(app))
    # Once closed, a later run finds nothing more to expire, and nobody can approve it.
    assert run_job(app, "auth.grant_expiry", now=grant.requested_at + timedelta(days=8))
    assert len(_entries(app, "auth.grant_expired")) == 1
    answer = _act(_signed_in(app, login, "chu_tich"), grant.id, "approve")
    assert answer.status_code == 400
    assert _roles(app, "can_bo") == ["official"]


def test_creating_an_account_with_a_privileged_role_makes_a_request(app, login, people):
    admin = _signed_in(app, login, "quan_tri")
    form = {"username": "pho_chu_tich", "full_name": "", "email": "pct@nhanly.example", "phone": "",
            "unit": "lanh_dao", "roles": ["leader"], "password": PASSWORD,
            "password_confirm": PASSWORD}
    answer = admin.post("/admin/users/new", data={
        **form, "csrf_token": csrf_token_from(admin, "/admin/users/new")})
    assert answer.status_code == 302
    assert _roles(app, "pho_chu_tich") == ["official"]  # a placeholder until approval
    (grant,) = _grants(app)
    assert (grant.roles, grant.drop_roles) == (["leader"], ["official"])
    assert "Đã tạo tài khoản pho_chu_tich có vai trò" not in " ".join(_subjects(app))
    assert _act(_signed_in(app, login, "chu_tich"), grant.id, "approve").status_code == 302
    assert _roles(app, "pho_chu_tich") == ["leader"]


def test_removing_roles_and_granting_official_stay_one_person(app, login, people):
    admin = _signed_in(app, login, "quan_tri")
    assert _set_roles(app, admin, "cong_an_1", ["official"]).status_code == 302
    assert _roles(app, "cong_an_1") == ["official"]
    assert _set_roles(app, admin, "chu_tich", ["leader", "official"]).status_code == 302
    assert _roles(app, "chu_tich") == ["leader", "official"]
    assert _grants(app) == []
    # Mixed: the removal applies now, the privileged part waits.
    assert _set_roles(app, admin, "chu_tich", ["official", "police"]).status_code == 302
    assert _roles(app, "chu_tich") == ["official"]
    assert [g.roles for g in _grants(app)] == [["police"]]


def test_the_cli_still_grants_directly_and_announces_it(app, runner, people):
    answer = runner.invoke(["user", "add", "cong_an_2", "--role", "police", "--unit", "cong_an",
                            "--email", "ca2@nhanly.example"], env={"CANHGAC_USER_PASSWORD": PASSWORD})
    assert answer.exit_code == 0, answer.output
    assert _roles(app, "cong_an_2") == ["police"]
    assert _grants(app) == []
    assert _subjects(app) == ["Đã tạo tài khoản cong_an_2 có vai trò công an"]
    assert _entries(app, "user.created")[-1]["by"] == "cli"


# ------------------------------------------------------------------ over real HTTP


def _db_rows(db_url: str, query) -> list:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(query))
    finally:
        engine.dispose()


def test_grants_over_http_with_the_real_server(tmp_path, db_url):
    data_dir = tmp_path / "data"
    env = cli_env(db_url, CANHGAC_SESSION_COOKIE_SECURE="false", CANHGAC_USER_PASSWORD=PASSWORD)
    init_data_dir(data_dir, env)
    for name, role, unit in (("quan_tri_2", "admin", None), ("chu_tich", "leader", "lanh_dao"),
                             ("cong_an", "police", "cong_an"), ("can_bo", "official", "vh_xh")):
        added = run_cli(["user", "add", "--data-dir", str(data_dir), name, "--role", role,
                         "--email", f"{name}@nhanly.example", *(["--unit", unit] if unit else [])],
                        env)
        assert added.returncode == 0, added.stderr
    # The CLI (bootstrap on the server) granted at once, and said so.
    assert _db_rows(db_url, select(User.roles).where(User.username == "chu_tich"))[0][0] == ["leader"]
    announced = {row[0] for row in _db_rows(db_url, select(OutboxMessage.subject).where(
        OutboxMessage.kind == KIND))}
    assert "[Canh Gác] Thay đổi quyền: Đã tạo tài khoản chu_tich có vai trò lãnh đạo" in announced
    server = LiveServer(data_dir, env, threads=4)
    server.start()
    base = f"http://127.0.0.1:{server.port}"

    def post(browser, path: str, page: str, **data):
        return browser.post(f"{base}{path}", data={"csrf_token": _csrf(browser, f"{base}{page}"), **data},
                            allow_redirects=False, timeout=10)

    def grant_ids() -> list[int]:
        return [row[0] for row in _db_rows(db_url, select(RoleGrant.id).order_by(RoleGrant.id))]

    try:
        admin = _browser_login(base, "quan_tri_2")
        users = admin.get(f"{base}/admin/users", timeout=10).text
        ids = {name: int(re.search(rf'href="/admin/users/(\d+)">{name}<', users).group(1))
               for name in ("can_bo", "admin")}
        target = _browser_login(base, "can_bo")
        # An admin asks for leader: nothing changes yet.
        page = f"/admin/users/{ids['can_bo']}"
        assert post(admin, f"{page}/roles", page, roles=["official", "leader"]).status_code == 302
        (first,) = grant_ids()
        assert target.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 403
        # The requester cannot approve.
        assert post(admin, f"/grants/{first}/approve", "/grants/").status_code == 400
        # The receiver cannot approve a role for themselves (here: admin asks leader for admin).
        page = f"/admin/users/{ids['admin']}"
        assert post(admin, f"{page}/roles", page, roles=["admin", "leader"]).status_code == 302
        second = grant_ids()[-1]
        receiver = _browser_login(base, "admin")
        assert post(receiver, f"/grants/{second}/approve", "/grants/").status_code == 400
        # Leader and police see both on their dashboard.
        leader, police = _browser_login(base, "chu_tich"), _browser_login(base, "cong_an")
        for browser in (leader, police):
            board = browser.get(f"{base}/dashboard", timeout=10).text
            assert f"Số {first}: can_bo" in board and f"Số {second}: admin" in board
        assert post(police, f"/grants/{first}/approve", "/grants/").status_code == 403
        # A leader approves: the role applies and the receiver's session ends.
        assert post(leader, f"/grants/{first}/approve", "/grants/").status_code == 302
        ended = target.get(f"{base}/incidents/mine", allow_redirects=False, timeout=10)
        assert ended.status_code == 302 and "/login" in ended.headers["Location"]
        again = _browser_login(base, "can_bo")
        assert again.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 200
        # The leader refuses the other; the requester withdraws a third.
        assert post(leader, f"/grants/{second}/refuse", "/grants/").status_code == 302
        page = f"/admin/users/{ids['can_bo']}"
        assert post(admin, f"{page}/roles", page,
                    roles=["official", "leader", "police"]).status_code == 302
        third = grant_ids()[-1]
        assert post(admin, f"/grants/{third}/withdraw", "/grants/").status_code == 302
        assert post(leader, f"/grants/{third}/approve", "/grants/").status_code == 400
    finally:
        server.kill()
    roles = dict(_db_rows(db_url, select(User.username, User.roles)))
    assert sorted(roles["can_bo"]) == ["leader", "official"] and roles["admin"] == ["admin"]
    states = [row[0] for row in _db_rows(db_url, select(RoleGrant.state).order_by(RoleGrant.id))]
    assert states == ["approved", "refused", "withdrawn"]
    kinds = [row[0] for row in _db_rows(db_url, select(AuditEntry.kind).where(
        AuditEntry.kind.like("auth.grant_%")).order_by(AuditEntry.seq))]
    assert kinds == ["auth.grant_requested", "auth.grant_requested", "auth.grant_approved",
                     "auth.grant_refused", "auth.grant_requested", "auth.grant_withdrawn"]
    subjects = [row[0].removeprefix("[Canh Gác] Thay đổi quyền: ") for row in _db_rows(
        db_url, select(OutboxMessage.subject).where(
            OutboxMessage.kind == KIND, OutboxMessage.recipient_username == "cong_an")
        .order_by(OutboxMessage.id))]
    assert subjects[-6:] == ["Đề nghị cấp vai trò lãnh đạo cho tài khoản can_bo",
                             "Đề nghị cấp vai trò lãnh đạo cho tài khoản admin",
                             "Vai trò của tài khoản can_bo đã thay đổi",
                             "Đề nghị cấp vai trò lãnh đạo cho tài khoản admin đã bị từ chối",
                             "Đề nghị cấp vai trò công an cho tài khoản can_bo",
                             "Đề nghị cấp vai trò công an cho tài khoản can_bo đã được rút lại"]
