"""Agents report what they watch (config_hash, protected_roots); a change raises an alert.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:07:03.905610
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('config_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('protected_roots', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.drop_column('protected_roots')
        batch_op.drop_column('config_hash')

