"""Admin pages: users and roles, ingest tokens, agents, notification settings, policy status."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from service.audit.models import AuditEntry
from service.auth.models import IngestToken, User
from service.core.db import new_session, utcnow
from tests.conftest import PASSWORD, csrf_token_from


@pytest.fixture
def admin(client, make_user, login):
    """Log in an admin on the test client; return its username."""
    make_user("quan-tri", "admin")
    login("quan-tri")
    return "quan-tri"


def _user(app, username: str) -> User:
    with app.app_context():
        s = new_session()
        user = s.scalar(select(User).where(User.username == username))
        s.expunge_all()
        s.close()
    return user


def _audit_kinds(app) -> list[str]:
    with app.app_context():
        s = new_session()
        kinds = [e.kind for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
        s.close()
    return kinds


def _post(client, path: str, form_page: str, **data):
    data["csrf_token"] = csrf_token_from(client, form_page)
    return client.post(path, data=data)


NEW_USER = {"username": "nguyen.van.a", "full_name": "Nguyễn Văn A", "email": "a@nhanly.example",
            "phone": "0912 345 678", "unit": "vh_xh", "roles": ["official"],
            "password": "mot-mat-khau-dai", "password_confirm": "mot-mat-khau-dai"}


def test_admin_creates_a_user_who_can_then_log_in(app, client, admin, login):
    response = _post(client, "/admin/users/new", "/admin/users/new", **NEW_USER)
    assert response.status_code == 302
    user = _user(app, "nguyen.van.a")
    assert user.roles == ["official"] and user.unit == "vh_xh" and user.phone == "+84912345678"
    assert "user.created" in _audit_kinds(app)
    # The phone number never lands in the audit trail or in a URL.
    with app.app_context():
        s = new_session()
        bodies = " ".join(e.body for e in s.scalars(select(AuditEntry)))
        s.close()
    assert "912345678" not in bodies and "912345678" not in response.headers["Location"]
    listing = client.get("/admin/users").text
    assert "nguyen.van.a" in listing and "Phòng Văn hóa - Xã hội" in listing
    other = app.test_client()
    assert login("nguyen.van.a", "mot-mat-khau-dai", c=other).status_code == 302


@pytest.mark.parametrize(("change", "message"), [
    ({"username": "Có Dấu"}, "Tên đăng nhập chỉ gồm chữ thường"),
    ({"email": "khong-phai-email"}, "Địa chỉ email không hợp lệ."),
    ({"phone": "12345"}, "Số điện thoại không hợp lệ."),
    ({"roles": []}, "Chọn ít nhất một vai trò."),
    ({"roles": ["superuser"]}, "Vai trò không hợp lệ."),
    ({"unit": "khong_co"}, "Đơn vị không hợp lệ."),
    ({"password": "ngan", "password_confirm": "ngan"}, "Mật khẩu phải có ít nhất 10 ký tự."),
    ({"password_confirm": "khac-hoan-toan"}, "Hai mật khẩu không khớp."),
])
def test_bad_user_forms_are_refused_with_a_reason(app, client, admin, change, message):
    response = _post(client, "/admin/users/new", "/admin/users/new", **{**NEW_USER, **change})
    assert response.status_code == 400
    assert message in response.text
    assert 'aria-invalid="true"' in response.text
    assert _user(app, "nguyen.van.a") is None


def test_duplicate_user_name_is_refused(app, client, admin):
    response = _post(client, "/admin/users/new", "/admin/users/new",
                     **{**NEW_USER, "username": "quan-tri"})
    assert response.status_code == 400 and "đã tồn tại" in response.text


def test_roles_change_and_last_admin_is_protected(app, client, admin, make_user):
    make_user("binh", "official")
    binh = _user(app, "binh")
    page = f"/admin/users/{binh.id}"
    response = _post(client, f"{page}/roles", page, roles=["police", "leader"])
    assert response.status_code == 302
    # Police and leader wait for a second person (tests/test_auth_grants.py); nothing changes yet.
    assert _user(app, "binh").roles == ["official"]
    assert "auth.grant_requested" in _audit_kinds(app)
    make_user("an", "police", "official", unit="cong_an")
    an = _user(app, "an")
    response = _post(client, f"/admin/users/{an.id}/roles", f"/admin/users/{an.id}", roles=["official"])
    assert response.status_code == 302 and _user(app, "an").roles == ["official"]  # removal: one person
    assert "user.roles_changed" in _audit_kinds(app)
    me = _user(app, "quan-tri")
    mine = f"/admin/users/{me.id}"
    response = _post(client, f"{mine}/roles", mine, roles=["police"])
    assert response.status_code == 400 and "tự bỏ vai trò quản trị" in response.text
    assert _user(app, "quan-tri").roles == ["admin"]


def test_disable_needs_confirmation_and_blocks_login(app, client, admin, make_user, login):
    make_user("chi", "police")
    chi = _user(app, "chi")
    page = f"/admin/users/{chi.id}"
    response = _post(client, f"{page}/disable", page)
    assert response.status_code == 400 and "Đánh dấu ô xác nhận" in response.text
    assert not _user(app, "chi").is_disabled
    assert _post(client, f"{page}/disable", page, confirm="y").status_code == 302
    assert _user(app, "chi").is_disabled
    assert "user.disabled" in _audit_kinds(app)
    assert login("chi", c=app.test_client()).status_code == 401
    me = _user(app, "quan-tri")
    response = _post(client, f"/admin/users/{me.id}/disable", f"/admin/users/{me.id}", confirm="y")
    assert response.status_code == 400 and not _user(app, "quan-tri").is_disabled


def test_password_reset_generates_one_shown_once(app, client, admin, make_user, login):
    make_user("dung", "leader")
    dung = _user(app, "dung")
    page = f"/admin/users/{dung.id}"
    response = _post(client, f"{page}/password", page)
    assert response.status_code == 200
    shown = re.search(r'<code class="once" id="new-password">([^<]+)</code>', response.text).group(1)
    assert len(shown) >= 20
    assert shown not in client.get(page).text  # never again
    assert login("dung", PASSWORD, c=app.test_client()).status_code == 401
    assert login("dung", shown, c=app.test_client()).status_code == 302
    assert "user.password_changed" in _audit_kinds(app)


def test_password_reset_with_a_typed_password(app, client, admin, make_user, login):
    make_user("em", "official")
    em = _user(app, "em")
    page = f"/admin/users/{em.id}"
    assert _post(client, f"{page}/password", page, password="ngan").status_code == 400
    assert _post(client, f"{page}/password", page, password="mat-khau-moi-123").status_code == 302
    assert login("em", "mat-khau-moi-123", c=app.test_client()).status_code == 302


def test_token_is_shown_once_works_and_can_be_revoked(app, client, admin):
    response = _post(client, "/admin/tokens/new", "/admin/tokens", source="may-tram-01")
    assert response.status_code == 200
    token = re.search(r'<code class="once" id="new-token">([^<]+)</code>', response.text).group(1)
    assert token.startswith("cg_")
    listing = client.get("/admin/tokens").text
    assert token not in listing and token[:10] in listing and "may-tram-01" in listing
    beat = {"agent_id": "agent-01", "host": "may-01"}
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert api.post("/api/v1/agents/heartbeat", json=beat, headers=headers).status_code == 200
    with app.app_context():
        s = new_session()
        row = s.scalar(select(IngestToken).where(IngestToken.source == "may-tram-01"))
        token_id, created_by = row.id, row.created_by_id
        s.close()
    assert created_by == _user(app, "quan-tri").id
    assert "token.created" in _audit_kinds(app)
    response = _post(client, f"/admin/tokens/{token_id}/revoke", "/admin/tokens")
    assert response.status_code == 302
    assert api.post("/api/v1/agents/heartbeat", json=beat, headers=headers).status_code == 401
    assert "token.revoked" in _audit_kinds(app)
    assert "Đã thu hồi lúc" in client.get("/admin/tokens").text


def test_bad_token_source_is_refused(client, admin):
    response = _post(client, "/admin/tokens/new", "/admin/tokens", source="tên có dấu cách")
    assert response.status_code == 400 and "Tên nguồn gồm" in response.text
    assert 'id="new-token"' not in response.text


def test_revoking_an_unknown_token_is_404(client, admin):
    assert _post(client, "/admin/tokens/999/revoke", "/admin/tokens").status_code == 404


def test_agents_page_shows_gaps_and_silence(app, client, admin):
    from service.events.models import Agent

    now = utcnow()
    with app.app_context():
        s = new_session()
        s.add_all([Agent(agent_id="agent-xa", source="s", missing_events=12, last_seq=400,
                         last_contact_at=now - timedelta(hours=2)),
                   Agent(agent_id="agent-gan", source="s", missing_events=0, last_seq=9,
                         last_contact_at=now)])
        s.commit()
        s.close()
    html = client.get("/admin/agents").text
    far = html[html.index("agent-xa"):html.index("</tr>", html.index("agent-xa"))]
    near = html[html.index("agent-gan"):html.index("</tr>", html.index("agent-gan"))]
    assert "Mất liên lạc" in far and '<span class="badge high">12</span>' in far
    assert "Mất liên lạc" not in near


@pytest.fixture
def settings_overrides(settings_overrides):
    settings_overrides.update(
        smtp_host="mail.nhanly.example", smtp_port=587, smtp_user="canhgac",
        smtp_password="sieu-bi-mat-smtp", smtp_starttls=True,
        webhook_url="https://hooks.example:8443/path/token-in-url-123",
        webhook_secret="bi-mat-webhook", notify_command="/usr/local/bin/gui-sms --modem /dev/ttyUSB0",
    )
    return settings_overrides


def test_notifications_page_shows_configuration_but_no_secret(client, admin, make_user):
    make_user("lanh-dao", "leader", email="chu-tich@nhanly.example")
    html = client.get("/admin/notifications").text
    assert "mail.nhanly.example:587" in html
    assert "https://hooks.example:8443" in html and "gui-sms" in html
    for secret in ("sieu-bi-mat-smtp", "bi-mat-webhook", "token-in-url-123", "/dev/ttyUSB0"):
        assert secret not in html
    assert "chu-tich@nhanly.example" in html  # leaders receive incident mail


def _rule(rule_id, title, severity="high", response="incident", enabled=True):
    return SimpleNamespace(id=rule_id, title=title, severity=severity, response=response,
                           enabled=enabled)


def test_policy_page_without_a_loaded_policy(app, client, admin):
    app.extensions.pop("canhgac.policy_state", None)
    html = client.get("/admin/policy").text
    assert "Chính sách chưa nạp" in html


def test_policy_page_shows_rules_hash_and_test_failures(app, client, admin):
    from service.policy.schemas import TestFailure

    failure = TestFailure(test="usb_near_miss", file="tests/usb.yaml", line=12, step=2,
                          expected=("usb_copy",), actual=(), message="quy tắc không kích hoạt")
    policy = SimpleNamespace(hash="ab" * 32, tests=(object(), object(), object()),
                             rules=(_rule("usb_copy", "Sao chép ra USB"),
                                    _rule("zalo_share", "Chia sẻ qua Zalo", "medium", "alert",
                                          enabled=False)))
    app.extensions["canhgac.policy_state"] = SimpleNamespace(
        policy=policy, loaded_at=datetime(2026, 5, 1, 1, 2, 3, tzinfo=UTC),
        last_error=None, test_results=[failure])
    html = client.get("/admin/policy").text
    assert "ab" * 32 in html and "01/05/2026 08:02:03" in html
    assert "usb_copy" in html and "Sao chép ra USB" in html and "Mở sự cố" in html
    assert "Không đạt: 1 lỗi." in html and "(3 bài)" in html
    assert "tests/usb.yaml:12 quy tắc không kích hoạt" in html
    app.extensions["canhgac.policy_state"] = SimpleNamespace(
        policy=policy, loaded_at=None, last_error="rules.yaml:3: lỗi cú pháp", test_results=[])
    html = client.get("/admin/policy").text
    assert "Lần nạp lại gần nhất bị lỗi" in html and "rules.yaml:3" in html
    assert "Đạt: mọi bài kiểm thử đều qua." in html


def test_admin_forms_need_csrf(app, client, admin):
    me = _user(app, "quan-tri")
    for path in ("/admin/users/new", f"/admin/users/{me.id}/roles", "/admin/tokens/new",
                 f"/admin/users/{me.id}/password"):
        assert client.post(path, data={"roles": ["admin"], "source": "x"}).status_code == 400


def test_admin_never_reaches_trail_content(client, admin):
    for path in ("/audit/", "/audit/entries/1", "/audit/entries/1/proof.json"):
        assert client.get(path).status_code == 403
    nav = client.get("/admin/users").text
    assert "/audit/" not in nav
