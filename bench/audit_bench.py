"""The audit trail: append and verify throughput beside their physical baselines, proof time.

All figures come from one run, on the same machine, interleaved round by round (the machines
are shared and noisy, so the ratios are the figures to read):

* **append**: ``append_entries`` in batches of 1,000, one commit per batch (SQLite, WAL,
  synchronous=FULL), against (a) raw ``sqlite3.executemany`` of exactly the rows the trail
  stored, into the same table with the same indexes and pragmas, one commit per 1,000, and
  (b) pymerkle's ``SqliteTree.append_entries`` over the same entries, batches of 1,000 — fed
  the finished canonical bytes (its best case) and, separately, timed from the same dicts
  (canonicalization included, the work ``append_entries`` does);
* **verify**: ``verify_log`` over the whole stored trail (reading the database included)
  against ``hashlib.sha256`` over the same entry bytes already in memory;
* **verify_large** (full run only): the same at 262,144 entries (where the fast pass starts
  using worker processes on SQLite), in one process and with the workers, interleaved, 3 rounds;
* **inclusion proof at 10,000,000 entries**: ``log.inclusion_proof`` from a SQLite file.
  What is built, honestly: the full run writes 10,000,000 ``audit_entry`` rows and all 78,117
  stored ``merkle_node`` rows, n/128 (levels ≥ 8, ``log.MIN_STORED_LEVEL``: a proof rebuilds its
  level 1–7 siblings from the ≤ 255 leaf hashes beside the leaf), but synthetically: every
  leaf hash is the same value, every node of a level has that level's hash (the tree of ten
  million identical leaves, which is a valid RFC 6962 tree), bodies are "{}" (so the range
  read of leaf hashes touches fewer pages than real rows would: see the next figure), and the
  secondary indexes of ``audit_entry`` are not built (a proof reads leaves by primary key).
  The quick run builds only the rows each timed proof reads. Every timed proof is checked
  with ``merkle.verify_inclusion`` against the root of that tree;
* **inclusion proof in the appended trail**: the same, in round 0's trail (real event bodies
  of ≈ 600 bytes, all indexes), so the leaf range read has its real row size.

``run(quick=False) -> dict``; ``python bench/audit_bench.py [--quick]`` prints JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from service.audit import log, merkle
from service.audit.checkpoint import generate_key
from service.audit.models import AuditEntry, AuditHead, Checkpoint, MerkleNode
from service.audit.operations import sign_checkpoint
from service.audit.verify import verify_log
from service.config import Settings
from service.core.db import Base, make_engine
from service.core.files import write_private

BATCH = 1_000
PROOF_SIZE = 10_000_000
LARGE_VERIFY = 262_144  # 32 chunks: the least for which SQLite verify uses workers
_TABLES = [AuditEntry.__table__, MerkleNode.__table__, AuditHead.__table__, Checkpoint.__table__]
_ACTIONS = ["open", "read", "modify", "copy", "export", "print", "view"]
_PATHS = ["C:\\DuLieu\\DanCu\\thon_{}.xlsx", "/home/vhxh/AnSinh/chi_tra_{}.csv",
          "D:\\HoTich\\khai_sinh_{}.docx", "/srv/dungchung/kinhte/dat_{}.xlsx"]
_CLASSES = ["dan_cu", "an_sinh", "ho_tich", "dat_dai"]


def make_entries(n: int, seed: int = 0) -> list[log.PendingEntry]:
    """Return n audit entries shaped like ingested events (bodies and search columns)."""
    rng = random.Random(seed)
    base = datetime(2026, 10, 1, 1, 30, tzinfo=UTC)
    out = []
    for i in range(n):
        occurred = base + timedelta(milliseconds=i * 577)
        actor, host, action = f"canbo{i % 40:02d}", f"PC-{i % 12:02d}", _ACTIONS[i % 7]
        path = _PATHS[i % 4].format(i % 22)
        body = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": occurred.isoformat(), "host": host, "actor": actor, "action": action,
            "object": {"path": path, "sha256": hashlib.sha256(path.encode()).hexdigest(),
                       "size": 10_000 + i % 5000, "data_class": _CLASSES[i % 4]},
            "unit": ["cong_an", "van_phong", "vh_xh", "kinh_te", "tt_hcc"][i % 5],
            "pii": {"cccd": i % 50}, "schema_version": 1, "source": "agent:PC-01",
        }
        out.append(log.PendingEntry("event", body, {
            "actor": actor, "host": host, "action": action, "path": path,
            "data_class": _CLASSES[i % 4], "occurred_at": occurred, "event_id": body["id"]}))
    return out


def _engine(path: Path):
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine, tables=_TABLES)
    return engine


def _append_rate(folder: Path, entries: list[log.PendingEntry]) -> float:
    engine = _engine(folder / "trail.db")
    start = time.perf_counter()
    with Session(engine) as session:
        for i in range(0, len(entries), BATCH):
            log.append_entries(session, entries[i : i + BATCH])
            session.commit()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return len(entries) / elapsed


def _stored_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT * FROM audit_entry ORDER BY seq").fetchall()
    conn.close()
    return rows


def raw_rows_rate(folder: Path, rows: list[tuple]) -> float:
    """Insert the very rows the trail stored, same table and indexes, one commit per 1,000."""
    engine = _engine(folder / "raw.db")  # same DDL, WAL and synchronous=FULL
    engine.dispose()
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    sql = f"INSERT INTO audit_entry VALUES ({', '.join('?' * len(rows[0]))})"  # noqa: S608
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def _pymerkle_rate(folder: Path, datas: list[bytes] | None,
                   entries: list[log.PendingEntry] | None = None) -> float:
    """pymerkle's SqliteTree (its defaults), batches of 1,000; from bytes or from the dicts."""
    from pymerkle import SqliteTree

    tree = SqliteTree(str(folder / f"pymerkle-{uuid.uuid4().hex}.db"))
    stamp = log.recorded_at_text(datetime.now(UTC))
    start = time.perf_counter()
    if datas is not None:
        for i in range(0, len(datas), BATCH):
            tree.append_entries(datas[i : i + BATCH])
        n = len(datas)
    else:
        for i in range(0, len(entries), BATCH):
            tree.append_entries([log.entry_bytes(i + k, stamp, e.kind, e.body)
                                 for k, e in enumerate(entries[i : i + BATCH])])
        n = len(entries)
    elapsed = time.perf_counter() - start
    tree.close()
    return n / elapsed


def _pymerkle_proof_ms(folder: Path, datas: list[bytes]) -> float:
    from pymerkle import SqliteTree

    tree = SqliteTree(str(folder / "pymerkle-proof.db"))
    for i in range(0, len(datas), 10_000):
        tree.append_entries(datas[i : i + 10_000])
    rng = random.Random(3)
    times = []
    for _ in range(5):
        index = rng.randrange(len(datas))
        start = time.perf_counter()
        tree.prove_inclusion(index + 1)  # pymerkle counts leaves from 1
        times.append(time.perf_counter() - start)
    tree.close()
    return 1000 * statistics.median(times)


def _trail_proof_ms(db: Path, datas: list[bytes], samples: int = 200) -> dict:
    """Time inclusion proofs in an appended trail (real bodies and indexes), each verified."""
    leaves = merkle.leaf_hashes(datas)
    size = len(leaves)
    root = merkle.root_hash(leaves)
    rng = random.Random(5)
    seqs = [rng.randrange(size) for _ in range(samples)]
    engine = make_engine(f"sqlite:///{db}")
    times = []
    with Session(engine) as session:
        log.inclusion_proof(session, seqs[0], size)
        for seq in seqs:
            start = time.perf_counter()
            proof = log.inclusion_proof(session, seq, size)
            times.append(time.perf_counter() - start)
            merkle.verify_inclusion(leaves[seq], seq, size, proof, root)
        session.rollback()
    engine.dispose()
    times.sort()
    return {"entries": size, "proofs_timed": len(times),
            "median_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))]}


def _hashlib_seconds(datas: list[bytes]) -> float:
    sha256 = hashlib.sha256
    start = time.perf_counter()
    for data in datas:
        sha256(data).digest()
    return time.perf_counter() - start


def _verify_seconds(db: Path, key: str, origin: str) -> float:
    engine = make_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        start = time.perf_counter()
        verify_log(session, [key], origin=origin)
        elapsed = time.perf_counter() - start
        session.rollback()
    engine.dispose()
    return elapsed


def verify_large(folder: Path, n: int = LARGE_VERIFY, rounds: int = 3) -> dict:
    """Verify a trail of ``n`` entries in one process and with workers, beside hashlib."""
    from service.audit import verify

    _append_rate(folder, make_entries(n, seed=1))
    db = folder / "trail.db"
    key, origin = _signed_trail(folder, db)
    datas = [row[3].encode() for row in _stored_rows(db)]
    one, many, hashing = [], [], []
    minimum = verify.PARALLEL_MIN_CHUNKS
    try:
        for _ in range(rounds):
            hashing.append(_hashlib_seconds(datas))
            verify.PARALLEL_MIN_CHUNKS = {"sqlite": 10**9}  # one process
            one.append(_verify_seconds(db, key, origin))
            verify.PARALLEL_MIN_CHUNKS = {}  # workers for any trail of two chunks or more
            many.append(_verify_seconds(db, key, origin))
    finally:
        verify.PARALLEL_MIN_CHUNKS = minimum
    return {
        "entries": n, "usable_cores": verify._usable_cpus(),
        "one_process_ratio_to_hashlib": statistics.median(
            [h / v for h, v in zip(hashing, one, strict=True)]),
        "with_workers_ratio_to_hashlib": statistics.median(
            [h / v for h, v in zip(hashing, many, strict=True)]),
        "with_workers_speedup": statistics.median([a / b for a, b in zip(one, many, strict=True)]),
    }


def _signed_trail(folder: Path, db: Path) -> tuple[str, str]:
    """Sign a checkpoint of the trail in ``db`` with a fresh key; return (verifier, origin)."""
    settings = Settings(data_dir=folder / "data", audit_origin="bench.canhgac/audit")
    signer, verifier = generate_key(settings.audit_origin)
    write_private(settings.keys_dir / "checkpoint.key", signer + "\n")
    engine = make_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        sign_checkpoint(session, settings)
        session.commit()
    engine.dispose()
    return verifier, settings.audit_origin


# --- inclusion proofs in a 10,000,000-entry log ---------------------------------------------


def _level_hashes(levels: int) -> list[bytes]:
    """Hashes of complete nodes per level in a tree whose leaves are all the same."""
    hashes = [merkle.leaf_hash(b"{}")]
    for _ in range(levels):
        hashes.append(merkle.node_hash(hashes[-1], hashes[-1]))
    return hashes


def _build_big_tree(db: Path, size: int, only_nodes: list[tuple[int, int]] | None) -> None:
    """Write the synthetic tree of ``size`` identical leaves straight into SQLite."""
    engine = _engine(db)
    engine.dispose()
    hashes = _level_hashes(size.bit_length())
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND "
                                "tbl_name='audit_entry' AND sql IS NOT NULL").fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    conn.execute("INSERT INTO audit_head (id, size) VALUES (1, ?)", (size,))
    stamp = "2026-10-01 00:00:00.000000"
    if only_nodes is None:
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
            "INSERT INTO audit_entry (seq, recorded_at, kind, body, leaf_hash) "
            "SELECT x, ?, 'event', '{}', ? FROM c", (size - 1, stamp, hashes[0]))
        for level in range(log.MIN_STORED_LEVEL, size.bit_length()):
            count = size >> level
            conn.execute(
                "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
                'INSERT INTO merkle_node (level, "index", hash) SELECT ?, x, ? FROM c',
                (count - 1, level, hashes[level]))
    else:
        # A node below the stored levels is read as the leaves under it.
        wanted = set()
        for level, index in only_nodes:
            if level < log.MIN_STORED_LEVEL:
                wanted.update((0, seq) for seq in range(index << level, (index + 1) << level))
            else:
                wanted.add((level, index))
        for level, index in sorted(wanted):
            if level == 0:
                conn.execute("INSERT INTO audit_entry (seq, recorded_at, kind, body, leaf_hash) "
                             "VALUES (?, ?, 'event', '{}', ?)", (index, stamp, hashes[0]))
            else:
                conn.execute('INSERT INTO merkle_node (level, "index", hash) VALUES (?, ?, ?)',
                             (level, index, hashes[level]))
    conn.execute("COMMIT")
    conn.close()


def proof_time(size: int = PROOF_SIZE, *, quick: bool = False, samples: int = 200) -> dict:
    """Time inclusion proofs from a SQLite trail of ``size`` entries (see the module notes)."""
    rng = random.Random(11)
    seqs = [rng.randrange(size) for _ in range(samples)] + [0, size - 1, size // 2]
    hashes = _level_hashes(size.bit_length())
    root = merkle.root_from_nodes(size, lambda level, _index: hashes[level])
    with tempfile.TemporaryDirectory(prefix="canhgac-proof-") as tmp:
        db = Path(tmp) / "big.db"
        started = time.perf_counter()
        needed = None
        if quick:
            needed = [n for seq in seqs for n in merkle.inclusion_proof_nodes(seq, size)]
            needed += merkle.subtree_ranges_for_root(size)
        _build_big_tree(db, size, needed)
        build_seconds = time.perf_counter() - started
        engine = make_engine(f"sqlite:///{db}")
        times = []
        with Session(engine) as session:
            log.inclusion_proof(session, seqs[0], size)  # warm the connection and page cache
            for seq in seqs:
                start = time.perf_counter()
                proof = log.inclusion_proof(session, seq, size)
                times.append(time.perf_counter() - start)
                merkle.verify_inclusion(hashes[0], seq, size, proof, root)
            assert log.root_at(session, size) == root
            session.rollback()
        engine.dispose()
        file_mb = db.stat().st_size / 1e6
    times.sort()
    return {
        "entries": size, "proofs_timed": len(times),
        "built": "proof nodes only" if quick else "all entry and node rows (synthetic hashes)",
        "build_seconds": round(build_seconds, 1), "database_mb": round(file_mb, 1),
        "median_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))],
        "max_ms": 1000 * times[-1],
    }


def run(quick: bool = False) -> dict:
    """Measure the audit trail beside raw SQLite, pymerkle and hashlib; see the module notes."""
    n = 20_000 if quick else 50_000
    rounds = 2 if quick else 3
    entries = make_entries(n)
    # The machines are shared: keep the load next to the figures it may have bent.
    results: dict = {"entries": n, "batch": BATCH, "rounds": rounds,
                     "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    append, raw, pym_bytes, pym_dicts, verify, hashing = [], [], [], [], [], []
    try:
        import pymerkle  # noqa: F401 - the peer measured side by side (extra "bench")

        has_pymerkle = True
    except ImportError:
        has_pymerkle = False
        results["pymerkle"] = "not installed: pip install -e '.[bench]'"
    with tempfile.TemporaryDirectory(prefix="canhgac-bench-") as tmp:
        base = Path(tmp)
        for r in range(rounds):
            folder = base / f"round{r}"
            folder.mkdir()
            append.append(_append_rate(folder, entries))
            rows = _stored_rows(folder / "trail.db")
            datas = [row[3].encode() for row in rows]
            raw.append(raw_rows_rate(folder, rows))
            if has_pymerkle:
                pym_bytes.append(_pymerkle_rate(folder, datas))
                pym_dicts.append(_pymerkle_rate(folder, None, entries))
            if r == 0:
                results["inclusion_proof_in_appended_trail"] = _trail_proof_ms(
                    folder / "trail.db", datas)
                key, origin = _signed_trail(folder, folder / "trail.db")
                if has_pymerkle:
                    results["pymerkle_inclusion_proof_ms_at_entries"] = _pymerkle_proof_ms(
                        folder, datas)
            verify.append(_verify_seconds(folder / "trail.db", key, origin))
            hashing.append(_hashlib_seconds(datas))
        if not quick:
            (base / "large").mkdir()
            results["verify_large"] = verify_large(base / "large")
    ratio = [a / b for a, b in zip(append, raw, strict=True)]
    results["append"] = {
        "entries_per_s": statistics.median(append),
        "raw_sqlite_same_rows_per_s": statistics.median(raw),
        "ratio_to_raw_sqlite": statistics.median(ratio),
    }
    if has_pymerkle:
        results["append"].update({
            "pymerkle_sqlitetree_from_bytes_per_s": statistics.median(pym_bytes),
            "pymerkle_sqlitetree_from_dicts_per_s": statistics.median(pym_dicts),
            "ratio_to_pymerkle_from_bytes": statistics.median(
                [a / p for a, p in zip(append, pym_bytes, strict=True)]),
            "ratio_to_pymerkle_from_dicts": statistics.median(
                [a / p for a, p in zip(append, pym_dicts, strict=True)]),
        })
    results["verify"] = {
        "entries_per_s": statistics.median([n / v for v in verify]),
        "hashlib_entries_per_s": statistics.median([n / h for h in hashing]),
        "ratio_to_hashlib": statistics.median([h / v for h, v in zip(hashing, verify, strict=True)]),
        "best_round_ratio_to_hashlib": max(h / v for h, v in zip(hashing, verify, strict=True)),
        "target_ratio": 0.4,
    }
    results["inclusion_proof"] = proof_time(quick=quick)
    results["inclusion_proof"]["target_ms"] = 5.0
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
