"""code interpreter containers and their files

Revision ID: 0008_containers
Revises: 0005_vector_stores
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_containers"
down_revision = "0005_vector_stores"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "containers",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("last_active_at", sa.BigInteger, nullable=False),
        sa.Column("expires_minutes", sa.Integer, nullable=False),
        sa.Column("memory_limit", sa.String(8), nullable=False),
        sa.Column("origin", sa.String(80), nullable=True),
    )
    op.create_index("ix_containers_origin", "containers", ["origin"])
    op.create_index("ix_containers_tenant_created", "containers", ["tenant", "created_us"])
    op.create_index("ix_containers_status_active", "containers", ["status", "last_active_at"])
    op.create_table(
        "container_files",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("container_id", sa.String(80), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ux_container_files_path", "container_files", ["container_id", "path"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_container_files_path", "container_files")
    op.drop_table("container_files")
    op.drop_index("ix_containers_origin", "containers")
    op.drop_index("ix_containers_status_active", "containers")
    op.drop_index("ix_containers_tenant_created", "containers")
    op.drop_table("containers")
