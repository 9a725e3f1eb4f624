"""Tree nodes are stored from level 8 up; levels 1–7 are computed from the leaf hashes.

Storing every complete node wrote about one merkle_node row per entry, as many inserts as the
entries themselves on the ingest path. The trail now stores the nodes of level ≥ 8 only (the
tlog-tiles tile height, so hash tiles stay one range read) and rebuilds a node of level 1–7
from the ≤ 128 leaf hashes under it (service/audit/log.py, MIN_STORED_LEVEL). This deletes the
level 1–7 rows of an existing trail; nothing reads them any more, and verify --deep counts
them as rows the trail never wrote. The downgrade recomputes them from audit_entry.leaf_hash.

On SQLite the freed pages stay in the file (reused by later appends) until a VACUUM.

audit_head gains ``border``: the tree's border at its size, written by every append, so an
append does not rebuild the border's low nodes from leaf hashes (empty until the next append,
which then reads the tree once).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 07:30:00
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_LOWEST_STORED = 8
_CHUNK = 128 * 64  # leaves per read: whole level-7 subtrees, so no node straddles two reads


def _pair_up(nodes: list[bytes]) -> list[bytes]:
    # RFC 6962 interior node hash, written out here so this migration keeps meaning what it
    # meant when written (equal to service.audit.merkle.node_hash; the test compares).
    return [hashlib.sha256(b"\x01" + nodes[i] + nodes[i + 1]).digest()
            for i in range(0, len(nodes) - 1, 2)]


def upgrade() -> None:
    op.execute(sa.text(f"DELETE FROM merkle_node WHERE level < {_LOWEST_STORED}"))
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("border", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("border")
    conn = op.get_bind()
    entry = sa.table("audit_entry", sa.column("seq", sa.BigInteger),
                     sa.column("leaf_hash", sa.LargeBinary))
    node = sa.table("merkle_node", sa.column("level", sa.SmallInteger),
                    sa.column("index", sa.BigInteger), sa.column("hash", sa.LargeBinary))
    size = conn.execute(sa.text("SELECT size FROM audit_head WHERE id = 1")).scalar() or 0
    for start in range(0, size, _CHUNK):
        end = min(start + _CHUNK, size)
        rows = conn.execute(sa.select(entry.c.seq, entry.c.leaf_hash)
                            .where(entry.c.seq >= start, entry.c.seq < end)
                            .order_by(entry.c.seq)).all()
        if [seq for seq, _ in rows] != list(range(start, end)):
            raise RuntimeError(f"entries missing in [{start}, {end}): cannot rebuild tree nodes")
        level_nodes = [bytes(h) for _, h in rows]
        new_rows = []
        for level in range(1, _LOWEST_STORED):
            level_nodes = _pair_up(level_nodes)
            first = start >> level
            new_rows.extend({"level": level, "index": first + i, "hash": h}
                            for i, h in enumerate(level_nodes))
        if new_rows:
            conn.execute(node.insert(), new_rows)
