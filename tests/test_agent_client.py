"""Pinned HTTPS client and the sender, against real local HTTP(S) servers."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime

import pytest

from canhgac_agent.client import (
    PinMismatchError,
    RetryLater,
    Sender,
    ServerClient,
    TransportError,
    fetch_server_fingerprint,
)
from canhgac_agent.spool import Spool
from canhgac_common.events import Action, Event, EventObject

try:
    from test_agent_support import TOKEN, RecordingServer, make_certificate, wait_until
except ImportError:  # tests/ turned into a package
    from tests.test_agent_support import TOKEN, RecordingServer, make_certificate, wait_until


def make_event(purpose: str | None = None) -> Event:
    return Event(id=uuid.uuid4(), occurred_at=datetime.now(UTC), host="pc-01", actor="lan",
                 action=Action.COPY, object=EventObject(path="/data/a.xlsx"), purpose=purpose,
                 pii={"cccd": 2})


@pytest.fixture
def tls_server(tmp_path):
    cert, key, fingerprint = make_certificate(tmp_path)
    server = RecordingServer(certfile=cert, keyfile=key).start()
    server.fingerprint = fingerprint
    yield server
    server.stop()


@pytest.fixture
def http_server():
    server = RecordingServer().start()
    yield server
    server.stop()


def http_client(server: RecordingServer, token: str = TOKEN) -> ServerClient:
    return ServerClient(server.url, token, allow_insecure_http=True, timeout=5)


# --- transport ---


def test_pinned_https_delivers_with_the_bearer_token(tls_server):
    client = ServerClient(tls_server.url, TOKEN, pinned_sha256=tls_server.fingerprint, timeout=5)
    event = make_event()
    response = client.send_events([event.model_dump_json(exclude_none=True)])
    assert response.status == 200 and response.body == {"stored": 1, "duplicates": 0}
    assert list(tls_server.events) == [str(event.id)]
    # The kept-alive connection carries the next request too.
    assert client.heartbeat({"agent_id": "a"}).status == 200
    assert tls_server.heartbeats == [{"agent_id": "a"}]
    client.close()


def test_wrong_pin_is_refused_before_any_request_byte(tls_server):
    client = ServerClient(tls_server.url, TOKEN, pinned_sha256="00" * 32, timeout=5)
    with pytest.raises(PinMismatchError) as info, client:
        client.send_events([make_event().model_dump_json(exclude_none=True)])
    assert info.value.presented == tls_server.fingerprint
    assert "does not match" in str(info.value)
    # The TLS handshake happened, but the server never received a request line.
    assert tls_server.request_lines == [] and tls_server.batches == []


def test_fetch_server_fingerprint_reads_the_presented_certificate(tls_server):
    assert fetch_server_fingerprint(tls_server.url, timeout=5) == tls_server.fingerprint


def test_plain_http_needs_explicit_permission():
    with pytest.raises(ValueError, match="allow_insecure_http"):
        ServerClient("http://127.0.0.1:1", TOKEN)
    with pytest.raises(ValueError, match="pinned_sha256"):
        ServerClient("https://127.0.0.1:1", TOKEN)


def test_unreachable_server_is_a_transport_error(http_server):
    client = http_client(http_server)
    http_server.stop()
    with pytest.raises(TransportError), client:
        client.send_events([make_event().model_dump_json()])


def test_server_restart_between_requests_is_survived(http_server):
    client = http_client(http_server)
    assert client.heartbeat({"n": 1}).status == 200
    http_server.stop()  # drops the kept-alive connection
    http_server.start()
    assert client.heartbeat({"n": 2}).status == 200
    client.close()


# --- sender ---


def test_sender_delivers_everything_and_empties_the_spool(tmp_path, tls_server):
    spool = Spool(tmp_path / "spool.sqlite3")
    events = spool.append([make_event() for _ in range(7)])
    client = ServerClient(tls_server.url, TOKEN, pinned_sha256=tls_server.fingerprint, timeout=5)
    with client:
        Sender(spool, client, batch_size=3).send_pending()
    assert spool.pending_count() == 0
    assert [len(b) for b in tls_server.batches] == [3, 3, 1]
    assert [e["seq"] for e in tls_server.all_events()] == [e.seq for e in events]
    spool.close()


def test_one_invalid_event_is_rejected_and_the_rest_delivered(tmp_path, caplog):
    def responder(path, batch):
        for index, event in enumerate(batch):
            if event.get("purpose") == "bad-secret-purpose":
                return 400, {"error": "invalid value", "index": index, "field": "purpose"}
        return 200, {}

    server = RecordingServer(responder=responder).start()
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event(), make_event("bad-secret-purpose"), make_event(), make_event()])
    sender = Sender(spool, http_client(server), batch_size=10)
    with caplog.at_level(logging.WARNING, logger="canhgac.agent"), sender.client:
        sender.send_pending()
    server.stop()
    assert sorted(e["seq"] for e in server.all_events()) == [1, 3, 4]
    assert spool.pending_count() == 0
    assert [(r.seq, r.reason) for r in spool.rejected()] == [
        (2, "400 invalid value (field purpose)")]
    assert sender.stats.rejected == 1
    assert "bad-secret-purpose" not in caplog.text and "seq=2" in caplog.text
    spool.close()


def test_400_without_index_is_bisected_to_the_bad_event(tmp_path):
    def responder(path, batch):
        if any(e.get("purpose") == "bad" for e in batch):
            return 400, {"error": "invalid batch"}
        return 200, {}

    server = RecordingServer(responder=responder).start()
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event("bad" if i == 5 else None) for i in range(8)])
    with http_client(server) as client:
        Sender(spool, client, batch_size=8).send_pending()
    server.stop()
    assert sorted(e["seq"] for e in server.all_events()) == [1, 2, 3, 4, 5, 7, 8]
    assert [r.seq for r in spool.rejected()] == [6]


def test_413_splits_batches_until_they_fit(tmp_path):
    def responder(path, batch):
        return (413, {"error": "too large"}) if len(batch) > 3 else (200, {})

    server = RecordingServer(responder=responder).start()
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event() for _ in range(10)])
    with http_client(server) as client:
        Sender(spool, client, batch_size=10).send_pending()
    server.stop()
    assert len(server.all_events()) == 10 and spool.pending_count() == 0
    assert spool.rejected_count() == 0


def test_single_event_too_large_is_rejected_not_retried_forever(tmp_path):
    server = RecordingServer(responder=lambda path, batch: (413, {"error": "too large"})).start()
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event()])
    with http_client(server) as client:
        Sender(spool, client, batch_size=1).send_pending()
    server.stop()
    assert spool.rejected_count() == 1 and spool.pending_count() == 0


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_keeps_everything(tmp_path, http_server, status):
    http_server.responder = lambda path, batch: (status, {"error": "no"})
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event() for _ in range(3)])
    sender = Sender(spool, http_client(http_server))
    with pytest.raises(RetryLater) as info, sender.client:
        sender.send_pending()
    assert info.value.is_auth and "token" in str(info.value)
    assert spool.pending_count() == 3 and spool.rejected_count() == 0


def test_server_errors_keep_everything_and_respect_retry_after(tmp_path, http_server):
    http_server.responder = lambda path, batch: (503, {"error": "busy"})
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event()])
    sender = Sender(spool, http_client(http_server))
    with pytest.raises(RetryLater), sender.client:
        sender.send_pending()
    assert spool.pending_count() == 1


def test_backoff_is_exponential_capped_and_jittered(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3")
    client = ServerClient("http://127.0.0.1:1", TOKEN, allow_insecure_http=True)
    highest = Sender(spool, client, backoff_initial=1, backoff_max=300, rng=lambda a, b: b)
    lowest = Sender(spool, client, backoff_initial=1, backoff_max=300, rng=lambda a, b: a)
    ceilings, floors = [], []
    for failures in range(1, 13):
        highest._consecutive_failures = lowest._consecutive_failures = failures
        ceilings.append(highest.next_delay())
        floors.append(lowest.next_delay())
    assert ceilings[:5] == [1, 2, 4, 8, 16]
    assert max(ceilings) == 300 and ceilings[-1] == 300
    assert floors == [c / 2 for c in ceilings]  # never zero: no hammering
    real = Sender(spool, client, backoff_initial=1, backoff_max=300)
    real._consecutive_failures = 4
    assert all(4 <= real.next_delay() <= 8 for _ in range(50))
    assert real.next_delay(retry_after=120) == 120
    spool.close()


def test_sender_thread_waits_out_an_outage_and_delivers_once(tmp_path):
    server = RecordingServer()  # not started: the server is down
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.append([make_event() for _ in range(5)])
    client = ServerClient(server.url, TOKEN, allow_insecure_http=True, timeout=2)
    sender = Sender(spool, client, batch_size=2, backoff_initial=0.05, backoff_max=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: sender.stats.failures >= 2)
    assert spool.pending_count() == 5
    server.start()
    wait_until(lambda: spool.pending_count() == 0)
    spool.append([make_event()])  # new events wake the idle sender at once
    wait_until(lambda: len(server.all_events()) == 6)
    stop.set()
    spool.wakeup.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    server.stop()
    assert len(server.deliveries) == 6  # each event delivered exactly once
    spool.close()
