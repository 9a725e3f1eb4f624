"""Run the endpoint agent: watcher, sender and heartbeat until asked to stop."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime

from service.agent import __version__
from service.agent.client import ClientError, Sender, ServerClient
from service.agent.config import AgentConfig
from service.agent.fingerprints import FingerprintIndex
from service.agent.spool import Spool
from service.agent.watcher import Watcher

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


def heartbeat_payload(config: AgentConfig, spool: Spool) -> dict:
    """Return the heartbeat body the server expects."""
    return {
        "agent_id": config.agent_id,
        "host": config.host,
        "last_seq": spool.last_seq(),
        "spool_depth": spool.pending_count(),
        "version": __version__,
        "sent_at": datetime.now(UTC).isoformat(),
    }


def _heartbeat_loop(config: AgentConfig, spool: Spool, stop_event: threading.Event) -> None:
    client = make_client(config)
    was_failing = False
    try:
        while not stop_event.is_set():
            try:
                response = client.heartbeat(heartbeat_payload(config, spool))
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


def run_agent(
    config: AgentConfig,
    stop_event: threading.Event,
    *,
    ready_event: threading.Event | None = None,
    watcher_options: dict | None = None,
) -> None:
    """Run the agent until *stop_event* is set; set *ready_event* once the index is built."""
    if config.server_url.startswith("http:") and not config.is_loopback_server:
        logger.warning("CẢNH BÁO: gửi sự kiện không mã hoá qua mạng / WARNING: events sent "
                       "unencrypted over the network (allow_insecure_http)")
    config.bearer_token()  # fail now, not in a thread, when the token file is missing
    spool = Spool(config.spool_path, max_bytes=config.spool_max_mb * 1024 * 1024)
    index = FingerprintIndex(config.spool_path)
    watcher = Watcher(config, spool, index, **(watcher_options or {}))
    sender = Sender(
        spool,
        make_client(config),
        batch_size=config.batch_size,
        backoff_initial=config.backoff_initial_seconds,
        backoff_max=config.backoff_max_seconds,
    )
    threads = [
        threading.Thread(target=sender.run, args=(stop_event,), name="canhgac-agent-sender",
                         daemon=True),
        threading.Thread(target=_heartbeat_loop, args=(config, spool, stop_event),
                         name="canhgac-agent-heartbeat", daemon=True),
    ]
    try:
        watcher.start()
        for thread in threads:
            thread.start()
        logger.info("Canh Gác agent %s đang chạy / running (agent_id=%s, spool=%d pending)",
                    __version__, config.agent_id, spool.pending_count())
        while not stop_event.is_set():
            if watcher.wait_ready(timeout=0.5):
                break
        if ready_event is not None and watcher.ready.is_set():
            ready_event.set()
        stop_event.wait()
    finally:
        watcher.stop()
        spool.wakeup.set()  # let the sender see the stop request
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=config.request_timeout_seconds + 1)
        rejected = spool.rejected_count()
        if rejected:
            logger.warning("%d sự kiện bị máy chủ từ chối vẫn giữ trong spool / %d rejected "
                           "events kept in the spool", rejected, rejected)
        index.close()
        spool.close()
        logger.info("Đã dừng / stopped")
