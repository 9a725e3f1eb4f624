"""Background job: sign a checkpoint when the tree grew."""

from __future__ import annotations

from service.audit.operations import sign_checkpoint
from service.core.jobs import job


@job("audit.sign_checkpoint", every=lambda s: s.checkpoint_interval_seconds)
def sign_checkpoint_job(app, session) -> None:
    """Sign a checkpoint if the tree grew since the last one."""
    sign_checkpoint(session, app.config["SETTINGS"])
