"""The HTTP(S) server: an asyncio loop holds every connection, a bounded thread pool runs the WSGI app.

Hypercorn reads each request's headers on its event loop, and the wrapper below reads the whole
body there too, so a worker thread only ever takes a complete request: a client that trickles its
headers or body costs a coroutine, not one of the `threads` workers (bench/README.md, slow clients).
Every connection has deadlines: headers must be complete `read_deadline` seconds after the
connection opened or after the previous answer (hypercorn's keep-alive timer, which runs until a
whole request head has arrived), a body within `read_deadline` seconds plus one per MIN_BODY_RATE
bytes received (else 408), a TLS handshake within `read_deadline`. Bodies over `max_body_bytes` are
never read whole, and all bodies in memory at once share a budget (8 × `max_body_bytes`; past it,
503 with Retry-After). Runs wherever asyncio does (Linux, Windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from hypercorn.app_wrappers import InvalidPathError, WSGIWrapper, _build_environ
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets

DEFAULT_READ_DEADLINE = 30.0
# Requests are CPU work under one interpreter lock: more threads than this only queue in it
# longer (bench/README.md, 100 clients); slow connections never hold one.
DEFAULT_THREADS = 8
# With several processes (service/core/workers.py), each runs fewer: the thread holding the
# database's write lock shares its process's interpreter lock with the others, and every
# statement it runs hands that lock over and waits to get it back, while the other processes'
# writers wait for it. Measured under 100 clients: time in the write lock beyond its CPU
# 2.2 ms a transaction with 8 threads a process, 1.5 with 2, 0.6 with 1 (bench/README.md);
# 2 keeps a long request (a PDF report) from stopping its process.
DEFAULT_THREADS_PER_PROCESS = 2
BACKLOG = 1024
BIND_RETRY_SECONDS = 3.0
# Bytes per second a body must average beyond its first read deadline (32 kbit/s: a slow line
# passes, a trickle does not; the idea of Apache mod_reqtimeout's MinRate).
MIN_BODY_RATE = 4096


class BufferedWSGI(WSGIWrapper):
    """Read a whole request within a deadline and a size cap, then run the WSGI app on a worker."""

    def __init__(self, app, max_body_bytes: int, body_deadline: float,
                 max_buffered_bytes: int | None = None) -> None:
        """Wrap `app`; refuse bodies over `max_body_bytes`, slower than the deadline, or over the budget.

        A body has `body_deadline` seconds, plus one more per MIN_BODY_RATE bytes received (a
        large upload on a slow line goes through, a trickle does not). All bodies being read or
        run at once share `max_buffered_bytes` of memory (default 8 × `max_body_bytes`); past it a
        request is answered 503 with Retry-After, so many large bodies cannot exhaust memory.
        """
        super().__init__(app, max_body_bytes)
        self.body_deadline = body_deadline
        self.max_buffered_bytes = max_buffered_bytes or 8 * max_body_bytes
        self.buffered_bytes = 0  # only touched on the event loop's thread

    async def handle_http(self, scope, receive, send, sync_spawn, call_soon) -> None:
        """Buffer the body on the event loop, then hand the finished request to a worker thread."""
        body = bytearray()
        try:
            await self._handle(scope, receive, send, sync_spawn, call_soon, body)
        finally:
            self.buffered_bytes -= len(body)

    async def _handle(self, scope, receive, send, sync_spawn, call_soon, body: bytearray) -> None:
        loop = asyncio.get_running_loop()
        declared = _declared_length(scope)
        is_too_large = declared is not None and declared > self.max_body_size
        started_at = loop.time()
        while not is_too_large:
            remaining = started_at + self.body_deadline + len(body) / MIN_BODY_RATE - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except TimeoutError:
                await _refuse(send, 408)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if self.buffered_bytes + len(chunk) > self.max_buffered_bytes:
                await _refuse(send, 503, [(b"retry-after", b"5")])
                return
            body.extend(chunk)
            self.buffered_bytes += len(chunk)
            # Chunked, or more than it declared: stop reading, keep no more than the cap.
            is_too_large = len(body) > self.max_body_size
            if not message.get("more_body"):
                break
        try:
            environ = _build_environ(scope, bytes(body[: self.max_body_size + 1]))
        except InvalidPathError:
            await _refuse(send, 404)
            return
        environ["SERVER_PORT"] = str(environ["SERVER_PORT"])  # PEP 3333: a string
        environ["wsgi.errors"] = sys.stderr
        # The body is complete (chunked ones too): the app may read to its end.
        environ["wsgi.input_terminated"] = True
        if is_too_large:
            # The app refuses it with its own 413 (Flask's MAX_CONTENT_LENGTH, the same cap), in
            # the error format its clients expect; the connection closes after the answer because
            # the rest of the body was never read.
            environ["CONTENT_LENGTH"] = str(max(declared or 0, len(body)))
        elif declared is None:
            environ["CONTENT_LENGTH"] = str(len(body))
        await sync_spawn(self.run_app, environ, partial(call_soon, send))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def run_app(self, environ: dict, send) -> None:
        """Run the WSGI app on a worker thread and pass its answer to the loop.

        Unlike hypercorn's own, an answer with an empty body (304, HEAD, 204) is still started.
        """
        status_code: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        is_started = False

        def start_response(status: str, response_headers: list, exc_info=None) -> None:
            nonlocal status_code, headers
            if exc_info is not None and is_started:
                raise exc_info[1].with_traceback(exc_info[2])
            status_code = int(status.split(" ", 1)[0])
            headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                       for name, value in response_headers]

        def start() -> None:
            nonlocal is_started
            if status_code is None:
                raise RuntimeError("the WSGI app did not call start_response")
            send({"type": "http.response.start", "status": status_code, "headers": headers})
            is_started = True

        response_body = self.app(environ, start_response)
        try:
            for chunk in response_body:
                if not is_started:
                    start()
                if chunk:
                    send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not is_started:
                start()
        finally:
            if hasattr(response_body, "close"):
                response_body.close()


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 has already refused a malformed length
    return None


async def _refuse(send, status: int, headers: list | None = None) -> None:
    # Closing the connection: the rest of an unread body must not be taken for the next request.
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", b"0"), (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class Server:
    """One listening socket served by hypercorn; start in the foreground or in a thread, stop from anywhere."""

    def __init__(self, app, host: str, port: int, *, threads: int = DEFAULT_THREADS,
                 certfile: Path | None = None, keyfile: Path | None = None,
                 max_body_bytes: int | None = None, read_deadline: float = DEFAULT_READ_DEADLINE,
                 port_sharing: str | None = None) -> None:
        """Bind now (port 0 picks a free port, see `port`); nothing is served until `run`/`start`.

        ``port_sharing`` "open" binds a port nothing else holds with SO_REUSEPORT, so that the
        other processes of `serve --processes` can "join" it; the kernel then spreads new
        connections over them evenly (service/core/workers.py).
        """
        self.app = app
        self.threads = threads
        self.is_tls = certfile is not None
        limit = max_body_bytes or app.config.get("MAX_CONTENT_LENGTH") or 16 * 1024 * 1024
        self.config = _config(certfile, keyfile, limit, read_deadline)
        if self.is_tls:
            self.config.create_ssl_context()  # a missing or unreadable key fails here, before serving
        self.wrapper = BufferedWSGI(app, limit, read_deadline)
        if port_sharing == "open":
            port = _exclusive_port(host, port)
        self.sock = _listen_socket(host, port, is_port_shared=port_sharing is not None)
        self.host, self.port = self.sock.getsockname()[:2]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the base URL the server answers at."""
        return f"{'https' if self.is_tls else 'http'}://{self.host}:{self.port}"

    def run(self, on_signals: tuple[str, ...] = ()) -> None:
        """Serve until `stop()` (or one of the named signals, e.g. SIGTERM); then close gracefully."""
        asyncio.run(self._serve(on_signals))

    def start(self, timeout: float = 30.0) -> None:
        """Serve in a daemon thread; return once the socket is being served."""
        self._thread = threading.Thread(target=self.run, name="canhgac-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the HTTP server did not start")

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to stop (thread-safe, from a signal handler too) and wait for a started thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._loop is None:
            self.sock.close()  # never served

    async def _serve(self, on_signals: tuple[str, ...]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="canhgac-worker")
        # hypercorn runs WSGI apps with run_in_executor(None, …): the default executor is the worker pool.
        self._loop.set_default_executor(executor)
        previous = {}
        for name in on_signals:
            number = getattr(signal, name, None)
            if number is not None:
                # signal.signal works on Windows too (loop.add_signal_handler does not).
                previous[number] = signal.signal(number, lambda *_: self.stop())
        sockets = Sockets(secure_sockets=[self.sock] if self.is_tls else [],
                          insecure_sockets=[] if self.is_tls else [self.sock], quic_sockets=[])
        self._loop.call_soon(self._ready.set)
        try:
            await worker_serve(self.wrapper, self.config, sockets=sockets, shutdown_trigger=self._stop.wait)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            executor.shutdown(wait=True, cancel_futures=True)


def _config(certfile: Path | None, keyfile: Path | None, max_body_bytes: int, read_deadline: float) -> Config:
    config = Config()
    config.keep_alive_timeout = read_deadline  # also the deadline for a complete request head
    config.ssl_handshake_timeout = read_deadline
    config.wsgi_max_body_size = max_body_bytes
    config.h11_max_incomplete_size = 64 * 1024  # request line + headers
    config.backlog = BACKLOG
    config.graceful_timeout = 10.0
    config.loglevel = "WARNING"
    # HTTP/1.1 only, as tested: the agent and browsers speak it; HTTP/2 would be more surface, no gain.
    config.alpn_protocols = ["http/1.1"]
    config.accesslog = None  # the app logs every request itself (service/core/requestlog.py)
    config.include_server_header = False  # no software name and version for a scanner
    if certfile is not None:
        config.certfile = str(certfile)
        config.keyfile = str(keyfile)
    return config


def _exclusive_port(host: str, port: int) -> int:
    """Return the port after checking that nothing holds it: a shared bind would join a holder."""
    # A second `canhgac serve` started by mistake on the same port must fail as it always did
    # ("address in use"), not join the first one's processes and split its connections.
    probe = _listen_socket(host, port)
    port = probe.getsockname()[1]
    probe.close()
    return port


def _listen_socket(host: str, port: int, *, is_port_shared: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sys.platform != "win32":
        # On Windows SO_REUSEADDR would let a second server take the same port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if is_port_shared:
        # One socket per process, not one inherited socket: an inherited one is accepted from by
        # whichever event loop wakes first, and asyncio then accepts every waiting connection
        # at once, so one process took nearly all of 100 clients (measured, bench/README.md).
        # Linux lets only sockets of the same user join the group.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # A server started right after a killed one may find the port still held for a moment by
    # the killed one's secondary processes (service/core/workers.py), which the kernel is
    # taking down: wait that moment out; a port another program holds is refused after it.
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        try:
            sock.bind((host, port))
            break
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0 or time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.05)
    # Listening from here on: a client that connects before the loop runs waits in the backlog.
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock
