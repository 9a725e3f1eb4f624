"""SMS reply codes and read inbox files, police receipt confirmations, substitutes on leave.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:48:10.372375
"""

import sqlalchemy as sa
from alembic import op

import service.core.db

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sms_received',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('received_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sender_user_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['sender_user_id'], ['user.id'], name=op.f('fk_sms_received_sender_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_received')),
    sa.UniqueConstraint('file_name', name=op.f('uq_sms_received_file_name'))
    )
    op.create_table('substitution',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('substitute_id', sa.Integer(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_substitution_created_by_id_user')),
    sa.ForeignKeyConstraint(['substitute_id'], ['user.id'], name=op.f('fk_substitution_substitute_id_user')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_substitution_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_substitution'))
    )
    with op.batch_alter_table('substitution', schema=None) as batch_op:
        batch_op.create_index('ix_substitution_user_dates', ['user_id', 'starts_on', 'ends_on'], unique=False)

    op.create_table('incident_receipt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('confirmed_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_incident_receipt_incident_id_incident')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_incident_receipt_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_receipt')),
    sa.UniqueConstraint('incident_id', 'user_id', name=op.f('uq_incident_receipt_incident_id'))
    )
    op.create_table('sms_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('purpose', sa.String(length=24), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', service.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_at', service.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_sms_code_incident_id_incident')),
    sa.ForeignKeyConstraint(['message_id'], ['outbox_message.id'], name=op.f('fk_sms_code_message_id_outbox_message'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_sms_code_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_code')),
    sa.UniqueConstraint('message_id', name=op.f('uq_sms_code_message_id'))
    )
    with op.batch_alter_table('sms_code', schema=None) as batch_op:
        batch_op.create_index('ix_sms_code_incident', ['incident_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sms_code', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_code_incident')

    op.drop_table('sms_code')
    op.drop_table('incident_receipt')
    with op.batch_alter_table('substitution', schema=None) as batch_op:
        batch_op.drop_index('ix_substitution_user_dates')

    op.drop_table('substitution')
    op.drop_table('sms_received')
