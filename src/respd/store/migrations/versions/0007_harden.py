"""a lease epoch on responses (fencing a replica that lost its lease); item ids unique within a conversation

Revision ID: 0007_harden
Revises: 0006_ops
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_harden"
down_revision = "0006_ops"
branch_labels = None
depends_on = None

# Two appends racing with the same client-given item id could both get in before this constraint: the
# later copies go (the first one is what a client reading the conversation saw first).
_DEDUPE = """
DELETE FROM conversation_items WHERE EXISTS (
    SELECT 1 FROM conversation_items first
    WHERE first.conversation_id = conversation_items.conversation_id
      AND first.item_id = conversation_items.item_id AND first.position < conversation_items.position)
"""


def upgrade() -> None:
    op.add_column("responses", sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"))
    op.execute(_DEDUPE)
    op.drop_index("ix_conversation_items_item", "conversation_items")
    op.create_index("ux_conversation_items_item", "conversation_items", ["conversation_id", "item_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_conversation_items_item", "conversation_items")
    op.create_index("ix_conversation_items_item", "conversation_items", ["conversation_id", "item_id"])
    op.drop_column("responses", "lease_epoch")
