"""Ingest throughput: service layer and HTTP (real server, several clients, batches of 1,000).

Baseline in the same run: raw sqlite3 executemany inserts of the same event rows (JSON text)
into a WAL database with synchronous=FULL, committed once per batch of 1,000 — the physical
floor for "durable in SQLite".
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path


def make_events(n: int, seed: int = 0) -> list[dict]:
    """Return n realistic events (no personal identifiers, counts only)."""
    base = datetime(2026, 10, 1, 1, 30, tzinfo=UTC)  # Thursday 08:30 in the commune
    actions = ["open", "read", "modify", "copy", "export", "print", "view"]
    paths = ["C:\\DuLieu\\DanCu\\thon_{}.xlsx", "/home/vhxh/AnSinh/chi_tra_{}.csv",
             "D:\\HoTich\\khai_sinh_{}.docx", "/srv/dungchung/kinhte/dat_{}.xlsx"]
    out = []
    for i in range(n):
        out.append({
            "id": str(uuid.UUID(int=(seed << 64) + i + 1)),
            # Spread over one working day so the policy judges ordinary office traffic.
            "occurred_at": (base + timedelta(milliseconds=(i * 577) % 28_000_000)).isoformat(),
            "host": f"PC-{i % 12:02d}", "actor": f"canbo{i % 40:02d}",
            "action": actions[i % len(actions)],
            "object": {"path": paths[i % len(paths)].format(i % 22), "record_count": i % 30},
            # Each path's owner unit works on it, as in ordinary office traffic.
            "unit": ["cong_an", "vh_xh", "van_phong", "kinh_te"][i % len(paths)],
            "pii": {"cccd": i % 50},
        })
    return out


def raw_sqlite_rate(events: list[dict], batch: int = 1000) -> float:
    """Insert the same rows with raw sqlite3 (WAL, synchronous=FULL), one commit per batch."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE e (id TEXT PRIMARY KEY, body TEXT)")
        rows = [(e["id"], json.dumps(e)) for e in events]
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO e VALUES (?, ?)", rows[i : i + batch])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return len(rows) / elapsed


def _prepared_app(tmp: Path):
    from service import create_app
    from service.config import load_settings
    from service.core.bootstrap import prepare_data_dir

    app = create_app(load_settings({"data_dir": tmp, "secret_key": "bench", "scheduler_enabled": False,
                                    "policy_reload": False, "log_level": "WARNING"}, environ={}))
    prepare_data_dir(app)
    return app


def service_rate(events: list[dict], batch: int = 1000) -> float:
    """Ingest through the service layer (validate, enrich, policy, append, commit per batch)."""
    from canhgac_common.events import Event
    from service.core.db import new_session
    from service.events.operations import ingest_events

    with tempfile.TemporaryDirectory() as tmp:
        app = _prepared_app(Path(tmp))
        processor = app.extensions["canhgac.processor"]
        start = time.perf_counter()
        with app.app_context():
            for i in range(0, len(events), batch):
                session = new_session(app)
                parsed = [Event.model_validate(e) for e in events[i : i + batch]]
                ingest_events(session, parsed, source="bench", processor=processor)
                session.commit()
                session.close()
        elapsed = time.perf_counter() - start
        app.extensions["canhgac.engine"].dispose()
    return len(events) / elapsed


def http_rate(events: list[dict], clients: int = 4, batch: int = 1000) -> dict:
    """Ingest over HTTP against the production server with several concurrent clients."""
    import http.client

    from service.auth.operations import create_token
    from service.core.db import new_session

    with tempfile.TemporaryDirectory() as tmp:
        app = _prepared_app(Path(tmp))
        with app.app_context():
            s = new_session(app)
            _, token = create_token(s, "bench", by="bench")
            s.commit()
            s.close()
        from service.core.server import Server

        server = Server(app, "127.0.0.1", 0, threads=clients)
        server.start()
        port = server.port
        batches = [json.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def worker(mine: list[str]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for body in mine:
                t0 = time.perf_counter()
                conn.request("POST", "/api/v1/events", body=body,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if response.status != 200:
                        errors.append(str(response.status))
            conn.close()

        threads = [threading.Thread(target=worker, args=(batches[k::clients],)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        server.stop()
        app.extensions["canhgac.engine"].dispose()
    latencies.sort()
    return {
        "events_per_s": len(events) / elapsed, "clients": clients, "errors": len(errors),
        "batch_p50_ms": 1000 * latencies[len(latencies) // 2],
        "batch_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def run(quick: bool = False) -> dict:
    """Measure service-layer and HTTP ingest beside raw SQLite inserts of the same rows."""
    n = 5_000 if quick else 50_000
    events = make_events(n)
    raw = raw_sqlite_rate(events)
    service = service_rate(events)
    http = http_rate(make_events(n, seed=1))
    return {
        "events": n,
        "raw_sqlite_inserts_per_s": raw,
        "service_layer_events_per_s": service,
        "service_layer_ratio_to_raw_sqlite": service / raw,
        "http": http,
        "http_ratio_to_raw_sqlite": http["events_per_s"] / raw,
    }
