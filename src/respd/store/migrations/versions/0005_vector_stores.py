"""vector stores, their files and chunks, the keyword and IVF indexes; a kind for jobs

Revision ID: 0005_vector_stores
Revises: 0007_harden
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_vector_stores"
down_revision = "0007_harden"
branch_labels = None
depends_on = None

_FTS_TRIGGERS = (
    """CREATE TRIGGER vs_chunks_ai AFTER INSERT ON vs_chunks BEGIN
        INSERT INTO vs_chunks_fts(rowid, vector_store_id, text)
        VALUES (new.id, replace(new.vector_store_id, '_', ''), new.text);
    END""",
    """CREATE TRIGGER vs_chunks_ad AFTER DELETE ON vs_chunks BEGIN
        INSERT INTO vs_chunks_fts(vs_chunks_fts, rowid, vector_store_id, text)
        VALUES ('delete', old.id, replace(old.vector_store_id, '_', ''), old.text);
    END""",
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="response"))
        # an ingestion's key is ``<vector_store_id>/<file_id>``: longer than a response id
        batch.alter_column("response_id", type_=sa.String(160), existing_type=sa.String(80))
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_active_at", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("expires_after", sa.Text, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("embedder", sa.String(256), nullable=False),
        sa.Column("lists", sa.Integer, nullable=False),
        sa.Column("index_version", sa.Integer, nullable=False),
        sa.Column("trained_chunks", sa.Integer, nullable=False),
    )
    op.create_index("ix_vector_stores_tenant_created", "vector_stores", ["tenant", "created_at"])
    op.create_table(
        "vector_store_files",
        sa.Column("vector_store_id", sa.String(80), primary_key=True),
        sa.Column("file_id", sa.String(80), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("chunking_strategy", sa.Text, nullable=False),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("batch_id", sa.String(80), nullable=True),
    )
    op.create_index("ix_vector_store_files_store_status", "vector_store_files", ["vector_store_id", "status"])
    op.create_index("ix_vector_store_files_batch", "vector_store_files", ["batch_id"])
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("vector_store_id", sa.String(80), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False),
    )
    op.create_table(
        "vs_chunks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("vector_store_id", sa.String(80), nullable=False),
        sa.Column("file_id", sa.String(80), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("list_no", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
    )
    # the IVF probe reads (id, file_id, embedding) of some lists of a store: from a covering index, whose
    # entries lie in (store, list) order, instead of one random table page per chunk (3x faster at 100k)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE INDEX ix_vs_chunks_store_list ON vs_chunks (vector_store_id, list_no, id, file_id, embedding)"
        )
    else:
        op.execute("CREATE INDEX ix_vs_chunks_store_list ON vs_chunks (vector_store_id, list_no) "
                   "INCLUDE (id, file_id, embedding)")  # fmt: skip
    op.create_index("ix_vs_chunks_store_file", "vs_chunks", ["vector_store_id", "file_id", "position"])
    op.create_table(
        "vs_centroids",
        sa.Column("vector_store_id", sa.String(80), primary_key=True),
        sa.Column("list_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("centroid", sa.LargeBinary, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        # an external-content FTS5 index of the chunks' text; the store id (one token: no underscore) is a
        # column so a query can be limited to some stores inside the index (ranked by bm25 on the text only)
        op.execute(
            "CREATE VIRTUAL TABLE vs_chunks_fts USING fts5(vector_store_id, text, content='vs_chunks', "
            "content_rowid='id', tokenize='porter unicode61')"
        )
        for trigger in _FTS_TRIGGERS:
            op.execute(trigger)
        # each term's document count, so a query can leave out words found nearly everywhere
        op.execute("CREATE VIRTUAL TABLE vs_chunks_vocab USING fts5vocab('vs_chunks_fts', 'row')")
    else:
        op.execute(
            "ALTER TABLE vs_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
        )
        op.execute("CREATE INDEX ix_vs_chunks_tsv ON vs_chunks USING gin (tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE vs_chunks_vocab")
        op.execute("DROP TABLE vs_chunks_fts")
    op.drop_table("vs_centroids")
    op.drop_table("vs_chunks")
    op.drop_table("vector_store_file_batches")
    op.drop_table("vector_store_files")
    op.drop_table("vector_stores")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("response_id", type_=sa.String(80), existing_type=sa.String(160))
        batch.drop_column("kind")
