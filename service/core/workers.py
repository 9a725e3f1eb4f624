"""`canhgac serve --processes N`: one port served by N processes of the app.

A request is CPU work under one interpreter lock: one process keeps one core busy and leaves the
other idle (bench/README.md, 100 clients). The process started by `serve` (the primary) binds
the port and runs everything `serve` always ran: the scheduler and the policy watcher that
records and announces changes. It starts N − 1 secondaries (`python -m service.core.workers`)
that bind the same port (SO_REUSEPORT: the kernel spreads new connections over the processes
evenly) and only serve requests: they follow policy changes without announcing
them, and their policy windows catch up with the events the others stored
(events/processing.py). Writers of all processes take turns through the file gate
(core/db.py), and everything else they share lives in the database.

A secondary that dies (a crash, SIGKILL) is started again; one whose primary dies is killed by the kernel
(Linux: PR_SET_PDEATHSIG), so a killed service never leaves a half of itself serving.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger("canhgac.workers")

# A secondary that exits is started again, but not more often than this: one that fails at
# once (a broken installation) must not spin.
RESTART_DELAY_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 20.0


def is_multiprocess_supported() -> bool:
    """Tell whether several processes can serve here (Linux)."""
    from service.core.db import fcntl

    # Linux alone both spreads connections over SO_REUSEPORT sockets and kills a child with its
    # parent (PR_SET_PDEATHSIG); elsewhere one process serves, as before.
    return sys.platform.startswith("linux") and fcntl is not None and hasattr(socket, "SO_REUSEPORT")


def default_processes() -> int:
    """Return the default number of serving processes: one per core, at most two."""
    if not is_multiprocess_supported():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cores or 1))


def serve_threads(processes: int) -> int:
    """Return the default number of worker threads in each of ``processes`` serving processes."""
    from service.core.server import DEFAULT_THREADS, DEFAULT_THREADS_PER_PROCESS

    return DEFAULT_THREADS if processes == 1 else DEFAULT_THREADS_PER_PROCESS


class Secondaries:
    """The secondary server processes of one primary: start, watch, restart, stop."""

    def __init__(self, count: int, args: list[str]) -> None:
        self.count = count
        self.args = args
        self.processes: list[subprocess.Popen | None] = [None] * count
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> tuple[subprocess.Popen, int]:
        ready_read, ready_write = os.pipe()
        command = [sys.executable, "-m", "service.core.workers", "--ready-fd", str(ready_write),
                   "--parent-pid", str(os.getpid()), *self.args]
        try:
            process = subprocess.Popen(command, pass_fds=(ready_write,), close_fds=True)
        finally:
            os.close(ready_write)
        return process, ready_read

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> int:
        """Start every secondary and wait until each is ready or gone; return how many are ready."""
        pending = []
        for index in range(self.count):
            process, ready_read = self._spawn()
            self.processes[index] = process
            pending.append(ready_read)
        ready = _wait_ready(pending, timeout)
        self._watcher = threading.Thread(target=self._watch, name="canhgac-secondaries", daemon=True)
        self._watcher.start()
        return ready

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for index, process in enumerate(self.processes):
                if process is None or process.poll() is None:
                    continue
                if self._stopping.is_set():
                    return
                if process.returncode == 0:
                    # It was asked to stop (SIGTERM or Ctrl-C reach it too) and did: not a crash.
                    log.info("secondary_stopped", pid=process.pid)
                    self.processes[index] = None
                    continue
                log.error("secondary_exited", pid=process.pid, returncode=process.returncode)
                time.sleep(RESTART_DELAY_SECONDS)
                if self._stopping.is_set():
                    return
                new, ready_read = self._spawn()
                self.processes[index] = new
                _wait_ready([ready_read], READY_TIMEOUT_SECONDS)
                log.info("secondary_restarted", pid=new.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Ask every secondary to stop (SIGTERM: requests in flight finish), then make sure."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(RESTART_DELAY_SECONDS + READY_TIMEOUT_SECONDS)
        alive = [p for p in self.processes if p is not None and p.poll() is None]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in alive:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(fds: list[int], timeout: float) -> int:
    """Read one byte from each pipe (or its end-of-file: the process died); return how many said ready."""
    ready = 0
    deadline = time.monotonic() + timeout
    remaining = list(fds)
    try:
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select(remaining, [], [], left)
            for fd in readable:
                if os.read(fd, 1):
                    ready += 1
                remaining.remove(fd)
    finally:
        for fd in fds:
            os.close(fd)
    return ready


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this process when the primary dies; exit if it already has."""
    if sys.platform.startswith("linux"):  # the only platform workers run on (see above)
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the primary died before the request above
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """Serve the primary's port as a secondary process until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m service.core.workers")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--read-deadline", type=float, required=True)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)

    from service.core.cliutil import make_app
    from service.core.heap import settle_heap
    from service.core.jobs import start_background, stop_background
    from service.core.server import Server

    app = make_app(args.data_dir, keeps_sessions=True, is_quiet=True)
    keys = app.config["SETTINGS"].keys_dir
    server = Server(app, args.host, args.port, threads=args.threads,
                    read_deadline=args.read_deadline, port_sharing="join",
                    certfile=keys / "tls.crt" if args.tls else None,
                    keyfile=keys / "tls.key" if args.tls else None)
    settle_heap()
    start_background(app, is_primary=False)
    os.write(args.ready_fd, b"1")
    os.close(args.ready_fd)
    try:
        server.run(on_signals=("SIGINT", "SIGTERM"))
    except KeyboardInterrupt:
        pass
    finally:
        stop_background(app)


if __name__ == "__main__":
    main()
