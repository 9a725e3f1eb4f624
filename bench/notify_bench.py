"""Benchmark: incident created (enqueue + commit) -> mail accepted by a local SMTP server.

Target (DESIGN.md): p99 <= 1 s. The whole real path is timed: an Incident row, notify_incident
(outbox rows, audit entries, a signed checkpoint, rendered mail), the commit (SQLite WAL,
synchronous=FULL), the wake-up of the app's dispatcher thread, the claim, the SMTP dialogue
with aiosmtpd on 127.0.0.1, and the recorded result. The clock stops when the server has
accepted the last mail of the incident (one per recipient). ``run(n)`` returns the figures;
``python bench/notify_bench.py [N]`` prints them as JSON.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from bench.stats import percentile


class _Sink:
    """Counts accepted mails per incident and notes when the last one arrived."""

    def __init__(self) -> None:
        self.accepted: dict[int, list[float]] = {}
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd hook
        now = time.perf_counter()
        incident = None
        for line in envelope.content.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"x-canhgac-incident:"):
                incident = int(line.split(b":", 1)[1])
        with self.cond:
            self.accepted.setdefault(incident, []).append(now)
            self.cond.notify_all()
        return "250 OK"

    def wait_for(self, incident: int, count: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.accepted.get(incident, ())) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return max(self.accepted[incident])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




def run(n: int = 200, recipients: int = 3, database_url: str | None = None) -> dict:
    """Create n incidents one after another; return latency percentiles in milliseconds."""
    from service import create_app
    from service.auth.operations import create_user
    from service.config import load_settings
    from service.core.bootstrap import prepare_data_dir
    from service.core.db import new_session
    from service.incidents.models import Incident
    from service.notify.outbox import notify_incident
    from service.notify.wiring import stop_dispatcher

    sink = _Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    with tempfile.TemporaryDirectory(prefix="canhgac-notify-bench-") as tmp:
        app = create_app(load_settings({
            "data_dir": Path(tmp), "database_url": database_url, "secret_key": "bench",
            "scheduler_enabled": True, "policy_reload": False, "log_level": "WARNING",
            "smtp_host": "127.0.0.1", "smtp_port": port,
        }, environ={}))
        prepare_data_dir(app)
        try:
            session = new_session(app)
            for index in range(recipients):
                create_user(session, username=f"nguoi_nhan_{index}", password="mat-khau-bench-1",
                            roles=["leader" if index % 2 else "police"],
                            email=f"nguoi_nhan_{index}@nhanly.example", unit=None, is_seeding=True)
            session.commit()
            latencies: list[float] = []
            commits: list[float] = []
            missing = 0
            with app.app_context():
                for index in range(n + 5):
                    begin = time.perf_counter()
                    incident = Incident(title=f"Sao chép tệp dân cư #{index} sang USB",
                                        summary="Tệp DanCu.xlsx chép sang ổ E:", origin="rule")
                    session.add(incident)
                    session.flush()
                    notify_incident(session, incident, kind="created")
                    session.commit()
                    committed = time.perf_counter()
                    accepted = sink.wait_for(incident.id, recipients, timeout=30)
                    if index < 5:  # warm-up: imports, first connections, caches
                        continue
                    if accepted is None:
                        missing += 1
                        continue
                    latencies.append(accepted - begin)
                    commits.append(committed - begin)
            session.close()
        finally:
            stop_dispatcher(app)
            app.extensions["canhgac.engine"].dispose()
            controller.stop()
    p99 = percentile(latencies, 0.99) if latencies else float("inf")
    return {
        "n_incidents": n,
        "recipients_per_incident": recipients,
        "database": "postgresql" if database_url and "postgresql" in database_url else "sqlite",
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(p99 * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "enqueue_commit_p50_ms": round(statistics.median(commits) * 1000, 1) if commits else None,
        "not_delivered_in_30s": missing,
        "target_p99_ms": 1000,
        "meets_target": bool(latencies) and missing == 0 and p99 <= 1.0,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200), indent=2))
