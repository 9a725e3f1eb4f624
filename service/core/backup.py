"""`canhgac backup` and `canhgac restore`: a consistent online copy of the database, zipped.

What goes into the zip (docs/backup.md):

* ``manifest.json`` — format, time, database kind, schema revision, the trail's size and root
  *in the copied snapshot*, the verifier key, row counts, and the SHA-256 of every other file;
* the database, taken while the service keeps writing:
  - SQLite: ``database.sqlite3``, a page copy made with SQLite's online backup API in one step
    (one read transaction: a consistent snapshot; WAL writers are not blocked);
  - PostgreSQL: ``tables/<table>.jsonl``, every table read in ONE ``REPEATABLE READ READ ONLY``
    transaction (one snapshot for all tables). A logical export through SQLAlchemy rather than
    ``pg_dump``: it needs no client binaries of the server's exact version, restores into
    SQLite as well as PostgreSQL, and is read back with the same column types the code uses;
* ``evidence/<name>`` — the encrypted evidence files the snapshot refers to (copied after the
  snapshot, and written before their rows commit, so each one the snapshot names exists);
* ``keys/…`` — only with ``--with-keys``: the checkpoint signing key, the evidence key, the TLS
  key and certificate, the session secret, the witness key.

Restore refuses a non-empty data directory (and a target database that already holds rows),
checks every file's hash, rebuilds the database, and checks that the restored trail has the
manifest's size and root before it says so. ``canhgac verify`` then recomputes everything.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import click
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from service.core.cliutil import cli_actor, data_dir_option
from service.core.sealed import SealError, check_passphrase, is_sealed, open_sealed, seal_file

FORMAT = "canhgac-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database.sqlite3"
TABLES_PREFIX = "tables/"
EVIDENCE_PREFIX = "evidence/"
KEYS_PREFIX = "keys/"
# Exactly the files under keys/ a data directory may hold; nothing else is packed or unpacked.
KEY_FILES = ("checkpoint.key", "checkpoint.pub", "evidence.key", "tls.crt", "tls.key", "secret_key",
             "witness.key", "witness.pub")  # the witness key: its cosignatures name it
_EVIDENCE_NAME = re.compile(r"[0-9a-f]{32}")
_ROWS_PER_INSERT = 1000
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup cannot be made or restored; the message says why."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup or a restore covered."""

    tree_size: int
    root: bytes
    rows: dict[str, int]
    evidence_files: int
    has_keys: bool
    is_encrypted: bool = False

    def root_b64(self) -> str:
        """Return the root in standard base64, as checkpoints show it."""
        return base64.b64encode(self.root).decode()


# --- Column codecs: a JSON line can carry every column type the models use --------------------


def _codec(column) -> str:
    """Name how a column's Python values travel in JSON (chosen by type, never by value)."""
    impl = getattr(column.type, "impl", column.type)  # a TypeDecorator (UTCDateTime) wraps one
    if isinstance(impl, LargeBinary):
        return "bytes"
    if isinstance(impl, JSON):
        return "json"
    if isinstance(impl, DateTime):
        return "datetime"
    if isinstance(impl, Date):
        return "date"
    return "plain"


def _encode(codec: str, value):
    if value is None:
        return None
    if codec == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if codec == "datetime":
        return value.isoformat()
    if codec == "date":
        return value.isoformat()
    return value


def _decode(codec: str, value):
    # A JSON column's SQL NULL comes back as JSON null; both read as None and no query tells
    # them apart.
    if value is None:
        return None
    if codec == "bytes":
        return base64.b64decode(value)
    if codec == "datetime":
        return datetime.fromisoformat(value)
    if codec == "date":
        return date.fromisoformat(value)
    return value


def _tables():
    """Return every table of the models, parents before children."""
    from service.core.models import metadata

    return list(metadata.sorted_tables)


# --- Taking a backup ---------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Packer:
    """Write members into the zip and remember each one's hash and size for the manifest."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.files: dict[str, dict] = {}

    def add_file(self, name: str, path: Path) -> None:
        """Copy a file into the archive."""
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as src, self.archive.open(name, "w", force_zip64=True) as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
        self.files[name] = {"sha256": digest.hexdigest(), "size": size}

    def add_lines(self, name: str, lines: Iterable[bytes]) -> None:
        """Write a member from lines of bytes."""
        digest = hashlib.sha256()
        size = 0
        with self.archive.open(name, "w", force_zip64=True) as dst:
            for line in lines:
                digest.update(line)
                size += len(line)
                dst.write(line)
        self.files[name] = {"sha256": digest.hexdigest(), "size": size}


def _snapshot_facts(session: Session) -> dict:
    """Read the trail's size, root, newest checkpoint and evidence names from one snapshot."""
    from service.audit import log
    from service.audit.operations import latest_checkpoint
    from service.incidents.models import IncidentEvidence

    size = log.tree_size(session)
    root = log.root_at(session, size)
    checkpoint = latest_checkpoint(session)
    names = session.scalars(select(IncidentEvidence.stored_name)).all()
    revision = session.connection().exec_driver_sql(
        "SELECT version_num FROM alembic_version"
    ).scalar()
    return {
        "tree_size": size,
        "root": base64.b64encode(root).decode(),
        "checkpoint": None if checkpoint is None else {
            "size": checkpoint.size, "note": checkpoint.note,
            "signed_at": checkpoint.signed_at.isoformat(),
        },
        "schema_revision": revision,
        "evidence": sorted(names),
    }


def _row_counts(conn: Connection) -> dict[str, int]:
    return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in _tables()}


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy a live SQLite database with the online backup API, in one consistent step."""
    if not source.exists():
        raise BackupError(f"no database at {source}; was `canhgac init` run?")
    # Read-only URI: the backup never writes to the live database.
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # pages=-1: every page under one read transaction (one snapshot)
        # The copy stands alone: no -wal file to carry. The service turns WAL back on at open.
        dst.execute("PRAGMA journal_mode=DELETE")
        verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if verdict != "ok":
        raise BackupError(f"the copied database fails SQLite's integrity check: {verdict}")


def _sqlite_snapshot(copy: Path) -> tuple[dict, dict[str, int]]:
    engine = create_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as conn:
            session = Session(bind=conn)
            facts = _snapshot_facts(session)
            counts = _row_counts(conn)
            session.close()
    finally:
        engine.dispose()
    return facts, counts


def _table_lines(conn: Connection, table, counts: dict[str, int]) -> Iterator[bytes]:
    """Yield a header line, then one JSON array per row in primary-key order; count the rows."""
    columns = list(table.columns)
    codecs = [_codec(c) for c in columns]
    header = {"table": table.name, "columns": [c.name for c in columns], "codecs": codecs}
    yield json.dumps(header, ensure_ascii=False).encode() + b"\n"
    order = list(table.primary_key.columns) or columns
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(
        select(table).order_by(*order)
    )
    counts[table.name] = 0
    for row in result:
        values = [_encode(codec, value) for codec, value in zip(codecs, row, strict=True)]
        yield json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        counts[table.name] += 1


def _export_tables(engine: Engine, packer: _Packer) -> tuple[dict, dict[str, int]]:
    """Export every table inside one REPEATABLE READ, READ ONLY transaction (one snapshot)."""
    options = {"isolation_level": "REPEATABLE READ"}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    with engine.connect().execution_options(**options) as conn, conn.begin():
        session = Session(bind=conn)
        facts = _snapshot_facts(session)  # the first read fixes the snapshot every table shares
        counts: dict[str, int] = {}
        for table in _tables():
            packer.add_lines(f"{TABLES_PREFIX}{table.name}.jsonl", _table_lines(conn, table, counts))
        session.close()
    return facts, counts


def create_backup(settings, output: Path, *, with_keys: bool = False, passphrase: str | None = None,
                  clock: Callable[[], datetime] | None = None) -> BackupSummary:
    """Write a backup zip of the database (and evidence files, and keys if asked) to output.

    With a passphrase the zip is sealed (``service/core/sealed.py``) before it takes the
    output's name, so no plaintext copy is ever left where the backup goes.
    """
    if passphrase is not None:
        try:
            check_passphrase(passphrase)
        except SealError as exc:
            raise BackupError(str(exc)) from None
    from service.core import migrate
    from service.core.db import make_engine, utcnow
    from service.incidents.workflow import evidence_dir

    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        try:
            migrate.check(engine)
        except migrate.SchemaError as exc:
            raise BackupError(str(exc)) from None
        dialect = engine.dialect.name
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        # A sealed backup's plaintext (keys included) is built in the private data directory,
        # never beside the output: on a USB stick an unlinked file is not an erased one.
        private = Path(settings.data_dir)
        private.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch_dir = private if passphrase is not None else output.parent
        fd, tmp_name = tempfile.mkstemp(prefix=".canhgac-backup-", suffix=".zip", dir=scratch_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o600)  # personal data (and maybe keys): owner only
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                packer = _Packer(archive)
                if dialect == "sqlite":
                    with tempfile.TemporaryDirectory(prefix=".canhgac-backup-", dir=private) as scratch:
                        copy = Path(scratch) / SQLITE_MEMBER
                        _copy_sqlite(_sqlite_path(url), copy)
                        facts, counts = _sqlite_snapshot(copy)
                        packer.add_file(SQLITE_MEMBER, copy)
                    payload = "sqlite-file"
                else:
                    facts, counts = _export_tables(engine, packer)
                    payload = "tables-jsonl"
                missing = _pack_evidence(packer, evidence_dir(settings), facts.pop("evidence"))
                if with_keys:
                    _pack_keys(packer, settings.keys_dir)
                verifier = settings.keys_dir / "checkpoint.pub"
                manifest = {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "created_at": (clock or utcnow)().isoformat(),
                    "database": dialect,
                    "payload": payload,
                    "origin": settings.audit_origin,
                    "verifier_key": verifier.read_text().strip() if verifier.exists() else None,
                    "has_keys": with_keys,
                    "rows": counts,
                    "missing_evidence": missing,
                    **facts,
                    "files": packer.files,
                }
                archive.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            if passphrase is not None:
                sealed = output.with_name(f".{output.name}.{secrets.token_hex(8)}.sealed")
                try:
                    seal_file(tmp, sealed, passphrase)
                    os.replace(sealed, output)
                finally:
                    sealed.unlink(missing_ok=True)
            else:
                os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        engine.dispose()
    evidence = sum(1 for name in packer.files if name.startswith(EVIDENCE_PREFIX))
    return BackupSummary(facts["tree_size"], base64.b64decode(facts["root"]), counts, evidence,
                         with_keys, passphrase is not None)


def _pack_evidence(packer: _Packer, folder: Path, names: list[str]) -> list[str]:
    """Pack the evidence files the snapshot names; return the names that were not found."""
    missing = []
    for name in names:
        path = folder / name
        if not _EVIDENCE_NAME.fullmatch(name) or not path.is_file():
            missing.append(name)
            continue
        packer.add_file(EVIDENCE_PREFIX + name, path)
    return missing


def _pack_keys(packer: _Packer, keys_dir: Path) -> None:
    found = [name for name in KEY_FILES if (keys_dir / name).is_file()]
    if "checkpoint.key" not in found:
        raise BackupError(f"--with-keys: no checkpoint signing key under {keys_dir}")
    for name in found:
        packer.add_file(KEYS_PREFIX + name, keys_dir / name)


def record_backup(app, summary: BackupSummary, output: Path, by: str) -> None:
    """Write a ``backup.created`` entry: who copied the trail, how far, and whether with keys."""
    from service.audit.log import record
    from service.core.db import new_session

    session = new_session(app)
    try:
        record(session, "backup.created",
               {"by": by, "tree_size": summary.tree_size, "root": summary.root_b64(),
                "with_keys": summary.has_keys, "encrypted": summary.is_encrypted,
                "file": Path(output).name},
               actor=by)
        session.commit()
    finally:
        session.close()


# --- Restoring -----------------------------------------------------------------------------------


def read_manifest(archive: zipfile.ZipFile) -> dict:
    """Return the manifest of a backup zip; raise BackupError when it is not one."""
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise BackupError("not a Canh Gác backup: no manifest.json") from None
    except ValueError as exc:
        raise BackupError(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("not a Canh Gác backup (unknown format)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"backup format version {manifest.get('format_version')} is not "
                          f"supported (this version reads {FORMAT_VERSION})")
    size, root = manifest.get("tree_size"), manifest.get("root")
    try:
        is_root = isinstance(root, str) and len(base64.b64decode(root, validate=True)) == 32
    except ValueError:
        is_root = False
    if (not isinstance(size, int) or size < 0 or not is_root
            or manifest.get("payload") not in ("sqlite-file", "tables-jsonl")
            or not isinstance(manifest.get("files"), dict)):
        raise BackupError("manifest.json is incomplete or malformed")
    return manifest


def _allowed_member(name: str, manifest: dict) -> bool:
    """Only names this module writes may be unpacked (no path tricks inside the zip)."""
    if name == SQLITE_MEMBER:
        return manifest.get("payload") == "sqlite-file"
    if name.startswith(TABLES_PREFIX):
        return name[len(TABLES_PREFIX):].removesuffix(".jsonl") in {t.name for t in _tables()}
    if name.startswith(EVIDENCE_PREFIX):
        return bool(_EVIDENCE_NAME.fullmatch(name[len(EVIDENCE_PREFIX):]))
    if name.startswith(KEYS_PREFIX):
        return name[len(KEYS_PREFIX):] in KEY_FILES
    return False


def check_archive(archive: zipfile.ZipFile, manifest: dict) -> None:
    """Check that the zip holds exactly the manifest's files, each with its recorded hash."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BackupError("manifest.json lists no files")
    present = set(archive.namelist()) - {MANIFEST}
    if present != set(files):
        extra, lost = sorted(present - set(files)), sorted(set(files) - present)
        raise BackupError(f"the backup's files differ from its manifest (extra {extra}, missing {lost})")
    for name, facts in files.items():
        if not _allowed_member(name, manifest):
            raise BackupError(f"unexpected file in the backup: {name!r}")
        digest = hashlib.sha256()
        with archive.open(name) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != facts.get("sha256"):
            raise BackupError(f"{name}: its SHA-256 differs from the manifest (damaged or altered)")


def _is_empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _database_rows(engine: Engine) -> int:
    """Return how many rows the target database already holds in the models' tables."""
    existing = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return sum(conn.execute(select(func.count()).select_from(t)).scalar_one()
                   for t in _tables() if t.name in existing)


def _rows_from_jsonl(archive: zipfile.ZipFile, table) -> Iterator[dict]:
    name = f"{TABLES_PREFIX}{table.name}.jsonl"
    with archive.open(name) as fh:
        header = json.loads(fh.readline())
        columns, codecs = header["columns"], header["codecs"]
        known = set(table.columns.keys())
        if header.get("table") != table.name or not set(columns) <= known:
            raise BackupError(f"{name}: its columns do not match this version's table")
        for line in fh:
            values = json.loads(line)
            yield {c: _decode(k, v) for c, k, v in zip(columns, codecs, values, strict=True)}


def _rows_from_sqlite(conn: Connection, table) -> Iterator[dict]:
    order = list(table.primary_key.columns) or list(table.columns)
    for row in conn.execution_options(yield_per=2000).execute(select(table).order_by(*order)):
        yield dict(row._mapping)


def _insert_rows(conn: Connection, table, rows: Iterable[dict]) -> int:
    count = 0
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _ROWS_PER_INSERT:
            conn.execute(table.insert(), chunk)
            count += len(chunk)
            chunk = []
    if chunk:
        conn.execute(table.insert(), chunk)
        count += len(chunk)
    return count


def _reset_sequences(conn: Connection) -> None:
    """Move PostgreSQL's id sequences past the restored rows (explicit ids do not advance them)."""
    if conn.dialect.name != "postgresql":
        return
    quote = conn.dialect.identifier_preparer
    for table in _tables():
        key = list(table.primary_key.columns)
        if len(key) != 1 or not isinstance(key[0].type, Integer):
            continue
        # pg_get_serial_sequence is NULL for a column without a sequence; setval(NULL) is NULL.
        conn.execute(
            text(f"SELECT setval(pg_get_serial_sequence(:t, :c), "  # noqa: S608
                 f"coalesce((SELECT max({quote.quote(key[0].name)}) FROM "
                 f"{quote.format_table(table)}), 0) + 1, false)"),
            {"t": quote.format_table(table), "c": key[0].name},
        )


def _restore_rows(engine: Engine, manifest: dict, rows_of: Callable[[object], Iterable[dict]]) -> dict:
    """Create the schema at the code's revision and insert every table's rows, in one transaction."""
    from service.core import migrate

    revision = manifest.get("schema_revision")
    head = _code_head()
    if revision != head:
        raise BackupError(f"the backup's schema ({revision}) differs from this version's ({head}): "
                          "restore it with the Canh Gác version that made it")
    migrate.upgrade(engine)
    counts = {}
    with engine.begin() as conn:
        for table in _tables():
            counts[table.name] = _insert_rows(conn, table, rows_of(table))
        _reset_sequences(conn)
    return counts


def _code_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from service.core.migrate import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _extract(archive: zipfile.ZipFile, name: str, target: Path, mode: int = 0o600) -> None:
    """Unpack one member to target atomically (write, fsync, rename), owner-only."""
    tmp = target.with_name(target.name + ".restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with archive.open(name) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    os.chmod(target, mode)


def restore_backup(settings, backup: Path, *, passphrase: str | None = None) -> BackupSummary:
    """Restore a backup (sealed ones with their passphrase) into an empty data directory."""
    data_dir = Path(settings.data_dir)
    if not _is_empty_dir(data_dir):
        raise BackupError(f"the data directory {data_dir} is not empty: restore only into a new, "
                          "empty directory")
    if not is_sealed(backup):
        return _restore_zip(settings, Path(backup), data_dir)
    if passphrase is None:
        raise BackupError("bản sao lưu đã mã hóa: cần cụm mật khẩu / the backup is encrypted: "
                          "give its passphrase (CANHGAC_BACKUP_PASSPHRASE or the prompt)")
    # The plaintext (keys included) goes into a private folder beside the new data directory,
    # on the server's own disk, and is removed whatever happens.
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch_ctx = tempfile.TemporaryDirectory(prefix=".canhgac-restore-", dir=data_dir.parent)
    except OSError as exc:
        raise BackupError(f"cannot create a private working folder beside {data_dir} ({exc}); "
                          "restore as a user who may write to its parent folder") from None
    with scratch_ctx as scratch:
        plain = Path(scratch) / "backup.zip"
        try:
            open_sealed(backup, plain, passphrase)
        except SealError as exc:
            raise BackupError(str(exc)) from None
        summary = _restore_zip(settings, plain, data_dir)
    return dataclasses.replace(summary, is_encrypted=True)


def _restore_zip(settings, backup: Path, data_dir: Path) -> BackupSummary:
    from service.core.db import make_engine

    try:
        archive = zipfile.ZipFile(backup)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BackupError(f"cannot open {backup} as a zip file: {exc}") from None
    with archive:
        manifest = read_manifest(archive)
        check_archive(archive, manifest)
        url = settings.resolved_database_url
        target_db = _sqlite_path(url) if url.startswith("sqlite") else None
        if target_db is not None and target_db.exists() and target_db.stat().st_size > 0:
            raise BackupError(f"the database file {target_db} already exists")
        engine = make_engine(url)
        try:
            if target_db is None and _database_rows(engine):
                raise BackupError("the target database already holds data: restore only into "
                                  "an empty database (a new schema)")
            existed = data_dir.exists()
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(data_dir, 0o700)
            try:
                counts = _restore_into(archive, manifest, engine, target_db, data_dir)
            except BaseException:
                # Leave nothing half-restored behind: the directory (and file) were empty.
                engine.dispose()
                _clear(data_dir, remove=not existed)
                if target_db is not None:
                    for suffix in ("", "-wal", "-shm", "-journal", "-writer.lock"):
                        Path(f"{target_db}{suffix}").unlink(missing_ok=True)
                raise
        finally:
            engine.dispose()
    evidence = sum(1 for n in manifest["files"] if n.startswith(EVIDENCE_PREFIX))
    return BackupSummary(manifest["tree_size"], base64.b64decode(manifest["root"]), counts,
                         evidence, bool(manifest.get("has_keys")))


def _restore_into(archive: zipfile.ZipFile, manifest: dict, engine: Engine,
                  target_db: Path | None, data_dir: Path) -> dict:
    """Rebuild the database and files; check the trail's size and root against the manifest."""
    from service.audit import log

    if manifest["payload"] == "sqlite-file" and target_db is not None:
        target_db.parent.mkdir(parents=True, exist_ok=True)
        _extract(archive, SQLITE_MEMBER, target_db)
        counts = dict(manifest.get("rows", {}))
    else:
        counts = _restore_logical(archive, manifest, engine)
    _unpack_files(archive, manifest, data_dir)
    with engine.connect() as conn:
        session = Session(bind=conn)
        size = log.tree_size(session)
        root = log.root_at(session, size)
        session.close()
    if size != manifest["tree_size"] or root != base64.b64decode(manifest["root"]):
        raise BackupError(f"the restored trail (size {size}) does not match the manifest "
                          f"(size {manifest['tree_size']}): the backup is damaged or altered")
    return counts


def _clear(folder: Path, *, remove: bool) -> None:
    """Remove what a failed restore put into a folder that was empty (or absent) before."""
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _restore_logical(archive: zipfile.ZipFile, manifest: dict, engine: Engine) -> dict:
    if manifest["payload"] == "tables-jsonl":
        return _restore_rows(engine, manifest, lambda table: _rows_from_jsonl(archive, table))
    # A SQLite file restored into PostgreSQL: read it table by table through the models.
    with tempfile.TemporaryDirectory(prefix="canhgac-restore-") as scratch:
        copy = Path(scratch) / SQLITE_MEMBER
        _extract(archive, SQLITE_MEMBER, copy)
        source = create_engine(f"sqlite:///{copy}")
        try:
            with source.connect() as conn:
                return _restore_rows(engine, manifest, lambda table: _rows_from_sqlite(conn, table))
        finally:
            source.dispose()


def _unpack_files(archive: zipfile.ZipFile, manifest: dict, data_dir: Path) -> None:
    for name in manifest["files"]:
        if name.startswith(EVIDENCE_PREFIX):
            folder = data_dir / "evidence"
        elif name.startswith(KEYS_PREFIX):
            folder = data_dir / "keys"
        else:
            continue
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        mode = 0o644 if name.endswith((".pub", ".crt")) else 0o600
        _extract(archive, name, folder / name.split("/", 1)[1], mode)


# --- Commands ------------------------------------------------------------------------------------



PASSPHRASE_ENV = "CANHGAC_BACKUP_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


def _passphrase(*, confirm: bool) -> str:
    """Return the backup passphrase from the environment or a hidden prompt."""
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        passphrase = click.prompt("Cụm mật khẩu sao lưu / backup passphrase", hide_input=True,
                                  confirmation_prompt=confirm)
    try:
        check_passphrase(passphrase)
    except SealError as exc:
        raise click.ClickException(str(exc)) from None
    return passphrase


@click.command("backup")
@data_dir_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Tệp sao lưu (.zip) / backup file to write")
@click.option("--with-keys", is_flag=True,
              help="Kèm các khóa (khóa ký, khóa mã hóa bằng chứng, TLS) / include the keys "
                   "(signing, evidence encryption, TLS); encrypted unless --no-encrypt")
@click.option("--encrypt/--no-encrypt", default=None,
              help="Mã hóa bằng cụm mật khẩu (mặc định khi có --with-keys) / seal with a passphrase "
                   f"(the default with --with-keys); from {PASSPHRASE_ENV} or a prompt")
def backup_command(data_dir, output, with_keys, encrypt) -> None:
    """Back up the database while the service runs (a consistent snapshot), as a zip."""
    from service.core.cliutil import make_app

    is_encrypted = with_keys if encrypt is None else encrypt
    passphrase = _passphrase(confirm=True) if is_encrypted else None
    app = make_app(data_dir)
    settings = app.config["SETTINGS"]
    try:
        summary = create_backup(settings, output, with_keys=with_keys, passphrase=passphrase)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    record_backup(app, summary, output, cli_actor())
    app.extensions["canhgac.engine"].dispose()
    click.echo(f"Đã sao lưu / backed up: {summary.tree_size} mục nhật ký / trail entries, "
               f"gốc / root {summary.root_b64()}, {summary.evidence_files} tệp bằng chứng / "
               f"evidence files -> {output}")
    if with_keys and not is_encrypted:
        click.echo("CẢNH BÁO: tệp có chứa khóa ký và KHÔNG được mã hóa; hãy cất giữ ngoại tuyến / "
                   "WARNING: the file holds the signing key UNENCRYPTED; keep it offline", err=True)
    elif with_keys:
        click.echo("Tệp có khóa, đã mã hóa: giữ cụm mật khẩu tách khỏi tệp / the file holds the "
                   "keys, encrypted: keep the passphrase apart from it", err=True)
    else:
        click.echo("Không kèm khóa / keys not included: giữ riêng thư mục keys/ / keep keys/ "
                   "safe separately", err=True)


@click.command("restore")
@click.argument("backup", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def restore_command(backup, data_dir) -> None:
    """Restore a backup into a new, empty data directory (and empty database)."""
    from service.config import ConfigError, load_settings

    try:
        settings = load_settings({"data_dir": data_dir})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    passphrase = _passphrase(confirm=False) if is_sealed(backup) else None
    try:
        summary = restore_backup(settings, backup, passphrase=passphrase)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Đã khôi phục / restored: {summary.tree_size} mục nhật ký / trail entries, "
               f"gốc / root {summary.root_b64()} -> {settings.data_dir}")
    if summary.has_keys:
        click.echo(f"Kiểm tra / check: canhgac verify --data-dir {settings.data_dir}")
    else:
        click.echo("Bản sao lưu không có khóa: chép thư mục keys/ đã cất giữ vào thư mục dữ liệu, "
                   "hoặc kiểm tra bằng khóa xác minh trên giấy / the backup holds no keys: copy "
                   f"your kept keys/ into the data directory, or check with the verifier key "
                   f"kept on paper: canhgac verify --data-dir {settings.data_dir} --key "
                   "'<verifier key>'")
