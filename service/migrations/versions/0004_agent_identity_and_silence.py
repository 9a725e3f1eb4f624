"""Agent ids compared after normalisation (agent_key, unique); silence rules fired per silence.

Existing agents get the key of their id. Two existing agents whose ids are look-alikes of
each other (bound before this revision) both keep working: the first (lowest row id) gets the
key, the others a key of their own that no normalised id can have (it is not 64 hex digits).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:10:00
"""

import hashlib
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# A frozen copy of service.events.identity as of this revision: a migration must give the
# same result whatever the code becomes later.
_EXTRA_DASHES = frozenset("\u2212\u2043\u02d7\u2796\ufe63\uff0d")
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)


def _fold(text: str) -> str:
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cf" or char in _INVISIBLE:
            continue
        out.append("-" if category == "Pd" or char in _EXTRA_DASHES else char)
    return "".join(out)


def _key(agent_id: str) -> str:
    text = _fold(unicodedata.normalize("NFKC", agent_id))
    text = _fold(unicodedata.normalize("NFKC", text.casefold())).strip()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agent_key', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('silence_rules_fired', sa.Text(), nullable=True))
    agent = sa.table('agent', sa.column('id', sa.Integer), sa.column('agent_id', sa.String),
                     sa.column('agent_key', sa.String))
    conn = op.get_bind()
    taken: set[str] = set()
    for row_id, agent_id in conn.execute(sa.select(agent.c.id, agent.c.agent_id).order_by(agent.c.id)).all():
        key = _key(agent_id)
        if key in taken:
            key = f"{key}:{row_id}"
        taken.add(key)
        conn.execute(agent.update().where(agent.c.id == row_id).values(agent_key=key))
    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.alter_column('agent_key', existing_type=sa.String(length=80), nullable=False)
        batch_op.create_unique_constraint('uq_agent_agent_key', ['agent_key'])


def downgrade() -> None:
    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.drop_constraint('uq_agent_agent_key', type_='unique')
        batch_op.drop_column('silence_rules_fired')
        batch_op.drop_column('agent_key')
