"""Benchmark: incident created (enqueue + commit) -> SMS OUT file in gammu-smsd's outbox folder.

Target (issue #19): p99 <= 1 s. The whole real path is timed: an Incident row, notify_incident
(mail and SMS outbox rows, reply-code rows, audit entries, a signed checkpoint, rendered texts),
the commit (SQLite WAL, synchronous=FULL), the wake-up of the app's dispatcher thread, the
claim, the reply code drawn and its hash committed, the OUT file written (temporary name, fsync,
rename) and the recorded result. The clock stops when the last recipient's OUT file is in the
folder (polled every millisecond). No SMTP server is set, so mail rows wait and cost nothing.

Baseline in the same run: `write_out_file` alone (the same text, temporary name, fsync, rename)
into the same folder, i.e. what handing a file to gammu-smsd costs without the service.
``python -m bench.sms_bench [N]`` prints the figures as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.stats import percentile


def _wait_for_files(folder: Path, count: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for name in folder.iterdir() if name.name.startswith("OUT")) >= count:
            return time.perf_counter()
        time.sleep(0.001)
    return None


def run(n: int = 200, recipients: int = 3, database_url: str | None = None) -> dict:
    """Create n incidents one after another; return latency percentiles in milliseconds."""
    from service import create_app
    from service.auth.operations import create_user
    from service.config import load_settings
    from service.core.bootstrap import prepare_data_dir
    from service.core.db import new_session
    from service.incidents.models import Incident
    from service.notify.outbox import notify_incident
    from service.notify.sms import write_out_file
    from service.notify.wiring import stop_dispatcher

    with tempfile.TemporaryDirectory(prefix="canhgac-sms-bench-") as tmp:
        outbox = Path(tmp) / "outbox"
        outbox.mkdir()
        app = create_app(load_settings({
            "data_dir": Path(tmp) / "data", "database_url": database_url, "secret_key": "bench",
            "scheduler_enabled": True, "policy_reload": False, "log_level": "WARNING",
            "sms_outbox_dir": outbox,
        }, environ={}))
        prepare_data_dir(app)
        latencies: list[float] = []
        missing = 0
        sample_text = ""
        try:
            session = new_session(app)
            for index in range(recipients):
                create_user(session, username=f"nguoi_nhan_{index}", password="mat-khau-bench-1",
                            roles=["leader" if index % 2 else "police"],
                            email=f"nguoi_nhan_{index}@nhanly.example",
                            phone=f"09123456{index:02d}", is_seeding=True)
            session.commit()
            with app.app_context():
                for index in range(n + 5):
                    begin = time.perf_counter()
                    incident = Incident(title=f"Sao chép tệp dân cư #{index} sang USB",
                                        summary="Tệp DanCu.xlsx chép sang ổ E:", origin="rule",
                                        pii_counts={"cccd": 30}, data_classes=["dan_cu"])
                    session.add(incident)
                    session.flush()
                    notify_incident(session, incident, kind="created")
                    session.commit()
                    written = _wait_for_files(outbox, recipients * (index + 1), timeout=30)
                    if index < 5:  # warm-up: imports, first connections, caches
                        continue
                    if written is None:
                        missing += 1
                        continue
                    latencies.append(written - begin)
            session.close()
            sample = sorted(outbox.glob("OUT*"))[-1]
            sample_text = sample.read_bytes().decode("utf-16")
        finally:
            stop_dispatcher(app)
            app.extensions["canhgac.engine"].dispose()
        # Baseline: the bare atomic file hand-over, same folder, same text.
        bare: list[float] = []
        for index in range(n):
            begin = time.perf_counter()
            write_out_file(outbox, f"OUTB20261207_000000_00_+84912345600_bare{index}.txt",
                           sample_text)
            bare.append(time.perf_counter() - begin)
    p99 = percentile(latencies, 0.99) if latencies else float("inf")
    bare_p99 = percentile(bare, 0.99)
    return {
        "n_incidents": n,
        "recipients_per_incident": recipients,
        "database": "postgresql" if database_url and "postgresql" in database_url else "sqlite",
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(p99 * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "bare_write_p50_ms": round(statistics.median(bare) * 1000, 2),
        "bare_write_p99_ms": round(bare_p99 * 1000, 2),
        "p99_ratio_to_bare_write": round(p99 / bare_p99, 1) if latencies and bare_p99 else None,
        "not_written_in_30s": missing,
        "target_p99_ms": 1000,
        "meets_target": bool(latencies) and missing == 0 and p99 <= 1.0,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200), indent=2))
