"""Database engine, session and model base; SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

import structlog
from flask import Flask, current_app, g, request
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Store aware datetimes as UTC; SQLite loses the zone, so put it back on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" hook below decides the lock mode.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # FULL: an acknowledged commit survives power loss, not only a killed process.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# Whether SQLite transactions begun in this context only read until told otherwise (GET pages).
_BEGIN_DEFERRED: ContextVar[bool] = ContextVar("canhgac_begin_deferred", default=False)


def _sqlite_begin_immediate(conn) -> None:
    # Take the write lock at BEGIN: a deferred transaction that reads and then writes fails
    # with SQLITE_BUSY under concurrent writers in WAL mode instead of waiting its turn. Pages
    # that only read begin deferred instead (reads_first): WAL readers then run beside the
    # writer instead of queueing behind every ingest's fsync while a template renders.
    conn.exec_driver_sql("BEGIN" if _BEGIN_DEFERRED.get() else "BEGIN IMMEDIATE")


@contextmanager
def writing(session: Session) -> Iterator[None]:
    """Let a page that has read go on to write: end its read snapshot; what follows takes the lock.

    Inside, the next transaction begins with SQLite's write lock (BEGIN IMMEDIATE), as every
    transaction outside pages does; the caller commits inside. Nothing changes on PostgreSQL.
    """
    if _BEGIN_DEFERRED.get() and session.in_transaction():
        session.commit()  # a read-only transaction: nothing to write, no fsync
    token = _BEGIN_DEFERRED.set(False)
    try:
        yield
    finally:
        _BEGIN_DEFERRED.reset(token)


def _is_busy(exc: BaseException) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return code is not None and code & 0xFF == 5  # SQLITE_BUSY and its extended codes


def retry_with_write_lock(view: Callable) -> Callable:
    """Wrap a view: run it again with the write lock if SQLite refused its read-to-write upgrade."""

    @functools.wraps(view)
    def run(*args, **kwargs):
        if not _BEGIN_DEFERRED.get():
            return view(*args, **kwargs)
        try:
            return view(*args, **kwargs)
        except OperationalError as exc:
            if not _is_busy(exc):
                raise
            rollback_quietly(get_session())
            structlog.get_logger(__name__).info("page_retried_with_write_lock",
                                                endpoint=request.endpoint)
            token = _BEGIN_DEFERRED.set(False)
            try:
                return view(*args, **kwargs)
            finally:
                _BEGIN_DEFERRED.reset(token)

    return run


def reads_first(app: Flask) -> None:
    """Run GET and HEAD views in SQLite read transactions; retry one that wrote unannounced.

    Called once every view is registered. A view that writes after reading should say so with
    ``writing``; one that does not still works: if another writer committed in between, SQLite
    refuses the upgrade (SQLITE_BUSY_SNAPSHOT), and the view runs again from the start with
    the write lock taken at BEGIN, as before this existed.
    """
    if get_engine(app).url.get_backend_name() != "sqlite":
        return

    @app.before_request
    def _begin_deferred():
        if request.method in ("GET", "HEAD"):
            g.begin_deferred_token = _BEGIN_DEFERRED.set(True)

    @app.teardown_request
    def _end_deferred(_exc):
        token = g.pop("begin_deferred_token", None)
        if token is not None:
            _BEGIN_DEFERRED.reset(token)

    # Registered first, so the session check and every other hook run after it.
    app.before_request_funcs.setdefault(None, []).insert(
        0, app.before_request_funcs[None].pop())
    for endpoint, view in list(app.view_functions.items()):
        if endpoint != "static":
            app.view_functions[endpoint] = retry_with_write_lock(view)


# Every engine this process made, so tests (and a clean shutdown) can close them all.
ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine with the pragmas and locking this service relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    ENGINES.add(engine)
    return engine


def init_app(app: Flask) -> None:
    """Create the engine and a per-request session closed at teardown."""
    engine = make_engine(app.config["SETTINGS"].resolved_database_url)
    app.extensions["canhgac.engine"] = engine
    app.extensions["canhgac.sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_session(exc):  # pragma: no cover - exercised by every request
        session = g.pop("db_session", None)
        if session is not None:
            rollback_quietly(session)
            session.close()


def rollback_quietly(session: Session) -> None:
    """Roll back, tolerating a connection the database already cut.

    After a restart or a cut connection the rollback itself fails; the transaction is gone on
    the server anyway, and raising here would turn the answer already chosen (a 503 to retry)
    into a bare 500.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        session.rollback()
    except SQLAlchemyError as exc:
        structlog.get_logger(__name__).warning("rollback_failed", error=type(exc).__name__)


def get_engine(app: Flask | None = None) -> Engine:
    """Return the application's engine."""
    return (app or current_app).extensions["canhgac.engine"]


def new_session(app: Flask | None = None) -> Session:
    """Return a fresh session the caller must close (jobs, threads)."""
    return (app or current_app).extensions["canhgac.sessionmaker"]()


def get_session() -> Session:
    """Return the session of the current app context, creating it on first use."""
    if "db_session" not in g:
        g.db_session = new_session()
    return g.db_session


def database_write_problem(session: Session) -> str | None:
    """Return why the database refuses a write, or None when it takes one.

    The probe rewrites alembic_version's one row (always present, read by nobody at run time) and
    rolls back: a read-only file or server, a write privilege taken away, or a lock held past
    the busy timeout all fail it; the database keeps nothing of it.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        session.execute(text("UPDATE alembic_version SET version_num = version_num"))
        session.flush()
    except SQLAlchemyError as exc:
        return type(exc).__name__
    finally:
        session.rollback()
    return None
