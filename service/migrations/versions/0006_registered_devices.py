"""The commune's register of official removable devices (USB sticks).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 01:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

import service.core.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registered_device',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('owner_unit', sa.String(length=64), nullable=False),
    sa.Column('serial', sa.String(length=128), nullable=False),
    sa.Column('serial_key', sa.String(length=128), nullable=False),
    sa.Column('fs_uuid', sa.String(length=128), nullable=True),
    sa.Column('fs_uuid_key', sa.String(length=128), nullable=True),
    sa.Column('vendor', sa.String(length=128), nullable=True),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('registered_by', sa.String(length=64), nullable=False),
    sa.Column('registered_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registered_device'))
    )
    with op.batch_alter_table('registered_device', schema=None) as batch_op:
        batch_op.create_index('ix_registered_device_serial_key', ['serial_key'], unique=False)
        batch_op.create_index('ix_registered_device_fs_uuid_key', ['fs_uuid_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('registered_device', schema=None) as batch_op:
        batch_op.drop_index('ix_registered_device_fs_uuid_key')
        batch_op.drop_index('ix_registered_device_serial_key')
    op.drop_table('registered_device')
