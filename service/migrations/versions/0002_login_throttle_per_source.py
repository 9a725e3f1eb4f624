"""Login throttle per (account, source address): a lockout no longer locks the account everywhere.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:00:43.139634
"""

import sqlalchemy as sa
from alembic import op

import service.core.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('locked_until_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_throttle')),
    sa.UniqueConstraint('username', 'remote_addr', name=op.f('uq_login_throttle_username'))
    )


def downgrade() -> None:
    op.drop_table('login_throttle')
