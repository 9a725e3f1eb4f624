"""The whole allow/deny matrix: every route × every role (later issues extend ROUTE_ACCESS)."""

from __future__ import annotations

import re

import pytest

ROLES = ("official", "police", "leader", "admin")
PUBLIC, TOKEN, ANY = "public", "token", "any"

# endpoint -> who may use it. A new route fails test_every_route_is_in_the_matrix until added.
ROUTE_ACCESS: dict[str, object] = {
    "auth.login": PUBLIC,
    "auth.logout": ANY,
    "web.home": ANY,
    "web.health": PUBLIC,
    "web.set_language": PUBLIC,
    "web.dashboard": {"leader", "police", "admin"},
    "api.ingest": TOKEN,
    "api.heartbeat": TOKEN,
    "api.openapi": PUBLIC,
    "tlog.checkpoint": (TOKEN, {"police"}),  # a token (any scope) or a police session
    "tlog.tile": (TOKEN, {"police"}),  # entry bundles: monitor token or police (test_audit_tlog)
    "witness.add_checkpoint": PUBLIC,
    "witness.witnessed_checkpoint": PUBLIC,  # tlog-witness monitoring: public by the spec  # C2SP tlog-witness: the log's signature is what counts
    "audit.search": {"police"},
    "audit.entry": {"police"},
    "audit.entry_proof": {"police"},
    "audit.export_csv": {"police"},
    "audit.export_bundle_view": {"police"},
    "audit.kept_checkpoint": {"police"},
    "admin.index": {"admin"},
    "admin.users": {"admin"},
    "admin.user_new": {"admin"},
    "admin.user_edit": {"admin"},
    "admin.user_roles": {"admin"},
    "admin.user_phone": {"admin"},
    "admin.user_password": {"admin"},
    "admin.user_disable": {"admin"},
    "admin.user_enable": {"admin"},
    "admin.user_unlock": {"admin"},
    "auth.change_own_password": ANY,
    "auth.own_sessions": ANY,
    "admin.user_end_sessions": {"admin"},
    "grants.index": {"leader", "police", "admin"},
    "grants.approve": {"leader", "admin"},  # object-level: never the requester or the receiver
    "grants.refuse": {"leader", "admin"},
    "grants.withdraw": {"admin"},  # object-level: the requester only
    "admin.tokens": {"admin"},
    "admin.token_create": {"admin"},
    "admin.token_revoke": {"admin"},
    "devices.index": {"admin"},
    "devices.register": {"admin"},
    "devices.revoke": {"admin"},
    "admin.agents": {"admin"},
    "admin.notifications": {"admin"},
    "admin.policy": {"admin"},
    "incidents.report": ANY,
    "incidents.report_print": ANY,
    "incidents.mine": ANY,
    "incidents.index": {"police", "leader"},
    "incidents.detail": ANY,  # object-level: officials see their own reports only (404)
    "auth.substitutes": ANY,
    "auth.cancel_substitute": ANY,  # 404 for a substitution that does not exist
    "incidents.acknowledge": {"leader", "police"},
    "incidents.confirm_receipt": {"leader", "police"},  # the operation lets only police confirm  # police may look; only leaders acknowledge
    "incidents.transition": {"police", "leader"},
    "incidents.notice_sent": {"leader"},
    "incidents.comment": ANY,  # object-level: reporter, police, leaders
    "incidents.upload_evidence": ANY,  # object-level: reporter, police, leaders
    "incidents.download_evidence": {"police", "leader"},
    "incidents.document": {"police", "leader"},
    "incidents.alerts": {"police"},
    "incidents.open_alert": {"police"},
    "incidents.dismiss_alert": {"police"},
    "reports.index": {"leader", "police", "official"},
    "reports.month_view": {"leader", "police"},
    "reports.month_pdf": {"leader", "police"},
    "reports.month_csv": {"leader", "police"},
    "reports.part_form": {"official", "police"},  # object-level: the user's unit must file parts
}
_SAMPLE = {"int": "1", "string": "vi", "default": "x", "path": "x"}


def _urls(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = rule.rule
        for conv in re.findall(r"<(?:([a-z]+):)?[a-z_]+>", url):
            url = re.sub(r"<(?:[a-z]+:)?[a-z_]+>", _SAMPLE.get(conv or "default", "1"), url, count=1)
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        yield rule.endpoint, url, method


@pytest.fixture
def matrix_app(app, make_user):
    app.config["WTF_CSRF_ENABLED"] = False
    for role in ROLES:
        make_user(f"u-{role}", role, unit="cong_an" if role == "police" else "van_phong")
    return app


def test_every_route_is_in_the_matrix(app):
    endpoints = {endpoint for endpoint, _, _ in _urls(app)}
    assert endpoints - set(ROUTE_ACCESS) == set(), "add new routes to ROUTE_ACCESS"


@pytest.mark.parametrize("role", [None, *ROLES])
def test_role_matrix(matrix_app, login, role):
    client = matrix_app.test_client()
    if role:
        assert login(f"u-{role}", c=client).status_code == 302
    problems = []
    for endpoint, url, method in _urls(matrix_app):
        if endpoint == "auth.logout":
            continue  # would end the session mid-walk; covered by test_logout
        access = ROUTE_ACCESS[endpoint]
        response = client.open(url, method=method)
        status = response.status_code
        is_login_redirect = status == 302 and "/login" in response.headers.get("Location", "")
        if access == PUBLIC:
            allowed = True
        elif isinstance(access, tuple):
            if role in access[1]:
                if status in (401, 403):
                    problems.append(f"{endpoint} as {role}: denied ({status})")
            elif status != 401:
                problems.append(f"{endpoint} as {role}: {status}, want 401")
            continue
        elif access == TOKEN:
            allowed = False  # a session is never enough for token routes
            if status != 401:
                problems.append(f"{endpoint}: session got {status}, want 401")
            continue
        elif access == ANY:
            allowed = role is not None
        else:
            allowed = role in access
        if allowed and (status in (401, 403) or is_login_redirect):
            problems.append(f"{endpoint} as {role}: denied ({status})")
        if not allowed:
            want_redirect = role is None
            if want_redirect and not is_login_redirect:
                problems.append(f"{endpoint} as anonymous: {status}, want redirect to login")
            if not want_redirect and status != 403:
                problems.append(f"{endpoint} as {role}: {status}, want 403")
    assert problems == []


def test_huge_ids_in_urls_are_404_not_500(matrix_app, login):
    client = matrix_app.test_client()
    login("u-police", c=client)
    for url in ("/audit/entries/99999999999999999999", "/incidents/99999999999999999999"):
        assert client.get(url).status_code == 404
