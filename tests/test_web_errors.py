"""Health, 405s, JSON errors for JSON clients, and error texts without interpreter internals."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import event

from service.core.db import get_engine

INTERNALS = ("4300", "sys.", "set_int_max_str_digits", "Exceeds the limit", "Traceback",
             "ValueError", "OperationalError", "sqlalchemy", "sqlite", "psycopg")


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "may-kiem-tra"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _read_only(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur.execute("PRAGMA query_only = ON")
    else:
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cur.close()
    dbapi_conn.commit()  # a SET is transactional in PostgreSQL: keep it past the pool's rollback


def test_health_says_whether_the_database_takes_a_write(app, client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ok", "database": "writable"}
    engine = get_engine(app)
    event.listen(engine, "connect", _read_only)
    engine.dispose()  # every new connection refuses writes
    try:
        down = client.get("/healthz")
        assert down.status_code == 503
        assert down.json == {"status": "unavailable", "database": "not_writable"}
        assert not [word for word in INTERNALS if word.lower() in down.text.lower()]
    finally:
        event.remove(engine, "connect", _read_only)
        engine.dispose()
    assert client.get("/healthz").status_code == 200
    # The probe left nothing behind.
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1


def test_ingest_while_the_database_refuses_writes_is_a_json_503(app, client, token):
    # SQLite says OperationalError, PostgreSQL a read-only transaction (InternalError): both
    # are the storage's trouble, answered in the API's words with a retry, never a bare 500.
    engine = get_engine(app)
    event.listen(engine, "connect", _read_only)
    engine.dispose()
    try:
        answer = client.post("/api/v1/events", headers={"Authorization": f"Bearer {token}"},
                             json=[{"id": str(uuid.uuid4()), "occurred_at": "2026-12-01T09:00:00+07:00",
                                    "host": "PC-01", "actor": "canbo", "action": "open",
                                    "object": {"path": "C:\\DuLieu\\a.xlsx"}}])
        assert answer.status_code == 503, answer.text
        assert answer.json["error"] == "storage_unavailable"
        assert answer.headers["Retry-After"] == "5"
    finally:
        event.remove(engine, "connect", _read_only)
        engine.dispose()


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/logout", {"POST"}),
    ("POST", "/healthz", {"GET", "HEAD"}),
    ("DELETE", "/login", {"GET", "POST"}),
    ("GET", "/api/v1/events", {"POST"}),
    ("PUT", "/api/v1/agents/heartbeat", {"POST"}),
])
def test_405_answers_carry_allow(client, method, path, allowed):
    answer = client.open(path, method=method)
    assert answer.status_code == 405
    assert "Allow" in answer.headers
    assert allowed <= {m.strip() for m in answer.headers["Allow"].split(",")}
    if path.startswith("/api/"):
        assert answer.mimetype == "application/json" and answer.json["status"] == 405


@pytest.mark.parametrize("path", ["/audit/", "/dashboard", "/reports/", "/incidents/", "/admin/users"])
def test_anonymous_json_clients_get_a_json_401(client, path):
    answer = client.get(path, headers={"Accept": "application/json"})
    assert answer.status_code == 401
    assert answer.mimetype == "application/json"
    assert answer.json == {"error": "Unauthorized", "status": 401}
    # A browser still goes to the login page.
    browser = client.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 302 and "/login" in browser.headers["Location"]
    # A client that takes anything is treated as a browser.
    assert client.get(path, headers={"Accept": "*/*"}).status_code == 302


def test_unknown_api_path_and_anonymous_api_answer_json(client):
    missing = client.get("/api/v1/nothing", headers={"Accept": "text/html"})
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    anonymous = client.post("/api/v1/events", data="[]", content_type="application/json")
    assert anonymous.status_code == 401 and anonymous.mimetype == "application/json"


def _long_number_bodies() -> list[bytes]:
    digits = "9" * 5000
    event_body = {"id": str(uuid.uuid4()), "occurred_at": "2026-03-02T09:15:00+07:00",
                  "host": "PC-01", "actor": "a", "action": "open", "object": {"path": "/x"}}
    text = json.dumps(event_body)
    return [text.replace('"/x"}', f'"/x", "size": {digits}}}').encode(),
            text.replace('"actor"', f'"seq": {digits}, "actor"').encode(),
            f"[{digits}]".encode(), f"-{digits}".encode()]


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/agents/heartbeat"])
def test_a_5000_digit_number_is_a_plain_400(client, token, path):
    for body in _long_number_bodies():
        answer = client.post(path, data=body, content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 400
        assert answer.json["error"] == "invalid_json"
        assert "digits" in answer.json["detail"]
        assert not [word for word in INTERNALS if word in answer.text], answer.text
    broken = client.post(path, data=b'{"a": 1}x', content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})
    assert broken.status_code == 400 and broken.json["detail"] == "Extra data at line 1 column 9"


def test_a_5000_digit_number_in_a_path_or_query_is_not_a_500(app, client, login, make_user):
    make_user("ca.so", "police", unit="cong_an")
    assert login("ca.so").status_code == 302
    digits = "9" * 5000
    for path in (f"/audit/entries/{digits}", f"/audit/entries/{digits}/proof.json",
                 f"/incidents/{digits}", f"/audit/?page={digits}", f"/audit/?incident_id={digits}"):
        assert client.get(path).status_code in (200, 400, 404), path
