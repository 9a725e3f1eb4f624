"""Background jobs: forget stale login failures and dead sessions so both tables stay small."""

from __future__ import annotations

from datetime import timedelta

from service.auth.grants import expire_grants
from service.auth.operations import prune_login_throttle
from service.auth.sessions import prune_sessions
from service.core.db import utcnow
from service.core.jobs import job


@job("auth.throttle_cleanup", every=lambda s: 3600)
def throttle_cleanup_job(app, session) -> None:
    """Delete throttle rows with no lockout in force and no failure for a day."""
    prune_login_throttle(session, utcnow() - timedelta(days=1))


@job("auth.session_cleanup", every=lambda s: 3600)
def session_cleanup_job(app, session) -> None:
    """Delete server-side sessions ended, or started, more than a day past the longest life."""
    settings = app.config["SETTINGS"]
    longest = max(timedelta(hours=settings.session_max_hours),
                  timedelta(minutes=settings.session_idle_minutes))
    prune_sessions(session, utcnow() - longest - timedelta(days=1))


@job("auth.grant_expiry", every=lambda s: 300)
def grant_expiry_job(app, session, now=None) -> None:
    """Close pending role grants past their time, each with its own trail entry."""
    expire_grants(session, now)
