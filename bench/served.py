"""The production server as `canhgac serve` runs it, in processes of its own, for the load benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY_LINE = "serving at"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(data_dir: Path, *, processes: int | None = None, threads: int | None = None,
           timeout: float = 120.0) -> Iterator[int]:
    """Run `canhgac serve` on a prepared data directory; yield its port; stop it with SIGTERM.

    ``processes`` and ``threads`` None are `serve`'s own defaults. No scheduler and no policy watcher run, as in
    the other benchmarks: what is measured is requests.
    """
    port = _free_port()
    env = {**os.environ, "CANHGAC_SCHEDULER_ENABLED": "false", "CANHGAC_POLICY_RELOAD": "false",
           "CANHGAC_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "service.cli", "serve", "--data-dir", str(data_dir),
               "--port", str(port)]
    if processes is not None:
        command += ["--processes", str(processes)]
    if threads is not None:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # also after the ready line, so that the pipe never fills
        for line in process.stderr:
            lines.append(line)
            if READY_LINE in line:
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("canhgac serve did not start:\n" + "".join(lines[-20:]))
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
