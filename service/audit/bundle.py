"""Evidence bundles: entries, inclusion proofs, a signed checkpoint and an offline verifier."""

from __future__ import annotations

import base64
import json
import zipfile
from importlib import resources
from pathlib import Path

from sqlalchemy.orm import Session

from service.audit import log, merkle
from service.audit.checkpoint import NoteError, open_note, parse_checkpoint
from service.audit.keys import load_verifier_key
from service.audit.operations import sign_checkpoint
from service.audit.search import SearchFilter, search_query
from service.config import Settings
from service.core.db import utcnow

MAX_BUNDLE_ENTRIES = 200_000


class BundleError(Exception):
    """A bundle does not verify; the message says where."""


def _bundle_file(name: str) -> bytes:
    return resources.files("service.audit").joinpath("bundle_files", name).read_bytes()


def export_bundle(session: Session, settings: Settings, flt: SearchFilter, output: Path,
                  *, by: str) -> int:
    """Write a bundle of the entries matching a filter; audit the export; return the count."""
    checkpoint = sign_checkpoint(session, settings)
    size = checkpoint.size
    rows = [r for r in session.scalars(search_query(flt).limit(MAX_BUNDLE_ENTRIES)) if r.seq < size]
    rows.sort(key=lambda r: r.seq)
    get_node = log.node_getter(session, size)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        lines = []
        for row in rows:
            proof = merkle.inclusion_proof_from_nodes(row.seq, size, get_node)
            lines.append(json.dumps({
                "seq": row.seq, "body": row.body,
                "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
            }, ensure_ascii=False))
        bundle.writestr("entries.jsonl", "\n".join(lines) + ("\n" if lines else ""))
        bundle.writestr("checkpoint.txt", checkpoint.note)
        bundle.writestr("verifier.key", load_verifier_key(settings.keys_dir) + "\n")
        bundle.writestr("manifest.json", json.dumps({
            "format": "canhgac-evidence-bundle/1", "exported_at": utcnow().isoformat(),
            "exported_by": by, "filter": flt.describe(), "entries": len(rows), "tree_size": size,
            "origin": settings.audit_origin,
        }, ensure_ascii=False, indent=2))
        bundle.writestr("README.txt", _bundle_file("README.txt"))
        bundle.writestr("verify_bundle.py", _bundle_file("verify_bundle.py"))
    tmp.replace(output)
    log.record(session, "audit.exported",
               {"actor": by, "format": "bundle", "filter": flt.describe(), "count": len(rows),
                "tree_size": size}, actor=by)
    return len(rows)


def verify_bundle(path: Path, *, extra_keys: list[str] = ()) -> str:
    """Check a bundle with the service's own core; return a one-line summary or raise."""
    try:
        with zipfile.ZipFile(path) as bundle:
            keys = [bundle.read("verifier.key").decode().strip(), *extra_keys]
            note = bundle.read("checkpoint.txt").decode()
            entries = bundle.read("entries.jsonl").decode().splitlines()
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise BundleError(f"not a readable bundle: {exc}") from exc
    try:
        checkpoint = parse_checkpoint(open_note(note, keys))
    except (NoteError, ValueError) as exc:
        raise BundleError(f"checkpoint.txt: {exc}") from exc
    for number, line in enumerate(entries, 1):
        try:
            item = json.loads(line)
            body = item["body"].encode()
            if json.loads(body)["seq"] != item["seq"]:
                raise BundleError(f"entries.jsonl line {number}: number does not match its body")
            proof = [base64.b64decode(p, validate=True) for p in item["inclusion_proof"]]
            merkle.verify_inclusion(merkle.leaf_hash(body), item["seq"], checkpoint.size, proof,
                                    checkpoint.root)
        except BundleError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"entries.jsonl line {number}: {exc}") from exc
    return f"{len(entries)} entries proven in the signed log of {checkpoint.size} entries"
