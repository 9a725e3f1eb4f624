"""Slow clients: ingest and page latency with 0 and with 100 trickling connections open, per server.

Each candidate server runs the real app in its own process (`python -m bench.slow_client_bench
--serve NAME ...`), 8 worker threads unless its name says otherwise. The measuring process runs
4 clients that loop for `seconds`: three of four requests post a batch of 20 events, the fourth
opens the police trail page. The same clients run first with no slow connection open, then with
`slow` connections open: half send a POST's headers one byte at a time, half send complete
headers (Content-Length 200,000) and then the body one byte at a time, every connection one byte
each `tick` seconds. A slow connection the server closes is counted and opened again, so `slow`
stay open throughout. A request that gets no answer within `timeout` seconds counts as an error
with that time as its latency. Everything stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.load_bench import _login
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ("cheroot", "cheroot-128", "waitress", "uvicorn", "hypercorn")
PASSWORD = "mat-khau-tai-12"  # noqa: S105 - a bench account in a throwaway data directory


# --- The servers, each in its own process -------------------------------------------------------


def _app(data_dir: Path):
    from service import create_app
    from service.config import load_settings

    return create_app(load_settings({"data_dir": data_dir, "secret_key": "bench", "scheduler_enabled": False,
                                     "policy_reload": False, "log_level": "WARNING"}, environ={}))


def serve(name: str, data_dir: Path, port: int) -> None:
    """Serve the app with candidate `name` on 127.0.0.1:port until killed."""
    from service.core.heap import settle_heap

    app = _app(data_dir)
    settle_heap()  # as `canhgac serve` does, whichever server runs it
    if name.startswith("cheroot"):
        from cheroot import wsgi

        threads = int(name.partition("-")[2] or 8)
        # cheroot's defaults otherwise (socket timeout 10 s per read); the queue is raised so that
        # the slow connections do not fill it.
        wsgi.Server(("127.0.0.1", port), app, numthreads=threads, request_queue_size=256).safe_start()
    elif name == "waitress":
        import waitress

        # connection_limit above the slow connections (its default, 100, would refuse the rest);
        # channel_timeout is an inactivity timeout, so a byte a second keeps a channel open.
        waitress.serve(app, host="127.0.0.1", port=port, threads=8, connection_limit=1000,
                       channel_timeout=30, _quiet=True)
    elif name == "uvicorn":
        import uvicorn

        # uvicorn's own WSGI interface (deprecated in favour of a2wsgi) buffers the body, then runs
        # the app on a pool of 10 threads.
        uvicorn.run(app, host="127.0.0.1", port=port, interface="wsgi", log_level="warning",
                    timeout_keep_alive=30)
    elif name == "hypercorn":
        from service.core.server import Server

        Server(app, "127.0.0.1", port, threads=8).run(on_signals=("SIGTERM",))
    else:
        raise SystemExit(f"unknown server {name}")


# --- The load ----------------------------------------------------------------------------------


def _prepare(data_dir: Path) -> str:
    from bench.ingest_bench import _prepared_app
    from service.auth.operations import create_token, create_user
    from service.core.db import new_session

    app = _prepared_app(data_dir)
    with app.app_context():
        s = new_session(app)
        _, token = create_token(s, "slow-bench", by="bench")
        create_user(s, username="congan", password=PASSWORD, roles=["police"],
                    email="congan@nhanly.example", unit="cong_an", by="bench", is_seeding=True)
        s.commit()
        s.close()
    app.extensions["canhgac.engine"].dispose()
    return token


class SlowConnections:
    """Keep `count` connections trickling one byte each `tick` seconds; reopen those the server closes."""

    def __init__(self, port: int, count: int, tick: float) -> None:
        """Remember the target; nothing is opened before `start`."""
        self.port, self.count, self.tick = port, count, tick
        self.closed_by_server = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.open_now = 0

    def _open(self, k: int) -> tuple[socket.socket, bytes] | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return None
        sock.setblocking(False)
        head = (b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200000\r\n")
        if k % 2 == 0:  # headers trickle, forever (never the blank line)
            return sock, head + b"X-Trickle: " + b"a" * 100_000
        with_head = head + b"\r\n"
        try:
            sock.sendall(with_head)
        except OSError:
            sock.close()
            return None
        return sock, b"[" + b" " * 199_998 + b"]"  # body trickles

    def _run(self) -> None:
        conns: dict[int, tuple[socket.socket, bytes, int] | None] = {}
        for k in range(self.count):
            opened = self._open(k)
            conns[k] = (*opened, 0) if opened else None
        while not self.stopped.is_set():
            tick_start = time.monotonic()
            for k, entry in list(conns.items()):
                if entry is None:
                    opened = self._open(k)
                    conns[k] = (*opened, 0) if opened else None
                    continue
                sock, data, sent = entry
                try:
                    if sock.recv(4096, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError  # the server closed it
                    raise ConnectionAbortedError  # the server answered: it gave up on this request
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    sock.close()
                    self.closed_by_server += 1
                    opened = self._open(k)
                    conns[k] = (*opened, 0) if opened else None
                    continue
                try:
                    sock.send(data[sent : sent + 1])
                    conns[k] = (sock, data, sent + 1)
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    self.closed_by_server += 1
                    conns[k] = None
            self.open_now = sum(1 for entry in conns.values() if entry is not None)
            self.stopped.wait(max(0.0, self.tick - (time.monotonic() - tick_start)))
        for entry in conns.values():
            if entry is not None:
                entry[0].close()

    def start(self) -> None:
        """Open the connections and start trickling."""
        self.thread.start()

    def stop(self) -> None:
        """Close every slow connection."""
        self.stopped.set()
        self.thread.join(30)


def _clients(port: int, token: str, cookie: str, seconds: float, clients: int, timeout: float) -> dict:
    # The same mixed ingest/page clients as load_bench, in this process beside the slow ones.
    from bench.load_bench import _drive

    latency, errors, _wall = _drive(port, token, cookie, clients, seconds, timeout)
    out: dict = {"errors": len(errors), "error_kinds": sorted(set(errors))[:4]}
    for kind, values in latency.items():
        out[kind] = {"requests": len(values), "p50_ms": round(1000 * percentile(values, 0.5), 1),
                     "p99_ms": round(1000 * percentile(values, 0.99), 1)}
    return out


def _wait_until_up(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/openapi.json")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not answer")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(name: str, *, slow: int = 100, seconds: float = 15.0, clients: int = 4, tick: float = 0.5,
            timeout: float = 10.0) -> dict:
    """Start server `name` in a process and measure the clients with 0, then `slow`, slow connections."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        token = _prepare(data_dir)
        port = _free_port()
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        process = subprocess.Popen([sys.executable, "-m", "bench.slow_client_bench", "--serve", name,
                                    "--data-dir", str(data_dir), "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(port, process)
            cookie = _login(port, "congan", PASSWORD)
            quiet = _clients(port, token, cookie, seconds, clients, timeout)
            trickle = SlowConnections(port, slow, tick)
            trickle.start()
            time.sleep(max(2.0, 2 * tick))  # all opened and trickling
            loaded = _clients(port, token, cookie, seconds, clients, timeout)
            open_at_end = trickle.open_now
            trickle.stop()
            after = _clients(port, token, cookie, 3.0, clients, timeout)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
    return {"server": name, "slow_0": quiet, f"slow_{slow}": loaded,
            "slow_open_at_end": open_at_end, "slow_closed_by_server": trickle.closed_by_server,
            "after_slow_errors": after["errors"]}


def run(rounds: int = 2, slow: int = 100, seconds: float = 15.0, candidates: tuple[str, ...] = ("hypercorn",)) -> dict:
    """Measure each candidate `rounds` times, interleaved; report each run and the median p50/p99."""
    runs: dict[str, list[dict]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name in candidates:
            runs[name].append(measure(name, slow=slow, seconds=seconds))
    summary = {}
    for name, results in runs.items():
        figures = {}
        for phase in ("slow_0", f"slow_{slow}"):
            for kind in ("ingest", "page"):
                for q in ("p50_ms", "p99_ms"):
                    values = sorted(r[phase][kind][q] for r in results)
                    figures[f"{phase}.{kind}_{q}"] = values[len(values) // 2] if len(values) % 2 else \
                        round((values[len(values) // 2 - 1] + values[len(values) // 2]) / 2, 1)
            figures[f"{phase}.errors"] = sum(r[phase]["errors"] for r in results)
        figures["slow_closed_by_server"] = sum(r["slow_closed_by_server"] for r in results)
        summary[name] = figures
    return {"rounds": rounds, "slow": slow, "seconds": seconds, "median": summary, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    """Serve one candidate (--serve) or measure the candidates and print JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.slow_client_bench")
    parser.add_argument("--serve", choices=CANDIDATES)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--candidates", default="hypercorn", help=f"comma-separated, from {','.join(CANDIDATES)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.data_dir, args.port)
        return
    result = run(rounds=args.rounds, slow=args.slow, seconds=args.seconds,
                 candidates=tuple(args.candidates.split(",")))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
