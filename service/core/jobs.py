"""The one scheduler (APScheduler) for all background work, and `canhgac worker`."""

from __future__ import annotations

import inspect
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache

import click
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.cliutil import data_dir_option, make_app
from service.core.db import Base, UTCDateTime, new_session, utcnow

log = structlog.get_logger("canhgac.jobs")

# job id -> (function(app, session), interval seconds getter)
JOBS: dict[str, tuple[Callable, Callable]] = {}


def job(job_id: str, every: Callable[[object], float]) -> Callable:
    """Register a background job with a stable id, run every `every(settings)` seconds."""

    def decorate(func: Callable) -> Callable:
        JOBS[job_id] = (func, every)
        return func

    return decorate


class JobRun(Base):
    """A scheduled job's claim on one time slot; the unique key makes it run once per slot."""

    __tablename__ = "job_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    runner: Mapped[str] = mapped_column(String(128))

    __table_args__ = (UniqueConstraint("job_id", "slot_start", name="uq_job_run_job_id_slot"),)


def slot_start(now: datetime, interval_seconds: float) -> datetime:
    """Return the start of the time slot `now` falls in: floor(now / interval) · interval."""
    if now.tzinfo is None:
        raise ValueError("naive datetime refused; use aware UTC datetimes")
    step = max(1, int(interval_seconds))
    epoch = int(now.astimezone(UTC).timestamp() // 1)
    return datetime.fromtimestamp(epoch - epoch % step, UTC)


@cache
def _accepts_now(func: Callable) -> bool:
    return "now" in inspect.signature(func).parameters


def run_job(app: Flask, job_id: str, *, now: datetime | None = None,
            exactly_once: bool = False) -> bool:
    """Run one job once in its own session and commit once; return whether it ran.

    It is skipped when another runner holds the job (PostgreSQL advisory lock) and, with
    ``exactly_once`` (what the scheduler uses), when any instance already ran it in the current
    slot of its interval: the slot claim commits with the job's work, so a failed run frees
    the slot for a retry. ``now`` (aware UTC) is passed to jobs that take it, for tests.
    """
    func, every = JOBS[job_id]
    now = now or utcnow()
    session = new_session(app)
    try:
        with app.app_context():
            if not _try_job_lock(session, job_id):
                session.rollback()
                return False
            if exactly_once and not _claim_slot(session, job_id, slot_start(now, every(app.config["SETTINGS"]))):
                session.rollback()
                log.debug("job_slot_taken", job=job_id)
                return False
            if _accepts_now(func):
                func(app, session, now=now)
            else:
                func(app, session)
            session.commit()
            return True
    except Exception:
        session.rollback()
        log.exception("job_failed", job=job_id)
        return False
    finally:
        session.close()


def _claim_slot(session, job_id: str, start: datetime) -> bool:
    # INSERT … ON CONFLICT DO NOTHING: on PostgreSQL a second instance waits for the first
    # one's transaction and inserts nothing if it committed (or claims the slot if it rolled
    # back); on SQLite BEGIN IMMEDIATE already serializes the two writers.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(JobRun).values(
        job_id=job_id, slot_start=start, started_at=utcnow(), runner=_runner_name(),
    ).on_conflict_do_nothing(index_elements=["job_id", "slot_start"]).returning(JobRun.id)
    # RETURNING, not rowcount: drivers report rowcount of ORM inserts inconsistently.
    return session.execute(statement).first() is not None


def _runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


JOB_RUN_KEEP = timedelta(days=7)  # longer than any interval: an older slot never comes back


def prune_job_runs(session, now: datetime) -> int:
    """Delete slot claims older than JOB_RUN_KEEP; return how many (flush only)."""
    from sqlalchemy import delete

    result = session.execute(delete(JobRun).where(JobRun.slot_start < now - JOB_RUN_KEEP))
    return result.rowcount or 0


@job("core.prune_job_runs", every=lambda s: 86400)
def prune_job_runs_job(app, session, now: datetime | None = None) -> None:
    """Keep the slot-claim table small (about a week of claims)."""
    prune_job_runs(session, now or utcnow())


def _try_job_lock(session, job_id: str) -> bool:
    # On PostgreSQL several instances may run the scheduler: a transaction-level advisory lock
    # lets exactly one of them run a given job at a time. SQLite's BEGIN IMMEDIATE already
    # serializes writers on one database file.
    if session.get_bind().dialect.name != "postgresql":
        return True
    import zlib

    from sqlalchemy import text

    key = zlib.crc32(job_id.encode())
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())


def build_scheduler(app: Flask) -> BackgroundScheduler:
    """Create a scheduler with every registered job."""
    _import_job_modules()
    settings = app.config["SETTINGS"]
    scheduler = BackgroundScheduler(timezone="UTC")
    for job_id, (_func, every) in JOBS.items():
        seconds = every(settings)
        scheduler.add_job(
            run_job, "interval", seconds=seconds, args=(app, job_id),
            kwargs={"exactly_once": True}, id=job_id, start_date=_aligned_start(seconds),
            max_instances=1, coalesce=True, replace_existing=True,
        )
    return scheduler


def _aligned_start(seconds: float) -> datetime:
    # Fire a little after each slot boundary, so every instance aims at the same slot and
    # clock jitter never pushes one firing into the next slot (which would skip a run).
    step = max(1, int(seconds))
    offset = min(5.0, step / 10)
    return slot_start(utcnow(), step) - timedelta(seconds=step) + timedelta(seconds=offset)


def _import_job_modules() -> None:
    import importlib

    for name in ("service.audit.jobs", "service.auth.jobs", "service.incidents.jobs", "service.notify.jobs",
                 "service.reports.jobs", "service.events.jobs"):
        importlib.import_module(name)


def start_background(app: Flask, *, is_primary: bool = True) -> None:
    """Start the policy and, in a primary process, the scheduler when enabled in the settings.

    A secondary server process (service/core/workers.py) runs no scheduled job: its primary
    does. It still delivers notifications right after its own commits (notify/wiring.py).
    """
    processor = app.extensions.get("canhgac.processor")
    if processor is not None:
        processor.start(is_primary=is_primary)
        app.extensions["canhgac.processor_started"] = True
    if not is_primary or not app.config["SETTINGS"].scheduler_enabled:
        return
    scheduler = build_scheduler(app)
    scheduler.start()
    app.extensions["canhgac.scheduler"] = scheduler


def stop_background(app: Flask) -> None:
    """Stop the scheduler, waiting for running jobs."""
    processor = app.extensions.get("canhgac.processor")
    if processor is not None:
        processor.stop_watching()
    scheduler = app.extensions.pop("canhgac.scheduler", None)
    if scheduler is not None:
        scheduler.shutdown(wait=True)
    from service.notify.wiring import stop_dispatcher

    stop_dispatcher(app)


@click.command("worker")
@data_dir_option
def worker_command(data_dir) -> None:
    """Run the background jobs only (no web server)."""
    app = make_app(data_dir, scheduler_enabled=True)
    start_background(app)
    stop = threading.Event()
    click.echo("Canh Gác worker running; Ctrl-C to stop", err=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_background(app)
