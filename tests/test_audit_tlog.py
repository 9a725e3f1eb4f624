"""C2SP tlog-tiles under /tlog/: a client written from the spec recomputes the signed root."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json

import pytest

from service.audit.checkpoint import open_checkpoint
from tests.trail_support import grow, sign

# --- An independent tlog-tiles client (from C2SP tlog-tiles and RFC 6962 only) -------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over already-hashed nodes (a power-of-two count here)."""
    if len(hashes) == 1:
        return hashes[0]
    half = len(hashes) // 2
    return _sha(b"\x01" + _mth(hashes[:half]) + _mth(hashes[half:]))


def _tile_path(level, index: int, width: int) -> str:
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if not index:
            break
    groups.reverse()
    encoded = "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])
    return f"tile/{level}/{encoded}" + (f".p/{width}" if width < 256 else "")


class TileClient:
    """Reads a tiled log over HTTP and computes what it needs from tiles alone."""

    def __init__(self, get) -> None:
        self.get = get  # path -> bytes (raises on a non-200)
        self.fetched: list[str] = []

    def tile(self, level: int, index: int, size: int) -> list[bytes]:
        """Return the hashes of tile (level, index) as the tree of `size` has it."""
        full_tiles = size // 256 ** (level + 1)
        width = 256 if index < full_tiles else (size // 256**level) % 256
        assert width, "empty tiles are never fetched"
        path = _tile_path(level, index, width)
        self.fetched.append(path)
        data = self.get(path)
        assert len(data) == 32 * width, path
        return [data[i:i + 32] for i in range(0, len(data), 32)]

    def hashes_at(self, level: int, first: int, count: int, size: int) -> list[bytes]:
        """Return tile-level hashes first … first+count-1 (one tile level = 8 tree levels)."""
        out: list[bytes] = []
        while count:
            tile_index, offset = divmod(first, 256)
            row = self.tile(level, tile_index, size)
            take = min(count, 256 - offset)
            out.extend(row[offset:offset + take])
            first, count = first + take, count - take
        return out

    def root(self, size: int) -> bytes:
        """Recompute the tree head of `size` from the fewest (highest) tile hashes."""
        if size == 0:
            return _sha(b"")
        subtrees, offset = [], 0
        for k in range(size.bit_length() - 1, -1, -1):
            if size >> k & 1:
                level, rest = divmod(k, 8)
                unit = 256**level
                hashes = self.hashes_at(level, offset // unit, 2**rest, size)
                subtrees.append(_mth(hashes))
                offset += 2**k
        root = subtrees[-1]
        for left in reversed(subtrees[:-1]):
            root = _sha(b"\x01" + left + root)
        return root

    def entries(self, index: int, size: int) -> list[bytes]:
        """Return the entries of bundle `index` (width as for the hash tile of level 0)."""
        width = 256 if index < size // 256 else size % 256
        data = self.get(_tile_path("entries", index, width))
        out, at = [], 0
        while at < len(data):
            length = int.from_bytes(data[at:at + 2], "big")
            out.append(data[at + 2:at + 2 + length])
            at += 2 + length
        return out


# --- Fixtures ---------------------------------------------------------------------------------


def _grow(app, count: int) -> None:
    grow(app, count, "test.tile", lambda i: {"n": i, "pad": "x" * (i % 7)})


def _sign(app) -> str:
    return sign(app)[2]


def _token(app, scope: str) -> str:
    from service.auth.operations import create_token
    from service.core.db import new_session

    with app.app_context():
        s = new_session(app)
        _row, token = create_token(s, f"{scope}-reader", by="test", scope=scope)
        s.commit()
        s.close()
    return token


@pytest.fixture
def tokens(app):
    return {"monitor": _token(app, "monitor"), "ingest": _token(app, "ingest")}


def _getter(client, token):
    def get(path: str) -> bytes:
        answer = client.get(f"/tlog/{path}", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, (path, answer.status_code, answer.data[:200])
        return answer.data

    return get


def _verifier(app) -> str:
    return (app.config["SETTINGS"].keys_dir / "checkpoint.pub").read_text().strip()


# --- Tests ------------------------------------------------------------------------------------


def test_a_spec_client_recomputes_the_signed_root_at_two_sizes(app, client, tokens):
    origin = app.config["SETTINGS"].audit_origin
    for more in (700, 600):
        _grow(app, more)
        _sign(app)
        get = _getter(client, tokens["ingest"])
        note = get("checkpoint").decode()
        cp = open_checkpoint(note, origin, [_verifier(app)])
        reader = TileClient(get)
        assert reader.root(cp.size) == cp.root
        # Level-1 tiles are used: every size here has a 256-leaf subtree.
        assert any(p.startswith("tile/1/") for p in reader.fetched)
        # Entries hash to the level-0 tile hashes (RFC 6962 leaf hashes).
        monitor = TileClient(_getter(client, tokens["monitor"]))
        for index in range((cp.size + 255) // 256):
            leaves = monitor.tile(0, index, cp.size)
            bundle = monitor.entries(index, cp.size)
            assert [_sha(b"\x00" + e) for e in bundle] == leaves
            assert json.loads(bundle[0])["seq"] == index * 256


def test_tile_paths_follow_the_spec(app, client, tokens):
    _grow(app, 300)
    note = _sign(app)
    size = int(note.splitlines()[1])
    width = size % 256  # the tokens' own trail entries come first
    assert 256 < size < 512
    auth = {"Authorization": f"Bearer {tokens['monitor']}"}
    full = client.get("/tlog/tile/0/000", headers=auth)
    assert full.status_code == 200 and len(full.data) == 8192
    assert "immutable" in full.headers["Cache-Control"]
    assert full.headers["Content-Type"] == "application/octet-stream"
    partial = client.get(f"/tlog/tile/0/001.p/{width}", headers=auth)
    assert partial.status_code == 200 and len(partial.data) == width * 32
    assert client.get("/tlog/tile/0/001.p/1", headers=auth).status_code == 200
    assert "immutable" not in partial.headers["Cache-Control"]
    assert client.get("/tlog/tile/1/000.p/1", headers=auth).status_code == 200
    # Beyond the signed tree, malformed widths and indexes: 404.
    for bad in ("0/001", f"0/001.p/{width + 1}", "0/1", "0/x000/001", "00/000", "0/000.p/256",
                "0/000.p/0", "0/000.p/01", "64/000", "2/000.p/1", "entries/abc"):
        assert client.get(f"/tlog/tile/{bad}", headers=auth).status_code == 404, bad
    checkpoint = client.get("/tlog/checkpoint", headers=auth)
    assert checkpoint.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "max-age=5" in checkpoint.headers["Cache-Control"]


def test_index_encoding():
    from service.audit.tiles import decode_index, encode_index

    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000" and encode_index(999) == "999" and encode_index(1000) == "x001/000"
    for n in (0, 7, 999, 1000, 1234067, 2**40):
        assert decode_index(encode_index(n)) == n


def test_who_may_read_what(app, client, tokens, make_user, login):
    from service.audit.models import AuditEntry
    from service.core.db import new_session

    _grow(app, 10)
    _sign(app)
    ingest = {"Authorization": f"Bearer {tokens['ingest']}"}
    monitor = {"Authorization": f"Bearer {tokens['monitor']}"}
    assert client.get("/tlog/checkpoint").status_code == 401
    assert client.get("/tlog/checkpoint", headers={"Authorization": "Bearer cg_nope"}).status_code == 401
    assert client.get("/tlog/checkpoint", headers=ingest).status_code == 200
    assert client.get("/tlog/tile/0/000.p/10", headers=ingest).status_code == 200
    assert client.get("/tlog/tile/entries/000.p/10", headers=ingest).status_code == 403
    assert client.get("/tlog/tile/entries/000.p/10").status_code == 401
    # A monitor token cannot ingest events or send heartbeats.
    event = client.post("/api/v1/events", json=[], headers=monitor)
    assert event.status_code == 401
    assert client.post("/api/v1/agents/heartbeat", json={}, headers=monitor).status_code == 401

    s = new_session(app)
    before = s.query(AuditEntry).filter_by(kind="audit.viewed").count()
    s.close()
    answer = client.get("/tlog/tile/entries/000.p/10", headers={**monitor, "Accept-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(answer.data)[2:3] == b"{"
    make_user("cong-an", "police")
    login("cong-an")
    assert client.get("/tlog/tile/entries/000.p/10").status_code == 200
    s = new_session(app)
    reads = s.query(AuditEntry).filter_by(kind="audit.viewed").order_by(AuditEntry.seq).all()
    s.close()
    bodies = [json.loads(r.body)["body"] for r in reads[before:]]
    assert [(b["actor"], b["what"], b["first_seq"], b["count"]) for b in bodies] == [
        ("token:monitor-reader", "tlog_entries", 0, 10), ("cong-an", "tlog_entries", 0, 10)]


def test_checkpoint_carries_cosignatures(app, client, tokens):
    _grow(app, 3)
    note = _sign(app)
    got = client.get("/tlog/checkpoint", headers={"Authorization": f"Bearer {tokens['monitor']}"})
    assert got.data.decode() == note
    assert base64.b64decode(note.splitlines()[2])


def test_a_monitor_token_from_the_cli_reads_entries_and_cannot_ingest(app, client, runner):
    created = runner.invoke(["token", "create", "--source", "tinh-lang-son", "--scope", "monitor"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    _grow(app, 5)
    note = _sign(app)
    size = int(note.splitlines()[1])
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/tlog/tile/entries/000.p/{size}", headers=auth).status_code == 200
    assert client.post("/api/v1/events", json=[], headers=auth).status_code == 401
