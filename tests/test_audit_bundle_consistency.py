"""Bundles cite earlier checkpoints with consistency proofs and carry witness cosignatures."""

from __future__ import annotations

import json
import zipfile

from test_audit_bundle import _export, _rewrite, _standalone

from service.audit import log, merkle
from service.audit.checkpoint import format_checkpoint, sign_note
from service.audit.cosign import cosign, generate_cosigner_key, parse_cosigner_signer
from service.audit.keys import load_signer_key
from service.audit.models import Checkpoint, Cosignature, LogWitness
from service.audit.operations import sign_checkpoint
from service.core.db import utcnow


def _history(app, session):
    """Three checkpoints over a growing trail; the middle one cosigned by a witness."""
    settings = app.config["SETTINGS"]
    log.append_entries(session, [log.PendingEntry("event", {"actor": "canbo1", "i": i},
                                                  {"actor": "canbo1"}) for i in range(5)])
    sign_checkpoint(session, settings)
    log.append_entries(session, [log.PendingEntry("event", {"actor": "canbo2", "i": i},
                                                  {"actor": "canbo2"}) for i in range(7)])
    middle = sign_checkpoint(session, settings)
    signer_text, verifier = generate_cosigner_key("tinh.example/witness")
    witness = LogWitness(name="tinh.example/witness", url="http://tinh.example", size=middle.size,
                         verifier_key=verifier, added_at=utcnow())
    session.add(witness)
    session.flush()
    body = middle.note.split("\n\n")[0] + "\n"
    session.add(Cosignature(checkpoint_id=middle.id, witness_id=witness.id,
                            line=cosign(body, parse_cosigner_signer(signer_text)),
                            cosigned_at=utcnow()))
    log.append_entries(session, [log.PendingEntry("event", {"actor": "canbo1", "i": 9},
                                                  {"actor": "canbo1"})])
    session.commit()
    return middle.size, verifier


def test_bundle_cites_checkpoints_with_consistency_proofs_and_cosignatures(app, session, runner,
                                                                          tmp_path):
    cosigned_size, witness_key = _history(app, session)
    out = tmp_path / "b.zip"
    _export(runner, out, "--actor", "canbo1")
    with zipfile.ZipFile(out) as z:
        cited = [json.loads(line) for line in z.read("consistency.jsonl").splitlines()]
    sizes = [int(item["checkpoint"].splitlines()[1]) for item in cited]
    assert sizes == sorted(sizes) and cosigned_size in sizes and sizes[0] == 5
    assert any("tinh.example/witness" in item["checkpoint"] for item in cited)

    ok = runner.invoke(["verify", "--bundle", str(out), "--witness-key", witness_key])
    assert ok.exit_code == 0, ok.output
    alone = _standalone(out, tmp_path, "--witness-key", witness_key)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "proven consistent" in alone.stdout

    # Another witness's key: the quorum is not met, both verifiers refuse.
    _, other = generate_cosigner_key("khac.example/witness")
    assert runner.invoke(["verify", "--bundle", str(out), "--witness-key", other]).exit_code == 1
    assert _standalone(out, tmp_path, "--witness-key", other).returncode == 1
    assert runner.invoke(["verify", "--bundle", str(out), "--witness-key", witness_key,
                          "--witness-key", other, "--quorum", "1"]).exit_code == 0


def test_a_cited_checkpoint_from_another_history_fails_both_verifiers(app, session, runner,
                                                                     tmp_path):
    _history(app, session)
    out = tmp_path / "b.zip"
    _export(runner, out, "--actor", "canbo1")
    settings = app.config["SETTINGS"]
    forged_note = sign_note(format_checkpoint(settings.audit_origin, 5, merkle.leaf_hash(b"x")),
                            load_signer_key(settings.keys_dir))
    with zipfile.ZipFile(out) as z:
        lines = z.read("consistency.jsonl").splitlines()
    first = json.loads(lines[0])
    first["checkpoint"] = forged_note
    changed = b"\n".join([json.dumps(first).encode(), *lines[1:]]) + b"\n"
    bad = _rewrite(out, tmp_path / "bad.zip", consistency_jsonl=changed)
    # The manifest no longer matches: caught either way.
    assert runner.invoke(["verify", "--bundle", str(bad)]).exit_code == 1
    assert _standalone(bad, tmp_path).returncode == 1
    dropped = _rewrite(out, tmp_path / "dropped.zip", consistency_jsonl=None)
    assert runner.invoke(["verify", "--bundle", str(dropped)]).exit_code == 1
    assert _standalone(dropped, tmp_path).returncode == 1


def test_bundle_consistency_check_refuses_a_rewritten_cited_checkpoint(app, session, tmp_path):
    """The service's own bundle verifier checks the proofs (manifest re-signed with the key)."""
    import hashlib

    from service.audit.bundle import (
        CONSISTENCY_FILE,
        MANIFEST_FILE,
        BundleError,
        export_bundle,
        manifest_statement,
        verify_bundle,
    )
    from service.audit.search import SearchFilter

    _history(app, session)
    settings = app.config["SETTINGS"]

    out = tmp_path / "b.zip"
    export_bundle(session, settings, SearchFilter(), out, by="test")
    session.commit()
    with zipfile.ZipFile(out) as z:
        lines = z.read(CONSISTENCY_FILE).splitlines()
        manifest = json.loads(z.read(MANIFEST_FILE))
    item = json.loads(lines[0])
    item["checkpoint"] = sign_note(format_checkpoint(settings.audit_origin, 5,
                                                     merkle.leaf_hash(b"x")),
                                   load_signer_key(settings.keys_dir))
    changed = b"\n".join([json.dumps(item).encode(), *lines[1:]]) + b"\n"
    manifest["files"][CONSISTENCY_FILE] = hashlib.sha256(changed).hexdigest()
    manifest_bytes = json.dumps(manifest).encode()
    sig = sign_note(manifest_statement(settings.audit_origin, manifest_bytes),
                    load_signer_key(settings.keys_dir))
    bad = _rewrite(out, tmp_path / "bad.zip", consistency_jsonl=changed, manifest_json=manifest_bytes,
                   manifest_sig=sig.encode())
    try:
        verify_bundle(bad)
    except BundleError as exc:
        assert "not consistent" in str(exc)
    else:
        raise AssertionError("a rewritten cited checkpoint was accepted")
    alone = _standalone(bad, tmp_path)
    assert alone.returncode == 1 and "not extended" in alone.stdout
    session.rollback()
    assert session.query(Checkpoint).count() >= 3
