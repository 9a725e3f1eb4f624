"""Where an ingested event's time goes: microseconds per event for each step of the service layer.

``python -m bench.ingest_profile [--events N] [--default-gc] [--floors]`` runs the service-layer loop of
``ingest_bench`` (validate a batch of 1,000 as the API does, ingest, commit) on SQLite with each
step timed by wall clock around the function that does it; nested steps are shown indented
under the step that calls them. ``--default-gc`` leaves CPython's collector as a fresh
process has it (the profile before ``service.core.heap.settle_heap``). Not part of
``python -m bench``: timing each call costs about 2 µs per event, so the total is a little
above the suite's figure; use it to compare steps, not as the throughput.

``--floors`` measures, in the same process and minutes, what no change of the Python around them
can remove: the bench's raw SQLite baseline, a raw ``executemany`` of the very rows the trail
stored (``audit_bench.raw_rows_rate``: same table, indexes, WAL and ``synchronous=FULL``; nodes
and head excluded), and
pydantic-core validating, dumping and encoding the same events; beside the budget per event
that issue 18's 0.15× target leaves.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

# (module, function, depth): depth 1 is called by ingest_events, depth 2 by append_entries.
STEPS = [
    ("service.events.operations", "mask_event", 1),
    ("service.events.operations", "check_event_ids", 1),
    ("service.events.operations", "_bind_agents", 1),
    ("service.events.operations", "event_bodies", 1),
    ("service.events.operations", "canonical_json_plain", 1),
    ("service.events.operations", "_search", 1),
    ("service.events.operations", "append_entries", 1),
    ("service.audit.log", "_insert_rows", 2),
    ("service.events.operations", "_track_agents", 1),
]


def _timed(totals: collections.Counter, name: str, function):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start
    return timed


def profile(n_events: int = 50_000, batch: int = 1000, *, settle: bool = True) -> dict[str, float]:
    """Return microseconds per event of each step, and the whole loop's, over n_events."""
    import gc
    import importlib

    from pydantic import TypeAdapter

    import bench.ingest_bench as ingest_bench
    from canhgac_common.events import Event
    from service.core import heap
    from service.core.db import new_session
    from service.events import operations

    totals: collections.Counter = collections.Counter()
    for module_name, name, _depth in STEPS:
        module = importlib.import_module(module_name)
        setattr(module, name, _timed(totals, name, getattr(module, name)))
    if not settle:  # _prepared_app settles the heap as `serve` does; undo it for "before"
        heap_settle = heap.settle_heap
        heap.settle_heap = lambda: None
    events = ingest_bench.make_events(n_events)
    adapter = TypeAdapter(list[Event])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = ingest_bench._prepared_app(Path(tmp))
            processor = app.extensions["canhgac.processor"]
            processor.evaluate = _timed(totals, "policy evaluate", processor.evaluate)
            processor.classify = _timed(totals, "policy classify", processor.classify)
            started = time.perf_counter()
            with app.app_context():
                for i in range(0, n_events, batch):
                    session = new_session(app)
                    t = time.perf_counter()
                    parsed = adapter.validate_python(events[i : i + batch])
                    totals["validate (pydantic)"] += time.perf_counter() - t
                    t = time.perf_counter()
                    operations.ingest_events(session, parsed, source="bench", processor=processor)
                    totals["ingest_events"] += time.perf_counter() - t
                    t = time.perf_counter()
                    session.commit()
                    totals["commit"] += time.perf_counter() - t
                    session.close()
            totals["whole loop"] = time.perf_counter() - started
            app.extensions["canhgac.engine"].dispose()
    finally:
        if not settle:
            heap.settle_heap = heap_settle
        gc.unfreeze()
    return {name: seconds * 1e6 / n_events for name, seconds in totals.items()}


def floors(n_events: int = 50_000, batch: int = 1000) -> dict[str, float]:
    """Return µs per event of the raw baseline, the trail's rows inserted raw, and pydantic's work."""
    import gc
    import sqlite3

    from pydantic import TypeAdapter

    import bench.ingest_bench as ingest_bench
    from bench.audit_bench import raw_rows_rate
    from canhgac_common.events import Event
    from service.audit.canonical import canonical_json_plain
    from service.core.db import new_session
    from service.core.heap import settle_heap
    from service.events import operations

    events = ingest_bench.make_events(n_events)
    settle_heap()  # as the server runs; the bench's own input is not the server's garbage
    figures = {"raw baseline (2 columns)": 1e6 / ingest_bench.raw_sqlite_rate(events, batch)}
    adapter = TypeAdapter(list[Event])
    validating = encoding = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        app = ingest_bench._prepared_app(Path(tmp))
        with app.app_context():
            # Batch by batch, as the server sees them: nothing of a batch outlives it.
            for i in range(0, n_events, batch):
                start = time.perf_counter()
                parsed = adapter.validate_python(events[i : i + batch])
                validating += time.perf_counter() - start
                start = time.perf_counter()
                for body in operations.event_bodies(parsed, "bench"):
                    canonical_json_plain(body)
                encoding += time.perf_counter() - start
                session = new_session(app)  # the rows to insert raw below
                operations.ingest_events(session, parsed, source="bench")
                session.commit()
                session.close()
        figures["validate (pydantic-core)"] = validating * 1e6 / n_events
        figures["dump and RFC 8785 bytes"] = encoding * 1e6 / n_events
        app.extensions["canhgac.engine"].dispose()
        source = sqlite3.connect(Path(tmp) / "canhgac.db")
        rows = source.execute("SELECT * FROM audit_entry WHERE kind = 'event' ORDER BY seq").fetchall()
        source.close()
        figures["trail rows inserted raw"] = 1e6 / raw_rows_rate(Path(tmp), rows)
    gc.unfreeze()
    figures["budget at 0.15x the baseline"] = figures["raw baseline (2 columns)"] / 0.15
    return figures


def main(argv: list[str] | None = None) -> int:
    """Print the profile."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_profile")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--default-gc", action="store_true", help="do not settle the heap")
    parser.add_argument("--floors", action="store_true", help="measure the floors, not the steps")
    args = parser.parse_args(argv)
    if args.floors:
        for name, value in floors(args.events).items():
            print(f"{name:<30} {value:7.2f} µs/event")
        return 0
    figures = profile(args.events, settle=not args.default_gc)
    depth = {name: d for _m, name, d in STEPS} | {"policy classify": 1, "policy evaluate": 1}
    order = ["whole loop", "validate (pydantic)", "ingest_events",
             *[name for _m, name, _d in STEPS], "policy classify", "policy evaluate", "commit"]
    for name in order:
        if name in figures:
            print(f"{'  ' * depth.get(name, 0)}{name:<28} {figures[name]:7.2f} µs/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
