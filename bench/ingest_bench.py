"""Ingest throughput: service layer and HTTP (real server, several clients, batches of 1,000).

Baseline in the same run: raw sqlite3 executemany inserts of the same event rows (JSON text)
into a WAL database with synchronous=FULL, committed once per batch of 1,000 — the physical
floor for "durable in SQLite". On PostgreSQL (``CANHGAC_BENCH_PG_URL``, default the test
server; skipped when it does not answer) the service layer is measured against psycopg's
``executemany`` and ``COPY`` of the same rows into the same server, one commit per 1,000.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
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


PG_URL = os.environ.get("CANHGAC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _prepared_app(tmp: Path, database_url: str | None = None):
    from service import create_app
    from service.config import load_settings
    from service.core.bootstrap import prepare_data_dir
    from service.core.heap import settle_heap

    overrides = {"data_dir": tmp, "secret_key": "bench", "scheduler_enabled": False,
                 "policy_reload": False, "log_level": "WARNING"}
    if database_url is not None:
        overrides["database_url"] = database_url
    app = create_app(load_settings(overrides, environ={}))
    prepare_data_dir(app)
    settle_heap()  # as `canhgac serve` does once the app is built (service/core/heap.py)
    return app


def service_rate(events: list[dict], batch: int = 1000, database_url: str | None = None) -> float:
    """Ingest through the service layer (validate, enrich, policy, append, commit per batch)."""
    from pydantic import TypeAdapter

    from canhgac_common.events import Event
    from service.core.db import new_session
    from service.events.operations import ingest_events

    adapter = TypeAdapter(list[Event])  # as the API validates a batch
    with tempfile.TemporaryDirectory() as tmp:
        app = _prepared_app(Path(tmp), database_url)
        processor = app.extensions["canhgac.processor"]
        start = time.perf_counter()
        with app.app_context():
            for i in range(0, len(events), batch):
                session = new_session(app)
                parsed = adapter.validate_python(events[i : i + batch])
                ingest_events(session, parsed, source="bench", processor=processor)
                session.commit()
                session.close()
        elapsed = time.perf_counter() - start
        app.extensions["canhgac.engine"].dispose()
    return len(events) / elapsed


def _pg_schema():
    """Return (SQLAlchemy URL, psycopg DSN, drop) of a fresh schema, or None without PostgreSQL."""
    import uuid as _uuid

    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    dsn = (f"host={url.host or '127.0.0.1'} port={url.port or 5432} user={url.username or 'postgres'} "
           f"dbname={url.database}" + (f" password={url.password}" if url.password else ""))
    schema = "bench_" + _uuid.uuid4().hex[:12]
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError:
        return None

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    return f"{PG_URL}?options=-csearch_path%3D{schema}", f"{dsn} options=-csearch_path={schema}", drop


def raw_pg_rates(dsn: str, events: list[dict], batch: int = 1000) -> dict:
    """Insert the same rows with psycopg executemany and with COPY, one commit per batch."""
    import psycopg

    rows = [(e["id"], json.dumps(e)) for e in events]
    rates = {}
    with psycopg.connect(dsn) as conn:
        for way in ("executemany", "copy"):
            conn.execute(f"CREATE TABLE raw_{way} (id TEXT PRIMARY KEY, body TEXT)")
            conn.commit()
            start = time.perf_counter()
            for i in range(0, len(rows), batch):
                with conn.cursor() as cur:
                    if way == "executemany":
                        cur.executemany(f"INSERT INTO raw_{way} VALUES (%s, %s)", rows[i : i + batch])  # noqa: S608
                    else:
                        with cur.copy(f"COPY raw_{way} (id, body) FROM STDIN") as copy:
                            for row in rows[i : i + batch]:
                                copy.write_row(row)
                conn.commit()
            rates[way] = len(rows) / (time.perf_counter() - start)
    return rates


def postgresql(events: list[dict]) -> dict | None:
    """Service-layer ingest on PostgreSQL beside raw executemany and COPY into the same server."""
    place = _pg_schema()
    if place is None:
        return None
    url, dsn, drop = place
    try:
        raw = raw_pg_rates(dsn, events)
        service = service_rate(events, database_url=url)
    finally:
        drop()
    return {"raw_executemany_per_s": raw["executemany"], "raw_copy_per_s": raw["copy"],
            "service_layer_events_per_s": service,
            "ratio_to_executemany": service / raw["executemany"],
            "ratio_to_copy": service / raw["copy"]}


def http_rate(events: list[dict], clients: int = 4, batch: int = 1000,
              processes: int | None = None) -> dict:
    """Ingest over HTTP against `canhgac serve` (its defaults) with several concurrent clients."""
    import http.client

    from bench.served import served
    from service.auth.operations import create_token
    from service.core.db import new_session

    with tempfile.TemporaryDirectory() as tmp:
        app = _prepared_app(Path(tmp))
        with app.app_context():
            s = new_session(app)
            _, token = create_token(s, "bench", by="bench")
            s.commit()
            s.close()
        app.extensions["canhgac.engine"].dispose()
        batches = [json.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        with served(Path(tmp), processes=processes) as port:
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
    latencies.sort()
    return {
        "events_per_s": len(events) / elapsed, "clients": clients, "errors": len(errors),
        "processes": processes or "default",
        "batch_p50_ms": 1000 * latencies[len(latencies) // 2],
        "batch_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def run(quick: bool = False) -> dict:
    """Measure service-layer and HTTP ingest beside raw SQLite inserts of the same rows."""
    from service.core.heap import settle_heap

    n = 5_000 if quick else 50_000
    events = make_events(n)
    settle_heap()  # every measurement below in the state `canhgac serve` runs in
    # The raw baseline is a burst of half a second: on a shared machine one burst can land in
    # a quiet or a busy moment, so it is taken around each measurement and the median used.
    raws = [raw_sqlite_rate(events)]
    service = service_rate(events)
    raws.append(raw_sqlite_rate(events))
    http = http_rate(make_events(n, seed=1))
    raws.append(raw_sqlite_rate(events))
    http_one = http_rate(make_events(n, seed=3), processes=1)  # `serve --processes 1` beside it
    raws.append(raw_sqlite_rate(events))
    raw = statistics.median(raws)
    pg = postgresql(make_events(n // 2, seed=2))
    return {
        "events": n,
        "raw_sqlite_inserts_per_s": raw,
        "raw_sqlite_runs_per_s": [round(r) for r in raws],
        "service_layer_events_per_s": service,
        "service_layer_ratio_to_raw_sqlite": service / raw,
        "http": http,
        "http_ratio_to_raw_sqlite": http["events_per_s"] / raw,
        "http_one_process": http_one,
        "http_one_process_ratio_to_raw_sqlite": http_one["events_per_s"] / raw,
        "postgresql": pg if pg is not None else "skipped: PostgreSQL did not answer",
    }
