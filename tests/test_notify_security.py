"""Account, token and policy changes are announced to leadership and police at once."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from sqlalchemy import select

from service.audit.models import AuditEntry
from service.auth import operations
from service.auth.models import User
from service.core.db import get_session, new_session
from service.notify.dispatcher import dispatch_pending
from service.notify.models import OutboxMessage
from service.notify.security import KIND
from service.policy.loader import default_policy_dir, load_policy_files, read_policy_files
from tests.conftest import PASSWORD, csrf_token_from
from tests.test_notify_smtp import SmtpSink, free_port

WATCHERS = ["chu_tich", "cong_an_1"]


@pytest.fixture
def people(make_user):
    """A leader and a police officer (who must hear), an admin and an official (who must not)."""
    make_user("chu_tich", "leader")
    make_user("cong_an_1", "police", unit="cong_an")
    make_user("quan_tri", "admin")
    make_user("can_bo", "official", unit="vh_xh")


def notices(app) -> list[OutboxMessage]:
    """Return the security notices in the outbox, oldest first."""
    with app.app_context():
        session = new_session(app)
        try:
            rows = list(session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == KIND).order_by(OutboxMessage.id)))
            session.expunge_all()
            return rows
        finally:
            session.close()


def headlines(app) -> list[str]:
    """Return the subjects of the notices, one per change (every watcher gets the same one)."""
    rows = notices(app)
    for row in rows:
        assert row.recipient_username in WATCHERS
    assert len(rows) % len(WATCHERS) == 0
    return [row.subject for row in rows[:: len(WATCHERS)]]


def _user(session, name: str) -> User:
    return session.scalar(select(User).where(User.username == name))


def test_role_change_in_the_admin_ui_reaches_leader_and_police(app, client, login, people):
    login("quan_tri")
    with app.app_context():
        user_id = _user(get_session(), "can_bo").id
    token = csrf_token_from(client, f"/admin/users/{user_id}")
    answer = client.post(f"/admin/users/{user_id}/roles",
                         data={"csrf_token": token, "roles": ["official", "police"]})
    assert answer.status_code == 302
    # Police is requested, not given (service.auth.grants): the request is announced first.
    (asked,) = headlines(app)
    assert asked == "[Canh Gác] Thay đổi quyền: Đề nghị cấp vai trò công an cho tài khoản can_bo"
    leader = app.test_client()
    login("chu_tich", c=leader)
    with app.app_context():
        from service.auth.models import RoleGrant

        grant_id = get_session().scalar(select(RoleGrant.id))
    answer = leader.post(f"/grants/{grant_id}/approve",
                         data={"csrf_token": csrf_token_from(leader, "/grants/")})
    assert answer.status_code == 302
    rows = notices(app)[len(WATCHERS):]
    # can_bo is police now, so they are told too
    assert sorted(r.recipient_username for r in rows) == ["can_bo", *WATCHERS]
    for row in rows:
        assert row.subject == "[Canh Gác] Thay đổi quyền: Vai trò của tài khoản can_bo đã thay đổi"
        assert "Trước: cán bộ." in row.body and "Sau: cán bộ, công an." in row.body
        assert "Người thực hiện: chu_tich." in row.body
        assert f"Theo đề nghị số {grant_id} của quan_tri, được chu_tich phê duyệt." in row.body
        assert "(giờ địa phương)" in row.body


def test_unchanged_roles_and_own_password_are_not_announced(app, people):
    with app.app_context():
        session = get_session()
        user = _user(session, "can_bo")
        operations.set_roles(session, user, ["official"], by="quan_tri")
        operations.change_password(session, user, "mat-khau-moi-rat-dai", by="can_bo")
        session.commit()
    assert notices(app) == []


def test_resets_disable_enable_and_tokens_are_announced_without_secrets(app, people):
    new_password = "mat-khau-dat-lai-2026"
    with app.app_context():
        session = get_session()
        leader = _user(session, "chu_tich")
        operations.change_password(session, _user(session, "can_bo"), new_password, by="quan_tri")
        operations.disable_user(session, leader, by="quan_tri")
        operations.disable_user(session, leader, by="quan_tri")  # already disabled: nothing new
        row, token = operations.create_token(session, "may-tram-01", by="quan_tri")
        operations.revoke_token(session, row.id, by="quan_tri")
        session.commit()
        # the disabled leader is no longer told; enabling them again is announced to both
        operations.enable_user(session, leader, by="quan_tri")
        session.commit()
    rows = notices(app)
    assert [r.subject.removeprefix("[Canh Gác] Thay đổi quyền: ") for r in rows] == [
        *["Mật khẩu của tài khoản can_bo đã được đặt lại"] * 2,
        # a disabled account gets no mail (its owner may have left): the police officer is told
        "Tài khoản chu_tich đã bị vô hiệu hóa",
        # while the leader is disabled only the police officer is told
        f"Đã tạo mã truy cập số {row.id} cho nguồn may-tram-01",
        f"Đã thu hồi mã truy cập số {row.id} của nguồn may-tram-01",
        *["Tài khoản chu_tich đã được kích hoạt lại"] * 2,
    ]
    for message in rows:
        assert new_password not in message.body and token not in message.body
        assert token[:10] not in message.body and PASSWORD not in message.body


def test_a_watcher_losing_their_role_still_hears_of_it(app, people):
    with app.app_context():
        session = get_session()
        operations.set_roles(session, _user(session, "cong_an_1"), ["official"], by="quan_tri")
        session.commit()
    rows = notices(app)
    assert sorted(r.recipient_username for r in rows) == WATCHERS
    assert "Trước: công an." in rows[0].body and "Sau: cán bộ." in rows[0].body


def test_rolled_back_change_is_never_announced(app, people):
    with app.app_context():
        session = get_session()
        operations.set_roles(session, _user(session, "can_bo"), ["admin"], by="quan_tri")
        session.rollback()
    assert notices(app) == []


def test_cli_enable_restores_login_and_is_announced(app, client, runner, login, people):
    assert runner.invoke(args=["user", "disable", "can_bo"]).exit_code == 0
    assert login("can_bo").status_code == 401  # refused
    result = runner.invoke(args=["user", "enable", "can_bo"])
    assert result.exit_code == 0, result.output
    assert login("can_bo").status_code == 302
    assert headlines(app) == [
        "[Canh Gác] Thay đổi quyền: Tài khoản can_bo đã bị vô hiệu hóa",
        "[Canh Gác] Thay đổi quyền: Tài khoản can_bo đã được kích hoạt lại",
    ]
    with app.app_context():
        kinds = [e.kind for e in get_session().scalars(
            select(AuditEntry).where(AuditEntry.kind.in_(["user.disabled", "user.enabled"])))]
    assert kinds == ["user.disabled", "user.enabled"]


def test_admin_ui_enables_a_disabled_account(app, client, login, people):
    with app.app_context():
        session = get_session()
        user = _user(session, "can_bo")
        operations.disable_user(session, user, by="quan_tri")
        session.commit()
        user_id = user.id
    login("quan_tri")
    page = client.get(f"/admin/users/{user_id}")
    assert f'action="/admin/users/{user_id}/enable"' in page.text
    assert client.post(f"/admin/users/{user_id}/enable").status_code == 400  # no CSRF token
    token = csrf_token_from(client, f"/admin/users/{user_id}")
    answer = client.post(f"/admin/users/{user_id}/enable", data={"csrf_token": token})
    assert answer.status_code == 302
    with app.app_context():
        assert _user(get_session(), "can_bo").is_disabled is False
    assert headlines(app)[-1].endswith("Tài khoản can_bo đã được kích hoạt lại")


def _weakened_policy():
    """Return the default policy with the USB rule switched off and one threshold raised."""
    files = {k: v for k, v in read_policy_files(default_policy_dir()).items()}
    rules = yaml.safe_load(files["rules.yaml"])
    for rule in rules["rules"]:
        if rule["id"] == "sao_chep_thiet_bi_di_dong":
            rule["enabled"] = False
        if rule["id"] == "xoa_hang_loat":
            rule["conditions"][-1]["count_in_window"]["min_events"] = 500
    files["rules.yaml"] = yaml.safe_dump(rules, allow_unicode=True).encode()
    # the rule tests would now fail; a weakened policy that passes is what an insider ships
    tests = {k: v for k, v in files.items() if not k.startswith("tests/")}
    return load_policy_files(tests)


def test_a_weakened_policy_is_announced_with_the_rules_it_drops(app, people):
    processor = app.extensions["canhgac.processor"]
    weakened = _weakened_policy()
    processor.on_reloaded(weakened)
    rows = notices(app)
    assert sorted(r.recipient_username for r in rows) == WATCHERS
    body = rows[0].body
    assert "Chính sách phát hiện đã được thay đổi" in rows[0].subject
    assert "Quy tắc không còn áp dụng (bị xóa hoặc tắt): sao_chep_thiet_bi_di_dong." in body
    assert "Quy tắc được sửa: xoa_hang_loat." in body
    assert "Phần khác đã thay đổi" not in body  # only rules changed
    assert weakened.hash[:16] in body
    processor.on_reloaded(weakened)  # the same version again: nothing new to say
    assert len(notices(app)) == len(rows)


def test_notice_is_delivered_by_real_smtp(app, people):
    sink = SmtpSink(free_port()).start()
    try:
        settings = app.config["SETTINGS"].model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_timeout_seconds": 5})
        with app.app_context():
            session = get_session()
            operations.set_roles(session, _user(session, "can_bo"), ["admin"], by="quan_tri")
            session.commit()
            stats = dispatch_pending(session, settings)
        assert stats.delivered == 2
        mails = sink.mails()
        assert sorted(m["To"] for m in mails) == [f"{n}@nhanly.example" for n in WATCHERS]
        for mail in mails:
            assert mail["Subject"].startswith("[Canh Gác] Thay đổi quyền: Vai trò của tài khoản")
            body = mail.get_content()
            assert "Sau: quản trị." in body
            assert re.search(r"\n— \S+ ", body)  # ends with the signed checkpoint (witness)
    finally:
        sink.stop()


def test_queued_entries_of_notices_name_no_secrets(app, people):
    with app.app_context():
        session = get_session()
        _, token = operations.create_token(session, "ung-dung-ho-tich", by="quan_tri")
        session.commit()
        bodies = [e.body for e in session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "notify.queued"))]
    assert len(bodies) == 2
    for body in bodies:
        assert json.loads(body)["body"]["kind"] == KIND
        assert token not in body


def test_a_new_privileged_account_is_announced_but_seeding_is_not(app, runner, people):
    assert notices(app) == []  # the fixture's accounts were seeded ("system")
    result = runner.invoke(["user", "add", "cong_an_moi", "--role", "police", "--unit", "cong_an",
                            "--email", "moi@nhanly.example"], env={"CANHGAC_USER_PASSWORD": "mat-khau-dai-2026"})
    assert result.exit_code == 0, result.output
    result = runner.invoke(["user", "add", "can_bo_moi", "--role", "official", "--unit", "vh_xh",
                            "--email", "cbm@nhanly.example"], env={"CANHGAC_USER_PASSWORD": "mat-khau-dai-2026"})
    assert result.exit_code == 0, result.output
    rows = notices(app)
    assert {r.subject for r in rows} == {
        "[Canh Gác] Thay đổi quyền: Đã tạo tài khoản cong_an_moi có vai trò công an"}
    assert sorted(r.recipient_username for r in rows) == sorted([*WATCHERS, "cong_an_moi"])
    assert "mat-khau-dai-2026" not in "".join(r.body for r in notices(app))


def test_lifting_a_lockout_is_announced(app, people):
    from service.auth.operations import authenticate, unlock_user

    with app.app_context():
        session = get_session()
        for _ in range(5):
            authenticate(session, "chu_tich", "doan-sai", remote_addr="10.1.1.1")
        operations.unlock_user(session, _user(session, "chu_tich"), by="quan_tri")
        unlock_user(session, _user(session, "chu_tich"), by="quan_tri")  # nothing locked: silent
        session.commit()
    assert headlines(app) == ["[Canh Gác] Thay đổi quyền: Đã gỡ khóa đăng nhập của tài khoản chu_tich"]
    assert "Phạm vi khóa được gỡ: 1 địa chỉ." in notices(app)[0].body


def test_a_policy_weakened_outside_the_rules_is_named(app, people):
    from service.events.processing import policy_change_lines

    files = dict(read_policy_files(default_policy_dir()))
    classes = yaml.safe_load(files["data_classes.yaml"])
    classes["data_classes"][0]["paths"] = ["*/khong-bao-gio-co/*"]  # the class matches nothing now
    files["data_classes.yaml"] = yaml.safe_dump(classes, allow_unicode=True).encode()
    weakened = load_policy_files({k: v for k, v in files.items() if not k.startswith("tests/")})
    original = load_policy_files({k: v for k, v in read_policy_files(default_policy_dir()).items()
                                  if not k.startswith("tests/")})
    lines = policy_change_lines(original, weakened)
    assert "Phần khác đã thay đổi: lớp dữ liệu." in lines


def test_only_declared_seeding_is_silent_whatever_the_actor_is_called(app, people):
    with app.app_context():
        session = get_session()
        operations.create_user(session, username="admin2", password="mat-khau-dai-2026",
                               roles=["admin"], email="a2@nhanly.example", by="system")
        session.commit()
    assert headlines(app) == ["[Canh Gác] Thay đổi quyền: Đã tạo tài khoản admin2 có vai trò quản trị"]
