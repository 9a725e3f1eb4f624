"""Two instances over real HTTP: one (`canhgac serve`) witnesses the other's trail.

The witness runs as a real server in a subprocess; the witnessed instance sends its
checkpoints with the background job's own function (urllib, no test double), stores the
cosignatures and keeps them; a database-level rewrite of its history is then refused by the
witness (a critical alert) and fails `canhgac verify --witness-key`.
"""

from __future__ import annotations

import pytest

from tests.test_reliability_support import LiveServer, cli_env, run_cli
from tests.trail_support import grow_and_sign, rewrite_entry


@pytest.fixture
def witness_server(tmp_path):
    """A second instance (its own data directory and SQLite database) served by hypercorn."""
    data_dir = tmp_path / "witness-data"
    env = cli_env(None, CANHGAC_AUDIT_ORIGIN="canhgac.tinh.langson/audit")
    init = run_cli(["init", "--data-dir", str(data_dir), "--non-interactive",
                    "--admin", "quan-tri", "--admin-email", "quan-tri@tinh.example"], env)
    assert init.returncode == 0, init.stderr[-2000:]
    server = LiveServer(data_dir, env, log_dir=tmp_path)
    server.start(timeout=60)
    try:
        def cli(*args: str):
            command, sub, *rest = args
            return run_cli([command, sub, "--data-dir", str(data_dir), *rest], env)

        yield {"url": f"http://127.0.0.1:{server.port}/witness",
               "key": (data_dir / "keys" / "witness.pub").read_text().strip(), "cli": cli}
    finally:
        server.kill()


def _submit(app) -> int:
    from service.audit.witnessing import submit_checkpoints
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        try:
            return submit_checkpoints(s, app.config["SETTINGS"])
        finally:
            s.close()


def test_one_instance_witnesses_the_other(app, runner, witness_server, make_user):
    from service.audit.cosign import find_cosignature, parse_cosigner_verifier
    from service.audit.models import Checkpoint, Cosignature
    from service.core.db import new_session
    from service.incidents.models import Alert

    make_user("cong-an", "police")
    settings = app.config["SETTINGS"]
    own_key = (settings.keys_dir / "checkpoint.pub").read_text().strip()
    added = witness_server["cli"]("witness", "add-log", "--key", own_key)
    assert added.returncode == 0, added.stderr
    result = runner.invoke(["witness", "add-witness", "--url", witness_server["url"],
                            "--key", witness_server["key"]])
    assert result.exit_code == 0, result.output

    first, _, _ = grow_and_sign(app, 40, "test.witnessed")
    assert _submit(app) == 1
    second, _, _ = grow_and_sign(app, 300, "test.witnessed")
    assert _submit(app) == 1  # old size `first` and a consistency proof
    assert _submit(app) == 0  # nothing new
    listing = witness_server["cli"]("witness", "list")
    assert f"{settings.audit_origin}\t{second}" in listing.stdout, listing.stdout

    key = parse_cosigner_verifier(witness_server["key"])
    with app.app_context():
        s = new_session(app)
        rows = s.query(Cosignature).join(Checkpoint).order_by(Checkpoint.size).all()
        assert [r.checkpoint_id for r in rows] and len(rows) == 2
        for row in rows:
            cp = s.get(Checkpoint, row.checkpoint_id)
            assert find_cosignature(row.line, cp.note.split("\n\n")[0] + "\n", key) > 0
        s.close()
    assert first < second

    ok = runner.invoke(["verify", "--witness-key", witness_server["key"]])
    assert ok.exit_code == 0, ok.output
    assert "entries past the last cosigned checkpoint (size" in ok.output

    # A database-level rewrite, re-signed with the server's own key: the witness refuses the
    # new checkpoint (422) and the refusal is a critical alert; verify --witness-key fails.
    rewrite_entry(app, 2, {"n": "đã sửa"}, re_sign=True)
    assert _submit(app) == 0
    with app.app_context():
        s = new_session(app)
        alerts = s.query(Alert).filter_by(rule_id="audit.witness_refused").all()
        assert [a.severity for a in alerts] == ["critical"]
        s.close()
    bad = runner.invoke(["verify", "--witness-key", witness_server["key"]])
    assert bad.exit_code == 1, bad.output
    assert "INVALID" in bad.output
    # Deleting the cosignatures and every old checkpoint, then signing afresh, fools plain
    # verify (VALID: the trail agrees with itself and its one checkpoint) but not the witness.
    from service.audit.operations import sign_checkpoint

    with app.app_context():
        s = new_session(app)
        from service.notify.models import OutboxMessage

        s.query(Cosignature).delete()
        s.query(OutboxMessage).update({"checkpoint_id": None})
        s.query(Checkpoint).delete()
        s.flush()
        sign_checkpoint(s, settings)
        s.commit()
        s.close()
    assert runner.invoke(["verify"]).exit_code == 0
    gone = runner.invoke(["verify", "--witness-key", witness_server["key"]])
    assert gone.exit_code == 1 and "cosigned by 1" in gone.output
    # Refused witnesses are not asked again until a person resets them; the witness still
    # refuses the rewritten history, and the open alert is not repeated.
    listing = runner.invoke(["witness", "list"])
    assert "REFUSED" in listing.output
    assert runner.invoke(["witness", "reset", "canhgac.tinh.langson/witness"]).exit_code == 0
    assert _submit(app) == 0
    with app.app_context():
        s = new_session(app)
        assert s.query(Alert).filter_by(rule_id="audit.witness_refused").count() == 1
        s.close()
    assert "REFUSED" in runner.invoke(["witness", "list"]).output
