"""files and their bytes

Revision ID: 0004_files
Revises: 0003_conversations
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_files"
down_revision = "0003_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("mime", sa.String(256), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_files_tenant_id", "files", ["tenant", "id"])
    op.create_index("ix_files_status", "files", ["status", "updated_at"])
    op.create_index("ix_files_expires_at", "files", ["expires_at"])
    op.create_table(
        "file_chunks",
        sa.Column("file_id", sa.String(80), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_chunks")
    op.drop_index("ix_files_expires_at", "files")
    op.drop_index("ix_files_status", "files")
    op.drop_index("ix_files_tenant_id", "files")
    op.drop_table("files")
