"""`canhgac proof …` prints RFC 9162 proofs; the monitor re-verifies each new signed stretch."""

from __future__ import annotations

import base64
import json

from service.audit import merkle


def _grow(app, count: int, kind: str = "test.proof") -> None:
    from service.audit import log
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        log.append_entries(s, [log.PendingEntry(kind, {"n": i}) for i in range(count)])
        s.commit()
        s.close()


def _sign(app):
    from service.audit.operations import sign_checkpoint
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        cp = sign_checkpoint(s, app.config["SETTINGS"])
        s.commit()
        out = cp.size, cp.root_hash, cp.note
        s.close()
    return out


def _hashes(output: str) -> list[bytes]:
    return [base64.b64decode(line, validate=True) for line in output.splitlines() if line]


def test_proof_commands_print_proofs_that_verify(app, runner, session):
    from service.audit.models import AuditEntry

    _grow(app, 37)
    old_size, old_root, _ = _sign(app)
    _grow(app, 58)
    size, root, _ = _sign(app)
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
    _grow(app, 1500)
    first, _, _ = _sign(app)
    result = _monitor(app)
    assert result.is_ok and (result.from_size, result.to_size) == (0, first)
    _grow(app, 20)
    _sign(app)
    _grow(app, 5)
    third, _, _ = _sign(app)
    result = _monitor(app)
    assert result.is_ok and (result.from_size, result.to_size, result.checkpoints) == (first, third, 2)
    assert _monitor(app).to_size == third  # nothing new: nothing read

    # A database-level rewrite of an already verified entry, rehashed and re-signed by the
    # server's key (nodes, leaf, checkpoint): the next stretch no longer extends what was
    # verified, so the monitor's root differs.
    from service.audit import log
    from service.audit.checkpoint import format_checkpoint, sign_note
    from service.audit.keys import load_signer_key
    from service.audit.models import AuditEntry, Checkpoint, MerkleNode
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        row = s.get(AuditEntry, 3)
        entry = json.loads(row.body)
        entry["body"]["n"] = 999
        data = log.entry_bytes(3, entry["recorded_at"], entry["kind"], entry["body"])
        row.body, row.leaf_hash = data.decode(), merkle.leaf_hash(data)
        s.flush()
        s.query(MerkleNode).delete()
        size = log.tree_size(s)
        leaves = log.node_range(s, 0, 0, size)
        nodes = merkle.CompactRange().append(leaves)
        s.add_all([MerkleNode(level=lv, index=i, hash=h) for lv, i, h in nodes if lv > 0])
        s.flush()
        root = log.root_at(s, size)
        note = sign_note(format_checkpoint(app.config["SETTINGS"].audit_origin, size, root),
                         load_signer_key(app.config["SETTINGS"].keys_dir))
        s.add(Checkpoint(size=size, root_hash=root, note=note, signed_at=row.recorded_at))
        s.commit()
        s.close()
    _grow(app, 4)
    _sign(app)
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
    _grow(app, 30)
    size, _, _ = _sign(app)
    assert run_job(app, "audit.monitor")
    assert session.get(MonitorState, 1).verified_size == size
    session.rollback()
    assert run_job(app, "audit.witness_submit")  # no witness configured: nothing to send
    _grow(app, 3)
    _sign(app)
    result = runner.invoke(["monitor"])
    assert result.exit_code == 0 and "VALID" in result.output, result.output
    reset = runner.invoke(["monitor", "--reset"])
    assert reset.exit_code == 0 and "entries 0–" in reset.output, reset.output
