"""Witnessing other logs: POST /witness/add-checkpoint as C2SP tlog-witness says."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.audit import merkle
from service.audit.checkpoint import format_checkpoint, generate_key, sign_note

ORIGIN = "xa-ben-canh.example/audit"


class ForeignLog:
    """Another commune's log: leaves, a signing key, signed checkpoints and proofs."""

    def __init__(self) -> None:
        self.signer, self.verifier = generate_key(ORIGIN)
        self.leaves: list[bytes] = []

    def grow(self, count: int) -> None:
        start = len(self.leaves)
        self.leaves += merkle.leaf_hashes([f"entry {i}".encode() for i in range(start, start + count)])

    def note(self, size: int | None = None, root: bytes | None = None, signer: str | None = None) -> str:
        size = len(self.leaves) if size is None else size
        root = root if root is not None else merkle.root_hash(self.leaves[:size])
        return sign_note(format_checkpoint(ORIGIN, size, root), signer or self.signer)

    def request(self, old: int, note: str | None = None, proof: list[bytes] | None = None) -> bytes:
        if proof is None:
            proof = (merkle.consistency_proof(self.leaves, old) if 0 < old < len(self.leaves) else [])
        lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
        return ("\n".join(lines) + "\n\n" + (note or self.note())).encode()


def _post(client, body: bytes):
    return client.post("/witness/add-checkpoint", data=body)


def _witness_key(app) -> str:
    return (app.config["SETTINGS"].keys_dir / "witness.pub").read_text().strip()


def _check_cosignature(line: str, body: str, vkey: str) -> int:
    """Verify a cosignature/v1 line from the spec's words alone (not service.audit.cosign)."""
    name, key_id_hex, key64 = vkey.split("+", 2)
    material = base64.b64decode(key64)
    assert material[0] == 0x04
    assert hashlib.sha256(name.encode() + b"\n" + material).digest()[:4].hex() == key_id_hex
    dash, signer, sig64 = line.split(" ")
    assert dash == "\u2014" and signer == name
    raw = base64.b64decode(sig64)
    assert raw[:4].hex() == key_id_hex and len(raw) == 76
    stamp = int.from_bytes(raw[4:12], "big")
    message = f"cosignature/v1\ntime {stamp}\n".encode() + body.encode()
    Ed25519PublicKey.from_public_bytes(material[1:]).verify(raw[12:], message)
    return stamp


@pytest.fixture
def foreign(app, runner):
    log = ForeignLog()
    result = runner.invoke(["witness", "add-log", "--key", log.verifier])
    assert result.exit_code == 0, result.output
    return log


def test_add_checkpoint_cosigns_a_consistent_history(app, client, foreign, runner):
    foreign.grow(10)
    answer = _post(client, foreign.request(0))
    assert answer.status_code == 200, answer.data
    lines = answer.data.decode().splitlines()
    assert len(lines) == 1 and answer.data.endswith(b"\n")
    body = foreign.note().split("\n\n")[0] + "\n"
    stamp = _check_cosignature(lines[0], body, _witness_key(app))
    assert stamp > 1_700_000_000

    foreign.grow(23)
    answer = _post(client, foreign.request(10))
    assert answer.status_code == 200, answer.data
    # Same size again, same root: cosigned again.
    assert _post(client, foreign.request(33)).status_code == 200
    listing = runner.invoke(["witness", "list"])
    assert f"{ORIGIN}\t33" in listing.output
    # The monitoring prefix serves the latest cosigned checkpoint with both signatures.
    served = client.get(f"/witness/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint")
    assert served.status_code == 200
    text = served.data.decode()
    assert text.startswith(f"{ORIGIN}\n33\n") and text.count("\u2014 ") == 2
    assert client.get(f"/witness/{'0' * 64}/checkpoint").status_code == 404


def test_add_checkpoint_refusals(app, client, foreign):
    foreign.grow(8)
    assert _post(client, foreign.request(0)).status_code == 200
    foreign.grow(5)
    # 409: a stale old size, with the size we hold as text/x.tlog.size.
    stale = _post(client, foreign.request(0))
    assert stale.status_code == 409
    assert stale.headers["Content-Type"] == "text/x.tlog.size" and stale.data == b"8\n"
    # 404: an origin we do not witness.
    other_signer, _ = generate_key("somewhere.example/log")
    assert _post(client, ("old 0\n\n" + sign_note(format_checkpoint(
        "somewhere.example/log", 1, b"\x00" * 32), other_signer)).encode()).status_code == 404
    # 403: our origin, but signed by another key (a key of the same name).
    impostor, _ = generate_key(ORIGIN)
    assert _post(client, foreign.request(8, note=foreign.note(signer=impostor))).status_code == 403
    # 403: a signature by the trusted key that does not verify (the body was changed).
    good = foreign.note()
    forged = good.replace(f"\n{len(foreign.leaves)}\n", f"\n{len(foreign.leaves) + 1}\n", 1)
    assert _post(client, foreign.request(8, note=forged)).status_code == 403
    # 400: old size larger than the checkpoint; malformed bodies.
    assert _post(client, foreign.request(99, proof=[])).status_code == 400
    assert _post(client, b"old 01\n\n" + good.encode()).status_code == 400
    assert _post(client, b"new 8\n\n" + good.encode()).status_code == 400
    assert _post(client, b"old 8\nnot-base64!\n\n" + good.encode()).status_code == 400
    assert _post(client, b"\xff\xfe").status_code == 400
    too_many = "old 8\n" + "\n".join([base64.b64encode(b"\x00" * 32).decode()] * 64) + "\n\n"
    assert _post(client, too_many.encode() + good.encode()).status_code == 400
    # 422: a proof that does not verify; a rewritten history with a valid-looking proof.
    bad_proof = [b"\x01" * 32] * merkle.consistency_proof_size(8, 13)
    assert _post(client, foreign.request(8, proof=bad_proof)).status_code == 422
    rewritten = ForeignLog()
    rewritten.signer, rewritten.verifier = foreign.signer, foreign.verifier
    rewritten.leaves = merkle.leaf_hashes([b"forged"] * 13)
    assert _post(client, rewritten.request(8)).status_code == 422
    # The refusals changed nothing: the consistent checkpoint is still cosigned.
    assert _post(client, foreign.request(8)).status_code == 200  # still consistent: cosigned


def test_size_zero_rules(app, client, foreign):
    empty = hashlib.sha256(b"").digest()
    assert _post(client, ("old 0\n\n" + foreign.note(0, b"\x07" * 32)).encode()).status_code == 422
    assert _post(client, ("old 0\n\n" + foreign.note(0, empty)).encode()).status_code == 200
    foreign.grow(4)
    proof_line = base64.b64encode(b"\x00" * 32).decode()
    assert _post(client, (f"old 0\n{proof_line}\n\n" + foreign.note()).encode()).status_code == 422


def test_a_refusal_as_inconsistent_is_kept_in_the_trail(app, client, foreign, session):
    from service.audit.models import AuditEntry

    foreign.grow(8)
    assert _post(client, foreign.request(0)).status_code == 200
    rewritten = ForeignLog()
    rewritten.signer, rewritten.verifier = foreign.signer, foreign.verifier
    rewritten.leaves = merkle.leaf_hashes([b"forged"] * 9)
    assert _post(client, rewritten.request(8)).status_code == 422
    kinds = [row.kind for row in session.query(AuditEntry).order_by(AuditEntry.seq)]
    assert "witness.refused" in kinds and "witness.log_added" in kinds


def test_add_log_refuses_bad_keys(runner, foreign):
    assert runner.invoke(["witness", "add-log", "--key", foreign.verifier]).exit_code == 1
    assert runner.invoke(["witness", "add-log", "--key", "not-a-key"]).exit_code == 1


def test_witnessing_the_published_tessera_golden_log(app, client, runner):
    """The 16 checkpoints of transparency-dev/tessera's golden log, cosigned one after another."""
    from tests.conftest import load_vectors

    notes = load_vectors("note_vectors.json")["tessera_golden_checkpoints"]
    words = load_vectors("merkle_vectors.json")["tessera_golden_log"]["leaves_ascii"]
    leaves = merkle.leaf_hashes([w.encode() for w in words])
    assert runner.invoke(["witness", "add-log", "--key", notes["verifier_key"]]).exit_code == 0
    old = 0
    for item in sorted(notes["checkpoints"], key=lambda c: c["size"])[1:]:
        size = item["size"]
        proof = merkle.consistency_proof(leaves[:size], old) if old else []
        lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
        answer = _post(client, ("\n".join(lines) + "\n\n" + item["checkpoint"]).encode())
        assert answer.status_code == 200, (size, answer.data)
        body = item["checkpoint"].split("\n\n")[0] + "\n"
        _check_cosignature(answer.data.decode().strip(), body, _witness_key(app))
        old = size
    # Going back to an earlier checkpoint of the same log is refused.
    first = sorted(notes["checkpoints"], key=lambda c: c["size"])[3]
    assert _post(client, f"old {old}\n\n{first['checkpoint']}".encode()).status_code == 400
    assert _post(client, f"old 3\n\n{first['checkpoint']}".encode()).status_code == 409


def test_a_cosignature_stored_meanwhile_by_another_instance_is_not_an_error(app, session):
    """Two instances sending the same checkpoint: the second finds the row already stored."""
    from service.audit import log
    from service.audit.cosign import (
        cosign,
        generate_cosigner_key,
        parse_cosigner_signer,
        parse_cosigner_verifier,
    )
    from service.audit.models import Cosignature
    from service.audit.operations import sign_checkpoint
    from service.audit.witnessing import _Job, _submit_one, add_witness, note_body

    settings = app.config["SETTINGS"]
    signer_text, verifier = generate_cosigner_key("tinh.example/witness")
    signer = parse_cosigner_signer(signer_text)

    def witness(url: str, body: bytes, timeout: float):
        note = body.decode().split("\n\n", 1)[1]
        return 200, "text/plain", (cosign(note_body(note), signer) + "\n").encode()

    log.record(session, "test.witnessed", {"n": 1})
    cp = sign_checkpoint(session, settings)
    row = add_witness(session, "http://tinh.example/witness", verifier, by="test")
    session.commit()

    def job():
        return _Job(row.id, row.name, row.url, parse_cosigner_verifier(verifier), 0, cp.id,
                    cp.size, note_body(cp.note), cp.note)

    assert _submit_one(session, settings, job(), witness) == 1
    assert _submit_one(session, settings, job(), witness) == 1  # stored meanwhile: no error
    assert session.query(Cosignature).count() == 1


@pytest.mark.parametrize("size", ["18446744073709551616", "-1", "1e3"])
def test_a_witness_answering_409_with_a_bad_size_stops_no_other_witness(app, session, size):
    """A hostile witness (or whoever sits on its plain-HTTP path) cannot stop witnessing."""
    from service.audit import log
    from service.audit.cosign import cosign, generate_cosigner_key, parse_cosigner_signer
    from service.audit.models import Cosignature, LogWitness
    from service.audit.operations import sign_checkpoint
    from service.audit.witnessing import add_witness, note_body, submit_checkpoints

    settings = app.config["SETTINGS"]
    _, bad_verifier = generate_cosigner_key("a.example/witness")
    good_signer, good_verifier = generate_cosigner_key("b.example/witness")

    def post(url: str, body: bytes, timeout: float):
        if url.startswith("http://a.example/"):
            return 409, "text/x.tlog.size", f"{size}\n".encode()
        note = body.decode().split("\n\n", 1)[1]
        return 200, "text/plain", (cosign(note_body(note), parse_cosigner_signer(good_signer))
                                   + "\n").encode()

    log.record(session, "test.witnessed", {"n": 1})
    sign_checkpoint(session, settings)
    add_witness(session, "http://a.example/witness", bad_verifier, by="test")
    add_witness(session, "http://b.example/witness", good_verifier, by="test")
    session.commit()
    assert submit_checkpoints(session, settings, post=post) == 1
    assert session.query(Cosignature).count() == 1
    bad = session.query(LogWitness).filter_by(url="http://a.example/witness").one()
    assert bad.size == 0 and bad.refused_size is None
    assert "409" in bad.last_error


def test_an_old_size_of_thousands_of_digits_is_a_400_not_a_server_error(app, client, foreign):
    foreign.grow(3)
    response = _post(client, ("old " + "9" * 5000 + "\n\n" + foreign.note()).encode())
    assert response.status_code == 400, response.text
    response = _post(client, ("old " + "9" * 19 + "\n\n" + foreign.note()).encode())
    assert response.status_code == 400, response.text


def test_a_checkpoint_size_of_thousands_of_digits_is_a_400(app, client, foreign):
    foreign.grow(3)
    note = foreign.note().replace("\n3\n", "\n" + "9" * 5000 + "\n", 1)
    response = _post(client, ("old 0\n\n" + note).encode())
    assert response.status_code == 400, response.text
    assert "tree size does not fit in 64 bits" in response.text
