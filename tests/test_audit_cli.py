"""`canhgac init` keys, `canhgac checkpoint`, and `canhgac verify` on a real terminal."""

from __future__ import annotations

import os
import pty
import select
import stat
import subprocess
import sys
import time

from service.audit import log
from service.audit.checkpoint import open_checkpoint, parse_verifier_key
from service.audit.keys import SIGNER_FILE, VERIFIER_FILE
from service.audit.operations import sign_checkpoint

ADMIN_PASSWORD = "mat-khau-quan-tri-1"


def test_init_creates_private_keys_once_and_prints_the_verifier_key(app, runner, data_dir):
    keys = data_dir / "keys"
    for name in (SIGNER_FILE, VERIFIER_FILE):
        (keys / name).unlink()  # the app fixture prepared keys; start from none
    env = {"CANHGAC_ADMIN_PASSWORD": ADMIN_PASSWORD}
    first = runner.invoke(["init", "--non-interactive", "--admin-email", "admin@nhanly.example"], env=env)
    assert first.exit_code == 0, first.output
    verifier = (keys / VERIFIER_FILE).read_text().strip()
    assert verifier in first.output
    key = parse_verifier_key(verifier)
    assert key.name == app.config["SETTINGS"].audit_origin
    assert stat.S_IMODE((keys / SIGNER_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert (keys / SIGNER_FILE).read_text().startswith("PRIVATE+KEY+")
    signer_before = (keys / SIGNER_FILE).read_text()

    (keys / SIGNER_FILE).chmod(0o644)  # e.g. restored from a careless copy
    (keys / VERIFIER_FILE).unlink()
    second = runner.invoke(["init", "--non-interactive", "--admin-email", "admin@nhanly.example"], env=env)
    assert second.exit_code == 0, second.output
    assert (keys / SIGNER_FILE).read_text() == signer_before  # never replaced
    assert (keys / VERIFIER_FILE).read_text().strip() == verifier  # re-derived, same key
    assert verifier in second.output
    assert stat.S_IMODE((keys / SIGNER_FILE).stat().st_mode) == 0o600


def test_checkpoint_prints_the_key_then_a_signed_note(app, session, runner, tmp_path):
    log.record(session, "user.created", {"by": "admin", "user": "an"}, actor="admin")
    session.commit()
    result = runner.invoke(["checkpoint"])
    assert result.exit_code == 0, result.output
    settings = app.config["SETTINGS"]
    verifier = (settings.keys_dir / VERIFIER_FILE).read_text().strip()
    # Which data directory, then the key, on stderr: both said before the note.
    assert result.stderr == (f"Thư mục dữ liệu / data directory: {settings.data_dir.resolve()} "
                             f"(--data-dir)\nKhóa xác minh / verifier key: {verifier}\n")
    note = result.stdout  # exactly the note, so `canhgac checkpoint > kept.txt` keeps it whole
    assert note.startswith(settings.audit_origin + "\n")
    checkpoint = open_checkpoint(note, settings.audit_origin, [verifier])
    assert checkpoint.size == log.tree_size(session) == 1
    assert checkpoint.root == log.root_at(session, 1)
    session.commit()
    kept = tmp_path / "kept.txt"
    kept.write_text(note, encoding="utf-8")
    # Signing again without growth gives the same note (Ed25519 is deterministic).
    assert runner.invoke(["checkpoint"]).stdout == note
    assert runner.invoke(["verify", "--checkpoint", str(kept)]).exit_code == 0


def test_checkpoint_without_keys_says_to_run_init(app, runner, data_dir):
    (data_dir / "keys" / SIGNER_FILE).unlink()
    result = runner.invoke(["checkpoint"])
    assert result.exit_code == 1
    assert "canhgac init" in result.output


def test_verify_shows_a_progress_bar_on_a_terminal(app, session, settings_overrides):
    for start in range(0, 3000, 1000):
        log.append_entries(session, [log.PendingEntry("event", {"i": i}, {})
                                     for i in range(start, start + 1000)])
        if start == 1000:
            sign_checkpoint(session, app.config["SETTINGS"])  # covers 2000
    session.commit()
    env = {**os.environ, "CANHGAC_DATABASE_URL": settings_overrides["database_url"],
           "CANHGAC_SECRET_KEY": "test-secret-key", "CANHGAC_SCHEDULER_ENABLED": "false",
           "CANHGAC_POLICY_RELOAD": "false", "CANHGAC_DATA_DIR": str(settings_overrides["data_dir"]),
           "COLUMNS": "100"}
    primary, replica = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "verify"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=replica)
    os.close(replica)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(primary)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, shown.decode(errors="replace")
    terminal = shown.decode("utf-8", errors="replace")
    assert "Kiểm tra / verifying" in terminal
    assert "100%" in terminal
    assert "HỢP LỆ / VALID: 3000 mục" in out.decode()
    assert "1000 entries past the last signed checkpoint (size 2000)" in out.decode()


def test_verify_gives_its_reason_in_vietnamese_then_english(app, session, runner):
    from sqlalchemy import text

    for i in range(3):
        log.record(session, "user.created", {"by": "admin", "user": f"an{i}"}, actor="admin")
    sign_checkpoint(session, app.config["SETTINGS"])
    session.commit()
    body = session.execute(text("SELECT body FROM audit_entry WHERE seq = 1")).scalar_one()
    session.execute(text("UPDATE audit_entry SET body = :b WHERE seq = 1"),
                    {"b": body.replace('"an1"', '"bo1"')})
    session.commit()
    result = runner.invoke(["verify"])
    assert result.exit_code == 1
    assert ("KHÔNG HỢP LỆ / INVALID: mục 1: nội dung không khớp mã băm lá đã lưu (đã bị sửa) / "
            "entry 1: body does not match its stored leaf hash (altered)\n") in result.stderr


def test_both_bundle_checkers_give_the_reason_in_vietnamese_then_english(app, session, runner,
                                                                          tmp_path):
    import zipfile
    from importlib import resources

    log.record(session, "user.created", {"by": "admin", "user": "an"}, actor="admin")
    session.commit()
    bundle = tmp_path / "goi.zip"
    assert runner.invoke(["export", "-o", str(bundle)]).exit_code == 0
    altered = tmp_path / "goi-sua.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(altered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "entries.jsonl":
                assert b'\\"user\\":\\"an\\"' in data  # the body is a JSON string in the line
                data = data.replace(b'\\"user\\":\\"an\\"', b'\\"user\\":\\"bo\\"')
            dst.writestr(item, data)
    installed = runner.invoke(["verify", "--bundle", str(altered)])
    assert installed.exit_code == 1
    assert installed.stderr == (
        "KHÔNG HỢP LỆ / INVALID: entries.jsonl: khác với manifest đã ký (dòng bị thêm, bớt hoặc "
        "sửa) / entries.jsonl: differs from the signed manifest (lines added, removed or changed)\n")
    checker = resources.files("service.audit").joinpath("bundle_files", "verify_bundle.py")
    standalone = subprocess.run([sys.executable, str(checker), str(altered)], capture_output=True,
                                text=True, timeout=60, check=False)
    assert standalone.returncode == 1
    assert standalone.stdout == (
        "KHÔNG HỢP LỆ / INVALID: entries.jsonl khác với manifest đã ký (dòng bị thêm, bớt hoặc "
        "sửa) / entries.jsonl differs from the signed manifest (lines added, removed or changed)\n")
