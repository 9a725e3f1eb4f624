"""Evidence bundles: `canhgac export` filters, `verify --bundle`, and the standalone script."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import cryptography
import pytest
from sqlalchemy import select

from service.audit import log
from service.audit.bundle import BundleError, manifest_statement, verify_bundle
from service.audit.checkpoint import generate_key, sign_note
from service.audit.keys import load_signer_key, load_verifier_key
from service.audit.models import AuditEntry

PATHS = ["C:\\DuLieu\\DanCu\\thon_1.xlsx", "/home/vhxh/AnSinh/chi_tra.csv",
         "D:\\HoTich\\khai_sinh.docx"]
CLASSES = ["dan_cu", "an_sinh", "ho_tich"]


@pytest.fixture
def filled(app, session):
    """30 events by three officials over three days, and some incident entries."""
    rows = []
    for i in range(30):
        day = 1 + i // 10
        body = {"actor": f"canbo{i % 3}", "action": "copy", "i": i,
                "object": {"path": PATHS[i % 3], "data_class": CLASSES[i % 3]}}
        rows.append(log.PendingEntry("event", body, {
            "actor": f"canbo{i % 3}", "host": "PC-01", "action": "copy", "path": PATHS[i % 3],
            "data_class": CLASSES[i % 3],
            "occurred_at": datetime(2026, 3, day, 2, 0, i, tzinfo=UTC)}))
    log.append_entries(session, rows)
    for i in range(4):
        log.record(session, "incident.opened" if i == 0 else "incident.comment",
                   {"incident_id": 7, "n": i}, incident_id=7, actor="cong_an_1")
    session.commit()
    return app


def _export(runner, out: Path, *filters: str):
    result = runner.invoke(["export", "-o", str(out), *filters])
    assert result.exit_code == 0, result.output
    return result


def _entries(bundle: Path) -> list[dict]:
    with zipfile.ZipFile(bundle) as z:
        lines = z.read("entries.jsonl").decode().splitlines()
    return [{**json.loads(line), "entry": json.loads(json.loads(line)["body"])} for line in lines]


def _standalone(bundle: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run verify_bundle.py from a folder holding nothing else, without the project on the path."""
    alone = tmp_path / "may-khac"
    alone.mkdir(exist_ok=True)
    with zipfile.ZipFile(bundle) as z:
        (alone / "verify_bundle.py").write_bytes(z.read("verify_bundle.py"))
    assert sorted(p.name for p in alone.iterdir()) == ["verify_bundle.py"]
    # -S: no site-packages and no .pth files (so no editable install of this project);
    # PYTHONPATH gives only the folder holding `cryptography` and its C bindings.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH":
           str(Path(cryptography.__file__).resolve().parent.parent), "PYTHONIOENCODING": "utf-8"}
    probe = subprocess.run([sys.executable, "-S", "-c", "import service"], cwd=alone, env=env,
                           capture_output=True, text=True, check=False)
    assert probe.returncode != 0, "the project must not be importable in this check"
    return subprocess.run([sys.executable, "-S", "verify_bundle.py", str(bundle.resolve()), *args],
                          cwd=alone, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def _rewrite(bundle: Path, out: Path, **changes: bytes) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            name = item.filename
            key = name.replace(".", "_")
            if key in changes:
                if changes[key] is not None:
                    dst.writestr(name, changes[key])
            else:
                dst.writestr(name, src.read(name))
    return out


def test_export_verifies_with_the_cli_and_the_standalone_script(filled, session, runner, tmp_path):
    out = tmp_path / "bang-chung.zip"
    result = _export(runner, out, "--actor", "canbo1")
    assert "exported 10 entries" in result.output
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        readme = z.read("README.txt").decode()
        manifest = json.loads(z.read("manifest.json"))
        key = z.read("verifier.key").decode().strip()
    assert names == {"entries.jsonl", "checkpoint.txt", "consistency.jsonl", "verifier.key",
                     "manifest.json", "manifest.sig", "README.txt", "verify_bundle.py"}
    assert readme.startswith("GÓI BẰNG CHỨNG NHẬT KÝ KIỂM TOÁN")
    assert "python verify_bundle.py" in readme
    assert key == load_verifier_key(filled.config["SETTINGS"].keys_dir)
    entries = _entries(out)
    assert [e["entry"]["body"]["i"] for e in entries] == list(range(1, 30, 3))
    assert all(e["entry"]["body"]["actor"] == "canbo1" for e in entries)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert manifest["entries"] == 10 and manifest["filter"] == {"actor": "canbo1"}
    assert manifest["tree_size"] == 34

    verified = runner.invoke(["verify", "--bundle", str(out)])
    assert verified.exit_code == 0, verified.output
    assert "HỢP LỆ / VALID: 10 mục" in verified.output
    assert key in verified.output  # shown for comparison with the paper copy
    alone = _standalone(out, tmp_path)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "HỢP LỆ / VALID: 10 mục" in alone.stdout
    assert _standalone(out, tmp_path, "--key", key).returncode == 0

    # The export itself is in the trail: who, what filter, how many, which manifest.
    session.rollback()
    exported = session.scalars(select(AuditEntry).where(AuditEntry.kind == "audit.exported")).one()
    body = json.loads(exported.body)["body"]
    assert body["count"] == 10 and body["filter"] == {"actor": "canbo1"}
    with zipfile.ZipFile(out) as z:
        assert body["manifest_sha256"] == hashlib.sha256(z.read("manifest.json")).hexdigest()
    assert exported.actor.startswith("cli")


@pytest.mark.parametrize(("filters", "expected"), [
    (["--path", "dancu"], list(range(0, 30, 3))),
    (["--data-class", "ho_tich"], list(range(2, 30, 3))),
    (["--since", "2026-03-02", "--until", "2026-03-03"], list(range(10, 20))),
    (["--since", "2026-03-03T09:00:24+07:00", "--actor", "canbo2"], [26, 29]),
    (["--incident", "7"], [30, 31, 32, 33]),
    (["--kind", "incident.comment"], [31, 32, 33]),
])
def test_export_filters(filled, runner, tmp_path, filters, expected):
    out = tmp_path / "b.zip"
    _export(runner, out, *filters)
    assert [e["seq"] for e in _entries(out)] == expected
    assert runner.invoke(["verify", "--bundle", str(out)]).exit_code == 0


def test_an_empty_bundle_still_verifies(filled, runner, tmp_path):
    out = tmp_path / "b.zip"
    _export(runner, out, "--actor", "khong_ai")
    assert _entries(out) == []
    assert runner.invoke(["verify", "--bundle", str(out)]).exit_code == 0
    assert _standalone(out, tmp_path).returncode == 0


def test_bad_filters_are_refused(filled, runner, tmp_path):
    result = runner.invoke(["export", "-o", str(tmp_path / "b.zip"), "--since", "hôm qua"])
    assert result.exit_code != 0 and "Từ ngày" in result.output  # --since, in Vietnamese first


def _both_refuse(runner, bundle: Path, tmp_path: Path, *needles: str, args=()) -> None:
    cli = runner.invoke(["verify", "--bundle", str(bundle), *args])
    assert cli.exit_code == 1, cli.output
    assert "KHÔNG HỢP LỆ / INVALID" in cli.output
    alone = _standalone(bundle, tmp_path, *args)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "KHÔNG HỢP LỆ / INVALID" in alone.stdout
    for needle in needles:
        assert needle in cli.output, cli.output
        assert needle in alone.stdout, alone.stdout


def test_tampered_bundles_fail_both_verifiers(filled, runner, tmp_path):
    out = tmp_path / "b.zip"
    _export(runner, out, "--actor", "canbo0")
    with zipfile.ZipFile(out) as z:
        lines = z.read("entries.jsonl").decode().splitlines(keepends=True)
        manifest = z.read("manifest.json")
    # One character of one entry's body.
    item = json.loads(lines[3])
    item["body"] = item["body"].replace("canbo0", "canbo9")
    changed = [*lines[:3], json.dumps(item, ensure_ascii=False) + "\n", *lines[4:]]
    _both_refuse(runner, _rewrite(out, tmp_path / "t1.zip", entries_jsonl="".join(changed).encode()),
                 tmp_path, "entries.jsonl")
    # A line dropped (an inconvenient entry left out).
    _both_refuse(runner, _rewrite(out, tmp_path / "t2.zip",
                                  entries_jsonl="".join(lines[:2] + lines[3:]).encode()),
                 tmp_path, "entries.jsonl")
    # The manifest edited to match: its signature no longer does.
    forged = json.loads(manifest)
    forged["files"]["entries.jsonl"] = hashlib.sha256("".join(changed).encode()).hexdigest()
    _both_refuse(runner, _rewrite(out, tmp_path / "t3.zip", entries_jsonl="".join(changed).encode(),
                                  manifest_json=json.dumps(forged).encode()),
                 tmp_path, "manifest")
    # Even someone holding the signing key cannot make a changed entry fit the checkpoint.
    settings = filled.config["SETTINGS"]
    manifest_bytes = json.dumps(forged).encode()
    resigned = sign_note(manifest_statement(settings.audit_origin, manifest_bytes),
                         load_signer_key(settings.keys_dir))
    _both_refuse(runner, _rewrite(out, tmp_path / "t4.zip", entries_jsonl="".join(changed).encode(),
                                  manifest_json=manifest_bytes, manifest_sig=resigned.encode()),
                 tmp_path, "line 4", "not in the signed log")
    # A missing file.
    _both_refuse(runner, _rewrite(out, tmp_path / "t5.zip", checkpoint_txt=None), tmp_path,
                 "checkpoint.txt")


def test_a_bundle_signed_by_another_key_is_refused_with_the_paper_key(filled, runner, tmp_path):
    out = tmp_path / "b.zip"
    _export(runner, out)
    _signer, other = generate_key(filled.config["SETTINGS"].audit_origin)
    _both_refuse(runner, out, tmp_path, "checkpoint.txt", "not signed by the trusted key",
                 args=("--key", other))
    # A forger replacing the key inside the bundle is only caught by the paper key.
    swapped = _rewrite(out, tmp_path / "k.zip", verifier_key=(other + "\n").encode())
    assert runner.invoke(["verify", "--bundle", str(swapped)]).exit_code == 1
    paper = load_verifier_key(filled.config["SETTINGS"].keys_dir)
    assert runner.invoke(["verify", "--bundle", str(swapped), "--key", paper]).exit_code == 0


def test_verify_bundle_api(filled, session, tmp_path):
    from service.audit.bundle import export_bundle
    from service.audit.search import SearchFilter

    settings = filled.config["SETTINGS"]
    out = tmp_path / "api.zip"
    count = export_bundle(session, settings, SearchFilter(actor="canbo2"), out, by="test")
    session.commit()
    summary = verify_bundle(out)
    assert (summary.entries, summary.tree_size, summary.exported_by) == (count, 34, "test")
    assert summary.is_key_from_bundle
    assert not verify_bundle(out, keys=[load_verifier_key(settings.keys_dir)]).is_key_from_bundle
    with pytest.raises(BundleError, match="not a readable bundle"):
        verify_bundle(tmp_path / "missing.zip")
    root = base64.b64decode(json.loads(zipfile.ZipFile(out).read("manifest.json"))["root"])
    assert root == log.root_at(session, 34)
