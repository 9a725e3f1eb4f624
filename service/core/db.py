"""Database engine, session and model base; SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import weakref
from datetime import UTC, datetime

import structlog
from flask import Flask, current_app, g
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
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


def _sqlite_begin_immediate(conn) -> None:
    # Take the write lock at BEGIN: a deferred transaction that reads and then writes fails
    # with SQLITE_BUSY under concurrent writers in WAL mode instead of waiting its turn.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


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
