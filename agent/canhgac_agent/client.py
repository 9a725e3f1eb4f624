"""HTTPS client with certificate pinning, and the sender that drains the spool to the server.

A commune has no certificate authority: the server uses a self-signed certificate and the
agent pins the SHA-256 of its DER encoding. The TLS handshake runs without CA checks, then
the peer certificate is compared with the pin *before a single byte of the HTTP request
is written*; on mismatch the socket is closed and nothing (no token, no event) leaves.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import random
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from canhgac_agent.spool import Spool, SpooledEvent

logger = logging.getLogger("canhgac.agent")

EVENTS_PATH = "/api/v1/events"
HEARTBEAT_PATH = "/api/v1/agents/heartbeat"


class ClientError(Exception):
    """Talking to the server failed."""


class PinMismatchError(ClientError):
    """The server presented a certificate other than the pinned one; nothing was sent."""

    def __init__(self, expected: str, presented: str) -> None:
        super().__init__(
            "Chứng chỉ máy chủ không khớp dấu vân tay đã ghim — không gửi gì / "
            f"server certificate does not match the pinned fingerprint, nothing sent "
            f"(pinned {expected}, presented {presented})"
        )
        self.expected = expected
        self.presented = presented


class TransportError(ClientError):
    """Network, TLS or timeout failure before a complete answer arrived."""


@dataclass
class Response:
    """Status and parsed JSON body of one server answer."""

    status: int
    body: dict | list | None
    retry_after: float | None = None


def certificate_fingerprint(der: bytes) -> str:
    """Return the SHA-256 of a DER certificate as 64 lower-case hex digits."""
    return hashlib.sha256(der).hexdigest()


def _tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Trust comes from the pin, not from a CA or the host name; both checks are off on purpose.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection that refuses any server certificate but the pinned one."""

    def __init__(self, host: str, port: int | None, *, pinned_sha256: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self.pinned_sha256 = pinned_sha256

    def connect(self) -> None:
        """Connect, complete the TLS handshake and check the pin before any request byte."""
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        presented = certificate_fingerprint(der)
        if not hmac.compare_digest(presented, self.pinned_sha256):
            self.sock.close()
            self.sock = None
            raise PinMismatchError(self.pinned_sha256, presented)


def fetch_server_fingerprint(server_url: str, timeout: float = 10.0) -> str:
    """Return the SHA-256 fingerprint of the certificate a server presents (for first setup)."""
    parts = urlsplit(server_url)
    port = parts.port or 443
    with (
        socket.create_connection((parts.hostname, port), timeout=timeout) as raw,
        _tls_context().wrap_socket(raw) as tls,
    ):
        return certificate_fingerprint(tls.getpeercert(binary_form=True) or b"")


class ServerClient:
    """One keep-alive connection to the Canh Gác server; not shared between threads."""

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        pinned_sha256: str | None = None,
        allow_insecure_http: bool = False,
        timeout: float = 15.0,
    ) -> None:
        parts = urlsplit(server_url)
        if parts.scheme == "https":
            if not pinned_sha256:
                raise ValueError("https needs pinned_sha256")
        elif parts.scheme == "http":
            if not allow_insecure_http:
                raise ValueError("plain http needs allow_insecure_http")
        else:
            raise ValueError(f"unsupported scheme {parts.scheme!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base_path = parts.path.rstrip("/")
        self._token = token
        self._pin = pinned_sha256
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._scheme == "https":
                assert self._pin is not None
                self._conn = PinnedHTTPSConnection(
                    self._host, self._port, pinned_sha256=self._pin, timeout=self._timeout
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        """Close the connection (a new one is opened on the next request)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def post_json(self, path: str, payload: bytes) -> Response:
        """POST a JSON payload and return the answer; raise TransportError or PinMismatchError."""
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
        }
        # A kept-alive connection may have been closed by the server meanwhile: one fresh retry.
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request("POST", self._base_path + path, body=payload, headers=headers)
                answer = conn.getresponse()
                raw = answer.read()
            except PinMismatchError:
                self.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and attempt == 1 and isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                ):
                    continue
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            if answer.will_close:
                self.close()
            return Response(answer.status, _parse_json(raw), _retry_after(answer))
        raise TransportError("unreachable")  # pragma: no cover - the loop always returns/raises

    def send_events(self, bodies: Sequence[str]) -> Response:
        """Send pre-serialised event JSON objects as one batch."""
        payload = ("[" + ",".join(bodies) + "]").encode("utf-8")
        return self.post_json(EVENTS_PATH, payload)

    def heartbeat(self, payload: dict) -> Response:
        """Send the agent's heartbeat."""
        return self.post_json(HEARTBEAT_PATH, json.dumps(payload).encode("utf-8"))


def _parse_json(raw: bytes) -> dict | list | None:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _retry_after(answer: http.client.HTTPResponse) -> float | None:
    value = answer.getheader("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


class RetryLater(Exception):
    """The batch could not be delivered now; keep everything and back off."""

    def __init__(self, reason: str, *, retry_after: float | None = None,
                 is_auth: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.is_auth = is_auth


@dataclass
class SenderStats:
    """Counters for logs, heartbeats and tests."""

    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0
    last_error: str | None = None
    batches: list[int] = field(default_factory=list)


class Sender:
    """Drain the spool to the server in batches, with retry, splitting and backoff."""

    def __init__(
        self,
        spool: Spool,
        client: ServerClient,
        *,
        batch_size: int = 500,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self._effective_batch = batch_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng
        self._consecutive_failures = 0
        self._was_failing = False
        self.stats = SenderStats()

    def next_delay(self, retry_after: float | None = None) -> float:
        """Return the wait before the next attempt: exponential, capped, with jitter."""
        exponent = min(self._consecutive_failures - 1, 30)
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** max(exponent, 0)))
        # "Equal jitter": never zero (no hammering), never in lock-step with other agents.
        delay = self._rng(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def send_pending(self) -> None:
        """Send until the spool is empty; raise RetryLater when the server cannot take more."""
        while True:
            batch = self.spool.pending(self._effective_batch)
            if not batch:
                return
            self._send_batch(batch)

    def _send_batch(self, batch: list[SpooledEvent]) -> None:
        try:
            response = self.client.send_events([item.body for item in batch])
        except PinMismatchError as exc:
            raise RetryLater(str(exc)) from exc
        except TransportError as exc:
            raise RetryLater(f"máy chủ không trả lời / server unreachable: {exc}") from exc
        status = response.status
        if status == 200:
            self.spool.delete([item.seq for item in batch])
            body = response.body if isinstance(response.body, dict) else {}
            self.stats.delivered += int(body.get("stored", len(batch)) or 0)
            self.stats.duplicates += int(body.get("duplicates", 0) or 0)
            self.stats.batches.append(len(batch))
            self._effective_batch = min(self.batch_size, self._effective_batch * 2)
            return
        if status in (400, 409):  # 409: an event reuses an id the server holds with other content
            self._handle_bad_request(batch, response, status)
            return
        if status == 413:
            if len(batch) == 1:
                self._reject(batch[0], "413 event too large for the server")
            else:
                self._effective_batch = max(1, len(batch) // 2)
            return
        if status in (401, 403):
            raise RetryLater(
                f"máy chủ từ chối mã truy cập (HTTP {status}) — kiểm tra token / "
                f"server refused the agent token (HTTP {status}): check token or token_file",
                is_auth=True,
            )
        raise RetryLater(f"HTTP {status} from server", retry_after=response.retry_after)

    def _handle_bad_request(self, batch: list[SpooledEvent], response: Response,
                            status: int = 400) -> None:
        body = response.body if isinstance(response.body, dict) else {}
        index = body.get("index")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(batch):
            reason = f"{status} {body.get('error', '')}".strip()
            if body.get("field"):
                reason += f" (field {body['field']})"
            self._reject(batch[index], reason)
            return  # the rest is fetched again and resent by send_pending
        if len(batch) == 1:
            self._reject(batch[0], f"{status} {body.get('error', 'bad request')}")
        else:
            # No index: bisect to find the event the server refuses.
            self._effective_batch = max(1, len(batch) // 2)

    def _reject(self, item: SpooledEvent, reason: str) -> None:
        # Logged without content: sequence number, id and the server's reason only.
        reason = reason[:300]
        self.spool.reject(item.seq, reason)
        self.stats.rejected += 1
        logger.warning(
            "Máy chủ từ chối sự kiện seq=%s id=%s, giữ lại trong spool / "
            "server rejected event seq=%s id=%s, kept in spool: %s",
            item.seq, item.id, item.seq, item.id, reason,
        )

    def run(self, stop_event: threading.Event) -> None:
        """Send whenever the spool has events, until *stop_event* is set."""
        while True:
            # Clear before checking stop: the runner sets stop first, then wakeup, so one of
            # the two is always seen and the idle wait below never outlives a stop request.
            self.spool.wakeup.clear()
            if stop_event.is_set():
                break
            try:
                self.send_pending()
            except RetryLater as exc:
                self._consecutive_failures += 1
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                delay = self.next_delay(exc.retry_after)
                level = logging.ERROR if exc.is_auth else logging.WARNING
                if not self._was_failing or exc.is_auth:
                    logger.log(level, "Gửi sự kiện thất bại, thử lại sau %.1fs / "
                               "sending failed, retrying in %.1fs: %s", delay, delay, exc)
                self._was_failing = True
                stop_event.wait(delay)
                continue
            except Exception:
                # A bug or a spool error must not kill the sender thread: back off and retry.
                self._consecutive_failures += 1
                logger.exception("Lỗi khi gửi sự kiện / unexpected error while sending")
                stop_event.wait(self.next_delay())
                continue
            if self._was_failing:
                logger.info("Đã gửi lại được / delivery resumed (spool empty)")
            self._was_failing = False
            self._consecutive_failures = 0
            # Idle: sleep until an event is spooled (or stop); the timeout is a safety net.
            self.spool.wakeup.wait(timeout=60)
        self.client.close()
