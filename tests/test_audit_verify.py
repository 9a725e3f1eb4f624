"""`canhgac verify` against every kind of tampering with the stored trail (both databases)."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from service.audit import log, merkle
from service.audit.canonical import canonical_json
from service.audit.checkpoint import generate_key
from service.audit.keys import SIGNER_FILE, VERIFIER_FILE, load_verifier_key
from service.audit.verify import VerifyError, extract_note, verify_log
from service.core.files import write_private

COVERED = 32  # entries covered by the checkpoint kept outside the server
SIZE = 41  # entries in the trail; the last 9 are after that checkpoint


def _append_people(session, start: int, n: int) -> None:
    log.append_entries(session, [
        log.PendingEntry("event", {"actor": f"canbo{i % 5}", "action": "copy", "i": i,
                                   "object": {"path": f"C:\\DuLieu\\DanCu\\thon_{i}.xlsx"}},
                         {"actor": f"canbo{i % 5}", "action": "copy"})
        for i in range(start, start + n)
    ])


@pytest.fixture
def trail(app, session, runner):
    """A trail of 41 entries with a checkpoint at 32 kept outside, signed by `canhgac checkpoint`."""
    _append_people(session, 0, 20)
    for i in range(COVERED - 20):
        log.record(session, "user.created", {"by": "admin", "user": f"u{i}"}, actor="admin")
    session.commit()
    result = runner.invoke(["checkpoint"])
    assert result.exit_code == 0, result.output
    _append_people(session, 100, SIZE - COVERED)
    session.commit()
    assert log.tree_size(session) == SIZE
    session.commit()
    settings = app.config["SETTINGS"]
    return SimpleNamespace(note=result.stdout, key=load_verifier_key(settings.keys_dir),
                           keys_dir=settings.keys_dir)


def _sql(session, statement: str, **params) -> None:
    session.execute(text(statement), params)
    session.commit()


def _body(session, seq: int) -> str:
    value = session.execute(text("SELECT body FROM audit_entry WHERE seq = :s"), {"s": seq}).scalar()
    session.commit()
    return value


def _verify(runner, *args):
    return runner.invoke(["verify", *args])


def _assert_invalid(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "KHÔNG HỢP LỆ / INVALID" in result.output
    for needle in needles:
        assert needle in result.output, result.output


def _rehash_everything(session) -> None:
    """What an attacker with database access does after editing bodies: recompute every hash."""
    rows = session.execute(text("SELECT seq, body FROM audit_entry ORDER BY seq")).all()
    leaves = merkle.leaf_hashes([body.encode() for _, body in rows])
    for (seq, _), leaf in zip(rows, leaves, strict=True):
        session.execute(text("UPDATE audit_entry SET leaf_hash = :h WHERE seq = :s"),
                        {"h": leaf, "s": seq})
    session.execute(text("DELETE FROM merkle_node"))
    nodes = merkle.CompactRange().append(leaves, log.MIN_STORED_LEVEL)
    if nodes:  # none below 256 entries
        session.execute(text('INSERT INTO merkle_node (level, "index", hash) VALUES (:l, :i, :h)'),
                        [{"l": lv, "i": ix, "h": h} for lv, ix, h in nodes])
    # The head's kept border is derived from the old tree: a careful forger drops it too.
    session.execute(text("UPDATE audit_head SET size = :n, border = NULL WHERE id = 1"),
                    {"n": len(rows)})
    session.commit()


def _edit_entry(session, seq: int, **changes) -> None:
    """Change an entry's body while keeping it valid canonical JSON (a careful forger)."""
    entry = json.loads(_body(session, seq))
    entry["body"].update(changes)
    _sql(session, "UPDATE audit_entry SET body = :b WHERE seq = :s",
         b=canonical_json(entry).decode(), s=seq)


def test_untouched_trail_verifies(trail, runner, tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text(trail.note, encoding="utf-8")
    result = _verify(runner, "--checkpoint", str(kept))
    assert result.exit_code == 0, result.output
    assert f"HỢP LỆ / VALID: {SIZE} mục" in result.output
    assert f"of size {COVERED}" in result.output
    assert _verify(runner, "--deep").exit_code == 0


def test_a_changed_byte_in_any_entry_is_detected(trail, session, runner):
    rng = random.Random(8)
    for seq in (0, 13, COVERED - 1, COVERED, SIZE - 1):
        original = _body(session, seq)
        position = rng.randrange(len(original))
        replacement = rng.choice([c for c in "aZ09{}\":,\\é" if c != original[position]])
        _sql(session, "UPDATE audit_entry SET body = :b WHERE seq = :s",
             b=original[:position] + replacement + original[position + 1:], s=seq)
        _assert_invalid(_verify(runner), f"entry {seq}:")
        _sql(session, "UPDATE audit_entry SET body = :b WHERE seq = :s", b=original, s=seq)
    assert _verify(runner).exit_code == 0


def test_a_changed_body_with_a_matching_leaf_hash_is_detected(trail, session, runner):
    _append_people(session, 1000, 301 - SIZE)  # entries 0..255 under the stored node (8, 0)
    session.commit()
    # Under the checkpoint (caught by its signed root), and after it (by the stored node).
    for seq, needles in ((6, (f"(size {COVERED})", "rewritten after it was signed")),
                         (COVERED + 3, ("entries 0-255", "tree node (level 8, index 0)"))):
        original = _body(session, seq)
        _edit_entry(session, seq, actor="nguoi_khac")
        _sql(session, "UPDATE audit_entry SET leaf_hash = :h WHERE seq = :s",
             h=merkle.leaf_hash(_body(session, seq).encode()), s=seq)
        _assert_invalid(_verify(runner), *needles)
        _sql(session, "UPDATE audit_entry SET body = :b, leaf_hash = :h WHERE seq = :s",
             b=original, h=merkle.leaf_hash(original.encode()), s=seq)
    assert _verify(runner).exit_code == 0


def test_a_removed_entry_is_detected(trail, session, runner):
    _sql(session, "DELETE FROM audit_entry WHERE seq = 20")
    _assert_invalid(_verify(runner), "entry 20: missing")


def test_reordered_entries_are_detected(trail, session, runner):
    first, second = _body(session, 12), _body(session, 13)
    _sql(session, "UPDATE audit_entry SET body = :b WHERE seq = 12", b=second)
    _sql(session, "UPDATE audit_entry SET body = :b WHERE seq = 13", b=first)
    _assert_invalid(_verify(runner), "entry 12: its body is entry 13", "reordered")
    # Swapping whole rows, leaf hashes too, changes the tree: still caught, and named.
    _sql(session, "UPDATE audit_entry SET leaf_hash = :h WHERE seq = 12",
         h=merkle.leaf_hash(second.encode()))
    _sql(session, "UPDATE audit_entry SET leaf_hash = :h WHERE seq = 13",
         h=merkle.leaf_hash(first.encode()))
    _assert_invalid(_verify(runner), "entry 12: its body is entry 13")


def test_inserted_entries_are_detected(trail, session, runner):
    # A fake entry appended past the head.
    fake = log.entry_bytes(SIZE, "2026-03-02T01:00:00.000000Z", "event", {"actor": "x"})
    _sql(session, "INSERT INTO audit_entry (seq, recorded_at, kind, body, leaf_hash) "
                  "VALUES (:s, :t, 'event', :b, :h)",
         s=SIZE, t="2026-03-02 01:00:00.000000", b=fake.decode(), h=merkle.leaf_hash(fake))
    _assert_invalid(_verify(runner), f"entry {SIZE}: present beyond the end", "inserted")
    _sql(session, "DELETE FROM audit_entry WHERE seq = :s", s=SIZE)
    # A fake entry slipped in at 10: everything after it moves up by one.
    for seq in range(SIZE - 1, 9, -1):
        _sql(session, "UPDATE audit_entry SET seq = :n WHERE seq = :s", n=seq + 1, s=seq)
    fake = log.entry_bytes(10, "2026-03-02T01:00:00.000000Z", "event", {"actor": "x"})
    _sql(session, "INSERT INTO audit_entry (seq, recorded_at, kind, body, leaf_hash) "
                  "VALUES (10, :t, 'event', :b, :h)",
         t="2026-03-02 01:00:00.000000", b=fake.decode(), h=merkle.leaf_hash(fake))
    _sql(session, "UPDATE audit_head SET size = :n WHERE id = 1", n=SIZE + 1)
    _assert_invalid(_verify(runner), "entry 11: its body is entry 10", "inserted")


def test_a_truncated_tail_under_a_stored_checkpoint_is_detected(trail, session, runner):
    # A careful attacker removes the entries, their tree nodes and lowers the head.
    _sql(session, "DELETE FROM audit_entry WHERE seq >= 30")
    _sql(session, "DELETE FROM merkle_node WHERE (\"index\" + 1) * (1 << level) > 30")
    _sql(session, "UPDATE audit_head SET size = 30 WHERE id = 1")
    _assert_invalid(_verify(runner), f"(size {COVERED})", "now has 30", "truncated")


def test_a_truncated_tail_is_detected_even_with_the_head_untouched(trail, session, runner):
    _sql(session, "DELETE FROM audit_entry WHERE seq >= 35")
    _assert_invalid(_verify(runner), "entry 35: missing", "truncated")


def test_an_altered_stored_checkpoint_is_detected(trail, session, runner):
    note = session.execute(text("SELECT note FROM checkpoint WHERE size = :n"),
                           {"n": COVERED}).scalar()
    forged = note.replace(f"\n{COVERED}\n", f"\n{COVERED - 1}\n")
    _sql(session, "UPDATE checkpoint SET note = :n WHERE size = :s", n=forged, s=COVERED)
    _assert_invalid(_verify(runner), f"(size {COVERED})", "signature does not verify")


def test_an_altered_tree_node_is_detected(trail, session, runner):
    # Nodes are stored from level 8 up (log.MIN_STORED_LEVEL): grow the trail past 1,024.
    _append_people(session, 1000, 1141 - SIZE)
    session.commit()
    # 1141 = 1024 + 117: the border is (10, 0) and low nodes over entries 1024..1140.
    # A node on the tree's border feeds the root the next checkpoint signs: always checked.
    _sql(session, "UPDATE merkle_node SET hash = :h WHERE level = 10 AND \"index\" = 0",
         h=b"\x07" * 32)
    _assert_invalid(_verify(runner), "entries 0-1023", "tree node")
    _sql(session, "DELETE FROM merkle_node WHERE level = 10 AND \"index\" = 0")
    _assert_invalid(_verify(runner), "entries 0-1023", "tree node")
    _rehash_everything(session)
    assert _verify(runner, "--deep").exit_code == 0
    # An inner node only serves proofs and tiles (whose readers check them against a signed
    # root); --deep compares every stored node with the recomputed tree.
    _sql(session, "UPDATE merkle_node SET hash = :h WHERE level = 8 AND \"index\" = 1",
         h=b"\x07" * 32)  # entries 256..511
    assert _verify(runner).exit_code == 0
    _assert_invalid(_verify(runner, "--deep"), "entries 256-511", "tree node")
    _rehash_everything(session)
    # Nodes below level 8 are computed from the leaf hashes, never stored: a row there is
    # one the trail never wrote.
    _sql(session, "INSERT INTO merkle_node (level, \"index\", hash) VALUES (3, 4, :h)",
         h=b"\x07" * 32)
    assert _verify(runner).exit_code == 0  # nothing reads it
    _assert_invalid(_verify(runner, "--deep"), "holds 8 tree nodes", "has 7")


def test_a_changed_leaf_hash_under_the_newest_checkpoint_is_named(trail, session, runner):
    # Every entry is signed, so verify resumes after the last checkpoint and reads no row; the
    # root the stored tree gives (its low nodes computed from the leaf hashes) differs.
    assert runner.invoke(["checkpoint"]).exit_code == 0
    _sql(session, "UPDATE audit_entry SET leaf_hash = :h WHERE seq = 36", h=b"\x07" * 32)
    _assert_invalid(_verify(runner), "entry 36: its stored leaf hash does not match its body")


def test_an_entry_rehashed_with_its_leaf_is_named_by_the_level_8_node_over_it(trail, session,
                                                                                runner):
    _append_people(session, 1000, 600 - SIZE)
    session.commit()
    entry = json.loads(_body(session, 300))
    entry["body"]["actor"] = "someone.else"
    forged = canonical_json(entry)
    _sql(session, "UPDATE audit_entry SET body = :b, leaf_hash = :h WHERE seq = 300",
         b=forged.decode(), h=merkle.leaf_hash(forged))
    _assert_invalid(_verify(runner, "--deep"), "entries 256-511", "tree node")


def _forge_new_key(keys_dir, origin: str) -> str:
    signer, verifier = generate_key(origin)
    write_private(keys_dir / SIGNER_FILE, signer + "\n")
    (keys_dir / VERIFIER_FILE).write_text(verifier + "\n")
    return verifier


def test_a_rewritten_log_with_a_new_key_is_caught_by_kept_checkpoints(
        trail, app, session, runner, tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text(trail.note, encoding="utf-8")
    paper_key = trail.key
    _edit_entry(session, 5, actor="nguoi_khac")
    _rehash_everything(session)
    new_key = _forge_new_key(trail.keys_dir, app.config["SETTINGS"].audit_origin)
    assert new_key != paper_key
    # The stored checkpoints were signed by the old key: they no longer verify.
    _assert_invalid(_verify(runner), "checkpoint #", "not signed by a trusted key")
    # The forger deletes them and signs fresh ones with the new key: the server alone now
    # holds a self-consistent world, so the police's own copies must decide.
    _sql(session, "DELETE FROM checkpoint")
    assert runner.invoke(["checkpoint"]).exit_code == 0
    assert _verify(runner).exit_code == 0
    _assert_invalid(_verify(runner, "--checkpoint", str(kept)),
                    f"kept checkpoint {kept}", "not signed by a trusted key")
    _assert_invalid(_verify(runner, "--key", paper_key), "not signed by a trusted key")
    key_file = tmp_path / "paper.key"
    key_file.write_text(paper_key + "\n")
    _assert_invalid(_verify(runner, "--key", str(key_file), "--checkpoint", str(kept)),
                    "not signed by a trusted key")


def test_a_rewritten_log_resigned_with_the_same_key_is_caught_by_a_kept_checkpoint(
        trail, session, runner, tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text(trail.note, encoding="utf-8")
    _edit_entry(session, 5, actor="nguoi_khac")
    _rehash_everything(session)
    _assert_invalid(_verify(runner), f"(size {COVERED})", "rewritten")
    _sql(session, "DELETE FROM checkpoint")
    assert runner.invoke(["checkpoint"]).exit_code == 0
    assert _verify(runner).exit_code == 0
    _assert_invalid(_verify(runner, "--checkpoint", str(kept)),
                    "kept checkpoint", "do not reproduce its signed root", "rewritten")


def test_a_kept_checkpoint_can_be_a_saved_mail(trail, runner, tmp_path):
    mail = ("Kính gửi Công an xã,\r\n\r\nSự cố #3 đã được ghi nhận.\r\n\r\n"
            + trail.note.replace("\n", "\r\n") + "\r\n-- \r\nCanh Gác\r\n")
    saved = tmp_path / "thu.eml"
    saved.write_text(mail, encoding="utf-8")
    assert extract_note(mail) == trail.note
    result = _verify(runner, "--checkpoint", str(saved))
    assert result.exit_code == 0, result.output
    assert f"of size {COVERED}" in result.output


def test_a_kept_checkpoint_from_another_log_is_refused(trail, runner, tmp_path):
    other = tmp_path / "other.txt"
    origin = trail.note.split("\n")[0]
    other.write_text(trail.note.replace(origin, "khac.example/audit", 1), encoding="utf-8")
    _assert_invalid(_verify(runner, "--checkpoint", str(other)), "kept checkpoint")


def test_verify_log_reports_progress_and_names_the_failure(trail, app, session):
    settings = app.config["SETTINGS"]
    seen: list[int] = []
    report = verify_log(session, [trail.key], origin=settings.audit_origin,
                        progress=seen.append, batch=10)
    assert seen == sorted(seen) and seen[-1] == SIZE
    assert report.size == SIZE and report.checkpoints == 1
    assert report.root == merkle.root_hash(
        [bytes(h) for h in session.execute(text("SELECT leaf_hash FROM audit_entry ORDER BY seq"))
         .scalars()])
    session.rollback()
    _sql(session, "DELETE FROM audit_entry WHERE seq = 3")
    with pytest.raises(VerifyError) as caught:
        verify_log(session, [trail.key], origin=settings.audit_origin)
    assert caught.value.seq == 3


def test_a_raw_saved_mail_in_quoted_printable_is_a_kept_checkpoint(trail, runner, tmp_path):
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "canhgac@nhanly.example"
    message["To"] = "congan@nhanly.example"
    message["Subject"] = "[Canh Gác] Sự cố mới #1"
    message["Message-ID"] = "<outbox-1.1@canhgac>"
    message.set_content("Kính gửi Công an xã — điểm kiểm tra đã ký:\n\n" + trail.note,
                        cte="quoted-printable")
    raw = message.as_bytes()
    assert b"=E1=BB" in raw or b"=C3" in raw  # really quoted-printable on the wire
    saved = tmp_path / "thu-goc.eml"
    saved.write_bytes(raw)
    result = _verify(runner, "--checkpoint", str(saved))
    assert result.exit_code == 0, result.output
    assert f"of size {COVERED}" in result.output


# ------------------------------------------------------------------ anchoring (#15 item 11)


def test_untouched_trail_says_how_many_entries_lie_past_the_last_checkpoint(trail, runner):
    result = _verify(runner)
    assert result.exit_code == 0, result.output
    assert (f"{SIZE - COVERED} entries past the last signed checkpoint (size {COVERED})"
            in result.output)
    log_after = runner.invoke(["checkpoint"])
    assert log_after.exit_code == 0
    assert "0 entries past the last signed checkpoint (size 41)" in _verify(runner).output


def test_a_rewrite_that_deletes_the_checkpoints_is_unanchored_not_valid(trail, session, runner, tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text(trail.note, encoding="utf-8")
    _edit_entry(session, 5, actor="nguoi_khac")
    _rehash_everything(session)
    _sql(session, "DELETE FROM checkpoint")
    result = _verify(runner)
    assert result.exit_code == 3, result.output
    assert "UNANCHORED" in result.output and "HỢP LỆ / VALID" not in result.output
    assert f"No signed checkpoint covers any of these {SIZE} entries" in result.output
    # The police's own copy decides.
    _assert_invalid(_verify(runner, "--checkpoint", str(kept)), "kept checkpoint", "rewritten")


def test_only_kept_checkpoints_anchor_the_trail_with_a_warning(trail, session, runner, tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text(trail.note, encoding="utf-8")
    _sql(session, "DELETE FROM checkpoint")
    assert _verify(runner).exit_code == 3
    result = _verify(runner, "--checkpoint", str(kept))
    assert result.exit_code == 0, result.output
    assert f"{SIZE - COVERED} entries past the last signed checkpoint (size {COVERED})" in result.output
    assert "the server holds no signed checkpoint" in result.output


def test_an_empty_trail_needs_no_checkpoint_but_a_size_0_checkpoint_anchors_nothing(
        app, session, runner):
    settings = app.config["SETTINGS"]
    _sql(session, "DELETE FROM checkpoint")
    assert log.tree_size(session) == 0
    session.commit()
    empty = _verify(runner)
    assert empty.exit_code == 0, empty.output
    assert "0 entries past the last signed checkpoint (size 0)" in empty.output
    assert runner.invoke(["checkpoint"]).exit_code == 0  # signs size 0
    _append_people(session, 0, 3)
    session.commit()
    report = verify_log(session, [load_verifier_key(settings.keys_dir)], origin=settings.audit_origin)
    session.rollback()
    assert report.checkpoints == 1 and report.last_signed_size == 0
    assert not report.is_anchored and report.entries_past_last_checkpoint == 3
    assert _verify(runner).exit_code == 3
