"""vector store files by file: deleting a File finds the stores holding it without reading every row

Revision ID: 0010_file_holders
Revises: 0008_containers
"""

from alembic import op

revision = "0010_file_holders"
down_revision = "0008_containers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_vector_store_files_file", "vector_store_files", ["file_id"])


def downgrade() -> None:
    op.drop_index("ix_vector_store_files_file", "vector_store_files")
