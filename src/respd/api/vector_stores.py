"""``/v1/vector_stores`` routes: vector stores, their files and file batches, and search.

Adding files commits their rows and ingestion jobs (:mod:`respd.jobs.ingest`) before the reply; the
files are ``in_progress`` until a replica has indexed them. Everything is scoped by the caller's key.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from respd.api import pagination
from respd.api.context import json_response, runtime_of, tenant_of
from respd.engine.checks import check_metadata
from respd.errors import InvalidRequest, NotFound
from respd.ids import new_id
from respd.retrieval import filters as flt
from respd.retrieval.chunking import AUTO_OVERLAP, AUTO_SIZE, MAX_SIZE, MIN_SIZE
from respd.store import files as file_db
from respd.store import vectors as db
from respd.wire import vector_stores as w
from respd.wire.validation import parse_body

M = TypeVar("M", bound=BaseModel)
STATUSES = ("in_progress", "completed", "failed", "cancelled")


async def _body(request: Request, model: type[M]) -> M:
    return parse_body(model, await request.body())


def _wake(request: Request) -> None:
    request.app.state.ingestor.wake()


# -- objects ------------------------------------------------------------------------------------------------
def _counts(counts: dict[str, int]) -> dict[str, int]:
    out = {s: counts.get(s, 0) for s in STATUSES}
    return {**out, "total": sum(out.values())}


def store_object(row: db.StoreRow, counts: dict[str, int], usage: int) -> dict[str, Any]:
    now = int(time.time())
    status = ("expired" if row.expires_at is not None and row.expires_at <= now
              else "in_progress" if counts.get("in_progress") else "completed")  # fmt: skip
    return {"id": row.id, "object": "vector_store", "created_at": row.created_at // 1000, "name": row.name,
            "usage_bytes": usage, "file_counts": _counts(counts), "status": status,
            "expires_after": row.expires_after, "expires_at": row.expires_at,
            "last_active_at": row.last_active_at, "metadata": row.metadata}  # fmt: skip


def file_object(f: dict[str, Any]) -> dict[str, Any]:
    return {"id": f["file_id"], "object": "vector_store.file", "usage_bytes": f["usage_bytes"],
            "created_at": f["created_at"] // 1000, "vector_store_id": f["vector_store_id"], "status": f["status"],
            "last_error": orjson.loads(f["last_error"]) if f["last_error"] else None,
            "chunking_strategy": orjson.loads(f["chunking_strategy"]),
            "attributes": orjson.loads(f["attributes"])}  # fmt: skip


async def _store_json(request: Request, row: db.StoreRow) -> dict[str, Any]:
    counts, usage = (await db.file_stats(runtime_of(request).store, [row.id]))[row.id]
    return store_object(row, counts, usage)


def _page(request: Request, data: list[dict[str, Any]]) -> dict[str, Any]:
    """A cursor page (``limit``, ``order``, ``after``, ``before``) of ``data`` (oldest first)."""
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("Invalid type for 'limit': expected an integer.", param="limit",
                             code="invalid_type") from None  # fmt: skip
    if not 1 <= limit <= 100:
        raise InvalidRequest(f"Invalid 'limit': integer out of range. Expected a value between 1 and 100, but got "
                             f"{limit} instead.", param="limit", code="integer_out_of_range")  # fmt: skip
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order",
                             code="invalid_value")  # fmt: skip
    ordered = data if order == "asc" else data[::-1]
    after, before = q.get("after"), q.get("before")
    for cursor, value in (("after", after), ("before", before)):
        if value is not None and value not in {d["id"] for d in ordered}:
            raise InvalidRequest(f"Invalid '{cursor}': no object with id '{value}'.", param=cursor,
                                 code="invalid_value")  # fmt: skip
    if after is not None:
        ordered = ordered[[d["id"] for d in ordered].index(after) + 1 :]
    if before is not None and before in {d["id"] for d in ordered}:
        ordered = ordered[: [d["id"] for d in ordered].index(before)]
    page = ordered[:limit]
    return pagination.page(page, len(ordered) > limit)


# -- checks -------------------------------------------------------------------------------------------------
def strategy_of(given: w.AutoChunking | w.StaticChunking | None, param: str = "chunking_strategy") -> dict[str, Any]:
    """The strategy stored with a file: ``static`` with its numbers (``auto`` is 800 and 400)."""
    if given is None or isinstance(given, w.AutoChunking):
        size, overlap = AUTO_SIZE, AUTO_OVERLAP
    else:
        size, overlap = given.static.max_chunk_size_tokens, given.static.chunk_overlap_tokens
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise InvalidRequest(f"Invalid '{param}.static.max_chunk_size_tokens': {size}. It must be between "
                                 f"{MIN_SIZE} and {MAX_SIZE}.", param=f"{param}.static.max_chunk_size_tokens",
                                 code="invalid_value")  # fmt: skip
        if overlap < 0 or overlap > size // 2:
            raise InvalidRequest(f"Invalid '{param}.static.chunk_overlap_tokens': {overlap}. It must be at least 0 "
                                 f"and at most half of max_chunk_size_tokens ({size // 2}).",
                                 param=f"{param}.static.chunk_overlap_tokens", code="invalid_value")  # fmt: skip
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


def _check_attributes(attributes: dict[str, Any] | None, param: str = "attributes") -> dict[str, Any]:
    attributes = attributes or {}
    if len(attributes) > 16:
        raise InvalidRequest(f"Invalid '{param}': at most 16 attributes, got {len(attributes)}.", param=param,
                             code="object_above_max_properties")  # fmt: skip
    for key, value in attributes.items():
        if len(key) > 64:
            raise InvalidRequest(f"Invalid '{param}': key '{key[:20]}…' is longer than 64 characters.",
                                 param=f"{param}.{key}", code="string_above_max_length")  # fmt: skip
        if isinstance(value, str) and len(value) > 512:
            raise InvalidRequest(f"Invalid '{param}.{key}': string longer than 512 characters.",
                                 param=f"{param}.{key}", code="string_above_max_length")  # fmt: skip
    return attributes


async def _check_files(request: Request, file_ids: list[str], param: str) -> None:
    """Every file exists and is the caller's, before anything is written."""
    store, tenant = runtime_of(request).store, tenant_of(request)
    for i, fid in enumerate(file_ids):
        if await file_db.get(store, tenant, fid) is None:
            raise NotFound(f"No file found with id '{fid}'.", param=f"{param}[{i}]" if param != "file_id" else param)


def _expiry(expires_after: w.ExpiresAfter | None, last_active: int) -> tuple[dict[str, Any] | None, int | None]:
    if expires_after is None:
        return None, None
    return expires_after.model_dump(), last_active + expires_after.days * 86_400


async def _vector_store(request: Request) -> db.StoreRow:
    vsid = request.path_params["vector_store_id"]
    row = await db.get_store(runtime_of(request).store, tenant_of(request), vsid)
    if row is None:
        raise NotFound(f"No vector store found with id '{vsid}'.", param="vector_store_id")
    return row


# -- vector stores ------------------------------------------------------------------------------------------
async def create_store(request: Request) -> Response:
    req = await _body(request, w.CreateVectorStore)
    check_metadata(req.metadata)
    rt, tenant = runtime_of(request), tenant_of(request)
    strategy = strategy_of(req.chunking_strategy)
    file_ids = list(dict.fromkeys(req.file_ids or []))
    await _check_files(request, file_ids, "file_ids")
    now = int(time.time())
    expires_after, expires_at = _expiry(req.expires_after, now)
    created = int(time.time() * 1000)
    row = db.StoreRow(new_id("vs"), tenant, req.name, created, now, req.metadata or {}, expires_after, expires_at,
                      rt.retrieval.embedder.name, 0, 0, 0)  # fmt: skip
    await db.save_store(rt.store, row, [db.file_values(tenant, row.id, f, {}, strategy) for f in file_ids])
    if file_ids:
        _wake(request)
    return json_response(await _store_json(request, row))


async def list_stores(request: Request) -> Response:
    rt = runtime_of(request)
    rows = await db.list_stores(rt.store, tenant_of(request))
    stats = await db.file_stats(rt.store, [r.id for r in rows]) if rows else {}
    return json_response(_page(request, [store_object(r, *stats[r.id]) for r in rows]))


async def get_store(request: Request) -> Response:
    return json_response(await _store_json(request, await _vector_store(request)))


async def update_store(request: Request) -> Response:
    req = await _body(request, w.UpdateVectorStore)
    check_metadata(req.metadata)
    row = await _vector_store(request)
    given = req.model_fields_set
    expires_after, expires_at = row.expires_after, row.expires_at
    if "expires_after" in given:
        expires_after, expires_at = _expiry(req.expires_after, row.last_active_at)
    row = db.StoreRow(row.id, row.tenant, req.name if "name" in given else row.name, row.created_at,
                      row.last_active_at, (req.metadata or {}) if "metadata" in given else row.metadata,
                      expires_after, expires_at, row.embedder, row.lists, row.index_version,
                      row.trained_chunks)  # fmt: skip
    await db.save_store(runtime_of(request).store, row)
    return json_response(await _store_json(request, row))


async def delete_store(request: Request) -> Response:
    row = await _vector_store(request)
    await db.delete_store(runtime_of(request).store, row.tenant, row.id)
    return json_response({"id": row.id, "object": "vector_store.deleted", "deleted": True})


# -- search -------------------------------------------------------------------------------------------------
async def search(request: Request) -> Response:
    req = await _body(request, w.SearchRequest)
    if req.filters is not None:
        flt.check(req.filters)
    row = await _vector_store(request)
    if row.expires_at is not None and row.expires_at <= int(time.time()):
        raise InvalidRequest(f"Vector store '{row.id}' has expired.", param="vector_store_id", code="expired")
    queries = [req.query] if isinstance(req.query, str) else req.query
    options = req.ranking_options or w.RankingOptions()
    rt = runtime_of(request)
    hits = await rt.retrieval.search(
        row.tenant, [row.id], queries, filters=req.filters, max_num_results=req.max_num_results,
        score_threshold=options.score_threshold, ranker=options.ranker,
        hybrid_search=options.hybrid_search.model_dump() if options.hybrid_search else None,
    )  # fmt: skip
    await _touch(request, row)
    return json_response({"object": "vector_store.search_results.page", "search_query": queries,
                          "data": [h.result() for h in hits], "has_more": False, "next_page": None})  # fmt: skip


async def _touch(request: Request, row: db.StoreRow) -> None:
    """Searching makes a store active (its expiry moves on); written at most once a minute."""
    now = int(time.time())
    if now - row.last_active_at >= 60:
        expires_at = now + row.expires_after["days"] * 86_400 if row.expires_after else None
        await db.touch_store(runtime_of(request).store, row.id, now, expires_at)
