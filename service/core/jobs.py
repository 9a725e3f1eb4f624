"""The one scheduler (APScheduler) for all background work, and `canhgac worker`."""

from __future__ import annotations

import threading
from collections.abc import Callable

import click
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from service.core.cliutil import data_dir_option, make_app
from service.core.db import new_session

log = structlog.get_logger("canhgac.jobs")

# job id -> (function(app, session), interval seconds getter)
JOBS: dict[str, tuple[Callable, Callable]] = {}


def job(job_id: str, every: Callable[[object], float]) -> Callable:
    """Register a background job with a stable id, run every `every(settings)` seconds."""

    def decorate(func: Callable) -> Callable:
        JOBS[job_id] = (func, every)
        return func

    return decorate


def run_job(app: Flask, job_id: str) -> None:
    """Run one job once in its own session and commit once; skip if another runner holds it."""
    func, _ = JOBS[job_id]
    session = new_session(app)
    try:
        with app.app_context():
            if not _try_job_lock(session, job_id):
                session.rollback()
                return
            func(app, session)
            session.commit()
    except Exception:
        session.rollback()
        log.exception("job_failed", job=job_id)
    finally:
        session.close()


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
        scheduler.add_job(
            run_job, "interval", seconds=every(settings), args=(app, job_id), id=job_id,
            max_instances=1, coalesce=True, replace_existing=True,
        )
    return scheduler


def _import_job_modules() -> None:
    import importlib

    for name in ("service.audit.jobs", "service.incidents.jobs", "service.notify.jobs",
                 "service.reports.jobs", "service.events.jobs"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def start_background(app: Flask) -> None:
    """Start the scheduler for this process when enabled in the settings."""
    processor = app.extensions.get("canhgac.processor")
    if processor is not None:
        processor.start()
        app.extensions["canhgac.processor_started"] = True
    if not app.config["SETTINGS"].scheduler_enabled:
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
