"""Background jobs: catch-up dispatch of the outbox and pruning of old delivered rows."""

from __future__ import annotations

from service.core.jobs import job
from service.notify.dispatcher import dispatch_pending
from service.notify.outbox import prune_delivered

CLEANUP_EVERY_SECONDS = 6 * 3600


@job("notify.dispatch", every=lambda s: s.notify_dispatch_interval_seconds)
def dispatch_job(app, session) -> None:
    """Deliver whatever is due (other processes' messages, retries, expired claims)."""
    dispatch_pending(session, app.config["SETTINGS"])


@job("notify.cleanup", every=lambda s: CLEANUP_EVERY_SECONDS)
def cleanup_job(app, session) -> None:
    """Delete delivered rows older than notify_retention_days; the audit entries stay."""
    prune_delivered(session, app.config["SETTINGS"])


@job("notify.sms_inbox", every=lambda s: s.sms_inbox_interval_seconds)
def sms_inbox_job(app, session) -> None:
    """Read SMS replies from gammu-smsd's inbox folder (when sms_inbox_dir is set)."""
    from service.notify.replies import read_inbox

    read_inbox(session, app.config["SETTINGS"])
