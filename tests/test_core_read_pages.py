"""Pages read beside the writer on SQLite: GET views begin deferred, writes take the lock."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

import pytest

from service.audit import log
from service.core import db
from service.core.db import get_session, new_session
from tests.test_incidents_web import client_for, people, report_form_data  # noqa: F401 - fixture


@pytest.fixture
def db_url(tmp_path) -> str:
    """SQLite only: PostgreSQL has no write lock taken at BEGIN, and nothing here changes it."""
    return f"sqlite:///{tmp_path / 'canhgac.db'}"


def _hold_write_lock(path: str, held: threading.Event, release: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    release.wait(60)
    conn.execute("ROLLBACK")
    conn.close()


def test_a_reading_page_answers_while_a_writer_holds_the_lock(app, client, make_user, login,
                                                              db_url):
    make_user("congan", "police")
    assert login("congan").status_code == 302
    held, release = threading.Event(), threading.Event()
    writer = threading.Thread(target=_hold_write_lock,
                              args=(db_url.removeprefix("sqlite:///"), held, release))
    writer.start()
    assert held.wait(10)
    answers: list[int] = []
    try:
        # Before pages began deferred, this waited for the writer (up to the 30 s busy timeout).
        reader = threading.Thread(target=lambda: answers.append(client.get("/", follow_redirects=True).status_code))
        reader.start()
        reader.join(15)
        assert not reader.is_alive(), "the page waited for the writer's lock"
    finally:
        release.set()
        writer.join(30)
    assert answers == [200]


def test_the_trail_page_still_records_each_look(app, client, make_user, login):
    make_user("congan", "police")
    login("congan")
    with app.app_context():
        before = log.tree_size(get_session())
    assert client.get("/audit/").status_code == 200
    with app.app_context():
        s = get_session()
        assert log.tree_size(s) == before + 1
        last = s.connection().exec_driver_sql(
            "SELECT kind FROM audit_entry ORDER BY seq DESC LIMIT 1").scalar()
    assert last == "audit.viewed"


def test_an_unannounced_write_after_a_concurrent_commit_runs_again_with_the_lock(app, client):
    runs: list[int] = []

    def racing_view():
        session = get_session()
        size = log.tree_size(session)  # the read snapshot begins here (deferred)
        if not runs:
            # Another writer commits after our snapshot: SQLite must refuse our upgrade.
            other = new_session(app)
            log.record(other, "security.change", {"what": "concurrent"})
            other.commit()
            other.close()
        runs.append(size)
        log.record(session, "security.change", {"what": "unannounced", "seen": size})
        session.commit()
        return "ok"

    app.add_url_rule("/_test/racing", "racing", db.retry_with_write_lock(racing_view))
    response = client.get("/_test/racing")
    assert response.status_code == 200
    assert len(runs) == 2  # refused once (SQLITE_BUSY_SNAPSHOT), then run with the lock
    with app.app_context():
        kinds = get_session().connection().exec_driver_sql(
            "SELECT body FROM audit_entry WHERE kind = 'security.change' ORDER BY seq").scalars().all()
    assert sum('"unannounced"' in body for body in kinds) == 1
    assert sum('"concurrent"' in body for body in kinds) == 1


def test_announced_writes_in_a_page_need_no_retry(app, client):
    runs: list[int] = []

    def announced_view():
        session = get_session()
        log.tree_size(session)
        runs.append(1)
        if len(runs) == 1:
            other = new_session(app)
            log.record(other, "security.change", {"what": "concurrent"})
            other.commit()
            other.close()
        with db.writing(session):
            log.record(session, "security.change", {"what": "announced"})
            session.commit()
        return "ok"

    app.add_url_rule("/_test/announced", "announced", db.retry_with_write_lock(announced_view))
    assert client.get("/_test/announced").status_code == 200
    assert runs == [1]


def test_writers_of_one_process_take_turns_without_busy_errors(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (thread INTEGER, n INTEGER)")
    problems: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            for n in range(25):
                with engine.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO t VALUES (?, ?)", (thread, n))
        except BaseException as exc:
            problems.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not problems
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 200
    engine.dispose()


def test_a_writer_whose_connection_is_dropped_opens_the_gate(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    conn = engine.connect()
    conn.begin()
    conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    conn.invalidate()  # closed under the transaction, as a lost connection is
    conn.close()
    done = threading.Event()

    def write() -> None:
        with engine.begin() as other:
            other.exec_driver_sql("INSERT INTO t VALUES (2)")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(10), "the gate stayed closed after the connection was dropped"
    with engine.connect() as check:
        assert check.exec_driver_sql("SELECT n FROM t").scalars().all() == [2]
    engine.dispose()


def test_health_probe_of_a_signed_in_browser_waits_for_a_short_writer(app, client, make_user,
                                                                       login, db_url):
    make_user("quantri", "admin")
    assert login("quantri").status_code == 302  # last_seen_at is fresh: no write in _check_session
    path = db_url.removeprefix("sqlite:///")
    held = threading.Event()

    def hold_briefly() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(1.0)  # another process's short write transaction
        conn.execute("ROLLBACK")
        conn.close()

    writer = threading.Thread(target=hold_briefly)
    writer.start()
    assert held.wait(10)
    try:
        answer = client.get("/healthz")
    finally:
        writer.join(30)
    # The probe announces its write: it waits for the lock like any writer. Unannounced, its
    # UPDATE upgraded the read snapshot _check_session had opened: SQLITE_BUSY at once (no busy
    # handler for an upgrade), swallowed by database_write_problem as "not_writable".
    assert answer.status_code == 200, answer.get_json()


def test_incident_detail_records_its_look_without_a_second_run(app, people, login,  # noqa: F811
                                                                monkeypatch):
    from service.incidents import views

    c = client_for(app, login, people["official"])
    response = c.post("/incidents/report", data=report_form_data(c))
    incident_id = int(re.search(r"/incidents/(\d+)$", response.headers["Location"]).group(1))
    police = client_for(app, login, people["police"])
    runs: list[int] = []
    timeline = views._timeline

    def racing_timeline(session, incident):
        runs.append(1)
        if len(runs) == 1:  # an ingest commits while the page reads its snapshot
            other = new_session(app)
            log.record(other, "security.change", {"what": "concurrent"})
            other.commit()
            other.close()
        return timeline(session, incident)

    monkeypatch.setattr(views, "_timeline", racing_timeline)
    assert police.get(f"/incidents/{incident_id}").status_code == 200
    # The look is announced: an unannounced audit.viewed made SQLite refuse the upgrade and the
    # whole page (timeline, receipts, forms) was built a second time, with the lock.
    assert runs == [1]


def test_the_deferred_flag_does_not_outlive_a_request_on_a_server_thread(app):
    import urllib.error
    import urllib.request

    from service.core import db
    from service.core.server import Server

    seen: list[tuple[str, bool]] = []

    def probe():
        from flask import request
        seen.append((request.method, db._BEGIN_DEFERRED.get()))
        if request.args.get("fail"):
            raise RuntimeError("view failed")
        return "ok"

    from service.auth.access import public
    from service.web.wiring import csrf

    app.add_url_rule("/_test/probe", "probe", csrf.exempt(public(probe)), methods=["GET", "POST"])
    server = Server(app, "127.0.0.1", 0, threads=1)
    server.start()
    try:
        urllib.request.urlopen(server.url + "/_test/probe").read()  # noqa: S310 - loopback test server
        try:
            urllib.request.urlopen(server.url + "/_test/probe?fail=1").read()  # noqa: S310 - loopback
        except urllib.error.HTTPError as exc:
            assert exc.code == 500
        request = urllib.request.Request(server.url + "/_test/probe", data=b"", method="POST")  # noqa: S310 - loopback
        urllib.request.urlopen(request).read()  # noqa: S310 - loopback test server
        threading.Thread(target=lambda: None).start()
    finally:
        server.stop()
    assert db._BEGIN_DEFERRED.get() is False
    assert seen[-1] == ("POST", False)
    assert ("GET", True) in seen and all(deferred is (method == "GET") for method, deferred in seen)
