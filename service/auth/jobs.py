"""Background job: forget stale login failures so the throttle table stays small."""

from __future__ import annotations

from datetime import timedelta

from service.auth.operations import prune_login_throttle
from service.core.db import utcnow
from service.core.jobs import job


@job("auth.throttle_cleanup", every=lambda s: 3600)
def throttle_cleanup_job(app, session) -> None:
    """Delete throttle rows with no lockout in force and no failure for a day."""
    prune_login_throttle(session, utcnow() - timedelta(days=1))
