"""A worker process of verify's parallel fast pass: fold aligned chunks of the trail.

``service.audit.verify`` starts it as a script (``python -I -S verify_worker.py``), never as
part of the ``service`` package: importing that package imports Flask and pydantic (0.3 s a
process), while this needs only the standard library, the merkle core (loaded from its file
beside this one) and, for PostgreSQL, psycopg. Its boot is the price of every worker, so it
imports as little as it can: no site (``-S``; the caller passes the directory psycopg is in),
no json (its regular expressions alone cost 6 ms), no pathlib, no importlib.

It talks ``marshal`` over stdin and stdout (both ends are the same interpreter, ``sys.executable``,
and trust each other). First in: the connection, ``{"dialect": "sqlite" | "postgresql", "dsn":
path or URL, "sql": the range query, "path": [directories to import from]}``; once connected it
answers ``{"ready": True}``. Then chunks to fold: ``{"chunk": i, "ranges": [(start, end), ...],
"report": [end, ...]}``, the ranges contiguous from the chunk's first entry. For each it answers
``{"chunk": i, "tiles": [[hash, ...], ...], "bad": False}``: for every reported end, in order,
the hashes of the complete subtrees tiling [chunk start, end) (highest level first: the border
of the chunk's own compact range). When a range fails the fast pass's checks (row count, a raw
newline) it answers ``"bad": True`` with the tiles of the ends before that range, so the caller
proves the targets up to it, as the single-process pass does. On any other failure it answers
``{"error": "..."}`` and exits; the end of its input makes it exit quietly.
"""

from __future__ import annotations

import marshal
import os
import sys


def _load_merkle():
    """Return the merkle core, imported from its directory without the service package."""
    # Last on the path, so that nothing beside it can shadow a module of the standard library;
    # imported (not executed from source) so that its cached bytecode is used.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import merkle

    return merkle


def connect(dialect: str, dsn: str):
    """Open a connection to the trail's database that cannot write."""
    if dialect == "sqlite":
        import sqlite3

        # Read-only by pragma, not by opening the file read-only: a read-only connection to a
        # WAL database while another holds its write lock (verify_log's own session does:
        # BEGIN IMMEDIATE) waits in the busy handler, 150 ms at a time, to read the WAL index.
        # mode=rw: never create a file that is not there.
        path = dsn.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        return conn
    if dialect == "postgresql":
        import psycopg

        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute("SET default_transaction_read_only = on")
        return conn
    raise ValueError(f"no verify worker for a {dialect} database")


def split_range(start: int, end: int, count: int, joined: bytes | None) -> list[bytes] | None:
    """Return the bodies of range [start, end) from its query's row, or None if it is wrong.

    Wrong: a row count other than end - start, or one piece too many when split at "\\n" (a raw
    newline is not canonical JSON).
    """
    if count != end - start or joined is None:
        return None
    bodies = bytes(joined).split(b"\n")
    return bodies if len(bodies) == count else None


def fold_chunk(cursor, sql: str, ranges, report, merkle) -> tuple[list[list[bytes]], bool]:
    """Read, check, hash and fold a chunk's ranges; return (tiles per reported end, bad)."""
    report = set(report)
    tree = merkle.CompactRange()
    tiles: list[list[bytes]] = []
    for start, end in ranges:
        cursor.execute(sql, (start, end))
        bodies = split_range(start, end, *cursor.fetchone())
        if bodies is None:
            return tiles, True
        tree.extend(merkle.leaf_hashes(bodies))
        if end in report:
            tiles.append([h for _level, _index, h in tree.border()])
    return tiles, False


def main() -> int:
    """Serve chunks from stdin until it closes; return the exit status."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def send(message: dict) -> None:
        marshal.dump(message, stdout)
        stdout.flush()

    try:
        setup = marshal.load(stdin)  # noqa: S302 - from the process that started us
        sys.path[:0] = setup.get("path", [])
        merkle = _load_merkle()
        cursor = connect(setup["dialect"], setup["dsn"]).cursor()
        send({"ready": True})
        while True:
            try:
                job = marshal.load(stdin)  # noqa: S302 - from the process that started us
            except EOFError:
                return 0
            tiles, bad = fold_chunk(cursor, setup["sql"], job["ranges"], job["report"], merkle)
            send({"chunk": job["chunk"], "bad": bad, "tiles": tiles})
    except EOFError:
        return 0  # closed before the setup: nothing to do
    except Exception as exc:  # every failure goes back to the caller, which raises it
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
