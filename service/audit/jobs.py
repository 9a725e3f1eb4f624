"""Background jobs: sign checkpoints, re-verify the trail, send checkpoints to witnesses."""

from __future__ import annotations

from service.audit.operations import sign_checkpoint
from service.core.jobs import job


@job("audit.sign_checkpoint", every=lambda s: s.checkpoint_interval_seconds)
def sign_checkpoint_job(app, session) -> None:
    """Sign a checkpoint if the tree grew since the last one."""
    sign_checkpoint(session, app.config["SETTINGS"])


@job("audit.monitor", every=lambda s: s.monitor_interval_seconds)
def monitor_job(app, session) -> None:
    """Re-verify the entries signed since the last run; a failure is a critical alert."""
    from service.audit.monitor import verify_new_stretch

    verify_new_stretch(session, app.config["SETTINGS"])


@job("audit.witness_submit", every=lambda s: s.witness_submit_seconds)
def witness_submit_job(app, session) -> None:
    """Send the newest checkpoint to every witness that has not cosigned it yet (commits)."""
    from service.audit.witnessing import submit_checkpoints

    submit_checkpoints(session, app.config["SETTINGS"])
