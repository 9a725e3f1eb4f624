"""Fixtures: app, client and runner on SQLite and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from service import create_app
from service.config import load_settings

PG_URL = os.environ.get("CANHGAC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "mat-khau-thu-nghiem-1"
_pg_state: dict = {}


def _pg_available() -> str | None:
    if "reason" not in _pg_state:
        try:
            import psycopg

            with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                                 connect_timeout=3):
                _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}"
    return _pg_state["reason"]


def _backends() -> list[str]:
    wanted = os.environ.get("CANHGAC_TEST_DATABASES", "sqlite,postgresql")
    return [b.strip() for b in wanted.split(",") if b.strip()]


@pytest.fixture(params=_backends())
def db_url(request, tmp_path) -> str:
    """Yield a database URL: SQLite in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'canhgac.db'}"
        return
    reason = _pg_available()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                         autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                         autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def _close_engines():
    """Close every engine a test made (apps built inside tests too): PostgreSQL has 100 slots."""
    yield
    from service.core.db import ENGINES

    for engine in list(ENGINES):
        engine.dispose()


@pytest.fixture(autouse=True)
def _own_demo_pointer(tmp_path, monkeypatch):
    """Keep the pointer `canhgac demo` leaves (under XDG_STATE_HOME) inside each test."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Return an empty data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings_overrides(data_dir, db_url) -> dict:
    """Return the settings a test app runs with (tests may extend the dict)."""
    return {
        "data_dir": data_dir,
        "database_url": db_url,
        "secret_key": "test-secret-key",
        "scheduler_enabled": False,
        "policy_reload": False,
    }


@pytest.fixture
def app(settings_overrides):
    """Create a prepared app (keys, schema) on the selected database."""
    from service.core.bootstrap import prepare_data_dir

    application = create_app(load_settings(settings_overrides, environ={}))
    application.config["TESTING"] = True
    prepare_data_dir(application)
    yield application
    from service.core.jobs import stop_background

    stop_background(application)
    application.extensions["canhgac.engine"].dispose()


@pytest.fixture
def session(app):
    """Yield a session inside an app context."""
    from service.core.db import get_session

    with app.app_context():
        yield get_session()


@pytest.fixture
def client(app):
    """Return a test client."""
    return app.test_client()


@pytest.fixture
def runner(app, settings_overrides):
    """Return a CLI runner bound to the test's data directory and database."""
    from click.testing import CliRunner

    from service.cli import main

    env = {"CANHGAC_DATABASE_URL": settings_overrides["database_url"],
           "CANHGAC_SECRET_KEY": "test-secret-key", "CANHGAC_SCHEDULER_ENABLED": "false",
           "CANHGAC_POLICY_RELOAD": "false"}
    base = ["--data-dir", str(settings_overrides["data_dir"])]

    class Runner:
        def invoke(self, args: list[str], **kwargs):
            cli_runner = CliRunner()
            command, *rest = args
            # --data-dir belongs to the leaf command; groups take it after the subcommand.
            if command in {"user", "token", "policy", "report", "incident", "proof", "witness"} and rest:
                full = [command, rest[0], *base, *rest[1:]]
            else:
                full = [command, *base, *rest]
            return cli_runner.invoke(main, full, env={**env, **kwargs.pop("env", {})}, **kwargs)

    return Runner()


@pytest.fixture
def make_user(app):
    """Create a user with the given roles; return its username."""
    from service.auth.operations import create_user
    from service.core.db import new_session

    def make(username: str, *roles: str, unit: str | None = None, email: str | None = None):
        with app.app_context():
            s = new_session()
            user = create_user(s, username=username, password=PASSWORD, roles=list(roles), is_seeding=True,
                               email=email or f"{username}@nhanly.example", unit=unit)
            s.commit()
            s.close()
            return user.username

    return make


@pytest.fixture
def login(client):
    """Log a user in through the real login form (with its CSRF token)."""
    import re

    def do(username: str, password: str = PASSWORD, c=None):
        c = c or client
        page = c.get("/login")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
        token = token or re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        return c.post("/login", data={"username": username, "password": password,
                                      "csrf_token": token.group(1)})

    return do


def csrf_token_from(client, path: str = "/login") -> str:
    """Return a CSRF token from a page's form."""
    import re

    page = client.get(path)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


VECTORS_COPY = Path(__file__).resolve().parent / "vectors"


def load_vectors(name: str) -> dict:
    """Load a published conformance vector file: CANHGAC_VECTORS_DIR, ../shared/vectors, or our copy."""
    import json

    places = [Path(os.environ["CANHGAC_VECTORS_DIR"])] if os.environ.get("CANHGAC_VECTORS_DIR") else []
    places += [Path(__file__).resolve().parents[2] / "shared" / "vectors", VECTORS_COPY]
    for place in places:
        if (place / name).is_file():
            return json.loads((place / name).read_text(encoding="utf-8"))
    pytest.fail(f"conformance vectors {name} not found in {', '.join(map(str, places))}")
