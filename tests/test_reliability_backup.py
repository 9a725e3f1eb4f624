"""`canhgac backup` / `canhgac restore`: an online, consistent copy that restores and verifies."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from service.audit.models import AuditEntry
from service.cli import main
from service.core.db import new_session
from tests.test_reliability_support import fresh_pg_schema, make_event

BASE_ENV = {"CANHGAC_SECRET_KEY": "test-secret-key", "CANHGAC_SCHEDULER_ENABLED": "false",
            "CANHGAC_POLICY_RELOAD": "false"}


def _cli(args: list[str], database_url: str | None):
    env = {**BASE_ENV, "CANHGAC_DATABASE_URL": database_url or ""}
    return CliRunner().invoke(main, args, env=env)


@contextlib.contextmanager
def _target(kind: str, tmp_path: Path):
    """Yield (data dir, database URL or None) for a restore into SQLite or PostgreSQL."""
    data_dir = tmp_path / f"restored-{kind}"
    if kind == "sqlite":
        yield data_dir, None
    else:
        with fresh_pg_schema() as url:
            yield data_dir, url


def _bodies(url: str, limit: int | None = None) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = select(AuditEntry.body).order_by(AuditEntry.seq)
            if limit is not None:
                query = query.limit(limit)
            return list(conn.scalars(query))
    finally:
        engine.dispose()


def _manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))


@pytest.fixture
def token(runner) -> str:
    result = runner.invoke(["token", "create", "--source", "sao-luu"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _post(client, token: str, events: list[dict]):
    return client.post("/api/v1/events", data=json.dumps(events), content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_backup_during_ingest_restores_and_verifies(app, runner, token, settings_overrides,
                                                     make_user, tmp_path, target):
    source_url = settings_overrides["database_url"]
    make_user("cong_an_1", "police", unit="cong_an")
    assert runner.invoke(["checkpoint"]).exit_code == 0
    acknowledged: list[list[str]] = []
    failures: list[int] = []
    stop = threading.Event()

    def ingest() -> None:
        client = app.test_client()
        rng = random.Random(7)
        while not stop.is_set():
            events = [make_event(rng) for _ in range(25)]
            response = _post(client, token, events)
            if response.status_code == 200:
                acknowledged.append([e["id"] for e in events])
            else:
                failures.append(response.status_code)

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        acked_before = [i for batch in list(acknowledged) for i in batch]
        backup = tmp_path / "sao-luu.zip"
        result = runner.invoke(["backup", "-o", str(backup), "--with-keys", "--no-encrypt"])
        assert result.exit_code == 0, result.output
        count_at_backup_end = len(acknowledged)
        while len(acknowledged) < count_at_backup_end + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not failures
    assert len(acknowledged) >= count_at_backup_end + 2, "ingest went on after the backup"
    manifest = _manifest(backup)
    assert manifest["has_keys"] and manifest["tree_size"] > 0
    with zipfile.ZipFile(backup) as archive:
        assert "keys/checkpoint.key" in archive.namelist()

    with _target(target, tmp_path) as (new_dir, new_url):
        restored = _cli(["restore", str(backup), "--data-dir", str(new_dir)], new_url)
        assert restored.exit_code == 0, restored.output
        assert f"{manifest['tree_size']} mục" in restored.output
        verified = _cli(["verify", "--data-dir", str(new_dir)], new_url)
        assert verified.exit_code == 0, verified.output
        assert f"HỢP LỆ / VALID: {manifest['tree_size']} mục" in verified.output
        restored_url = new_url or f"sqlite:///{new_dir / 'canhgac.db'}"
        copy = _bodies(restored_url)
        # The copy is one snapshot: exactly the first tree_size entries of the live trail.
        assert len(copy) == manifest["tree_size"]
        assert copy == _bodies(source_url, limit=len(copy))
        stored_ids = {json.loads(b)["body"]["id"] for b in copy if json.loads(b)["kind"] == "event"}
        assert set(acked_before) <= stored_ids
        # The restored service works: it takes new events and still verifies.
        overrides = {**settings_overrides, "data_dir": new_dir, "database_url": new_url}
        from service import create_app
        from service.config import load_settings

        again = create_app(load_settings(overrides, environ={}))
        try:
            response = _post(again.test_client(), token, [make_event(random.Random(99))])
            assert response.status_code == 200 and response.json["stored"] == 1
        finally:
            again.extensions["canhgac.engine"].dispose()
        # New rows get fresh ids after the restored ones (PostgreSQL sequences were moved on).
        added = CliRunner().invoke(
            main, ["user", "add", "--data-dir", str(new_dir), "can_bo_moi", "--role", "official",
                   "--email", "moi@nhanly.example"],
            env={**BASE_ENV, "CANHGAC_DATABASE_URL": new_url or "",
                 "CANHGAC_USER_PASSWORD": "mat-khau-moi-123"})
        assert added.exit_code == 0, added.output
        assert _cli(["checkpoint", "--data-dir", str(new_dir)], new_url).exit_code == 0
        verified = _cli(["verify", "--data-dir", str(new_dir)], new_url)
        assert verified.exit_code == 0, verified.output
        assert f"{manifest['rows']['checkpoint'] + 1} checkpoint" in verified.output
    with app.app_context():
        s = new_session()
        kinds = list(s.scalars(select(AuditEntry.kind).where(AuditEntry.kind == "backup.created")))
        s.close()
    assert kinds == ["backup.created"]  # taking a copy of the trail is itself in the trail


def test_backup_without_keys_verifies_with_the_paper_key(app, runner, token, client, tmp_path,
                                                         settings_overrides):
    rng = random.Random(3)
    assert _post(client, token, [make_event(rng) for _ in range(30)]).status_code == 200
    assert runner.invoke(["checkpoint"]).exit_code == 0
    backup = tmp_path / "khong-khoa.zip"
    result = runner.invoke(["backup", "-o", str(backup)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(backup) as archive:
        names = archive.namelist()
        assert not [n for n in names if n.startswith("keys/")]
        blob = b"".join(archive.read(n) for n in names)
    keys_dir = settings_overrides["data_dir"] / "keys"
    for secret in ("checkpoint.key", "evidence.key", "tls.key", "secret_key"):
        if (keys_dir / secret).exists():
            assert (keys_dir / secret).read_bytes().strip() not in blob, secret
    verifier = (keys_dir / "checkpoint.pub").read_text().strip()
    manifest = _manifest(backup)
    assert manifest["verifier_key"] == verifier and manifest["checkpoint"]["size"] > 0
    new_dir = tmp_path / "moi"
    assert _cli(["restore", str(backup), "--data-dir", str(new_dir)], None).exit_code == 0
    assert not (new_dir / "keys").exists()
    no_key = _cli(["verify", "--data-dir", str(new_dir)], None)
    assert no_key.exit_code != 0 and "checkpoint.pub" in no_key.output
    with_key = _cli(["verify", "--data-dir", str(new_dir), "--key", verifier], None)
    assert with_key.exit_code == 0, with_key.output
    assert "1 checkpoint" in with_key.output or "checkpoint đã ký" in with_key.output
    # Another key does not vouch for the restored checkpoints.
    from service.audit.checkpoint import generate_key

    _signer, stranger = generate_key("canhgac.nhanly.langson/audit")
    assert _cli(["verify", "--data-dir", str(new_dir), "--key", str(stranger)], None).exit_code == 1


def test_backup_with_keys_is_sealed_and_restores_only_with_its_passphrase(
        app, runner, token, client, tmp_path, settings_overrides, monkeypatch):
    rng = random.Random(4)
    assert _post(client, token, [make_event(rng) for _ in range(20)]).status_code == 200
    # As the running server does each minute: without one, the restored trail is UNANCHORED.
    assert runner.invoke(["checkpoint"]).exit_code == 0
    passphrase = "tu khoa niem phong 2026"
    monkeypatch.setenv("CANHGAC_BACKUP_PASSPHRASE", passphrase)
    backup = tmp_path / "co-khoa.zip"
    result = runner.invoke(["backup", "-o", str(backup), "--with-keys"])
    assert result.exit_code == 0, result.output
    raw = backup.read_bytes()
    assert raw.startswith(b"CANHGAC-SEALED") and not zipfile.is_zipfile(backup)
    signing_key = (settings_overrides["data_dir"] / "keys" / "checkpoint.key").read_bytes().strip()
    assert signing_key not in raw
    assert [f for f in backup.parent.iterdir() if f.name.startswith(".canhgac-backup-")] == []
    entry = json.loads(
        _bodies(settings_overrides["database_url"])[-1])["body"]
    assert entry["with_keys"] is True and entry["encrypted"] is True

    monkeypatch.delenv("CANHGAC_BACKUP_PASSPHRASE")
    new_dir = tmp_path / "moi"
    refused = CliRunner().invoke(main, ["restore", str(backup), "--data-dir", str(new_dir)],
                                 env={**BASE_ENV, "CANHGAC_DATABASE_URL": "",
                                      "CANHGAC_BACKUP_PASSPHRASE": "khong phai cum nay"})
    assert refused.exit_code != 0 and "sai cụm mật khẩu" in refused.output
    assert not new_dir.exists() or not any(new_dir.iterdir())
    restored = CliRunner().invoke(main, ["restore", str(backup), "--data-dir", str(new_dir)],
                                  env={**BASE_ENV, "CANHGAC_DATABASE_URL": ""},
                                  input=passphrase + "\n")
    assert restored.exit_code == 0, restored.output
    verified = _cli(["verify", "--data-dir", str(new_dir)], None)
    assert verified.exit_code == 0, verified.output


def test_a_sealed_backup_never_puts_plaintext_beside_the_output(
        app, runner, tmp_path, settings_overrides, monkeypatch):
    """The plaintext zip (keys included) is built in the private data directory, not on the stick."""
    from service.core import backup as backup_module

    stick = tmp_path / "usb"
    seen: dict = {}
    real_seal = backup_module.seal_file

    def watching_seal(source, target, passphrase, **kw):
        seen["source"] = Path(source)
        seen["on_stick"] = sorted(p.name for p in stick.iterdir())
        return real_seal(source, target, passphrase, **kw)

    monkeypatch.setattr(backup_module, "seal_file", watching_seal)
    monkeypatch.setenv("CANHGAC_BACKUP_PASSPHRASE", "tu khoa niem phong 2026")
    result = runner.invoke(["backup", "-o", str(stick / "sao-luu.zip"), "--with-keys"])
    assert result.exit_code == 0, result.output
    data_dir = Path(settings_overrides["data_dir"]).resolve()
    assert seen["source"].resolve().parent == data_dir
    assert seen["on_stick"] == []  # nothing at all on the stick while the plaintext exists
    assert sorted(p.name for p in stick.iterdir()) == ["sao-luu.zip"]
    assert not seen["source"].exists()
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".canhgac-backup-")]


def test_a_sealed_backup_without_its_passphrase_is_a_clear_error(app, tmp_path):
    from service.config import load_settings
    from service.core.backup import BackupError, create_backup, restore_backup

    backup = tmp_path / "niem-phong.zip"
    create_backup(app.config["SETTINGS"], backup, passphrase="tu khoa niem phong 2026")
    target = load_settings({"data_dir": tmp_path / "moi"}, environ={})
    with pytest.raises(BackupError, match="passphrase"):
        restore_backup(target, backup)
    assert not (tmp_path / "moi").exists()


def test_a_short_backup_passphrase_is_refused_before_any_work(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("CANHGAC_BACKUP_PASSPHRASE", "ngan")
    result = runner.invoke(["backup", "-o", str(tmp_path / "b.zip"), "--encrypt"])
    assert result.exit_code != 0 and "12" in result.output
    assert not (tmp_path / "b.zip").exists()


def test_evidence_files_come_back_and_decrypt(app, session, make_user, runner, tmp_path,
                                              settings_overrides):
    from service.auth.models import User
    from service.incidents import workflow
    from service.incidents.models import IncidentEvidence

    make_user("cong_an_1", "police", unit="cong_an")
    settings = app.config["SETTINGS"]
    police = session.scalar(select(User).where(User.username == "cong_an_1"))
    incident = workflow.report_incident(session, settings, origin="report", title="Lộ danh sách",
                                        reporter=police)
    payload = b"anh chup man hinh \x00\xff" * 100
    workflow.attach_evidence(session, settings, incident, police, filename="anh.png", data=payload)
    session.commit()
    # An evidence file with no committed row (a failed upload) is not part of the snapshot.
    (settings_overrides["data_dir"] / "evidence" / ("f" * 32)).write_bytes(b"orphan")
    backup = tmp_path / "bang-chung.zip"
    assert runner.invoke(["backup", "-o", str(backup), "--with-keys", "--no-encrypt"]).exit_code == 0
    with zipfile.ZipFile(backup) as archive:
        evidence = [n for n in archive.namelist() if n.startswith("evidence/")]
    assert len(evidence) == 1
    new_dir = tmp_path / "khoi-phuc"
    assert _cli(["restore", str(backup), "--data-dir", str(new_dir)], None).exit_code == 0
    from service import create_app
    from service.config import load_settings

    restored = create_app(load_settings({**settings_overrides, "data_dir": new_dir,
                                         "database_url": None}, environ={}))
    try:
        with restored.app_context():
            s = new_session()
            row = s.scalar(select(IncidentEvidence))
            officer = s.scalar(select(User).where(User.username == "cong_an_1"))
            data = workflow.read_evidence(s, restored.config["SETTINGS"], row, officer)
            s.rollback()
            s.close()
    finally:
        restored.extensions["canhgac.engine"].dispose()
    assert data == payload


def test_restore_refuses_non_empty_places_and_damaged_backups(app, runner, tmp_path):
    backup = tmp_path / "b.zip"
    assert runner.invoke(["backup", "-o", str(backup)]).exit_code == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "ghi-chu.txt").write_text("x")
    refused = _cli(["restore", str(backup), "--data-dir", str(busy)], None)
    assert refused.exit_code != 0 and "not empty" in refused.output
    assert sorted(p.name for p in busy.iterdir()) == ["ghi-chu.txt"]

    def rewrite(name: str, change) -> Path:
        out = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(backup) as src, zipfile.ZipFile(out, "w") as dst:
            manifest = json.loads(src.read("manifest.json"))
            members = {n: src.read(n) for n in src.namelist() if n != "manifest.json"}
            change(manifest, members)
            for member, data in members.items():
                dst.writestr(member, data)
            dst.writestr("manifest.json", json.dumps(manifest))
        return out

    def flip_byte(manifest, members):
        data = bytearray(members["database.sqlite3"] if "database.sqlite3" in members
                         else members["tables/audit_entry.jsonl"])
        data[len(data) // 2] ^= 0x01
        key = "database.sqlite3" if "database.sqlite3" in members else "tables/audit_entry.jsonl"
        members[key] = bytes(data)

    def slip(manifest, members):
        import hashlib

        members["../../etc/cron.d/evil"] = b"* * * * * root sh"
        manifest["files"]["../../etc/cron.d/evil"] = {
            "sha256": hashlib.sha256(b"* * * * * root sh").hexdigest(), "size": 17}

    def foreign(manifest, members):
        manifest["format"] = "something-else"

    def other_root(manifest, members):
        manifest["root"] = "A" * 43 + "="  # files intact, but not the trail they hold

    def malformed(manifest, members):
        manifest["tree_size"] = "many"

    for name, change, message in (("damaged", flip_byte, "SHA-256"),
                                  ("slip", slip, "unexpected file"),
                                  ("foreign", foreign, "not a Canh Gác backup"),
                                  ("other-root", other_root, "does not match the manifest"),
                                  ("malformed", malformed, "malformed")):
        target = tmp_path / f"new-{name}"
        result = _cli(["restore", str(rewrite(name, change)), "--data-dir", str(target)], None)
        assert result.exit_code != 0 and message in result.output, (name, result.output)
        assert not target.exists(), name
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"PK\x03\x04 but no zip")
    result = _cli(["restore", str(not_zip), "--data-dir", str(tmp_path / "x")], None)
    assert result.exit_code != 0 and "zip" in result.output
    assert not (tmp_path.parent / "etc").exists()


def _entry_count(app) -> int:
    with app.app_context():
        s = new_session()
        try:
            return s.scalar(select(func.count()).select_from(AuditEntry))
        finally:
            s.close()


def test_restore_refuses_a_database_that_holds_data(app, runner, tmp_path, settings_overrides):
    backup = tmp_path / "b.zip"
    assert runner.invoke(["backup", "-o", str(backup)]).exit_code == 0
    before = _entry_count(app)
    # Restoring into the live database (or any database with rows) must never mix the two.
    live = settings_overrides["database_url"]
    if live.startswith("sqlite"):
        result = _cli(["restore", str(backup), "--data-dir", str(tmp_path / "n")], live)
        assert result.exit_code != 0 and "already exists" in result.output
    else:
        result = _cli(["restore", str(backup), "--data-dir", str(tmp_path / "n")], live)
        assert result.exit_code != 0 and "already holds data" in result.output
    assert _entry_count(app) == before


def test_backup_of_a_database_without_schema_is_refused(tmp_path):
    result = _cli(["backup", "--data-dir", str(tmp_path / "trong"), "-o", str(tmp_path / "b.zip")],
                  None)
    assert result.exit_code != 0 and "canhgac init" in result.output
    assert not (tmp_path / "b.zip").exists()
