"""The trail checked from outside (issue #17): tile serving, add-checkpoint, the monitor.

All on a real app (SQLite, WAL, synchronous=FULL) in a temporary data directory, each figure
beside a baseline measured in the same run:

* **tile serving**: full level-0 hash tiles (8,192 bytes) and full entry bundles fetched
  through the app (WSGI test client: routing, token check, the query, the response; entry
  bundles also write their audited read) against (a) the raw ``sqlite3`` query of the same
  256 leaf hashes (or entries) joined into bytes, on its own connection to the same file, and
  (b) ``GET /healthz`` through the same client (the floor of any request: routing, session
  and request-log middleware);
* **add-checkpoint**: a witnessed log grows by 1–64 entries between checkpoints; each
  ``POST /witness/add-checkpoint`` (parse, note signature, consistency proof, cosignature,
  commit) against one Ed25519 signature verification plus one signing with ``cryptography``
  (the least a witness must compute);
* **monitor**: ``verify_new_stretch`` over 1,000-entry stretches (read bodies, check each,
  fold, compare with the checkpoint) against ``hashlib.sha256`` over the same entry bytes,
  already in memory.

``run(quick=False) -> dict``; ``python -m bench --only tlog_bench``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.audit_bench import make_entries


def _app(data_dir: Path):
    from service import create_app
    from service.config import load_settings
    from service.core.bootstrap import prepare_data_dir

    app = create_app(load_settings({"data_dir": data_dir, "secret_key": "bench",
                                    "scheduler_enabled": False, "policy_reload": False},
                                   environ={}))
    prepare_data_dir(app)
    return app


def _fill(app, n: int) -> None:
    from service.audit import log
    from service.audit.operations import sign_checkpoint
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        entries = make_entries(n, seed=17)
        for start in range(0, n, 1000):
            log.append_entries(s, entries[start:start + 1000])
            s.commit()
        sign_checkpoint(s, app.config["SETTINGS"])
        s.commit()
        s.close()


def _token(app) -> str:
    from service.auth.operations import create_token
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        _row, token = create_token(s, "bench-monitor", by="bench", scope="monitor")
        s.commit()
        s.close()
    return token


def _tiles(app, db: Path, size: int, rounds: int) -> dict:
    from service.audit.tiles import encode_index

    client = app.test_client()
    headers = {"Authorization": f"Bearer {_token(app)}"}
    full = size // 256
    raw = sqlite3.connect(db)
    out: dict = {}
    for what, prefix in (("hash_tiles", "0"), ("entry_bundles", "entries")):
        served = raw_done = 0
        served_s = raw_s = 0.0
        for _round in range(rounds):
            for index in range(full):
                path = f"/tlog/tile/{prefix}/{encode_index(index)}"
                t0 = time.perf_counter()
                answer = client.get(path, headers=headers)
                served_s += time.perf_counter() - t0
                assert answer.status_code == 200 and (prefix != "0" or len(answer.data) == 8192)
                served += 1
                t0 = time.perf_counter()
                column = "leaf_hash" if prefix == "0" else "body"
                rows = raw.execute(f"SELECT {column} FROM audit_entry WHERE seq >= ? AND seq < ? "  # noqa: S608 - a constant column name
                                   "ORDER BY seq", (index * 256, index * 256 + 256)).fetchall()
                data = (b"".join(row[0] for row in rows) if prefix == "0" else
                        b"".join(len(b := row[0].encode()).to_bytes(2, "big") + b for row in rows))
                raw_s += time.perf_counter() - t0
                assert len(rows) == 256 and data
                raw_done += 1
        out[what] = {"per_s": served / served_s, "raw_sqlite_per_s": raw_done / raw_s,
                     "ratio_to_raw_sqlite": (served / served_s) / (raw_done / raw_s),
                     "tiles": served}
    # The floor of any request through the same app and client: the health check.
    t0 = time.perf_counter()
    for _ in range(full * rounds):
        assert client.get("/healthz").status_code == 200
    floor = full * rounds / (time.perf_counter() - t0)
    out["healthz_per_s"] = floor
    for what in ("hash_tiles", "entry_bundles"):
        out[what]["ratio_to_healthz"] = out[what]["per_s"] / floor
    raw.close()
    return out


def _add_checkpoint(app, n: int) -> dict:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from service.audit import merkle
    from service.audit.checkpoint import format_checkpoint, generate_key, sign_note
    from service.audit.witness import add_log
    from service.audit.witnessing import request_body
    from service.core.db import new_session

    signer, verifier = generate_key("neighbour.example/bench")
    with app.app_context():
        s = new_session(app)
        add_log(s, verifier, by="bench")
        s.commit()
        s.close()
    client = app.test_client()
    leaves: list[bytes] = []
    old = 0
    took, base = [], []
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    for i in range(n):
        leaves += merkle.leaf_hashes([f"e{len(leaves) + k}".encode() for k in range(1 + i % 64)])
        note = sign_note(format_checkpoint("neighbour.example/bench", len(leaves),
                                           merkle.root_hash(leaves)), signer)
        proof = merkle.consistency_proof(leaves, old) if old else []
        body = request_body(old, proof, note)
        t0 = time.perf_counter()
        answer = client.post("/witness/add-checkpoint", data=body)
        took.append(time.perf_counter() - t0)
        assert answer.status_code == 200, answer.data
        old = len(leaves)
        text = note.split("\n\n")[0].encode()
        signature = key.sign(text)
        t0 = time.perf_counter()
        public.verify(signature, text)
        key.sign(b"cosignature/v1\ntime 1\n" + text)
        base.append(time.perf_counter() - t0)
    took.sort()
    return {"p50_ms": statistics.median(took) * 1000, "p99_ms": took[int(len(took) * 0.99) - 1] * 1000,
            "ed25519_verify_sign_ms": statistics.median(base) * 1000,
            "ratio_p50_to_ed25519": statistics.median(took) / statistics.median(base),
            "checkpoints": n}


def _monitor(app, db: Path, size: int, stretch: int) -> dict:
    from service.audit import log
    from service.audit.monitor import verify_new_stretch
    from service.audit.operations import sign_checkpoint
    from service.core.db import new_session

    settings = app.config["SETTINGS"]
    times, hashed = [], []
    raw = sqlite3.connect(db)
    with app.app_context():
        s = new_session(app)
        result = verify_new_stretch(s, settings)  # catch up with the filled trail first
        s.commit()
        assert result.is_ok, result.problem
        entries = make_entries(stretch * 6, seed=23)
        for round_ in range(6):
            log.append_entries(s, entries[round_ * stretch:(round_ + 1) * stretch])
            sign_checkpoint(s, settings)
            s.commit()
            t0 = time.perf_counter()
            result = verify_new_stretch(s, settings)
            s.commit()
            times.append(time.perf_counter() - t0)
            assert result.is_ok and result.to_size - result.from_size >= stretch, result
            rows = raw.execute("SELECT body FROM audit_entry WHERE seq >= ? AND seq < ?",
                               (result.from_size, result.to_size)).fetchall()
            data = [row[0].encode() for row in rows]
            t0 = time.perf_counter()
            for item in data:
                hashlib.sha256(b"\x00" + item).digest()
            hashed.append(time.perf_counter() - t0)
        s.close()
    raw.close()
    per_1000 = statistics.median(times) * 1000 / stretch * 1000
    base_1000 = statistics.median(hashed) * 1000 / stretch * 1000
    return {"ms_per_1000_entries": per_1000, "hashlib_ms_per_1000_entries": base_1000,
            "ratio_to_hashlib": per_1000 / base_1000, "initial_catch_up_entries": size}


def run(quick: bool = False) -> dict:
    """Measure tile serving, add-checkpoint and the monitor beside same-run baselines."""
    size = 256 * (8 if quick else 40) + 100
    with tempfile.TemporaryDirectory(prefix="canhgac-tlog-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        app = _app(data_dir)
        try:
            _fill(app, size)
            db = data_dir / "canhgac.db"
            assert db.exists(), sorted(p.name for p in data_dir.iterdir())
            return {
                "tiles": _tiles(app, db, size, rounds=1 if quick else 3),
                "add_checkpoint": _add_checkpoint(app, 50 if quick else 300),
                "monitor": _monitor(app, db, size, stretch=1000),
            }
        finally:
            from service.core.jobs import stop_background

            stop_background(app)
            app.extensions["canhgac.engine"].dispose()


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2, default=str))
