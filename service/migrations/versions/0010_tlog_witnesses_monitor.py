"""The trail checked from outside: monitor tokens, the monitor's state, witnesses both ways.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import service.core.db

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('ingest_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=16), server_default='ingest',
                                      nullable=False))
    op.create_table('audit_monitor_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('verified_size', BigId, nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('border', sa.Text(), nullable=False),
    sa.Column('verified_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('failed_size', BigId, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_monitor_state'))
    )
    op.create_table('witnessed_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('verifier_key', sa.Text(), nullable=False),
    sa.Column('size', BigId, nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('added_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cosigned_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_witnessed_log')),
    sa.UniqueConstraint('origin', name=op.f('uq_witnessed_log_origin'))
    )
    op.create_table('log_witness',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('verifier_key', sa.Text(), nullable=False),
    sa.Column('size', BigId, nullable=False),
    sa.Column('added_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('refused_size', BigId, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_witness')),
    sa.UniqueConstraint('name', name=op.f('uq_log_witness_name'))
    )
    op.create_table('cosignature',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=False),
    sa.Column('witness_id', sa.Integer(), nullable=False),
    sa.Column('line', sa.Text(), nullable=False),
    sa.Column('cosigned_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoint.id'],
                            name=op.f('fk_cosignature_checkpoint_id_checkpoint')),
    sa.ForeignKeyConstraint(['witness_id'], ['log_witness.id'],
                            name=op.f('fk_cosignature_witness_id_log_witness')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cosignature')),
    sa.UniqueConstraint('checkpoint_id', 'witness_id',
                        name=op.f('uq_cosignature_checkpoint_id'))
    )


def downgrade() -> None:
    op.drop_table('cosignature')
    op.drop_table('log_witness')
    op.drop_table('witnessed_log')
    op.drop_table('audit_monitor_state')
    with op.batch_alter_table('ingest_token', schema=None) as batch_op:
        batch_op.drop_column('scope')
