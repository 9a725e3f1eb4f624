"""`canhgac proof …` prints RFC 9162 proofs; the monitor re-verifies each new signed stretch."""

from __future__ import annotations

import base64

from service.audit import merkle
from tests.trail_support import grow, rewrite_entry, sign


def _hashes(output: str) -> list[bytes]:
    return [base64.b64decode(line, validate=True) for line in output.splitlines() if line]


def test_proof_commands_print_proofs_that_verify(app, runner, session):
    from service.audit.models import AuditEntry

    grow(app, 37)
    old_size, old_root, _ = sign(app)
    grow(app, 58)
    size, root, _ = sign(app)
    body = session.get(AuditEntry, 11).body.encode()
    session.rollback()  # SQLite: end the read, the CLI writes its own app's session
    result = runner.invoke(["proof", "inclusion", "--seq", "11"])
    assert result.exit_code == 0, result.output
    proof = _hashes(result.stdout)
    assert len(proof) == merkle.inclusion_proof_size(11, size)
    merkle.verify_inclusion(merkle.leaf_hash(body), 11, size, proof, root)
    result = runner.invoke(["proof", "inclusion", "--seq", "11", "--size", str(old_size)])
    merkle.verify_inclusion(merkle.leaf_hash(body), 11, old_size, _hashes(result.stdout), old_root)

    result = runner.invoke(["proof", "consistency", "--from", str(old_size), "--to", str(size)])
    assert result.exit_code == 0, result.output
    merkle.verify_consistency(old_size, size, old_root, root, _hashes(result.stdout))
    assert runner.invoke(["proof", "consistency", "--from", "5", "--to", "99999"]).exit_code == 1
    assert runner.invoke(["proof", "inclusion", "--seq", str(size)]).exit_code == 1


def _monitor(app):
    from service.audit.monitor import verify_new_stretch
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        result = verify_new_stretch(s, app.config["SETTINGS"])
        s.commit()
        s.close()
    return result


def test_monitor_verifies_incrementally_and_alerts_on_a_rewrite(app, session, make_user):
    from service.incidents.models import Alert
    from service.notify.models import OutboxMessage

    make_user("cong-an", "police")
    grow(app, 1500)
    first, _, _ = sign(app)
    result = _monitor(app)
    assert result.is_ok and (result.from_size, result.to_size) == (0, first)
    grow(app, 20)
    sign(app)
    grow(app, 5)
    third, _, _ = sign(app)
    result = _monitor(app)
    assert result.is_ok and (result.from_size, result.to_size, result.checkpoints) == (first, third, 2)
    assert _monitor(app).to_size == third  # nothing new: nothing read

    # A database-level rewrite of an already verified entry, rehashed and re-signed by the
    # server's key (nodes, leaf, checkpoint): the next stretch no longer extends what was
    # verified, so the monitor's root differs.
    rewrite_entry(app, 3, {"n": 999}, re_sign=True)
    grow(app, 4)
    sign(app)
    result = _monitor(app)
    assert not result.is_ok and "rewritten" in result.problem
    alerts = session.query(Alert).filter_by(rule_id="audit.monitor_failed").all()
    assert [a.severity for a in alerts] == ["critical"]
    assert session.query(OutboxMessage).filter_by(kind="audit.integrity").count() >= 1
    session.rollback()
    assert _monitor(app).problem == "already reported"
    assert session.query(Alert).filter_by(rule_id="audit.monitor_failed").count() == 1


def test_monitor_runs_as_a_job_and_from_the_cli(app, runner, session):
    import service.audit.jobs  # noqa: F401 - registers the trail's jobs, as the scheduler does
    from service.audit.models import MonitorState
    from service.core.jobs import JOBS, run_job

    assert {"audit.monitor", "audit.witness_submit"} <= set(JOBS)
    grow(app, 30)
    size, _, _ = sign(app)
    assert run_job(app, "audit.monitor")
    assert session.get(MonitorState, 1).verified_size == size
    session.rollback()
    assert run_job(app, "audit.witness_submit")  # no witness configured: nothing to send
    grow(app, 3)
    sign(app)
    result = runner.invoke(["monitor"])
    assert result.exit_code == 0 and "VALID" in result.output, result.output
    reset = runner.invoke(["monitor", "--reset"])
    assert reset.exit_code == 0 and "entries 0–" in reset.output, reset.output
