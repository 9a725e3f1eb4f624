"""Append-only audit log on SQL: one leaf per entry, complete-subtree hashes, O(log n) proofs.

Appends run inside the caller's transaction: the entries and the change they record commit
together, once, or not at all. The single ``audit_head`` row is locked first (``SELECT … FOR
UPDATE`` on PostgreSQL; SQLite transactions already start with ``BEGIN IMMEDIATE``, see
service/core/db.py), so concurrent writers — threads, processes, service instances — append one
after another with no gap and no duplicate.

Storage (docs/audit-log.md, "Storage"): ``audit_entry`` holds the leaves (the entry bytes and
their leaf hash, which is also complete node ``(0, seq)``); ``merkle_node`` holds the complete
nodes of level ≥ 8 (``MIN_STORED_LEVEL``). A node of level 1–7 is computed when it is read,
from the ≤ 128 leaf hashes under it (one range read of ``audit_entry``). Rows are written with
the driver's ``executemany`` (COPY on PostgreSQL) and no ORM objects: the trail's append is on
the ingest hot path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256 as _sha256
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.audit import merkle
from service.audit.canonical import canonical_json
from service.audit.models import AuditEntry
from service.core.db import utcnow

__all__ = [
    "KIND_PATTERN",
    "MIN_STORED_LEVEL",
    "SEARCH_FIELDS",
    "AppendedEntry",
    "PendingEntry",
    "append_entries",
    "consistency_proof",
    "entry_bytes",
    "entry_range",
    "event_key",
    "fetch_nodes",
    "inclusion_proof",
    "inclusion_proofs",
    "lock_head",
    "node_getter",
    "node_range",
    "record",
    "recorded_at_text",
    "root_at",
    "tree_size",
]

SEARCH_FIELDS = (
    "actor", "host", "action", "path", "data_class", "incident_id", "occurred_at", "event_id",
)
# Kinds are short dotted names ("event", "user.created"); the column is String(48).
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_MAX_KIND = 48
# Bound parameters per statement stay under SQLite's historical limit of 999.
_MAX_PARAMS = 900
# Complete nodes below this level are not stored: storing every node cost one row per leaf, as
# many inserts as the entries themselves; from level 8 up it is one row per 128 leaves. A
# level 1–7 node is rebuilt from at most 128 leaf hashes, one range read (bench/README.md,
# issue 18). 8 is the tlog-tiles tile height, so every hash tile above level 0 is a range of
# stored nodes (service/audit/tiles.py).
MIN_STORED_LEVEL = 8
# Leaf ranges this close together are read as one (a few more rows beat one more SELECT).
_SPAN_GAP = 16


@dataclass(frozen=True)
class PendingEntry:
    """An entry to append: its kind, its body and the copied search columns."""

    kind: str
    body: dict
    search: dict = field(default_factory=dict)
    # The body's canonical bytes when the caller already has them (canonical_json_plain of
    # a validated event); None: canonicalized here. Verify re-checks the canonical form.
    body_json: bytes | None = None


class AppendedEntry(NamedTuple):
    """A row just appended (not an ORM object: load AuditEntry by seq if you need one)."""

    seq: int
    recorded_at: datetime
    kind: str
    body: str
    leaf_hash: bytes
    actor: str | None
    host: str | None
    action: str | None
    path: str | None
    data_class: str | None
    incident_id: int | None
    occurred_at: datetime | None
    event_id: str | None


def recorded_at_text(recorded_at: datetime) -> str:
    """Return the ``recorded_at`` of an entry body: UTC, microseconds, ``Z`` (fixed width)."""
    return recorded_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_bytes(seq: int, recorded_at: str, kind: str, body: dict) -> bytes:
    """Return the leaf data of an entry: canonical JSON of {seq, recorded_at, kind, body}."""
    return canonical_json({"seq": seq, "recorded_at": recorded_at, "kind": kind, "body": body})


# The four members in RFC 8785 order: body, kind, recorded_at, seq.
_ENTRY_HEAD = b'{"body":'
# RFC 8785 integers stop at 2**53 - 1; beyond, canonical_json refuses (never reached in practice).
_MAX_SEQ = 2**53 - 1
_STAMP_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def _entry_bytes_maker(stamp: str) -> Callable[..., bytes]:
    """Return a builder of entry bytes for one batch: canonicalize only the body.

    Gives exactly ``entry_bytes`` (tested): the wrapper's member names are fixed, the kind is
    checked against KIND_PATTERN and the stamp is ``recorded_at_text``'s, so neither needs
    escaping; only the body varies. Saves sorting and emitting the wrapper per entry.
    """
    if not _STAMP_PATTERN.fullmatch(stamp):  # not recorded_at_text's: let JCS escape it
        return lambda seq, kind, body, body_json=None: entry_bytes(seq, stamp, kind, body)
    stamp_part = f',"recorded_at":"{stamp}","seq":'.encode("ascii")
    kinds: dict[str, bytes] = {}

    def make(seq: int, kind: str, body: Any, body_json: bytes | None = None) -> bytes:
        if type(seq) is not int or not 0 <= seq <= _MAX_SEQ:  # what canonical_json refuses
            return entry_bytes(seq, stamp, kind, body)
        kind_part = kinds.get(kind)
        if kind_part is None:
            _check_kind(kind)
            kind_part = kinds[kind] = f',"kind":"{kind}"'.encode("ascii")
        body_part = body_json if body_json is not None else canonical_json(body)
        return b"".join((_ENTRY_HEAD, body_part, kind_part, stamp_part, str(seq).encode("ascii"), b"}"))

    return make


def _check_kind(kind: object) -> None:
    """Refuse kinds that are not short dotted lowercase names."""
    if not isinstance(kind, str) or len(kind) > _MAX_KIND or not KIND_PATTERN.fullmatch(kind):
        raise ValueError(f"audit entry kind must match {KIND_PATTERN.pattern} "
                         f"(at most {_MAX_KIND} chars), got {kind!r}")


_SEARCH_SET = frozenset(SEARCH_FIELDS)


def _check_search(search: dict) -> None:
    """Refuse search keys the table has no column for (a typo would silently drop a filter)."""
    if not search.keys() <= _SEARCH_SET:
        raise TypeError(f"unknown search fields: {sorted(set(search) - _SEARCH_SET)}")


# --- SQL helpers: the driver's own executemany, one statement text per dialect -------------
# Statement texts are built only from constants, quoted identifiers and driver placeholders
# (hence the S608 noqa marks); every value travels as a bound parameter.


def _placeholder(conn: Connection) -> str:
    """Return the DB-API placeholder of the connection's driver."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _q(conn: Connection, name: str) -> str:
    """Quote an identifier for this dialect ("index" is a reserved word)."""
    return conn.dialect.identifier_preparer.quote(name)


def _bind_processor(conn: Connection, column: str) -> Callable[[Any], Any]:
    """Return how the ORM would convert a Python value of a column for this dialect."""
    column_type = AuditEntry.__table__.c[column].type
    # dialect_impl: the dialect's own type (SQLite's DATETIME formats fractions as the ORM
    # compares them), not the generic one that leaves formatting to the driver.
    processor = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor or (lambda value: value)


def _sqlite_time_text(value: datetime) -> str:
    """Return what the ORM stores in SQLite for an aware datetime (tested against it).

    UTCDateTime converts to naive UTC and SQLite's DATETIME writes
    ``YYYY-MM-DD HH:MM:SS.ffffff``; ``isoformat`` does the same in C, twice as fast as the
    two-step processor chain (which took 8% of an append of event entries).
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime refused; use aware UTC datetimes")
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]  # without "+00:00"


def _time_binder(conn: Connection, column: str) -> Callable[[Any], Any]:
    """Return a converter of a datetime column's values for this connection's driver."""
    if conn.dialect.name == "sqlite":
        return _sqlite_time_text
    return _bind_processor(conn, column)


# Ingest asks for each new event's key twice, to look it up and to store it: a batch's worth
# of keys is kept (about 2 MB with the ids it holds; a batch over 8,192 events misses it).
@functools.lru_cache(maxsize=8192)
def event_key(event_id: str) -> int:
    """Return the dedupe key of an event id: the first 64 bits of its SHA-256, signed.

    Events are deduplicated on this compact key (``audit_entry.event_key``, a plain index)
    and then on the whole id, instead of a unique index on the 36-character text: random
    UUIDs in a text index halved the insert rate of the trail. Hashed, not cut from the id:
    ids that share their first half (a sender's fixed prefix and a counter) must not share
    a key, or every lookup would read all of them.
    """
    return int.from_bytes(_sha256(event_id.encode("utf-8")).digest()[:8], "big", signed=True)


def lock_head(session: Session) -> int:
    """Lock the trail's head for this transaction (appends wait for it) and return the size.

    Ingest takes it before looking for already stored event ids, so two requests carrying
    the same new id cannot both find it absent (dedupe has no unique index to fall back on).
    """
    return _lock_head(session.connection())


def _lock_head(conn: Connection) -> int:
    """Lock the head row (creating it once) and return the tree size."""
    return _lock_head_with_border(conn)[0]


def _lock_head_with_border(conn: Connection) -> tuple[int, bytes | None]:
    """Lock the head row (creating it once); return the tree size and its stored border."""
    p = _placeholder(conn)
    is_pg = conn.dialect.name == "postgresql"
    select_sql = "SELECT size, border FROM audit_head WHERE id = 1" + (" FOR UPDATE" if is_pg else "")  # noqa: S608
    row = conn.exec_driver_sql(select_sql).first()
    if row is None:
        # First append ever: two writers may race to create the row; exactly one insert wins
        # and the other waits on its row lock, then reads the committed size.
        conflict = " ON CONFLICT (id) DO NOTHING"
        conn.exec_driver_sql(f"INSERT INTO audit_head (id, size) VALUES ({p}, {p}){conflict}", (1, 0))  # noqa: S608
        row = conn.exec_driver_sql(select_sql).one()
    return int(row[0]), None if row[1] is None else bytes(row[1])


def _border_blob(tree: merkle.CompactRange) -> bytes:
    """Return the head's border record: the size it belongs to, then the border's hashes."""
    return tree.size.to_bytes(8, "big") + b"".join(h for _, _, h in tree.border())


def border_from_blob(blob: bytes | None, size: int) -> list[bytes] | None:
    """Return the stored border hashes if they belong to ``size``, else None (read the tree)."""
    count = size.bit_count()
    if blob is None or len(blob) != 8 + 32 * count or int.from_bytes(blob[:8], "big") != size:
        return None
    return [blob[8 + 32 * i: 40 + 32 * i] for i in range(count)]


def _leaf_spans(nodes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the leaf ranges ``[start, end)`` under complete nodes, merged when close."""
    spans: list[list[int]] = []
    for start, end in sorted((i << level, (i + 1) << level) for level, i in nodes):
        if spans and start <= spans[-1][1] + _SPAN_GAP:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


def fetch_nodes(conn: Connection, nodes: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Read complete nodes in one query: levels 0–7 from the leaf hashes, the rest stored.

    A node that cannot be read (a leaf under it or its stored row missing) is left out.
    """
    wanted = sorted(set(nodes))
    if not wanted:
        return {}
    p = _placeholder(conn)
    index = _q(conn, "index")
    parts: list[str] = []
    params: list[int] = []
    low = [(level, i) for level, i in wanted if level < MIN_STORED_LEVEL]
    stored = [(level, i) for level, i in wanted if level >= MIN_STORED_LEVEL]
    spans = _leaf_spans(low)
    singles = [start for start, end in spans if end - start == 1]
    if singles:
        parts.append(f"SELECT 0, seq, leaf_hash FROM audit_entry WHERE seq IN "  # noqa: S608
                     f"({', '.join([p] * len(singles))})")
        params.extend(singles)
    for start, end in spans:
        if end - start > 1:
            parts.append(f"SELECT 0, seq, leaf_hash FROM audit_entry "  # noqa: S608
                         f"WHERE seq >= {p} AND seq < {p}")
            params.extend((start, end))
    if stored:
        # OR of (level AND index) terms: each is a primary-key lookup. A row-value IN list
        # makes SQLite scan the whole table.
        terms = " OR ".join([f"(level = {p} AND {index} = {p})"] * len(stored))
        parts.append(f"SELECT level, {index}, hash FROM merkle_node WHERE {terms}")  # noqa: S608
        for level, i in stored:
            params.extend((level, i))
    rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params)).all()
    found: dict[tuple[int, int], bytes] = {}
    leaves: dict[int, bytes] = {}
    for level, i, h in rows:
        if level:
            found[(int(level), int(i))] = bytes(h)
        else:
            leaves[int(i)] = bytes(h)
    for level, i in low:
        first = i << level
        under = [leaves.get(seq) for seq in range(first, first + (1 << level))]
        if None not in under:
            found[(level, i)] = merkle.complete_nodes(under, level)[0]
    return found


def _fetch_nodes_chunked(conn: Connection, nodes: Sequence[tuple[int, int]]) -> dict:
    """Read many nodes in as few queries as the parameter limit allows."""
    found: dict[tuple[int, int], bytes] = {}
    unique = sorted(set(nodes))
    step = _MAX_PARAMS // 2
    for start in range(0, len(unique), step):
        found.update(fetch_nodes(conn, unique[start : start + step]))
    return found


def _getter(found: dict[tuple[int, int], bytes]) -> merkle.GetNode:
    """Turn prefetched nodes into a merkle.GetNode; a missing node is a damaged store."""

    def get_node(level: int, index: int) -> bytes:
        try:
            return found[(level, index)]
        except KeyError:
            raise LookupError(f"missing tree node level={level} index={index}") from None

    return get_node


# --- Appending -------------------------------------------------------------------------------


def _insert_rows(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert rows in the caller's transaction: COPY on PostgreSQL, executemany elsewhere.

    COPY of the same rows is about 2.5 times psycopg's executemany (bench/ingest_bench.py);
    it runs on the transaction's own connection, so it commits or rolls back with it.
    """
    names = ", ".join(_q(conn, c) for c in columns)
    if conn.dialect.driver == "psycopg":
        statement = f"COPY {table} ({names}) FROM STDIN"
        dbapi_connection = conn.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        try:
            with cursor.copy(statement) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
        except conn.dialect.loaded_dbapi.Error as exc:
            # A raw cursor's error is the driver's own: give it SQLAlchemy's shape (callers and
            # the API's 503 handler know only that), and drop a connection the server cut so
            # the pool does not hand it out again.
            is_disconnect = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
            if is_disconnect:
                conn.invalidate(exc)
            raise DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error,
                                      connection_invalidated=is_disconnect) from exc
        finally:
            cursor.close()
        return
    p = _placeholder(conn)
    conn.exec_driver_sql(
        f"INSERT INTO {table} ({names}) VALUES ({', '.join([p] * len(columns))})", rows  # noqa: S608
    )


def append_entries(session: Session, entries: Iterable[PendingEntry]) -> list[AppendedEntry]:
    """Append entries as leaves in the caller's transaction; store the new nodes of level ≥ 8.

    Returns the appended rows in order (``.seq`` is each entry's position in the log).
    The caller commits once; nothing here commits or flushes ORM state.
    """
    entries = list(entries)
    if not entries:
        return []
    for kind in {pending.kind for pending in entries}:
        _check_kind(kind)
    for pending in entries:
        _check_search(pending.search)
    conn = session.connection()
    size, blob = _lock_head_with_border(conn)
    # The head row keeps the border of the tree it counts (updated with it, in the same
    # statement): the border's nodes of level 1–7 are not stored, and rebuilding them from up
    # to 255 leaf hashes doubled the CPU of a one-entry append. A border of another size (a
    # head written by something else, or none yet) is read from the tree as before.
    hashes = border_from_blob(blob, size)
    if hashes is None:
        border_ids = merkle.subtree_ranges_for_root(size)
        border = fetch_nodes(conn, border_ids)
        hashes = [_getter(border)(*node) for node in border_ids]
    tail = merkle.CompactRange(size, hashes)

    recorded_at = utcnow()
    make_bytes = _entry_bytes_maker(recorded_at_text(recorded_at))
    datas = [make_bytes(size + offset, pending.kind, pending.body, pending.body_json)
             for offset, pending in enumerate(entries)]
    leaves = merkle.leaf_hashes(datas)
    # Level 0 lives in audit_entry.leaf_hash; levels 1–7 are rebuilt from it when read.
    new_nodes = tail.append(leaves, MIN_STORED_LEVEL)

    bind_time = _time_binder(conn, "recorded_at")
    db_recorded_at = bind_time(recorded_at)
    appended: list[AppendedEntry] = []
    rows: list[tuple] = []
    new_entry = AppendedEntry._make
    key_of = event_key
    add_entry, add_row = appended.append, rows.append
    seq = size
    # One loop per row and no helper calls: this runs once per ingested event.
    for pending, data, leaf in zip(entries, datas, leaves, strict=True):
        get = pending.search.get
        actor, host, action = get("actor"), get("host"), get("action")
        data_class, event_id, occurred_at = get("data_class"), get("event_id"), get("occurred_at")
        values = (
            seq, recorded_at, pending.kind, data.decode("utf-8"), leaf,
            # Search values are cut to their column's width; the body keeps the whole value.
            actor[:255] if isinstance(actor, str) and len(actor) > 255 else actor,
            host[:255] if isinstance(host, str) and len(host) > 255 else host,
            action[:32] if isinstance(action, str) and len(action) > 32 else action,
            get("path"),
            data_class[:64] if isinstance(data_class, str) and len(data_class) > 64 else data_class,
            get("incident_id"), occurred_at,
            event_id[:36] if isinstance(event_id, str) and len(event_id) > 36 else event_id,
        )
        add_entry(new_entry(values))
        add_row((seq, db_recorded_at, *values[2:11],
                 None if occurred_at is None else bind_time(occurred_at), values[12],
                 # Only event entries are deduplicated; refusals naming an event id are not.
                 key_of(event_id) if pending.kind == "event" and event_id is not None else None))
        seq += 1

    p = _placeholder(conn)
    _insert_rows(conn, "audit_entry", (*AppendedEntry._fields, "event_key"), rows)
    if new_nodes:
        _insert_rows(conn, "merkle_node", ("level", "index", "hash"), new_nodes)
    conn.exec_driver_sql(
        f"UPDATE audit_head SET size = {p}, border = {p} WHERE id = 1",  # noqa: S608
        (size + len(entries), _border_blob(tail)),
    )
    return appended


def _search_from_body(body: dict, search: dict) -> dict:
    """Default actor/host/action from the body's own top-level fields; explicit values win."""
    merged = {k: body.get(k) for k in ("actor", "host", "action") if isinstance(body.get(k), str)}
    merged.update({k: v for k, v in search.items() if v is not None})
    return merged


def record(session: Session, kind: str, body: dict, **search) -> AppendedEntry:
    """Append one audit entry of the given kind in the caller's transaction."""
    _check_search(search)
    return append_entries(session, [PendingEntry(kind, body, _search_from_body(body, search))])[0]


# --- Reading the tree --------------------------------------------------------------------------


def tree_size(session: Session) -> int:
    """Return the number of entries in the log (committed, or appended in this transaction)."""
    size = session.connection().exec_driver_sql("SELECT size FROM audit_head WHERE id = 1").scalar()
    return int(size or 0)


def node_getter(session: Session, size: int, *, for_nodes: Iterable[tuple[int, int]] | None = None):
    """Return a get_node(level, index) for the tree of ``size`` leaves.

    With ``for_nodes`` (e.g. ``merkle.inclusion_proof_nodes(...)``) every node is read up front
    in one query; nodes asked for beyond those are read one query each and cached.
    """
    conn = session.connection()
    cache: dict[tuple[int, int], bytes] = (
        _fetch_nodes_chunked(conn, list(for_nodes)) if for_nodes is not None else {}
    )

    def get_node(level: int, index: int) -> bytes:
        key = (level, index)
        if key not in cache:
            if (index + 1) << level > size:
                raise LookupError(f"node level={level} index={index} is not in a tree of {size}")
            cache.update(fetch_nodes(conn, [key]))
            if key not in cache:
                raise LookupError(f"missing tree node level={level} index={index}")
        return cache[key]

    return get_node


def root_at(session: Session, size: int) -> bytes:
    """Return the root hash of the tree at a given size (one query, O(log n) rows)."""
    nodes = merkle.subtree_ranges_for_root(size)
    return merkle.root_from_nodes(size, node_getter(session, size, for_nodes=nodes))


def inclusion_proof(session: Session, seq: int, size: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof of entry seq in the tree of the given size."""
    nodes = merkle.inclusion_proof_nodes(seq, size)
    return merkle.inclusion_proof_from_nodes(seq, size, node_getter(session, size, for_nodes=nodes))


def inclusion_proofs(session: Session, seqs: Sequence[int], size: int) -> list[list[bytes]]:
    """Return the inclusion proofs of many entries, reading their nodes in few queries."""
    plans = [merkle.inclusion_proof_nodes(seq, size) for seq in seqs]
    get_node = node_getter(session, size, for_nodes=[n for plan in plans for n in plan])
    return [merkle.inclusion_proof_from_nodes(seq, size, get_node) for seq in seqs]


def consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof between two sizes of the tree."""
    nodes = merkle.consistency_proof_nodes(old_size, new_size)
    return merkle.consistency_proof_from_nodes(
        old_size, new_size, node_getter(session, new_size, for_nodes=nodes)
    )


def node_range(session: Session, level: int, start: int, end: int) -> list[bytes]:
    """Return the complete nodes ``(level, start)`` … ``(level, end - 1)`` in order (one query).

    Level 0 nodes are the leaf hashes; levels 1–7 are computed from them. Raises LookupError
    when one is missing (a damaged store, or a range past the tree).
    """
    if end <= start:
        return []
    if 0 < level < MIN_STORED_LEVEL:
        try:
            leaves = node_range(session, 0, start << level, end << level)
        except LookupError:
            raise LookupError(f"missing tree nodes at level {level} in [{start}, {end})") from None
        return merkle.complete_nodes(leaves, level)
    conn = session.connection()
    p = _placeholder(conn)
    index = _q(conn, "index")
    if level == 0:
        rows = conn.exec_driver_sql(
            f"SELECT seq, leaf_hash FROM audit_entry WHERE seq >= {p} AND seq < {p} ORDER BY seq",  # noqa: S608
            (start, end)).all()
    else:
        rows = conn.exec_driver_sql(
            f"SELECT {index}, hash FROM merkle_node WHERE level = {p} AND {index} >= {p} "  # noqa: S608
            f"AND {index} < {p} ORDER BY {index}", (level, start, end)).all()
    if len(rows) != end - start or (rows and int(rows[0][0]) != start):
        raise LookupError(f"missing tree nodes at level {level} in [{start}, {end})")
    return [bytes(h) for _, h in rows]


def entry_range(session: Session, start: int, end: int) -> list[bytes]:
    """Return the leaf data (entry bytes) of entries ``start`` … ``end - 1`` in order."""
    if end <= start:
        return []
    conn = session.connection()
    p = _placeholder(conn)
    rows = conn.exec_driver_sql(
        f"SELECT seq, body FROM audit_entry WHERE seq >= {p} AND seq < {p} ORDER BY seq",  # noqa: S608
        (start, end)).all()
    if len(rows) != end - start or (rows and int(rows[0][0]) != start):
        raise LookupError(f"missing entries in [{start}, {end})")
    return [body.encode("utf-8") for _, body in rows]
