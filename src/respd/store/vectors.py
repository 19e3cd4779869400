"""Rows of vector stores, their files, batches and chunks: the store owns their formats.

Writes are short transactions through :meth:`Store.transact` (inline on SQLite, which has one writer);
reads use the async engine. Every statement that takes an id from a client is scoped by tenant.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from respd.store.schema import (
    findable,
    jobs,
    vector_store_file_batches,
    vector_store_files,
    vector_stores,
    vs_centroids,
    vs_chunks,
)
from respd.store.store import Store

INGEST = "ingest"  # the job kind
SWEEP_STORES = 20  # expired stores one sweep empties at most
SWEEP_CHUNKS = 1000  # chunks removed per transaction when a store is emptied (short writes, even on SQLite)


def now_s() -> int:
    return int(time.time())


def job_key(vector_store_id: str, file_id: str) -> str:
    return f"{vector_store_id}/{file_id}"


def split_key(key: str) -> tuple[str, str]:
    vsid, _, fid = key.partition("/")
    return vsid, fid


@dataclass(frozen=True, slots=True)
class StoreRow:
    """A vector store as stored (the API object is built by :func:`respd.retrieval.objects`)."""

    id: str
    tenant: str
    name: str | None
    created_at: int
    last_active_at: int
    metadata: dict[str, Any]
    expires_after: dict[str, Any] | None
    expires_at: int | None
    embedder: str
    lists: int
    index_version: int
    trained_chunks: int


def _store_row(r: Any) -> StoreRow:
    return StoreRow(r.id, r.tenant, r.name, r.created_at, r.last_active_at, orjson.loads(r.metadata),
                    orjson.loads(r.expires_after) if r.expires_after else None, r.expires_at, r.embedder,
                    r.lists, r.index_version, r.trained_chunks)  # fmt: skip


async def _all(store: Store, q: Any, params: dict[str, Any] | None = None) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(q, params or {})).all())


@asynccontextmanager
async def _connected(store: Store, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
    """``conn`` if given (several reads of one search on one checkout: each checkout pings PostgreSQL),
    else a connection of the pool's."""
    if conn is not None:
        yield conn
        return
    async with store.engine.connect() as own:
        yield own


# -- vector stores ----------------------------------------------------------------------------------------
def store_values(row: StoreRow) -> dict[str, Any]:
    return {"id": row.id, "tenant": row.tenant, "name": row.name, "created_at": row.created_at,
            "last_active_at": row.last_active_at, "metadata": orjson.dumps(row.metadata).decode(),
            "expires_after": orjson.dumps(row.expires_after).decode() if row.expires_after else None,
            "expires_at": row.expires_at, "embedder": row.embedder, "lists": row.lists,
            "index_version": row.index_version, "trained_chunks": row.trained_chunks}  # fmt: skip


async def get_store(store: Store, tenant: str, vsid: str) -> StoreRow | None:
    if not findable(vsid):
        return None
    rows = await _all(store, select(vector_stores).where(vector_stores.c.id == vsid, vector_stores.c.tenant == tenant))
    return _store_row(rows[0]) if rows else None


async def get_stores(store: Store, tenant: str, ids: Sequence[str]) -> dict[str, StoreRow]:
    ids = [i for i in ids if findable(i)]
    q = select(vector_stores).where(vector_stores.c.id.in_(ids), vector_stores.c.tenant == tenant)
    return {r.id: _store_row(r) for r in await _all(store, q)}


async def list_stores(store: Store, tenant: str) -> list[StoreRow]:
    q = select(vector_stores).where(vector_stores.c.tenant == tenant).order_by(vector_stores.c.created_at,
                                                                             vector_stores.c.id)  # fmt: skip
    return [_store_row(r) for r in await _all(store, q)]


async def save_store(store: Store, row: StoreRow, files: list[dict[str, Any]] | None = None) -> None:
    """Insert or replace the store's row, and add ``files`` (rows of :func:`file_values`) with their jobs."""

    def work(conn: Connection) -> None:
        conn.execute(delete(vector_stores).where(vector_stores.c.id == row.id))
        conn.execute(insert(vector_stores).values(**store_values(row)))
        _add_files(conn, files or [])

    await store.transact(work)


async def touch_store(store: Store, vsid: str, last_active_at: int, expires_at: int | None) -> None:
    q = update(vector_stores).where(vector_stores.c.id == vsid)
    await store.transact(lambda conn: conn.execute(q.values(last_active_at=last_active_at, expires_at=expires_at)))


async def delete_store(store: Store, tenant: str, vsid: str) -> None:
    """The store and everything in it: files, batches, chunks, centroids and waiting ingestion jobs."""

    def work(conn: Connection) -> None:
        conn.execute(delete(jobs).where(jobs.c.kind == INGEST, jobs.c.response_id.like(f"{vsid}/%")))
        conn.execute(delete(vs_chunks).where(vs_chunks.c.vector_store_id == vsid))
        conn.execute(delete(vs_centroids).where(vs_centroids.c.vector_store_id == vsid))
        conn.execute(delete(vector_store_files).where(vector_store_files.c.vector_store_id == vsid))
        conn.execute(delete(vector_store_file_batches).where(vector_store_file_batches.c.vector_store_id == vsid))
        conn.execute(delete(vector_stores).where(vector_stores.c.id == vsid, vector_stores.c.tenant == tenant))

    await store.transact(work)


async def file_stats(store: Store, vsids: Sequence[str]) -> dict[str, tuple[dict[str, int], int]]:
    """Per store: file counts by status and the bytes its chunks take."""
    f = vector_store_files
    q = (select(f.c.vector_store_id, f.c.status, func.count(), func.coalesce(func.sum(f.c.usage_bytes), 0))
         .where(f.c.vector_store_id.in_(list(vsids))).group_by(f.c.vector_store_id, f.c.status))  # fmt: skip
    out: dict[str, tuple[dict[str, int], int]] = {v: ({}, 0) for v in vsids}
    for vsid, status, count, used in await _all(store, q):
        counts, total = out[vsid]
        counts[status] = int(count)
        out[vsid] = (counts, total + int(used))
    return out


# -- expiry -------------------------------------------------------------------------------------------------
async def sweep_expired(store: Store) -> int:
    """Empty the vector stores that have expired: their chunks, index and waiting ingestion go, their
    files' ``usage_bytes`` become 0 (files still waiting are ``cancelled``). The store row and its file rows
    stay, and the API shows the store ``expired``, as OpenAI's does. Returns how many stores it emptied;
    idempotent (a store is found again until it is empty), and safe on several replicas at once."""
    v, f, c = vector_stores.c, vector_store_files.c, vs_chunks.c
    has_files = select(f.file_id).where(f.vector_store_id == v.id, (f.usage_bytes > 0) | (f.status == "in_progress"))
    has_chunks = select(c.id).where(c.vector_store_id == v.id)
    q = (select(v.id).where(v.expires_at <= now_s(), (v.lists > 0) | has_files.exists() | has_chunks.exists())
         .limit(SWEEP_STORES))  # fmt: skip
    ids = [r.id for r in await _all(store, q)]
    for vsid in ids:
        await _empty(store, vsid)
    return len(ids)


async def _empty(store: Store, vsid: str) -> None:
    def stop_ingestion(conn: Connection) -> None:
        conn.execute(delete(jobs).where(jobs.c.kind == INGEST, jobs.c.response_id.like(f"{vsid}/%")))
        f = vector_store_files
        conn.execute(update(f).where(f.c.vector_store_id == vsid, f.c.status == "in_progress")
                     .values(status="cancelled"))  # fmt: skip

    def some_chunks(conn: Connection) -> int:
        c = vs_chunks.c
        batch = select(c.id).where(c.vector_store_id == vsid).limit(SWEEP_CHUNKS).scalar_subquery()
        return int(conn.execute(delete(vs_chunks).where(c.id.in_(batch))).rowcount)

    def drop_index(conn: Connection) -> None:
        conn.execute(delete(vs_centroids).where(vs_centroids.c.vector_store_id == vsid))
        conn.execute(update(vector_stores).where(vector_stores.c.id == vsid)
                     .values(lists=0, index_version=0, trained_chunks=0))  # fmt: skip
        f = vector_store_files
        conn.execute(update(f).where(f.c.vector_store_id == vsid).values(usage_bytes=0))

    # ingestion first, so that no file is indexed into the store while its chunks go
    await store.transact(stop_ingestion)
    while await store.transact(some_chunks) >= SWEEP_CHUNKS:
        pass
    await store.transact(drop_index)


async def remove_file(store: Store, file_id: str) -> int:
    """Take a deleted file out of every vector store holding it: its chunks, its vector store file rows
    (so file counts and usage stay true) and any ingestion waiting for it. Returns how many stores held it."""

    def work(conn: Connection) -> int:
        f = vector_store_files
        holders = conn.execute(select(f.c.vector_store_id).where(f.c.file_id == file_id)).scalars().all()
        for vsid in holders:
            _drop_file(conn, vsid, file_id)
        return len(holders)

    return await store.transact(work)


# -- vector store files -------------------------------------------------------------------------------------
def file_values(tenant: str, vsid: str, file_id: str, attributes: dict[str, Any], strategy: dict[str, Any],
                batch_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"vector_store_id": vsid, "file_id": file_id, "tenant": tenant, "created_at": int(time.time() * 1000),
            "status": "in_progress", "last_error": None, "attributes": orjson.dumps(attributes).decode(),
            "chunking_strategy": orjson.dumps(strategy).decode(), "usage_bytes": 0, "filename": "",
            "batch_id": batch_id}  # fmt: skip


def _add_files(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """New (or re-added) files and their ingestion jobs; a file already in the store starts over."""
    if not rows:
        return
    now = int(time.time() * 1000)
    for r in rows:
        _drop_file(conn, r["vector_store_id"], r["file_id"])
    conn.execute(insert(vector_store_files), rows)
    conn.execute(insert(jobs), [{"response_id": job_key(r["vector_store_id"], r["file_id"]), "kind": INGEST,
                                 "tenant": r["tenant"], "owner": None, "created_at": now, "attempts": 0,
                                 "cancel_requested": False, "request": ""} for r in rows])  # fmt: skip


def _drop_file(conn: Connection, vsid: str, file_id: str) -> None:
    conn.execute(delete(jobs).where(jobs.c.response_id == job_key(vsid, file_id)))
    conn.execute(delete(vs_chunks).where(vs_chunks.c.vector_store_id == vsid, vs_chunks.c.file_id == file_id))
    f = vector_store_files
    conn.execute(delete(f).where(f.c.vector_store_id == vsid, f.c.file_id == file_id))


async def add_files(store: Store, rows: list[dict[str, Any]], batch: dict[str, Any] | None = None) -> None:
    def work(conn: Connection) -> None:
        if batch is not None:
            conn.execute(insert(vector_store_file_batches).values(**batch))
        _add_files(conn, rows)

    await store.transact(work)


async def get_file(store: Store, tenant: str, vsid: str, file_id: str) -> dict[str, Any] | None:
    if not (findable(vsid) and findable(file_id)):
        return None
    f = vector_store_files
    q = select(f).where(f.c.vector_store_id == vsid, f.c.file_id == file_id, f.c.tenant == tenant)
    rows = await _all(store, q)
    return dict(rows[0]._mapping) if rows else None


async def list_files(store: Store, vsid: str, *, status: str | None = None,
                     batch_id: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The store's files, oldest first."""
    f = vector_store_files
    q = select(f).where(f.c.vector_store_id == vsid)
    if status is not None:
        q = q.where(f.c.status == status)
    if batch_id is not None:
        q = q.where(f.c.batch_id == batch_id)
    return [dict(r._mapping) for r in await _all(store, q.order_by(f.c.created_at, f.c.file_id))]


async def set_attributes(store: Store, vsid: str, file_id: str, attributes: dict[str, Any]) -> None:
    f = vector_store_files
    q = update(f).where(f.c.vector_store_id == vsid, f.c.file_id == file_id)
    await store.transact(lambda conn: conn.execute(q.values(attributes=orjson.dumps(attributes).decode())))


async def delete_file(store: Store, vsid: str, file_id: str) -> None:
    await store.transact(lambda conn: _drop_file(conn, vsid, file_id))


async def file_chunks(store: Store, vsid: str, file_id: str) -> list[str]:
    q = (select(vs_chunks.c.text).where(vs_chunks.c.vector_store_id == vsid, vs_chunks.c.file_id == file_id)
         .order_by(vs_chunks.c.position))  # fmt: skip
    return [r.text for r in await _all(store, q)]


# -- batches ------------------------------------------------------------------------------------------------
async def get_batch(store: Store, tenant: str, vsid: str, batch_id: str) -> dict[str, Any] | None:
    if not (findable(vsid) and findable(batch_id)):
        return None
    b = vector_store_file_batches
    q = select(b).where(b.c.id == batch_id, b.c.vector_store_id == vsid, b.c.tenant == tenant)
    rows = await _all(store, q)
    return dict(rows[0]._mapping) if rows else None


async def batch_counts(store: Store, batch_id: str) -> dict[str, int]:
    f = vector_store_files
    q = select(f.c.status, func.count()).where(f.c.batch_id == batch_id).group_by(f.c.status)
    return {status: int(n) for status, n in await _all(store, q)}


async def cancel_batch(store: Store, vsid: str, batch_id: str) -> None:
    """The batch's files not yet ingested are cancelled, and their jobs dropped."""

    def work(conn: Connection) -> None:
        f = vector_store_files
        waiting = conn.execute(select(f.c.file_id).where(f.c.batch_id == batch_id, f.c.status == "in_progress"))
        keys = [job_key(vsid, r.file_id) for r in waiting]
        if keys:
            conn.execute(delete(jobs).where(jobs.c.response_id.in_(keys)))
        conn.execute(update(f).where(f.c.batch_id == batch_id, f.c.status == "in_progress").values(status="cancelled"))
        b = vector_store_file_batches
        conn.execute(update(b).where(b.c.id == batch_id).values(cancelled=True))

    await store.transact(work)


# -- ingestion results ----------------------------------------------------------------------------------------
def _pending(conn: Connection, vsid: str, file_id: str) -> bool:
    f = vector_store_files
    q = select(f.c.status).where(f.c.vector_store_id == vsid, f.c.file_id == file_id)
    row = conn.execute(q).first()
    return row is not None and row.status == "in_progress"


async def finish_file(store: Store, vsid: str, file_id: str, filename: str, chunks: list[dict[str, Any]],
                      usage_bytes: int, version: int, relist: Callable[[list[bytes]], list[int]]) -> bool:  # fmt: skip
    """Index the file's chunks and mark it completed, in one transaction (nothing half-indexed survives a
    crash); False if the file left the store (or was cancelled) meanwhile. The chunks' ``list_no`` were
    found with the centroids of index ``version``; if the store was retrained since, ``relist(centroids)``
    finds them again with the new ones."""

    def work(conn: Connection) -> bool:
        conn.execute(delete(jobs).where(jobs.c.response_id == job_key(vsid, file_id)))
        if not _pending(conn, vsid, file_id):
            return False
        now = conn.execute(select(vector_stores.c.index_version).where(vector_stores.c.id == vsid)).scalar()
        if now is not None and now != version:
            q = select(vs_centroids.c.centroid).where(vs_centroids.c.vector_store_id == vsid)
            lists = relist([r.centroid for r in conn.execute(q.order_by(vs_centroids.c.list_no))])
            for chunk, n in zip(chunks, lists, strict=True):
                chunk["list_no"] = n
        conn.execute(delete(vs_chunks).where(vs_chunks.c.vector_store_id == vsid, vs_chunks.c.file_id == file_id))
        if chunks:
            conn.execute(insert(vs_chunks), chunks)
        f = vector_store_files
        conn.execute(update(f).where(f.c.vector_store_id == vsid, f.c.file_id == file_id)
                     .values(status="completed", usage_bytes=usage_bytes, filename=filename))  # fmt: skip
        return True

    return await store.transact(work)


async def drop_job(store: Store, vsid: str, file_id: str) -> None:
    """End the ingestion job of a file that is no longer waiting for it (removed, cancelled)."""
    key = job_key(vsid, file_id)
    await store.transact(lambda conn: conn.execute(delete(jobs).where(jobs.c.response_id == key)))


async def fail_file(store: Store, vsid: str, file_id: str, code: str, message: str) -> None:
    def work(conn: Connection) -> None:
        conn.execute(delete(jobs).where(jobs.c.response_id == job_key(vsid, file_id)))
        if _pending(conn, vsid, file_id):
            f = vector_store_files
            error = orjson.dumps({"code": code, "message": message}).decode()
            conn.execute(update(f).where(f.c.vector_store_id == vsid, f.c.file_id == file_id)
                         .values(status="failed", last_error=error))  # fmt: skip

    await store.transact(work)


# -- the index ----------------------------------------------------------------------------------------------
async def chunk_count(store: Store, vsid: str) -> int:
    rows = await _all(store, select(func.count()).select_from(vs_chunks).where(vs_chunks.c.vector_store_id == vsid))
    return int(rows[0][0])


async def centroids(store: Store, vsid: str) -> list[bytes]:
    q = select(vs_centroids.c.centroid).where(vs_centroids.c.vector_store_id == vsid).order_by(vs_centroids.c.list_no)
    return [r.centroid for r in await _all(store, q)]


async def embeddings(
    store: Store,
    vsid: str,
    *,
    lists: Sequence[int] | None = None,
    files: Sequence[str] | None = None,
    after_id: int = 0,
) -> list[tuple[int, str, bytes]]:
    """``(chunk id, file id, embedding)`` of the store's chunks, in the given lists / of the given files."""
    c = vs_chunks
    q = select(c.c.id, c.c.file_id, c.c.embedding).where(c.c.vector_store_id == vsid)
    if lists is not None:
        q = q.where(c.c.list_no.in_(list(lists)))
    if files is not None:
        q = q.where(c.c.file_id.in_(list(files)))
    if after_id:
        q = q.where(c.c.id > after_id)
    return [(r.id, r.file_id, r.embedding) for r in await _all(store, q)]


@dataclass(frozen=True, slots=True)
class Packed:
    """Chunks read for scoring, packed: their ids, their embeddings end to end (the stored float16 bytes, in
    the order of ``ids``) and, when asked for, their file ids (same order; joined by the unit separator,
    which no file id holds)."""

    ids: list[int]
    embeddings: bytes
    file_ids: list[str] | None


# SQLite: one row for all the lists probed: the database concatenates the embeddings, so the driver hands
# over a few large values instead of ~3,000 rows (making those row objects was 9/10 of the read at 100k
# chunks). Aggregates of one group step through their rows in the same order, so the lists line up.
# group_concat appends a blob's bytes as they are (NULs included; the database is UTF-8, SQLite's default,
# so nothing is converted); the CAST gives them back as a blob.
_PACKED_SQLITE = (
    "SELECT group_concat(id), CAST(group_concat(embedding, '') AS BLOB), {files} FROM vs_chunks "
    "WHERE vector_store_id = ?{lists}"
)
# PostgreSQL: plain rows, joined here. asyncpg makes ~3,000 records in ~1 ms, while string_agg of the
# embeddings cost ~3 ms in the server and ~4 ms more to receive as one 2 MB value (4 ms against 13 at 100k).
_PACKED_POSTGRES = "SELECT id, embedding{files} FROM vs_chunks WHERE vector_store_id = $1{lists}"


async def packed(store: Store, vsid: str, lists: Sequence[int] | None, *, with_files: bool,
                 conn: AsyncConnection | None = None) -> Packed:  # fmt: skip
    """The store's chunks in ``lists`` (None: all of a store searched exactly), read from the covering
    index and packed (see :class:`Packed`); on ``conn`` if given."""
    nums = [int(n) for n in lists] if lists is not None else None
    if nums == []:
        return Packed([], b"", [] if with_files else None)
    async with _connected(store, conn) as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        if store.is_sqlite:
            within = f" AND list_no IN ({','.join('?' * len(nums))})" if nums is not None else ""
            sql = _PACKED_SQLITE.format(files="group_concat(file_id, char(31))" if with_files else "NULL",
                                        lists=within)  # fmt: skip
            # one hop to the driver's thread (execute, fetch, close), not three: on a busy host each waits its turn
            row = (await raw.execute_fetchall(sql, [vsid, *(nums or [])]))[0]
        else:
            within = " AND list_no = ANY($2::int[])" if nums is not None else ""
            sql = _PACKED_POSTGRES.format(files=", file_id" if with_files else "", lists=within)
            rows = await raw.fetch(sql, vsid, *([nums] if nums is not None else []))
            return Packed([r[0] for r in rows], b"".join([r[1] for r in rows]),
                          [r[2] for r in rows] if with_files else None)  # fmt: skip
    ids, blob, files = row[0], row[1], row[2]
    if not ids:
        return Packed([], b"", [] if with_files else None)
    ids = [int(i) for i in ids.split(",")]
    return Packed(ids, bytes(blob), files.split("\x1f") if with_files else None)


# The chunks by id first, then their files: left to its estimates, PostgreSQL read the files first and every
# chunk of each through (store, file) to find the few asked for (14 ms at 100k instead of ~1). On asyncpg's
# own connection: SQLAlchemy's statement (a BEGIN, its processing of the rows) took ~1 ms more.
_FOUND_POSTGRES = """
    WITH found AS MATERIALIZED (SELECT id, vector_store_id, file_id, text FROM vs_chunks WHERE id = ANY($1::bigint[]))
    SELECT c.id, c.file_id, c.text, f.filename, f.attributes FROM found c
    JOIN vector_store_files f ON f.vector_store_id = c.vector_store_id AND f.file_id = c.file_id
    WHERE f.status = 'completed'
"""


Found = dict[int, tuple[str, str, str, dict[str, Any]]]  # chunk id -> (file id, text, filename, attributes)


async def found_chunks(store: Store, ids: Sequence[int], conn: AsyncConnection | None = None) -> Found:
    """``id -> (file id, text, filename, attributes)`` of the chunks ``ids`` whose file is still in its store
    and completed (one read: the chunks joined with their files); on ``conn`` if given."""
    if not ids:
        return {}
    async with _connected(store, conn) as conn:
        if not store.is_sqlite:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            rows = await raw.fetch(_FOUND_POSTGRES, [int(i) for i in ids])
            return {r[0]: (r[1], r[2], r[3], orjson.loads(r[4])) for r in rows}
        c = select(vs_chunks.c.id, vs_chunks.c.vector_store_id, vs_chunks.c.file_id, vs_chunks.c.text).where(
            vs_chunks.c.id.in_(list(ids))).cte("found").prefix_with("MATERIALIZED")  # fmt: skip
        f = vector_store_files.c
        q = (select(c.c.id, c.c.file_id, c.c.text, f.filename, f.attributes)
             .join(vector_store_files, (f.vector_store_id == c.c.vector_store_id) & (f.file_id == c.c.file_id))
             .where(f.status == "completed"))  # fmt: skip
        rows = list((await conn.execute(q)).all())
    return {r.id: (r.file_id, r.text, r.filename, orjson.loads(r.attributes)) for r in rows}


async def save_index(store: Store, vsid: str, version: int, blobs: list[bytes], trained: int,
                     labels: dict[int, int], relabel: Any) -> None:  # fmt: skip
    """New centroids and every chunk's list, in one transaction. ``relabel(rows)`` gives the lists of chunks
    added since ``labels`` was computed (``rows``: ``(id, embedding)``)."""

    def work(conn: Connection) -> None:
        c = vs_chunks
        newest = max(labels, default=0)
        late = conn.execute(select(c.c.id, c.c.embedding).where(c.c.vector_store_id == vsid, c.c.id > newest)).all()
        every = {**labels, **relabel([(r.id, r.embedding) for r in late])}
        conn.execute(delete(vs_centroids).where(vs_centroids.c.vector_store_id == vsid))
        conn.execute(insert(vs_centroids), [{"vector_store_id": vsid, "list_no": i, "centroid": b}
                                            for i, b in enumerate(blobs)])  # fmt: skip
        stmt = update(c).where(c.c.id == bindparam("cid")).values(list_no=bindparam("lno"))
        conn.execute(stmt, [{"cid": k, "lno": v} for k, v in every.items()])
        conn.execute(update(vector_stores).where(vector_stores.c.id == vsid)
                     .values(lists=len(blobs), index_version=version, trained_chunks=trained))  # fmt: skip

    await store.transact(work)
