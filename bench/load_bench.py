"""Bounded load on loopback: concurrent clients of mixed ingest and page views against the real server.

The clients run in their own process. Each client loops until the deadline: three of four requests post a batch of 20 events, the
fourth (after logging in once) fetches the police trail page. Reports errors and p50/p99 per kind.
Everything stays on 127.0.0.1 and stops by itself.

Client k starts k requests into the cycle of three ingests and a page, so the mix is the same at
every moment, as with independent agents and browsers. Started all in the same phase, the clients of a
server that answers in order stay in step: every fourth round is 100 page views at once and the
round after waits for all of them; `run_in_step` measures that case too (bench/README.md).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import multiprocessing
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.stats import percentile

USER_AGENT = "canhgac-load-bench"




def _login(port: int, username: str, password: str) -> str:
    """Log in through the real form; return the Cookie header for later requests."""
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    # flask-login's strong session protection binds the session to the user agent.
    opener.addheaders = [("User-Agent", USER_AGENT)]
    base = f"http://127.0.0.1:{port}"
    page = opener.open(base + "/login", timeout=30).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrf_token": token}).encode()
    opener.open(base + "/login", data=data, timeout=30).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def _drive(port: int, token: str, cookie: str, clients: int, seconds: float,
           timeout: float = 60, is_in_step: bool = False) -> tuple[dict[str, list[float]], list[str], float]:
    """Run the client threads until the deadline; return latencies, errors and wall time."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latency: dict[str, list[float]] = {"ingest": [], "page": []}
    errors: list[str] = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        n = 0 if is_in_step else k  # the phase of this client's page in each four requests
        while time.monotonic() < deadline:
            kind = "page" if n % 4 == 3 else "ingest"
            t0 = time.perf_counter()
            try:
                if kind == "ingest":
                    batch = [{"id": str(uuid.uuid4()), "occurred_at": "2026-10-01T09:00:00+07:00",
                              "host": f"PC-{k:03d}", "actor": f"canbo{k}", "action": "open",
                              "object": {"path": f"C:\\DuLieu\\DanCu\\thon_{n % 22}.xlsx"},
                              "unit": "cong_an"} for _ in range(20)]
                    conn.request("POST", "/api/v1/events", body=json.dumps(batch), headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                else:
                    conn.request("GET", "/audit/?page=1",
                                 headers={"Cookie": cookie, "User-Agent": USER_AGENT})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            elapsed = time.perf_counter() - t0
            with lock:
                latency[kind].append(elapsed)
                if status != 200:
                    errors.append(f"{kind}:{status}")
            n += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latency, errors, time.perf_counter() - start


def run(clients: int = 100, seconds: float = 60.0, is_in_step: bool = False,
        processes: int | None = None, threads: int | None = None) -> dict:
    """Run the load against `canhgac serve`; return request counts, errors and latency percentiles.

    ``processes`` and ``threads`` None are the server's defaults (service/core/workers.py).
    """
    from bench.ingest_bench import _prepared_app
    from bench.served import served
    from service.auth.operations import create_token, create_user
    from service.core.db import new_session

    with tempfile.TemporaryDirectory() as tmp:
        app = _prepared_app(Path(tmp))
        with app.app_context():
            s = new_session(app)
            _, token = create_token(s, "load", by="bench")
            create_user(s, username="congan", password="mat-khau-tai-12", roles=["police"],
                        email="congan@nhanly.example", unit="cong_an", by="bench", is_seeding=True)
            s.commit()
            s.close()
        app.extensions["canhgac.engine"].dispose()
        # The production server, as `canhgac serve` runs it, in processes of its own; the
        # clients in one more, as real agents and browsers are other machines: in the
        # server's process their 100 threads would contend with it for the interpreter lock.
        with served(Path(tmp), processes=processes, threads=threads) as port:
            cookie = _login(port, "congan", "mat-khau-tai-12")
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                latency, errors, wall = pool.submit(_drive, port, token, cookie, clients,
                                                    seconds, is_in_step=is_in_step).result()
    result: dict = {"clients": clients, "processes": processes or "default",
                    "threads": threads or "default",
                    "is_in_step": is_in_step, "seconds": round(wall, 1),
                    "errors": len(errors),
                    "error_kinds": sorted(set(errors))[:5]}
    for kind, values in latency.items():
        result[kind] = {"requests": len(values), "per_s": len(values) / wall,
                        "p50_ms": 1000 * percentile(values, 0.5),
                        "p99_ms": 1000 * percentile(values, 0.99)}
    return result


def run_in_step(clients: int = 100, seconds: float = 60.0) -> dict:
    """Run the load with every client in the same phase (a page view round every fourth)."""
    return run(clients, seconds, is_in_step=True)


def run_one_process(clients: int = 100, seconds: float = 60.0) -> dict:
    """Run the load against a server of one process: the baseline of `serve --processes`."""
    return run(clients, seconds, processes=1)


if __name__ == "__main__":
    print(json.dumps(run(clients=20, seconds=10), indent=2))
