"""Run the endpoint agent: watcher, sender and heartbeat until asked to stop."""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from canhgac_agent import __version__
from canhgac_agent.client import ClientError, Sender, ServerClient
from canhgac_agent.config import AgentConfig
from canhgac_agent.fingerprints import FingerprintIndex, fingerprint_file
from canhgac_agent.spool import Spool
from canhgac_agent.watcher import Watcher

logger = logging.getLogger("canhgac.agent")


def make_client(config: AgentConfig) -> ServerClient:
    """Return a server client for this configuration (one per thread)."""
    return ServerClient(
        config.server_url,
        config.bearer_token(),
        pinned_sha256=config.pinned_sha256,
        allow_insecure_http=config.allow_insecure_http,
        timeout=config.request_timeout_seconds,
    )


def heartbeat_payload(config: AgentConfig, spool: Spool, access_mode: str = "off") -> dict:
    """Return the heartbeat body the server expects.

    *access_mode* says how opens of protected files are watched (``fanotify-perm``,
    ``fanotify``, ``inotify``, ``security-log`` or ``off``): the server sees when a PC only
    knows *that* a file was opened, not by whom.
    """
    return {
        "agent_id": config.agent_id,
        "host": config.host,
        "last_seq": spool.last_seq(),
        "spool_depth": spool.pending_count(),
        "version": __version__,
        "config_hash": config.watch_fingerprint(),
        "protected_roots": len(config.protected_roots),
        "access_mode": access_mode,
        "sent_at": datetime.now(UTC).isoformat(),
    }


def _heartbeat_loop(config: AgentConfig, spool: Spool, stop_event: threading.Event,
                    access_mode: Callable[[], str] = lambda: "off") -> None:
    client = make_client(config)
    was_failing = False
    try:
        while not stop_event.is_set():
            try:
                response = client.heartbeat(heartbeat_payload(config, spool, access_mode()))
                is_ok = response.status == 200
                problem = f"HTTP {response.status}"
            except ClientError as exc:
                is_ok, problem = False, str(exc)
            except Exception as exc:  # the heartbeat must never take the agent down
                is_ok, problem = False, repr(exc)
            if not is_ok and not was_failing:
                logger.warning("Không gửi được tín hiệu sống / heartbeat failed: %s", problem)
            was_failing = not is_ok
            stop_event.wait(config.heartbeat_seconds)
    finally:
        client.close()


def install_signal_handlers(stop_event: threading.Event) -> None:
    """Set *stop_event* on SIGINT/SIGTERM (and SIGBREAK on Windows); main thread only."""
    def _stop(signum: int, _frame: object) -> None:
        logger.info("Nhận tín hiệu %s, đang dừng / signal %s received, stopping", signum, signum)
        stop_event.set()

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop)


class Agent:
    """The running agent: spool, index, watcher, sender and heartbeat threads."""

    def __init__(self, config: AgentConfig, *, watcher_options: dict | None = None) -> None:
        if config.server_url.startswith("http:") and not config.is_loopback_server:
            logger.warning("CẢNH BÁO: gửi sự kiện không mã hoá qua mạng / WARNING: events sent "
                           "unencrypted over the network (allow_insecure_http)")
        config.bearer_token()  # fail now, not in a thread, when the token file is missing
        self.config = config
        self.stop_event = threading.Event()
        self.spool = Spool(config.spool_path, max_bytes=config.spool_max_mb * 1024 * 1024)
        self.index = FingerprintIndex(config.spool_path, hasher=functools.partial(
            fingerprint_file, max_bytes=config.scan.max_bytes, max_seconds=config.scan.max_seconds))
        self.watcher = Watcher(config, self.spool, self.index, **(watcher_options or {}))
        self.sender = Sender(
            self.spool,
            make_client(config),
            batch_size=config.batch_size,
            backoff_initial=config.backoff_initial_seconds,
            backoff_max=config.backoff_max_seconds,
        )
        self._threads = [
            threading.Thread(target=self.sender.run, args=(self.stop_event,),
                             name="canhgac-agent-sender", daemon=True),
            threading.Thread(target=_heartbeat_loop,
                             args=(config, self.spool, self.stop_event,
                                   lambda: self.watcher.access_mode),
                             name="canhgac-agent-heartbeat", daemon=True),
        ]
        self._is_closed = False

    def start(self) -> None:
        """Start watching and sending (the initial index scan runs in the background)."""
        self.watcher.start()
        for thread in self._threads:
            thread.start()
        logger.info("Canh Gác agent %s đang chạy / running (agent_id=%s, spool=%d pending)",
                    __version__, self.config.agent_id, self.spool.pending_count())

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the protected files are indexed."""
        return self.watcher.wait_ready(timeout)

    def is_idle(self) -> bool:
        """Tell whether every observed change has been examined and every event sent."""
        return self.watcher.is_idle() and self.spool.pending_count() == 0

    def stop(self) -> None:
        """Stop all threads and close the spool; events not yet sent stay in the spool."""
        if self._is_closed:
            return
        self._is_closed = True
        self.stop_event.set()
        self.watcher.stop()
        self.spool.wakeup.set()  # let the sender see the stop request
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=self.config.request_timeout_seconds + 1)
        rejected = self.spool.rejected_count()
        if rejected:
            logger.warning("%d sự kiện bị máy chủ từ chối vẫn giữ trong spool / %d rejected "
                           "events kept in the spool", rejected, rejected)
        self.index.close()
        self.spool.close()
        logger.info("Đã dừng / stopped")


def run_agent(
    config: AgentConfig,
    stop_event: threading.Event,
    *,
    ready_event: threading.Event | None = None,
    watcher_options: dict | None = None,
) -> None:
    """Run the agent until *stop_event* is set; set *ready_event* once the index is built."""
    agent = Agent(config, watcher_options=watcher_options)
    try:
        agent.start()
        while not stop_event.is_set():
            if agent.wait_ready(timeout=0.5):
                if ready_event is not None:
                    ready_event.set()
                break
        stop_event.wait()
    finally:
        agent.stop()
