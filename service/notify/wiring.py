"""Notify wiring: wake a per-app dispatcher thread when a transaction that enqueued commits.

The thread starts lazily on the first wake-up (so CLI commands that never notify start no
thread), delivers with `dispatch_pending`, then sleeps until the next retry is due or the
next wake-up. It runs when both `notify_dispatch_immediately` and `scheduler_enabled` are
true: `scheduler_enabled = false` is the switch that turns off every background activity of
a process (tests, one-shot tools). The `notify.dispatch` job catches up on anything the
thread did not see (other processes, restarts, retries after a crash).
"""

from __future__ import annotations

import threading
from datetime import datetime

import structlog
from flask import Flask
from sqlalchemy import event

from service.core.db import new_session, utcnow
from service.notify.dispatcher import DispatchStats, dispatch_pending
from service.notify.outbox import WAKE_KEY

log = structlog.get_logger("canhgac.notify")
EXTENSION = "canhgac.notify_dispatcher"
# Shortest sleep between passes while retries are due, so a broken channel cannot spin.
MIN_SLEEP_SECONDS = 0.05


def is_dispatcher_enabled(settings) -> bool:
    """Return whether this process delivers right after commit (see the module docstring)."""
    return bool(settings.notify_dispatch_immediately and settings.scheduler_enabled)


class Dispatcher:
    """The background thread of one app that delivers the outbox right after commits."""

    def __init__(self, app: Flask, enabled: bool) -> None:
        self.app = app
        self.is_enabled = enabled
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last_stats: DispatchStats | None = None

    def wake(self) -> None:
        """Ask for a dispatch pass soon; start the thread on first use."""
        if not self.is_enabled or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="canhgac-notify",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, letting a pass in progress finish."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def is_running(self) -> bool:
        """Return whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _pass(self) -> DispatchStats | None:
        session = new_session(self.app)
        try:
            return dispatch_pending(session, self.app.config["SETTINGS"])
        except Exception:
            # The job retries later; the thread must survive a database hiccup.
            session.rollback()
            log.exception("notify_dispatch_failed")
            return None
        finally:
            session.close()
            self.passes += 1

    def _sleep_seconds(self, stats: DispatchStats | None) -> float | None:
        settings = self.app.config["SETTINGS"]
        if stats is None:
            return float(settings.notify_dispatch_interval_seconds)
        due: datetime | None = stats.next_due_at
        if due is None:
            return None
        wait = (due - utcnow()).total_seconds()
        return min(max(wait, MIN_SLEEP_SECONDS), float(settings.notify_retry_max_seconds))

    def _run(self) -> None:
        timeout: float | None = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            stats = self._pass()
            self.last_stats = stats
            timeout = self._sleep_seconds(stats)


def get_dispatcher(app: Flask) -> Dispatcher:
    """Return the app's dispatcher."""
    return app.extensions[EXTENSION]


def stop_dispatcher(app: Flask, timeout: float = 10.0) -> None:
    """Stop the app's dispatcher thread if it runs (call before disposing the engine)."""
    dispatcher = app.extensions.get(EXTENSION)
    if dispatcher is not None:
        dispatcher.stop(timeout)


def init_app(app: Flask) -> None:
    """Create the dispatcher and wake it after each commit that enqueued messages."""
    dispatcher = Dispatcher(app, is_dispatcher_enabled(app.config["SETTINGS"]))
    app.extensions[EXTENSION] = dispatcher
    factory = app.extensions["canhgac.sessionmaker"]

    def _after_commit(session) -> None:
        if session.info.pop(WAKE_KEY, False):
            dispatcher.wake()

    def _after_soft_rollback(session, previous_transaction) -> None:
        # Only the outermost rollback discards the messages; a savepoint's does not.
        if previous_transaction.parent is None:
            session.info.pop(WAKE_KEY, None)

    event.listen(factory, "after_commit", _after_commit)
    event.listen(factory, "after_soft_rollback", _after_soft_rollback)
