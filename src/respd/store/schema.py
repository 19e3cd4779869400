"""The database tables. Changes to them are Alembic migrations in ``migrations/versions``.

JSON is kept as text: respd writes far more often than it queries inside documents, and text is the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

responses = Table(
    "responses",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("model", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("previous_response_id", String(80), nullable=True),
    Column("background", Boolean, nullable=False, default=False),
    Column("owner", String(80), nullable=True),
    # The Response object: the fold of the event log, cached.
    Column("body", Text, nullable=False),
    Index("ix_responses_status_owner", "status", "owner"),  # the sweep for what dead replicas left running
)

# The input items of each response (what input_items lists) and its output items, in order.
response_items = Table(
    "response_items",
    metadata,
    Column("response_id", String(80), primary_key=True),
    Column("kind", String(8), primary_key=True),  # "input" | "output"
    Column("position", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("item_id", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_response_items_tenant_item", "tenant", "item_id"),
)

# The event log: every stream event of a stored response. One row holds the events ``seq..last_seq`` that
# were written together, one JSON document per line: a response costs a few rows, not one per token.
response_events = Table(
    "response_events",
    metadata,
    Column("response_id", String(80), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", Integer, nullable=False),
    Column("body", Text, nullable=False),
)

# The replicas (server processes) sharing this database. A replica renews its lease while it lives; work
# owned by a replica whose lease ran out (killed, partitioned) is taken over by the others.
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("started_at", BigInteger, nullable=False),
    Column("lease_until", BigInteger, nullable=False),  # milliseconds since the epoch
    Column("host", String(256), nullable=False),
)

# Background responses not yet finished: the durable job. ``owner`` is the replica running it (null while
# queued); the row goes away in the transaction that writes the response's terminal event.
jobs = Table(
    "jobs",
    metadata,
    Column("response_id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("owner", String(80), nullable=True),
    Column("created_at", BigInteger, nullable=False),  # milliseconds: claim order
    Column("attempts", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("request", Text, nullable=False),  # the validated create request, JSON
    Index("ix_jobs_owner", "owner"),
)

# Conversations (``/v1/conversations``). ``next_position`` is the counter that appends take positions from:
# an append bumps it in its own transaction, which locks the row, so concurrent appends come out whole
# and in commit order.
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("next_position", Integer, nullable=False),
)

# The items of each conversation, in order. Positions may have gaps (deleted items).
conversation_items = Table(
    "conversation_items",
    metadata,
    Column("conversation_id", String(80), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("item_id", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_conversation_items_item", "conversation_id", "item_id"),
)

# Uploaded files (``/v1/files``). A file is ``uploading`` while its bytes arrive (invisible to the API),
# ``processed`` once whole, and ``deleted`` between a delete and the removal of its bytes; ``updated_at``
# (seconds) is an upload's heartbeat, so a sweep can tell an upload whose replica died from a slow one.
files = Table(
    "files",
    metadata,
    Column("id", String(80), primary_key=True),  # file-<creation second, hex><random>: sorts by created_at
    Column("tenant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("mime", String(256), nullable=False),  # the upload's Content-Type, as the client named it
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Index("ix_files_tenant_id", "tenant", "id"),  # listing, newest or oldest first
    Index("ix_files_status", "status", "updated_at"),  # the sweep: deleted files, abandoned uploads
    Index("ix_files_expires_at", "expires_at"),  # the sweep: expired files
)

# A file's bytes in pieces of :data:`respd.store.files.CHUNK_BYTES`, in order: written and read one piece
# at a time, so no file is ever whole in memory, and every replica reads them from the database.
file_chunks = Table(
    "file_chunks",
    metadata,
    Column("file_id", String(80), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# The hosted-tool calls respd ran (web_search, file_search, …): what the model called and what it read back,
# which the call's public output item does not hold. A later model turn, a run taken over after a crash and
# a response continuing the chain read them to show the model its earlier calls. ``output`` is null while the
# call runs; ``sources`` are the numbered sources it found (JSON ``[[n, source], …]``).
hosted_calls = Table(
    "hosted_calls",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("response_id", String(80), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("arguments", Text, nullable=False),
    Column("output", Text, nullable=True),
    Column("sources", Text, nullable=True),
    Index("ix_hosted_calls_response", "response_id"),
)
