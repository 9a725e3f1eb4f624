"""Slow clients cannot silence the real server (`canhgac serve`, a subprocess on 127.0.0.1).

* 100 connections trickle, half their headers byte by byte, half a body byte by byte, while
  ingest batches and a page are answered (with 8 worker threads, as the old server starved);
* a connection that trickles longer than the read deadline is cut; a body that is too large is
  refused from its Content-Length before it is sent; bodies held at once share a memory budget;
* `canhgac serve --tls` answers over HTTPS with the certificate `canhgac init` made (the agent's
  pinned client), answers without a body (304, HEAD) are sent, and SIGTERM stops the server cleanly.

Latency is measured by bench/slow_client_bench.py; here every bound is generous (a request that
waits for a free worker behind the slow connections would wait until they end: minutes).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_reliability_support import ROOT, LiveServer, cli_env, init_data_dir, make_event

SLOW = 100


class Server(LiveServer):
    """LiveServer with extra `canhgac serve` options."""

    def __init__(self, data_dir: Path, env: dict[str, str], *options: str) -> None:
        """Remember the options; see LiveServer."""
        super().__init__(data_dir, env, threads=8)
        self.options = list(options)

    def start(self, timeout: float = 30.0) -> None:
        """Start `canhgac serve` with the options and wait until it answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--threads", str(self.threads), *self.options],
                env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server did not listen within {timeout}s")


class Trickler:
    """Slow connections: each sends one more byte every `tick` seconds until stopped."""

    HEAD = (b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n")

    def __init__(self, port: int, count: int, tick: float = 0.25) -> None:
        """Open `count` connections: even ones trickle headers, odd ones a body after whole headers."""
        self.tick = tick
        self.conns: list[tuple[socket.socket, bytes]] = []
        self.sent = [0] * count
        self.closed_at: dict[int, float] = {}  # connection -> seconds after opening
        self.answers: dict[int, bytes] = {}
        self.opened_at = time.monotonic()
        for k in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if k % 2:
                sock.sendall(self.HEAD + b"\r\n")
                rest = b"[" + b" " * 99_998 + b"]"
            else:
                rest = self.HEAD + b"X-Trickle: " + b"a" * 60_000
            sock.setblocking(False)
            self.conns.append((sock, rest))
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.tick):
            for k, (sock, rest) in enumerate(self.conns):
                if k in self.closed_at:
                    continue
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    data = None  # the server is still waiting for this request
                except OSError:
                    data = b""
                if data is not None:  # an answer, or the end of the connection
                    self.answers[k] = data
                    self.closed_at[k] = time.monotonic() - self.opened_at
                    continue
                try:
                    sock.send(rest[self.sent[k] : self.sent[k] + 1])
                    self.sent[k] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_at[k] = time.monotonic() - self.opened_at

    def open_count(self) -> int:
        """Return how many connections the server has neither answered nor closed."""
        return len(self.conns) - len(self.closed_at)

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self.stopped.set()
        self.thread.join(10)
        for sock, _ in self.conns:
            sock.close()


@pytest.fixture
def served(tmp_path, db_url):
    """Yield a function starting `canhgac serve OPTIONS` on an initialised data directory, and the token."""
    data_dir = tmp_path / "data"
    env = cli_env(db_url)
    token = init_data_dir(data_dir, env)
    started: list[Server] = []

    def start(*options: str, env_extra: dict | None = None) -> Server:
        server = Server(data_dir, {**env, **(env_extra or {})}, *options)
        server.start()
        started.append(server)
        return server

    yield start, token, data_dir
    for server in started:
        server.kill()


@pytest.mark.heavy
@pytest.mark.timeout(240)
def test_hundred_slow_connections_do_not_stop_ingest_or_pages(served):
    start, token, _ = served
    server = start("--read-deadline", "120")  # longer than this test: the slow ones stay open
    rng = random.Random(15)
    status, answer = server.post_events(token, [make_event(rng) for _ in range(5)])
    assert (status, answer.get("stored")) == (200, 5)

    slow = Trickler(server.port, SLOW)
    try:
        time.sleep(2)  # every slow connection has sent something, none has finished
        assert slow.open_count() == SLOW, slow.answers
        stored = 0
        for _ in range(20):
            # 10 s each at most: far more than an answer takes, far less than the slow ones last.
            status, answer = server.post_events(token, [make_event(rng) for _ in range(20)], timeout=10)
            assert status == 200, answer
            stored += answer["stored"]
        assert stored == 400
        status, page = server.request("GET", "/login", timeout=10)
        assert status == 200 and b"csrf_token" in page
        status, _ = server.request("GET", "/api/v1/openapi.json", timeout=10)
        assert status == 200
        # The server held every slow connection meanwhile: none was dropped to make room.
        assert slow.open_count() == SLOW, slow.answers
        assert min(slow.sent) > 0
    finally:
        slow.close()
    assert server.is_running()


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_a_connection_that_trickles_past_the_deadline_is_cut(served):
    start, token, _ = served
    server = start("--read-deadline", "2")
    slow = Trickler(server.port, 4, tick=0.2)
    try:
        deadline = time.monotonic() + 30
        while slow.open_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slow.open_count() == 0, f"still open after 30 s with a 2 s deadline: {slow.closed_at}"
        # Cut after the deadline (not at once), long before it had all been sent.
        assert all(1.5 < seconds < 15 for seconds in slow.closed_at.values()), slow.closed_at
        assert all(sent < 1000 for sent in slow.sent)
        # A trickled body is answered 408 Request Timeout; trickled headers are simply closed.
        for k in (1, 3):
            assert slow.answers[k].startswith(b"HTTP/1.1 408 "), slow.answers[k][:80]
    finally:
        slow.close()
    status, answer = server.post_events(token, [make_event(random.Random(2))], timeout=10)
    assert (status, answer.get("stored")) == (200, 1)


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_a_declared_oversized_body_is_refused_before_it_is_sent(served):
    start, token, _ = served
    server = start(env_extra={"CANHGAC_MAX_BODY_BYTES": "65536"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n"
                     b"Content-Length: 1000000000\r\n\r\n[")
        answer = sock.recv(65536)  # no more of the gigabyte is ever sent
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # Sent whole: one byte over the cap is refused, the cap itself is read and parsed.
    for size, is_refused in ((65_537, True), (65_536, False)):
        status, _ = server.request("POST", "/api/v1/events", b"[" + b" " * (size - 2) + b"]",
                                   {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert (status == 413) is is_refused, (size, status)


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_bodies_held_at_once_share_a_memory_budget(served):
    start, token, _ = served
    # Budget: 8 bodies of the 64 KiB cap, in each serving process (one here, so that the ten
    # connections all meet the same budget). Ten clients each send 60,000 of a declared 65,000 bytes.
    server = start("--processes", "1", env_extra={"CANHGAC_MAX_BODY_BYTES": "65536"})
    head = (b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 65000\r\n\r\n")
    socks = []
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(head + b"[" + b" " * 59_999)
            socks.append(sock)
        time.sleep(1)
        answers = []
        for sock in socks:
            sock.setblocking(False)
            try:
                answers.append(sock.recv(4096))
            except BlockingIOError:
                answers.append(None)  # still being read: within the budget
        refused = [a for a in answers if a is not None]
        assert 1 <= len(refused) <= 3, answers
        assert all(a.startswith(b"HTTP/1.1 503 ") and b"retry-after: 5" in a.lower() for a in refused), refused
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.5)  # the closed connections give their share back
    status, answer = server.post_events(token, [make_event(random.Random(8))], timeout=10)
    assert (status, answer.get("stored")) == (200, 1)


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_serve_tls_answers_with_the_certificate_from_init(served):
    from canhgac_agent.client import PinMismatchError, ServerClient
    from service.core.tls import certificate_fingerprint

    start, token, data_dir = served
    server = start("--tls")
    pin = certificate_fingerprint(data_dir / "keys" / "tls.crt")
    event = make_event(random.Random(443))
    with ServerClient(f"https://127.0.0.1:{server.port}", token, pinned_sha256=pin, timeout=10) as client:
        response = client.send_events([json.dumps(event)])
    assert (response.status, response.body["stored"]) == (200, 1)
    with (
        ServerClient(f"https://127.0.0.1:{server.port}", token, pinned_sha256="0" * 64, timeout=10) as client,
        pytest.raises(PinMismatchError),
    ):
        client.send_events(["{}"])
    # Plain HTTP on the TLS port gets no answer from the app.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/api/v1/openapi.json")
        conn.getresponse().read()
    conn.close()


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_answers_without_a_body_are_sent(served):
    start, _, _ = served
    server = start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/static/app.css")
        first = conn.getresponse()
        assert first.status == 200 and first.read()
        assert first.getheader("Server") is None  # no software name for a scanner
        etag = first.getheader("ETag")
        assert etag
        conn.request("GET", "/static/app.css", headers={"If-None-Match": etag})  # same connection
        cached = conn.getresponse()
        assert (cached.status, cached.read()) == (304, b"")
        conn.request("HEAD", "/login")
        head = conn.getresponse()
        assert (head.status, head.read()) == (200, b"")
        assert int(head.getheader("Content-Length")) > 0
    finally:
        conn.close()


@pytest.mark.heavy
@pytest.mark.timeout(120)
@pytest.mark.skipif(os.name == "nt", reason="SIGTERM is POSIX; Windows services stop through the same handler")
def test_sigterm_stops_the_server_cleanly(served):
    start, token, _ = served
    server = start()
    status, _ = server.post_events(token, [make_event(random.Random(9))], timeout=10)
    assert status == 200
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
