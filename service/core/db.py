"""Database engine, session and model base; SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

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


try:
    import fcntl
except ImportError:  # Windows: the gate is this process's only (see _FileGate)
    fcntl = None

# How long a writer of another process sleeps between looks at the file gate: the first look
# comes at once, then after 0.1, 0.2, 0.4, 0.8, then every 1 ms (SQLite's own busy handler
# sleeps up to 100 ms). At most one thread per process looks: the others wait on its lock.
FILE_GATE_FIRST_SLEEP = 0.0001
FILE_GATE_MAX_SLEEP = 0.001


class _FileGate:
    """The writer gate across processes: an exclusive flock on a file beside the database.

    Every app on the database file (the server's processes, `canhgac worker`, a CLI command)
    takes it before SQLite's write lock, so writers of different processes follow each other
    within a millisecond instead of meeting in SQLite's busy handler. The file is opened for
    each transaction and closed after it (closing releases the lock, also when a process dies):
    a process keeps no descriptor between writes. Where it cannot be created (a read-only
    directory) the gate is left out and SQLite's own lock does the work, as before.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._is_unusable = fcntl is None

    def acquire(self, deadline: float) -> bool:
        """Take the file lock before the monotonic ``deadline``; return whether it is held."""
        if self._is_unusable:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            self._is_unusable = True
            structlog.get_logger(__name__).warning("writer_file_gate_unusable", path=str(self.path),
                                                   error=exc.strerror)
            return False
        sleep = FILE_GATE_FIRST_SLEEP
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:  # say so, then meet SQLite's own lock
                    os.close(fd)
                    structlog.get_logger(__name__).warning("writer_file_gate_timeout",
                                                           path=str(self.path))
                    return False
                time.sleep(sleep)
                sleep = min(sleep * 2, FILE_GATE_MAX_SLEEP)
                continue
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
            return True

    def release(self) -> None:
        """Release the file lock (closing the file releases it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _WriterGate:
    """One writer at a time per database, handed over by locks instead of SQLite's busy sleeps.

    SQLite's busy handler polls: a writer that finds the lock taken sleeps 1, 2, 5 … up to
    100 ms between tries, so under many concurrent requests the lock often sits free while
    every waiter sleeps (measured: most of an ingest's latency under 100 clients). Threads of
    this process wait on a lock instead and the next one starts the moment it is released;
    the holder then takes the file gate that writers of other processes (the server's other
    processes, a worker, the CLI) take too, if the database is a file.
    """

    def __init__(self, timeout: float, file_gate: _FileGate | None = None) -> None:
        self._lock = threading.Lock()
        self._holder: object | None = None
        self._has_file_lock = False
        self._timeout = timeout
        self._file_gate = file_gate

    def begin(self, conn) -> None:
        """Take the gate, then SQLite's write lock (BEGIN IMMEDIATE) for this connection."""
        dbapi_conn = conn.connection.dbapi_connection
        deadline = time.monotonic() + self._timeout
        # Bounded like SQLite's busy timeout: a thread that already writes and opens a second
        # writing session gets SQLite's "database is locked" after it, never a silent hang.
        is_held = self._lock.acquire(timeout=self._timeout)
        if is_held:
            self._holder = dbapi_conn
            if self._file_gate is not None:
                self._has_file_lock = self._file_gate.acquire(deadline)
        else:  # a writer held it past the busy timeout: say so, then meet SQLite's own lock
            structlog.get_logger(__name__).warning("writer_gate_timeout", seconds=self._timeout)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.release(dbapi_conn)
            raise

    def release(self, dbapi_conn) -> None:
        """Open the gate if this connection holds it (after its COMMIT or ROLLBACK, or close)."""
        # Called with the pool's wrapper (Connection.connection) or the driver's connection.
        dbapi_conn = getattr(dbapi_conn, "dbapi_connection", dbapi_conn)
        if dbapi_conn is not None and self._holder is dbapi_conn:
            self._holder = None
            if self._has_file_lock:
                self._has_file_lock = False
                self._file_gate.release()
            self._lock.release()

    def attach(self, engine: Engine) -> None:
        """Release the gate whenever the engine's dialect ends a transaction or a connection."""
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback", "do_close"):
            ends = getattr(dialect, name)

            def wrapped(dbapi_conn, *args, _ends=ends, **kwargs):
                try:
                    return _ends(dbapi_conn, *args, **kwargs)
                finally:
                    self.release(dbapi_conn)

            # The dialect is this engine's own instance: the pool's reset and close go
            # through these same methods, so no path ends a transaction without opening the gate.
            setattr(dialect, name, wrapped)


def _sqlite_begin(gate: _WriterGate):
    def begin(conn) -> None:
        # Take the write lock at BEGIN: a deferred transaction that reads and then writes fails
        # with SQLITE_BUSY under concurrent writers in WAL mode instead of waiting its turn.
        # Pages that only read begin deferred instead (reads_first): WAL readers then run
        # beside the writer instead of queueing behind every ingest's fsync.
        if _BEGIN_DEFERRED.get():
            conn.exec_driver_sql("BEGIN")
        else:
            gate.begin(conn)

    return begin


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


@contextmanager
def reading(session: Session) -> Iterator[None]:
    """Run the statements inside in a read transaction and end it, so the writes after wait alone.

    On SQLite a request's first statement otherwise takes the write lock (BEGIN IMMEDIATE), and
    everything up to its commit holds every other writer of every process back: a look-up that
    only reads (the bearer token) is done in a WAL read snapshot instead, and the write lock is
    taken by the first statement after. Nothing inside may change a row (the snapshot cannot
    become a write); rows read stay loaded (expire_on_commit is off) and may be changed after.
    Elsewhere (PostgreSQL, or a transaction already open) it changes nothing.
    """
    is_split = (session.get_bind().dialect.name == "sqlite" and not session.in_transaction()
                and not _BEGIN_DEFERRED.get())
    if not is_split:
        yield
        return
    token = _BEGIN_DEFERRED.set(True)
    try:
        yield
    finally:
        _BEGIN_DEFERRED.reset(token)
    if session.in_transaction():
        session.commit()  # a read-only transaction: nothing to flush, no fsync


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


def _file_gate_of(engine: Engine) -> _FileGate | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:") \
            or engine.url.query.get("mode") == "memory":
        return None
    # Beside the database, not inside the data directory's keys or exports: a backup copies
    # the database through SQLite's backup API, never this file.
    return _FileGate(Path(f"{database}-writer.lock"))


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine with the pragmas and locking this service relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        gate = _WriterGate(timeout=30, file_gate=_file_gate_of(engine))
        gate.attach(engine)
        event.listen(engine, "begin", _sqlite_begin(gate))
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
        with writing(session):  # a GET probe: the write lock is what it asks about
            session.execute(text("UPDATE alembic_version SET version_num = version_num"))
            session.flush()
    except SQLAlchemyError as exc:
        return type(exc).__name__
    finally:
        session.rollback()
    return None
