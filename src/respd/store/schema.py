"""The database tables. Changes to them are Alembic migrations in ``migrations/versions``.

JSON is kept as text: respd writes far more often than it queries inside documents, and text is the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

SEQ_MAX = 2**31 - 1  # the largest sequence number the event log holds (an INTEGER on PostgreSQL)


def findable(key: str) -> bool:
    """Whether a client's ``key`` (an id from a path, a body or a query) could name a stored row. PostgreSQL
    refuses a NUL character in text outright where SQLite just finds nothing: a key holding one is looked up
    nowhere, so it is "not found" on both."""
    return "\x00" not in key


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
    # Bumped by every takeover of the response (a job claimed, an orphan ended): a write made under an older
    # epoch comes from a replica that lost its lease, and is refused in its own transaction.
    Column("lease_epoch", Integer, nullable=False, server_default="0"),
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

# Durable jobs not yet finished. ``kind`` says what a job does: ``response`` (a background response, keyed by
# its id; the row goes away in the transaction that writes the response's terminal event) or ``ingest`` (a
# vector store file to extract, chunk, embed and index, keyed ``<vector_store_id>/<file_id>``; the row goes
# away in the transaction that records the file's final status). ``owner`` is the replica running it (null
# while queued). The key column keeps its first name, ``response_id``.
jobs = Table(
    "jobs",
    metadata,
    Column("response_id", String(160), primary_key=True),
    Column("kind", String(16), nullable=False, default="response", server_default="response"),
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
    # an item id names one item of a conversation: a second append with it fails (see store.conversations)
    Index("ux_conversation_items_item", "conversation_id", "item_id", unique=True),
)

# -- operations: webhook deliveries and rate-limit counts (docs/OPERATIONS.md) -------------------------------

# One row per (finished response, matching endpoint), written in the transaction of the response's terminal
# event. ``state``: pending | delivered | failed (given up). A replica claims a due pending row by moving
# ``next_attempt_at`` past its attempt's deadline (its lease on the attempt) and naming itself ``owner``.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(80), primary_key=True),  # wh_…: the webhook-id header, the same on every attempt
    Column("event_id", String(80), nullable=False),  # evt_…: the body's id
    Column("event_type", String(32), nullable=False),
    Column("response_id", String(80), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("endpoint", String(256), nullable=False),  # the configured endpoint's name (its secret is found by it)
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),  # the event JSON, exactly as signed and sent
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # milliseconds
    Column("next_attempt_at", BigInteger, nullable=False),  # milliseconds
    Column("owner", String(80), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_response", "response_id"),
)

# Every attempt of every delivery, for inspection (``respd webhooks show``).
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("delivery_id", String(80), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("started_at", BigInteger, nullable=False),  # milliseconds
    Column("duration_ms", Integer, nullable=False),
    Column("status", Integer, nullable=True),  # the receiver's HTTP status; null when there was no answer
    Column("error", Text, nullable=True),
    Column("replica", String(80), nullable=False),
)

# Rate limits without Redis: requests and tokens per key and Unix minute, and the stream slots held now.
rate_limit_windows = Table(
    "rate_limit_windows",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("window_start", BigInteger, primary_key=True, autoincrement=False),  # Unix minute
    Column("requests", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),
)

rate_limit_streams = Table(
    "rate_limit_streams",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),  # seconds; renewed while the stream runs
    Index("ix_rate_limit_streams_tenant", "tenant"),
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

# Vector stores (``/v1/vector_stores``). ``embedder`` names the model their chunks were embedded with (a
# search embeds its query with the same one). ``lists`` is the number of IVF lists of the store's index
# (0: searched exactly, the store is small); ``index_version`` changes whenever the lists are retrained, so
# replicas know when their cached centroids are stale; ``trained_chunks`` is the chunk count at training.
vector_stores = Table(
    "vector_stores",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),  # milliseconds: list order (the API shows seconds)
    Column("last_active_at", BigInteger, nullable=False),  # seconds
    Column("metadata", Text, nullable=False),
    Column("expires_after", Text, nullable=True),  # JSON {"anchor", "days"}
    Column("expires_at", BigInteger, nullable=True),  # seconds
    Column("embedder", String(256), nullable=False),
    Column("lists", Integer, nullable=False, default=0),
    Column("index_version", Integer, nullable=False, default=0),
    Column("trained_chunks", Integer, nullable=False, default=0),
    Index("ix_vector_stores_tenant_created", "tenant", "created_at"),
)

# The files of each vector store, and how their ingestion stands (``in_progress``, ``completed``,
# ``cancelled``, ``failed`` with ``last_error``).
vector_store_files = Table(
    "vector_store_files",
    metadata,
    Column("vector_store_id", String(80), primary_key=True),
    Column("file_id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # milliseconds: list order; ``created_at`` is seconds
    Column("status", String(16), nullable=False),
    Column("last_error", Text, nullable=True),  # JSON {"code", "message"}
    Column("attributes", Text, nullable=False),
    Column("chunking_strategy", Text, nullable=False),  # JSON, resolved (``static`` with its numbers)
    Column("usage_bytes", BigInteger, nullable=False, default=0),
    Column("filename", Text, nullable=False, default=""),
    Column("batch_id", String(80), nullable=True),
    Index("ix_vector_store_files_store_status", "vector_store_id", "status"),
    Index("ix_vector_store_files_batch", "batch_id"),
    Index("ix_vector_store_files_file", "file_id"),  # a deleted File taken out of every store holding it
)

vector_store_file_batches = Table(
    "vector_store_file_batches",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("vector_store_id", String(80), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
)

# The chunks of every vector store file: text, embedding (float16 bytes) and the IVF list it belongs to.
# Keyword search reads an index of the text: FTS5 (``vs_chunks_fts``, kept by triggers) on SQLite, a
# generated tsvector column with a GIN index on PostgreSQL (both made by the migration).
vs_chunks = Table(
    "vs_chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vector_store_id", String(80), nullable=False),
    Column("file_id", String(80), nullable=False),
    Column("position", Integer, nullable=False),
    Column("list_no", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    # covering (id, file_id, embedding) too, made by the migration (SQLite: as key columns; PostgreSQL: INCLUDE)
    Index("ix_vs_chunks_store_list", "vector_store_id", "list_no"),
    Index("ix_vs_chunks_store_file", "vector_store_id", "file_id", "position"),
)

# The IVF centroids of each vector store's index (float32 bytes), of ``vector_stores.index_version``.
vs_centroids = Table(
    "vs_centroids",
    metadata,
    Column("vector_store_id", String(80), primary_key=True),
    Column("list_no", Integer, primary_key=True, autoincrement=False),
    Column("centroid", LargeBinary, nullable=False),
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

# Code interpreter containers (``/v1/containers``). ``status`` is running until the container has been idle
# for ``expires_minutes`` (then expired: the row stays as a snapshot of its metadata, its files go). ``origin``
# is the response for which the code_interpreter tool made the container (``container: {"type": "auto"}``):
# later responses of that chain use it again.
containers = Table(
    "containers",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_us", BigInteger, nullable=False),  # microseconds: list order
    Column("last_active_at", BigInteger, nullable=False),
    Column("expires_minutes", Integer, nullable=False),
    Column("memory_limit", String(8), nullable=False),
    Column("origin", String(80), nullable=True),
    Index("ix_containers_tenant_created", "tenant", "created_us"),
    Index("ix_containers_origin", "origin"),
    Index("ix_containers_status_active", "status", "last_active_at"),  # the expiry sweep
)

# A container's files: what is under its /mnt/data, kept here so they outlive its sandbox process (which
# may be stopped, killed by a limit, or lost with its server) and are written back into the next one.
# ``mtime_ns`` is the file's modification time in the sandbox when it was last copied, to see changes.
container_files = Table(
    "container_files",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("container_id", String(80), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("source", String(16), nullable=False),  # "user" (uploaded) | "assistant" (written by code)
    Column("created_us", BigInteger, nullable=False),  # microseconds: list order
    Column("bytes", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("ux_container_files_path", "container_id", "path", unique=True),
)
