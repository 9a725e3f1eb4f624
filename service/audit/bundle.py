"""Evidence bundles: entries, inclusion proofs, a signed checkpoint and an offline verifier.

A bundle is a zip (docs/audit-log.md, "Evidence bundle"):

* ``entries.jsonl`` — one line per entry, ascending ``seq``:
  ``{"seq": n, "body": "<entry bytes as a JSON string>", "inclusion_proof": ["<base64>", …]}``;
* ``checkpoint.txt`` — the signed checkpoint every proof leads to (with any witness
  cosignatures);
* ``consistency.jsonl`` — the earlier checkpoints the bundle cites (the first to sign the
  first and the last exported entry, the newest cosigned by witnesses), each with its
  witnesses' cosignatures and an RFC 9162 consistency proof to ``checkpoint.txt``, so a
  checkpoint kept from a mail can be tied to the bundle offline;
* ``verifier.key`` — the server's verifier key (compare it with the copy kept on paper);
* ``manifest.json`` — what was exported, when, by whom, and the SHA-256 of the files above;
* ``manifest.sig`` — a signed note binding manifest.json, so no line can be dropped unnoticed;
* ``README.txt`` (Vietnamese, then English) and ``verify_bundle.py`` (needs only Python and
  ``cryptography``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log, merkle
from service.audit.checkpoint import (
    NoteError,
    UnverifiedNoteError,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verify_note,
)
from service.audit.keys import load_signer_key, load_verifier_key
from service.audit.models import AuditEntry, Checkpoint
from service.audit.operations import served_note, sign_checkpoint
from service.audit.search import SearchFilter, search_query
from service.config import Settings
from service.core.db import utcnow

FORMAT = "canhgac-evidence-bundle/1"
ENTRIES_FILE = "entries.jsonl"
CHECKPOINT_FILE = "checkpoint.txt"
CONSISTENCY_FILE = "consistency.jsonl"
KEY_FILE = "verifier.key"
MANIFEST_FILE = "manifest.json"
MANIFEST_SIG_FILE = "manifest.sig"
ENTRY_FIELDS = frozenset({"seq", "recorded_at", "kind", "body"})
_CHUNK = 500  # entries whose proofs are read together


class BundleError(Exception):
    """A bundle does not verify; the message says where (``vi``: the same in Vietnamese)."""

    def __init__(self, message: str, *, vi: str | None = None) -> None:
        """Keep the Vietnamese reason beside the English one."""
        super().__init__(message)
        self.vi = vi


@dataclass(frozen=True)
class BundleSummary:
    """What a verified bundle proves."""

    entries: int
    tree_size: int
    origin: str
    exported_at: str
    exported_by: str
    verifier_key: str
    is_key_from_bundle: bool

    def __str__(self) -> str:
        """Return a one-line summary."""
        return (f"{self.entries} entries proven in the signed log {self.origin} of "
                f"{self.tree_size} entries (exported {self.exported_at} by {self.exported_by})")


def _bundle_file(name: str) -> bytes:
    return resources.files("service.audit").joinpath("bundle_files", name).read_bytes()


def manifest_statement(origin: str, manifest: bytes) -> str:
    """Return the note text signed over a manifest (never parseable as a checkpoint)."""
    return f"{FORMAT}\n{origin}\n{hashlib.sha256(manifest).hexdigest()}\n"


def _entry_line(row_seq: int, body: str, proof: list[bytes]) -> bytes:
    item = {"seq": row_seq, "body": body,
            "inclusion_proof": [base64.b64encode(h).decode("ascii") for h in proof]}
    return (json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _check_proof(seq: int, body: str, proof: list[bytes], size: int, root: bytes) -> None:
    """Refuse to hand out a proof that does not verify (a damaged or altered node table)."""
    try:
        merkle.verify_inclusion(merkle.leaf_hash(body.encode("utf-8")), seq, size, proof, root)
    except merkle.ProofError as exc:
        raise BundleError(f"entry {seq}: the stored tree does not prove it against the signed "
                          "checkpoint; run `canhgac verify --deep`") from exc


def _matching_rows(session: Session, flt: SearchFilter, size: int):
    """Yield the matching entries below ``size`` in ascending seq, a chunk at a time."""
    last = -1
    while True:
        query = (search_query(flt, newest_first=False)
                 .where(AuditEntry.seq > last, AuditEntry.seq < size).limit(_CHUNK))
        rows = session.scalars(query).all()
        if not rows:
            return
        yield rows
        last = rows[-1].seq


def ascii_slug(text: str) -> str:
    """Return text as lowercase ASCII words joined by hyphens ("Xã Nhân Lý" -> "xa-nhan-ly")."""
    # đ/Đ do not decompose into d + a mark; everything else loses its marks under NFKD.
    plain = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    plain = plain.encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")


def bundle_filename(settings: Settings, incident_id: int | None, at: datetime) -> str:
    """Name a bundle after the commune, the incident and the local date, in ASCII (safe anywhere)."""
    day = at.astimezone(ZoneInfo(settings.timezone)).date().isoformat()
    parts = ["bang-chung", ascii_slug(settings.commune_name) or "canhgac"]
    if incident_id is not None:
        parts.append(f"su-co-{incident_id}")
    return "-".join([*parts, day]) + ".zip"


def export_bundle(session: Session, settings: Settings, flt: SearchFilter, output: Path,
                  *, by: str) -> int:
    """Write a bundle of the entries matching a filter; audit the export; return the count."""
    checkpoint = sign_checkpoint(session, settings)
    size = checkpoint.size
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    entries_hash = hashlib.sha256()
    count = 0
    first_seq: int | None = None
    last_seq: int | None = None
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            with bundle.open(ENTRIES_FILE, "w") as out:
                for rows in _matching_rows(session, flt, size):
                    proofs = log.inclusion_proofs(session, [r.seq for r in rows], size)
                    for row, proof in zip(rows, proofs, strict=True):
                        _check_proof(row.seq, row.body, proof, size, checkpoint.root_hash)
                        line = _entry_line(row.seq, row.body, proof)
                        entries_hash.update(line)
                        out.write(line)
                        count += 1
                        first_seq = row.seq if first_seq is None else first_seq
                        last_seq = row.seq
            note = served_note(session, checkpoint).encode("utf-8")
            bundle.writestr(CHECKPOINT_FILE, note)
            cited = _cited_lines(session, checkpoint, first_seq, last_seq)
            bundle.writestr(CONSISTENCY_FILE, cited)
            bundle.writestr(KEY_FILE, load_verifier_key(settings.keys_dir) + "\n")
            manifest = json.dumps({
                "format": FORMAT,
                "origin": settings.audit_origin,
                "tree_size": size,
                "root": base64.b64encode(checkpoint.root_hash).decode("ascii"),
                "entries": count,
                "exported_at": utcnow().isoformat().replace("+00:00", "Z"),
                "exported_by": by,
                "filter": flt.describe(),
                "files": {ENTRIES_FILE: entries_hash.hexdigest(),
                          CHECKPOINT_FILE: hashlib.sha256(note).hexdigest(),
                          CONSISTENCY_FILE: hashlib.sha256(cited).hexdigest()},
            }, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
            bundle.writestr(MANIFEST_FILE, manifest)
            statement = manifest_statement(settings.audit_origin, manifest)
            bundle.writestr(MANIFEST_SIG_FILE,
                            sign_note(statement, load_signer_key(settings.keys_dir)))
            bundle.writestr("README.txt", _bundle_file("README.txt"))
            bundle.writestr("verify_bundle.py", _bundle_file("verify_bundle.py"))
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    log.record(session, "audit.exported",
               {"actor": by, "format": "bundle", "filter": flt.describe(), "count": count,
                "tree_size": size, "manifest_sha256": hashlib.sha256(manifest).hexdigest()},
               actor=by)
    return count


def _cited_checkpoints(session: Session, own: Checkpoint, first_seq: int | None,
                       last_seq: int | None) -> list[Checkpoint]:
    """Return the earlier checkpoints a bundle cites, smallest first (never its own)."""
    from service.audit.operations import latest_cosigned_checkpoint

    found: dict[int, Checkpoint] = {}
    for seq in {s for s in (first_seq, last_seq) if s is not None}:
        cp = session.scalar(select(Checkpoint).where(Checkpoint.size > seq,
                                                     Checkpoint.size <= own.size)
                            .order_by(Checkpoint.size, Checkpoint.id))
        if cp is not None:
            found[cp.id] = cp
    cosigned = latest_cosigned_checkpoint(session)
    if cosigned is not None and cosigned.size <= own.size:
        found[cosigned.id] = cosigned
    found.pop(own.id, None)
    return sorted(found.values(), key=lambda cp: (cp.size, cp.id))


def _cited_lines(session: Session, own: Checkpoint, first_seq: int | None,
                 last_seq: int | None) -> bytes:
    """Return consistency.jsonl: each cited checkpoint and its proof to the bundle's own."""
    lines = []
    for cp in _cited_checkpoints(session, own, first_seq, last_seq):
        proof = (log.consistency_proof(session, cp.size, own.size)
                 if 0 < cp.size < own.size else [])
        if cp.size > 0:
            try:
                if cp.size == own.size:
                    if cp.root_hash != own.root_hash:
                        raise merkle.ProofError("two roots for one size")
                else:
                    merkle.verify_consistency(cp.size, own.size, cp.root_hash, own.root_hash,
                                              proof)
            except merkle.ProofError as exc:
                raise BundleError(f"checkpoint #{cp.id} (size {cp.size}) is not consistent with "
                                  "the newest one; run `canhgac verify`") from exc
        item = {"checkpoint": served_note(session, cp),
                "consistency_proof": [base64.b64encode(h).decode("ascii") for h in proof]}
        lines.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(lines).encode("utf-8")


# --- Verification (with the service's own core) ---------------------------------------------


def _read_bundle(path: Path) -> dict[str, bytes]:
    names = (ENTRIES_FILE, CHECKPOINT_FILE, KEY_FILE, MANIFEST_FILE, MANIFEST_SIG_FILE)
    try:
        with zipfile.ZipFile(path) as bundle:
            files = {name: bundle.read(name) for name in names}
            if CONSISTENCY_FILE in bundle.namelist():  # bundles before issue #17 have none
                files[CONSISTENCY_FILE] = bundle.read(CONSISTENCY_FILE)
            return files
    except KeyError as exc:
        raise BundleError(f"not a complete bundle: {exc.args[0]}",
                          vi="gói không đầy đủ: thiếu tệp trong gói") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"not a readable bundle: {exc}",
                          vi="không đọc được gói (không phải tệp .zip nguyên vẹn)") from exc


def _open(note: bytes, keys, what: str):
    try:
        return verify_note(note, keys)
    except UnverifiedNoteError as exc:
        raise BundleError(f"{what}: not signed by the trusted key",
                          vi=f"{what}: không được ký bằng khóa bạn tin") from exc
    except NoteError as exc:
        raise BundleError(f"{what}: {exc}", vi=f"{what}: chữ ký sai hoặc không đúng định dạng") from exc


def verify_bundle(path: Path, *, keys: list[str] | None = None, witness_keys=(),
                  quorum: int | None = None) -> BundleSummary:
    """Check a bundle offline; trust ``keys`` if given, else the bundle's own verifier.key.

    With ``witness_keys`` (CosignerVerifier), ``quorum`` of them (default all) must have
    cosigned the bundle's checkpoint or one it cites.
    """
    files = _read_bundle(Path(path))
    is_key_from_bundle = not keys
    try:
        key_texts = keys or [files[KEY_FILE].decode("utf-8").strip()]
        trusted = [parse_verifier_key(k.strip()) for k in key_texts]
    except (NoteError, UnicodeDecodeError) as exc:
        raise BundleError(f"{KEY_FILE}: {exc}", vi="khóa xác minh sai định dạng") from exc

    opened = _open(files[CHECKPOINT_FILE], trusted, CHECKPOINT_FILE)
    signer = opened.verified[0].name
    try:
        # Our convention: the key is named after the log, so a checkpoint names its signer's log.
        checkpoint = parse_checkpoint(opened.text, origin=signer)
    except ValueError as exc:
        raise BundleError(f"{CHECKPOINT_FILE}: {exc}",
                          vi=f"{CHECKPOINT_FILE}: không phải checkpoint hợp lệ") from exc

    statement = _open(files[MANIFEST_SIG_FILE], trusted, MANIFEST_SIG_FILE).text
    if statement != manifest_statement(checkpoint.origin, files[MANIFEST_FILE]):
        raise BundleError(f"{MANIFEST_FILE}: does not match its signature {MANIFEST_SIG_FILE} "
                          "(the manifest was altered)",
                          vi=f"{MANIFEST_FILE}: không khớp chữ ký {MANIFEST_SIG_FILE} (manifest đã bị sửa)")
    try:
        manifest = json.loads(files[MANIFEST_FILE])
        declared = manifest["files"]
        if manifest["format"] != FORMAT:
            raise BundleError(f"{MANIFEST_FILE}: unknown format {manifest['format']!r}",
                              vi=f"{MANIFEST_FILE}: định dạng không biết {manifest['format']!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{MANIFEST_FILE}: malformed ({exc})",
                          vi=f"{MANIFEST_FILE}: sai định dạng") from exc
    checked = [ENTRIES_FILE, CHECKPOINT_FILE]
    if CONSISTENCY_FILE in declared or CONSISTENCY_FILE in files:
        checked.append(CONSISTENCY_FILE)
    for name in checked:
        if name not in files:
            raise BundleError(f"{name}: missing, but the signed manifest lists it",
                              vi=f"{name}: bị thiếu, dù manifest đã ký có ghi")
        if declared.get(name) != hashlib.sha256(files[name]).hexdigest():
            raise BundleError(f"{name}: differs from the signed manifest (lines added, removed "
                              "or changed)", vi=f"{name}: khác với manifest đã ký (dòng bị thêm, "
                              "bớt hoặc sửa)")
    if manifest.get("tree_size") != checkpoint.size:
        raise BundleError(f"{MANIFEST_FILE}: tree size differs from {CHECKPOINT_FILE}",
                          vi=f"{MANIFEST_FILE}: kích thước cây khác với {CHECKPOINT_FILE}")

    cosigned = _verify_cited(files.get(CONSISTENCY_FILE, b""), trusted, checkpoint,
                             opened.text, files[CHECKPOINT_FILE].decode("utf-8"), witness_keys)
    needed = quorum or len(witness_keys)
    if witness_keys and max(cosigned, default=0) < needed:
        raise BundleError(f"no checkpoint in the bundle is cosigned by {needed} of the given "
                          "witnesses", vi=f"không checkpoint nào trong gói được {needed} nhân chứng "
                          "đã cho cùng ký")
    count = _verify_entries(files[ENTRIES_FILE], checkpoint.size, checkpoint.root)
    if count != manifest.get("entries"):
        raise BundleError(f"{ENTRIES_FILE}: {count} lines, the manifest says "
                          f"{manifest.get('entries')}", vi=f"{ENTRIES_FILE}: có {count} dòng, "
                          f"manifest ghi {manifest.get('entries')}")
    return BundleSummary(count, checkpoint.size, checkpoint.origin,
                         str(manifest.get("exported_at")), str(manifest.get("exported_by")),
                         str(trusted[0]), is_key_from_bundle)


def _verify_entries(data: bytes, size: int, root: bytes) -> int:
    """Check every line's body and inclusion proof; return how many lines there are."""
    previous = -1
    count = 0
    for number, line in enumerate(io.BytesIO(data), 1):
        where = f"{ENTRIES_FILE} line {number}"
        where_vi = f"{ENTRIES_FILE} dòng {number}"
        try:
            item = json.loads(line)
            seq, body = item["seq"], item["body"].encode("utf-8")
            proof = [base64.b64decode(p, validate=True) for p in item["inclusion_proof"]]
            entry = json.loads(body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"{where}: malformed ({exc})", vi=f"{where_vi}: sai định dạng") from exc
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= previous:
            raise BundleError(f"{where}: entry numbers must increase",
                              vi=f"{where_vi}: số mục phải tăng dần")
        if not isinstance(entry, dict) or set(entry) != ENTRY_FIELDS or entry["seq"] != seq:
            raise BundleError(f"{where}: the body is not entry {seq}",
                              vi=f"{where_vi}: nội dung không phải mục {seq}")
        try:
            merkle.verify_inclusion(merkle.leaf_hash(body), seq, size, proof, root)
        except merkle.ProofError as exc:
            raise BundleError(f"{where}: entry {seq} is not in the signed log ({exc})",
                              vi=f"{where_vi}: mục {seq} không nằm trong nhật ký đã ký (đã bị sửa)") from exc
        previous = seq
        count += 1
    return count


def _count_cosigners(note: str, body: str, witness_keys) -> int:
    from service.audit.cosign import CosignatureError, find_cosignature

    count = 0
    for key in witness_keys:
        try:
            count += find_cosignature(note, body, key) is not None
        except CosignatureError as exc:
            raise BundleError(f"a cosignature does not verify: {exc}",
                              vi=f"một chữ ký nhân chứng không hợp lệ: {exc}") from exc
    return count


def _verify_cited(data: bytes, trusted, own, own_text: str, own_note: str,
                  witness_keys) -> list[int]:
    """Check each cited checkpoint and its consistency proof; return cosigner counts."""
    counts = [_count_cosigners(own_note, own_text, witness_keys)]
    for number, line in enumerate(io.BytesIO(data), 1):
        where = f"{CONSISTENCY_FILE} line {number}"
        where_vi = f"{CONSISTENCY_FILE} dòng {number}"
        try:
            item = json.loads(line)
            note = item["checkpoint"]
            proof = [base64.b64decode(p, validate=True) for p in item["consistency_proof"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{where}: malformed ({exc})", vi=f"{where_vi}: sai định dạng") from exc
        opened = _open(note.encode("utf-8"), trusted, where)
        try:
            cited = parse_checkpoint(opened.text, origin=own.origin)
        except ValueError as exc:
            raise BundleError(f"{where}: {exc}", vi=f"{where_vi}: checkpoint sai ({exc})") from exc
        try:
            if cited.size == 0:
                pass
            elif cited.size == own.size:
                if cited.root != own.root or proof:
                    raise merkle.ProofError("another root for the same size")
            else:
                merkle.verify_consistency(cited.size, own.size, cited.root, own.root, proof)
        except merkle.ProofError as exc:
            raise BundleError(f"{where}: the checkpoint of size {cited.size} is not consistent "
                              f"with {CHECKPOINT_FILE} ({exc})",
                              vi=f"{where_vi}: checkpoint kích thước {cited.size} không nhất quán "
                              f"với {CHECKPOINT_FILE} ({exc})") from exc
        counts.append(_count_cosigners(note, opened.text, witness_keys))
    return counts
