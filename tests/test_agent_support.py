"""Helpers for the agent tests: a real recording HTTP(S) server, certificates, polling.

Named test_agent_*.py so it sits with the agent's tests; it defines no tests itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN = "test-token"
Responder = Callable[[str, object], tuple[int, dict]]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02):
    """Poll *predicate* until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_certificate(directory: Path, common_name: str = "canhgac-test") -> tuple[Path, Path, str]:
    """Write a self-signed certificate and key; return (cert path, key path, sha256 of DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{common_name}.pem"
    key_path = directory / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    return cert_path, key_path, fingerprint


class RecordingServer:
    """A real HTTP(S) server on 127.0.0.1 that records what agents send.

    By default it behaves like the Canh Gác server: 200 {"stored", "duplicates"} with
    de-duplication by event id. *responder* may override the answer per request.
    """

    def __init__(self, *, port: int | None = None, certfile: Path | None = None,
                 keyfile: Path | None = None, token: str = TOKEN,
                 responder: Responder | None = None) -> None:
        self.port = port or free_port()
        self.token = token
        self.responder = responder
        self.certfile = certfile
        self.keyfile = keyfile
        self.lock = threading.Lock()
        self.batches: list[list[dict]] = []
        self.events: dict[str, dict] = {}
        self.deliveries: list[str] = []  # every event id received with 200, duplicates too
        self.heartbeats: list[dict] = []
        self.request_lines: list[bytes] = []
        self.statuses: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        """Return the base URL of the server."""
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> RecordingServer:
        """Listen and serve in a background thread."""
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like waitress
            # Buffered writes: headers and body leave in one segment (no Nagle/delayed-ACK
            # stall of 40 ms per answer, which would distort latency measurements).
            wbufsize = -1

            def setup(self) -> None:
                super().setup()
                with recorder.lock:
                    recorder._connections.add(self.connection)

            def finish(self) -> None:
                with recorder.lock:
                    recorder._connections.discard(self.connection)
                super().finish()

            def handle_one_request(self) -> None:
                super().handle_one_request()
                if getattr(self, "raw_requestline", b""):
                    with recorder.lock:
                        recorder.request_lines.append(self.raw_requestline)

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.headers.get("Authorization") != f"Bearer {recorder.token}":
                    self._answer(401, {"error": "bad token"})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._answer(400, {"error": "invalid JSON"})
                    return
                status, answer = recorder.respond(self.path, body)
                self._answer(status, answer)

            def _answer(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                with recorder.lock:
                    recorder.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile, self.keyfile)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def respond(self, path: str, body: object) -> tuple[int, dict]:
        """Answer one request (default: store events, de-duplicated by id)."""
        if self.responder is not None:
            status, answer = self.responder(path, body)
        elif path.endswith("/agents/heartbeat"):
            status, answer = 200, {"ok": True}
        else:
            status, answer = 200, {}
        with self.lock:
            if path.endswith("/agents/heartbeat"):
                if status == 200:
                    self.heartbeats.append(body)
                return status, answer
            self.batches.append(body)
            if status != 200:
                return status, answer
            stored = duplicates = 0
            for event in body:
                self.deliveries.append(event["id"])
                if event["id"] in self.events:
                    duplicates += 1
                else:
                    self.events[event["id"]] = event
                    stored += 1
            return 200, answer or {"stored": stored, "duplicates": duplicates}

    def stop(self) -> None:
        """Stop serving and drop open connections (the server is really down)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._server = None

    def events_by_action(self, action: str) -> list[dict]:
        """Return stored events with the given action."""
        with self.lock:
            return [e for e in self.events.values() if e["action"] == action]

    def all_events(self) -> list[dict]:
        """Return stored events (first delivery of each id)."""
        with self.lock:
            return list(self.events.values())
