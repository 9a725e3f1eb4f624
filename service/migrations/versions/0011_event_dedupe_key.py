"""Indexes that pay for themselves: a compact event dedupe key instead of a unique text index.

The unique index on random 36-character event ids halved the trail's insert rate. Events are
now deduplicated on audit_entry.event_key, the first 64 bits of the SHA-256 of their id (a
plain partial index on a BIGINT), then on the whole id, under the trail's head lock. The
incident index becomes partial (events never carry an incident) and the occurred_at index,
which no query could use, goes. Existing event entries get their key, on SQLite and
PostgreSQL alike.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:00:00
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_CHUNK = 5000


def _key(event_id: str) -> int:
    # Kept here rather than imported, so this migration keeps meaning what it meant when
    # written; equal to service.audit.log.event_key (tested).
    return int.from_bytes(hashlib.sha256(event_id.encode("utf-8")).digest()[:8], "big", signed=True)


def _fill_keys() -> None:
    conn = op.get_bind()
    entry = sa.table("audit_entry", sa.column("seq", sa.BigInteger), sa.column("kind", sa.String),
                     sa.column("event_id", sa.String), sa.column("event_key", sa.BigInteger))
    last = -1
    while True:
        rows = conn.execute(
            sa.select(entry.c.seq, entry.c.event_id)
            .where(entry.c.kind == "event", entry.c.event_id.is_not(None), entry.c.seq > last)
            .order_by(entry.c.seq).limit(_CHUNK)
        ).all()
        if not rows:
            return
        conn.execute(
            entry.update().where(entry.c.seq == sa.bindparam("b_seq"))
            .values(event_key=sa.bindparam("b_key")),
            [{"b_seq": seq, "b_key": _key(event_id)} for seq, event_id in rows],
        )
        last = rows[-1][0]


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN and index statements on both databases: a batch (copy and
    # move) of a large trail would rewrite every entry.
    op.add_column('audit_entry', sa.Column('event_key', sa.BigInteger(), nullable=True))
    op.drop_index('ix_audit_entry_event_id', table_name='audit_entry')
    op.drop_index('ix_audit_entry_incident_id', table_name='audit_entry')
    # No query can use it: the search filters on coalesce(occurred_at, recorded_at).
    op.drop_index('ix_audit_entry_occurred_at', table_name='audit_entry')
    _fill_keys()
    op.create_index('ix_audit_entry_event_key', 'audit_entry', ['event_key'], unique=False,
                    sqlite_where=sa.text('event_key IS NOT NULL'),
                    postgresql_where=sa.text('event_key IS NOT NULL'))
    op.create_index('ix_audit_entry_incident_id', 'audit_entry', ['incident_id'], unique=False,
                    sqlite_where=sa.text('incident_id IS NOT NULL'),
                    postgresql_where=sa.text('incident_id IS NOT NULL'))


def downgrade() -> None:
    # Fails if two entries name one event id (an event and the refusal of an earlier
    # delivery of it), which the unique index used to forbid.
    op.drop_index('ix_audit_entry_incident_id', table_name='audit_entry')
    op.drop_index('ix_audit_entry_event_key', table_name='audit_entry')
    op.create_index('ix_audit_entry_incident_id', 'audit_entry', ['incident_id'], unique=False)
    op.create_index('ix_audit_entry_occurred_at', 'audit_entry', ['occurred_at'], unique=False)
    op.create_index('ix_audit_entry_event_id', 'audit_entry', ['event_id'], unique=True)
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_column('event_key')
