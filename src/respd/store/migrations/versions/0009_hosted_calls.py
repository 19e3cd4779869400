"""hosted tool calls: what the model called and read back

Revision ID: 0009_hosted_calls
Revises: 0004_files
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_hosted_calls"
down_revision = "0004_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosted_calls",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("response_id", sa.String(80), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("arguments", sa.Text, nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("sources", sa.Text, nullable=True),
    )
    op.create_index("ix_hosted_calls_response", "hosted_calls", ["response_id"])


def downgrade() -> None:
    op.drop_index("ix_hosted_calls_response", "hosted_calls")
    op.drop_table("hosted_calls")
