"""Navigation by role, CSP-safe templates, no personal data in URLs, basic accessibility."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import service

TEMPLATES = Path(service.__file__).parent / "web" / "templates"
# Rendered outside the browser (PDF documents, mail bodies): the CSP does not apply to them.
NOT_FOR_BROWSERS = ("documents", "notify")
ROLES = ("official", "police", "leader", "admin")
NAV_LINK = re.compile(r'<nav class="main-nav".*?</nav>', re.S)


def _browser_templates() -> list[Path]:
    return [p for p in sorted(TEMPLATES.rglob("*.html"))
            if p.relative_to(TEMPLATES).parts[0] not in NOT_FOR_BROWSERS]


@pytest.mark.parametrize("path", _browser_templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_inline_script_or_style(path):
    text = path.read_text(encoding="utf-8")
    assert "<style" not in text
    assert not re.search(r"\sstyle\s*=", text)
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert "javascript:" not in text
    for tag in re.findall(r"<script\b[^>]*>", text):
        assert "src=" in tag, f"inline script in {path.name}"


def test_admin_forms_post_and_admin_urls_carry_only_ids(app):
    for path in (TEMPLATES / "admin").glob("*.html"):
        for form in re.findall(r"<form\b[^>]*>", path.read_text(encoding="utf-8")):
            assert 'method="post"' in form, f"{path.name}: {form}"
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("admin.", "web.")):
            converters = set(re.findall(r"<(?:(\w+):)?\w+>", rule.rule))
            assert converters <= {"int", ""} or rule.endpoint == "web.set_language", rule.rule


@pytest.fixture
def everyone(make_user):
    for role in ROLES:
        make_user(f"nv-{role}", role, unit="cong_an" if role == "police" else "van_phong")


@pytest.mark.parametrize("role", ROLES)
def test_every_menu_link_opens_for_its_role(app, login, everyone, role):
    client = app.test_client()
    login(f"nv-{role}", c=client)
    page = client.get("/dashboard" if role != "official" else "/").text
    menu = dict(re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', NAV_LINK.search(page).group(0)))
    assert menu, "every logged-in role has a menu"
    for url in menu:
        response = client.get(url)
        assert response.status_code == 200, f"{role}: {url} -> {response.status_code}"
    urls = set(menu)
    if role == "admin":
        assert {"/admin/users", "/admin/tokens", "/admin/agents", "/admin/notifications",
                "/admin/policy", "/dashboard"} <= urls
        assert not any(u.startswith("/audit") for u in urls)
    if role == "police":
        assert {"/dashboard", "/audit/"} <= urls
    if role in ("leader", "official"):
        assert not any(u.startswith(("/audit", "/admin")) for u in urls)
    if role == "official":
        assert "/dashboard" not in urls


def test_current_page_is_marked_in_the_menu(client, login, everyone):
    login("nv-admin")
    html = client.get("/admin/tokens").text
    assert '<a href="/admin/tokens" aria-current="page">' in html
    users = client.get("/admin/users/new").text  # a sub-page keeps its section marked
    assert '<a href="/admin/users" aria-current="page">' in users


def test_menu_skips_endpoints_that_do_not_exist(app, login, everyone, client):
    from service.web import nav

    login("nv-police")
    with app.test_request_context():
        from flask_login import login_user

        from service.auth.models import User
        from service.core.db import get_session

        user = get_session().query(User).filter_by(username="nv-police").one()
        login_user(user)
        assert nav.link(("not_there.view",)) is None
        assert nav.link(("not_there.view", "audit.search")) == "/audit/"
        assert nav.link("admin.users") is None  # exists, but police may not open it
        assert nav.record_link(("not_there.detail",), 5) is None


def test_pages_carry_the_csp_and_a_skip_link(client, login, everyone):
    login("nv-leader")
    response = client.get("/dashboard")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    html = response.text
    assert html.index('class="skip" href="#main"') < html.index('<main id="main"')
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_every_admin_input_has_a_label(client, login, everyone, app):
    login("nv-admin")
    for path in ("/admin/users/new", "/admin/tokens", "/admin/users/1", "/admin/devices/"):
        html = client.get(path).text
        ids = re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html)
        assert ids, path
        for input_id in ids:
            assert f'<label for="{input_id}"' in html, f"{path}: #{input_id} has no label"
