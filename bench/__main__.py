"""Run every benchmark within about ten minutes on two cores; print a table; write results.json.

Each module under bench/ exposes `run(...) -> dict` of figures. Figures that have a physical
baseline (raw SQLite inserts, raw hashing, raw inotify) are reported as ratios measured in the
same run, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

# (module, callable, kwargs for a full run, kwargs for --quick)
SUITES = [
    ("bench.audit_bench", "run", {}, {"quick": True}),
    ("bench.ingest_bench", "run", {}, {"quick": True}),
    ("bench.tlog_bench", "run", {}, {"quick": True}),
    ("bench.policy_bench", "run", {"n_events": 200_000}, {"n_events": 20_000}),
    ("bench.notify_bench", "run", {}, {"n": 20}),
    ("bench.sms_bench", "run", {}, {"n": 20}),
    ("bench.agent_bench", "detection_latency", {}, {"repeats": 5}),
    ("bench.agent_bench", "memory_watching", {"n_files": 100_000}, {"n_files": 5_000}),
    ("bench.agent_bench", "opens_burst", {"n_files": 5_000}, {"n_files": 1_000}),
    ("bench.pii_bench", "run", {}, {"quick": True}),
    ("bench.opens_bench", "open_latency", {"repeats": 200}, {"repeats": 20}),
    ("bench.opens_bench", "opens_absorbed", {"n_files": 100_000, "burst": 5_000},
     {"n_files": 5_000, "burst": 1_000}),
    # `canhgac serve` as it runs by default, then with one process: the same run's baseline.
    ("bench.load_bench", "run", {"clients": 100, "seconds": 60}, {"clients": 20, "seconds": 10}),
    ("bench.load_bench", "run_one_process", {"clients": 100, "seconds": 60},
     {"clients": 20, "seconds": 10}),
    ("bench.load_bench", "run_in_step", {"clients": 100, "seconds": 60}, {"clients": 20, "seconds": 10}),
    # The production server beside the previous one (cheroot, 8 threads); all five candidates:
    # python -m bench.slow_client_bench --candidates cheroot,cheroot-128,waitress,uvicorn,hypercorn
    ("bench.slow_client_bench", "run", {"rounds": 2, "candidates": ("cheroot", "hypercorn")},
     {"rounds": 1, "seconds": 5.0}),
]


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and report."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default=None, help="run suites whose module contains this")
    args = parser.parse_args(argv)
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "quick": args.quick, "suites": {},
    }
    failed = 0
    collector = gc.get_threshold()
    for module_name, func_name, full, quick in SUITES:
        if args.only and args.only not in module_name:
            continue
        label = f"{module_name.split('.')[-1]}.{func_name}"
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            figures = getattr(module, func_name)(**(quick if args.quick else full))
            status = "ok"
        except Exception as exc:  # one failing suite must not hide the others
            figures = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
            status = "error"
            failed += 1
        finally:
            # A suite that settles the heap as the server does (service/core/heap.py) must not
            # change the next one's: each starts with the collector as a fresh process has it.
            gc.unfreeze()
            gc.set_threshold(*collector)
            gc.collect()
        results["suites"][label] = {"status": status, "seconds": round(time.perf_counter() - start, 1),
                                    "figures": figures}
        print(f"\n== {label} ({status}, {results['suites'][label]['seconds']} s)")
        flat: dict = {}
        _flatten("", figures, flat)
        for key, value in flat.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"  {key:<60} {shown}")
    results["finished_at"] = datetime.now(UTC).isoformat()
    out = Path(__file__).resolve().parent / "results.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nresults written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
